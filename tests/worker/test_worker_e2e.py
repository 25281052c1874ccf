"""End to end: a real Redis and a real Celery worker process run jobs through the engine.

The Redis is the session's own (tests/conftest.py: redis_url); these tests work under
a key prefix of their own and delete its keys afterwards.
"""

from __future__ import annotations

import time

import pytest

from aimc_store.records import Job
from aimc_store.store import JobStore

pytestmark = pytest.mark.long  # tens of seconds: run first (tests/conftest.py)

SHORT = {"training": {"steps": 30, "micro_batch_size": 8, "eval_every": 10}}


@pytest.fixture
def store(worker_store: JobStore) -> JobStore:
    return worker_store


def submit(store: JobStore, spec: dict) -> str:
    from aimc_spec.spec import parse_spec
    from worker.tasks import run_job

    job_id = store.jobs.create("alice", parse_spec(spec).normalised())
    run_job.delay(job_id)
    return job_id


def wait_for(store: JobStore, job_id: str, states: tuple[str, ...], timeout: float = 90) -> Job:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        job = store.jobs.get(job_id)
        assert job is not None
        if job.state in states:
            return job
        time.sleep(0.2)
    raise AssertionError(f"job {job_id} still {store.jobs.get(job_id)} after {timeout} s")


def test_job_runs_to_success_with_metrics_result_and_artifacts(store: JobStore) -> None:
    job_id = submit(store, SHORT)
    job = wait_for(store, job_id, ("succeeded", "failed"))
    assert job.state == "succeeded", job.error
    assert job.progress == 1.0 and job.attempts == 1
    assert [m["step"] for m in store.metrics.points(job_id)] == [0, 10, 20, 30]
    assert [m["step"] for m in store.metrics.points(job_id, since_step=10)] == [20, 30]
    assert job.result["updates"] == 30
    assert store.artifacts.names(job_id) == [
        "curves.png",
        "metrics.csv",
        "metrics.jsonl",
        "result.json",
        "timeline.json",
        "timeline.png",
        "weights.safetensors",
    ]
    assert store.artifacts.read(job_id, "curves.png")[:4] == b"\x89PNG"  # type: ignore[index]
    assert [e.state for e in store.jobs.events(job_id)] == ["queued", "running", "succeeded"]


def test_cancel_a_running_job(store: JobStore) -> None:
    job_id = submit(store, {"training": {"steps": 100_000, "eval_every": 100}})
    wait_for(store, job_id, ("running",))
    store.jobs.request_cancel(job_id)
    job = wait_for(store, job_id, ("cancelled", "succeeded", "failed"), timeout=20)
    assert job.state == "cancelled"
    assert job.result["status"] == "cancelled"


def test_a_cancelled_queued_job_never_starts(store: JobStore) -> None:
    from aimc_spec.spec import parse_spec
    from worker.tasks import run_job

    job_id = store.jobs.create("alice", parse_spec(SHORT).normalised())
    store.jobs.request_cancel(job_id)
    run_job.delay(job_id)
    job = wait_for(store, job_id, ("cancelled", "succeeded"))
    assert job.state == "cancelled" and job.attempts == 0
    assert store.metrics.points(job_id) == []


def test_a_job_that_cannot_run_fails_with_the_reason(store: JobStore) -> None:
    job_id = submit(store, {**SHORT, "dataset": {"name": "uploaded", "id": "nope"}})
    job = wait_for(store, job_id, ("failed", "succeeded"))
    assert job.state == "failed"
    assert "dataset.id: no dataset 'nope'" in job.error


def test_delete_removes_everything(store: JobStore) -> None:
    job_id = submit(store, SHORT)
    wait_for(store, job_id, ("succeeded",))
    store.jobs.delete(job_id)
    assert store.jobs.get(job_id) is None and store.artifacts.find(job_id, "result.json") is None
    assert not store.r.zscore(f"{store.p}user:alice:jobs", job_id)


def test_killed_worker_job_is_lost_then_resumed_from_its_checkpoint(store: JobStore) -> None:
    """kill -9 the process running a job: the job shows as lost, is redelivered, resumes
    from its last checkpoint and succeeds, each metric point stored exactly once."""
    import os
    import signal

    job_id = submit(store, {"training": {"steps": 3000, "micro_batch_size": 10, "eval_every": 100}})
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and store.metrics.last_step(job_id) < 700:
        time.sleep(0.1)
    assert store.jobs.checkpoint(job_id) is not None
    job = store.jobs.get(job_id)
    assert job is not None and job.state == "running"
    os.kill(int(job.worker.rsplit(":", 1)[1]), signal.SIGKILL)
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline and store.leases.alive(job_id):
        time.sleep(0.2)
    assert not store.leases.alive(job_id)  # the heartbeat stopped: the API shows the job as lost
    job = wait_for(store, job_id, ("succeeded", "failed"), timeout=300)  # niced, shared CPU
    assert job.state == "succeeded", job.error
    assert job.attempts == 2
    assert [m["step"] for m in store.metrics.points(job_id)] == list(range(0, 3001, 100))
    assert "retrying" in [e.state for e in store.jobs.events(job_id)]


def test_a_killed_job_process_is_redelivered_and_resumed(store: JobStore) -> None:
    """kill -9 the job's own process (as the OOM killer would): the worker goes down as a
    killed worker would, the job is redelivered and resumes from its checkpoint."""
    import os
    import signal

    job_id = submit(store, {"training": {"steps": 3000, "micro_batch_size": 10, "eval_every": 100}})
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and store.metrics.last_step(job_id) < 700:
        time.sleep(0.1)
    job = store.jobs.get(job_id)
    assert job is not None and job.state == "running"
    engine_pid = int(store.r.hget(f"{store.p}job:{job_id}", "engine_pid"))
    assert engine_pid != int(job.worker.rsplit(":", 1)[1])  # a process of its own
    os.kill(engine_pid, signal.SIGKILL)
    job = wait_for(store, job_id, ("succeeded", "failed"), timeout=300)  # niced, shared CPU
    assert job.state == "succeeded", job.error
    assert job.attempts == 2
    assert [m["step"] for m in store.metrics.points(job_id)] == list(range(0, 3001, 100))


def test_running_jobs_limit_parks_a_job_until_a_slot_frees(store: JobStore) -> None:
    """With max_running_jobs (2) of the owner's jobs running, the next one is parked,
    still queued, and runs as soon as a slot frees (no polling retry)."""
    from aimc_spec.spec import parse_spec
    from worker.tasks import _queue_parked, run_job

    blockers = [store.jobs.create("henry", {"name": "b"}) for _ in range(2)]
    for b in blockers:
        store.jobs.set_state(b, "running")
    job_id = store.jobs.create("henry", parse_spec(SHORT).normalised())
    run_job.delay(job_id)
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline and store.r.llen(f"{store.p}user:henry:parked") == 0:
        time.sleep(0.1)
    assert store.jobs.get(job_id).state == "queued"  # type: ignore[union-attr]
    _queue_parked(store, "henry", 2)  # both slots still taken: nothing is handed back
    assert store.r.llen(f"{store.p}user:henry:parked") == 1
    store.jobs.set_state(blockers[0], "succeeded")
    _queue_parked(store, "henry", 2)  # what the worker that ran blockers[0] does at its end
    job = wait_for(store, job_id, ("succeeded", "failed"), timeout=60)
    assert job.state == "succeeded" and job.attempts == 1
