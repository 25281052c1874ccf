"""The figures of a comparison: loss and accuracy curves per run or per group (mean with
a 95% CI band over seeds), and a final metric against a parameter.

Drawn only where a figure is wanted (a worker for a sweep, the CLI for `aimc compare` and
study reports, the engine for a job's curves); pyplot is imported when the first figure
is drawn, so the processes that never plot stay light.
"""

from __future__ import annotations

import io
import math
from collections.abc import Mapping, Sequence
from typing import Any

from aimc_study.statistics import Summary, summarise

# the panels of an overlay: (x, y) metric columns; loss panels get a log axis
OVERLAY_PANELS = (
    ("samples", "test_loss"),
    ("sim_time_ns", "test_loss"),
    ("samples", "test_accuracy"),
)
AXIS_LABELS = {"samples": "samples", "sim_time_ns": "simulated time (ms)"}
# plot_grouped's layout, in inches: the axes, the title above, the x tick labels and
# label below them, and one row of the legend (at fontsize 9) under those
AXES_IN, TITLE_IN, AXIS_LABEL_IN, LEGEND_ROW_IN = 3.0, 0.45, 0.6, 0.22
LEGEND_COLUMNS = 3
# a group's line: tab20's ten dark colours (tab10's), then its ten light ones, each
# round of twenty in the next style: 80 groups look apart (more repeat these looks)
LINE_STYLES = ("-", "--", ":", "-.")


def plot_overlay(series: Sequence[tuple[str, Sequence[dict[str, Any]]]], title: str) -> bytes:
    """PNG bytes: test loss against samples and against simulated time, one line per run
    (label, metric points), and test accuracy against samples."""
    return plot_grouped([(label, [points]) for label, points in series], title)


def plot_grouped(
    groups: Sequence[tuple[str, Sequence[Sequence[dict[str, Any]]]]],
    title: str,
    *,
    panels: Sequence[tuple[str, str]] = OVERLAY_PANELS,
) -> bytes:
    """PNG bytes: one line per group (label, the metric points of each of its runs), the
    mean over its runs with a band of the 95% confidence interval where it has two or more
    (seeds); panels of (x, y) metric columns, the overlay's three by default."""
    return _png(grouped_figure(groups, title, panels=panels))


def grouped_figure(
    groups: Sequence[tuple[str, Sequence[Sequence[dict[str, Any]]]]],
    title: str,
    *,
    panels: Sequence[tuple[str, str]] = OVERLAY_PANELS,
) -> Any:
    """plot_grouped's pyplot figure, not yet rendered (its caller closes it)."""
    plt = _pyplot()
    columns = min(LEGEND_COLUMNS, max(1, len(groups)))
    # the legend sits under the axes and grows a row per `columns` groups: the figure
    # grows with it, so it never covers the x axes' ticks and labels
    below = AXIS_LABEL_IN + LEGEND_ROW_IN * math.ceil(len(groups) / columns)
    height = AXES_IN + TITLE_IN + below
    fig, axes = plt.subplots(1, len(panels), figsize=(5 * len(panels), height), squeeze=False)
    axes = axes[0]
    fig.subplots_adjust(
        left=0.06, right=0.99, bottom=below / height, top=1 - TITLE_IN / height, wspace=0.25
    )
    positive = [False] * len(panels)  # a log axis needs data above 0 to scale to
    tab20 = plt.get_cmap("tab20").colors
    colours = [*tab20[0::2], *tab20[1::2]]
    for i, (label, runs) in enumerate(groups):
        colour, dashes = (
            colours[i % len(colours)],
            LINE_STYLES[i // len(colours) % len(LINE_STYLES)],
        )
        for k, (ax, (x_key, y_key)) in enumerate(zip(axes, panels, strict=True)):
            xs, band = mean_curve(runs, x_key, y_key)
            positive[k] = positive[k] or any(s.mean > 0 for s in band)
            n = len(runs)
            ax.plot(
                xs,
                [s.mean for s in band],
                color=colour,
                linestyle=dashes,
                label=None if k else (f"{label} (n={n})" if n > 1 else label),
            )
            if n > 1:
                lo = [s.ci_low if s.n > 1 else math.nan for s in band]
                hi = [s.ci_high if s.n > 1 else math.nan for s in band]
                ax.fill_between(xs, lo, hi, color=colour, alpha=0.2, linewidth=0)
    for ax, (x_key, y_key), has_data in zip(axes, panels, positive, strict=True):
        ax.set_xlabel(AXIS_LABELS.get(x_key, x_key))
        ax.set_ylabel(y_key.replace("_", " "))
        ax.grid(alpha=0.3)
        if y_key.endswith("_loss") and has_data:
            log_y(ax)
        if y_key == "test_accuracy":
            ax.set_ylim(0, 1)
    fig.legend(loc="lower center", ncols=columns, fontsize=9, frameon=False)
    fig.suptitle(title)
    return fig


def plot_versus(
    lines: Mapping[str, Sequence[tuple[Any, Summary]]], *, x_label: str, y_label: str, title: str
) -> bytes:
    """PNG bytes: a final metric against a parameter, one line per label of (x value,
    Summary over seeds) points, error bars the 95% CI. Numbers are placed by value (on a
    log axis when they span 20x or more), other values as categories in the given order."""
    plt = _pyplot()
    xs_all = [x for points in lines.values() for x, _ in points]
    values = list({repr(x): x for x in xs_all}.values())  # distinct, in first-seen order
    keys = [repr(x) for x in values]
    numeric = all(isinstance(x, int | float) and not isinstance(x, bool) for x in xs_all)
    fig, ax = plt.subplots(figsize=(7, 4.6))
    fig.subplots_adjust(left=0.1, right=0.98, bottom=0.13, top=0.9)
    for label, points in lines.items():
        xs = [x if numeric else keys.index(repr(x)) for x, _ in points]
        ys = [s.mean for _, s in points]
        err = [s.half_width if s.n > 1 else 0.0 for _, s in points]
        ax.errorbar(xs, ys, yerr=err, marker="o", capsize=3, label=label)
    if numeric and xs_all and min(xs_all) > 0 and max(xs_all) / min(xs_all) >= 20:
        ax.set_xscale("log")
    if not numeric:
        ax.set_xticks(range(len(values)), [str(x) for x in values])
    ax.set_xlabel(x_label)
    ax.set_ylabel(y_label)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=9)
    ax.set_title(title)
    return _png(fig)


def _pyplot() -> Any:
    """pyplot on the Agg backend, imported only when a figure is drawn: the spec package
    stays light for the processes that never plot."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _png(fig: Any) -> bytes:
    """The figure as PNG bytes (90 dpi), cropped or grown to what it draws (a long
    legend label would otherwise be cut at the edge); the figure is closed."""
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=90, bbox_inches="tight", pad_inches=0.1)
    _pyplot().close(fig)
    return buffer.getvalue()


def mean_curve(
    runs: Sequence[Sequence[dict[str, Any]]], x_key: str, y_key: str
) -> tuple[list[float], list[Summary]]:
    """Runs of one group point by point: x (the runs' mean; seeds of one spec measure at the
    same samples and simulated times) and a Summary of y over the runs at each point, up to
    the shortest run. Simulated time is in ms; a non-finite loss is left out of its point."""
    length = min((len(points) for points in runs), default=0)
    scale = 1e-6 if x_key == "sim_time_ns" else 1.0
    xs, ys = [], []
    for i in range(length):
        xs.append(math.fsum(p[i][x_key] for p in runs) * scale / len(runs))
        values = [float(p[i][y_key]) for p in runs if _number(p[i].get(y_key))]
        ys.append(summarise([v for v in values if v > 0 or "loss" not in y_key]))
    return xs, ys


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


def _number(value: Any) -> bool:
    return isinstance(value, int | float) and math.isfinite(value)
