"""The task that runs one job through the engine, streaming into the store.

Crash safety: the job's lock and heartbeat are refreshed by a thread while it
runs, so a killed worker's lock soon expires and its job shows as lost; Celery
redelivers the task (late acks, reject on worker loss), and the new attempt
resumes from the last checkpoint, skipping metric points already stored. The
engine work itself runs in a process forked for the job (worker/fresh_process.py).
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import signal
import socket
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

from aimc_spec.spec import DATASET_ROOTS, JobSpec, SpecError, parse_spec
from aimc_spec.vocabulary import DRAW_SWEEP_PLOT_TASK, RUN_JOB_TASK, TERMINAL
from aimc_store.store import JobStore
from worker.app import app
from worker.fresh_process import run_in_fresh_process
from worker.memory_limit import describe_failure
from worker.settings import get_settings
from worker.sweep_plot import after_job_ended, draw_if_ended

log = logging.getLogger(__name__)
MAX_ATTEMPTS = 3  # a job that kills its worker this often is failed, not retried forever
CANCEL_POLL_S = 0.5  # how often a running job looks at its cancel flag
PROGRESS_EVERY_S = 1.0
HEARTBEAT_S = 2.0  # the running worker refreshes heartbeat and lock this often
LIVENESS_TTL_S = 10  # ...and they expire this long after its last beat
CHECKPOINT_EVERY = 200  # micro-batches between checkpoints
LOCKED_RETRY_S = LIVENESS_TTL_S  # a locked job is tried again once a dead holder's lock expired


REDIS_PATIENCE_S = 120  # a running job waits this long for a restarting Redis, then fails


def _store() -> JobStore:
    """The worker's store: patient, so a Redis restart pauses a job instead of failing it."""
    return JobStore.from_settings(get_settings(), patient_s=REDIS_PATIENCE_S)


@app.task(name=RUN_JOB_TASK, bind=True, max_retries=None)
def run_job(self: Any, job_id: str) -> str:
    """Run job `job_id` unless it is finished, cancelled or held by a live worker; once
    it has ended, draw its sweep's plot if it was the sweep's last job."""
    store = _store()
    outcome = _run_job(self, store, job_id)
    if outcome in TERMINAL:
        after_job_ended(store, job_id)
    return outcome


@app.task(name=DRAW_SWEEP_PLOT_TASK)
def draw_sweep_plot(sweep_id: str) -> bool:
    """Draw an ended sweep's plot that no job's end drew (sent by the API)."""
    return draw_if_ended(_store(), sweep_id)


def _run_job(task: Any, store: JobStore, job_id: str) -> str:
    """run_job's work; the job's state when it returns (or why it did not run it)."""
    job = store.get_job(job_id)
    if job is None:
        return "missing"
    owner, limit = job.owner, get_settings().max_running_jobs
    state = job.state
    if not job.ended and store.cancel_requested(job_id):
        store.set_state(job_id, "cancelled")
        state = "cancelled"
    if state in TERMINAL:
        _queue_parked(store, owner, limit)  # this task may have been handed a free slot
        return state
    holder = f"{socket.gethostname()}:{os.getpid()}"
    if not store.take_lock(job_id, holder, LIVENESS_TTL_S):
        raise task.retry(countdown=LOCKED_RETRY_S)  # never two runs at once; never dropped
    if not store.claim_slot(owner, job_id, limit):
        store.release_lock(job_id, holder)
        return "parked"  # the owner's running limit: queued until one of theirs ends
    stop_beating, superseded = threading.Event(), threading.Event()
    engine_pid: list[int] = []
    beater = threading.Thread(
        target=_beat,
        args=(store, job_id, holder, stop_beating, superseded, engine_pid),
        daemon=True,
    )
    beater.start()
    try:
        attempts = store.add_attempt(job_id)
        if attempts > MAX_ATTEMPTS:
            store.set_state(job_id, "failed", error=f"gave up after {MAX_ATTEMPTS} attempts")
            return "failed"
        if attempts > 1:
            store.set_state(job_id, "retrying")
        store.set_state(job_id, "running", worker=holder)
        code = run_in_fresh_process(
            lambda: _job_process(job_id, job.spec, owner), started=engine_pid.append
        )
        if superseded.is_set():
            # given up for lost (this worker was cut off from Redis past the heartbeat's
            # lifetime) and taken by another worker, which resumes it: leave it to that one
            log.warning("job %s: another worker took it over; this run stopped", job_id)
            return "superseded"
        if code < 0:
            # a signal killed the job's process (the kernel's OOM killer, an operator):
            # die as a killed worker would, so Celery redelivers the job (reject on worker
            # lost) and its next attempt resumes from the checkpoint
            log.error("job %s: its process was killed by signal %d", job_id, -code)
            os._exit(1)
        final = store.get_job(job_id)
        if final is None or not final.ended:
            store.set_state(job_id, "failed", error=f"the job's process exited with code {code}")
            return "failed"
        return final.state
    except Exception as exc:  # the job fails; the worker stays up for the next one
        _fail(store, job_id, exc)
        return "failed"
    finally:
        stop_beating.set()
        beater.join()
        store.release_lock(job_id, holder)
        _queue_parked(store, owner, limit)


def _queue_parked(store: JobStore, owner: str, limit: int) -> None:
    """Send the owner's parked jobs that now fit under their running limit to the queue."""
    for parked in store.free_slots(owner, limit):
        run_job.apply_async(args=[parked])


def _beat(
    store: JobStore,
    job_id: str,
    holder: str,
    stop: threading.Event,
    superseded: threading.Event,
    engine_pid: list[int],
) -> None:
    """Refresh heartbeat and lock until stopped; if another worker holds the lock now,
    kill this run's job process (two runs of one job would write its metrics twice)."""
    while True:
        if not store.beat(job_id, holder, LIVENESS_TTL_S):
            superseded.set()
            for pid in engine_pid:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)
            return
        if stop.wait(HEARTBEAT_S):
            return


def _job_process(job_id: str, spec: dict[str, Any], owner: str) -> int:
    """The body of the job's own process: fresh Redis connections (none is shared across
    the fork), cores // concurrency torch threads, the run. 0 once the job's final state
    is stored, whatever it is."""
    import torch

    concurrency = int(os.environ.get("AIMC_WORKER_CONCURRENCY", "1"))
    torch.set_num_threads(max(1, (os.cpu_count() or 1) // concurrency))
    # server-side dataset paths only under this worker's allowed directories (checked
    # again here: the API that admitted the spec may run on another machine)
    DATASET_ROOTS.set(get_settings().dataset_roots())
    store = _store()
    store.set_engine_pid(job_id, os.getpid())
    try:
        _run(store, job_id, spec, owner)
    except Exception as exc:
        _fail(store, job_id, exc)
    return 0


def _fail(store: JobStore, job_id: str, exc: Exception) -> None:
    """An unexpected error ends the job as failed, naming it; the traceback goes to the log."""
    log.exception("job %s failed", job_id)
    store.set_state(job_id, "failed", error=describe_failure(exc))  # names a memory limit


def _fetch_upload(store: JobStore, spec: JobSpec, owner: str, path: Path) -> Path | None:
    """The .npz of an `uploaded` dataset, written to `path`, if the owner's and still kept."""
    from aimc_engine.runner import RunError

    if spec.dataset.name != "uploaded":
        return None
    record = store.dataset(spec.dataset.id or "")
    data = store.dataset_bytes(spec.dataset.id or "") if record else None
    if record is None or record.owner != owner or data is None:
        raise RunError(f"dataset.id: no dataset {spec.dataset.id!r} (deleted, or not yours)")
    path.write_bytes(data)
    return path


def _run(store: JobStore, job_id: str, spec_data: dict[str, Any], owner: str) -> None:
    """Run the engine on the job and store its metrics, artifacts, result and final state."""
    from aimc_engine.artifacts import write_run
    from aimc_engine.runner import Callbacks, RunError, run

    try:
        spec = parse_spec(spec_data)
    except SpecError as exc:
        store.set_state(job_id, "failed", error=str(exc))
        return
    last = {"cancel": 0.0, "progress": 0.0}
    reached: list[float] = []  # the share of training done at the latest step
    stored_up_to = store.last_metric_step(job_id)  # points a previous attempt already stored

    def on_metrics(record: dict[str, Any]) -> None:
        if record["step"] > stored_up_to:
            store.add_metric(job_id, record)

    def should_stop() -> bool:
        now = time.monotonic()
        if now - last["cancel"] < CANCEL_POLL_S:
            return False
        last["cancel"] = now
        return store.cancel_requested(job_id)

    def on_progress(step: int, total: int, loss: float) -> None:
        reached[:] = [step / total]
        now = time.monotonic()
        if now - last["progress"] >= PROGRESS_EVERY_S or step == total:
            last["progress"] = now
            store.set_progress(job_id, step / total)

    callbacks = Callbacks(
        on_metrics=on_metrics,
        on_progress=on_progress,
        should_stop=should_stop,
        on_checkpoint=lambda blob: store.put_checkpoint(job_id, blob),
        checkpoint_every=CHECKPOINT_EVERY,
    )
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp)
        try:
            uploaded = _fetch_upload(store, spec, owner, out / "uploaded.npz")
            resume = store.checkpoint(job_id)
            if resume is not None:
                store.mark_resumed(job_id)
            output = run(spec, callbacks, resume=resume, uploaded=uploaded)
        except RunError as exc:
            store.set_state(job_id, "failed", error=str(exc))
            return
        engine_finished = time.time()
        if uploaded is not None:
            uploaded.unlink()  # not an artifact
        write_run(out, output.result, output.metrics, output.model, output.timeline)
        (out / "metrics.jsonl").write_text("".join(json.dumps(m) + "\n" for m in output.metrics))
        for path in sorted(out.iterdir()):
            store.put_artifact(job_id, path.name, path.read_bytes())
    store.set_result(job_id, output.result)
    status = output.result["status"]
    # a cancelled or failed job's progress is where it stopped, not 100% (and stays as
    # stored if it stopped before its first step of this attempt)
    progress: dict[str, float] = {}
    if status == "succeeded" or reached:
        progress["progress"] = 1.0 if status == "succeeded" else reached[0]
    store.set_state(
        job_id,
        status,
        error=output.result["error"] or "",
        engine_finished=engine_finished,
        **progress,
    )
