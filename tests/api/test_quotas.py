"""Per-user storage limits and a Redis that is full: uploads and artifacts are counted
against settings that name themselves in the answer, and a Redis at its maxmemory
refuses writes with a 507, never a 500 (issue 23, Must reach 4)."""

from __future__ import annotations

import io
import subprocess
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import httpx
import numpy as np
import pytest
from fastapi.testclient import TestClient

from aimc_store.datasets import StorageFull
from aimc_store.store import JobStore
from service.app import create_app
from service.serve import free_port, redis_binary, wait_for_port
from service.settings import Settings
from tests.conftest import serving, store_url

ADMIN = "quota-admin"
SHORT = {"training": {"steps": 20, "micro_batch_size": 8, "eval_every": 10}}


def npz(n: int = 400, features: int = 16, seed: int = 0) -> bytes:
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, features)).astype(np.float32)
    y = np.arange(n) % 2
    buffer = io.BytesIO()
    split = n * 3 // 4
    np.savez(buffer, x_train=x[:split], y_train=y[:split], x_test=x[split:], y_test=y[split:])
    return buffer.getvalue()


def new_user(client: TestClient | httpx.Client, name: str) -> dict[str, str]:
    r = client.post(
        "/v1/users",
        json={"name": f"{name}-{uuid.uuid4().hex[:6]}"},
        headers={"Authorization": f"Bearer {ADMIN}"},
    )
    assert r.status_code == 201, r.text
    return {"Authorization": f"Bearer {r.json()['api_key']}"}


def test_the_store_keeps_an_upload_only_within_its_owners_limit(plain_store: JobStore) -> None:
    info = {"n_train": 1, "n_test": 1, "sample_shape": [1], "classes": 2, "x_dtype": "f4"}
    kept = plain_store.datasets.put("una", "a", b"x" * 600, info, limit=1000)
    with pytest.raises(StorageFull) as full:
        plain_store.datasets.put("una", "b", b"x" * 600, info, limit=1000)
    assert (full.value.used, full.value.size, full.value.limit) == (600, 600, 1000)
    assert plain_store.datasets.ids("una") == [kept] and plain_store.datasets.usage("una") == 600
    plain_store.datasets.put("vic", "b", b"x" * 600, info, limit=1000)  # another user's own


def test_dataset_storage_is_limited_per_user(worker_store: JobStore) -> None:
    data = npz()
    settings = Settings(
        redis_url=store_url(worker_store),
        key_prefix=worker_store.p,
        admin_key=ADMIN,
        max_user_dataset_bytes=int(len(data) * 2.5),
    )
    with TestClient(create_app(settings)) as client:
        auth = new_user(client, "dee")
        ids = [client.post("/v1/datasets", content=data, headers=auth).json()["id"] for _ in "ab"]
        r = client.post("/v1/datasets", content=data, headers=auth)
        assert r.status_code == 413 and r.headers["content-type"] == "application/problem+json"
        assert "max_user_dataset_bytes" in r.json()["detail"], r.json()
        assert r.json()["errors"][0]["loc"] == "file"
        # someone else's storage is their own
        assert client.post("/v1/datasets", content=data, headers=new_user(client, "eve")).is_success
        assert client.delete(f"/v1/datasets/{ids[0]}", headers=auth).status_code == 204
        assert client.post("/v1/datasets", content=data, headers=auth).status_code == 201


def test_artifact_storage_is_limited_per_user(worker_store: JobStore) -> None:
    settings = Settings(
        redis_url=store_url(worker_store),
        key_prefix=worker_store.p,
        admin_key=ADMIN,
        max_user_artifact_bytes=1000,
        artifact_dir=worker_store.artifact_dir,
        artifact_inline_max_bytes=worker_store.inline_max_bytes,
    )
    with TestClient(create_app(settings)) as client:
        auth = new_user(client, "fay")
        job = client.post("/v1/jobs", json=SHORT, headers=auth).json()["id"]
        deadline = time.monotonic() + 120
        while client.get(f"/v1/jobs/{job}", headers=auth).json()["state"] != "succeeded":
            assert time.monotonic() < deadline
            time.sleep(0.2)
        for path, body in (("/v1/jobs", SHORT), ("/v1/sweeps", {"grid": {"seed": [1, 2]}})):
            r = client.post(path, json=body, headers=auth)
            assert r.status_code == 422 and "max_user_artifact_bytes" in r.json()["detail"]
            assert r.json()["errors"][0]["loc"] == "artifacts"
        assert client.delete(f"/v1/jobs/{job}", headers=auth).status_code == 204
        again = client.post("/v1/jobs", json=SHORT, headers=auth)
        assert again.status_code == 202
        client.post(f"/v1/jobs/{again.json()['id']}/cancel", headers=auth)


@pytest.fixture
def small_redis(tmp_path: Path) -> Iterator[str]:
    """A Redis of this test's own at a 3 MB maxmemory that never evicts (as `aimc serve`
    runs its own, smaller)."""
    port = free_port()
    argv = [redis_binary(), "--bind", "127.0.0.1", "--port", str(port), "--dir", str(tmp_path)]
    argv += ["--save", "", "--maxmemory", "3mb", "--maxmemory-policy", "noeviction"]
    server = subprocess.Popen(argv, stdout=subprocess.DEVNULL)
    try:
        wait_for_port(port)
        yield f"redis://127.0.0.1:{port}/0"
    finally:
        server.kill()
        server.wait()


def test_a_full_redis_refuses_writes_with_507_and_keeps_what_it_has(small_redis: str) -> None:
    settings = Settings(redis_url=small_redis, admin_key=ADMIN, max_user_dataset_bytes=10**9)
    with TestClient(create_app(settings)) as client:
        auth = new_user(client, "gil")
        data = npz(n=2000)  # ~100 kB
        codes = []
        while not codes or codes[-1].status_code != 507:
            assert len(codes) < 60, [r.status_code for r in codes]
            codes.append(client.post("/v1/datasets", content=data, headers=auth))
        assert {r.status_code for r in codes} == {201, 507}
        assert codes[-1].headers["content-type"] == "application/problem+json"
        assert "maxmemory" in codes[-1].json()["detail"]
        listed = client.get("/v1/datasets", headers=auth)  # reads still work
        assert listed.status_code == 200
        assert len(listed.json()) == [r.status_code for r in codes].count(201)


def test_healthz_answers_within_100_ms_while_five_uploads_are_checked(
    worker_store: JobStore,
) -> None:
    """Checking an upload stalled the event loop (five small uploads that unpack to
    186 MiB each held /healthz 2.6 s); now the checks run in threads."""
    settings = Settings(
        redis_url=store_url(worker_store),
        key_prefix=worker_store.p,
        admin_key=ADMIN,
        max_dataset_bytes=64 * 1024 * 1024,
        max_user_dataset_bytes=10**10,
    )
    rows = 186 * 1024 * 1024 // (4 * 1024)
    buffer = io.BytesIO()
    x = np.zeros((rows, 1024), np.float32)
    y = np.arange(rows) % 2
    np.savez_compressed(buffer, x_train=x, y_train=y, x_test=x[:10], y_test=y[:10])
    del x
    data = buffer.getvalue()
    assert len(data) < 2 * 1024 * 1024  # small upload, 186 MiB unpacked
    with serving(create_app(settings)) as url, httpx.Client(base_url=url, timeout=120) as http:
        auth = new_user(http, "hank")
        answers: list[int] = []

        def upload() -> None:
            answers.append(http.post("/v1/datasets", content=data, headers=auth).status_code)

        uploads = [threading.Thread(target=upload) for _ in range(5)]
        for u in uploads:
            u.start()
        latencies = []
        while any(u.is_alive() for u in uploads):
            start = time.perf_counter()
            assert http.get("/healthz").status_code == 200
            latencies.append(time.perf_counter() - start)
        for u in uploads:
            u.join()
    assert answers == [201] * 5, answers
    # a check on the event loop held every request for its whole 1.4-2.6 s; on a
    # loaded machine this process (server, uploads and probe share its GIL) is
    # also descheduled now and then for tens of ms: the 99th percentile answers
    # within 100 ms and no answer waits for a check
    latencies.sort()
    p99 = latencies[int(0.99 * (len(latencies) - 1))]
    assert len(latencies) > 5 and p99 < 0.1 and latencies[-1] < 1.0, latencies[-5:]
