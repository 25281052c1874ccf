"""Progress output: a redrawn bar with loss, accuracy and ETA on a terminal; lines elsewhere."""

from __future__ import annotations

import io

from aimc_cli.progress import Progress, format_seconds


def record(step: int, acc: float) -> dict:
    return {
        "step": step,
        "samples": step * 10,
        "train_loss": 0.5,
        "test_loss": 0.6,
        "test_accuracy": acc,
        "wall_s": 3.0,
    }


def test_terminal_bar_shows_loss_accuracy_and_eta() -> None:
    out = io.StringIO()
    bar = Progress(out, tty=True)
    bar.on_metrics(record(0, 0.25))
    bar.on_progress(50, 100, 0.4321)
    bar.on_progress(100, 100, 0.1234)  # the last step always draws, then ends the line
    text = out.getvalue()
    assert text.startswith("\r[")
    assert "50.0% step 50/100 loss 0.4321 acc 0.250 ETA" in text
    assert "100.0% step 100/100 loss 0.1234" in text and text.endswith("\n")


def test_plain_lines_when_not_a_terminal() -> None:
    out = io.StringIO()
    bar = Progress(out, tty=False)
    bar.on_progress(5, 10, 0.3)
    bar.on_metrics(record(5, 0.9))
    assert out.getvalue() == (
        "step 5 samples 50 train_loss 0.5000 test_loss 0.6000 test_accuracy 0.9000 wall 00:03\n"
    )


def test_format_seconds() -> None:
    assert format_seconds(65) == "01:05"
    assert format_seconds(3725) == "1:02:05"


def job(state: str, progress: float, step: int | None = None) -> dict:
    return {
        "state": state,
        "progress": progress,
        "eta_seconds": 12.0 if state == "running" else None,
        "latest_metrics": record(step, 0.75) if step is not None else None,
    }


def test_remote_job_progress_bar_on_a_terminal() -> None:
    """`aimc submit --wait` on a terminal: one bar redrawn with state, loss, accuracy, ETA."""
    from aimc_cli.remote.jobs import JobProgress

    out = io.StringIO()
    view = JobProgress(out, tty=True)
    view(job("queued", 0.0))
    view(job("running", 0.5, step=50))
    view(job("succeeded", 1.0, step=100))
    text = out.getvalue()
    assert "\r[" in text and "0.0% queued" in text
    assert "50.0% running loss 0.5000 acc 0.750 ETA 00:12" in text
    assert "100.0% succeeded loss 0.5000 acc 0.750" in text and text.endswith("\n")


def test_remote_job_progress_lines_elsewhere() -> None:
    """Off a terminal: a line per state change and per new metric point, none repeated."""
    from aimc_cli.remote.jobs import JobProgress

    out = io.StringIO()
    view = JobProgress(out, tty=False)
    for update in (job("queued", 0), job("running", 0.5, 50), job("running", 0.5, 50)):
        view(update)
    view(job("succeeded", 1.0, 100))
    lines = out.getvalue().splitlines()
    assert lines[:2] == ["state queued", "state running"]
    assert lines[2].startswith("step 50 ") and lines[3].startswith("step 100 ")
    assert lines[4] == "state succeeded" and len(lines) == 5
