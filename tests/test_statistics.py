"""Statistics over seeds: Student-t intervals, Welch's and the paired test, verdicts."""

from __future__ import annotations

import math

import pytest
from scipy import stats

from aimc_spec.statistics import (
    DOES_NOT_HOLD,
    HOLDS,
    INCONCLUSIVE,
    Difference,
    Summary,
    paired,
    summarise,
    t_quantile,
    verdict,
    welch,
)


@pytest.mark.parametrize(
    ("df", "expected"),
    [(1, 12.706), (2, 4.303), (4, 2.776), (9, 2.262), (29, 2.045)],  # printed t tables
)
def test_t_quantile_matches_the_table(df: int, expected: float) -> None:
    assert t_quantile(0.975, df) == pytest.approx(expected, abs=5e-4)


def test_summary_of_five_values() -> None:
    s = summarise([1, 2, 3, 4, 5])
    assert (s.n, s.mean) == (5, 3.0)
    assert s.std == pytest.approx(math.sqrt(2.5))  # ddof = 1: 10 / 4
    half = 2.7764451 * math.sqrt(2.5) / math.sqrt(5)  # t_{0.975,4} s / sqrt(n)
    assert (s.ci_low, s.ci_high) == pytest.approx((3 - half, 3 + half))
    assert s.half_width == pytest.approx(half)


def test_summary_drops_non_finite_values_and_handles_few() -> None:
    assert summarise([0.5, math.nan, 0.7, math.inf]).n == 2
    one = summarise([0.3])
    assert one.mean == 0.3 and math.isnan(one.std) and math.isnan(one.ci_low)
    assert summarise([]).n == 0 and math.isnan(summarise([]).mean)


def test_welch_by_hand_and_against_scipy() -> None:
    a, b = [1.0, 2.0, 3.0, 4.0], [2.0, 3.0, 4.0, 5.0, 9.0]
    d = welch(a, b)
    va, vb = (5 / 3) / 4, 7.3 / 5  # s² / n for each group
    se = math.sqrt(va + vb)
    df = (va + vb) ** 2 / (va**2 / 3 + vb**2 / 4)
    assert df == pytest.approx(5.9615, abs=1e-4)
    assert d.estimate == pytest.approx(-2.1)
    assert d.t == pytest.approx(-2.1 / se)
    half = stats.t.ppf(0.975, df) * se
    assert (d.ci_low, d.ci_high) == pytest.approx((-2.1 - half, -2.1 + half))
    reference = stats.ttest_ind(a, b, equal_var=False)
    assert d.p_value == pytest.approx(reference.pvalue)
    assert d.t == pytest.approx(reference.statistic)


def test_paired_by_hand_and_against_scipy() -> None:
    a, b = [0.91, 0.88, 0.93, 0.90], [0.89, 0.87, 0.90, 0.90]
    d = paired(a, b)
    diffs = [0.02, 0.01, 0.03, 0.0]
    mean = sum(diffs) / 4
    sd = math.sqrt(sum((x - mean) ** 2 for x in diffs) / 3)
    half = 3.182446 * sd / 2  # t_{0.975,3} = 3.182
    assert d.df == 3 and d.estimate == pytest.approx(0.015)
    assert (d.ci_low, d.ci_high) == pytest.approx((0.015 - half, 0.015 + half))
    assert d.p_value == pytest.approx(stats.ttest_rel(a, b).pvalue)
    with pytest.raises(ValueError, match="equal lengths"):
        paired([1.0], [1.0, 2.0])


def test_constant_groups_give_an_exact_difference() -> None:
    d = welch([0.5, 0.5], [0.25, 0.25])
    assert (d.ci_low, d.ci_high, d.p_value) == (0.25, 0.25, 0.0)
    assert verdict(d, "greater") == HOLDS


def _diff(lo: float, hi: float) -> Difference:
    s = Summary(3, 0.0, 1.0, -1.0, 1.0)
    return Difference("welch", s, s, (lo + hi) / 2, lo, hi, 0.0, 4.0, 0.5)


@pytest.mark.parametrize(
    ("lo", "hi", "expect", "margin", "expected"),
    [
        (0.01, 0.05, "greater", 0.0, HOLDS),
        (-0.05, -0.01, "greater", 0.0, DOES_NOT_HOLD),
        (-0.01, 0.05, "greater", 0.0, INCONCLUSIVE),
        (-0.015, 0.02, "greater", -0.02, HOLDS),  # at most 0.02 below
        (-0.05, -0.03, "greater", -0.02, DOES_NOT_HOLD),
        (-0.05, -0.01, "less", 0.0, HOLDS),
        (0.01, 0.05, "less", 0.0, DOES_NOT_HOLD),
        (-0.01, 0.01, "equal", 0.02, HOLDS),
        (0.03, 0.05, "equal", 0.02, DOES_NOT_HOLD),
        (0.01, 0.05, "equal", 0.02, INCONCLUSIVE),
        (math.nan, math.nan, "greater", 0.0, INCONCLUSIVE),
    ],
)
def test_verdicts(lo: float, hi: float, expect: str, margin: float, expected: str) -> None:
    assert verdict(_diff(lo, hi), expect, margin) == expected  # type: ignore[arg-type]


def test_one_seed_is_inconclusive() -> None:
    assert verdict(welch([0.9], [0.1, 0.2]), "greater") == INCONCLUSIVE
