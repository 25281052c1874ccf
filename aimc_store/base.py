"""What every part of the store works on: one Redis client, the key names, the
registered scripts and how long finished things are kept (Backend), and the base of the
parts that JobStore exposes as `store.jobs`, `store.users`, ... (Part)."""

from __future__ import annotations

from pathlib import Path

import redis

from aimc_store.keys import Keys
from aimc_store.scripts import Scripts
from aimc_store.settings import INLINE_MAX_BYTES


class Backend:
    """The state the parts share; JobStore is one, so `store.r` and `store.key` reach it."""

    def __init__(
        self,
        client: redis.Redis,
        prefix: str = "aimc:",
        retention_s: int | None = None,
        *,
        artifact_dir: Path | None = None,
        inline_max_bytes: int = INLINE_MAX_BYTES,
    ) -> None:
        self.r = client
        self.p = prefix
        self.keys = Keys(prefix)
        self.retention_s = retention_s  # finished jobs expire after this; None keeps them
        # artifacts above inline_max_bytes go to files under artifact_dir (None: all in
        # Redis, for a worker on a host that does not share the artifact store)
        self.artifact_dir = artifact_dir
        self.inline_max_bytes = inline_max_bytes
        self.scripts = Scripts(client)

    def key(self, *parts: str) -> str:
        """The full Redis key of `parts` (e.g. "job", id, "metrics") under the prefix."""
        return self.keys(*parts)

    def text_hash(self, key: str) -> dict[str, str] | None:
        """A hash of text fields, decoded; None if the key does not exist."""
        raw = self.r.hgetall(key)
        return {k.decode(): v.decode() for k, v in raw.items()} if raw else None


class Part:
    """One part of the store (its jobs, users, ...): the methods of one resource, on the
    Backend that all parts of one JobStore share."""

    def __init__(self, backend: Backend) -> None:
        self.backend = backend
        self.r = backend.r
        self.keys = backend.keys
        self.scripts = backend.scripts

    def key(self, *parts: str) -> str:
        """The full Redis key of `parts` under the prefix (Backend.key)."""
        return self.keys(*parts)
