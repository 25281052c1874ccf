"""The worker's settings: the store's (aimc_store.settings) and what only workers read,
from the environment (`AIMC_` prefix)."""

from __future__ import annotations

from functools import lru_cache

from pydantic import Field

from aimc_store.settings import StoreSettings


class WorkerSettings(StoreSettings):
    """Everything a worker is configured by; documented in settings.md."""

    max_running_jobs: int = Field(
        2, ge=1, description="Per user, running at once (workers park the rest)."
    )
    worker_nice: int = Field(
        10,
        ge=0,
        le=19,
        description=(
            "Niceness of worker processes: on a machine shared with the API, jobs yield "
            "the CPU to requests (0: same priority)."
        ),
    )
    job_max_memory_mib: int = Field(
        4096,
        ge=16,
        description=(
            "Memory a job's process may map beyond the worker's own (an operating-system "
            "limit, RLIMIT_AS): past it the job fails naming the limit, the worker lives."
        ),
    )
    worker_max_memory_mib: int = Field(
        4096, ge=64, description="A worker pool process above this resident size is replaced."
    )


@lru_cache
def get_settings() -> WorkerSettings:
    """The worker's settings, built once on first use (never at import time)."""
    return WorkerSettings()
