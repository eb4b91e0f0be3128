"""Baselines as data: ``baselines/<task-id>/<name>.py`` files of region replacements.

A baseline file has a module docstring (the formula and a reference) and region blocks with the
same markers as the codebase. A file without region blocks is "the unmodified default". A
baseline is applied through the same ``edit`` tool path an agent uses, so it passes the same
frozen-text, invariant and policy checks and is charged the same steps.
"""

from __future__ import annotations

import ast
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from env._errors import TaskSpecError
from env._paths import baselines_dir
from env._regions import MarkerSpan, RegionSyntaxError, find_regions

if TYPE_CHECKING:
    from env._session import Session
    from env._spec import TaskSpec

__all__ = ["Baseline", "BaselineError", "load_baselines"]


class BaselineError(RuntimeError):
    """A baseline that cannot be applied (its edit was refused); names baseline and region."""


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

    def apply(self, session: Session) -> list[str]:
        """Put the regions into `session`'s workspace through ``session.call("edit", …)``.

        Regions are edited bottom-most first so that earlier line numbers stay valid. Returns
        the edit observations; raises `BaselineError` if an edit is refused.
        """
        texts: list[str] = []
        pending = dict(self.regions)
        while pending:
            filename, span = _bottom_most(session, set(pending))
            body = pending.pop(span.name)
            first, last = span.body
            if last >= first:
                args: dict[str, object] = {
                    "op": "replace",
                    "filename": filename,
                    "content": body,
                    "start_line": first,
                    "end_line": last,
                }
            else:  # an empty region: nothing to replace, insert after its START marker
                args = {
                    "op": "insert",
                    "filename": filename,
                    "content": body,
                    "after_line": span.start_marker,
                }
            result = session.call("edit", args)
            if not result.ok:
                raise BaselineError(
                    f"baseline {self.name!r}: the edit of region {span.name!r} in {filename} was "
                    f"refused:\n{result.text}"
                )
            texts.append(result.text)
        return texts


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


def _bottom_most(session: Session, names: set[str]) -> tuple[str, MarkerSpan]:
    """The agent-visible filename and the current span of the lowest of `names` in any file."""
    best: tuple[str, MarkerSpan] | None = None
    for entry in session.task.editable_files:
        filename = session.task.agent_path(entry.path)
        text = session.workspace.text(entry.path)
        for span in find_regions(text.splitlines()):
            if span.name in names and (best is None or span.start_marker > best[1].start_marker):
                best = (filename, span)
    if best is None:
        raise BaselineError(f"regions {sorted(names)} are not in the workspace")
    return best
