"""The paper study (examples/studies/paper.yaml) in its quick form, end to end: every part
runs, the report on top gives a verdict for each claim C1-C5 and the compensation result,
and --report writes a copy whose figure links resolve."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from aimc_cli import main

pytestmark = pytest.mark.long  # tens of seconds: run first (tests/conftest.py)

ROOT = Path(__file__).resolve().parents[2]
VERDICT = re.compile(r"\*\*(holds|does not hold|inconclusive)\*\* \|$")
CLAIMS = ("C1:", "C2:", "C3:", "C4:", "C5:", "Compensation:")


def verdict_rows(report: str) -> list[str]:
    """The rows of the report's verdict table (between '## Verdicts' and the first part)."""
    table = report.split("## Verdicts", 1)[1].split("## Part ", 1)[0]
    return [line for line in table.splitlines() if line.startswith("| ") and "---" not in line]


def test_quick_paper_study_reports_a_verdict_for_every_claim(tmp_path: Path) -> None:
    out, copy = tmp_path / "out", tmp_path / "docs" / "reproduction.md"
    study = str(ROOT / "examples/studies/paper.yaml")
    argv = ["study", study, "--quick", "--out", str(out), "--jobs", "2", "--report", str(copy)]
    assert main(argv) == 0

    report = (out / "report.md").read_text()
    assert "This is the quick CI variant" in report.split("## Verdicts")[0]
    rows = verdict_rows(report)[1:]  # after the header
    for claim in CLAIMS:
        mine = [r for r in rows if r.startswith(f"| {claim}")]
        assert mine, f"no verdict row for {claim}"
        assert all(VERDICT.search(r) for r in mine), mine
    # every claim kind was drawn from numbers: a trend's slope, a ratio against its formula
    # (the time-to-target one included), a difference of means
    number = r"-?\d[\d.e+-]*"
    assert all(re.search(f"slope = {number}", r) for r in rows if r.startswith("| C3:"))
    speedup = [r for r in rows if r.startswith("| C2:") and "simulated time within" in r]
    assert speedup and all(re.search(f"formula − 1 = {number}", r) for r in speedup)
    time = [r for r in rows if r.startswith("| C2: time to 80%")]
    assert any(re.search(f"formula − 1 = {number}", r) for r in time), time  # B = 2 reaches it
    assert all(re.search(f"a − b = {number}", r) for r in rows if r.startswith("| C5:"))

    for part in ("C1-per-sample", "C2-speedup", "C2-time", "C3-staleness", "C4-floor"):
        assert (out / part / "runs.csv").is_file() and (out / part / "report.md").is_file()
    text = copy.read_text()
    links = re.findall(r"\]\((reproduction-figures/[^)]+\.png)\)", text)
    assert links and all((copy.parent / link).is_file() for link in links)
    assert "--report" in text.split("\n\n")[2]  # the command that regenerates it
