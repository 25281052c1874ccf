"""The API's settings: the store's (aimc_store.settings) and the limits only the API
enforces, read from the environment (`AIMC_` prefix)."""

from __future__ import annotations

from functools import lru_cache

from pydantic import Field

from aimc_store.settings import StoreSettings


class Settings(StoreSettings):
    """Everything the API is configured by; documented in settings.md."""

    admin_key: str | None = Field(None, description="Key that may create users.")
    max_queued_jobs: int = Field(20, ge=1, description="Per user, waiting at once.")
    requests_per_minute: int = Field(600, ge=1, description="Per user.")
    max_job_cost: float = Field(
        5e12, gt=0, description="Ceiling on samples x parameters of one job."
    )
    max_job_memory_mib: int = Field(
        4096,
        ge=16,
        description=(
            "Ceiling on a job's estimated peak memory (aimc_spec.resources); set it at or "
            "under the workers' AIMC_JOB_MAX_MEMORY_MIB, the operating-system limit of "
            "each job's process."
        ),
    )
    max_job_seconds: float = Field(
        4 * 3600,
        gt=0,
        description="Ceiling on a job's estimated run time at worker_gflops.",
    )
    max_action_seconds: float = Field(
        5.0,
        gt=0,
        description=(
            "Ceiling on one action's estimated time at worker_gflops (a micro-batch's "
            "backward through the model): a cancel acts between actions, so within it."
        ),
    )
    worker_gflops: float = Field(
        10.0, gt=0, description="A worker's speed (GFLOP/s) the run-time estimate assumes."
    )
    max_body_bytes: int = Field(1_000_000, ge=1024, description="Largest request body.")
    max_dataset_bytes: int = Field(
        64 * 1024 * 1024, ge=1024, description="Largest .npz upload (POST /v1/datasets)."
    )
    max_user_dataset_bytes: int = Field(
        256 * 1024 * 1024,
        ge=0,
        description="Per user: the uploads kept at once, in bytes (413 past it).",
    )
    max_user_artifact_bytes: int = Field(
        1024 * 1024 * 1024,
        ge=0,
        description=(
            "Per user: the artifacts of their kept jobs, in bytes; past it new jobs are "
            "refused (422) until finished jobs are deleted or expire."
        ),
    )
    upload_checks_at_once: int = Field(
        2,
        ge=1,
        description=(
            "Uploads whose arrays are unpacked and checked at the same time, each in a "
            "process of its own (each may take 4x max_dataset_bytes of memory); more "
            "wait their turn."
        ),
    )


@lru_cache
def get_settings() -> Settings:
    """The process's settings, built once on first use (never at import time)."""
    return Settings()
