"""Settings the API and the workers both read (pydantic-settings, `AIMC_` prefix): where
the store is and how it keeps things. service.settings and worker.settings add what
only one of them reads."""

from __future__ import annotations

import os
from pathlib import Path

from pydantic import AliasChoices, Field
from pydantic_settings import BaseSettings, SettingsConfigDict

from aimc_spec.vocabulary import QUEUE

INLINE_MAX_BYTES = 256 * 1024  # larger artifacts go to the artifact store, if there is one


class StoreSettings(BaseSettings):
    """The store's settings; documented in settings.md."""

    model_config = SettingsConfigDict(env_prefix="AIMC_", extra="ignore")

    redis_url: str = Field(
        "redis://127.0.0.1:6379/0",
        validation_alias=AliasChoices("REDIS_URL", "AIMC_REDIS_URL"),
        description="Broker, result backend and job store.",
    )
    data_dir: Path = Field(Path("~/.aimc").expanduser(), description="Artifacts and state.")
    key_prefix: str = Field(
        "aimc:",
        description=(
            "Prefix of every Redis key; also names the Celery queue (see `queue`), so "
            "deployments sharing a Redis under different prefixes stay apart."
        ),
    )
    retention_seconds: int = Field(7 * 24 * 3600, ge=60, description="Finished jobs' lifetime.")
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
        INLINE_MAX_BYTES, ge=0, description="Artifacts up to this size stay in Redis."
    )
    dataset_dirs: str = Field(
        "",
        description=(
            "Directories (separated by ':') under which a job spec's server-side dataset "
            "paths (npz, mnist_idx) may lie, after resolving '..' and symlinks; none by "
            "default, so remote users can read no server file. Uploads need none."
        ),
    )

    worker_slots: int = Field(
        default_factory=lambda: os.cpu_count() or 1,
        ge=1,
        description=(
            "Processes the jobs of one worker host may run at once: a simulated job takes "
            "1, a job with pipeline.executor processes one per stage (it waits in the queue "
            "until that many are free); the API refuses a processes job with more stages. "
            "Default: the machine's cores. Give API and workers the same value."
        ),
    )

    @property
    def queue(self) -> str:
        """The Celery queue the API sends this deployment's jobs to and its workers take
        them from: "aimc" (vocabulary.QUEUE) under the default prefix, "aimc." + the
        prefix under any other, so no two prefixes share a queue and none is named as
        Celery's or kombu's own keys. One queue for every prefix let a worker take a job
        of another deployment sharing its Redis, find no such job under its own prefix
        and drop the task."""
        return QUEUE if self.key_prefix == f"{QUEUE}:" else f"{QUEUE}.{self.key_prefix}"

    def dataset_roots(self) -> tuple[Path, ...]:
        """The allowed dataset directories (aimc_spec.spec.DATASET_ROOTS): the API
        refuses specs outside them, and the worker checks again before it reads."""
        return tuple(Path(d).expanduser() for d in self.dataset_dirs.split(":") if d.strip())
