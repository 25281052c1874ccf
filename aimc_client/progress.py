"""A waited-for job's progress where the caller sees it: an HTML bar redrawn in place in
a Jupyter notebook (a terminal's carriage returns pile up there as lines), a text bar on
a terminal, a line per change in a log.

`job_bar()` picks one; each is an `on_progress` callback for Client.wait and Job.wait.
"""

from __future__ import annotations

import html
import sys
from typing import Any, TextIO

from aimc_spec.vocabulary import TERMINAL

BAR_WIDTH = 28


def in_notebook() -> bool:
    """Whether this code runs in a Jupyter kernel (notebook, lab, VS Code, Colab): an
    IPython shell that has a kernel. IPython is only looked at when already imported, so
    scripts never load it."""
    ipython = sys.modules.get("IPython")
    shell = ipython.get_ipython() if ipython is not None else None
    return getattr(shell, "kernel", None) is not None


def format_seconds(seconds: float) -> str:
    seconds = max(0, int(seconds))
    h, rest = divmod(seconds, 3600)
    m, s = divmod(rest, 60)
    return f"{h}:{m:02d}:{s:02d}" if h else f"{m:02d}:{s:02d}"


def status_text(job: dict[str, Any]) -> str:
    """A job's progress in words: state, fraction done, latest loss and accuracy, ETA."""
    parts = [job["state"], f"{job['progress']:.1%}"]
    m = job.get("latest_metrics") or {}
    if m:
        parts.append(f"loss {m['train_loss']:.4f} acc {m['test_accuracy']:.3f}")
    if job.get("eta_seconds") is not None:
        parts.append(f"ETA {format_seconds(job['eta_seconds'])}")
    return " ".join(parts)


class HtmlBar:
    """A <progress> element and the status text in one notebook output, updated in place
    through its display id (no widgets needed, so it draws in any Jupyter front end)."""

    def __init__(self) -> None:
        from IPython.display import HTML, display

        self._html = HTML
        self.handle = display(HTML(self.render(None)), display_id=True)

    @staticmethod
    def render(job: dict[str, Any] | None) -> str:
        if job is None:
            return '<div class="aimc-progress"><progress max="1" value="0"></progress></div>'
        label = html.escape(f"{job.get('name', '')} ({job['id']})")
        return (
            f'<div class="aimc-progress"><progress max="1" value="{job["progress"]:.4f}" '
            f'style="width: 30ex"></progress> <code>{html.escape(status_text(job))}</code> '
            f"<small>{label}</small></div>"
        )

    def __call__(self, job: dict[str, Any]) -> None:
        self.handle.update(self._html(self.render(job)))


class TextBar:
    """A bar redrawn in place on a terminal; elsewhere (a log) a line per new state or
    metric point, so a file is not filled with redraws."""

    def __init__(self, stream: TextIO | None = None) -> None:
        self.stream = stream or sys.stderr
        self.tty = self.stream.isatty()
        self.last = ""

    def __call__(self, job: dict[str, Any]) -> None:
        text = status_text(job)
        if self.tty:
            filled = int(BAR_WIDTH * job["progress"])
            bar = "#" * filled + "." * (BAR_WIDTH - filled)
            self.stream.write(f"\r[{bar}] {text} ")
            if job["state"] in TERMINAL:
                self.stream.write("\n")
        else:
            key = f"{job['state']} {(job.get('latest_metrics') or {}).get('step')}"
            if key != self.last:
                self.stream.write(text + "\n")
            self.last = key
        self.stream.flush()


def job_bar(*, notebook: bool | None = None, stream: TextIO | None = None) -> HtmlBar | TextBar:
    """The progress callback for where this runs: HtmlBar in a Jupyter kernel, else a
    TextBar on `stream` (stderr by default)."""
    if in_notebook() if notebook is None else notebook:
        return HtmlBar()
    return TextBar(stream)
