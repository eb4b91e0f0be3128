"""Baselines as data: ``baselines/<task-id>/<name>.py`` files of region replacements.

A baseline file has a module docstring (the formula and a reference) and region blocks with the
same markers as the codebase. A file without region blocks is "the unmodified default".

A `Baseline` is data. `baseline_edits` turns it into the ``edit`` tool calls that put its regions
into the current file texts; whoever drives the session (the runner's baseline agent) issues them
through the same ``edit`` tool path an agent uses, so they pass the same frozen-text, invariant
and policy checks and are charged the same steps.
"""

from __future__ import annotations

import ast
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, NamedTuple

from env._errors import TaskSpecError
from env._paths import baselines_dir
from env._regions import MarkerSpan, RegionSyntaxError, find_regions

if TYPE_CHECKING:
    from env._spec import TaskSpec

__all__ = ["Baseline", "BaselineEdit", "BaselineError", "baseline_edits", "load_baselines"]


class BaselineError(RuntimeError):
    """A baseline that cannot be applied (a region is missing, or its edit was refused)."""


@dataclass(frozen=True)
class Baseline:
    """One baseline method: its name, docstring, and region bodies (region name → text)."""

    name: str
    doc: str
    regions: dict[str, str] = field(default_factory=dict)
    path: Path | None = None

    @property
    def is_default(self) -> bool:
        """True when the baseline is the unmodified codebase."""
        return not self.regions


class BaselineEdit(NamedTuple):
    """One ``edit`` tool call of a baseline: the region it fills and the tool's arguments."""

    region: str
    arguments: dict[str, object]


def baseline_edits(
    baseline: Baseline, task: TaskSpec, files: Mapping[str, str]
) -> list[BaselineEdit]:
    """The ``edit`` tool arguments that put `baseline`'s regions into ``files``.

    ``files`` maps codebase-relative paths to their current text (the workspace's editable
    files). The edits come bottom-most region first, so each edit leaves the line numbers of the
    regions still to come valid. An empty region has nothing to replace: its body is inserted
    after its START marker. Raises `BaselineError` when a region is in none of the files.
    """
    located: list[tuple[str, MarkerSpan]] = []
    for entry in task.editable_files:
        text = files.get(entry.path)
        if text is None:
            continue
        filename = task.agent_path(entry.path)
        located += [
            (filename, span)
            for span in find_regions(text.splitlines())
            if span.name in baseline.regions
        ]
    missing = set(baseline.regions) - {span.name for _, span in located}
    if missing:
        raise BaselineError(
            f"baseline {baseline.name!r}: regions {sorted(missing)} are not in the workspace"
        )
    located.sort(key=lambda item: item[1].start_marker, reverse=True)
    return [
        BaselineEdit(span.name, _edit_arguments(filename, span, baseline.regions[span.name]))
        for filename, span in located
    ]


def _edit_arguments(filename: str, span: MarkerSpan, body: str) -> dict[str, object]:
    first, last = span.body
    if last >= first:
        return {
            "op": "replace",
            "filename": filename,
            "content": body,
            "start_line": first,
            "end_line": last,
        }
    return {"op": "insert", "filename": filename, "content": body, "after_line": span.start_marker}


def load_baselines(task: TaskSpec, root: Path | None = None) -> list[Baseline]:
    """The task's baselines, in ``task.baselines`` order, from ``<root>/<task-id>/<name>.py``.

    Raises `TaskSpecError` for a missing file, a missing docstring, malformed region markers or
    a region the task does not open.
    """
    folder = (root or baselines_dir()) / task.id
    open_regions = {name for f in task.editable_files for name in f.regions}
    out: list[Baseline] = []
    for name in task.baselines:
        path = folder / f"{name}.py"
        if not path.is_file():
            raise TaskSpecError(f"task {task.id}: baseline {name!r} has no file {path}")
        out.append(parse_baseline(name, path.read_text(encoding="utf-8"), open_regions, path))
    return out


def parse_baseline(
    name: str, text: str, open_regions: set[str], path: Path | None = None
) -> Baseline:
    """Parse one baseline file's text (see the module docstring for the format)."""
    where = str(path or name)
    try:
        doc = ast.get_docstring(ast.parse(text), clean=True)
    except SyntaxError as e:
        raise TaskSpecError(f"{where}: not valid Python: {e}") from e
    if not doc:
        raise TaskSpecError(f"{where}: a baseline needs a module docstring (formula + reference)")
    lines = text.splitlines()
    try:
        spans = find_regions(lines)
    except RegionSyntaxError as e:
        raise TaskSpecError(f"{where}: {e}") from e
    regions: dict[str, str] = {}
    for span in spans:
        if span.name not in open_regions:
            raise TaskSpecError(
                f"{where}: region {span.name!r} is not an editable region of the task "
                f"(open: {', '.join(sorted(open_regions)) or 'none'})"
            )
        first, last = span.body
        regions[span.name] = "\n".join(lines[first - 1 : last])
    return Baseline(name=name, doc=doc, regions=regions, path=path)
