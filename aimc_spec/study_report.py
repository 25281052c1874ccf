"""What a study's runs add up to: runs.csv, summary.csv, each comparison's group statistics
and claim verdicts, its figures, and report.md that puts them together.

Read from the run folders (`runs/<job>/result.json` and `metrics.jsonl`), which local and
remote studies write alike, so a report can be redrawn from the folder at any time.
Torch-free.
"""

from __future__ import annotations

import csv
import io
import json
import math
import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from aimc_spec.comparison import format_summary, plot_grouped, plot_versus, text_table
from aimc_spec.statistics import Difference, Summary, paired, summarise, verdict, welch
from aimc_spec.study import Claim, Comparison, Group, Study, StudyJob, display_names

SUMMARY_METRICS = ("test_accuracy", "test_loss", "train_loss", "sim_time_ns", "wall_s")


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
        return self.status == "succeeded"

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


def read_result(folder: Path) -> dict[str, Any] | None:
    """A run folder's result.json, or None if it is missing or incomplete."""
    try:
        data = json.loads((folder / "result.json").read_text())
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) and "status" in data else None


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


def group_values(group: Group, records: dict[str, RunRecord], metric: str) -> dict[int, float]:
    """Seed -> final value of the metric, over the group's finished jobs."""
    return {
        job.seed: records[job.label].value(metric) for job in group.jobs if job.label in records
    }


def summary_csv(study: Study, records: dict[str, RunRecord], metrics: Sequence[str]) -> str:
    """Per group and metric: n (succeeded runs), failed, mean, std (ddof 1), 95% CI."""
    columns = ["group", *study.keys, "metric", "n", "failed", "mean", "std", "ci_low", "ci_high"]
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
                    "failed": failed,
                    **{k: "" if math.isnan(v) else repr(v) for k, v in numbers.items()},
                }
            )
    return buffer.getvalue()


@dataclass(frozen=True)
class ClaimResult:
    claim: Claim
    stratum: dict[str, Any]  # the factors neither selector names, fixed in this row
    a: Group | None
    b: Group | None
    difference: Difference | None
    verdict: str


def evaluate_claim(
    study: Study, comparison: Comparison, claim: Claim, records: dict[str, RunRecord]
) -> list[ClaimResult]:
    """The claim in every stratum (combination of the other factors) of the groups the
    comparison covers; a stratum without both groups run says so."""
    groups = [g for g in study.matching(comparison.where)]
    named = set(claim.a)
    strata: dict[str, dict[str, Any]] = {}
    for g in groups:
        stratum = {k: v for k, v in g.factors.items() if k not in named}
        strata.setdefault(json.dumps(stratum, sort_keys=True, default=str), stratum)
    results = []
    for stratum in strata.values():
        a = _one(study.matching({**stratum, **claim.a}), groups)
        b = _one(study.matching({**stratum, **claim.b}), groups)
        if a is None or b is None:
            results.append(ClaimResult(claim, stratum, a, b, None, "not run"))
            continue
        va = group_values(a, records, comparison.metric)
        vb = group_values(b, records, comparison.metric)
        if claim.test == "paired":
            seeds = sorted(set(va) & set(vb))
            diff = paired([va[s] for s in seeds], [vb[s] for s in seeds])
        else:
            diff = welch(list(va.values()), list(vb.values()))
        results.append(
            ClaimResult(claim, stratum, a, b, diff, verdict(diff, claim.expect, claim.margin))
        )
    return results


def _one(found: list[Group], allowed: list[Group]) -> Group | None:
    inside = [g for g in found if g in allowed]
    return inside[0] if len(inside) == 1 else None


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
            y_label=f"final {metric.replace('_', ' ')}",
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
        s = summarise(list(group_values(g, records, metric).values()))
        lines.setdefault(label, []).append((g.factors[x_key], s))
    for points in lines.values():
        points.sort(key=lambda p: order.index(json.dumps(p[0])))
    return lines


def _md_table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(c.replace("|", "\\|") for c in row) + " |" for row in rows]
    return "\n".join(lines)


def _number(value: float, digits: int = 4) -> str:
    return "-" if math.isnan(value) else f"{value:.{digits}g}"


def _claim_text(study: Study, result: ClaimResult, comparison: Comparison) -> str:
    c = result.claim
    names = display_names(study.keys)

    def side(selector: dict[str, Any]) -> str:
        return ", ".join(f"{names[k]}={v}" for k, v in selector.items())

    relation = {"greater": ">", "less": "<", "equal": "≈"}[c.expect]
    text = c.text or f"{side(c.a)} {relation} {side(c.b)}"
    if c.margin:
        text += f" (margin {c.margin:g})"
    if result.stratum:
        text += f" [{side(result.stratum)}]"
    return text


def comparison_section(
    study: Study, comparison: Comparison, records: dict[str, RunRecord], figures: Sequence[str]
) -> str:
    """The report's part for one comparison: groups (mean ± CI), claims, figure links."""
    metric = comparison.metric
    rows = []
    for g in study.matching(comparison.where):
        s = summarise(list(group_values(g, records, metric).values()))
        failed = sum(1 for j in g.jobs if j.label in records and not records[j.label].ok)
        missing = sum(1 for j in g.jobs if j.label not in records)
        notes = ", ".join(
            t
            for t in (f"{failed} failed" if failed else "", f"{missing} not run" if missing else "")
            if t
        )
        rows.append(
            [
                g.label,
                str(s.n),
                format_summary(s),
                _number(s.std),
                f"[{_number(s.ci_low)}, {_number(s.ci_high)}]",
                notes,
            ]
        )
    header = ["group", "n", f"{metric} (mean ± 95% CI)", "std", "95% CI", "notes"]
    parts = [
        f"## {comparison.name}",
        "",
        f"Final {metric} over seeds.",
        "",
        _md_table(header, rows),
    ]
    claim_rows = []
    for claim in comparison.claims:
        for result in evaluate_claim(study, comparison, claim, records):
            d = result.difference
            claim_rows.append(
                [
                    _claim_text(study, result, comparison),
                    _number(d.estimate) if d else "-",
                    f"[{_number(d.ci_low)}, {_number(d.ci_high)}]" if d else "-",
                    f"{d.test}, p = {_number(d.p_value, 2)}" if d else "-",
                    f"**{result.verdict}**",
                ]
            )
    if claim_rows:
        header = ["claim", "difference a − b", "95% CI", "test", "verdict"]
        parts += ["", "Claims (verdict at 95% confidence):", "", _md_table(header, claim_rows)]
    parts += [""] + [f"![{name}](figures/{name})" for name in figures]
    return "\n".join(parts) + "\n"


def report_markdown(
    study: Study,
    records: dict[str, RunRecord],
    figures: Sequence[Sequence[str]],
    command: str,
) -> str:
    """report.md: the study's design, then a section per comparison."""
    file = study.file
    done = len(records)
    failed = sum(1 for r in records.values() if not r.ok)
    lines = [f"# Study: {file.name}", ""]
    if file.description:
        lines += [file.description.strip(), ""]
    lines += [
        f"Regenerate with `{command}`.",
        "",
        f"- base spec: {study.source}" + (" (quick form)" if study.quick else ""),
        f"- seeds: {', '.join(map(str, study.seeds))}",
        f"- groups: {len(study.groups)}; jobs: {len(study.jobs)}, "
        f"{done} finished ({failed} failed), {len(study.jobs) - done} not run",
    ]
    if study.grid:
        lines.append("- grid: " + "; ".join(f"`{k}` in {v}" for k, v in study.grid.items()))
    for v in file.variants:
        overrides = ", ".join(f"`{k}: {json.dumps(val)}`" for k, val in v.overrides.items())
        overrides = overrides or "the base"
        lines.append(f"- variant {v.name}: {overrides}")
    lines += ["", "Per-job results: runs.csv; per-group statistics: summary.csv.", ""]
    for comparison, names in zip(comparisons(study), figures, strict=True):
        lines.append(comparison_section(study, comparison, records, names))
    failures = [r for r in records.values() if not r.ok]
    if failures:
        lines += ["## Failed jobs", ""]
        lines += [f"- {r.job.label}: {r.status}: {r.error or ''}" for r in failures]
        lines.append("")
    return "\n".join(lines)


def comparisons(study: Study) -> list[Comparison]:
    """The study's comparisons, or all groups on test_accuracy when it names none."""
    return study.file.comparisons or [Comparison(name="all groups")]


def write_report(study: Study, out: Path, command: str) -> dict[str, RunRecord]:
    """runs.csv, summary.csv, figures/*.png and report.md in `out`, from out/runs; the
    finished runs they were drawn from."""
    records = load_runs(study, out / "runs")
    (out / "runs.csv").write_text(runs_csv(study, records))
    chosen = comparisons(study)
    metrics = list(dict.fromkeys([*SUMMARY_METRICS, *(c.metric for c in chosen)]))
    (out / "summary.csv").write_text(summary_csv(study, records, metrics))
    (out / "figures").mkdir(exist_ok=True)
    names = []
    for i, comparison in enumerate(chosen):
        figures = comparison_figures(study, comparison, records, i)
        for name, png in figures.items():
            (out / "figures" / name).write_bytes(png)
        names.append(list(figures))
    (out / "report.md").write_text(report_markdown(study, records, names, command))
    return records


def summary_table(study: Study, records: dict[str, RunRecord], metric: str) -> str:
    """A terminal table of each group's final metric (mean ± CI) for the command's output."""
    rows = []
    for g in study.groups:
        s = summarise(list(group_values(g, records, metric).values()))
        rows.append([g.label, str(s.n), format_summary(s)])
    return text_table(["group", "n", metric], rows)
