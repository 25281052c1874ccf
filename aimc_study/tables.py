"""A study's tables: runs.csv (a row per finished job), summary.csv (a row per group
and metric) and the terminal summary the command prints, plus the Markdown table and
number formats the report shares."""

from __future__ import annotations

import csv
import io
import json
import math
from collections.abc import Sequence
from typing import Any

from aimc_study.comparison import format_summary, text_table
from aimc_study.plan import Study
from aimc_study.records import SUMMARY_METRICS, RunRecord, group_values
from aimc_study.statistics import summarise

FAILED = "failed"  # not a job state: summary.csv's column counting a group's failed runs


def runs_csv(study: Study, records: dict[str, RunRecord]) -> str:
    """One row per finished job: its factors, seed, status, final metrics and times."""
    columns = ["job", *study.keys, "seed", "status", *SUMMARY_METRICS, "error"]
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=columns)
    writer.writeheader()
    for job in study.jobs:
        record = records.get(job.label)
        if record is None:
            continue
        row = {"job": job.label, **_cells(job.factors), "seed": job.seed, "status": record.status}
        for metric in SUMMARY_METRICS:
            value = record.value(metric)
            row[metric] = "" if math.isnan(value) else repr(value)
        row["error"] = record.error or ""
        writer.writerow(row)
    return buffer.getvalue()


def _cells(factors: dict[str, Any]) -> dict[str, str]:
    return {k: json.dumps(v) if isinstance(v, list | dict) else str(v) for k, v in factors.items()}


def summary_csv(study: Study, records: dict[str, RunRecord], metrics: Sequence[str]) -> str:
    """Per group and metric: n (succeeded runs), failed, mean, std (ddof 1), 95% CI."""
    columns = ["group", *study.keys, "metric", "n", FAILED, "mean", "std", "ci_low", "ci_high"]
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=columns)
    writer.writeheader()
    for group in study.groups:
        failed = sum(1 for j in group.jobs if j.label in records and not records[j.label].ok)
        for metric in metrics:
            s = summarise(list(group_values(group, records, metric).values()))
            numbers = {"mean": s.mean, "std": s.std, "ci_low": s.ci_low, "ci_high": s.ci_high}
            writer.writerow(
                {
                    "group": group.label,
                    **_cells(group.factors),
                    "metric": metric,
                    "n": s.n,
                    FAILED: failed,
                    **{k: "" if math.isnan(v) else repr(v) for k, v in numbers.items()},
                }
            )
    return buffer.getvalue()


def summary_table(study: Study, records: dict[str, RunRecord], metric: str) -> str:
    """A terminal table of each group's final metric (mean ± CI) for the command's output."""
    rows = []
    for g in study.groups:
        s = summarise(list(group_values(g, records, metric).values()))
        rows.append([g.label, str(s.n), format_summary(s)])
    return text_table(["group", "n", metric], rows)


def md_table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(c.replace("|", "\\|") for c in row) + " |" for row in rows]
    return "\n".join(lines)


def number(value: float, digits: int = 4) -> str:
    return "-" if math.isnan(value) else f"{value:.{digits}g}"
