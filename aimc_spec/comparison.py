"""Comparing runs: a table of final metrics and an overlay plot of their loss curves.

Torch-free and fed with plain metric records (the rows of metrics.jsonl), so the API
(a sweep's comparison) and the `aimc compare` command (any jobs) draw the same thing.
"""

from __future__ import annotations

import io
import math
from collections.abc import Sequence
from typing import Any

# final-metric columns of a comparison, with how each is printed
COLUMNS = (
    ("test_accuracy", "{:.4f}"),
    ("test_loss", "{:.4f}"),
    ("train_loss", "{:.4f}"),
    ("samples", "{:d}"),
    ("sim_time_ns", "{:.4g}"),
    ("wall_s", "{:.1f}"),
)


def final_metrics(points: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """The last metric point's values of the comparison columns (empty if none yet)."""
    if not points:
        return {}
    last = points[-1]
    return {name: last.get(name) for name, _ in COLUMNS}


def format_table(rows: Sequence[dict[str, Any]], keys: Sequence[str]) -> str:
    """A plain-text table: the `keys` columns as given, then the final metrics."""
    header = [*keys, *(name for name, _ in COLUMNS)]
    lines = []
    for row in rows:
        cells = [str(row.get(k, "")) for k in keys]
        for name, fmt in COLUMNS:
            value = row.get(name)
            cells.append("-" if value is None else _fmt(fmt, value))
        lines.append(cells)
    return text_table(header, lines)


def text_table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    """Columns padded to their widest cell, two spaces apart (for terminals)."""
    widths = [max([len(h), *(len(row[i]) for row in rows)]) for i, h in enumerate(header)]
    lines = [header, *rows]
    return "\n".join(
        "  ".join(c.ljust(w) for c, w in zip(line, widths, strict=True)).rstrip() for line in lines
    )


def _fmt(fmt: str, value: Any) -> str:
    try:
        return fmt.format(int(value) if fmt == "{:d}" else float(value))
    except (TypeError, ValueError):
        return str(value)


def plot_overlay(series: Sequence[tuple[str, Sequence[dict[str, Any]]]], title: str) -> bytes:
    """PNG bytes: test loss against samples and against simulated time, one line per run
    (label, metric points), and test accuracy against samples."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 3, figsize=(15, 4.6))
    fig.subplots_adjust(left=0.06, right=0.99, bottom=0.24, top=0.9, wspace=0.25)
    for label, points in series:
        samples = [p["samples"] for p in points]
        sim_ms = [p["sim_time_ns"] / 1e6 for p in points]
        loss = [p["test_loss"] if _finite(p.get("test_loss")) else math.nan for p in points]
        (line,) = axes[0].plot(samples, loss, label=label)
        axes[1].plot(sim_ms, loss, color=line.get_color())
        axes[2].plot(samples, [p.get("test_accuracy") for p in points], color=line.get_color())
    for ax, xlabel, ylabel in (
        (axes[0], "samples", "test loss"),
        (axes[1], "simulated time (ms)", "test loss"),
        (axes[2], "samples", "test accuracy"),
    ):
        ax.set_xlabel(xlabel)
        ax.set_ylabel(ylabel)
        ax.grid(alpha=0.3)
    if any(points for _, points in series):
        for ax in axes[:2]:
            log_y(ax)
    axes[2].set_ylim(0, 1)
    fig.legend(loc="lower center", ncols=min(3, max(1, len(series))), fontsize=9, frameon=False)
    fig.suptitle(title)
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=90)
    plt.close(fig)
    return buffer.getvalue()


def log_y(ax: Any) -> None:
    """A log y axis labelled 0.2, 0.5, 1, 2: plain numbers read better than 10^0, and
    skipping mathtext saves ~30 ms a figure (a job's plots are drawn before it is done)."""
    from matplotlib.ticker import FuncFormatter, LogLocator

    ax.set_yscale("log")
    ax.yaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:g}"))
    ax.yaxis.set_minor_locator(LogLocator(subs=(2.0, 5.0)))  # 2 ticks a decade, not 8
    ax.yaxis.set_minor_formatter(FuncFormatter(_two_and_five))


def _two_and_five(value: float, _: Any) -> str:
    """Label the 2s and 5s between powers of ten: readable, not crowded."""
    if value <= 0:
        return ""
    lead = round(value / 10 ** math.floor(math.log10(value)))
    return f"{value:g}" if lead in (2, 5) else ""


def _finite(value: Any) -> bool:
    return isinstance(value, int | float) and math.isfinite(value) and value > 0
