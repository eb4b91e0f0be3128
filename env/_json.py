"""The JSON type, for the tool schemas generated from the argument models (instead of
``Any``). Values parsed from outside (tool arguments, YAML, data regions) are ``object`` until
checked."""

from __future__ import annotations

from typing import TypeAlias

__all__ = ["JSON", "JSONObject"]

JSON: TypeAlias = dict[str, "JSON"] | list["JSON"] | str | int | float | bool | None
JSONObject: TypeAlias = dict[str, JSON]
