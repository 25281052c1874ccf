"""Statistics over seeds: mean, std, Student-t confidence intervals, Welch's and the paired
t-test on a difference of means, the least-squares slope of a trend, the ratio of paired
values against a formula, and the verdict a claim earns from any of their intervals.

A study's claims are judged on a handful of seeds, so every interval uses Student's t
(not the normal 1.96, which at n = 3 is a third too narrow). scipy supplies the t
distribution; it is imported when first needed, so importing this module stays light.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal, Protocol

CONFIDENCE = 0.95
Expect = Literal["greater", "less", "equal"]
HOLDS, DOES_NOT_HOLD, INCONCLUSIVE = "holds", "does not hold", "inconclusive"


def t_quantile(p: float, df: float) -> float:
    """The p-quantile of Student's t with `df` degrees of freedom (t_{0.975,4} = 2.776)."""
    from scipy.stats import t

    return float(t.ppf(p, df))


def _t_two_sided_p(t_value: float, df: float) -> float:
    from scipy.stats import t

    return float(2 * t.sf(abs(t_value), df))


@dataclass(frozen=True)
class Summary:
    """n values summarised: mean, sample std (ddof = 1) and the two-sided confidence
    interval mean ± t_{(1+c)/2, n-1} s / sqrt(n). Undefined parts are nan (n < 2)."""

    n: int
    mean: float
    std: float
    ci_low: float
    ci_high: float

    @property
    def half_width(self) -> float:
        return (self.ci_high - self.ci_low) / 2


def summarise(values: Sequence[float], confidence: float = CONFIDENCE) -> Summary:
    """Mean, std and confidence interval of the finite values (a diverged run's nan is not
    a measurement of the group; callers count failures separately)."""
    xs = [float(v) for v in values if v is not None and math.isfinite(float(v))]
    n = len(xs)
    if n == 0:
        return Summary(0, math.nan, math.nan, math.nan, math.nan)
    mean = math.fsum(xs) / n
    if n == 1:
        return Summary(1, mean, math.nan, math.nan, math.nan)
    std = math.sqrt(math.fsum((x - mean) ** 2 for x in xs) / (n - 1))
    half = t_quantile((1 + confidence) / 2, n - 1) * std / math.sqrt(n)
    return Summary(n, mean, std, mean - half, mean + half)


@dataclass(frozen=True)
class Difference:
    """mean(a) - mean(b) with its confidence interval, t statistic, degrees of freedom and
    two-sided p-value, from Welch's test or the paired test (`test`)."""

    test: Literal["welch", "paired"]
    a: Summary
    b: Summary
    estimate: float
    ci_low: float
    ci_high: float
    t: float
    df: float
    p_value: float


def welch(a: Sequence[float], b: Sequence[float], confidence: float = CONFIDENCE) -> Difference:
    """Welch's unequal-variance t-test: se² = s_a²/n_a + s_b²/n_b and the
    Welch-Satterthwaite df = se⁴ / ((s_a²/n_a)²/(n_a-1) + (s_b²/n_b)²/(n_b-1))."""
    sa, sb = summarise(a, confidence), summarise(b, confidence)
    estimate = sa.mean - sb.mean
    if sa.n < 2 or sb.n < 2:
        return Difference("welch", sa, sb, estimate, math.nan, math.nan, math.nan, math.nan, 1.0)
    va, vb = sa.std**2 / sa.n, sb.std**2 / sb.n
    se = math.sqrt(va + vb)
    if se == 0:  # both groups constant: the difference is known exactly
        return _exact("welch", sa, sb, estimate, sa.n + sb.n - 2)
    df = (va + vb) ** 2 / (va**2 / (sa.n - 1) + vb**2 / (sb.n - 1))
    return _from_se("welch", sa, sb, estimate, se, df, confidence)


def paired(a: Sequence[float], b: Sequence[float], confidence: float = CONFIDENCE) -> Difference:
    """The paired t-test on the differences a_i - b_i (the same seed in both groups, so
    what the seed decides, initial weights and data order, cancels): df = n - 1."""
    if len(a) != len(b):
        raise ValueError(f"paired test needs equal lengths, got {len(a)} and {len(b)}")
    pairs = [(float(x), float(y)) for x, y in zip(a, b, strict=True) if math.isfinite(x + y)]
    sa = summarise([x for x, _ in pairs], confidence)
    sb = summarise([y for _, y in pairs], confidence)
    d = summarise([x - y for x, y in pairs], confidence)
    if d.n < 2:
        return Difference("paired", sa, sb, d.mean, math.nan, math.nan, math.nan, math.nan, 1.0)
    if d.std == 0:
        return _exact("paired", sa, sb, d.mean, d.n - 1)
    return _from_se("paired", sa, sb, d.mean, d.std / math.sqrt(d.n), d.n - 1, confidence)


def _from_se(
    test: Literal["welch", "paired"],
    sa: Summary,
    sb: Summary,
    estimate: float,
    se: float,
    df: float,
    confidence: float,
) -> Difference:
    half = t_quantile((1 + confidence) / 2, df) * se
    t_value = estimate / se
    p = _t_two_sided_p(t_value, df)
    return Difference(test, sa, sb, estimate, estimate - half, estimate + half, t_value, df, p)


def _exact(
    test: Literal["welch", "paired"], sa: Summary, sb: Summary, estimate: float, df: float
) -> Difference:
    t_value = math.copysign(math.inf, estimate) if estimate else 0.0
    p = 0.0 if estimate else 1.0
    return Difference(test, sa, sb, estimate, estimate, estimate, t_value, df, p)


@dataclass(frozen=True)
class Estimate:
    """One estimated quantity (a slope, a relative deviation from a formula) with its
    two-sided confidence interval, t statistic against 0, degrees of freedom, p-value and
    the number of observations it rests on."""

    test: str
    n: int
    estimate: float
    ci_low: float
    ci_high: float
    t: float
    df: float
    p_value: float


def _undefined(test: str, n: int, estimate: float = math.nan) -> Estimate:
    return Estimate(test, n, estimate, math.nan, math.nan, math.nan, math.nan, 1.0)


def slope(xs: Sequence[float], ys: Sequence[float], confidence: float = CONFIDENCE) -> Estimate:
    """The least-squares slope b of y = a + b x with its Student-t interval: with
    Sxx = sum (x - x̄)², b = sum (x - x̄)(y - ȳ) / Sxx, residual variance s² = sum r² / (n - 2)
    and se(b) = s / sqrt(Sxx), df = n - 2. Pairs with a non-finite value are dropped; fewer
    than three points or a single x leave the interval undefined."""
    pairs = [(float(x), float(y)) for x, y in zip(xs, ys, strict=True) if math.isfinite(x + y)]
    n = len(pairs)
    if n < 2:
        return _undefined("slope", n)
    mx = math.fsum(x for x, _ in pairs) / n
    my = math.fsum(y for _, y in pairs) / n
    sxx = math.fsum((x - mx) ** 2 for x, _ in pairs)
    if sxx == 0:
        return _undefined("slope", n)
    b = math.fsum((x - mx) * (y - my) for x, y in pairs) / sxx
    if n < 3:
        return _undefined("slope", n, b)
    residual = math.fsum((y - my - b * (x - mx)) ** 2 for x, y in pairs)
    df = n - 2
    se = math.sqrt(residual / df / sxx)
    if se == 0:  # the points lie on a line: the slope is known exactly
        t_value = math.copysign(math.inf, b) if b else 0.0
        return Estimate("slope", n, b, b, b, t_value, df, 0.0 if b else 1.0)
    half = t_quantile((1 + confidence) / 2, df) * se
    p = _t_two_sided_p(b / se, df)
    return Estimate("slope", n, b, b - half, b + half, b / se, df, p)


def ratio_deviation(
    a: Sequence[float], b: Sequence[float], expected: float, confidence: float = CONFIDENCE
) -> Estimate:
    """How far the paired ratios a_i / b_i lie from an expected ratio, relatively: the mean of
    q_i = (a_i / b_i) / expected - 1 with its Student-t interval (df = n - 1). 0 means the
    ratio is as the formula says; 0.05 means 5% above it."""
    if len(a) != len(b):
        raise ValueError(f"paired ratios need equal lengths, got {len(a)} and {len(b)}")
    if not math.isfinite(expected) or expected == 0:
        raise ValueError(f"the expected ratio must be finite and non-zero, got {expected}")
    qs = [float(x) / float(y) / expected - 1 for x, y in zip(a, b, strict=True) if y != 0]
    s = summarise(qs, confidence)
    if s.n < 2:
        return _undefined("ratio", s.n, s.mean)
    if s.std == 0:
        t_value = math.copysign(math.inf, s.mean) if s.mean else 0.0
        return Estimate("ratio", s.n, s.mean, s.mean, s.mean, t_value, s.n - 1, float(s.mean == 0))
    se = s.std / math.sqrt(s.n)
    p = _t_two_sided_p(s.mean / se, s.n - 1)
    return Estimate("ratio", s.n, s.mean, s.ci_low, s.ci_high, s.mean / se, s.n - 1, p)


class Interval(Protocol):
    """What a verdict is drawn from: a two-sided confidence interval."""

    @property
    def ci_low(self) -> float: ...

    @property
    def ci_high(self) -> float: ...


def verdict(diff: Interval, expect: Expect, margin: float = 0.0) -> str:
    """Judge the claim on an estimate d (a difference of means, a slope, a relative
    deviation) from its confidence interval [lo, hi]:

    - greater: d > margin. holds if lo > margin; does not hold if hi < margin.
    - less:    d < margin. holds if hi < margin; does not hold if lo > margin.
    - equal:   |d| < margin. holds if the interval lies inside (-margin, margin); does not
      hold if it lies wholly outside it.
    Anything else (the interval straddles the line, or too few seeds for an interval) is
    inconclusive. A negative margin with `greater` says "a at most |margin| below b".
    """
    lo, hi = diff.ci_low, diff.ci_high
    if math.isnan(lo) or math.isnan(hi):
        return INCONCLUSIVE
    if expect == "greater":
        return HOLDS if lo > margin else DOES_NOT_HOLD if hi < margin else INCONCLUSIVE
    if expect == "less":
        return HOLDS if hi < margin else DOES_NOT_HOLD if lo > margin else INCONCLUSIVE
    if -margin < lo and hi < margin:
        return HOLDS
    return DOES_NOT_HOLD if lo > margin or hi < -margin else INCONCLUSIVE
