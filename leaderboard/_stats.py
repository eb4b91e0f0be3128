"""Small-sample statistics over seeds: mean, std, t-intervals and Welch's t-test.

Pure Python (no scipy in the harness dependencies): the Student t distribution function comes
from the regularised incomplete beta function, evaluated with Lentz's continued fraction
(Numerical Recipes, 3rd ed., section 6.4), and its quantile from bisection on it.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Sequence
from dataclasses import dataclass


@dataclass(frozen=True)
class SeedStats:
    """Summary of one metric over seeds. ``std`` and the interval need at least two seeds."""

    n: int
    mean: float
    std: float | None
    ci_low: float | None
    ci_high: float | None


@dataclass(frozen=True)
class WelchResult:
    """Welch's unequal-variance t-test of ``a`` against ``b`` (two-sided)."""

    t: float
    df: float
    p_value: float


def _betacf(a: float, b: float, x: float) -> float:
    tiny = 1e-300
    qab, qap, qam = a + b, a + 1.0, a - 1.0
    c, d = 1.0, 1.0 - qab * x / qap
    d = 1.0 / (d if abs(d) > tiny else tiny)
    h = d
    for m in range(1, 400):
        m2 = 2 * m
        aa = m * (b - m) * x / ((qam + m2) * (a + m2))
        d = 1.0 + aa * d
        d = 1.0 / (d if abs(d) > tiny else tiny)
        c = 1.0 + aa / c
        c = c if abs(c) > tiny else tiny
        h *= d * c
        aa = -(a + m) * (qab + m) * x / ((a + m2) * (qap + m2))
        d = 1.0 + aa * d
        d = 1.0 / (d if abs(d) > tiny else tiny)
        c = 1.0 + aa / c
        c = c if abs(c) > tiny else tiny
        delta = d * c
        h *= delta
        if abs(delta - 1.0) < 1e-15:
            break
    return h


def betainc(a: float, b: float, x: float) -> float:
    """The regularised incomplete beta function I_x(a, b)."""
    if not 0.0 <= x <= 1.0:
        raise ValueError(f"x must lie in [0, 1], got {x}")
    if x in (0.0, 1.0):
        return x
    log_front = (
        math.lgamma(a + b) - math.lgamma(a) - math.lgamma(b) + a * math.log(x) + b * math.log1p(-x)
    )
    front = math.exp(log_front)
    # The continued fraction converges fast for x < (a+1)/(a+b+2); use symmetry otherwise.
    if x < (a + 1.0) / (a + b + 2.0):
        return front * _betacf(a, b, x) / a
    return 1.0 - front * _betacf(b, a, 1.0 - x) / b


def t_cdf(t: float, df: float) -> float:
    """P(T <= t) for Student's t with ``df`` degrees of freedom (df may be fractional)."""
    if df <= 0:
        raise ValueError(f"degrees of freedom must be positive, got {df}")
    if math.isinf(t):
        return 1.0 if t > 0 else 0.0
    tail = 0.5 * betainc(df / 2.0, 0.5, df / (df + t * t))
    return 1.0 - tail if t > 0 else tail


@functools.lru_cache(maxsize=1024)
def t_ppf(q: float, df: float) -> float:
    """The ``q`` quantile of Student's t (inverse of ``t_cdf``), by bisection (memoised: a
    table computes the same few quantiles thousands of times)."""
    if not 0.0 < q < 1.0:
        raise ValueError(f"quantile must lie in (0, 1), got {q}")
    if q == 0.5:
        return 0.0
    if q < 0.5:
        return -t_ppf(1.0 - q, df)
    lo, hi = 0.0, 1.0
    while t_cdf(hi, df) < q:
        hi *= 2.0
    for _ in range(200):
        mid = 0.5 * (lo + hi)
        if t_cdf(mid, df) < q:
            lo = mid
        else:
            hi = mid
        if hi - lo < 1e-13 * max(1.0, hi):
            break
    return 0.5 * (lo + hi)


def seed_stats(values: Sequence[float], confidence: float = 0.95) -> SeedStats:
    """Mean, sample standard deviation (n-1) and a two-sided t-interval of the mean."""
    n = len(values)
    if n == 0:
        raise ValueError("no values")
    mean = sum(values) / n  # plain sums: a handful of seeds needs no compensated summation
    if n < 2:
        return SeedStats(n=1, mean=mean, std=None, ci_low=None, ci_high=None)
    var = sum([(v - mean) ** 2 for v in values]) / (n - 1)
    std = math.sqrt(var)
    half = t_ppf(0.5 + confidence / 2.0, n - 1) * std / math.sqrt(n)
    return SeedStats(n=n, mean=mean, std=std, ci_low=mean - half, ci_high=mean + half)


def welch_t_test(a: Sequence[float], b: Sequence[float]) -> WelchResult | None:
    """Welch's t-test of mean(a) against mean(b); ``None`` when either has fewer than 2 values.

    When both samples have zero variance the test is degenerate: equal means give p = 1,
    different means p = 0.
    """
    if len(a) < 2 or len(b) < 2:
        return None
    return welch_from_stats(seed_stats(a), seed_stats(b))


def welch_from_stats(sa: SeedStats, sb: SeedStats) -> WelchResult | None:
    """``welch_t_test`` from precomputed summaries (``None`` unless both have a std)."""
    if sa.std is None or sb.std is None:
        return None
    va, vb = sa.std**2 / sa.n, sb.std**2 / sb.n
    diff = sa.mean - sb.mean
    if va + vb == 0.0:
        if diff == 0.0:
            return WelchResult(t=0.0, df=float(sa.n + sb.n - 2), p_value=1.0)
        return WelchResult(t=math.copysign(math.inf, diff), df=float(sa.n + sb.n - 2), p_value=0.0)
    t = diff / math.sqrt(va + vb)
    df = (va + vb) ** 2 / (va**2 / (sa.n - 1) + vb**2 / (sb.n - 1))
    p = 2.0 * (1.0 - t_cdf(abs(t), df))
    return WelchResult(t=t, df=df, p_value=min(1.0, max(0.0, p)))
