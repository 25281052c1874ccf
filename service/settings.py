"""Service settings (pydantic-settings): read from the environment, `AIMC_` prefix."""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path

from pydantic import AliasChoices, Field
from pydantic_settings import BaseSettings, SettingsConfigDict


class Settings(BaseSettings):
    """Everything the API and the workers are configured by; documented in the README."""

    model_config = SettingsConfigDict(env_prefix="AIMC_", extra="ignore")

    redis_url: str = Field(
        "redis://127.0.0.1:6379/0",
        validation_alias=AliasChoices("REDIS_URL", "AIMC_REDIS_URL"),
        description="Broker, result backend and job store.",
    )
    admin_key: str | None = Field(None, description="Key that may create users.")
    data_dir: Path = Field(Path("~/.aimc").expanduser(), description="Artifacts and state.")
    key_prefix: str = Field("aimc:", description="Prefix of every Redis key (tests isolate).")
    max_running_jobs: int = Field(2, ge=1, description="Per user, running at once.")
    max_queued_jobs: int = Field(20, ge=1, description="Per user, waiting at once.")
    requests_per_minute: int = Field(600, ge=1, description="Per user.")
    max_job_cost: float = Field(
        5e12, gt=0, description="Ceiling on samples x parameters of one job."
    )
    retention_seconds: int = Field(7 * 24 * 3600, ge=60, description="Finished jobs' lifetime.")
    max_body_bytes: int = Field(1_000_000, ge=1024, description="Largest request body.")
    max_dataset_bytes: int = Field(
        64 * 1024 * 1024, ge=1024, description="Largest .npz upload (POST /v1/datasets)."
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
    artifact_dir: Path | None = Field(
        None,
        description=(
            "The artifact store: a directory (for several hosts, a shared mount at the "
            "same place on API and workers) for artifacts above artifact_inline_max_bytes. "
            "Unset: every artifact stays in Redis (a worker that does not share the store). "
            "`aimc serve` sets DATA_DIR/artifacts."
        ),
    )
    artifact_inline_max_bytes: int = Field(
        256 * 1024, ge=0, description="Artifacts up to this size stay in Redis."
    )
    dataset_dirs: str = Field(
        "",
        description=(
            "Directories (separated by ':') under which a job spec's server-side dataset "
            "paths (npz, mnist_idx) may lie, after resolving '..' and symlinks; none by "
            "default, so remote users can read no server file. Uploads need none."
        ),
    )
    worker_max_memory_mib: int = Field(
        4096, ge=64, description="A worker pool process above this resident size is replaced."
    )

    def dataset_roots(self) -> tuple[Path, ...]:
        """The allowed dataset directories (aimc_spec.spec.DATASET_ROOTS)."""
        return tuple(Path(d).expanduser() for d in self.dataset_dirs.split(":") if d.strip())


@lru_cache
def get_settings() -> Settings:
    """The process's settings, built once on first use (never at import time)."""
    return Settings()
