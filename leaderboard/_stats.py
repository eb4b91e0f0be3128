"""Small-sample statistics over seeds: mean, std, t-intervals and Welch's t-test.

The Student t distribution comes from ``scipy.stats``; the summaries themselves are a few
lines of arithmetic kept here so that every number on the leaderboard can be checked by hand.
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


def t_cdf(t: float, df: float) -> float:
    """P(T <= t) for Student's t with ``df`` degrees of freedom (df may be fractional)."""
    if df <= 0:
        raise ValueError(f"degrees of freedom must be positive, got {df}")
    from scipy import stats  # imported here: scipy.stats costs ~0.6 s, `runner --help` none

    return float(stats.t.cdf(t, df))


@functools.lru_cache(maxsize=1024)
def t_ppf(q: float, df: float) -> float:
    """The ``q`` quantile of Student's t (memoised: a table computes the same few quantiles
    thousands of times, and each scipy call costs tens of microseconds)."""
    if not 0.0 < q < 1.0:
        raise ValueError(f"quantile must lie in (0, 1), got {q}")
    from scipy import stats

    return float(stats.t.ppf(q, df))


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
    p = 2.0 * _t_sf(abs(t), df)
    return WelchResult(t=t, df=df, p_value=min(1.0, max(0.0, p)))


def _t_sf(t: float, df: float) -> float:
    """P(T > t), accurate in the far tail where ``1 - t_cdf`` loses every digit."""
    from scipy import stats

    return float(stats.t.sf(t, df))
