"""Counters for Prometheus: state transitions, a histogram of finished jobs' run times,
and the depth of the Celery queue."""

from __future__ import annotations

from typing import Any

from aimc_store.base import Part
from aimc_store.fair_share import queue_lists

# upper bounds (s) of the job-duration histogram: seconds-long smoke tests to day-long runs
DURATION_BUCKETS_S = (1, 5, 15, 60, 300, 900, 3600, 4 * 3600, 24 * 3600)


def observe_duration(pipe: Any, key: str, state: str, seconds: float) -> None:
    """Count a finished job's run time into the cumulative buckets of hash `key` (queued
    on `pipe`, so it lands with the state change that ended the job)."""
    for bound in DURATION_BUCKETS_S:
        if seconds <= bound:
            pipe.hincrby(key, f"{state}|{bound:g}", 1)
    pipe.hincrby(key, f"{state}|+Inf", 1)
    pipe.hincrbyfloat(key, f"{state}|sum", seconds)


class Stats(Part):
    """`store.stats`: what the Prometheus collector reads."""

    def durations(self) -> dict[str, dict[str, float]]:
        """Per final state: cumulative bucket counts by upper bound ("+Inf" is the count)
        and "sum", the seconds of all finished jobs (a Prometheus histogram)."""
        out: dict[str, dict[str, float]] = {}
        for name, value in self.r.hgetall(self.key("stats", "durations")).items():
            state, bound = name.decode().split("|")
            out.setdefault(state, {})[bound] = float(value)
        return out

    def transitions(self) -> dict[str, int]:
        """How many times jobs entered each state (for the Prometheus counter)."""
        raw = self.r.hgetall(self.key("stats", "transitions"))
        return {k.decode(): int(v) for k, v in raw.items()}

    def queue_depth(self, queue: str) -> int:
        """Jobs waiting in the Celery queue (a Redis list per priority: fair_share)."""
        pipe = self.r.pipeline(transaction=False)
        for name in queue_lists(queue):
            pipe.llen(name)
        return sum(int(n) for n in pipe.execute())
