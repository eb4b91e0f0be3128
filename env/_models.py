"""The pydantic base and field types shared by the task specification's models."""

from __future__ import annotations

from typing import Annotated

from pydantic import AfterValidator, BaseModel, ConfigDict

__all__ = ["NAME", "RelPath", "SpecModel"]

NAME = r"^[A-Za-z_][A-Za-z0-9_]*$"


def _check_relative_path(value: str) -> str:
    parts = value.split("/")
    if (
        not value
        or value.startswith("/")
        or any(part in ("", ".", "..") for part in parts)
        or not all(ch.isascii() and (ch.isalnum() or ch in "_.-/") for ch in value)
    ):
        raise ValueError(f"{value!r} is not a plain relative path (letters, digits, _ . - /)")
    return value


RelPath = Annotated[str, AfterValidator(_check_relative_path)]


class SpecModel(BaseModel):
    """A part of a task specification: unknown keys are errors, not silently ignored."""

    model_config = ConfigDict(extra="forbid")
