"""The Celery app: broker and backend on Redis, settings chosen for long simulation jobs.

No torch work happens at import, in the parent or in the pool processes: a process
forked after torch ran ops can hang. The parent only imports (see _preload); each
job's own process (worker/fresh_process.py) sets its thread count and runs torch.
"""

from __future__ import annotations

import logging
import os

from celery import Celery
from celery.signals import worker_init

from aimc_store.fair_share import TRANSPORT_OPTIONS
from worker.settings import get_settings

HARD_TIME_LIMIT_S = 24 * 3600
WARM_STAGES = 4  # timeline.png's figure is built at start for jobs of 1 to 4 stages
log = logging.getLogger(__name__)

app = Celery("aimc", include=["worker.tasks"])
app.conf.update(
    broker_url=get_settings().redis_url,
    result_backend=get_settings().redis_url,
    task_default_queue=get_settings().queue,
    # a job whose worker dies is redelivered instead of lost (our attempt counter
    # stops a job that kills its worker every time)
    task_acks_late=True,
    task_reject_on_worker_lost=True,
    # one job at a time per child. service.md's worker_max_tasks_per_child=1 is there for a
    # fresh process per job (no leaked memory); each job gets one by being forked from
    # the pool process (worker/fresh_process.py), which costs ~10 ms where replacing the
    # pool process after every task idled the worker 1-4 s. The pool process never runs
    # torch, so it does not grow; the memory ceiling replaces it if it ever does.
    worker_prefetch_multiplier=1,
    worker_max_tasks_per_child=None,
    worker_max_memory_per_child=get_settings().worker_max_memory_mib * 1024,  # KiB
    # visibility: longer than the hard limit, or Redis redelivers long jobs while they
    # still run; priorities: one list per priority, lowest first, as the API sends them
    # (fair share between users, aimc_store.fair_share)
    broker_transport_options={
        "visibility_timeout": HARD_TIME_LIMIT_S + 3600,
        **TRANSPORT_OPTIONS,
    },
    task_soft_time_limit=HARD_TIME_LIMIT_S - 300,  # stop cleanly first
    task_time_limit=HARD_TIME_LIMIT_S,  # then hard kill
    # the store holds each job's state and result: a Celery result per task would be a
    # second copy nobody reads (and a Redis write per job)
    task_ignore_result=True,
    task_serializer="json",
    result_serializer="json",
    accept_content=["json"],
    broker_connection_retry_on_startup=True,
    # a restarting Redis: reconnect for as long as it takes, and let the running job go
    # on (its store waits for Redis too) rather than cancel it
    broker_connection_retry=True,
    broker_connection_max_retries=None,
    worker_cancel_long_running_tasks_on_connection_loss=False,
)


@worker_init.connect
def _preload(**_: object) -> None:
    """In the parent, before it forks children: import torch, the engine and matplotlib
    and draw a job's plots once from made-up data: curves.png and timeline.png for 1 to
    WARM_STAGES stages. Each plot's figure is built once per process
    (aimc_engine.artifacts), so pool processes and each job's process forked from them
    start in milliseconds and only set their data and render (~0.15 s for both plots),
    instead of re-importing for ~2 s and building the figures for ~0.15 s more.
    Imports and matplotlib only: no torch op runs here, so no torch thread pool exists
    to break in the children."""
    import tempfile
    from pathlib import Path

    from aimc_engine.threads import passive_openmp

    # OpenMP reads its wait policy once, when torch loads it: before the import
    # (aimc_engine/threads.py); the pool and job processes inherit the loaded runtime
    if not passive_openmp():
        log.warning("torch was imported before the worker started: OpenMP threads spin")
    import torch  # noqa: F401

    # below the API's priority: a request waits on a simulation's CPU time only when
    # nothing else wants it (the pool and job processes inherit this)
    os.nice(get_settings().worker_nice)

    import aimc_engine.runner  # noqa: F401
    from aimc_engine.artifacts import plot_curves, plot_timeline
    from aimc_engine.pipeline.schedule import build_schedule
    from aimc_engine.pipeline.timeline import replay

    points = [
        {
            "samples": 10 * i,
            "sim_time_ns": 1e3 * i,
            "train_loss": 2.0 / (i + 1),
            "test_loss": 2.1 / (i + 1),
            "test_accuracy": i / 10,
        }
        for i in range(10)
    ]
    with tempfile.TemporaryDirectory() as tmp:
        plot_curves(Path(tmp) / "curves.png", points, "warm-up")
        for stages in range(1, WARM_STAGES + 1):
            timed = replay(build_schedule("async", stages, 8, 2), lambda _: 1.0)
            plot_timeline(Path(tmp) / "timeline.png", timed, stages, "warm-up")
