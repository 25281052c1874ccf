"""What a study's runs add up to: runs.csv, summary.csv, each comparison's group statistics
and claim verdicts, its figures, and report.md that puts them together; for a study with
parts, a report per part and one on top that opens with every claim's verdict.

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
import shutil
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from aimc_spec.comparison import format_summary, plot_grouped, plot_versus, text_table
from aimc_spec.statistics import (
    Difference,
    Estimate,
    Summary,
    paired,
    ratio_deviation,
    slope,
    summarise,
    verdict,
    welch,
)
from aimc_spec.study import (
    Claim,
    Comparison,
    Group,
    Study,
    StudyJob,
    StudyPlan,
    display_names,
    evaluate_formula,
)

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


def measure(record: RunRecord, comparison: Comparison) -> float:
    """What a comparison compares of one run: the mean of the metric's last `tail` points
    (the final value when tail is 1), or with a `target`, the simulated time of the first
    point at which the metric reaches it (at most it for a loss, at least it otherwise);
    nan if the run failed, lacks the metric or never reaches the target."""
    metric = comparison.metric
    if comparison.target is None and comparison.tail == 1:
        return record.value(metric)
    if not record.ok:
        return math.nan
    values: list[tuple[Any, float]] = [
        (p.get("sim_time_ns"), float(p[metric]))
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
        return f"simulated ns until {metric} {relation} {comparison.target:g}"
    if comparison.tail > 1:
        return f"{metric} (mean of the last {comparison.tail} points)"
    return f"final {metric}"


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
    stratum: dict[str, Any]  # the factors the claim does not name, fixed in this row
    a: Group | None
    b: Group | None
    difference: Difference | Estimate | None
    verdict: str
    detail: str = ""  # what the estimate is of, in numbers (a trend's points, a formula)


def _strata(groups: list[Group], named: set[str]) -> list[dict[str, Any]]:
    strata: dict[str, dict[str, Any]] = {}
    for g in groups:
        stratum = {k: v for k, v in g.factors.items() if k not in named}
        strata.setdefault(json.dumps(stratum, sort_keys=True, default=str), stratum)
    return list(strata.values())


def evaluate_claim(
    study: Study, comparison: Comparison, claim: Claim, records: dict[str, RunRecord]
) -> list[ClaimResult]:
    """The claim in every stratum (combination of the other factors) of the groups the
    comparison covers; a stratum without the groups it needs run says so."""
    groups = [g for g in study.matching(comparison.where)]
    if claim.kind == "trend":
        assert claim.x is not None  # the claim's validator requires it
        named = set(claim.a) | {claim.x}
        return [
            _trend(study, comparison, claim, s, groups, records) for s in _strata(groups, named)
        ]
    results = []
    for stratum in _strata(groups, set(claim.a)):
        a = _one(study.matching({**stratum, **claim.a}), groups)
        b = _one(study.matching({**stratum, **claim.b}), groups)
        if a is None or b is None:
            results.append(ClaimResult(claim, stratum, a, b, None, "not run"))
            continue
        va = group_values(a, records, comparison)
        vb = group_values(b, records, comparison)
        seeds = sorted(set(va) & set(vb))
        if claim.kind == "ratio":
            assert claim.formula is not None
            symbols = {n: study.position(k, stratum[k]) for n, k in claim.symbols.items()}
            expected = evaluate_formula(claim.formula, symbols)
            est = ratio_deviation([va[s] for s in seeds], [vb[s] for s in seeds], expected)
            ratio = summarise([va[s] / vb[s] for s in seeds if vb[s]])
            formula = claim.formula if claim.symbols else ""
            detail = f"a/b = {format_summary(ratio)}; formula {formula} = {expected:.4g}"
            results.append(
                ClaimResult(
                    claim, stratum, a, b, est, verdict(est, claim.expect, claim.margin), detail
                )
            )
            continue
        if claim.test == "paired":
            diff = paired([va[s] for s in seeds], [vb[s] for s in seeds])
        else:
            diff = welch(list(va.values()), list(vb.values()))
        results.append(
            ClaimResult(claim, stratum, a, b, diff, verdict(diff, claim.expect, claim.margin))
        )
    return results


def _trend(
    study: Study,
    comparison: Comparison,
    claim: Claim,
    stratum: dict[str, Any],
    groups: list[Group],
    records: dict[str, RunRecord],
) -> ClaimResult:
    """The slope of the measured value (or of the per-seed gap a - b) against x in one
    stratum: a point per seed and x value."""
    assert claim.x is not None
    xs: list[float] = []
    ys: list[float] = []
    means = []
    for value in study.grid.get(claim.x) or [v.name for v in study.levels[claim.x]]:
        at = {**stratum, claim.x: value}
        a = _one(study.matching({**at, **claim.a}), groups)
        if a is None:
            continue
        va = group_values(a, records, comparison)
        if claim.b:
            b = _one(study.matching({**at, **claim.b}), groups)
            if b is None:
                continue
            vb = group_values(b, records, comparison)
            va = {s: va[s] - vb[s] for s in sorted(set(va) & set(vb))}
        x = study.position(claim.x, value)
        position = math.log(x) if claim.log_x else x
        xs += [position] * len(va)
        ys += list(va.values())
        means.append(f"{value}: {_number(summarise(list(va.values())).mean, 3)}")
    if len(means) < 2:
        return ClaimResult(claim, stratum, None, None, None, "not run")
    est = slope(xs, ys)
    detail = "mean at " + ", ".join(means)
    return ClaimResult(
        claim, stratum, None, None, est, verdict(est, claim.expect, claim.margin), detail
    )


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
    if c.text:
        text = c.text
    elif c.kind == "trend":
        assert c.x is not None
        what = measure_name(comparison)
        if c.b:
            what = f"gap ({side(c.a)}) − ({side(c.b)}) of the {what}"
        elif c.a:
            what = f"{what} of {side(c.a)}"
        x = f"ln {names[c.x]}" if c.log_x else names[c.x]
        text = f"slope of {what} against {x} {relation} {c.margin:g}"
    elif c.kind == "ratio":
        text = f"({side(c.a)}) / ({side(c.b)}) {relation} {c.formula}"
    else:
        text = f"{side(c.a)} {relation} {side(c.b)}"
    if c.margin and c.kind == "difference":
        text += f" (margin {c.margin:g})"
    elif c.margin and c.kind == "ratio":
        text += f" (relative margin {c.margin:g})"
    if result.stratum:
        text += f" [{side(result.stratum)}]"
    return text


def _estimate_label(claim: Claim) -> str:
    return {
        "difference": "a − b",
        "trend": "slope",
        "ratio": "(a/b)/formula − 1",
    }[claim.kind]


def claim_rows(
    study: Study, comparison: Comparison, records: dict[str, RunRecord]
) -> list[list[str]]:
    """A row per claim and stratum: the claim in words, what is estimated and its value,
    the 95% interval, the test with its numbers, and the verdict."""
    rows = []
    for claim in comparison.claims:
        for result in evaluate_claim(study, comparison, claim, records):
            d = result.difference
            test = f"{d.test}, p = {_number(d.p_value, 2)}" if d else "-"
            if d and isinstance(d, Estimate):
                test += f", n = {d.n}"
            if result.detail:
                test += f"; {result.detail}"
            rows.append(
                [
                    _claim_text(study, result, comparison),
                    f"{_estimate_label(claim)} = {_number(d.estimate)}"
                    if d and not math.isnan(d.estimate)
                    else "-",
                    f"[{_number(d.ci_low)}, {_number(d.ci_high)}]" if d else "-",
                    test,
                    f"**{result.verdict}**",
                ]
            )
    return rows


def comparison_section(
    study: Study,
    comparison: Comparison,
    records: dict[str, RunRecord],
    figures: Sequence[str],
    *,
    figure_dir: str = "figures",
    heading: str = "##",
) -> str:
    """The report's part for one comparison: groups (mean ± CI), claims, figure links."""
    rows = []
    for g in study.matching(comparison.where):
        values = group_values(g, records, comparison)
        s = summarise(list(values.values()))
        failed = sum(1 for j in g.jobs if j.label in records and not records[j.label].ok)
        missing = sum(1 for j in g.jobs if j.label not in records)
        unmeasured = sum(1 for v in values.values() if math.isnan(v)) - failed
        never = "did not reach the target" if comparison.target is not None else "lack it"
        notes = ", ".join(
            t
            for t in (
                f"{failed} failed" if failed else "",
                f"{missing} not run" if missing else "",
                f"{unmeasured} {never}" if unmeasured > 0 else "",
            )
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
    name = measure_name(comparison)
    header = ["group", "n", "mean ± 95% CI", "std", "95% CI", "notes"]
    parts = [f"{heading} {comparison.name}", "", f"Per run: the {name}; per group: over seeds."]
    parts += ["", _md_table(header, rows)]
    found = claim_rows(study, comparison, records)
    if found:
        header = ["claim", "estimate", "95% CI", "test", "verdict"]
        parts += ["", "Claims (verdict at 95% confidence):", "", _md_table(header, found)]
    parts += [""] + [f"![{name}]({figure_dir}/{name})" for name in figures]
    return "\n".join(parts) + "\n"


def _design_lines(study: Study, records: dict[str, RunRecord]) -> list[str]:
    file = study.file
    done = len(records)
    failed = sum(1 for r in records.values() if not r.ok)
    lines = [
        f"- base spec: {study.source}" + (" (quick form)" if study.quick else ""),
        f"- seeds: {', '.join(map(str, study.seeds))}",
        f"- groups: {len(study.groups)}; jobs: {len(study.jobs)}, "
        f"{done} finished ({failed} failed), {len(study.jobs) - done} not run",
    ]
    if study.quick and file.quick is not None and file.quick.overrides:
        quick = ", ".join(f"`{k}: {json.dumps(v)}`" for k, v in file.quick.overrides.items())
        lines.append(f"- quick overrides: {quick}")
    if study.grid:
        lines.append("- grid: " + "; ".join(f"`{k}` in {v}" for k, v in study.grid.items()))
    for factor, levels in study.levels.items():
        for v in levels:
            overrides = ", ".join(f"`{k}: {json.dumps(val)}`" for k, val in v.overrides.items())
            lines.append(f"- {factor} {v.name}: {overrides or 'the base'}")
    return lines


def _failure_lines(records: dict[str, RunRecord], heading: str) -> list[str]:
    failures = [r for r in records.values() if not r.ok]
    if not failures:
        return []
    lines = [f"{heading} Failed jobs", ""]
    lines += [f"- {r.job.label}: {r.status}: {r.error or ''}" for r in failures]
    return [*lines, ""]


def report_markdown(
    study: Study,
    records: dict[str, RunRecord],
    figures: Sequence[Sequence[str]],
    command: str,
) -> str:
    """report.md: the study's design, then a section per comparison."""
    file = study.file
    lines = [f"# Study: {file.name}", ""]
    if file.description:
        lines += [file.description.strip(), ""]
    lines += [f"Regenerate with `{command}`.", "", *_design_lines(study, records)]
    lines += ["", "Per-job results: runs.csv; per-group statistics: summary.csv.", ""]
    for comparison, names in zip(comparisons(study), figures, strict=True):
        lines.append(comparison_section(study, comparison, records, names))
    lines += _failure_lines(records, "##")
    return "\n".join(lines)


def comparisons(study: Study) -> list[Comparison]:
    """The study's comparisons, or all groups on test_accuracy when it names none."""
    return study.file.comparisons or [Comparison(name="all groups")]


def write_report(study: Study, out: Path, command: str) -> dict[str, RunRecord]:
    """runs.csv, summary.csv, figures/*.png and report.md in `out`, from out/runs; the
    finished runs they were drawn from."""
    records, names = _write_tables_and_figures(study, out)
    (out / "report.md").write_text(report_markdown(study, records, names, command))
    return records


def _write_tables_and_figures(
    study: Study, out: Path
) -> tuple[dict[str, RunRecord], list[list[str]]]:
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
    return records, names


QUICK_BANNER = (
    "> **This is the quick CI variant** (`--quick`): a handful of tiny runs that check the "
    "whole path (every claim kind, the report). Its numbers and verdicts say nothing about "
    "the paper-scale result; run the command without `--quick` for that."
)


def plan_markdown(
    plan: StudyPlan,
    parts: Sequence[tuple[Study, dict[str, RunRecord], list[list[str]]]],
    command: str,
    figure_dir: str,
) -> str:
    """The report of a study with parts: the design, a table of every claim's verdict,
    then each part (its groups, claims and figures under figure_dir/<part>/)."""
    file = plan.file
    lines = [f"# Study: {file.name}", ""]
    if any(study.quick for study, _, _ in parts):
        lines += [QUICK_BANNER, ""]
    lines += [f"Regenerate with `{command}`.", ""]
    if file.description:
        lines += [file.description.strip(), ""]
    jobs = sum(len(study.jobs) for study, _, _ in parts)
    done = sum(len(records) for _, records, _ in parts)
    lines += [
        f"{len(parts)} parts, {jobs} jobs ({done} finished). Verdicts at 95% confidence: "
        "holds / does not hold (the interval lies on the claim's side of its margin, or on "
        "the other) / inconclusive (it straddles the margin).",
        "",
        "## Verdicts",
        "",
    ]
    rows = []
    for study, records, _ in parts:
        for comparison in study.file.comparisons:
            for row in claim_rows(study, comparison, records):
                rows.append([comparison.name, row[0], row[1], row[2], row[4]])
    lines += [_md_table(["comparison", "claim", "estimate", "95% CI", "verdict"], rows), ""]
    for study, records, names in parts:
        lines += [f"## Part {study.name}", ""]
        if study.file.description:
            lines += [study.file.description.strip(), ""]
        lines += [*_design_lines(study, records), ""]
        lines += [
            f"Per-job results: {study.name}/runs.csv; per group: {study.name}/summary.csv.",
            "",
        ]
        for comparison, figures in zip(comparisons(study), names, strict=True):
            section = comparison_section(
                study,
                comparison,
                records,
                figures,
                figure_dir=f"{figure_dir}/{study.name}",
                heading="###",
            )
            lines.append(section)
        lines += _failure_lines(records, "###")
    return "\n".join(lines)


def write_plan_report(
    plan: StudyPlan, out: Path, command: str, report: Path | None = None
) -> list[tuple[Study, dict[str, RunRecord]]]:
    """Every part's report (as write_report) and, for a study with parts, OUT/report.md on
    top of them; with `report`, a copy of the top report there whose figures are copied
    beside it (into <report stem>-figures/). The finished runs of each study."""
    found = []
    for study in plan.studies:
        folder = plan.folder(out, study)
        records, names = _write_tables_and_figures(study, folder)
        (folder / "report.md").write_text(report_markdown(study, records, names, command))
        found.append((study, records, names))
    if plan.parted:
        (out / "report.md").write_text(plan_markdown(plan, found, command, "."))
    if report is not None:
        figures = report.parent / f"{report.stem}-figures"
        if figures.exists():
            shutil.rmtree(figures)
        for study, _, names in found:
            target = figures / study.name if plan.parted else figures
            target.mkdir(parents=True, exist_ok=True)
            for name in (n for group in names for n in group):
                shutil.copyfile(plan.folder(out, study) / "figures" / name, target / name)
        if plan.parted:
            text = plan_markdown(plan, found, command, figures.name)
        else:
            study, records, names = found[0]
            text = report_markdown(study, records, names, command)
            text = text.replace("](figures/", f"]({figures.name}/")
        report.parent.mkdir(parents=True, exist_ok=True)
        report.write_text(text)
    return [(study, records) for study, records, _ in found]


def summary_table(study: Study, records: dict[str, RunRecord], metric: str) -> str:
    """A terminal table of each group's final metric (mean ± CI) for the command's output."""
    rows = []
    for g in study.groups:
        s = summarise(list(group_values(g, records, metric).values()))
        rows.append([g.label, str(s.n), format_summary(s)])
    return text_table(["group", "n", metric], rows)
