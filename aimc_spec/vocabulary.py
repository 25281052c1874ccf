"""The names every package shares: schedules, job states, the task queue.

Each name is defined here once; the spec validates against these tuples, the
engine builds schedules from them, the store, API, worker, client and CLI test
job states with them. Nothing here imports anything of aimc's.
"""

from __future__ import annotations

from typing import Literal

ScheduleName = Literal["sequential", "gpipe", "1f1b", "async", "async_stash"]
SCHEDULES: tuple[ScheduleName, ...] = ("sequential", "gpipe", "1f1b", "async", "async_stash")
SYNCHRONOUS: tuple[ScheduleName, ...] = ("gpipe", "1f1b")  # one update per B micro-batches
ASYNCHRONOUS: tuple[ScheduleName, ...] = ("async", "async_stash")  # forwards on stale weights

TERMINAL = ("succeeded", "failed", "cancelled")  # a job in these states never runs again
STATES = ("queued", "running", "retrying", "lost", *TERMINAL)

# the Celery queue jobs wait in under the default key prefix; "aimc.<prefix>" under
# another (aimc_store.settings.StoreSettings.queue)
QUEUE = "aimc"
RUN_JOB_TASK = "aimc.run_job"  # the task name the API sends and the worker registers
# the task that draws a sweep's overlay plot, sent by the API for an ended sweep whose
# plot no worker drew (its last job ended before the sweep was recorded as such)
DRAW_SWEEP_PLOT_TASK = "aimc.draw_sweep_plot"
