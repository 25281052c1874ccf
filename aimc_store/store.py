"""JobStore: the store's parts on one Redis client, each a component named for what it
holds (`store.jobs`, `store.users`, `store.metrics`, `store.artifacts`, `store.datasets`,
`store.sweeps`, `store.leases`, `store.stats`), and how a store is opened."""

from __future__ import annotations

from functools import cached_property
from pathlib import Path

import redis
from redis.backoff import ExponentialBackoff
from redis.retry import Retry

from aimc_store.artifacts import Artifacts
from aimc_store.base import Backend
from aimc_store.datasets import Datasets
from aimc_store.jobs import Jobs
from aimc_store.leases import Leases
from aimc_store.metrics import Metrics
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


class JobStore(Backend):
    """Typed access to jobs, metrics, artifacts, users, datasets and sweeps in Redis: one
    component per resource, all on this Backend (its client, key names and scripts). A
    part that needs another is handed it (deleting a job removes its artifact files,
    deleting a user cancels their jobs, a sweep is admitted with its jobs)."""

    # each part made at first use, on this store's client (typed, and no second copy of
    # Backend's constructor here)
    @cached_property
    def artifacts(self) -> Artifacts:
        return Artifacts(self)

    @cached_property
    def jobs(self) -> Jobs:
        return Jobs(self, self.artifacts)

    @cached_property
    def users(self) -> Users:
        return Users(self, self.jobs)

    @cached_property
    def metrics(self) -> Metrics:
        return Metrics(self)

    @cached_property
    def datasets(self) -> Datasets:
        return Datasets(self)

    @cached_property
    def sweeps(self) -> Sweeps:
        return Sweeps(self, self.jobs)

    @cached_property
    def leases(self) -> Leases:
        return Leases(self)

    @cached_property
    def stats(self) -> Stats:
        return Stats(self)

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
