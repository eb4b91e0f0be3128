"""Learning-rate schedules of a task's baselines, evaluated from their own code.

The schedule plot in the docs and on the web page is drawn from what `get_lr` actually
returns, not from a re-typed formula. Baseline code is ours (shipped with the project and
checked by the same code policy as an agent's edit), so running it here, with only ``math`` in
scope, is safe; agent code is never run this way.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence

from env._baselines import Baseline
from env._errors import TaskSpecError
from env._regions import find_regions
from env._spec import TaskSpec

__all__ = ["ScheduleFn", "baseline_schedules", "sample_schedule"]

ScheduleFn = Callable[[int, int, int, float, float], float]


def _compile_get_lr(source: str, where: str) -> ScheduleFn:
    namespace: dict[str, object] = {
        "math": math,
        "__builtins__": {
            "max": max,
            "min": min,
            "int": int,
            "float": float,
            "abs": abs,
            "round": round,
        },
    }
    try:
        exec(compile(source, where, "exec"), namespace)
    except Exception as e:  # a broken baseline file is a task-definition error
        raise TaskSpecError(f"{where}: get_lr does not compile or run: {e}") from e
    fn = namespace.get("get_lr")
    if not callable(fn):
        raise TaskSpecError(f"{where}: defines no get_lr")
    return fn


def _default_get_lr_source(task: TaskSpec) -> str:
    for entry in task.editable_files:
        lines = (task.codebase_dir / entry.path).read_text(encoding="utf-8").splitlines()
        for span in find_regions(lines):
            if span.name == "get_lr":
                first, last = span.body
                return "\n".join(lines[first - 1 : last])
    raise TaskSpecError(f"task {task.id}: the codebase has no get_lr region")


def baseline_schedules(task: TaskSpec, baselines: Sequence[Baseline]) -> dict[str, ScheduleFn]:
    """``get_lr`` of each baseline (the codebase's own for a baseline that opens no region).

    Empty for a task that does not open the ``get_lr`` region: its baselines share one schedule.
    """
    if not any("get_lr" in entry.regions for entry in task.editable_files):
        return {}
    default = _default_get_lr_source(task)
    out: dict[str, ScheduleFn] = {}
    for baseline in baselines:
        source = baseline.regions.get("get_lr", default if baseline.is_default else None)
        if source is None:
            continue  # this baseline does not change the schedule
        out[baseline.name] = _compile_get_lr(source, f"<baseline {task.id}/{baseline.name}>")
    return out


def sample_schedule(
    fn: ScheduleFn,
    *,
    max_iters: int,
    warmup_iters: int,
    learning_rate: float,
    min_lr: float,
    points: int = 400,
) -> list[tuple[float, float]]:
    """(iteration, learning rate) pairs covering ``0..max_iters`` (``lr_decay_iters = max_iters``)."""
    stride = max(1, max_iters // points)
    its = sorted({*range(0, max_iters + 1, stride), warmup_iters, max_iters})
    return [
        (float(it), float(fn(it, warmup_iters, max_iters, learning_rate, min_lr))) for it in its
    ]
