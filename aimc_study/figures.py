"""A comparison's figures in a study report: its metric per group against samples and
simulated time, and its measure against the factor `x` when it names one."""

from __future__ import annotations

import json
import re
from typing import Any

from aimc_study.design import Comparison
from aimc_study.plan import Study, StudyJob, display_names
from aimc_study.plots import plot_grouped, plot_versus
from aimc_study.records import RunRecord, group_values, measure_name
from aimc_study.statistics import Summary, summarise


def slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9]+", "-", text).strip("-").lower() or "comparison"


def comparison_figures(
    study: Study, comparison: Comparison, records: dict[str, RunRecord], index: int
) -> dict[str, bytes]:
    """File name -> PNG: the metric against samples and simulated time per group (mean ±
    95% CI over seeds), and the final metric against `x` when the comparison names one."""
    groups = study.matching(comparison.where)
    runs = [
        (g.label, [records[j.label].points for j in g.jobs if _plottable(records, j)])
        for g in groups
    ]
    name = f"{index + 1}-{slug(comparison.name)}"
    metric = comparison.metric
    panels = [("samples", metric), ("sim_time_ns", metric)]
    figures = {
        f"{name}-curves.png": plot_grouped(
            [r for r in runs if r[1]], f"{study.name}: {comparison.name}", panels=panels
        )
    }
    if comparison.x is not None:
        names = display_names(study.keys)
        figures[f"{name}-vs-x.png"] = plot_versus(
            versus_lines(study, comparison, records),
            x_label=names[comparison.x],
            y_label=measure_name(comparison).replace("_", " "),
            title=f"{study.name}: {comparison.name}",
        )
    return figures


def _plottable(records: dict[str, RunRecord], job: StudyJob) -> bool:
    return job.label in records and records[job.label].ok and bool(records[job.label].points)


def versus_lines(
    study: Study, comparison: Comparison, records: dict[str, RunRecord]
) -> dict[str, list[tuple[Any, Summary]]]:
    """The final metric over seeds at each value of comparison.x, a line per combination of
    the other factors, the values in grid order."""
    assert comparison.x is not None  # only asked of comparisons with an x
    x_key, metric = comparison.x, comparison.metric
    order = [json.dumps(v) for v in study.grid[x_key]]
    names = display_names(study.keys)
    lines: dict[str, list[tuple[Any, Summary]]] = {}
    for g in study.matching(comparison.where):
        rest = {k: v for k, v in g.factors.items() if k != x_key}
        label = ", ".join(f"{names[k]}={v}" for k, v in rest.items()) or metric
        s = summarise(list(group_values(g, records, comparison).values()))
        lines.setdefault(label, []).append((g.factors[x_key], s))
    for points in lines.values():
        points.sort(key=lambda p: order.index(json.dumps(p[0])))
    return lines
