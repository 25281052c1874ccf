"""The Celery tasks: run one job, draw a sweep's plot. They only wire the parts:
the job's lease (lease.py: lock, slots, heartbeat, attempts), its own process
(fresh_process.py) and the engine bridge that runs in it (bridge.py).

Crash safety: a killed worker's lock soon expires and its job shows as lost; Celery
redelivers the task (late acks, reject on worker loss), and the new attempt resumes
from the last checkpoint, skipping metric points already stored.
"""

from __future__ import annotations

import logging
import os
from typing import Any

from aimc_spec.vocabulary import DRAW_SWEEP_PLOT_TASK, RUN_JOB_TASK, TERMINAL, JobState
from aimc_store.records import Job
from aimc_store.store import JobStore
from worker.app import app
from worker.bridge import fail, job_process, patient_store
from worker.fresh_process import run_in_fresh_process
from worker.lease import Declined, Lease, lease
from worker.settings import get_settings
from worker.sweep_plot import after_job_ended, draw_if_ended

log = logging.getLogger(__name__)


@app.task(name=RUN_JOB_TASK, bind=True, max_retries=None)
def run_job(self: Any, job_id: str) -> str:
    """Run job `job_id` unless it is finished, cancelled or held by a live worker; once
    it has ended, draw its sweep's plot if it was the sweep's last job."""
    store = patient_store()
    outcome = _run_job(self, store, job_id)
    if outcome in TERMINAL:
        after_job_ended(store, job_id)
    return outcome


@app.task(name=DRAW_SWEEP_PLOT_TASK)
def draw_sweep_plot(sweep_id: str) -> bool:
    """Draw an ended sweep's plot that no job's end drew (sent by the API)."""
    return draw_if_ended(patient_store(), sweep_id)


def _run_job(task: Any, store: JobStore, job_id: str) -> str:
    """run_job's work; the job's state when it returns (or why it did not run it)."""
    job = store.jobs.get(job_id)
    if job is None:
        return JobState.MISSING
    owner, limit = job.owner, get_settings().max_running_jobs
    state = job.state
    if not job.ended and store.jobs.cancel_requested(job_id):
        store.jobs.set_state(job_id, JobState.CANCELLED)
        state = JobState.CANCELLED
    if state in TERMINAL:
        _queue_parked(store, owner, limit)  # this task may have been handed a free slot
        return state
    try:
        with lease(store, job, lambda seconds: task.retry(countdown=seconds), limit) as held:
            outcome = _attempt(store, job, held)
    except Declined as declined:
        return declined.outcome
    _queue_parked(store, owner, limit)
    return outcome


def _attempt(store: JobStore, job: Job, held: Lease) -> str:
    """One attempt at the job, in a process of its own; the state it ends in."""
    try:
        if not held.start_attempt():
            return JobState.FAILED
        code = run_in_fresh_process(
            lambda: job_process(job.id, job.spec, job.owner), started=held.engine_pid.append
        )
        if held.superseded.is_set():
            # given up for lost (this worker was cut off from Redis past the heartbeat's
            # lifetime) and taken by another worker, which resumes it: leave it to that one
            log.warning("job %s: another worker took it over; this run stopped", job.id)
            return JobState.SUPERSEDED
        if code < 0:
            # a signal killed the job's process (the kernel's OOM killer, an operator):
            # die as a killed worker would, so Celery redelivers the job (reject on worker
            # lost) and its next attempt resumes from the checkpoint
            log.error("job %s: its process was killed by signal %d", job.id, -code)
            os._exit(1)
        final = store.jobs.get(job.id)
        if final is None or not final.ended:
            store.jobs.set_state(
                job.id, JobState.FAILED, error=f"the job's process exited with code {code}"
            )
            return JobState.FAILED
        return final.state
    except Exception as exc:  # the job fails; the worker stays up for the next one
        fail(store, job.id, exc)
        return JobState.FAILED


def _queue_parked(store: JobStore, owner: str, limit: int) -> None:
    """Send the owner's parked jobs that now fit under their running limit to the queue."""
    for parked in store.leases.free_slots(owner, limit):
        run_job.apply_async(args=[parked])
