"""Server-Sent Events of one job: state changes and metric points, pushed as they land.

One XREAD BLOCK over the job's two Redis streams (redis.asyncio, so a waiting listener
holds no thread): an event reaches the listener as soon as the worker writes it, and
fifty listeners cost fifty idle sockets, not fifty polling loops. Entries of both
streams carry IDs from the one Redis clock, so merging them by ID keeps the order the
worker wrote them in (a job's last metric point before its final state).
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator

import redis.asyncio as aioredis

from service.store import TERMINAL

BLOCK_MS = 15_000  # longest wait before a keep-alive comment (proxies drop idle streams)


def _order(entry_id: bytes) -> tuple[int, int]:
    ms, seq = entry_id.split(b"-")
    return int(ms), int(seq)


async def job_events(
    client: aioredis.Redis, job_key: str, metrics_key: str, events_key: str
) -> AsyncIterator[str]:
    """SSE frames from the start of the job until it ends (or is deleted)."""
    cursors: dict[str, bytes | str] = {metrics_key: "0-0", events_key: "0-0"}
    while True:
        replies = await client.xread(cursors, block=BLOCK_MS)  # type: ignore[arg-type]
        if not replies:
            if not await client.exists(job_key):
                return  # deleted or expired while someone listened
            yield ": keep-alive\n\n"
            continue
        merged: list[tuple[tuple[int, int], str, dict[bytes, bytes]]] = []
        for key, entries in replies:
            name = key.decode() if isinstance(key, bytes) else key
            for entry_id, fields in entries:
                merged.append((_order(entry_id), name, fields))
            cursors[name] = entries[-1][0]
        for _, name, fields in sorted(merged, key=lambda item: item[0]):
            if name == metrics_key:
                yield f"event: metric\ndata: {fields[b'm'].decode()}\n\n"
                continue
            event = {"state": fields[b"state"].decode(), "t": float(fields[b"t"])}
            yield f"event: state\ndata: {json.dumps(event)}\n\n"
            if event["state"] in TERMINAL:
                return
