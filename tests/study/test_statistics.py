"""Statistics over seeds: Student-t intervals, Welch's and the paired test, verdicts."""

from __future__ import annotations

import math

import pytest
from scipy import stats

from aimc_study.statistics import (
    DOES_NOT_HOLD,
    HOLDS,
    INCONCLUSIVE,
    Difference,
    Summary,
    paired,
    ratio_deviation,
    slope,
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


def test_slope_against_scipy_linregress() -> None:
    xs = [0.0, 0.0, 1.0, 1.0, 2.0, 2.0, 3.0]
    ys = [0.10, 0.14, 0.19, 0.25, 0.31, 0.28, 0.42]
    est = slope(xs, ys)
    ref = stats.linregress(xs, ys)
    assert est.estimate == pytest.approx(ref.slope)
    assert est.df == 5 and est.n == 7
    half = stats.t.ppf(0.975, 5) * ref.stderr  # se(b) = s / sqrt(Sxx)
    assert (est.ci_low, est.ci_high) == pytest.approx((ref.slope - half, ref.slope + half))
    assert est.p_value == pytest.approx(ref.pvalue)
    assert verdict(est, "greater") == HOLDS and verdict(est, "less") == DOES_NOT_HOLD


def test_slope_by_hand_and_its_edge_cases() -> None:
    # y = 1 + 2x exactly: the slope is known, its interval has no width
    exact = slope([1, 2, 3], [3, 5, 7])
    assert (exact.estimate, exact.ci_low, exact.ci_high, exact.p_value) == (2.0, 2.0, 2.0, 0.0)
    # x̄ = 2, Sxx = 2, b = ((-1)(0) + (1)(2)) / 2 = 1 with the middle point 1 off the line:
    # residuals (1/3, -2/3, 1/3), s² = (2/3) / 1, se = sqrt(s² / Sxx) = sqrt(1/3)
    est = slope([1, 2, 3], [0, 0, 2])
    assert est.estimate == pytest.approx(1.0)
    assert est.ci_high - est.ci_low == pytest.approx(2 * 12.7062047 * math.sqrt(1 / 3))
    assert math.isnan(slope([1, 1, 1], [1, 2, 3]).ci_low)  # one x: no slope
    two = slope([1, 2], [1, 3])
    assert two.estimate == 2.0 and math.isnan(two.ci_low)  # no residual degrees of freedom
    assert slope([1, 2, 3, math.nan], [1, 2, 3, 4]).n == 3
    assert verdict(two, "greater") == INCONCLUSIVE


def test_ratio_deviation_by_hand() -> None:
    a, b = [1.5, 1.6, 1.7], [1.0, 1.0, 1.0]
    est = ratio_deviation(a, b, 1.6)  # q = (1.5/1.6 - 1, 0, 1.7/1.6 - 1) = (-1/16, 0, 1/16)
    assert est.estimate == pytest.approx(0.0, abs=1e-12)
    sd = math.sqrt((2 * (1 / 16) ** 2) / 2)
    half = 4.3026527 * sd / math.sqrt(3)  # t_{0.975,2}
    assert (est.ci_low, est.ci_high) == pytest.approx((-half, half))
    assert half == pytest.approx(0.1553, abs=1e-4)
    assert verdict(est, "equal", 0.2) == HOLDS and verdict(est, "equal", 0.1) == INCONCLUSIVE
    constant = ratio_deviation([2.0, 4.0], [1.0, 2.0], 1.6)  # both ratios 2: 25% above
    assert (constant.estimate, constant.ci_low, constant.ci_high) == pytest.approx(
        (0.25, 0.25, 0.25)
    )
    assert verdict(constant, "equal", 0.05) == DOES_NOT_HOLD
    assert verdict(constant, "greater") == HOLDS  # above the formula
    with pytest.raises(ValueError, match="non-zero"):
        ratio_deviation([1.0], [1.0], 0.0)
