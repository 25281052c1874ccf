"""Ownership dependencies (service/deps.py: OwnedJob, OwnedSweep, OwnedDataset): another
user's job, sweep or dataset answers exactly as a missing one does, so a 404 never
reveals that it exists."""

from __future__ import annotations

import io
import uuid
from collections.abc import Iterator

import numpy as np
import pytest
import redis
from fastapi.testclient import TestClient

from aimc_store.records import SweepMember
from service.app import create_app
from service.settings import Settings
from tests.conftest import forget_prefix

ADMIN = "deps-admin"


@pytest.fixture(scope="module")
def client(redis_url: str) -> Iterator[TestClient]:
    """The app on a key prefix of its own; nothing here runs a job, so no worker."""
    prefix = f"test-deps-{uuid.uuid4().hex[:8]}:"
    settings = Settings(redis_url=redis_url, key_prefix=prefix, admin_key=ADMIN)
    with TestClient(create_app(settings)) as c:
        yield c
    forget_prefix(redis.Redis.from_url(redis_url), prefix)


def new_user(client: TestClient, name: str) -> tuple[dict[str, str], str]:
    """(auth header, user id) of a new user."""
    r = client.post(
        "/v1/users",
        json={"name": f"{name}-{uuid.uuid4().hex[:6]}"},
        headers={"Authorization": f"Bearer {ADMIN}"},
    )
    assert r.status_code == 201, r.text
    return {"Authorization": f"Bearer {r.json()['api_key']}"}, r.json()["id"]


def not_found(noun: str, name: str) -> dict[str, object]:
    """The one body of every 404 for an object the caller may not see."""
    detail = f"no {noun} {name!r}"
    return {"type": "about:blank", "title": "Not Found", "status": 404, "detail": detail}


def assert_hidden(client: TestClient, method: str, path: str, auth: dict[str, str]) -> dict:
    """The problem body of a request that must answer 404."""
    r = client.request(method, path, headers=auth)
    assert r.status_code == 404 and r.headers["content-type"] == "application/problem+json"
    return r.json()  # type: ignore[no-any-return]


def test_another_users_job_is_missing_alike(client: TestClient) -> None:
    (alice, alice_id), (bob, _) = new_user(client, "alice"), new_user(client, "bob")
    store = client.app.state.store  # type: ignore[attr-defined]
    job_id = store.jobs.create(alice_id, {"name": "alice's"})
    missing = uuid.uuid4().hex
    assert client.get(f"/v1/jobs/{job_id}", headers=alice).status_code == 200
    for method, suffix in [("GET", ""), ("GET", "/result"), ("POST", "/cancel"), ("DELETE", "")]:
        foreign = assert_hidden(client, method, f"/v1/jobs/{job_id}{suffix}", bob)
        assert foreign == not_found("job", job_id)
        absent = assert_hidden(client, method, f"/v1/jobs/{missing}{suffix}", bob)
        assert absent == not_found("job", missing)
    assert client.get(f"/v1/jobs/{job_id}", headers=alice).json()["state"] == "queued"


def test_another_users_sweep_is_missing_alike(client: TestClient) -> None:
    (alice, alice_id), (bob, _) = new_user(client, "alice"), new_user(client, "bob")
    store = client.app.state.store  # type: ignore[attr-defined]
    job_id = store.jobs.create(alice_id, {"name": "a member"})
    members = [SweepMember(job=job_id, overrides={"seed": 1})]
    sweep_id = store.sweeps.create(alice_id, "alice's", {"seed": [1]}, members)
    missing = "sw_" + uuid.uuid4().hex[:16]
    mine = client.get(f"/v1/sweeps/{sweep_id}", headers=alice)
    assert mine.status_code == 200 and mine.json()["jobs"][0]["id"] == job_id
    for suffix in ("", "/plot.png"):
        foreign = assert_hidden(client, "GET", f"/v1/sweeps/{sweep_id}{suffix}", bob)
        assert foreign == not_found("sweep", sweep_id)
        absent = assert_hidden(client, "GET", f"/v1/sweeps/{missing}{suffix}", bob)
        assert absent == not_found("sweep", missing)
    assert client.get("/v1/sweeps", headers=bob).json() == []


def test_another_users_dataset_is_missing_alike(client: TestClient) -> None:
    """Bob's answer about Alice's dataset is, byte for byte, Alice's own once it is gone;
    his DELETE removes nothing."""
    (alice, _), (bob, _) = new_user(client, "alice"), new_user(client, "bob")
    rng = np.random.default_rng(0)
    x = rng.normal(size=(40, 3)).astype(np.float32)
    y = (x[:, 0] > 0).astype(np.int64)
    npz = io.BytesIO()
    np.savez(npz, x_train=x[:30], y_train=y[:30], x_test=x[30:], y_test=y[30:])
    upload = client.post(
        "/v1/datasets?name=alices",
        content=npz.getvalue(),
        headers={**alice, "Content-Type": "application/octet-stream"},
    )
    assert upload.status_code == 201, upload.text
    path = f"/v1/datasets/{upload.json()['id']}"
    foreign = [assert_hidden(client, method, path, bob) for method in ("GET", "DELETE")]
    assert client.get(path, headers=alice).json() == upload.json()
    assert client.get("/v1/datasets", headers=bob).json() == []
    assert client.delete(path, headers=alice).status_code == 204
    gone = [assert_hidden(client, method, path, alice) for method in ("GET", "DELETE")]
    assert foreign == gone == [not_found("dataset", upload.json()["id"])] * 2
