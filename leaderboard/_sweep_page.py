"""What the sweep page shows: a sweep's table for one metric (``leaderboard._sweeps``) and, per
swept key, that metric plotted against the key's values, with the default point as reference.

The statistics are ``sweep_table``'s; this module only arranges them. A 2-D grid plots one
series per value of the other key; values spanning at least a factor of 10 (learning rates)
get a log axis; values that are not numbers are placed evenly in the grid's order.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from ._plots import ErrorPoint, ErrorSeries, error_bar_plot
from ._records import RunRecord, SweepRecord, SweepValue
from ._sweeps import SweepRow, SweepTable, sweep_table
from ._views import NotFoundError, format_value

if TYPE_CHECKING:
    from ._store import Store

LOG_SPAN = 10.0  # positive values spanning this factor or more are plotted on a log axis


class UnknownMetricError(ValueError):
    """A metric the sweep's points do not report (the message names those they do)."""


@dataclass(frozen=True)
class SweepSummary:
    """A sweep as the task page lists it."""

    sweep: SweepRecord
    done: int  # points that have a result
    total: int

    def grid_text(self) -> str:
        """``learning_rate ∈ {0.001, 0.003} × warmup_iters ∈ {2, 4}``."""
        return " × ".join(
            f"{key} ∈ {{{', '.join(value_text(v) for v in values)}}}"
            for key, values in self.sweep.grid.items()
        )


def sweep_summaries(store: Store, task_id: str) -> list[SweepSummary]:
    """The task's sweeps, newest first, with how many of their points have a result."""
    return [
        SweepSummary(s, sum(p.run_id is not None for p in s.points), len(s.points))
        for s in store.list_sweeps(task_id)
    ]


@dataclass(frozen=True)
class SweepView:
    """One sweep's page: its table (``None`` while no point has a result) and a plot per key."""

    sweep: SweepRecord
    table: SweepTable | None
    plots: dict[str, str]

    @property
    def done(self) -> int:
        return sum(p.run_id is not None for p in self.sweep.points)

    def values_by_seed(self, row: SweepRow) -> dict[int, float]:
        """A row's values keyed by seed (a seed without an ok value is absent)."""
        return dict(zip(row.seeds, row.values, strict=True))


def sweep_view(
    store: Store, sweep_id: str, metric: str | None = None, *, plot_width: int = 600
) -> SweepView:
    """The page of sweep ``sweep_id`` for ``metric`` (default: the task's primary metric).

    Raises ``NotFoundError`` for an unknown sweep and ``UnknownMetricError`` for a metric its
    points do not report.
    """
    sweep = store.get_sweep(sweep_id)
    if sweep is None:
        raise NotFoundError(f"no sweep {sweep_id!r}")
    runs: dict[str, RunRecord] = store.sweep_runs(sweep)
    if metric is None and not runs:
        return SweepView(sweep, None, {})
    try:
        table = sweep_table(sweep, runs, metric)
    except KeyError as exc:
        raise UnknownMetricError(exc.args[0]) from exc
    plots = {key: key_plot(table, key, width=plot_width) for key in sweep.grid}
    return SweepView(sweep, table, plots)


def value_text(value: SweepValue) -> str:
    """A swept value as written on the command line (``0.001``, ``true``, ``cosine``)."""
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def _numeric(values: list[SweepValue]) -> bool:
    return all(isinstance(v, int | float) and not isinstance(v, bool) for v in values)


def key_plot(table: SweepTable, key: str, *, width: int = 600) -> str:
    """The SVG of ``table``'s metric against swept ``key``: per combination of the other keys'
    values one series of means with 95 % intervals, and the default as a dashed reference."""
    values = table.sweep.grid[key]
    numeric = _numeric(values)
    positive = numeric and all(float(v) > 0 for v in values)
    log_x = positive and max(map(float, values)) / min(map(float, values)) >= LOG_SPAN

    def position(v: SweepValue) -> float:
        return float(v) if numeric else float(values.index(v))

    others = [k for k in table.sweep.grid if k != key]
    series: dict[str, list[ErrorPoint]] = {}
    for row in table.rows:
        over = row.point.overrides
        if key not in over or over[key] not in values or row.stats is None:
            continue
        name = ", ".join(f"{k}={value_text(over[k])}" for k in others if k in over)
        series.setdefault(name or "mean ± 95 % CI", []).append(
            _error_point(row, position(over[key]))
        )
    default = table.rows[0]
    reference = None if default.stats is None else _error_point(default, 0.0)
    spec = table.metric
    arrow = "↓ lower is better" if spec.direction == "lower" else "↑ higher is better"
    return error_bar_plot(
        [ErrorSeries(name, points) for name, points in series.items()],
        title=f"{spec.name} ({spec.setting}) against {key}",
        x_label=key,
        y_label=f"{spec.name} ({arrow})",
        x_ticks=[(position(v), value_text(v)) for v in values],
        log_x=log_x,
        reference=reference,
        width=width,
    )


def _error_point(row: SweepRow, x: float) -> ErrorPoint:
    stats = row.stats
    assert stats is not None
    interval = (
        f" [{format_value(stats.ci_low)}, {format_value(stats.ci_high)}]"
        if stats.ci_low is not None
        else ""
    )
    seeds = f"{stats.n} seed{'s' if stats.n != 1 else ''}"
    return ErrorPoint(
        x=x,
        mean=stats.mean,
        low=stats.ci_low,
        high=stats.ci_high,
        label=f"{row.label()}: {format_value(stats.mean)}{interval} ({seeds})",
        index=row.point.index,
    )
