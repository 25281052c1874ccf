"""The Celery app: broker and backend on Redis, settings chosen for long simulation jobs.

No torch work happens at import: prefork children would hang on a torch
runtime initialised in the parent. Each child sets its own thread count.
"""

from __future__ import annotations

import os

from celery import Celery
from celery.signals import worker_process_init

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
    # one job at a time per child, and a fresh child per job: no leaked memory
    worker_prefetch_multiplier=1,
    worker_max_tasks_per_child=1,
    # longer than the hard limit, or Redis redelivers long jobs while they still run
    broker_transport_options={"visibility_timeout": HARD_TIME_LIMIT_S + 3600},
    task_soft_time_limit=HARD_TIME_LIMIT_S - 300,  # stop cleanly first
    task_time_limit=HARD_TIME_LIMIT_S,  # then hard kill
    task_serializer="json",
    result_serializer="json",
    accept_content=["json"],
    broker_connection_retry_on_startup=True,
)


@worker_process_init.connect
def _prepare_child(**_: object) -> None:
    """Per child, before its job arrives: cores // concurrency torch threads (oversubscribed
    threads ran ~18x slower), and the engine, torch and matplotlib imported now, so the
    seconds they take are not spent between a job's submit and its start or end."""
    import torch

    import aimc_engine.artifacts
    import aimc_engine.runner  # noqa: F401

    concurrency = int(os.environ.get("AIMC_WORKER_CONCURRENCY", "1"))
    torch.set_num_threads(max(1, (os.cpu_count() or 1) // concurrency))
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot
