"""Idempotency-Key on the POSTs that queue work (a job, a sweep): a request sent again
with the same key and body gets what the first one made instead of queuing it twice (a
client that lost the answer, a study resumed after a crash); the same key with another
body is a 409. Keys are the caller's own and kept IDEMPOTENCY_TTL_S."""

from __future__ import annotations

import hashlib
import json
from typing import Any

from aimc_store.store import JobStore
from service.errors import ProblemError

IDEMPOTENCY_TTL_S = 24 * 3600


def body_digest(body: Any) -> str:
    """The request's body as compared between uses of one key (JSON, keys sorted)."""
    return hashlib.sha256(json.dumps(body, sort_keys=True).encode()).hexdigest()


def made_before(store: JobStore, user: str, key: str | None, digest: str) -> str | None:
    """The id of what the first request with this key made (a job's or a sweep's); None
    without a key or on its first use. 409 if that request's body was another."""
    if not key:
        return None
    seen = store.jobs.idempotent(user, key)
    if seen is None:
        return None
    if seen[0] != digest:
        raise ProblemError(409, "Conflict", "Idempotency-Key reused with another body")
    return seen[1]


def remember(store: JobStore, user: str, key: str | None, digest: str, made: str) -> None:
    """Keep what a request with this key made, for its repeats."""
    if key:
        store.jobs.remember_idempotent(user, key, digest, made, IDEMPOTENCY_TTL_S)
