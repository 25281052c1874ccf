"""Server-side dataset paths: only under the operator's AIMC_DATASET_DIRS, in the API
and again in the worker; `aimc run` on one's own machine is unaffected."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from aimc_spec.spec import DATASET_ROOTS, parse_spec
from aimc_spec.vocabulary import RUN_JOB_TASK
from aimc_store.store import JobStore
from service.app import create_app
from service.settings import Settings
from tests.api.test_api import ADMIN, new_user
from tests.conftest import queue_of, store_url
from tests.engine.test_datasets import save_npz

REFUSED = "only under the directories its operator allows"


@pytest.fixture
def layout(tmp_path: Path) -> dict[str, Path]:
    """allowed/ with a good .npz and a symlink out; a secret .npz beside it."""
    allowed = tmp_path / "allowed"
    allowed.mkdir()
    good = save_npz(allowed / "good.npz")
    secret = save_npz(tmp_path / "secret.npz")
    (allowed / "link.npz").symlink_to(secret)
    (allowed / "outside").symlink_to(tmp_path)
    return {"allowed": allowed, "good": good, "secret": secret}


def _client(store: JobStore, dirs: str) -> TestClient:
    settings = Settings(
        redis_url=store_url(store), key_prefix=store.p, admin_key=ADMIN, dataset_dirs=dirs
    )
    return TestClient(create_app(settings))


@pytest.fixture
def confined(worker_store: JobStore, layout: dict[str, Path]) -> Iterator[TestClient]:
    with _client(worker_store, str(layout["allowed"])) as client:
        yield client


def _submit(client: TestClient, auth: dict[str, str], dataset: dict[str, str]) -> dict:
    r = client.post("/v1/jobs", json={"dataset": dataset}, headers=auth)
    return {"status": r.status_code, **r.json()}


def test_each_escape_is_refused_naming_only_the_field(
    confined: TestClient, layout: dict[str, Path]
) -> None:
    auth = new_user(confined, "mallory")
    allowed = layout["allowed"]
    escapes = [
        {"name": "npz", "path": str(layout["secret"])},  # absolute, exists
        {"name": "npz", "path": "/no/such/file.npz"},  # absolute, absent: same answer
        {"name": "npz", "path": f"{allowed}/../secret.npz"},  # ..
        {"name": "npz", "path": "../secret.npz"},  # relative ..
        {"name": "npz", "path": str(allowed / "link.npz")},  # symlinked file
        {"name": "npz", "path": str(allowed / "outside" / "secret.npz")},  # symlinked folder
        {"name": "mnist_idx", "path": "/etc"},  # a system folder
        {"name": "cifar10", "path": "/etc"},
    ]
    details = set()
    for dataset in escapes:
        r = _submit(confined, auth, dataset)
        assert r["status"] == 422, dataset
        assert [e["loc"] for e in r["errors"]] == ["dataset.path"]
        assert REFUSED in r["detail"]
        details.add(r["detail"])
    assert len(details) == 1  # one answer whatever the path: nothing about server files
    ok = _submit(confined, auth, {"name": "npz", "path": "good.npz"})
    assert ok["status"] == 202 and ok["spec"]["dataset"]["path"] == str(layout["good"].resolve())
    confined.post(f"/v1/jobs/{ok['id']}/cancel", headers=auth)


def test_sweep_overrides_are_confined_too(confined: TestClient, layout: dict[str, Path]) -> None:
    auth = new_user(confined, "mallory")
    r = confined.post(
        "/v1/sweeps",
        json={
            "spec": {"dataset": {"name": "npz", "path": str(layout["good"])}},
            "grid": {"dataset.path": [str(layout["good"]), str(layout["secret"])]},
        },
        headers=auth,
    )
    assert r.status_code == 422 and REFUSED in r.json()["detail"]
    assert "dataset.path" in r.json()["errors"][0]["loc"]


def test_no_directories_by_default(worker_store: JobStore, layout: dict[str, Path]) -> None:
    with _client(worker_store, "") as client:
        auth = new_user(client, "trent")
        r = _submit(client, auth, {"name": "npz", "path": str(layout["good"])})
        assert r["status"] == 422 and REFUSED in r["detail"]


def test_the_worker_checks_again(worker_store: JobStore, layout: dict[str, Path]) -> None:
    """A spec that reached the queue some other way (an API with other settings) fails in
    a worker that allows no directory, naming the field and nothing about the file."""
    job_id = worker_store.jobs.create(
        "mallory", {"dataset": {"name": "npz", "path": str(layout["secret"])}}
    )
    from worker.app import app

    app.send_task(RUN_JOB_TASK, args=[job_id], queue=queue_of(worker_store.p))
    deadline = time.monotonic() + 60
    while (job := worker_store.jobs.get(job_id)) and job.state not in ("failed", "succeeded"):
        assert time.monotonic() < deadline
        time.sleep(0.2)
    assert job is not None and job.state == "failed"
    assert job.error.startswith("dataset.path: ") and REFUSED in job.error
    assert "Traceback" not in job.error


def test_local_runs_read_any_path(layout: dict[str, Path]) -> None:
    assert DATASET_ROOTS.get() is None
    spec = parse_spec({"dataset": {"name": "npz", "path": str(layout["secret"])}})
    assert spec.dataset.path == str(layout["secret"])
