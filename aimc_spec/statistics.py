"""Statistics over seeds: mean, std, Student-t confidence intervals, Welch's and the paired
t-test on a difference of means, and the verdict a claim earns from them.

A study's claims are judged on a handful of seeds, so every interval uses Student's t
(not the normal 1.96, which at n = 3 is a third too narrow). scipy supplies the t
distribution; it is imported when first needed, so importing this module stays light.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

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


def verdict(diff: Difference, expect: Expect, margin: float = 0.0) -> str:
    """Judge the claim on d = mean(a) - mean(b) from its confidence interval [lo, hi]:

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
