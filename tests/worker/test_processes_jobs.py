"""Jobs whose stages run as processes, through a real Celery worker and Redis: metrics,
progress, cancel with no process left behind, a killed job resumed to the result an
uninterrupted run gives, and the host's process slots (never oversubscribed)."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import time
from typing import Any

import psutil
import pytest

from aimc_store.store import JobStore
from service.serve import worker_command
from tests.conftest import ROOT, stop_process
from tests.worker.test_worker_e2e import submit, wait_for
from worker.slots import Slots

pytestmark = pytest.mark.long  # tens of seconds: run first (tests/conftest.py)

PROCESSES = {
    "dataset": {"name": "digits"},
    "model": {"kind": "mlp", "hidden": [32, 16]},
    "analog": {"update": "expected"},
    "pipeline": {"stages": 2, "schedule": "async", "executor": "processes"},
}


def spec(**changes: Any) -> dict[str, Any]:
    out = json.loads(json.dumps(PROCESSES))
    for key, value in changes.items():
        out[key] = {**out.get(key, {}), **value}
    return out


def stage_processes_under(pid: int) -> list[psutil.Process]:
    """Live processes named aimc-stage-* below `pid` (a worker pool process)."""
    found = []
    with contextlib.suppress(psutil.NoSuchProcess):
        for child in psutil.Process(pid).children(recursive=True):
            with contextlib.suppress(psutil.Error):
                if child.name().startswith("aimc-stage-") and child.status() != "zombie":
                    found.append(child)
    return found


def without_wall(records: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [{k: v for k, v in r.items() if k != "wall_s"} for r in records]


def test_a_processes_job_runs_with_metrics_progress_and_artifacts(worker_store: JobStore) -> None:
    job_id = submit(worker_store, spec(training={"steps": 40, "eval_every": 10}))
    job = wait_for(worker_store, job_id, ("succeeded", "failed"), timeout=120)
    assert job.state == "succeeded", job.error
    assert job.progress == 1.0
    assert [m["step"] for m in worker_store.metrics.points(job_id)] == [0, 10, 20, 30, 40]
    assert [p["stage"] for p in job.result["processes"]] == [0, 1]
    assert "weights.safetensors" in worker_store.artifacts.names(job_id)
    assert [e.state for e in worker_store.jobs.events(job_id)] == ["queued", "running", "succeeded"]


def test_cancel_leaves_no_stage_process_behind(worker_store: JobStore) -> None:
    job_id = submit(worker_store, spec(training={"steps": 200_000, "eval_every": 50}))
    deadline = time.monotonic() + 90
    while time.monotonic() < deadline and worker_store.metrics.last_step(job_id) < 50:
        time.sleep(0.1)
    job = worker_store.jobs.get(job_id)
    assert job is not None and job.state == "running"
    pool = int(job.worker.rsplit(":", 1)[1])
    stages = stage_processes_under(pool)
    assert len(stages) == 2
    worker_store.jobs.request_cancel(job_id)
    job = wait_for(worker_store, job_id, ("cancelled", "succeeded", "failed"), timeout=60)
    assert job.state == "cancelled", job.error
    assert not any(p.is_running() and p.status() != "zombie" for p in stages)
    assert stage_processes_under(pool) == []


def test_a_killed_processes_job_resumes_to_the_uninterrupted_result(
    worker_store: JobStore,
) -> None:
    """kill -9 the job's process mid-run: its stage processes go with it, the job is
    redelivered and resumes from the checkpoint the stages wrote, and ends with the
    metrics a run of the same spec that nobody interrupted has."""
    job_spec = spec(
        training={"steps": 1000, "micro_batch_size": 8, "eval_every": 100},
        pipeline={"schedule": "gpipe", "micro_batches": 2},
    )
    reference = submit(worker_store, job_spec)
    assert wait_for(worker_store, reference, ("succeeded", "failed"), timeout=300).state == (
        "succeeded"
    )
    job_id = submit(worker_store, job_spec)
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and worker_store.jobs.checkpoint(job_id) is None:
        time.sleep(0.05)
    job = worker_store.jobs.get(job_id)
    assert job is not None and job.state == "running"
    engine_pid = int(worker_store.r.hget(f"{worker_store.p}job:{job_id}", "engine_pid"))
    pool = int(job.worker.rsplit(":", 1)[1])
    stages = stage_processes_under(pool)
    assert len(stages) == 2
    os.kill(engine_pid, signal.SIGKILL)
    _, alive = psutil.wait_procs(stages, timeout=60)
    assert alive == [], f"stage processes outlived their killed job process: {alive}"
    job = wait_for(worker_store, job_id, ("succeeded", "failed"), timeout=300)
    assert job.state == "succeeded", job.error
    assert job.attempts == 2
    assert without_wall(worker_store.metrics.points(job_id)) == without_wall(
        worker_store.metrics.points(reference)
    )


def test_slots_are_held_by_open_files_and_freed_when_their_process_dies(tmp_path) -> None:
    slots = Slots(tmp_path, 3)
    held = slots.claim(2)
    assert held is not None and slots.in_use() == 2
    assert slots.claim(2) is None and slots.in_use() == 2  # nothing half-claimed
    child = subprocess.Popen(
        [
            "python3",
            "-c",
            "import fcntl, os, sys, time\n"
            f"fd = os.open({str(tmp_path / 'slot-2')!r}, os.O_RDWR)\n"
            "fcntl.flock(fd, fcntl.LOCK_EX)\nprint('held', flush=True)\ntime.sleep(600)",
        ],
        stdout=subprocess.PIPE,
        text=True,
    )
    assert child.stdout is not None and child.stdout.readline() == "held\n"
    assert slots.in_use() == 3 and slots.claim(1) is None
    child.kill()
    child.wait()
    assert slots.in_use() == 2
    Slots.release(held)
    assert slots.in_use() == 0


@pytest.fixture
def second_worker(worker_store: JobStore) -> Any:
    """Another Celery worker on the same host and deployment (the fixture's env)."""
    proc = subprocess.Popen(
        [*worker_command(), "--without-gossip", "--without-mingle", "-n", "second@%h"],
        cwd=ROOT,
        env=os.environ.copy(),
    )
    yield proc
    stop_process(proc, timeout=30)


def test_two_workers_never_run_more_stage_processes_than_the_host_has_slots(
    worker_store: JobStore, second_worker: Any
) -> None:
    """With worker_slots = the cores (2 here) two 2-stage jobs on two workers run one after
    the other: the second waits, queued, for the first one's slots."""
    slots = os.cpu_count() or 1
    if not 2 <= slots <= 3:
        pytest.skip("needs a host of 2 or 3 cores (the default slots are its cores)")
    job_spec = spec(training={"steps": 300, "eval_every": 100}, pipeline={"stages": slots})
    first, second = submit(worker_store, job_spec), submit(worker_store, job_spec)
    for job_id in (first, second):
        job = wait_for(worker_store, job_id, ("succeeded", "failed"), timeout=300)
        assert job.state == "succeeded", job.error
    spans = []
    for job_id in (first, second):
        events = worker_store.jobs.events(job_id)
        running = [e.t for e in events if e.state == "running"]
        ended = [e.t for e in events if e.state == "succeeded"]
        spans.append((running[0], ended[0]))
    spans.sort()
    assert spans[0][1] <= spans[1][0], spans  # no overlap
