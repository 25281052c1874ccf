"""The reads on the hot path of every request, on redis.asyncio: authentication with the
rate count, and the status view of a job."""

from __future__ import annotations

import json
import time

import redis.asyncio as aioredis

from aimc_store.keys import hash_key
from aimc_store.records import Job, JobView, decode_point, latest_point
from aimc_store.scripts import AUTHENTICATE, AUTHENTICATED_JOB_VIEW, STATUS_FIELDS
from aimc_store.store import JobStore

STATUS_KEYS = tuple(f.encode() for f in STATUS_FIELDS)


def _minute() -> tuple[int, int]:
    """The rate limit's current minute, and the seconds until the next one (at least 1)."""
    now = time.time()
    window = int(now // 60)
    return window, max(1, int((window + 1) * 60 - now))


class AsyncReads:
    """Async so FastAPI runs them on the event loop: a sync dependency and a sync route
    each cost a hop to the thread pool, which took ~40% of a status call. Keys come from
    the JobStore, decoding from aimc_store.records."""

    def __init__(self, client: aioredis.Redis, store: JobStore) -> None:
        self.r = client
        self.store = store
        self._authenticate = client.register_script(AUTHENTICATE)
        self._authenticated_job_view = client.register_script(AUTHENTICATED_JOB_VIEW)

    async def authenticate(self, api_key: str, per_minute: int) -> tuple[str, int | None] | None:
        """The key's user and, if this request puts them over the per-minute rate, the
        seconds until the next minute; None for an unknown key. One round trip (a Lua
        script)."""
        window, retry_at = _minute()
        found = await self._authenticate(
            keys=[self.store.key("key", hash_key(api_key))],
            args=[self.store.key("rate", ""), window],
        )
        if not found:
            return None
        return found[0].decode(), retry_at if int(found[1]) > per_minute else None

    async def authenticated_job_view(
        self, api_key: str, per_minute: int, job_id: str
    ) -> tuple[str, int | None, JobView] | None:
        """authenticate() and job_view() in one round trip: (user, retry, view), None for
        an unknown key. The status route, the one clients poll, then costs what a bare
        read of one hash costs. The view's job has every field but `result` (None): the
        status view does not show it, and reading it was most of the route's time."""
        window, retry_at = _minute()
        found = await self._authenticated_job_view(
            keys=[self.store.key("key", hash_key(api_key))],
            args=[self.store.key("rate", ""), window, self.store.key("job", job_id)],
        )
        if not found:
            return None
        user, count, values, last, beating = json.loads(found)
        raw = {f: v.encode() for f, v in zip(STATUS_KEYS, values, strict=True) if v is not False}
        latest = decode_point(last) if last else None
        view = JobView(Job.from_hash(job_id, raw), latest, bool(beating))
        return user, retry_at if int(count) > per_minute else None, view

    async def key_holder(self, api_key: str) -> str | None:
        """The user the key belongs to now, None if it is unknown (rotated, the user
        deleted); no rate count: for re-checking a key on a long-lived request."""
        holder = await self.r.get(self.store.key("key", hash_key(api_key)))
        return holder.decode() if holder is not None else None

    async def job_ids(self, owner: str) -> list[str]:
        """The owner's jobs, newest first."""
        ids = await self.r.zrevrange(self.store.key("user", owner, "jobs"), 0, -1)
        return [j.decode() for j in ids]

    async def job_view(self, job_id: str) -> JobView:
        """The job, its latest metric point and whether its worker beats, in one round
        trip."""
        key = self.store.key
        async with self.r.pipeline(transaction=False) as pipe:
            pipe.hgetall(key("job", job_id))
            pipe.xrevrange(key("job", job_id, "metrics"), count=1)
            pipe.exists(key("job", job_id, "heartbeat"))
            raw, last, beating = await pipe.execute()
        return JobView(Job.from_hash(job_id, raw), latest_point(last), bool(beating))
