"""Server-Sent Events of one job: state changes and metric points, pushed as they land.

One XREAD BLOCK over the job's two Redis streams (redis.asyncio, so a waiting listener
holds no thread): an event reaches the listener as soon as the worker writes it, and
fifty listeners cost fifty idle sockets, not fifty polling loops. Entries of both
streams carry IDs from the one Redis clock, so merging them by ID keeps the order the
worker wrote them in (a job's last metric point before its final state).

Every event's `id:` is the position in both streams after it, `<metrics id>,<events id>`
(two Redis stream IDs): a client that reconnects with it as `Last-Event-ID` gets
exactly the events after it, none twice, even when the two streams hold entries with
the same ID. Silence is filled with `:` comment lines every KEEPALIVE_S so proxies and
clients keep the connection open, and the blocking read runs on a Redis client whose
socket timeout is longer than the block (redis-py's 5 s default would cut it). While
Redis is away the stream stays open and says so in comments, then carries on.
"""

from __future__ import annotations

import asyncio
import json
import re
from collections.abc import AsyncIterator, Awaitable, Callable

import redis.asyncio as aioredis
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError

from aimc_spec.vocabulary import TERMINAL
from aimc_store.store import fail_fast

KEEPALIVE_S = 10.0  # longest silence before a keep-alive comment (proxies drop idle streams)
RECONNECT_MS = 1000  # the `retry:` an EventSource waits before reconnecting
REDIS_RETRY_S = 1.0  # pause between attempts while Redis is unreachable
START = "0-0,0-0"  # before the first entry of both streams
_STREAM_ID = r"\d{1,20}-\d{1,20}"
_CURSOR = re.compile(rf"^({_STREAM_ID}),({_STREAM_ID})$")
CURSOR_PATTERN = rf"^\s*{_STREAM_ID},{_STREAM_ID}\s*$"  # as Last-Event-ID, documented


def stream_client(url: str) -> aioredis.Redis:
    """A client for blocking stream reads: its socket timeout outlasts the block, so a
    quiet job never cuts its listeners off (redis-py's default is 5 s)."""
    return aioredis.Redis.from_url(
        url,
        socket_timeout=KEEPALIVE_S + 10,
        socket_connect_timeout=5,
        health_check_interval=30,
        retry=fail_fast(),  # the stream's own loop waits for a restarting Redis
    )


def parse_cursor(last_event_id: str | None) -> tuple[str, str] | None:
    """The two stream IDs of a `Last-Event-ID` (START when absent); None if malformed."""
    match = _CURSOR.match((last_event_id or START).strip())
    return (match.group(1), match.group(2)) if match else None


def _order(entry_id: bytes) -> tuple[int, int]:
    ms, seq = entry_id.split(b"-")
    return int(ms), int(seq)


async def job_events(
    client: aioredis.Redis,
    job_key: str,
    metrics_key: str,
    events_key: str,
    after: tuple[str, str] = ("0-0", "0-0"),
    *,
    allowed: Callable[[], Awaitable[bool]],
) -> AsyncIterator[str]:
    """SSE frames after stream positions `after` (metrics, events) until the job ends, is
    deleted, the listener goes, or `allowed()` says the listener may no longer read it:
    asked after every read, so a stream stops within one read (KEEPALIVE_S at most) of
    its key being rotated or its user deleted, instead of outliving the key."""
    cursors: dict[str, str] = {metrics_key: after[0], events_key: after[1]}
    yield f"retry: {RECONNECT_MS}\n: stream of {job_key.rsplit(':', 1)[-1]}\n\n"
    redis_away = False
    while True:
        try:
            replies = await client.xread(cursors, block=int(KEEPALIVE_S * 1000))  # type: ignore[arg-type]
            if not await allowed():
                yield ": the API key of this stream is no longer valid\n\n"
                return
            if not replies:
                state = await client.hget(job_key, "state")
                if state is None or state.decode() in TERMINAL:
                    # gone, or ended with its final state already sent (the state's hash
                    # field and its event are written in one transaction)
                    return
                yield ": keep-alive\n\n"
                continue
        except (RedisConnectionError, RedisTimeoutError):
            if not redis_away:
                yield ": the job store is unreachable; waiting for it\n\n"
                redis_away = True
            await asyncio.sleep(REDIS_RETRY_S)
            continue
        redis_away = False
        merged: list[tuple[tuple[int, int], int, str, dict[bytes, bytes], str]] = []
        for key, entries in replies:
            name = key.decode() if isinstance(key, bytes) else key
            rank = 0 if name == metrics_key else 1  # a tie: the point before the state
            for entry_id, fields in entries:
                merged.append((_order(entry_id), rank, name, fields, entry_id.decode()))
        for _, _, name, fields, entry_id in sorted(merged, key=lambda item: item[:2]):
            cursors[name] = entry_id
            event_id = f"{cursors[metrics_key]},{cursors[events_key]}"
            if name == metrics_key:
                yield f"id: {event_id}\nevent: metric\ndata: {fields[b'm'].decode()}\n\n"
                continue
            event = {"state": fields[b"state"].decode(), "t": float(fields[b"t"])}
            yield f"id: {event_id}\nevent: state\ndata: {json.dumps(event)}\n\n"
            if event["state"] in TERMINAL:
                return
