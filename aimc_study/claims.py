"""A comparison's claims judged on the runs: in every stratum (combination of the factors
a claim does not name), the difference, trend slope or formula ratio with its interval and
the verdict statistics.verdict gives it."""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from typing import Any

from aimc_study.comparison import format_summary
from aimc_study.design import Claim, Comparison
from aimc_study.formula import evaluate_formula
from aimc_study.plan import Group, Study
from aimc_study.records import RunRecord, group_values
from aimc_study.statistics import (
    Difference,
    Estimate,
    paired,
    ratio_deviation,
    slope,
    summarise,
    verdict,
    welch,
)
from aimc_study.tables import number


@dataclass(frozen=True)
class ClaimResult:
    claim: Claim
    stratum: dict[str, Any]  # the factors the claim does not name, fixed in this row
    a: Group | None
    b: Group | None
    difference: Difference | Estimate | None
    verdict: str
    detail: str = ""  # what the estimate is of, in numbers (a trend's points, a formula)


def _strata(groups: list[Group], named: set[str]) -> list[dict[str, Any]]:
    strata: dict[str, dict[str, Any]] = {}
    for g in groups:
        stratum = {k: v for k, v in g.factors.items() if k not in named}
        strata.setdefault(json.dumps(stratum, sort_keys=True, default=str), stratum)
    return list(strata.values())


def evaluate_claim(
    study: Study, comparison: Comparison, claim: Claim, records: dict[str, RunRecord]
) -> list[ClaimResult]:
    """The claim in every stratum (combination of the other factors) of the groups the
    comparison covers; a stratum without the groups it needs run says so."""
    groups = [g for g in study.matching(comparison.where)]
    if claim.kind == "trend":
        assert claim.x is not None  # the claim's validator requires it
        named = set(claim.a) | {claim.x}
        return [
            _trend(study, comparison, claim, s, groups, records) for s in _strata(groups, named)
        ]
    results = []
    for stratum in _strata(groups, set(claim.a)):
        a = _one(study.matching({**stratum, **claim.a}), groups)
        b = _one(study.matching({**stratum, **claim.b}), groups)
        if a is None or b is None:
            results.append(ClaimResult(claim, stratum, a, b, None, "not run"))
            continue
        va = group_values(a, records, comparison)
        vb = group_values(b, records, comparison)
        seeds = sorted(set(va) & set(vb))
        if claim.kind == "ratio":
            assert claim.formula is not None
            symbols = {n: study.position(k, stratum[k]) for n, k in claim.symbols.items()}
            expected = evaluate_formula(claim.formula, symbols)
            est = ratio_deviation([va[s] for s in seeds], [vb[s] for s in seeds], expected)
            ratio = summarise([va[s] / vb[s] for s in seeds if vb[s]])
            formula = claim.formula if claim.symbols else ""
            detail = f"a/b = {format_summary(ratio)}; formula {formula} = {expected:.4g}"
            results.append(
                ClaimResult(
                    claim, stratum, a, b, est, verdict(est, claim.expect, claim.margin), detail
                )
            )
            continue
        if claim.test == "paired":
            diff = paired([va[s] for s in seeds], [vb[s] for s in seeds])
        else:
            diff = welch(list(va.values()), list(vb.values()))
        results.append(
            ClaimResult(claim, stratum, a, b, diff, verdict(diff, claim.expect, claim.margin))
        )
    return results


def _trend(
    study: Study,
    comparison: Comparison,
    claim: Claim,
    stratum: dict[str, Any],
    groups: list[Group],
    records: dict[str, RunRecord],
) -> ClaimResult:
    """The slope of the measured value (or of the per-seed gap a - b) against x in one
    stratum: a point per seed and x value."""
    assert claim.x is not None
    xs: list[float] = []
    ys: list[float] = []
    means = []
    for value in study.grid.get(claim.x) or [v.name for v in study.levels[claim.x]]:
        at = {**stratum, claim.x: value}
        a = _one(study.matching({**at, **claim.a}), groups)
        if a is None:
            continue
        va = group_values(a, records, comparison)
        if claim.b:
            b = _one(study.matching({**at, **claim.b}), groups)
            if b is None:
                continue
            vb = group_values(b, records, comparison)
            va = {s: va[s] - vb[s] for s in sorted(set(va) & set(vb))}
        x = study.position(claim.x, value)
        position = math.log(x) if claim.log_x else x
        xs += [position] * len(va)
        ys += list(va.values())
        means.append(f"{value}: {number(summarise(list(va.values())).mean, 3)}")
    if len(means) < 2:
        return ClaimResult(claim, stratum, None, None, None, "not run")
    est = slope(xs, ys)
    detail = "mean at " + ", ".join(means)
    return ClaimResult(
        claim, stratum, None, None, est, verdict(est, claim.expect, claim.margin), detail
    )


def _one(found: list[Group], allowed: list[Group]) -> Group | None:
    inside = [g for g in found if g in allowed]
    return inside[0] if len(inside) == 1 else None
