"""Progress shown while a job trains: a live bar on a terminal, plain lines elsewhere."""

from __future__ import annotations

import sys
import time
from typing import Any, TextIO

BAR_WIDTH = 28
REDRAW_SECONDS = 0.2  # a redraw per step would cost more than a small step


def format_seconds(seconds: float) -> str:
    seconds = max(0, int(seconds))
    h, rest = divmod(seconds, 3600)
    m, s = divmod(rest, 60)
    return f"{h}:{m:02d}:{s:02d}" if h else f"{m:02d}:{s:02d}"


class Progress:
    """Feeds on the runner's callbacks; `tty` decides between a bar and log lines."""

    def __init__(self, stream: TextIO = sys.stderr, *, tty: bool | None = None) -> None:
        self.stream = stream
        self.tty = stream.isatty() if tty is None else tty
        self.start = time.perf_counter()
        self.last_draw = 0.0
        self.accuracy: float | None = None

    def on_progress(self, microbatches: int, total: int, loss: float) -> None:
        """`microbatches` of `total` done (the bar's "step" counts micro-batches; a metric
        record's `step` counts updates)."""
        now = time.perf_counter()
        if not self.tty or (now - self.last_draw < REDRAW_SECONDS and microbatches < total):
            return
        self.last_draw = now
        done = microbatches / total
        elapsed = now - self.start
        eta = elapsed / done * (1 - done) if done else 0.0
        acc = f" acc {self.accuracy:.3f}" if self.accuracy is not None else ""
        text = f"step {microbatches}/{total} loss {loss:.4f}{acc}"
        self.draw(done, text, eta, last=microbatches == total)

    def draw(self, done: float, text: str, eta: float | None, *, last: bool = False) -> None:
        """Redraw the bar in place (a terminal only): fraction done, a status text, ETA."""
        filled = int(BAR_WIDTH * done)
        eta_text = f" ETA {format_seconds(eta)}" if eta is not None else ""
        self.stream.write(
            f"\r[{'#' * filled}{'.' * (BAR_WIDTH - filled)}] {done:6.1%} {text}{eta_text} "
        )
        if last:
            self.stream.write("\n")
        self.stream.flush()

    def on_metrics(self, record: dict[str, Any]) -> None:
        self.accuracy = record["test_accuracy"]
        if self.tty:
            return
        self.stream.write(
            f"step {record['step']} samples {record['samples']} "
            f"train_loss {record['train_loss']:.4f} test_loss {record['test_loss']:.4f} "
            f"test_accuracy {record['test_accuracy']:.4f} wall {format_seconds(record['wall_s'])}\n"
        )
        self.stream.flush()
