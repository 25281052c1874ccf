"""report.md in words: the study's design, a section per comparison (groups with their
intervals, claims with their verdicts, figure links) and failed jobs; for a study with
parts, a report that opens with every claim's verdict."""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from typing import Any

from aimc_study.claims import ClaimResult, evaluate_claim
from aimc_study.comparison import format_summary
from aimc_study.design import Claim, Comparison
from aimc_study.plan import Study, StudyPlan, display_names
from aimc_study.records import RunRecord, group_values, measure_name
from aimc_study.statistics import Estimate, summarise
from aimc_study.tables import md_table, number


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
            test = f"{d.test}, p = {number(d.p_value, 2)}" if d else "-"
            if d and isinstance(d, Estimate):
                test += f", n = {d.n}"
            if result.detail:
                test += f"; {result.detail}"
            rows.append(
                [
                    _claim_text(study, result, comparison),
                    f"{_estimate_label(claim)} = {number(d.estimate)}"
                    if d and not math.isnan(d.estimate)
                    else "-",
                    f"[{number(d.ci_low)}, {number(d.ci_high)}]" if d else "-",
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
                number(s.std),
                f"[{number(s.ci_low)}, {number(s.ci_high)}]",
                notes,
            ]
        )
    name = measure_name(comparison)
    header = ["group", "n", "mean ± 95% CI", "std", "95% CI", "notes"]
    parts = [f"{heading} {comparison.name}", "", f"Per run: the {name}; per group: over seeds."]
    parts += ["", md_table(header, rows)]
    found = claim_rows(study, comparison, records)
    if found:
        header = ["claim", "estimate", "95% CI", "test", "verdict"]
        parts += ["", "Claims (verdict at 95% confidence):", "", md_table(header, found)]
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
    lines += [md_table(["comparison", "claim", "estimate", "95% CI", "verdict"], rows), ""]
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
