"""/healthz and /readyz (service/routes/health.py): liveness needs nothing; readiness
needs Redis and a worker, and says which of them did not answer."""

from __future__ import annotations

import time

from fastapi.testclient import TestClient

from aimc_store.store import JobStore
from service.app import create_app
from service.serve import free_port
from service.settings import Settings


def test_ready_when_redis_and_a_worker_answer(worker_store: JobStore, redis_url: str) -> None:
    settings = Settings(redis_url=redis_url, key_prefix=worker_store.p)
    with TestClient(create_app(settings)) as c:
        assert c.get("/healthz").json() == {"status": "ok"}
        deadline = time.monotonic() + 60
        ready = c.get("/readyz")
        while ready.status_code != 200 and time.monotonic() < deadline:
            time.sleep(0.5)  # the session's worker may still be starting
            ready = c.get("/readyz")
        assert ready.status_code == 200 and ready.json() == {"redis": True, "worker": True}


def test_alive_but_not_ready_without_redis() -> None:
    """Nothing listens at the Redis address: the process is alive (200) and not ready
    (503), with every check false (the broker, on the same Redis, cannot reach a worker)."""
    nowhere = f"redis://127.0.0.1:{free_port()}/0"
    with TestClient(create_app(Settings(redis_url=nowhere))) as c:
        alive = c.get("/healthz")
        assert alive.status_code == 200 and alive.json() == {"status": "ok"}
        ready = c.get("/readyz")
        assert ready.status_code == 503 and ready.json() == {"redis": False, "worker": False}
