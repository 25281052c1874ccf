"""The Celery app: broker and backend on Redis, settings chosen for long simulation jobs.

No torch work happens at import or in the parent: prefork children would hang on a
torch runtime initialised before the fork. The parent only imports (see _preload);
each child sets its own thread count.
"""

from __future__ import annotations

import os

from celery import Celery
from celery.signals import worker_init, worker_process_init

from service.settings import get_settings

QUEUE = "aimc"
HARD_TIME_LIMIT_S = 24 * 3600

app = Celery("aimc", include=["worker.tasks"])
app.conf.update(
    broker_url=get_settings().redis_url,
    result_backend=get_settings().redis_url,
    task_default_queue=QUEUE,
    # a job whose worker dies is redelivered instead of lost (our attempt counter
    # stops a job that kills its worker every time)
    task_acks_late=True,
    task_reject_on_worker_lost=True,
    # one job at a time per child, and by default a fresh child per job: no leaked memory.
    # Replacing a child idles the worker ~1-4 s (billiard's exit handshake), so
    # AIMC_WORKER_MAX_TASKS_PER_CHILD trades that for reuse; the memory ceiling still
    # replaces a child that grew (a leak) after its job.
    worker_prefetch_multiplier=1,
    worker_max_tasks_per_child=get_settings().worker_max_tasks_per_child or None,
    worker_max_memory_per_child=get_settings().worker_max_memory_mib * 1024,  # KiB
    # longer than the hard limit, or Redis redelivers long jobs while they still run
    broker_transport_options={"visibility_timeout": HARD_TIME_LIMIT_S + 3600},
    task_soft_time_limit=HARD_TIME_LIMIT_S - 300,  # stop cleanly first
    task_time_limit=HARD_TIME_LIMIT_S,  # then hard kill
    # the store holds each job's state and result: a Celery result per task would be a
    # second copy nobody reads (and a Redis write per job)
    task_ignore_result=True,
    task_serializer="json",
    result_serializer="json",
    accept_content=["json"],
    broker_connection_retry_on_startup=True,
)


@worker_init.connect
def _preload(**_: object) -> None:
    """In the parent, before it forks children: import torch, the engine and matplotlib
    and draw both plots of a job once from made-up data (fonts, tickers, mathtext, Agg
    warm). A fresh child per job is then a copy-on-write fork that starts in
    milliseconds and draws its plots in ~0.25 s, instead of re-importing for ~2 s and
    paying ~0.2 s more for the first figure. Imports and matplotlib only: no torch op
    runs here, so no torch thread pool exists to break in the children."""
    import tempfile
    from pathlib import Path

    import torch  # noqa: F401

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
    timed = replay(build_schedule("async", 2, 8, 2), lambda _: 1.0)
    with tempfile.TemporaryDirectory() as tmp:
        plot_curves(Path(tmp) / "curves.png", points, "warm-up")
        plot_timeline(Path(tmp) / "timeline.png", timed, 2, "warm-up")


@worker_process_init.connect
def _prepare_child(**_: object) -> None:
    """Per child: cores // concurrency torch threads (oversubscribed threads ran ~18x
    slower). Imports are a no-op when the parent preloaded them (_preload)."""
    import torch

    concurrency = int(os.environ.get("AIMC_WORKER_CONCURRENCY", "1"))
    torch.set_num_threads(max(1, (os.cpu_count() or 1) // concurrency))
