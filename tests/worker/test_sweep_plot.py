"""worker/sweep_plot.py: the worker that ends a sweep's last job draws its overlay plot,
once, even when two workers end the last two jobs at the same moment."""

from __future__ import annotations

import multiprocessing
from typing import Any

from aimc_store.records import SweepMember
from aimc_store.store import JobStore
from tests.conftest import store_url
from worker.sweep_plot import after_job_ended, draw_if_ended, seed_groups


def _points(loss: float) -> list[dict[str, float]]:
    return [
        {"step": s, "samples": 8.0 * s, "sim_time_ns": 1e3 * s, "test_loss": loss / (s + 1)}
        for s in (0, 10, 20)
    ]


def _sweep(store: JobStore, n: int) -> tuple[str, list[str]]:
    """A sweep of n queued jobs, each with three metric points."""
    jobs = []
    for seed in range(n):
        job_id = store.jobs.create("uma", {"seed": seed})
        for point in _points(2.0 + seed):
            store.metrics.add(job_id, point)
        jobs.append(job_id)
    members = [SweepMember(j, {"seed": s}) for s, j in enumerate(jobs)]
    return store.sweeps.create("uma", "seeds", {"seed": list(range(n))}, members), jobs


def test_the_plot_is_drawn_when_the_last_job_ends(plain_store: JobStore) -> None:
    store = plain_store
    sweep_id, jobs = _sweep(store, 3)
    store.jobs.set_state(jobs[0], "succeeded")
    after_job_ended(store, jobs[0])
    assert store.sweeps.plot(sweep_id) is None  # two jobs still to end
    store.jobs.set_state(jobs[1], "failed")
    store.jobs.set_state(jobs[2], "cancelled")
    after_job_ended(store, jobs[2])
    png = store.sweeps.plot(sweep_id)
    assert png is not None and png[:4] == b"\x89PNG" and len(png) > 10_000
    assert not draw_if_ended(store, sweep_id)  # once
    assert store.sweeps.plot(sweep_id) == png


def test_seeds_of_one_setting_make_one_line_with_a_band(plain_store: JobStore) -> None:
    """A grid over lr x seed: one group per lr holding its seeds' curves; a grid without
    seeds: a group per job (the plain overlay)."""
    store = plain_store
    grid = [(lr, seed) for lr in (0.1, 0.2) for seed in (1, 2, 3)]
    members = []
    for lr, seed in grid:
        job_id = store.jobs.create("uma", {"seed": seed})
        for point in _points(lr * 10 + seed):
            store.metrics.add(job_id, point)
        members.append(SweepMember(job_id, {"optimizer.lr": lr, "seed": seed}))
    sweep_id = store.sweeps.create(
        "uma", "lr", {"optimizer.lr": [0.1, 0.2], "seed": [1, 2, 3]}, members
    )
    sweep = store.sweeps.get(sweep_id)
    assert sweep is not None
    groups = seed_groups(store, sweep)
    assert [name for name, _ in groups] == ["lr=0.1", "lr=0.2"]
    assert [len(runs) for _, runs in groups] == [3, 3]
    assert groups[1][1][2][0]["test_loss"] == 0.2 * 10 + 3  # lr 0.2, seed 3, first point
    only_seeds, _ = _sweep(store, 2)
    plain = store.sweeps.get(only_seeds)
    assert plain is not None
    assert [(name, len(runs)) for name, runs in seed_groups(store, plain)] == [("base", 2)]


def test_a_job_outside_any_sweep_draws_nothing(plain_store: JobStore) -> None:
    job_id = plain_store.jobs.create("vic", {})
    plain_store.jobs.set_state(job_id, "succeeded")
    after_job_ended(plain_store, job_id)  # no sweep: nothing to do, nothing raised
    after_job_ended(plain_store, "no-such-job")
    assert not draw_if_ended(plain_store, "sw_missing")
    assert list(plain_store.r.scan_iter(match=f"{plain_store.p}sweep:*")) == []


def _draw_in_own_process(url: str, prefix: str, sweep_id: str, start: Any, out: Any) -> None:
    """One worker: its own process and Redis connection, as in production."""
    store = JobStore.from_url(url, prefix)
    start.wait()
    out.put(draw_if_ended(store, sweep_id))


def test_two_workers_ending_the_last_jobs_at_once_store_one_plot(plain_store: JobStore) -> None:
    store = plain_store
    sweep_id, jobs = _sweep(store, 2)
    for job_id in jobs:
        store.jobs.set_state(job_id, "succeeded")
    context = multiprocessing.get_context("spawn")
    start, out = context.Barrier(2), context.Queue()
    args = (store_url(store), store.p, sweep_id, start, out)
    workers = [context.Process(target=_draw_in_own_process, args=args) for _ in jobs]
    for w in workers:
        w.start()
    stored = [out.get(timeout=120) for _ in workers]
    for w in workers:
        w.join(timeout=30)
    assert stored.count(True) == 1  # whichever stored first; the other's plot is dropped
    assert store.sweeps.plot(sweep_id) is not None
