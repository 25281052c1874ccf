"""JobStore: the resources of the store on one Redis client, and the operations that
span several of them (deleting a job with its files, a user with their live jobs)."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import redis
from redis.backoff import ExponentialBackoff
from redis.retry import Retry

from aimc_store.artifacts import Artifacts
from aimc_store.datasets import Datasets
from aimc_store.jobs import Jobs
from aimc_store.keys import LIVE
from aimc_store.metrics import Metrics
from aimc_store.records import Job, Sweep, SweepMember
from aimc_store.runs import Runs
from aimc_store.settings import INLINE_MAX_BYTES, StoreSettings
from aimc_store.stats import Stats
from aimc_store.sweeps import Sweeps
from aimc_store.users import Users

RECONNECT_CAP_S = 1.0  # longest pause between two reconnect attempts of a patient store


def fail_fast() -> Retry:
    """The API's retry on a lost Redis connection: two quick tries (a dropped idle
    connection), then the error, which the API answers with 503 + Retry-After at once
    instead of holding the request for seconds (redis-py's default: 10 tries)."""
    return Retry(ExponentialBackoff(cap=0.1, base=0.02), 2)


class JobStore(Users, Jobs, Metrics, Runs, Artifacts, Datasets, Sweeps, Stats):
    """Typed access to jobs, metrics, artifacts, users, datasets and sweeps in Redis."""

    @classmethod
    def from_url(
        cls,
        url: str,
        prefix: str = "aimc:",
        retention_s: int | None = None,
        *,
        patient_s: float = 0.0,
        artifact_dir: Path | None = None,
        inline_max_bytes: int = INLINE_MAX_BYTES,
    ) -> JobStore:
        """A store on `url`. With `patient_s`, every command waits up to about that long
        for an unreachable Redis to come back (a restart) instead of failing: what a
        running job wants; the API fails fast instead and answers 503."""
        retry = fail_fast()
        if patient_s > 0:
            retries = max(1, int(patient_s / RECONNECT_CAP_S))
            retry = Retry(ExponentialBackoff(cap=RECONNECT_CAP_S, base=0.05), retries)
        client = redis.Redis.from_url(url, decode_responses=False, retry=retry)
        return cls(
            client,
            prefix,
            retention_s,
            artifact_dir=artifact_dir,
            inline_max_bytes=inline_max_bytes,
        )

    @classmethod
    def from_settings(cls, settings: StoreSettings, *, patient_s: float = 0.0) -> JobStore:
        """The store the settings describe (the API's and every worker's alike)."""
        return cls.from_url(
            settings.redis_url,
            settings.key_prefix,
            settings.retention_seconds,
            patient_s=patient_s,
            artifact_dir=settings.artifact_dir,
            inline_max_bytes=settings.artifact_inline_max_bytes,
        )

    def admit_sweep(
        self,
        owner: str,
        name: str,
        grid: dict[str, Any],
        points: Sequence[tuple[dict[str, Any], dict[str, Any]]],
    ) -> tuple[Sweep, list[Job]]:
        """Queue one job per (spec, overrides) point, no limit checked (the caller checked
        the room for all of them), and record the sweep of them: one MULTI/EXEC, so a
        Redis that fails halfway leaves all of it or nothing, never queued jobs without
        their sweep (which the reaper would run, and a retried request queue again). The
        sweep and its jobs as recorded."""
        pipe = self.r.pipeline()
        jobs = [self._new_job(owner, spec) for spec, _ in points]
        for job in jobs:
            self._create_job(pipe, job, None)
        members = [SweepMember(j.id, over) for j, (_, over) in zip(jobs, points, strict=True)]
        sweep = self._record_sweep(pipe, owner, name, grid, members)
        pipe.execute()
        return sweep, jobs

    def delete_job(self, job_id: str) -> None:
        """Remove a job, its streams, artifacts (files too) and its place in its owner's
        sets."""
        job = self.get_job(job_id)
        if job is None:
            return
        self.remove_artifact_files(job_id)
        pipe = self.r.pipeline()
        pipe.delete(*self._job_keys(job_id))
        pipe.zrem(self.key("user", job.owner, "jobs"), job_id)
        for live in LIVE:
            pipe.srem(self.key("user", job.owner, "in", live), job_id)
            pipe.srem(self.key("in", live), job_id)
        pipe.execute()

    def delete_user(self, user_id: str) -> bool:
        """Remove the user and revoke their key; their live jobs are asked to cancel (jobs
        and datasets then expire with the retention). False if no such user."""
        record = self._text_hash(self.key("user", user_id))
        if record is None:
            return False
        live: set[str] = set()
        for state in LIVE:
            live |= {j.decode() for j in self.r.smembers(self.key("user", user_id, "in", state))}
        pipe = self.r.pipeline()
        if "key" in record:
            pipe.delete(self.key("key", record["key"]))
        pipe.delete(self.key("user", user_id))
        pipe.delete(self.key("username", record["name"]))
        pipe.zrem(self.key("users"), user_id)
        for job_id in live:
            pipe.set(self.key("job", job_id, "cancel"), 1)
        pipe.execute()
        for job_id in live:
            job = self.get_job(job_id)
            if job is not None and job.state == "queued":
                self.set_state(job_id, "cancelled")
        return True
