"""The Python client end to end: a real API over HTTP, a real Redis, a real Celery worker.

Sweeps, dataset uploads and the typed errors are exercised here too; the retry policy
(backoff, Retry-After) is checked against a scripted transport, since the real service
cannot be made to answer 503 on cue.
"""

from __future__ import annotations

import io
import time
from pathlib import Path

import httpx
import numpy as np
import pytest

from aimc_client import AuthError, Client, ConflictError, InvalidError, NotFoundError
from aimc_client.errors import RateLimitError, ServiceUnavailable, Unreachable
from tests.conftest import LiveService

TINY = {
    "training": {"steps": 20, "micro_batch_size": 8, "eval_every": 10},
    "model": {"hidden": [16]},
}


@pytest.fixture(scope="module")
def client(live_service: LiveService) -> Client:
    return Client(live_service.url, live_service.new_user("client-tests"))


def npz_bytes(**arrays: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    np.savez(buffer, **arrays)
    return buffer.getvalue()


def blobs(n: int = 200, features: int = 6, seed: int = 0) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, features)).astype(np.float32)
    y = (x[:, 0] > 0).astype(np.int64)
    cut = int(0.8 * n)
    return {"x_train": x[:cut], "y_train": y[:cut], "x_test": x[cut:], "y_test": y[cut:]}


def test_submit_wait_stream_and_download(client: Client, tmp_path: Path) -> None:
    job = client.submit({**TINY, "name": "client-e2e"})
    assert job["state"] == "queued"
    seen: list[str] = []
    events = list(client.stream(job["id"]))  # live until the job ends
    final = client.wait(job["id"], on_progress=lambda j: seen.append(j["state"]), poll_s=0.2)
    assert final["state"] == "succeeded" and seen[-1] == "succeeded"
    states = [e.data["state"] for e in events if e.kind == "state"]
    steps = [e.data["step"] for e in events if e.kind == "metric"]
    assert states[0] == "queued" and states[-1] == "succeeded" and "running" in states
    assert steps == [0, 10, 20]  # every point, in order
    assert [p["step"] for p in client.metrics(job["id"], since=0)] == [10, 20]
    assert client.metrics_csv(job["id"]).splitlines()[0].startswith("step,samples")
    assert client.result(job["id"])["updates"] == 20
    paths = client.download(job["id"], tmp_path / "out")
    assert {p.name for p in paths} >= {"weights.safetensors", "curves.png", "metrics.csv"}
    assert (tmp_path / "out" / "curves.png").read_bytes()[:4] == b"\x89PNG"
    client.delete(job["id"])
    with pytest.raises(NotFoundError):
        client.get(job["id"])


def test_submit_a_yaml_path_and_list_every_page(client: Client, tmp_path: Path) -> None:
    spec = tmp_path / "job.yaml"
    spec.write_text("name: paged\ntraining: {steps: 2, eval_every: 2}\nmodel: {hidden: [8]}\n")
    ids = [client.submit(spec)["id"] for _ in range(3)]
    listed = [j["id"] for j in client.jobs(name="paged", page_size=2)]  # two pages
    assert listed == ids[::-1]  # newest first, across pages
    for job_id in ids:
        client.wait(job_id, poll_s=0.2)


def test_cancel_a_queued_job(client: Client, live_service: LiveService) -> None:
    job = client.submit({**TINY, "training": {"steps": 5000, "eval_every": 1000}})
    cancelled = client.cancel(job["id"])
    final = client.wait(job["id"], poll_s=0.2, timeout_s=60)
    assert cancelled["state"] in ("cancelled", "running") and final["state"] == "cancelled"


def test_typed_errors_carry_the_problem(client: Client, live_service: LiveService) -> None:
    with pytest.raises(InvalidError) as invalid:
        client.submit({"training": {"epochs": -1}})
    assert invalid.value.status == 422
    assert ("training.epochs", "Input should be greater than 0") in invalid.value.problems
    with pytest.raises(NotFoundError) as missing:
        client.get("no-such-job")
    assert missing.value.title == "Not Found" and "no-such-job" in missing.value.detail
    with pytest.raises(AuthError):
        Client(live_service.url, "not-a-key").get("x")
    running = client.submit({**TINY, "training": {"steps": 3000, "eval_every": 1000}})
    with pytest.raises(ConflictError):
        client.result(running["id"])  # no result before it ends
    client.cancel(running["id"])


def test_idempotent_submit_returns_the_same_job(client: Client) -> None:
    first = client.submit(TINY, idempotency_key="same-key")
    again = client.submit(TINY, idempotency_key="same-key")
    assert first["id"] == again["id"]
    with pytest.raises(ConflictError):
        client.submit({**TINY, "seed": 3}, idempotency_key="same-key")


def test_a_two_by_two_sweep_completes_and_is_compared(
    client: Client, live_service: LiveService
) -> None:
    base = {**TINY, "pipeline": {"stages": 2, "micro_batches": 2}}
    grid = {"pipeline.schedule": ["gpipe", "async"], "optimizer.lr": [0.05, 0.2]}
    sweep = client.sweep(base, grid, name="two-by-two")
    assert len(sweep["jobs"]) == 4 and sweep["id"].startswith("sw_")
    done = client.wait_sweep(sweep["id"], poll_s=0.5, timeout_s=240)
    assert [j["state"] for j in done["jobs"]] == ["succeeded"] * 4
    overrides = [j["overrides"] for j in done["jobs"]]
    assert overrides[0] == {"pipeline.schedule": "gpipe", "optimizer.lr": 0.05}
    assert all(
        j["final"]["samples"] > 0 and 0 <= j["final"]["test_accuracy"] <= 1 for j in done["jobs"]
    )
    losses = {round(j["final"]["test_loss"], 6) for j in done["jobs"]}
    assert len(losses) == 4  # four different runs, not one repeated
    job = client.get(done["jobs"][3]["id"])
    assert job["name"] == "two-by-two [schedule=async, lr=0.2]"
    assert job["spec"]["pipeline"]["schedule"] == "async" and job["spec"]["optimizer"]["lr"] == 0.2
    png = client.sweep_plot(sweep["id"])
    assert png[:4] == b"\x89PNG" and len(png) > 10_000
    assert sweep["id"] in [s["id"] for s in client.sweeps()]
    stranger = Client(live_service.url, live_service.new_user("sweep-stranger"))
    with pytest.raises(NotFoundError):
        stranger.get_sweep(sweep["id"])
    with pytest.raises(NotFoundError):
        stranger.sweep_plot(sweep["id"])


def test_an_invalid_combination_rejects_the_whole_sweep(client: Client) -> None:
    before = sum(1 for _ in client.jobs())
    with pytest.raises(InvalidError) as err:
        client.sweep(TINY, {"pipeline.schedule": ["gpipe", "async"], "pipeline.stages": [2, 9]})
    locs = [loc for loc, _ in err.value.problems]
    assert locs == ["grid.pipeline.stages"]
    assert (
        "9 stages" in err.value.problems[0][1] and "pipeline.stages=9" in err.value.problems[0][1]
    )
    assert sum(1 for _ in client.jobs()) == before  # nothing was queued
    with pytest.raises(InvalidError) as too_many:  # 36 jobs > max_queued_jobs (30 here)
        client.sweep(TINY, {"seed": list(range(6)), "optimizer.lr": [0.1 * i for i in range(1, 7)]})
    assert too_many.value.problems[0][0] == "grid" and "max_queued_jobs" in too_many.value.detail
    with pytest.raises(InvalidError) as bad_path:
        client.sweep(TINY, {"pipeline.shedule": ["async"]})
    assert bad_path.value.problems[0][0] == "grid.pipeline.shedule"
    assert "did you mean 'pipeline.schedule'" in bad_path.value.problems[0][1]


def test_upload_a_dataset_and_train_on_it(client: Client, tmp_path: Path) -> None:
    path = tmp_path / "blobs.npz"
    path.write_bytes(npz_bytes(**blobs()))
    dataset = client.upload_dataset(path)
    assert dataset["name"] == "blobs" and dataset["n_train"] == 160 and dataset["classes"] == 2
    assert dataset["sample_shape"] == [6]
    assert dataset["id"] in [d["id"] for d in client.datasets()]
    spec = {**TINY, "dataset": {"name": "uploaded", "id": dataset["id"]}}
    job = client.wait(client.submit(spec)["id"], poll_s=0.2)
    assert job["state"] == "succeeded", job["error"]
    assert job["latest_metrics"]["samples"] == 20 * 8


@pytest.mark.parametrize(
    ("arrays", "message"),
    [
        ({k: v for k, v in blobs().items() if k != "y_test"}, "lacks ['y_test']"),
        ({**blobs(), "y_train": blobs()["y_train"][:10]}, "y_train (N,)"),
        ({**blobs(), "y_train": blobs()["y_train"].astype(np.float32)}, "integer class labels"),
        ({**blobs(), "x_test": np.full((40, 6), np.nan, np.float32)}, "NaN or infinite"),
        ({**blobs(), "x_test": np.zeros((40, 5), np.float32)}, "x_test's are (5,)"),
    ],
)
def test_a_bad_upload_is_refused_with_a_clear_message(
    client: Client, tmp_path: Path, arrays: dict[str, np.ndarray], message: str
) -> None:
    path = tmp_path / "bad.npz"
    path.write_bytes(npz_bytes(**arrays))
    with pytest.raises(InvalidError) as err:
        client.upload_dataset(path)
    assert err.value.status == 422 and message in err.value.detail


def test_uploads_that_are_not_npz_or_too_large(client: Client, tmp_path: Path) -> None:
    junk = tmp_path / "junk.npz"
    junk.write_bytes(b"not a zip archive")
    with pytest.raises(InvalidError, match=r"not an \.npz"):
        client.upload_dataset(junk)
    big = tmp_path / "big.npz"
    big.write_bytes(npz_bytes(**blobs(n=5000, features=20)))  # ~480 kB > 200 kB limit
    with pytest.raises(InvalidError) as err:
        client.upload_dataset(big)
    assert err.value.status == 413


def test_another_user_cannot_see_or_use_your_dataset(
    client: Client, live_service: LiveService, tmp_path: Path
) -> None:
    path = tmp_path / "mine.npz"
    path.write_bytes(npz_bytes(**blobs(seed=1)))
    mine = client.upload_dataset(path)
    other = Client(live_service.url, live_service.new_user("someone-else"))
    assert other.datasets() == []
    with pytest.raises(NotFoundError):
        other.delete_dataset(mine["id"])
    with pytest.raises(InvalidError) as err:
        other.submit({**TINY, "dataset": {"name": "uploaded", "id": mine["id"]}})
    assert err.value.problems[0][0] == "dataset.id"
    with pytest.raises(InvalidError):
        other.sweep({**TINY, "dataset": {"name": "uploaded", "id": mine["id"]}}, {"seed": [1, 2]})
    client.delete_dataset(mine["id"])
    assert mine["id"] not in [d["id"] for d in client.datasets()]


def scripted(*answers: httpx.Response) -> tuple[httpx.MockTransport, list[float]]:
    """A transport answering in turn, and the times it was called at."""
    calls: list[float] = []
    queue = list(answers)

    def handle(request: httpx.Request) -> httpx.Response:
        calls.append(time.monotonic())
        return queue.pop(0)

    return httpx.MockTransport(handle), calls


def test_retries_honour_retry_after_then_succeed() -> None:
    busy = httpx.Response(429, headers={"Retry-After": "0.3"}, json={"title": "Too Many"})
    down = httpx.Response(503, json={"title": "Service Unavailable"})
    ok = httpx.Response(200, json={"id": "j", "state": "queued"})
    transport, calls = scripted(busy, down, ok)
    client = Client("http://aimc.test", "k", transport=transport, backoff_s=0.05)
    assert client.get("j")["state"] == "queued"
    assert len(calls) == 3
    assert calls[1] - calls[0] >= 0.3  # waited as long as Retry-After asked
    assert 0.04 <= calls[2] - calls[1] < 0.3  # then the backoff (0.05 * 2^1)


def test_retries_run_out_into_typed_errors() -> None:
    busy = httpx.Response(429, headers={"Retry-After": "7"}, json={"title": "Too Many Requests"})
    transport, calls = scripted(busy)
    with pytest.raises(RateLimitError) as err:
        Client("http://aimc.test", "k", transport=transport, retries=0).get("j")
    assert err.value.retry_after == 7 and len(calls) == 1
    unreachable = Client("http://127.0.0.1:9", "k", retries=1, backoff_s=0.01)
    with pytest.raises(ServiceUnavailable):
        unreachable.get("j")


def test_url_and_key_come_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AIMC_URL", "http://example.test:9000/")
    monkeypatch.setenv("AIMC_API_KEY", "env-key")
    client = Client()
    assert client.url == "http://example.test:9000"
    assert client.http.headers["Authorization"] == "Bearer env-key"


def test_an_unreachable_service_is_named_by_its_url_without_a_status() -> None:
    """No HTTP status was received, so the message shows none (it once read "0 ...")."""
    url = "http://127.0.0.1:9"
    with pytest.raises(Unreachable) as err:
        Client(url, "k", retries=0).get("j")
    assert err.value.url == url and err.value.reason
    assert isinstance(err.value, ServiceUnavailable) and err.value.status == 0
    assert str(err.value) == f"Service unreachable: {url}: {err.value.reason}"
