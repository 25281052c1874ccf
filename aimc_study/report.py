"""What a study's runs add up to: runs.csv, summary.csv, each comparison's group statistics
and claim verdicts, its figures, and report.md that puts them together; for a study with
parts, a report per part and one on top that opens with every claim's verdict.

Read from the run folders (`runs/<job>/result.json` and `metrics.jsonl`), which local and
remote studies write alike, so a report can be redrawn from the folder at any time.
Torch-free.
"""

from __future__ import annotations

import shutil
from pathlib import Path

from aimc_study.figures import comparison_figures
from aimc_study.markdown import comparisons, plan_markdown, report_markdown
from aimc_study.plan import Study, StudyPlan
from aimc_study.records import SUMMARY_METRICS, RunRecord, load_runs
from aimc_study.tables import runs_csv, summary_csv


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
