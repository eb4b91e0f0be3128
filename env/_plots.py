"""Plots a task declares (``plots:`` in task.yaml), evaluated from each baseline's own code.

A plot sweeps one parameter of a function defined in an open region (the learning-rate task:
``get_lr`` against the iteration), so the plot in the docs and on the web page is drawn from
what the code returns, not from a re-typed formula. Baseline code is ours (shipped with the
project and checked by the same code policy as an agent's edit), so running it here, with only
``math`` in scope, is safe; agent code is never run this way.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

from env._baselines import Baseline
from env._errors import TaskSpecError
from env._spec import PlotSpec, TaskSpec, defines_function

__all__ = ["PlotSeries", "plot_series"]

_BUILTINS = {"max": max, "min": min, "int": int, "float": float, "abs": abs, "round": round}


class _Function(Protocol):
    """A plotted region function, called with keyword arguments only."""

    def __call__(self, **kwargs: object) -> float: ...


@dataclass(frozen=True)
class PlotSeries:
    """One curve: a baseline's name and its (x, y) points."""

    name: str
    points: list[tuple[float, float]]


def _compile(source: str, function: str, where: str) -> _Function:
    namespace: dict[str, object] = {"math": math, "__builtins__": dict(_BUILTINS)}
    try:
        exec(compile(source, where, "exec"), namespace)
    except Exception as e:  # a broken baseline file is a task-definition error
        raise TaskSpecError(f"{where}: {function} does not compile or run: {e}") from e
    fn = namespace.get(function)
    if not callable(fn):
        raise TaskSpecError(f"{where}: defines no {function}")
    return fn


def _sources(task: TaskSpec, plot: PlotSpec, baselines: Sequence[Baseline]) -> dict[str, str]:
    """Baseline name → the region text defining the plotted function; a baseline that leaves
    that region alone but changes others draws no curve (it shares the default's)."""
    found = task.open_region_defining(plot.function)
    if found is None:
        raise TaskSpecError(f"task {task.id}: no open region defines {plot.function}")
    region, default = found
    out: dict[str, str] = {}
    for baseline in baselines:
        source = baseline.regions.get(region, default if baseline.is_default else None)
        if source is not None and defines_function(source, plot.function):
            out[baseline.name] = source
    return out


def _sample(
    fn: _Function, plot: PlotSpec, recipe: dict[str, str | int | float | bool]
) -> list[tuple[float, float]]:
    """(x, y) over ``0..recipe[x_range]``: 400 steps, plus every integer argument in range (the
    warmup's end of a schedule), so that corners are drawn where they are."""
    end = int(recipe[plot.x_range])
    args = {param: recipe[key] for param, key in plot.args.items()}
    corners = {int(v) for v in args.values() if isinstance(v, int) and 0 <= v <= end}
    xs = sorted({*range(0, end + 1, max(1, end // 400)), *corners, end})
    return [(float(x), float(fn(**{plot.x: x}, **args))) for x in xs]


def plot_series(
    task: TaskSpec, plot_name: str | None, profile: str, baselines: Sequence[Baseline]
) -> list[PlotSeries]:
    """The curves of the task's plot ``plot_name`` (its first when None) at a profile's recipe,
    one per baseline whose code defines the plotted function; empty when none does."""
    plot = task.plot(plot_name)
    recipe = task.recipe(profile)
    return [
        PlotSeries(
            name,
            _sample(_compile(source, plot.function, f"<baseline {task.id}/{name}>"), plot, recipe),
        )
        for name, source in _sources(task, plot, baselines).items()
    ]
