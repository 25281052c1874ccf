"""The names every package shares: schedules, job states (JobState), the task queue.

Each name is defined here once; the spec validates against these tuples, the
engine builds schedules from them, the store, API, worker, client and CLI test
job states with them. Nothing here imports anything of aimc's.
"""

from __future__ import annotations

from enum import StrEnum
from typing import Literal

ScheduleName = Literal["sequential", "gpipe", "1f1b", "async", "async_stash"]
SCHEDULES: tuple[ScheduleName, ...] = ("sequential", "gpipe", "1f1b", "async", "async_stash")
SYNCHRONOUS: tuple[ScheduleName, ...] = ("gpipe", "1f1b")  # one update per B micro-batches
ASYNCHRONOUS: tuple[ScheduleName, ...] = ("async", "async_stash")  # forwards on stale weights


class JobState(StrEnum):
    """Every name a job's state or a run's outcome takes, each defined once here.

    A job is kept in the store in one of the first seven (STATES). The others are
    outcomes never kept as a job's state: what the worker's run_job task returns when it
    does not run a job to its end (parked, superseded, missing), and what a sweep shows
    for a member whose job is gone (expired). A StrEnum: each member is its string, so
    it compares, hashes, prints and serialises as the bare name (ray's JobStatus shape).
    """

    QUEUED = "queued"  # waiting for a worker (also while parked by the owner's limit)
    RUNNING = "running"
    RETRYING = "retrying"  # its worker was lost; queued again to resume
    LOST = "lost"  # shown by the API for a running job whose worker stopped beating
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    CANCELLED = "cancelled"
    PARKED = "parked"  # run_job: the owner's running limit; the job stays queued
    SUPERSEDED = "superseded"  # run_job: another worker took the job over and resumes it
    MISSING = "missing"  # run_job: no such job (deleted before a worker took it)
    EXPIRED = "expired"  # a sweep member whose job was deleted or reached its retention

    @property
    def is_terminal(self) -> bool:
        """Whether a job in this state never runs again (succeeded, failed, cancelled)."""
        return self in TERMINAL

    @property
    def is_stored(self) -> bool:
        """Whether a job is kept in this state (the rest are outcomes, never stored)."""
        return self in STATES


# a job in these states never runs again
TERMINAL: tuple[JobState, ...] = (JobState.SUCCEEDED, JobState.FAILED, JobState.CANCELLED)
STATES: tuple[JobState, ...] = (
    JobState.QUEUED,
    JobState.RUNNING,
    JobState.RETRYING,
    JobState.LOST,
    *TERMINAL,
)

# the Celery queue jobs wait in under the default key prefix; "aimc.<prefix>" under
# another (aimc_store.settings.StoreSettings.queue)
QUEUE = "aimc"
RUN_JOB_TASK = "aimc.run_job"  # the task name the API sends and the worker registers
# the task that draws a sweep's overlay plot, sent by the API for an ended sweep whose
# plot no worker drew (its last job ended before the sweep was recorded as such)
DRAW_SWEEP_PLOT_TASK = "aimc.draw_sweep_plot"
