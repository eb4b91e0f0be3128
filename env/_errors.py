"""Exceptions of the env package.

An agent mistake is an `EditError`: its `str()` is the complete ``ERROR: …`` observation text
that goes back to the agent. A broken task folder is a `TaskSpecError`. An `IntegrityError`
means the workspace no longer matches its own guarantees (frozen text changed, state file
tampered with) and is never the agent's fault to read about — it fails the run.
"""

from __future__ import annotations

__all__ = ["EditError", "IntegrityError", "TaskSpecError"]


class EditError(Exception):
    """An agent mistake in a view/edit/undo call; ``str(err)`` is the full ``ERROR: …`` text."""

    def __init__(self, text: str) -> None:
        if not text.startswith("ERROR:"):
            text = f"ERROR: {text}"
        super().__init__(text)
        self.text = text

    def __str__(self) -> str:
        return self.text


class TaskSpecError(ValueError):
    """A task folder that cannot be loaded; the message names the file and the field."""


class IntegrityError(RuntimeError):
    """A workspace whose frozen text, invariants or saved state fail verification."""
