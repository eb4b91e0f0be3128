"""The JSON type: what a tool call's arguments, a tool schema, a YAML document or a data
region holds once parsed (instead of ``Any``)."""

from __future__ import annotations

from typing import TypeAlias

__all__ = ["JSON", "JSONObject"]

JSON: TypeAlias = dict[str, "JSON"] | list["JSON"] | str | int | float | bool | None
JSONObject: TypeAlias = dict[str, JSON]
