"""The saved form of a workspace (inside ``session.json``): what the agent changed, and the undo
history. Only region bodies and created files are saved; everything frozen comes from the task.

The shape and every line are validated here; whether the state fits the task (same files, same
originals, known regions) is checked by `Workspace.load`. The JSON is the one format version 1
has always had, so a session written before this model existed resumes unchanged.
"""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field

from env._regions import line_problem

__all__ = ["STATE_VERSION", "FileState", "UndoEntry", "WorkspaceState"]

STATE_VERSION: Literal[1] = 1


def _allowed_line(line: str) -> str:
    if "\n" in line:
        raise ValueError("a line contains a newline")
    problem = line_problem(line)
    if problem:
        raise ValueError(f"a line is not allowed ({problem})")
    return line


Line = Annotated[str, AfterValidator(_allowed_line)]


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class FileState(_Model):
    """An editable codebase file: the sha256 of its original, the bodies of its open regions."""

    original_sha256: str
    regions: dict[str, list[Line]]


class UndoEntry(_Model):
    """One accepted edit, newest last: the file and what it held before (None: the edit
    created it; lines: a created file; region bodies: a codebase file)."""

    file: str
    created: bool
    before: dict[str, list[Line]] | list[Line] | None


class WorkspaceState(_Model):
    """Everything needed to rebuild a workspace over its task's original files."""

    schema_version: Literal[1] = STATE_VERSION
    task_id: str
    files: dict[str, FileState]
    created: dict[str, list[Line]] = Field(default_factory=dict)
    history: list[UndoEntry] = Field(default_factory=list)
