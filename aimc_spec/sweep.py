"""Sweeps: a base spec and a grid of dotted-path overrides, expanded into job specs.

`pipeline.schedule: [gpipe, async]` x `analog.device.states: [300, 1200]` gives four
specs. Every combination is validated before any job exists, so a sweep is queued
whole or not at all, and a fault is reported against the grid entry that caused it.
Torch-free: the API expands sweeps.
"""

from __future__ import annotations

import copy
import difflib
import itertools
import re
import typing
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from pydantic import BaseModel

from aimc_spec.spec import JobSpec, SpecError, parse_spec

MAX_SWEEP_JOBS = 64  # combinations in one sweep: a grid is for comparisons, not searches
DOTTED_PATH = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_0-9][A-Za-z0-9_]*)*$")


def _models_in(annotation: Any) -> list[type[BaseModel]]:
    """The spec models a field's type holds (`X`, `X | None`, unions of them)."""
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return [annotation]
    return [m for arg in typing.get_args(annotation) for m in _models_in(arg)]


def _field_paths(model: type[BaseModel], prefix: str = "") -> Iterator[str]:
    """The dotted path of every field of `model`, its nested models' fields included."""
    for name, field in model.model_fields.items():
        yield prefix + name
        for nested in _models_in(field.annotation):
            yield from _field_paths(nested, f"{prefix}{name}.")


# what a grid may vary: any field of the job spec, a nested section whole (a mapping of
# its fields) or one field in it; the API's schema lists these (service/schemas.py), so
# what the OpenAPI document allows is what expand() accepts
GRID_PATHS: tuple[str, ...] = tuple(dict.fromkeys(_field_paths(JobSpec)))


def grid_path_problem(path: Any) -> str | None:
    """Why `path` cannot be a grid key, naming the nearest allowed one; None if it can."""
    if isinstance(path, str) and path in GRID_PATHS:
        return None
    field = str(path).rsplit(".", 1)[-1]  # training.lr: the field is optimizer.lr
    nearest = [p for p in GRID_PATHS if p.rsplit(".", 1)[-1] == field]
    nearest = nearest or difflib.get_close_matches(str(path), GRID_PATHS, n=1)
    hint = f"; did you mean {' or '.join(repr(n) for n in nearest[:3])}?" if nearest else ""
    return f"not a job spec field's dotted path like pipeline.schedule{hint}"


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
        if (problem := grid_path_problem(path)) is not None:
            problems.append((f"grid.{path}", problem))
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
