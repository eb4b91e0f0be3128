"""A sweep's table: per grid point, one metric's mean ± 95 % interval over seeds and its delta
against the default point, with a paired t-test over the seeds both share.

Every point runs the same seeds, so a point and the default are paired by seed: the same data
order and initialisation, which removes the seed-to-seed variance a Welch test would carry
(docs/VALIDITY.md: pairing shrinks σ of near-identical methods from 0.18 to 0.013). With
fewer than two shared seeds there is no test, only the delta.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal

from ._records import MetricInfo, RunRecord, SweepPoint, SweepRecord, encode_number
from ._scoring import SIGNIFICANCE_LEVEL, goodness, primary_spec
from ._stats import SeedStats, seed_stats

PointStatus = Literal["ok", "failed", "infra_error", "incomplete", "pending"]


@dataclass(frozen=True)
class PairedTest:
    """A two-sided paired t-test of a point against the default over their shared seeds."""

    n: int
    mean_diff: float
    p_value: float


@dataclass(frozen=True)
class SweepRow:
    """One grid point: its values per seed (the sweep's seed order), their summary, and the
    comparison with the default point (``None`` for the default itself or without values)."""

    point: SweepPoint
    status: PointStatus
    seeds: list[int]
    values: list[float]
    stats: SeedStats | None
    delta: float | None
    test: PairedTest | None
    #: the delta is significant at SIGNIFICANCE_LEVEL and in the metric's good direction
    better: bool | None

    @property
    def significant(self) -> bool | None:
        return None if self.test is None else self.test.p_value < SIGNIFICANCE_LEVEL

    def label(self) -> str:
        """``default`` or ``key=value, …``."""
        if not self.point.overrides:
            return "default"
        return ", ".join(f"{k}={v}" for k, v in self.point.overrides.items())


@dataclass(frozen=True)
class SweepTable:
    sweep: SweepRecord
    metric: MetricInfo
    metrics: list[MetricInfo]  # every metric the points report, for choosing another
    rows: list[SweepRow]

    def to_json(self) -> dict[str, Any]:
        """The table as JSON-safe data (non-finite numbers spelled as strings)."""

        def num(x: float | None) -> float | str | None:
            return encode_number(x)

        return {
            "sweep_id": self.sweep.sweep_id,
            "task_id": self.sweep.task_id,
            "label": self.sweep.label,
            "profile": self.sweep.profile,
            "grid": self.sweep.grid,
            "seeds": self.sweep.seeds,
            "metric": self.metric.key,
            "direction": self.metric.direction,
            "significance_level": SIGNIFICANCE_LEVEL,
            "test": "paired t-test over shared seeds, two-sided",
            "points": [
                {
                    "index": r.point.index,
                    "overrides": r.point.overrides,
                    "label": r.label(),
                    "run_id": r.point.run_id,
                    "status": r.status,
                    "seeds": r.seeds,
                    "values": [num(v) for v in r.values],
                    "mean": num(r.stats.mean) if r.stats else None,
                    "ci95": (
                        [num(r.stats.ci_low), num(r.stats.ci_high)]
                        if r.stats and r.stats.ci_low is not None
                        else None
                    ),
                    "delta": num(r.delta),
                    "p_value": num(r.test.p_value) if r.test else None,
                    "significant": r.significant,
                    "better": r.better,
                }
                for r in self.rows
            ],
        }


def sweep_metrics(runs: Mapping[str, RunRecord]) -> list[MetricInfo]:
    """The metrics the sweep's runs report, in the first run's order."""
    seen: dict[str, MetricInfo] = {}
    for run in runs.values():
        for spec in run.metric_specs:
            seen.setdefault(spec.key, spec)
    return list(seen.values())


def sweep_table(
    sweep: SweepRecord, runs: Mapping[str, RunRecord], metric_key: str | None = None
) -> SweepTable:
    """The table of ``sweep`` over ``runs`` (run id → record, e.g. `Store.sweep_runs`).

    ``metric_key`` defaults to the task's primary metric; an unknown key raises ``KeyError``
    naming the known ones.
    """
    metrics = sweep_metrics(runs)
    if metric_key is None:
        metric = primary_spec(metrics) or (metrics[0] if metrics else None)
    else:
        metric = next((m for m in metrics if m.key == metric_key), None)
    if metric is None:
        known = ", ".join(m.key for m in metrics) or "none yet"
        raise KeyError(f"no metric {metric_key!r} in sweep {sweep.sweep_id} (metrics: {known})")
    per_point = [_values(sweep, p, runs, metric) for p in sweep.points]
    default_values = dict(zip(per_point[0][1], per_point[0][2], strict=True))
    default_stats = seed_stats(list(default_values.values())) if default_values else None
    rows = []
    for point, (status, seeds, values) in zip(sweep.points, per_point, strict=True):
        stats = seed_stats(values) if values else None
        delta = test = better = None
        if point.index != 0 and stats is not None and default_stats is not None:
            delta = stats.mean - default_stats.mean
            shared = [s for s in seeds if s in default_values]
            mine = dict(zip(seeds, values, strict=True))
            test = paired_t_test([mine[s] for s in shared], [default_values[s] for s in shared])
            if test is not None and test.p_value < SIGNIFICANCE_LEVEL:
                better = goodness(delta, metric.direction) > 0
        rows.append(SweepRow(point, status, seeds, values, stats, delta, test, better))
    return SweepTable(sweep=sweep, metric=metric, metrics=metrics, rows=rows)


def paired_t_test(a: list[float], b: list[float]) -> PairedTest | None:
    """Two-sided paired t-test of ``a`` against ``b`` (same length, paired by position);
    ``None`` below two pairs. Identical differences (zero variance) give p = 1 when they are
    all zero, else p = 0."""
    n = len(a)
    if n < 2 or len(b) != n:
        return None
    diffs = [x - y for x, y in zip(a, b, strict=True)]
    mean = sum(diffs) / n
    if any(not math.isfinite(d) for d in diffs):
        return None
    var = sum((d - mean) ** 2 for d in diffs) / (n - 1)
    if var == 0.0:
        return PairedTest(n=n, mean_diff=mean, p_value=1.0 if mean == 0.0 else 0.0)
    from scipy import stats

    p = float(stats.ttest_rel(a, b).pvalue)
    return PairedTest(n=n, mean_diff=mean, p_value=min(1.0, max(0.0, p)))


def _values(
    sweep: SweepRecord, point: SweepPoint, runs: Mapping[str, RunRecord], metric: MetricInfo
) -> tuple[PointStatus, list[int], list[float]]:
    """A point's status and its ok values of ``metric`` per seed, in the sweep's seed order."""
    run = runs.get(point.run_id) if point.run_id else None
    if run is None:
        return "pending", [], []
    by_seed = {
        r.seed: r.metrics.get(metric.key)
        for r in run.result_rows()
        if r.status == "ok" and r.setting == metric.setting
    }
    seeds = [s for s in sweep.seeds if isinstance(by_seed.get(s), int | float)]
    values = [float(by_seed[s]) for s in seeds]  # type: ignore[arg-type]
    return run.result_status(), seeds, values
