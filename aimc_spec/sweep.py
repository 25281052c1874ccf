"""Sweeps: a base spec and a grid of dotted-path overrides, expanded into job specs.

`pipeline.schedule: [gpipe, async]` x `analog.device.states: [300, 1200]` gives four
specs. Every combination is validated before any job exists, so a sweep is queued
whole or not at all, and a fault is reported against the grid entry that caused it.
Torch-free: the API expands sweeps.
"""

from __future__ import annotations

import copy
import itertools
import re
from dataclasses import dataclass
from typing import Any

from aimc_spec.spec import JobSpec, SpecError, parse_spec

MAX_SWEEP_JOBS = 64  # combinations in one sweep: a grid is for comparisons, not searches
DOTTED_PATH = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_0-9][A-Za-z0-9_]*)*$")


@dataclass(frozen=True)
class SweepPoint:
    """One combination: the overrides it applies and the validated spec they give."""

    overrides: dict[str, Any]
    spec: JobSpec

    @property
    def label(self) -> str:
        return label(self.overrides)


def label(overrides: dict[str, Any]) -> str:
    """`key=value` pairs short enough for a legend (the last path segment names each)."""
    return ", ".join(f"{k.rsplit('.', 1)[-1]}={v}" for k, v in overrides.items())


def set_path(data: dict[str, Any], path: str, value: Any) -> dict[str, Any]:
    """A copy of `data` with the dotted `path` set to `value`, creating missing mappings."""
    out = copy.deepcopy(data)
    node = out
    parts = path.split(".")
    for depth, part in enumerate(parts[:-1]):
        child = node.setdefault(part, {})
        if not isinstance(child, dict):
            where = ".".join(parts[: depth + 1])
            raise SpecError(
                [(f"grid.{path}", f"{where} is {child!r} in the base spec, not a mapping")]
            )
        node = child
    node[parts[-1]] = value
    return out


def _check_grid(grid: Any) -> dict[str, list[Any]]:
    if not isinstance(grid, dict) or not grid:
        raise SpecError([("grid", "a non-empty mapping of dotted spec paths to lists of values")])
    problems = []
    for path, values in grid.items():
        if not isinstance(path, str) or not DOTTED_PATH.match(path):
            problems.append((f"grid.{path}", "not a dotted spec path like pipeline.schedule"))
        elif not isinstance(values, list) or not values:
            problems.append((f"grid.{path}", "needs a non-empty list of values"))
    if problems:
        raise SpecError(problems)
    total = 1
    for values in grid.values():
        total *= len(values)
    if total > MAX_SWEEP_JOBS:
        sizes = " x ".join(str(len(v)) for v in grid.values())
        raise SpecError(
            [("grid", f"{sizes} = {total} combinations; the limit is {MAX_SWEEP_JOBS}")]
        )
    return grid


def expand(base: Any, grid: Any) -> list[SweepPoint]:
    """Every combination of the grid applied to the base spec, each validated. Raises
    SpecError listing each distinct fault once, located at the grid entry it comes from
    (`grid.<path>`) or in the base spec (`spec.<path>`), with the combination named."""
    if base is None:
        base = {}
    if not isinstance(base, dict):
        raise SpecError([("spec", f"a job spec must be a mapping, got {type(base).__name__}")])
    grid = _check_grid(grid)
    points: list[SweepPoint] = []
    problems: dict[tuple[str, str], str] = {}
    for values in itertools.product(*grid.values()):
        overrides = dict(zip(grid, values, strict=True))
        data = base
        for path, value in overrides.items():
            data = set_path(data, path, value)
        combination = ", ".join(f"{k}={v!r}" for k, v in overrides.items())
        try:
            spec = parse_spec(data)
        except SpecError as exc:
            for loc, msg in exc.problems:
                culprit = next((k for k in grid if loc == k or loc.startswith(k + ".")), None)
                if culprit:
                    where, text = f"grid.{culprit}", msg if loc == culprit else f"{loc}: {msg}"
                else:
                    where, text = (f"spec.{loc}" if loc else "spec"), msg
                problems.setdefault((where, text), combination)
            continue
        points.append(SweepPoint(overrides, spec))
    if problems:
        raise SpecError([(w, f"{m} (with {c})") for (w, m), c in problems.items()])
    return points
