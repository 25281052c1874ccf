"""A finished run as a report reads it (RunRecord, from its run folder) and what a
comparison measures of it: a final value, a tail mean, or the time to reach a target."""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from aimc_spec.vocabulary import JobState
from aimc_study.design import Comparison
from aimc_study.plan import Group, Study, StudyJob
from aimc_study.runs import read_result

SUMMARY_METRICS = ("test_accuracy", "test_loss", "train_loss", "sim_time_ns", "wall_s")
# a time-to-target comparison's clock: the metric record's column it reads, and its name
CLOCKS = {
    "simulated": ("sim_time_ns", "simulated ns"),
    "wall": ("wall_s", "wall-clock s"),
    "energy": ("energy_pj", "pJ spent"),
}


@dataclass(frozen=True)
class RunRecord:
    """A finished job: its status, final metric values (the last point), simulated time
    (the timeline's makespan) and wall time, and its metric points."""

    job: StudyJob
    status: str
    error: str | None
    final: dict[str, Any]
    sim_time_ns: float | None
    wall_s: float | None
    points: list[dict[str, Any]]

    @property
    def ok(self) -> bool:
        return self.status == JobState.SUCCEEDED

    def value(self, metric: str) -> float:
        """The final value of a metric; nan if the run failed or lacks it."""
        if metric == "sim_time_ns" and self.sim_time_ns is not None:
            value: Any = self.sim_time_ns
        elif metric == "wall_s" and self.wall_s is not None:
            value = self.wall_s
        else:
            value = self.final.get(metric)
        ok = self.ok and isinstance(value, int | float)
        return float(value) if ok else math.nan


def measure(record: RunRecord, comparison: Comparison) -> float:
    """What a comparison compares of one run: the mean of the metric's last `tail` points
    (the final value when tail is 1), or with a `target`, the time on the comparison's
    clock (simulated ns, or wall seconds) of the first point at which the metric reaches
    it (at most it for a loss, at least it otherwise); nan if the run failed, lacks the
    metric or never reaches the target."""
    metric = comparison.metric
    if comparison.target is None and comparison.tail == 1:
        return record.value(metric)
    if not record.ok:
        return math.nan
    clock = CLOCKS[comparison.clock][0]
    values: list[tuple[Any, float]] = [
        (p.get(clock), float(p[metric]))
        for p in record.points
        if isinstance(p.get(metric), int | float)
    ]
    if comparison.target is None:
        tail = [v for _, v in values[-comparison.tail :]]
        return math.fsum(tail) / len(tail) if tail else math.nan
    target, lower_is_better = comparison.target, "loss" in metric
    for time, value in values:
        reached = value <= target if lower_is_better else value >= target
        if reached and isinstance(time, int | float):
            return float(time)
    return math.nan


def measure_name(comparison: Comparison) -> str:
    """The compared quantity in words, for tables and axes."""
    metric = comparison.metric
    if comparison.target is not None:
        relation = "≤" if "loss" in metric else "≥"
        return f"{CLOCKS[comparison.clock][1]} until {metric} {relation} {comparison.target:g}"
    if comparison.tail > 1:
        return f"{metric} (mean of the last {comparison.tail} points)"
    return f"final {metric}"


def load_runs(study: Study, runs_dir: Path) -> dict[str, RunRecord]:
    """The finished jobs of the study by label (jobs not run yet are absent)."""
    records = {}
    for job in study.jobs:
        folder = runs_dir / job.label
        result = read_result(folder)
        if result is None:
            continue
        points = []
        jsonl = folder / "metrics.jsonl"
        if jsonl.is_file():
            points = [json.loads(line) for line in jsonl.read_text().splitlines() if line]
        timeline = result.get("timeline") or {}
        records[job.label] = RunRecord(
            job=job,
            status=str(result["status"]),
            error=result.get("error"),
            final=dict(points[-1]) if points else dict(result.get("final") or {}),
            sim_time_ns=timeline.get("makespan_ns"),
            wall_s=result.get("wall_seconds"),
            points=points,
        )
    return records


def group_values(
    group: Group, records: dict[str, RunRecord], metric: str | Comparison
) -> dict[int, float]:
    """Seed -> final value of the metric (or what the comparison measures), over the group's
    finished jobs."""
    found = {}
    for job in group.jobs:
        if job.label in records:
            record = records[job.label]
            value = record.value(metric) if isinstance(metric, str) else measure(record, metric)
            found[job.seed] = value
    return found
