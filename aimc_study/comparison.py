"""Comparing runs: a table of final metrics, runs pooled into groups of replicates, and
each group's final metrics as mean ± 95% CI.

Torch-free and fed with plain metric records (the rows of metrics.jsonl), so the API
(a sweep's comparison) and the `aimc compare` command (any jobs) show the same thing;
their plots are drawn by aimc_study.plots.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from aimc_study.statistics import Summary, summarise

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


@dataclass(frozen=True)
class Run:
    """A finished or running job as comparisons see it: an id, its spec, its points."""

    id: str
    spec: dict[str, Any]
    points: Sequence[dict[str, Any]]


def flatten(data: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    """A nested spec as {dotted path: leaf value} (lists are leaves)."""
    out: dict[str, Any] = {}
    for key, value in data.items():
        path = f"{prefix}{key}"
        if isinstance(value, dict):
            out.update(flatten(value, path + "."))
        else:
            out[path] = value
    return out


IGNORED = ("name", "seed")  # what replicates of one setting may differ in


def group_runs(runs: Sequence[Run], by: Sequence[str] | None = None) -> list[tuple[str, list[Run]]]:
    """Runs grouped, in first-seen order: by the values of the dotted spec paths `by`, or
    (by None) into replicates, runs whose specs differ only in seed and name. A group is
    labelled by its `by` values, or by the paths in which the groups' specs differ."""
    flat = [flatten(r.spec) for r in runs]
    if by is not None:
        missing = [k for k in by if all(k not in f for f in flat)]
        if missing:
            raise KeyError(f"no job's spec has {', '.join(missing)}")
        keys = [{k: f.get(k) for k in by} for f in flat]
    else:
        keys = [{k: v for k, v in f.items() if k not in IGNORED} for f in flat]
    groups: dict[str, tuple[dict[str, Any], list[Run]]] = {}
    for run, key in zip(runs, keys, strict=True):
        groups.setdefault(repr(sorted(key.items())), (key, []))[1].append(run)
    settings = [key for key, _ in groups.values()]
    varying = (
        [k for k in settings[0] if len({repr(s.get(k)) for s in settings}) > 1] if settings else []
    )
    shown = list(by) if by is not None else varying
    return [
        (", ".join(f"{k}={key.get(k)}" for k in shown) or "all", members)
        for key, members in groups.values()
    ]


def format_grouped_table(
    groups: Sequence[tuple[str, Sequence[Run]]],
) -> tuple[str, list[dict[str, Any]]]:
    """A plain-text table of each group's final metrics as mean ± 95% CI half width over
    its runs, and the same as rows of numbers (for --json)."""
    header = ["group", "n", *(name for name, _ in COLUMNS[:3])]
    lines, rows = [], []
    for label, runs in groups:
        finals = [final_metrics(r.points) for r in runs]
        row: dict[str, Any] = {"group": label, "n": len(runs), "jobs": [r.id for r in runs]}
        cells = [label, str(len(runs))]
        for name, _ in COLUMNS[:3]:
            s = summarise([f[name] for f in finals if _number(f.get(name))])
            row[name] = {"mean": s.mean, "std": s.std, "ci_low": s.ci_low, "ci_high": s.ci_high}
            cells.append(format_summary(s))
        rows.append(row)
        lines.append(cells)
    return text_table(header, lines), rows


def format_summary(s: Summary, digits: int = 4) -> str:
    """mean ± half width of the 95% CI ('-' for no values, the mean alone for one)."""
    if s.n == 0:
        return "-"
    if s.n == 1:
        return f"{s.mean:.{digits}f}"
    return f"{s.mean:.{digits}f} ± {s.half_width:.{digits}f}"


def _number(value: Any) -> bool:
    return isinstance(value, int | float) and math.isfinite(value)
