"""The initial observation: what an agent reads before its first tool call.

Order (as MLS-Bench): the task text (``description.md`` with its slots filled), the numbered
editable file(s), each baseline's regions read-only, the jobs a test runs (what each does,
where the agent's code runs, its compute), and the agent's budget, generated from the spec
(a description does not state it). The texts themselves are `env._texts`. Hidden jobs and hidden
metrics never appear: only visible jobs are passed to anything rendered here.
"""

from __future__ import annotations

import string
from collections.abc import Mapping, Sequence

from env import _texts as texts
from env._baselines import Baseline
from env._errors import TaskSpecError
from env._regions import find_regions
from env._spec import Budgets, TaskSpec
from env._workspace import Workspace
from sandbox import JobSpec

__all__ = ["ObservationError", "jobs_table", "render_observation"]


class ObservationError(TaskSpecError):
    """A description template that names a slot (or a key of one) that does not exist."""


class _Slots(dict[str, object]):
    """The template's slots; a missing one is an error that says which and what exists."""

    def __init__(self, what: str, values: Mapping[str, object]) -> None:
        super().__init__(values)
        self.what = what

    def __missing__(self, key: str) -> object:
        known = ", ".join(sorted(self)) or "none"
        raise ObservationError(f"description.md: unknown {self.what} {key!r} (known: {known})")


def jobs_table(task: TaskSpec, jobs: Sequence[JobSpec]) -> str:
    """A markdown table of the visible jobs of a test, generated from the spec."""
    return texts.jobs_table(jobs, [d.variable for d in task.data_regions.values()])


def render_observation(
    task: TaskSpec,
    workspace: Workspace,
    profile: str,
    budgets: Budgets | None = None,
    baselines: Sequence[Baseline] = (),
) -> str:
    """The initial observation text for `task` at `profile` (see the module docstring).

    Raises `ObservationError` for a slot of ``description.md`` that does not exist.
    """
    budgets = budgets or task.budgets
    visible = task.visible_jobs(profile)
    template = task.description_template
    recipe = task.recipe(profile)
    values: dict[str, object] = {
        "file": task.agent_path(task.editable_files[0].path),
        "lines": _Slots("region in {lines[…]}", _region_lines(task, workspace)),
        "max_steps": budgets.max_steps,
        "max_tests": budgets.max_tests,
        "profile": profile,
        "recipe": _Slots("recipe key in {recipe[…]}", recipe),
        "jobs_table": jobs_table(task, visible),
        "hardware": recipe.get("hardware", _hardware(visible)),
    }
    assert set(values) == set(texts.DESCRIPTION_SLOTS), "one list of slots: env._texts"
    try:
        description = template.format_map(_Slots("slot", values)).strip()
    except ObservationError:
        raise
    except (ValueError, IndexError, AttributeError) as e:
        raise ObservationError(f"description.md: not a valid template: {e}") from e
    used = {field for _, field, _, _ in string.Formatter().parse(template) if field}

    sections = [description]
    for entry in task.editable_files:
        sections.append(workspace.render_file(task.agent_path(entry.path)))
    if task.read_only_files:
        sections.append(texts.read_only_files([task.agent_path(p) for p in task.read_only_files]))
    sections += [_render_baseline(task, workspace, b) for b in baselines]
    if "jobs_table" not in used:
        sections.append(texts.jobs_section(jobs_table(task, visible)))
    preflight = [j for j in visible if j.stage == "preflight"]
    sections.append(texts.budget_section(budgets.max_steps, budgets.max_tests, preflight))
    return texts.first_observation(sections)


def _region_lines(task: TaskSpec, workspace: Workspace) -> dict[str, str]:
    out: dict[str, str] = {}
    for entry in task.editable_files:
        for span in find_regions(workspace.text(entry.path).splitlines()):
            if span.name in entry.regions:
                out[span.name] = texts.lines_phrase(*span.body)
    return out


def _hardware(jobs: Sequence[JobSpec]) -> str:
    return texts.hardware(max((j.gpus for j in jobs), default=0))


def _render_baseline(task: TaskSpec, workspace: Workspace, baseline: Baseline) -> str:
    header = texts.baseline_header(baseline.name, baseline.doc)
    if baseline.is_default:
        return f"{header}\n{texts.baseline_is_default()}"
    blocks = [header]
    spans = _region_spans(task, workspace)
    for name, body in baseline.regions.items():
        filename, (first, last) = spans[name]
        blocks.append(texts.baseline_region(filename, name, first, last, body))
    return "\n\n".join(blocks)


def _region_spans(task: TaskSpec, workspace: Workspace) -> dict[str, tuple[str, tuple[int, int]]]:
    out: dict[str, tuple[str, tuple[int, int]]] = {}
    for entry in task.editable_files:
        for span in find_regions(workspace.text(entry.path).splitlines()):
            out[span.name] = (task.agent_path(entry.path), span.body)
    return out
