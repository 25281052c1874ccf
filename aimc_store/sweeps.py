"""Sweeps: a grid's jobs recorded under one id, and the overlay plot of their curves,
drawn once by the worker that ends the last of them (worker/sweep_plot.py)."""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Iterable, Sequence
from typing import Any

from aimc_spec.vocabulary import TERMINAL, JobState
from aimc_store.base import Backend, Part
from aimc_store.jobs import Jobs
from aimc_store.records import Job, Sweep, SweepMember


def all_ended(states: Iterable[JobState]) -> bool:
    """Every member job has ended (or is gone): the sweep's curves will not change again."""
    return all(state in (*TERMINAL, JobState.EXPIRED) for state in states)


class Sweeps(Part):
    """`store.sweeps`: grids of jobs, and their plots."""

    def __init__(self, backend: Backend, jobs: Jobs) -> None:
        super().__init__(backend)
        self.jobs = jobs  # a sweep is admitted with its jobs, in one transaction

    def admit(
        self,
        owner: str,
        name: str,
        grid: dict[str, Any],
        points: Sequence[tuple[dict[str, Any], dict[str, Any]]],
    ) -> tuple[Sweep, list[Job]]:
        """Queue one job per (spec, overrides) point, no limit checked (the caller checked
        the room for all of them), and record the sweep of them: one MULTI/EXEC, so a
        Redis that fails halfway leaves all of it or nothing, never queued jobs without
        their sweep (which the reaper would run, and a retried request queue again). The
        sweep and its jobs as recorded."""
        pipe = self.r.pipeline()
        jobs = [self.jobs.new(owner, spec) for spec, _ in points]
        for job in jobs:
            self.jobs.create_on(pipe, job, None)
        members = [SweepMember(j.id, over) for j, (_, over) in zip(jobs, points, strict=True)]
        sweep = self._record(pipe, owner, name, grid, members)
        pipe.execute()
        return sweep, jobs

    def create(
        self, owner: str, name: str, grid: dict[str, Any], members: Sequence[SweepMember]
    ) -> str:
        """Record a sweep of jobs that exist already, and mark each job as the sweep's (so
        the worker that ends one can tell whether the sweep has ended); its id."""
        pipe = self.r.pipeline()
        sweep = self._record(pipe, owner, name, grid, members)
        pipe.execute()
        return sweep.id

    def _record(
        self, pipe: Any, owner: str, name: str, grid: dict[str, Any], members: Sequence[SweepMember]
    ) -> Sweep:
        """Queue create_sweep's writes on `pipe`; the sweep as they record it (no
        read-back needed)."""
        sweep = Sweep("sw_" + uuid.uuid4().hex[:16], owner, name, time.time(), grid, [*members])
        pipe.hset(
            self.key("sweep", sweep.id),
            mapping={
                "owner": owner,
                "name": name,
                "created": sweep.created,
                "grid": json.dumps(grid),
                "members": json.dumps([{"job": m.job, "overrides": m.overrides} for m in members]),
            },
        )
        for member in members:
            pipe.hset(self.key("job", member.job), "sweep", sweep.id)
        pipe.zadd(self.key("user", owner, "sweeps"), {sweep.id: sweep.created})
        return sweep

    def get(self, sweep_id: str) -> Sweep | None:
        record = self.backend.text_hash(self.key("sweep", sweep_id))
        if record is None:
            return None
        return Sweep(
            id=sweep_id,
            owner=record["owner"],
            name=record["name"],
            created=float(record["created"]),
            grid=json.loads(record["grid"]),
            members=[SweepMember(m["job"], m["overrides"]) for m in json.loads(record["members"])],
        )

    def ids(self, owner: str) -> list[str]:
        """The owner's sweeps, newest first."""
        return [s.decode() for s in self.r.zrevrange(self.key("user", owner, "sweeps"), 0, -1)]

    def member_states(self, sweep: Sweep) -> list[JobState]:
        """Each member job's state, in the sweep's order (`expired` for one that is gone),
        in one round trip."""
        pipe = self.r.pipeline(transaction=False)
        for member in sweep.members:
            pipe.hget(self.key("job", member.job), "state")
        return [JobState(s.decode()) if s else JobState.EXPIRED for s in pipe.execute()]

    def ended(self, sweep: Sweep) -> bool:
        return all_ended(self.member_states(sweep))

    def plot(self, sweep_id: str) -> bytes | None:
        """The final overlay plot (PNG), once a worker drew it."""
        data = self.r.get(self.key("sweep", sweep_id, "plot"))
        return bytes(data) if data is not None else None

    def has_plot(self, sweep_id: str) -> bool:
        return bool(self.r.exists(self.key("sweep", sweep_id, "plot")))

    def ask_for_plot(self, sweep_id: str, every_s: int) -> bool:
        """True at most once every `every_s` per sweep: the caller may ask the workers to
        draw its plot now (API processes and reloads of a page do not ask each time)."""
        return bool(self.r.set(self.key("sweep", sweep_id, "plot_asked"), 1, nx=True, ex=every_s))

    def finish(self, sweep_id: str, plot: bytes) -> bool:
        """Keep the final overlay plot unless one is kept already (two workers that end
        the last two jobs at once may both draw it; the first to store it wins, and both
        drew it from the same finished points). The sweep then expires with its jobs'
        retention. True if this call stored it."""
        plot_key = self.key("sweep", sweep_id, "plot")
        stored = bool(self.r.set(plot_key, plot, nx=True))
        if stored and self.backend.retention_s:
            pipe = self.r.pipeline()
            pipe.expire(self.key("sweep", sweep_id), self.backend.retention_s)
            pipe.expire(plot_key, self.backend.retention_s)
            pipe.execute()
        return stored
