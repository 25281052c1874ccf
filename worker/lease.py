"""A worker's hold on one job while it runs: the lease.

Taking it, in order: the job's lock in Redis (never two runs of one job at once), the
host's process slots (slots.py: one per process the job runs), the owner's running
slot (max_running_jobs), then a heartbeat thread that refreshes lock and heartbeat and,
if another worker has taken the job over meanwhile, kills this run's job process.
Leaving gives all of it back, in reverse, whatever happened in between. A job that
cannot be taken now is retried later (`task.retry`) or set aside (`Declined`).

Crash safety: a killed worker's lock expires LIVENESS_TTL_S after its last beat, so its
job shows as lost and the redelivered task can take it; its slots' files close with
its processes.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import tempfile
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from aimc_spec.slots import slots_for, slots_problem
from aimc_spec.spec import JobSpec, SpecError, parse_spec
from aimc_spec.vocabulary import JobState
from aimc_store.records import Job
from aimc_store.store import JobStore
from worker.settings import get_settings
from worker.slots import Slots

MAX_ATTEMPTS = 3  # a job that kills its worker this often is failed, not retried forever
HEARTBEAT_S = 2.0  # the running worker refreshes heartbeat and lock this often
LIVENESS_TTL_S = 10  # ...and they expire this long after its last beat
LOCKED_RETRY_S = LIVENESS_TTL_S  # a locked job is tried again once a dead holder's lock expired
SLOTS_RETRY_S = 2  # a job waiting for the host's free process slots is tried again this often


class Declined(Exception):
    """The job is not run now, with the outcome to report: "parked" (the owner's running
    limit: queued until one of theirs ends) or "failed" (it never could run here)."""

    def __init__(self, outcome: str) -> None:
        super().__init__(outcome)
        self.outcome = outcome


@dataclass
class Lease:
    """What the worker holds for job `job_id` while it runs."""

    store: JobStore
    job_id: str
    holder: str  # host:pid of the worker process
    engine_pid: list[int] = field(default_factory=list)  # the job's process, once started
    superseded: threading.Event = field(default_factory=threading.Event)

    def start_attempt(self) -> bool:
        """Count an attempt and mark the job running; False (the job failed) past
        MAX_ATTEMPTS."""
        attempts = self.store.jobs.add_attempt(self.job_id)
        if attempts > MAX_ATTEMPTS:
            error = f"gave up after {MAX_ATTEMPTS} attempts"
            self.store.jobs.set_state(self.job_id, JobState.FAILED, error=error)
            return False
        if attempts > 1:
            self.store.jobs.set_state(self.job_id, JobState.RETRYING)
        self.store.jobs.set_state(self.job_id, JobState.RUNNING, worker=self.holder)
        return True


def host_slots() -> Slots:
    """This host's slots for this deployment (slots.py), worker_slots of them."""
    settings = get_settings()
    name = "".join(c if c.isalnum() else "_" for c in settings.key_prefix)
    folder = Path(tempfile.gettempdir()) / f"aimc-slots-{os.getuid()}" / name
    return Slots(folder, settings.worker_slots)


def _parsed(spec: dict[str, Any]) -> JobSpec | None:
    """The job's spec, or None if it does not parse (its run then fails saying why)."""
    try:
        return parse_spec(spec)
    except SpecError:
        return None


@contextlib.contextmanager
def lease(
    store: JobStore, job: Job, retry: Callable[[float], Exception], limit: int
) -> Iterator[Lease]:
    """Hold job `job` for the block (see the module's docstring). `retry(seconds)` is the
    exception that sends the task back to the queue; `limit` the owner's running limit.
    Raises Declined for a job set aside."""
    held = Lease(store, job.id, f"{socket.gethostname()}:{os.getpid()}")
    if not store.leases.take_lock(job.id, held.holder, LIVENESS_TTL_S):
        raise retry(LOCKED_RETRY_S)  # never two runs at once; never dropped
    spec, host = _parsed(job.spec), host_slots()
    problem = slots_problem(spec, host.total) if spec else None
    slots: list[int] | None = None
    try:
        if problem:  # the API refuses these: a worker with fewer slots than the API says
            store.jobs.set_state(job.id, JobState.FAILED, error=f"{problem[0]}: {problem[1]}")
            raise Declined(JobState.FAILED)
        slots = host.claim(slots_for(spec) if spec else 1)
        if slots is None:  # the host runs as many processes as it may: wait in the queue
            raise retry(SLOTS_RETRY_S)
        if not store.leases.claim_slot(job.owner, job.id, limit):
            raise Declined(JobState.PARKED)
        stop = threading.Event()
        beater = threading.Thread(target=_beat, args=(held, stop), daemon=True)
        beater.start()
        try:
            yield held
        finally:
            stop.set()
            beater.join()
    finally:
        if slots is not None:
            Slots.release(slots)
        store.leases.release_lock(job.id, held.holder)


def _beat(held: Lease, stop: threading.Event) -> None:
    """Refresh heartbeat and lock until stopped; if another worker holds the lock now,
    kill this run's job process (two runs of one job would write its metrics twice)."""
    while True:
        if not held.store.leases.beat(held.job_id, held.holder, LIVENESS_TTL_S):
            held.superseded.set()
            for pid in held.engine_pid:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)
            return
        if stop.wait(HEARTBEAT_S):
            return
