"""Comparisons in groups: replicates found by spec, curves averaged with CI bands."""

from __future__ import annotations

import itertools
import math
from typing import Any

import pytest

from aimc_spec.spec import parse_spec
from aimc_study.comparison import Run, format_grouped_table, group_runs
from aimc_study.plots import grouped_figure, mean_curve, plot_grouped, plot_overlay, plot_versus
from aimc_study.remote import split_grid
from aimc_study.statistics import summarise


def points(accuracies: list[float], loss: float = 1.0) -> list[dict[str, Any]]:
    return [
        {
            "samples": 10 * (i + 1),
            "sim_time_ns": 2e6 * (i + 1),
            "test_accuracy": a,
            "test_loss": loss,
        }
        for i, a in enumerate(accuracies)
    ]


def run(job: str, lr: float, seed: int, accuracies: list[float]) -> Run:
    spec = parse_spec({"name": job, "seed": seed, "optimizer": {"lr": lr}}).normalised()
    return Run(job, spec, points(accuracies))


RUNS = [
    run("a", 0.1, 1, [0.5, 0.7]),
    run("b", 0.2, 1, [0.4, 0.6]),
    run("c", 0.1, 2, [0.6, 0.9]),
    run("d", 0.2, 2, [0.5, 0.8]),
]


def test_replicates_are_runs_differing_only_in_seed_and_name() -> None:
    groups = group_runs(RUNS)
    assert [(label, [r.id for r in members]) for label, members in groups] == [
        ("optimizer.lr=0.1", ["a", "c"]),
        ("optimizer.lr=0.2", ["b", "d"]),
    ]
    by_seed = group_runs(RUNS, ["seed"])
    assert [(label, [r.id for r in m]) for label, m in by_seed] == [
        ("seed=1", ["a", "b"]),
        ("seed=2", ["c", "d"]),
    ]
    with pytest.raises(KeyError, match=r"no job's spec has optimizer\.lrr"):
        group_runs(RUNS, ["optimizer.lrr"])


def test_grouped_table_and_curve_are_means_with_t_intervals() -> None:
    table, rows = format_grouped_table(group_runs(RUNS))
    first = rows[0]["test_accuracy"]
    assert first["mean"] == pytest.approx(0.8)  # final 0.7 and 0.9
    half = 12.7062 * math.sqrt(0.02) / math.sqrt(2)  # t_{0.975,1} s / sqrt(2), s² = 0.02
    assert first["ci_high"] - first["mean"] == pytest.approx(half, rel=1e-4)
    assert table.splitlines()[1].startswith("optimizer.lr=0.1  2  0.8000 ± ")
    xs, band = mean_curve([RUNS[0].points, RUNS[2].points], "sim_time_ns", "test_accuracy")
    assert xs == [2.0, 4.0]  # milliseconds
    assert [s.mean for s in band] == pytest.approx([0.55, 0.8])


def test_grouped_plot_and_overlay_are_pngs() -> None:
    png = plot_grouped([(label, [r.points for r in m]) for label, m in group_runs(RUNS)], "t")
    assert png[:4] == b"\x89PNG"
    assert plot_overlay([("a", RUNS[0].points), ("none yet", [])], "t")[:4] == b"\x89PNG"


@pytest.mark.parametrize("count", [1, 4, 16, 48, 80])
def test_the_legend_never_covers_the_axes_and_no_two_groups_look_alike(count: int) -> None:
    """The legend under the axes grows the figure by a row per three groups: it stays
    below every x axis' tick labels and label (16 groups covered them, as the C4 figure of
    docs/reproduction.md showed), and up to 80 groups no two lines share colour and style."""
    groups = [(f"group {i}, a long label of settings", [points([0.5, 0.7])]) for i in range(count)]
    fig = grouped_figure(groups, "legend")
    try:
        fig.canvas.draw()
        renderer = fig.canvas.get_renderer()
        [legend] = fig.legends
        legend_top = legend.get_window_extent(renderer).y1
        for ax in fig.axes:
            axis_bottom = ax.xaxis.get_tightbbox(renderer).y0
            assert legend_top < axis_bottom, (count, legend_top, axis_bottom)
        looks = [(line.get_color(), line.get_linestyle()) for line in fig.axes[0].get_lines()]
        assert len(set(looks)) == count
    finally:
        import matplotlib.pyplot as plt

        plt.close(fig)


def test_a_group_whose_seed_has_no_points_yet_still_plots() -> None:
    """A sweep cancelled early: one seed measured, its twin nothing. The group's mean
    curve is empty (up to the shortest run), so no loss axis has data to log-scale; the
    plot is drawn all the same (a worker's sweep plot once failed here)."""
    groups = [("lr=0.1", [points([0.5, 0.7]), []]), ("lr=0.2", [[], []])]
    assert mean_curve(groups[0][1], "samples", "test_loss") == ([], [])
    assert plot_grouped(groups, "cancelled early")[:4] == b"\x89PNG"


def test_split_grid_cuts_a_study_into_sweeps_of_at_most_the_limit() -> None:
    grid = {"a": [1, 2, 3], "b": ["x", "y"], "seed": [1, 2, 3, 4, 5]}
    pieces = split_grid(grid, 7)
    combos = [c for p in pieces for c in itertools.product(*p.values())]
    assert sorted(combos) == sorted(itertools.product(*grid.values()))  # each exactly once
    assert all(math.prod(len(v) for v in p.values()) <= 7 for p in pieces)
    assert split_grid(grid, 30) == [grid]


def test_versus_plot_takes_numbers_and_categories() -> None:
    lr = {"a": [(0.01, summarise([0.5, 0.6])), (0.3, summarise([0.7]))]}
    schedule = {"a": [("gpipe", summarise([0.5, 0.6])), ("async", summarise([0.7, 0.8]))]}
    for lines in (lr, schedule):
        assert plot_versus(lines, x_label="x", y_label="y", title="t")[:4] == b"\x89PNG"
