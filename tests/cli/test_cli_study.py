"""`aimc study` run here: parallel processes, the report's numbers, resuming."""

from __future__ import annotations

import contextlib
import csv
import json
import math
import os
import shutil
import signal
import statistics
import subprocess
import sys
import time
from pathlib import Path

import pytest

from aimc_cli import main
from aimc_study.comparison import format_summary
from aimc_study.statistics import summarise

pytestmark = pytest.mark.long  # tens of seconds: run first (tests/conftest.py)

TINY = """
name: tiny
spec:
  model: {hidden: [16]}
  training: {steps: 20, micro_batch_size: 8, eval_every: 10}
grid:
  optimizer.lr: [0.05, 0.3]
seeds: [1, 2]
comparisons:
  - name: larger steps
    metric: test_accuracy
    x: optimizer.lr
    claims:
      - {a: {optimizer.lr: 0.3}, b: {optimizer.lr: 0.05}, expect: greater, test: paired}
"""
T_975_1 = 12.706  # t_{0.975, 1}: the 95% interval of two seeds


def read_csv(path: Path) -> list[dict[str, str]]:
    with path.open() as f:
        return list(csv.DictReader(f))


def mtimes(runs: Path) -> dict[str, int]:
    return {p.parent.name: p.stat().st_mtime_ns for p in runs.glob("*/result.json")}


def test_local_study_reports_and_resumes(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    study = tmp_path / "tiny.yaml"
    study.write_text(TINY)
    out = tmp_path / "out"
    assert main(["study", str(study), "--out", str(out), "--jobs", "2"]) == 0
    err = capsys.readouterr().err
    assert "study tiny: 4 jobs in 2 groups; 0 already done, 4 to run in 2 processes" in err
    assert "[4/4 jobs; " in err and "ETA 00:00" in err

    rows = read_csv(out / "runs.csv")
    assert [(r["optimizer.lr"], r["seed"], r["status"]) for r in rows] == [
        ("0.05", "1", "succeeded"),
        ("0.05", "2", "succeeded"),
        ("0.3", "1", "succeeded"),
        ("0.3", "2", "succeeded"),
    ]
    for row in rows:  # runs.csv holds each run folder's last metric point and result
        folder = out / "runs" / row["job"]
        last = json.loads((folder / "metrics.jsonl").read_text().splitlines()[-1])
        result = json.loads((folder / "result.json").read_text())
        assert (
            float(row["test_accuracy"]) == last["test_accuracy"] == result["final"]["test_accuracy"]
        )
        assert float(row["sim_time_ns"]) == result["timeline"]["makespan_ns"] > 0
        assert (folder / "weights.safetensors").is_file()

    summary = {(r["optimizer.lr"], r["metric"]): r for r in read_csv(out / "summary.csv")}
    report = (out / "report.md").read_text()
    for lr in ("0.05", "0.3"):
        values = [float(r["test_accuracy"]) for r in rows if r["optimizer.lr"] == lr]
        row = summary[(lr, "test_accuracy")]
        mean, std = statistics.fmean(values), statistics.stdev(values)
        half = T_975_1 * std / math.sqrt(2)
        assert row["n"] == "2" and float(row["mean"]) == pytest.approx(mean)
        assert float(row["std"]) == pytest.approx(std)
        assert float(row["ci_low"]) == pytest.approx(mean - half, abs=1e-3 * max(std, 1e-9))
        assert f"| lr={lr} | 2 | {format_summary(summarise(values))} |" in report
    assert "| 0.3 > 0.05 " not in report  # the claim is worded with the factor names
    assert "lr=0.3 > lr=0.05" in report and "paired, p = " in report
    figures = sorted(p.name for p in (out / "figures").glob("*.png"))
    assert figures == ["1-larger-steps-curves.png", "1-larger-steps-vs-x.png"]
    for name in figures:
        assert (out / "figures" / name).read_bytes()[:4] == b"\x89PNG"
        assert f"(figures/{name})" in report

    # resume: one job's result gone and a half-written folder left behind -> only it reruns
    before = mtimes(out / "runs")
    lost = rows[2]["job"]
    (out / "runs" / lost / "result.json").unlink()
    (out / "runs" / (lost + ".partial")).mkdir()
    assert main(["study", str(study), "--out", str(out), "--jobs", "2"]) == 0
    err = capsys.readouterr().err
    assert "3 already done, 1 to run in 1 processes" in err and f"[4/4 jobs; {lost} succ" in err
    after = mtimes(out / "runs")
    assert {k: v for k, v in after.items() if k != lost} == {
        k: v for k, v in before.items() if k != lost
    }
    assert after[lost] > before[lost] and not (out / "runs" / (lost + ".partial")).exists()

    def measured(table: list[dict[str, str]]) -> list[dict[str, str]]:
        return [{k: v for k, v in r.items() if k != "wall_s"} for r in table]

    assert measured(read_csv(out / "runs.csv")) == measured(rows)  # same spec + seed, same run

    # a changed study reruns only the jobs it changed: a new seed
    study.write_text(TINY.replace("seeds: [1, 2]", "seeds: [1, 2, 3]"))
    assert main(["study", str(study), "--out", str(out), "--jobs", "2"]) == 0
    assert "4 already done, 2 to run" in capsys.readouterr().err
    assert mtimes(out / "runs").keys() - after.keys() == {"lr=0.05_seed=3", "lr=0.3_seed=3"}


def test_bad_study_exits_2_naming_the_field(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    study = tmp_path / "bad.yaml"
    study.write_text(TINY.replace("steps: 20", "steps: -5"))
    assert main(["study", str(study), "--out", str(tmp_path / "o")]) == 2
    err = capsys.readouterr().err
    assert err == "spec.training.steps: Input should be greater than or equal to 1 (in lr=0.05)\n"
    assert not (tmp_path / "o").exists()
    study.write_text(TINY)
    assert main(["study", str(study), "--out", str(tmp_path / "o"), "--jobs", "0"]) == 2
    assert "--jobs: must be at least 1" in capsys.readouterr().err


# `aimc study` as a terminal starts it: with Python's Ctrl-C handler. A command started in
# the background of a script without job control (as CI may start this suite) inherits
# SIGINT ignored, and Python then installs no handler: Ctrl-C would never reach it.
AS_FROM_A_TERMINAL = (
    "import signal, sys; signal.signal(signal.SIGINT, signal.default_int_handler); "
    "from aimc_cli import main; sys.exit(main(sys.argv[1:]))"
)


def test_ctrl_c_ends_the_running_jobs_and_says_how_to_resume(tmp_path: Path) -> None:
    """Jobs far too long to finish: Ctrl-C comes once both have written a metric point
    (an event, not a wait), so they are surely running when it arrives."""
    study = tmp_path / "long.yaml"
    study.write_text(TINY.replace("steps: 20", "steps: 10000000"))
    out = tmp_path / "out"
    argv = [sys.executable, "-c", AS_FROM_A_TERMINAL, "study", str(study), "--out", str(out)]
    proc = subprocess.Popen(
        [*argv, "--jobs", "2"], stderr=subprocess.PIPE, text=True, start_new_session=True
    )
    try:
        started = out / "runs"
        while len(list(started.glob("*.partial/metrics.jsonl"))) < 2:
            assert proc.poll() is None, proc.communicate()[1]
            time.sleep(0.05)
        proc.send_signal(signal.SIGINT)  # as Ctrl-C, to the command alone
        _, err = proc.communicate(timeout=120)
    finally:  # a study left running would take the cores of every test after this one
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)  # the command and its job processes
        proc.wait()
    assert proc.returncode == 130 and "run the same command again to resume" in err
    assert not list(started.glob("*/result.json"))  # nothing ran on to its end


def test_a_study_resumes_with_what_it_finished(tmp_path: Path) -> None:
    """What an interrupt leaves: some runs finished, one .partial folder. The same
    command runs only the rest, leaves the finished ones as they are and removes the
    partial one."""
    study = tmp_path / "tiny.yaml"
    study.write_text(TINY)
    out = tmp_path / "out"
    argv = [sys.executable, "-m", "aimc_cli", "study", str(study), "--out", str(out), "--jobs", "2"]
    assert subprocess.run(argv, capture_output=True, timeout=300).returncode == 0
    runs = out / "runs"
    folders = sorted(p for p in runs.iterdir() if p.is_dir())
    shutil.rmtree(folders[0])  # never started
    folders[1].rename(folders[1].with_name(folders[1].name + ".partial"))  # cut short
    kept = {k: v for k, v in mtimes(runs).items() if not k.endswith(".partial")}
    assert len(kept) == 2
    done = subprocess.run(argv, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    assert "2 already done, 2 to run" in done.stderr
    after = mtimes(runs)
    assert len(after) == 4 and {k: after[k] for k in kept} == kept
    assert not list(runs.glob("*.partial"))
