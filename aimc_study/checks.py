"""The cross-field checks of a study's design: factors that overlap, quick choices that
are not in the design, comparisons that name factors or values the study lacks.

Each check collects every fault (field, message) before raising one SpecError, so a
study file is corrected in one pass.
"""

from __future__ import annotations

from typing import Any

from aimc_spec.spec import SpecError
from aimc_study.design import Quick, StudyFile, named_factors


def _overlaps(a: dict[str, Any], b: dict[str, Any]) -> str | None:
    """A key of `a` that is, contains or lies under a key of `b`."""
    for x in a:
        for y in b:
            if x == y or x.startswith(y + ".") or y.startswith(x + "."):
                return x
    return None


def check_design(file: StudyFile, grid: dict[str, list[Any]]) -> None:
    """SpecError unless the factors set disjoint spec paths (no factor also a grid key, no
    two setting one path) and quick's choices lie inside the design."""
    problems = []
    quick = file.quick or Quick()
    for key in quick.grid:
        if key not in file.grid:
            problems.append((f"quick.grid.{key}", "not a grid key; quick.grid only shrinks it"))
    all_levels = {name: [v.name for v in levels] for name, _, levels in named_factors(file)}
    for key, keep in quick.factors.items():
        if key not in all_levels:
            problems.append(
                (f"quick.factors.{key}", f"not a named factor; allowed: {list(all_levels)}")
            )
        elif not keep or any(k not in all_levels[key] for k in keep):
            problems.append(
                (f"quick.factors.{key}", f"{keep}: a non-empty choice of {all_levels[key]}")
            )
    if (clash := _overlaps(quick.overrides, grid)) is not None:
        problems.append((f"quick.overrides.{clash}", "is a grid key; shrink it with quick.grid"))
    named = named_factors(file)
    for k, (factor, where, levels) in enumerate(named):
        if factor in grid:
            problems.append((where, f"{factor!r} is also a grid key"))
        for i, level in enumerate(levels):
            if (clash := _overlaps(level.overrides, grid)) is not None:
                problems.append((f"{where}.{i}.overrides.{clash}", "is also a grid key"))
            for other, _, other_levels in named[:k]:
                for o in other_levels:
                    if (clash := _overlaps(level.overrides, o.overrides)) is not None:
                        problems.append(
                            (f"{where}.{i}.overrides.{clash}", f"is set by factor {other!r} too")
                        )
        names = [v.name for v in levels]
        if len(set(names)) != len(names):
            problems.append((where, f"names must be distinct, got {names}"))
    if problems:
        raise SpecError(list(dict.fromkeys(problems)))


def _numeric(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _positions(file: StudyFile, key: str) -> list[float] | None:
    """A factor's values as numbers, or None if some value is not one."""
    levels = {name: options for name, _, options in named_factors(file)}.get(key)
    if levels is not None:
        values = [v.value for v in levels]
        return [float(v) for v in values if v is not None] if None not in values else None
    grid = file.grid.get(key, [])
    return [float(v) for v in grid] if all(_numeric(v) for v in grid) else None


def check_comparisons(file: StudyFile, keys: list[str]) -> None:
    """SpecError unless every comparison and claim names factors of the study (`keys`)
    and values they take, and each claim has what its kind needs (numbers along x, a
    margin for equal)."""
    values: dict[str, list[Any]] = {**file.grid}
    values.update({name: [v.name for v in levels] for name, _, levels in named_factors(file)})
    problems = []

    def check(where: str, selector: dict[str, Any]) -> None:
        for key, value in selector.items():
            if key not in keys:
                problems.append((f"{where}.{key}", f"not a factor; allowed: {', '.join(keys)}"))
            elif value not in values[key]:
                problems.append((f"{where}.{key}", f"{value!r} is not one of {values[key]}"))

    def numeric(where: str, key: str, named: dict[str, Any], positive: bool = False) -> None:
        if key not in keys:
            problems.append((where, f"{key!r} is not a factor; allowed: {', '.join(keys)}"))
        elif key in named:
            problems.append((where, f"{key!r} is fixed by a and b; it must vary"))
        elif (xs := _positions(file, key)) is None:
            problems.append(
                (where, f"{key!r} has values that are not numbers (give its levels a `value`)")
            )
        elif positive and min(xs) <= 0:
            problems.append((where, f"log_x needs positive values of {key!r}, got {xs}"))

    for i, comp in enumerate(file.comparisons):
        at = f"comparisons.{i}"
        check(f"{at}.where", comp.where)
        if comp.x is not None and comp.x not in file.grid:
            problems.append(
                (f"{at}.x", f"{comp.x!r} is not a grid key; allowed: {list(file.grid)}")
            )
        for j, claim in enumerate(comp.claims):
            here = f"{at}.claims.{j}"
            check(f"{here}.a", claim.a)
            check(f"{here}.b", claim.b)
            if claim.kind == "trend":  # a alone picks the groups; with b, the gap a - b
                if claim.b and set(claim.a) != set(claim.b):
                    problems.append((here, "a and b must name the same factors"))
            elif set(claim.a) != set(claim.b) or not claim.a:
                problems.append((here, "a and b must name the same factors (at least one)"))
            if claim.kind == "trend" and claim.x is not None:
                numeric(f"{here}.x", claim.x, claim.a, positive=claim.log_x)
            for symbol, key in claim.symbols.items():
                numeric(f"{here}.symbols.{symbol}", key, claim.a)
            if claim.expect == "equal" and claim.margin <= 0:
                problems.append((f"{here}.margin", "expect: equal needs a margin > 0"))
    if problems:
        raise SpecError(problems)
