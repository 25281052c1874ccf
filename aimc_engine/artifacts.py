"""What a finished job leaves on disk: result.json, metrics (jsonl, csv), weights, curves."""

from __future__ import annotations

import functools
import json
import os
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from torch import nn

from aimc_engine.pipeline.schedule import BACKWARD, FORWARD, UPDATE
from aimc_engine.pipeline.timeline import Timed
from aimc_spec.metric_record import metrics_csv
from aimc_study.plots import log_y

if TYPE_CHECKING:
    from matplotlib.artist import Artist
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure
    from matplotlib.lines import Line2D

GANTT_ACTIONS = 300  # actions drawn in timeline.png


def append_metrics_jsonl(path: Path, record: dict[str, Any]) -> None:
    """One JSON object per line, appended as the point is measured (tail -f friendly)."""
    with path.open("a") as f:
        f.write(json.dumps(record) + "\n")


def write_metrics_csv(path: Path, metrics: list[dict[str, Any]]) -> None:
    path.write_text(metrics_csv(metrics))


def write_weights(path: Path, model: nn.Module, spec_json: str) -> None:
    """All weights and tile states (device parameters, Tiki-Taka's P) as safetensors."""
    from safetensors.torch import save_file

    tensors = {k: v.detach().cpu().contiguous().clone() for k, v in model.state_dict().items()}
    save_file(tensors, str(path), metadata={"spec": spec_json, "format": "aimc-weights-1"})


@dataclass
class _CurvesFigure:
    """curves.png's figure, built once per process: its axes, labels, legends and tick
    objects cost ~2/3 of drawing it anew (~0.2 s, time a service job spends between its
    last step and `succeeded`). The worker's parent builds and draws it at start, so
    each job's process, forked from it, only sets the data and renders."""

    figure: Figure
    axes: list[list[Axes]]
    train_loss: list[Line2D]
    test_loss: list[Line2D]
    accuracy: list[Line2D]
    lock: threading.Lock = field(default_factory=threading.Lock)


@functools.cache
def _curves_figure() -> _CurvesFigure:
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    # no pyplot: a figure no global registry holds (nothing to close, no GUI backend)
    fig = Figure(figsize=(10, 7))
    FigureCanvasAgg(fig)
    # fixed margins: a constrained layout measures every tick label, half of the drawing.
    # Each row shares its y axis: the right panel's tick labels, y label and legend
    # would repeat the left one's, and their text was a fifth of the drawing.
    fig.subplots_adjust(left=0.08, right=0.98, bottom=0.08, top=0.92, wspace=0.06, hspace=0.28)
    axes = fig.subplots(2, 2, sharey="row", squeeze=False).tolist()
    train, test, accuracy = [], [], []
    for col, xlabel in enumerate(("samples", "simulated time (ms)")):
        ax = axes[0][col]
        train.append(ax.plot([], [], label="train loss")[0])
        test.append(ax.plot([], [], label="test loss")[0])
        ax.set_xlabel(xlabel)
        ax = axes[1][col]
        accuracy.append(ax.plot([], [], color="tab:green")[0])
        ax.set_xlabel(xlabel)
    log_y(axes[0][0])
    axes[0][0].set_ylabel("loss")
    axes[0][0].legend()
    axes[1][0].set_ylabel("test accuracy")
    axes[1][0].set_ylim(0, 1)
    for row in axes:
        row[1].tick_params(labelleft=False)
        for ax in row:
            ax.grid(alpha=0.3)
    return _CurvesFigure(fig, axes, train, test, accuracy)


def plot_curves(path: Path, metrics: list[dict[str, Any]], title: str) -> None:
    """Loss and accuracy against samples and against simulated time (2 x 2 panels)."""
    f = _curves_figure()
    samples = [m["samples"] for m in metrics]
    sim_ms = [m["sim_time_ns"] / 1e6 for m in metrics]
    with f.lock:
        for col, xs in enumerate((samples, sim_ms)):
            f.train_loss[col].set_data(xs, [m["train_loss"] for m in metrics])
            f.test_loss[col].set_data(xs, [m["test_loss"] for m in metrics])
            f.accuracy[col].set_data(xs, [m["test_accuracy"] for m in metrics])
        for row in f.axes:
            for ax in row:
                ax.relim()
                ax.autoscale_view()  # x always; y where not fixed (accuracy is 0..1)
        f.figure.suptitle(title)
        f.figure.savefig(path, dpi=100, pil_kwargs={"compress_level": 1})


@dataclass
class _TimelineFigure:
    """timeline.png's figure for one number of stages, built once per process like
    _CurvesFigure; `drawn` holds the last job's bars and labels, removed before the next."""

    figure: Figure
    ax: Axes
    drawn: list[Artist] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)


TIMELINE_COLOURS = {FORWARD: "tab:blue", BACKWARD: "tab:orange", UPDATE: "tab:green"}


@functools.cache
def _timeline_figure(stages: int) -> _TimelineFigure:
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    names = {FORWARD: "forward", BACKWARD: "backward", UPDATE: "update"}
    height = 1.2 + 0.5 * stages
    fig = Figure(figsize=(12, height))
    FigureCanvasAgg(fig)
    fig.subplots_adjust(left=0.07, right=0.99, bottom=0.45 / height + 0.1, top=1 - 0.45 / height)
    ax = fig.add_subplot()
    for kind, colour in TIMELINE_COLOURS.items():
        ax.bar(0, 0, color=colour, label=names[kind])  # legend entry
    ax.set_yticks(range(stages), [f"stage {s}" for s in range(stages)])
    ax.invert_yaxis()
    ax.set_xlabel("simulated time (us)")
    ax.legend(loc="lower right", bbox_to_anchor=(1.0, 1.0), ncols=3, fontsize=8, frameon=False)
    return _TimelineFigure(fig, ax)


def plot_timeline(path: Path, timed: list[Timed], stages: int, title: str) -> None:
    """Gantt chart of the first actions: one row per stage, coloured by action kind."""
    f = _timeline_figure(stages)
    ax = f.ax
    shown = timed[:GANTT_ACTIONS]
    with f.lock:
        for artist in f.drawn:
            artist.remove()
        f.drawn.clear()
        for kind, colour in TIMELINE_COLOURS.items():
            for stage in range(stages):  # one collection per (kind, stage), not one per bar
                spans = [
                    (t.start / 1e3, (t.end - t.start) / 1e3)
                    for t in shown
                    if t.action.kind == kind and t.action.stage == stage
                ]
                if spans:
                    bars = ax.broken_barh(
                        spans, (stage - 0.4, 0.8), color=colour, edgecolor="white", linewidth=0.3
                    )
                    f.drawn.append(bars)
        if len(shown) <= 80:  # small charts: label each bar with its micro-batch
            for t in shown:
                label = ax.text(
                    (t.start + t.end) / 2e3,
                    t.action.stage,
                    str(t.action.microbatch),
                    ha="center",
                    va="center",
                    fontsize=7,
                )
                f.drawn.append(label)
        ax.relim()
        ax.autoscale_view()
        ax.set_title(f"{title}: first {len(shown)} actions", loc="left")
        f.figure.savefig(path, dpi=100, pil_kwargs={"compress_level": 1})


def write_timeline_json(path: Path, timed: list[Timed], stages: int, schedule: str) -> None:
    """The actions of timeline.png as data, for the dashboard's interactive Gantt chart:
    one `[stage, kind, micro-batch, start_ns, end_ns]` row per action."""
    shown = timed[:GANTT_ACTIONS]
    body = {
        "schedule": schedule,
        "stages": stages,
        "time_unit": "ns",
        "actions": [
            [t.action.stage, t.action.kind, t.action.microbatch, t.start, t.end] for t in shown
        ],
    }
    path.write_text(json.dumps(body, separators=(",", ":")) + "\n")


def write_run(
    out_dir: Path,
    result: dict[str, Any],
    metrics: list[dict[str, Any]],
    model: nn.Module,
    timed: list[Timed],
) -> None:
    """Everything but metrics.jsonl (appended while the job runs). timeline.png is drawn
    in a forked process while this one draws curves.png and writes the rest: a service
    job is `succeeded` only once all of them are stored, and the two plots were most of
    that wait (see _draw_aside)."""
    out_dir.mkdir(parents=True, exist_ok=True)
    spec = result["spec"]
    stages, schedule = spec["pipeline"]["stages"], spec["pipeline"]["schedule"]
    title = f"{spec['name']} ({schedule})"
    timeline = _draw_aside(lambda: plot_timeline(out_dir / "timeline.png", timed, stages, title))
    write_metrics_csv(out_dir / "metrics.csv", metrics)
    write_weights(out_dir / "weights.safetensors", model, json.dumps(spec))
    plot_curves(out_dir / "curves.png", metrics, spec["name"])
    write_timeline_json(out_dir / "timeline.json", timed, stages, schedule)
    (out_dir / "result.json").write_text(json.dumps(result, indent=2) + "\n")
    timeline()


def _draw_aside(draw: Callable[[], None]) -> Callable[[], None]:
    """Start `draw` in a forked process; returns the call that waits for it, and draws
    in this process after all if the fork failed (so an error is raised here, where it
    names the plot). The forked process only draws with matplotlib: no torch op, so the
    torch thread pool that forking after torch work leaves broken is never used there.
    Without fork (not POSIX) it draws at once."""
    if not hasattr(os, "fork"):
        draw()
        return lambda: None
    pid = os.fork()
    if pid == 0:
        code = 1
        try:
            draw()
            code = 0
        finally:
            os._exit(code)

    def wait() -> None:
        _, status = os.waitpid(pid, 0)
        if os.waitstatus_to_exitcode(status) != 0:
            draw()

    return wait
