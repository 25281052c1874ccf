"""The HTTP API end to end: real Redis, a real worker process, FastAPI's TestClient."""

from __future__ import annotations

import ast
import json
import re
import time
import uuid
from collections.abc import Iterator

import pytest
from fastapi.testclient import TestClient

from aimc_spec.vocabulary import QUEUE
from aimc_store.keys import hash_key
from aimc_store.records import SweepMember
from aimc_store.store import JobStore
from service.app import create_app
from service.settings import Settings
from tests.conftest import ROOT, forget_prefix, queue_of, store_url

ADMIN = "admin-secret"
SHORT = {"training": {"steps": 20, "micro_batch_size": 8, "eval_every": 10}}


@pytest.fixture(scope="module")
def client(worker_store: JobStore) -> Iterator[TestClient]:
    settings = Settings(
        redis_url=store_url(worker_store),
        key_prefix=worker_store.p,
        admin_key=ADMIN,
        max_body_bytes=20_000,
        artifact_dir=worker_store.artifact_dir,
        artifact_inline_max_bytes=worker_store.inline_max_bytes,
    )
    with TestClient(create_app(settings)) as c:
        yield c


def new_user(client: TestClient, name: str) -> dict[str, str]:
    """A fresh user's auth header; `name` gets a random suffix (names are unique)."""
    name = f"{name}-{uuid.uuid4().hex[:6]}"
    r = client.post("/v1/users", json={"name": name}, headers={"Authorization": f"Bearer {ADMIN}"})
    assert r.status_code == 201, r.text
    return {"Authorization": f"Bearer {r.json()['api_key']}"}


def wait(client: TestClient, job_id: str, auth: dict, states: tuple[str, ...]) -> dict:
    deadline = time.monotonic() + 90
    while time.monotonic() < deadline:
        job = client.get(f"/v1/jobs/{job_id}", headers=auth).json()
        if job["state"] in states:
            return job
        time.sleep(0.2)
    raise AssertionError(f"job still {job['state']}")


def test_submit_run_and_download(client: TestClient) -> None:
    auth = new_user(client, "alice")
    r = client.post("/v1/jobs", json=SHORT, headers=auth)
    assert r.status_code == 202 and r.headers["Location"] == f"/v1/jobs/{r.json()['id']}"
    job_id = r.json()["id"]
    with client.stream("GET", f"/v1/jobs/{job_id}/events", headers=auth) as stream:
        events = [line for line in stream.iter_lines() if line.startswith("event:")]
        steps = []
    job = wait(client, job_id, auth, ("succeeded", "failed"))
    assert job["state"] == "succeeded" and job["latest_metrics"]["step"] == 20
    assert events[0] == "event: state" and events[-1] == "event: state"
    assert events.count("event: metric") == 3
    points = client.get(f"/v1/jobs/{job_id}/metrics", headers=auth).json()
    steps = [p["step"] for p in points]
    assert steps == [0, 10, 20]
    assert [
        p["step"] for p in client.get(f"/v1/jobs/{job_id}/metrics?since=0", headers=auth).json()
    ] == [10, 20]
    csv_text = client.get(f"/v1/jobs/{job_id}/metrics", headers={**auth, "Accept": "text/csv"}).text
    assert (
        csv_text.splitlines()[0].startswith("step,samples,epoch")
        and len(csv_text.splitlines()) == 4
    )
    assert client.get(f"/v1/jobs/{job_id}/result", headers=auth).json()["updates"] == 20
    names = client.get(f"/v1/jobs/{job_id}/artifacts", headers=auth).json()
    assert "weights.safetensors" in names and "curves.png" in names
    png = client.get(f"/v1/jobs/{job_id}/artifacts/curves.png", headers=auth)
    assert png.headers["content-type"] == "image/png" and png.content[:4] == b"\x89PNG"
    assert client.delete(f"/v1/jobs/{job_id}", headers=auth).status_code == 204
    assert client.get(f"/v1/jobs/{job_id}", headers=auth).status_code == 404


def test_users_are_isolated_and_keys_checked(client: TestClient) -> None:
    alice, bob = new_user(client, "alice"), new_user(client, "bob")
    job_id = client.post("/v1/jobs", json=SHORT, headers=alice).json()["id"]
    for method, path in [("GET", ""), ("GET", "/metrics"), ("POST", "/cancel"), ("DELETE", "")]:
        r = client.request(method, f"/v1/jobs/{job_id}{path}", headers=bob)
        assert r.status_code == 404 and r.headers["content-type"] == "application/problem+json"
    assert client.get("/v1/jobs").status_code == 401
    assert client.get("/v1/jobs", headers={"Authorization": "Bearer nope"}).status_code == 401
    assert client.post("/v1/users", json={"name": "x"}, headers=alice).status_code == 401
    assert client.get("/v1/jobs", headers=bob).json()["jobs"] == []
    wait(client, job_id, alice, ("succeeded", "failed"))


def test_invalid_spec_oversized_body_and_pagination(client: TestClient) -> None:
    auth = new_user(client, "carol")
    r = client.post(
        "/v1/jobs", json={"optimizer": {"lr": -1}, "model": {"kind": "rnn"}}, headers=auth
    )
    assert r.status_code == 422
    assert {e["loc"] for e in r.json()["errors"]} == {"optimizer.lr", "model.kind"}
    big = {"name": "x", "extra": "y" * 30_000}
    assert (
        client.post(
            "/v1/jobs",
            content=json.dumps(big),
            headers={**auth, "Content-Type": "application/json"},
        ).status_code
        == 413
    )
    ids = []
    for i in range(3):
        spec = {**SHORT, "name": f"page-{i}"}
        job_id = client.post("/v1/jobs", json=spec, headers=auth).json()["id"]
        ids.append(job_id)
        client.post(f"/v1/jobs/{job_id}/cancel", headers=auth)
    page = client.get("/v1/jobs?limit=2", headers=auth).json()
    assert [j["id"] for j in page["jobs"]] == ids[::-1][:2] and page["next_cursor"]
    rest = client.get(f"/v1/jobs?limit=2&cursor={page['next_cursor']}", headers=auth).json()
    assert [j["id"] for j in rest["jobs"]] == ids[:1] and rest["next_cursor"] is None
    assert [j["name"] for j in client.get("/v1/jobs?name=page-1", headers=auth).json()["jobs"]] == [
        "page-1"
    ]


def test_status_route_answers_as_fastapi_would(client: TestClient) -> None:
    """GET /v1/jobs/{id} reads its path and header off the request itself (_PolledRoute,
    no FastAPI parameter solving): the same answers and OpenAPI parameters regardless."""
    auth = new_user(client, "polly")
    job_id = client.post("/v1/jobs", json=SHORT, headers=auth).json()["id"]
    path = f"/v1/jobs/{job_id}"
    missing = client.get(path)
    assert missing.status_code == 401 and missing.headers["WWW-Authenticate"] == "Bearer"
    assert missing.headers["content-type"] == "application/problem+json"
    assert client.get(path, headers={"Authorization": "Bearer nope"}).status_code == 401
    lower = {"Authorization": "bearer " + auth["Authorization"][7:]}
    assert client.get(path, headers=lower).json()["id"] == job_id
    assert client.get("/v1/jobs/nope", headers=auth).json()["detail"] == "no job 'nope'"
    assert client.put(path, headers=auth).status_code == 405
    operation = client.get("/openapi.json").json()["paths"]["/v1/jobs/{job_id}"]["get"]
    params = [(p["name"], p["in"], p["required"]) for p in operation["parameters"]]
    assert params == [("job_id", "path", True), ("authorization", "header", False)]
    client.post(f"{path}/cancel", headers=auth)


def test_405_allow_lists_every_method_of_the_path(client: TestClient) -> None:
    """A method the path lacks gets 405 with Allow naming exactly the methods the
    OpenAPI document gives that path (the routes sit in included routers, which
    app.routes no longer lists: the header was empty)."""
    paths = client.get("/openapi.json").json()["paths"]
    assert len(paths) > 10
    for template, operations in paths.items():
        path = re.sub(r"\{[^}]+\}", "x1", template)
        documented = {method.upper() for method in operations}
        unused = next(m for m in ("PATCH", "PUT", "DELETE", "POST") if m not in documented)
        answer = client.request(unused, path)
        assert answer.status_code == 405, (unused, path)
        assert answer.headers["content-type"] == "application/problem+json"
        assert set(answer.headers["Allow"].split(", ")) == documented, (unused, path)
    # the dashboard's assets are a mounted app: it names its own methods
    asset = client.put("/ui/static/app.js")
    assert asset.status_code == 405 and asset.headers["Allow"] == "GET, HEAD"


def test_idempotency_key(client: TestClient) -> None:
    auth = {**new_user(client, "dave"), "Idempotency-Key": "k-1"}
    first = client.post("/v1/jobs", json=SHORT, headers=auth)
    again = client.post("/v1/jobs", json=SHORT, headers=auth)
    assert first.json()["id"] == again.json()["id"]
    other = client.post("/v1/jobs", json={**SHORT, "seed": 3}, headers=auth)
    assert other.status_code == 409
    client.post(f"/v1/jobs/{first.json()['id']}/cancel", headers=auth)


def test_a_sweep_sent_again_with_its_idempotency_key_is_the_same_sweep(
    worker_store: JobStore,
) -> None:
    """Same key and body: the first sweep again, no job queued twice, even with the
    queued limit now full (a new sweep gets 429); same key, other body: 409; once a job
    of it is deleted, the same request queues a new sweep (a study replacing the job)."""
    settings = Settings(
        redis_url=store_url(worker_store),
        key_prefix=worker_store.p,
        admin_key=ADMIN,
        max_queued_jobs=2,
    )
    long = {"training": {"steps": 200_000, "micro_batch_size": 8, "eval_every": 50_000}}
    body = {"name": "twice", "spec": long, "grid": {"seed": [1, 2]}}
    with TestClient(create_app(settings)) as small:
        auth = new_user(small, "ivy")
        keyed = {**auth, "Idempotency-Key": "sweep-1"}
        try:
            first = small.post("/v1/sweeps", json=body, headers=keyed)
            assert first.status_code == 202
            again = small.post("/v1/sweeps", json=body, headers=keyed)
            assert again.status_code == 202 and again.json()["id"] == first.json()["id"]
            ids = [j["id"] for j in first.json()["jobs"]]
            assert [j["id"] for j in again.json()["jobs"]] == ids  # states may move on
            assert again.headers["Location"] == f"/v1/sweeps/{first.json()['id']}"
            assert small.post("/v1/sweeps", json=body, headers=auth).status_code == 429
            other = small.post("/v1/sweeps", json={**body, "name": "other"}, headers=keyed)
            assert other.status_code == 409 and "Idempotency-Key" in other.json()["detail"]
            assert len(small.get("/v1/sweeps", headers=auth).json()) == 1
            jobs = small.get("/v1/jobs", headers=auth).json()["jobs"]
            assert sorted(j["id"] for j in jobs) == sorted(ids)
            for job_id in ids:
                small.post(f"/v1/jobs/{job_id}/cancel", headers=auth)
                wait(small, job_id, auth, ("cancelled", "failed", "succeeded"))
            assert small.delete(f"/v1/jobs/{ids[0]}", headers=auth).status_code == 204
            anew = small.post("/v1/sweeps", json=body, headers=keyed).json()
            assert anew["id"] != first.json()["id"]
            assert small.post("/v1/sweeps", json=body, headers=keyed).json()["id"] == anew["id"]
        finally:  # long jobs: never left to hold the session's one worker
            for job in small.get("/v1/jobs", headers=auth).json()["jobs"]:
                small.post(f"/v1/jobs/{job['id']}/cancel", headers=auth)


def test_rate_limit_answers_429_with_retry_after(worker_store: JobStore) -> None:
    settings = Settings(
        redis_url=store_url(worker_store),
        key_prefix=worker_store.p,
        admin_key=ADMIN,
        requests_per_minute=3,
    )
    with TestClient(create_app(settings)) as limited:
        auth = new_user(limited, "erin")
        codes = [limited.get("/v1/jobs", headers=auth).status_code for _ in range(4)]
        assert codes == [200, 200, 200, 429]
        r = limited.get("/v1/jobs", headers=auth)
        assert 1 <= int(r.headers["Retry-After"]) <= 60
        assert r.json()["title"] == "Too Many Requests"


def test_prometheus_metrics(client: TestClient, worker_store: JobStore) -> None:
    worker_store.jobs.create("gina", {"name": "counted"})
    client.get("/healthz")
    text = client.get("/metrics").text
    assert "# TYPE aimc_http_requests_total counter" in text
    assert 'aimc_http_requests_total{method="GET",route="/healthz",status="200"}' in text
    assert 'aimc_job_transitions_total{state="queued"}' in text
    assert "aimc_queue_depth " in text


def test_job_durations_histogram(client: TestClient, worker_store: JobStore) -> None:
    """A job that ran 7 s falls in the 15 s bucket and above, not the 5 s one."""
    before = worker_store.stats.durations().get("cancelled", {})
    job_id = worker_store.jobs.create("gina", {"name": "timed"})
    worker_store.jobs.set_state(job_id, "running", started=time.time() - 7)
    worker_store.jobs.set_state(job_id, "cancelled")
    after = worker_store.stats.durations()["cancelled"]

    def added(bound: str) -> float:
        return after.get(bound, 0) - before.get(bound, 0)

    assert added("5") == 0 and added("15") == added("60") == added("+Inf") == 1
    assert 7 <= added("sum") < 8
    text = client.get("/metrics").text
    assert "# TYPE aimc_job_duration_seconds histogram" in text
    # prometheus_client sorts labels (le first) and writes counts as floats ("3.0")
    assert f'aimc_job_duration_seconds_bucket{{le="15",state="cancelled"}} {after["15"]}' in (
        text.splitlines()
    )
    assert 'aimc_job_duration_seconds_count{state="cancelled"} ' in text


def test_job_cost_ceiling(worker_store: JobStore) -> None:
    settings = Settings(
        redis_url=store_url(worker_store),
        key_prefix=worker_store.p,
        admin_key=ADMIN,
        max_job_cost=1e9,
    )
    with TestClient(create_app(settings)) as small:
        auth = new_user(small, "gina")
        r = small.post("/v1/jobs", json={"training": {"epochs": 100}}, headers=auth)
        assert r.status_code == 422
        assert "max_job_cost" in r.json()["detail"] and r.json()["title"] == "Job too large"


def test_a_processes_job_with_more_stages_than_worker_slots_is_refused(
    worker_store: JobStore,
) -> None:
    """A P-stage processes job takes P of a worker host's slots: one needing more could
    never start, so it is a 422 naming the field and the setting, not a job that waits."""
    settings = Settings(
        redis_url=store_url(worker_store),
        key_prefix=worker_store.p,
        admin_key=ADMIN,
        worker_slots=2,
    )
    spec = {"model": {"hidden": [16, 16]}, "pipeline": {"stages": 3, "executor": "processes"}}
    with TestClient(create_app(settings)) as small:
        auth = new_user(small, "hugo")
        r = small.post("/v1/jobs", json=spec, headers=auth)
        assert r.status_code == 422, r.text
        [error] = r.json()["errors"]
        assert error["loc"] == "pipeline.stages" and "worker_slots" in error["msg"]
        spec["pipeline"]["executor"] = "simulated"  # one process, one slot
        simulated = small.post("/v1/jobs", json={**spec, **SHORT}, headers=auth)
        assert simulated.status_code == 202, simulated.text


def test_deployments_sharing_a_redis_keep_their_jobs_apart(
    client: TestClient, worker_store: JobStore
) -> None:
    """Another deployment on the same Redis under its own key prefix, with no worker:
    its job waits in its own queue. The session's worker (another prefix) leaves it
    there; with one queue for all, that worker took it, found no such job under its own
    prefix and dropped it. The session's own jobs still run."""
    prefix = f"lab-b-{uuid.uuid4().hex[:6]}:"
    queue = queue_of(prefix)
    # one queue per prefix, none named as Celery's or kombu's own keys
    odd = ("aimc:", "aimc", "aimc::", "", ":", "celery:", "unacked:", prefix)
    assert queue_of("aimc:") == QUEUE and len({queue_of(p) for p in odd}) == len(odd)
    assert all(queue_of(p).startswith(QUEUE) for p in odd)
    settings = Settings(redis_url=store_url(worker_store), key_prefix=prefix, admin_key=ADMIN)
    try:
        with TestClient(create_app(settings)) as other:
            job_id = other.post("/v1/jobs", json=SHORT, headers=new_user(other, "bob")).json()["id"]
            ours = client.post("/v1/jobs", json=SHORT, headers=(auth := new_user(client, "amy")))
            assert wait(client, ours.json()["id"], auth, ("succeeded",))["state"] == "succeeded"
            # one queue for all: B's message, sent first, would have been taken first
            [message] = worker_store.r.lrange(queue, 0, -1)
            assert job_id.encode() in message
            job = JobStore.from_url(store_url(worker_store), prefix).jobs.get(job_id)
            assert job is not None and job.state == "queued"
    finally:
        forget_prefix(worker_store.r, prefix)


def test_users_unique_listed_rotated_and_deleted(client: TestClient) -> None:
    admin = {"Authorization": f"Bearer {ADMIN}"}
    name = f"uma-{uuid.uuid4().hex[:6]}"
    first = client.post("/v1/users", json={"name": name}, headers=admin)
    assert first.status_code == 201
    again = client.post("/v1/users", json={"name": name}, headers=admin)
    assert again.status_code == 409 and again.json()["errors"][0]["loc"] == "name"
    user_id, old = first.json()["id"], {"Authorization": f"Bearer {first.json()['api_key']}"}
    listed = client.get("/v1/users", headers=admin).json()
    assert [u["name"] for u in listed].count(name) == 1
    assert all("api_key" not in u and "key" not in u for u in listed)
    assert client.get("/v1/users", headers=old).status_code == 401  # admins only
    assert client.get("/v1/jobs", headers=old).status_code == 200
    rotated = client.post(f"/v1/users/{user_id}/key", headers=admin)
    assert rotated.status_code == 200 and rotated.json()["name"] == name
    new = {"Authorization": f"Bearer {rotated.json()['api_key']}"}
    assert client.get("/v1/jobs", headers=old).status_code == 401  # revoked at once
    job_id = client.post("/v1/jobs", json=SHORT, headers=new).json()["id"]
    assert client.delete(f"/v1/users/{user_id}", headers=admin).status_code == 204
    assert client.get("/v1/jobs", headers=new).status_code == 401
    assert client.delete(f"/v1/users/{user_id}", headers=admin).status_code == 404
    assert client.post(f"/v1/users/{user_id}/key", headers=admin).status_code == 404
    assert name not in [u["name"] for u in client.get("/v1/users", headers=admin).json()]
    store = client.app.state.store  # type: ignore[attr-defined]
    deadline = time.monotonic() + 60
    while (job := store.jobs.get(job_id)).state not in ("cancelled", "succeeded", "failed"):
        assert time.monotonic() < deadline
        time.sleep(0.2)
    assert job.state == "cancelled"  # a deleted user's live jobs are cancelled
    # the name is free again
    assert client.post("/v1/users", json={"name": name}, headers=admin).status_code == 201


def test_a_cancelled_job_keeps_the_progress_it_stopped_at(client: TestClient) -> None:
    """Cancelled once it shows progress (stored at its first step, then every second;
    the cancel flag is read every half second): far too long to end first on any
    machine. 4000 steps did end first on a fast one: they train in about 1 s there."""
    auth = new_user(client, "hal")
    steps = 200_000
    spec = {"training": {"steps": steps, "micro_batch_size": 8, "eval_every": 50_000}}
    job_id = client.post("/v1/jobs", json=spec, headers=auth).json()["id"]
    deadline = time.monotonic() + 90
    while (job := client.get(f"/v1/jobs/{job_id}", headers=auth).json())["progress"] == 0:
        assert job["state"] in ("queued", "running") and time.monotonic() < deadline
        time.sleep(0.1)
    client.post(f"/v1/jobs/{job_id}/cancel", headers=auth)
    job = wait(client, job_id, auth, ("cancelled", "succeeded", "failed"))
    assert job["state"] == "cancelled"
    samples = client.get(f"/v1/jobs/{job_id}/result", headers=auth).json()["samples"]
    assert 0 < job["progress"] < 0.5
    assert job["progress"] == pytest.approx(samples / (steps * 8), abs=0.001)


def test_model_that_does_not_fit_its_data_is_a_422_or_a_failed_job_naming_the_field(
    client: TestClient,
) -> None:
    auth = new_user(client, "ivy")
    r = client.post(
        "/v1/jobs", json={"model": {"kind": "cnn", "channels": [8, 16, 32, 64]}}, headers=auth
    )
    assert r.status_code == 422 and [e["loc"] for e in r.json()["errors"]] == ["model.channels"]
    assert "at most 3 fit" in r.json()["detail"]
    flat = {"model": {"kind": "resnet"}, "dataset": {"name": "synthetic"}}  # 32 features
    r = client.post("/v1/jobs", json=flat, headers=auth)
    assert r.status_code == 422 and [e["loc"] for e in r.json()["errors"]] == ["model.kind"]
    # known only once the data is loaded: a failed job whose error names the field
    tiny = {
        "dataset": {"name": "digits", "test_fraction": 0.99},
        "training": {"steps": 2, "micro_batch_size": 500},
    }
    job_id = client.post("/v1/jobs", json=tiny, headers=auth).json()["id"]
    job = wait(client, job_id, auth, ("failed", "succeeded"))
    assert job["state"] == "failed"
    assert job["error"].startswith("training.micro_batch_size: 500 exceeds the")


def test_big_artifacts_live_in_the_artifact_store(
    client: TestClient, worker_store: JobStore
) -> None:
    auth = new_user(client, "art")
    job_id = client.post("/v1/jobs", json=SHORT, headers=auth).json()["id"]
    assert wait(client, job_id, auth, ("succeeded", "failed"))["state"] == "succeeded"
    store, root = worker_store, worker_store.artifact_dir
    assert root is not None
    folder = root / store.p.rstrip(":") / job_id
    on_disk = {p.name: p.stat().st_size for p in folder.iterdir()}
    assert "weights.safetensors" in on_disk  # above the tests' 20 kB threshold
    assert all(size > store.inline_max_bytes for size in on_disk.values())
    assert not store.r.exists(store.key("job", job_id, "artifact", "weights.safetensors"))
    assert store.r.exists(store.key("job", job_id, "artifact", "result.json"))  # small
    assert not store.r.exists(store.key("job", job_id, "checkpoint"))  # dropped at the end
    names = client.get(f"/v1/jobs/{job_id}/artifacts", headers=auth).json()
    assert set(on_disk) <= set(names) and "result.json" in names
    weights = client.get(f"/v1/jobs/{job_id}/artifacts/weights.safetensors", headers=auth)
    assert weights.status_code == 200
    assert weights.content == (folder / "weights.safetensors").read_bytes()
    (folder / "weights.safetensors").unlink()  # removed behind the service's back
    gone = client.get(f"/v1/jobs/{job_id}/artifacts/weights.safetensors", headers=auth)
    assert gone.status_code == 410 and gone.headers["content-type"] == "application/problem+json"
    assert "gone from the artifact store" in gone.json()["detail"]
    assert client.get(f"/v1/jobs/{job_id}/artifacts/result.json", headers=auth).status_code == 200
    assert client.delete(f"/v1/jobs/{job_id}", headers=auth).status_code == 204
    assert not folder.exists()  # delete removes the files


def test_a_sweep_plot_is_drawn_by_the_worker_once_every_job_has_ended(client: TestClient) -> None:
    auth = new_user(client, "sid")
    long = {"training": {"steps": 100_000, "eval_every": 100}}
    r = client.post("/v1/sweeps", json={"spec": long, "grid": {"seed": [1, 2]}}, headers=auth)
    assert r.status_code == 202, r.text
    sweep_id, jobs = r.json()["id"], [j["id"] for j in r.json()["jobs"]]
    plot = client.get(f"/v1/sweeps/{sweep_id}/plot.png", headers=auth)
    assert plot.status_code == 409 and plot.headers["content-type"] == "application/problem+json"
    assert "have not ended" in plot.json()["detail"] and int(plot.headers["Retry-After"]) > 0
    assert client.get(f"/v1/sweeps/{sweep_id}", headers=auth).json()["done"] is False
    for job_id in jobs:
        assert client.post(f"/v1/jobs/{job_id}/cancel", headers=auth).status_code == 200
    deadline = time.monotonic() + 60
    while not (sweep := client.get(f"/v1/sweeps/{sweep_id}", headers=auth).json())["done"]:
        assert time.monotonic() < deadline, sweep
        time.sleep(0.2)
    assert sweep["states"] == {"cancelled": 2}
    plot = client.get(f"/v1/sweeps/{sweep_id}/plot.png", headers=auth)
    assert plot.status_code == 200 and plot.content[:4] == b"\x89PNG"
    store = client.app.state.store  # type: ignore[attr-defined]
    assert store.sweeps.plot(sweep_id) == plot.content  # stored by a worker, served as stored


def test_an_ended_sweep_without_a_plot_has_a_worker_draw_it(client: TestClient) -> None:
    """A sweep whose last job ended before any worker could tell (data of an older
    version, a lost task): the API asks the workers, it never draws."""
    auth = new_user(client, "tia")
    store = client.app.state.store  # type: ignore[attr-defined]
    owner = store.r.get(store.key("key", hash_key(auth["Authorization"][7:]))).decode()
    job_id = store.jobs.create(owner, {"name": "old"})
    store.metrics.add(job_id, {"step": 0, "samples": 0, "sim_time_ns": 0.0, "test_loss": 2.0})
    store.jobs.set_state(job_id, "succeeded")
    sweep_id = store.sweeps.create(owner, "old", {"seed": [1]}, [SweepMember(job_id, {"seed": 1})])
    plot = client.get(f"/v1/sweeps/{sweep_id}/plot.png", headers=auth)
    assert plot.status_code == 409 and "a worker is drawing" in plot.json()["detail"]
    assert plot.headers["Retry-After"] == "2"
    deadline = time.monotonic() + 60
    while (plot := client.get(f"/v1/sweeps/{sweep_id}/plot.png", headers=auth)).status_code != 200:
        assert plot.status_code == 409 and time.monotonic() < deadline
        time.sleep(0.2)
    assert plot.content[:4] == b"\x89PNG"
    assert client.get(f"/v1/sweeps/{sweep_id}", headers=auth).json()["done"] is True


def test_the_api_never_draws() -> None:
    """Plots are drawn by workers: no API module imports matplotlib (import-linter says
    so for direct imports) or names a plot helper of the spec package."""
    for path in sorted((ROOT / "service").rglob("*.py")):
        tree = ast.parse(path.read_text(), str(path))
        for node in ast.walk(tree):
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom):
                names = [f"{node.module}.{alias.name}" for alias in node.names]
            else:
                continue
            for name in names:
                assert not name.startswith("matplotlib"), f"{path}: imports {name}"
                assert "plot" not in name.rsplit(".", 1)[-1], f"{path}: imports {name}"


def test_configs_are_listed_and_a_job_names_one(client: TestClient) -> None:
    auth = new_user(client, "configs")
    assert client.get("/v1/configs").status_code == 401
    configs = client.get("/v1/configs", headers=auth).json()
    assert len(configs) == 52
    ttv2 = next(c for c in configs if c["name"] == "TTv2EcRamPreset")
    assert ttv2["alias"] == "ttv2_ecram" and "TTv2" in ttv2["summary"]
    assert ttv2["spec"]["optimizer"]["chopped_ttv2"]["auto_granularity"] == 500
    r = client.post("/v1/jobs", json={"analog": {"config": "TTv2EcRamPrest"}}, headers=auth)
    assert r.status_code == 422
    (error,) = r.json()["errors"]
    assert error["loc"] == "analog.config" and "did you mean 'TTv2EcRamPreset'" in error["msg"]
    r = client.post("/v1/jobs", json={**SHORT, "analog": {"config": "ttv2_ecram"}}, headers=auth)
    assert r.status_code == 202, r.text
    job = r.json()
    client.post(f"/v1/jobs/{job['id']}/cancel", headers=auth)
    assert job["spec"]["analog"]["config"] == "TTv2EcRamPreset"
    assert job["spec"]["optimizer"]["algorithm"] == "chopped_ttv2"
