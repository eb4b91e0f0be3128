"""The initial observation: what an agent reads before its first tool call.

Order (as MLS-Bench): the task text (``description.md`` with its slots filled), the numbered
editable file(s), each baseline's regions read-only, the jobs a test runs (what each does,
where the agent's code runs, its compute), and the agent's budget. Hidden jobs and hidden
metrics never appear: only visible jobs are passed to anything rendered here.
"""

from __future__ import annotations

import string
from collections.abc import Mapping, Sequence
from typing import Any

from env._baselines import Baseline
from env._errors import TaskSpecError
from env._regions import find_regions, format_range
from env._spec import BudgetSpec, TaskSpec
from env._workspace import Workspace
from sandbox import JobSpec, format_duration

__all__ = ["ObservationError", "jobs_table", "render_observation"]


class ObservationError(TaskSpecError):
    """A description template that names a slot (or a key of one) that does not exist."""


class _Slots(dict[str, Any]):
    """The template's slots; a missing one is an error that says which and what exists."""

    def __init__(self, what: str, values: Mapping[str, Any]) -> None:
        super().__init__(values)
        self.what = what

    def __missing__(self, key: str) -> Any:
        known = ", ".join(sorted(self)) or "none"
        raise ObservationError(f"description.md: unknown {self.what} {key!r} (known: {known})")


def jobs_table(task: TaskSpec, jobs: Sequence[JobSpec]) -> str:
    """A markdown table of the visible jobs of a test, in order, generated from the spec:
    what each does, whether the agent's code runs in it, its GPUs and time limit."""
    data = ", ".join(f"`{d.variable}`" for d in task.data_regions.values())
    rows = [
        "| Job | What it does | Your code | GPUs | Time limit |",
        "|---|---|---|---|---|",
    ]
    for job in jobs:
        if job.hidden:
            continue
        if job.code == "edited":
            yours = "runs here"
        elif job.workers is not None:
            yours = "runs only in separate sandboxed worker processes"
        else:
            yours = "does not run here"
        when = " (before the test is counted)" if job.stage == "preflight" else ""
        gpus = str(job.gpus) if job.gpus else "0 (CPU)"
        rows.append(
            f"| `{job.label}`{when} | {job.description or job.script} | {yours} | {gpus} "
            f"| {format_duration(job.time_limit_s)} |"
        )
    notes = [
        "Each job runs in its own sandbox (no network, unprivileged, only its own inputs); "
        "metrics come only from the trusted evaluation jobs, never from what your code prints."
    ]
    if data:
        notes.append(f"{data} is read as data (a Python literal) and never run.")
    return "\n".join(rows) + "\n\n" + " ".join(notes)


def render_observation(
    task: TaskSpec,
    workspace: Workspace,
    profile: str,
    budgets: BudgetSpec | None = None,
    baselines: Sequence[Baseline] = (),
) -> str:
    """The initial observation text for `task` at `profile` (see the module docstring).

    Raises `ObservationError` for a slot of ``description.md`` that does not exist.
    """
    budgets = budgets or task.budgets
    visible = task.visible_jobs(profile)
    template = task.description_template
    recipe = task.recipe(profile)
    lines = _region_lines(task, workspace)
    slots = _Slots(
        "slot",
        {
            "file": task.agent_path(task.editable_files[0].path),
            "lines": _Slots("region in {lines[…]}", lines),
            "max_steps": budgets.max_steps,
            "max_tests": budgets.max_tests,
            "profile": profile,
            "recipe": _Slots("recipe key in {recipe[…]}", recipe),
            "jobs_table": jobs_table(task, visible),
            "hardware": recipe.get("hardware", _hardware(visible)),
        },
    )
    try:
        description = template.format_map(slots).strip()
    except ObservationError:
        raise
    except (ValueError, IndexError, AttributeError) as e:
        raise ObservationError(f"description.md: not a valid template: {e}") from e
    used = {field for _, field, _, _ in string.Formatter().parse(template) if field}

    sections = [description]
    for entry in task.editable_files:
        sections.append(workspace.render_file(task.agent_path(entry.path)))
    if task.read_only_files:
        names = ", ".join(task.agent_path(p) for p in task.read_only_files)
        sections.append(f"Read-only context files (use view to read them): {names}")
    sections += [_render_baseline(task, workspace, b) for b in baselines]
    if "jobs_table" not in used:
        sections.append("## How a test runs\n\n" + jobs_table(task, visible))
    if "## Your budget" not in description:
        sections.append(_budget_text(budgets))
    return "\n\n".join(s.rstrip() for s in sections) + "\n"


def _region_lines(task: TaskSpec, workspace: Workspace) -> dict[str, str]:
    out: dict[str, str] = {}
    for entry in task.editable_files:
        for span in find_regions(workspace.text(entry.path).splitlines()):
            if span.name in entry.regions:
                out[span.name] = format_range(*span.body)
    return out


def _hardware(jobs: Sequence[JobSpec]) -> str:
    gpus = max((j.gpus for j in jobs), default=0)
    return f"{gpus} GPU{'s' if gpus != 1 else ''}" if gpus else "CPU"


def _render_baseline(task: TaskSpec, workspace: Workspace, baseline: Baseline) -> str:
    header = f"[READ-ONLY — reference implementation: {baseline.name}]"
    doc = baseline.doc.strip()
    if baseline.is_default:
        return f"{header}\n{doc}\n(This baseline is the unmodified code shown above.)"
    blocks = [f"{header}\n{doc}"]
    spans = _region_spans(task, workspace)
    for name, body in baseline.regions.items():
        filename, (first, last) = spans[name]
        numbered = [
            f"{n:>6}  {line}".rstrip() for n, line in enumerate(body.splitlines(), start=first)
        ]
        where = format_range(first, last)
        blocks.append(
            f"{filename} — region {name}, in place of lines {where}:\n" + "\n".join(numbered)
        )
    return "\n\n".join(blocks)


def _region_spans(task: TaskSpec, workspace: Workspace) -> dict[str, tuple[str, tuple[int, int]]]:
    out: dict[str, tuple[str, tuple[int, int]]] = {}
    for entry in task.editable_files:
        for span in find_regions(workspace.text(entry.path).splitlines()):
            out[span.name] = (task.agent_path(entry.path), span.body)
    return out


def _budget_text(budgets: BudgetSpec) -> str:
    return (
        "## Your budget\n\n"
        f"{budgets.max_steps} steps and {budgets.max_tests} tests. Every tool call except "
        "`submit` uses a step, including calls that return an error; `test` also uses a test. "
        "A test rejected before training (preflight: your code does not import, crashes in a "
        "few CPU steps, or breaks a rule) and a test lost to an infrastructure failure use no "
        "test. When you are done, call `submit(n)` to choose which test is your final result "
        "(after at least two tests, unless your test budget allows only one); if you run out "
        "of steps first, your latest completed test is submitted for you."
    )
