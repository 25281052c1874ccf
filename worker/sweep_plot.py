"""A sweep's overlay plot, drawn by a worker once the sweep's last job has ended: the API
process never runs matplotlib (import-linter contract), it serves the stored PNG."""

from __future__ import annotations

import logging
from typing import Any

from aimc_spec.sweep import label
from aimc_store.records import Sweep
from aimc_store.store import JobStore
from aimc_study.plots import plot_grouped

log = logging.getLogger(__name__)


def draw_if_ended(store: JobStore, sweep_id: str) -> bool:
    """Draw and keep the sweep's overlay plot if every one of its jobs has ended and no
    plot is kept yet; True if this call stored it. Idempotent: a second call, or a second
    worker ending the last job at the same moment, stores nothing more."""
    sweep = store.sweeps.get(sweep_id)
    if sweep is None or store.sweeps.has_plot(sweep_id) or not store.sweeps.ended(sweep):
        return False
    png = plot_grouped(seed_groups(store, sweep), f"sweep {sweep.name} ({sweep.id})")
    return store.sweeps.finish(sweep_id, png)


def seed_groups(store: JobStore, sweep: Sweep) -> list[tuple[str, list[list[dict[str, Any]]]]]:
    """The sweep's jobs grouped by their overrides other than `seed`, in grid order: a
    grid over seeds becomes one line per setting, the mean over its seeds with a 95%
    confidence band (plot_grouped); without a seed axis every job is a line of its own."""
    groups: dict[str, list[list[dict[str, Any]]]] = {}
    for member in sweep.members:
        setting = {k: v for k, v in member.overrides.items() if k != "seed"}
        groups.setdefault(label(setting) or "base", []).append(store.metrics.points(member.job))
    return list(groups.items())


def after_job_ended(store: JobStore, job_id: str) -> None:
    """The hook a worker runs once a job it handled is in a final state: if the job
    belongs to a sweep that has now ended, draw the sweep's plot. A failure here is
    logged and leaves the job as it ended (the API asks for the plot again)."""
    try:
        job = store.jobs.get(job_id)
        if job is not None and job.sweep is not None and draw_if_ended(store, job.sweep):
            log.info("sweep %s ended with job %s; its overlay plot is stored", job.sweep, job_id)
    except Exception:
        log.exception("job %s: drawing its sweep's plot failed", job_id)
