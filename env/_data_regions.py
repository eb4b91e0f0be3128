"""Regions that hold data, not code: parsed as a Python literal, never executed.

A data region (``TaskSpec.data_regions``) must be exactly one assignment ``NAME = <literal>``
whose value `ast.literal_eval` accepts and JSON can carry (``CONFIG_OVERRIDES = {...}``). The
harness hands the value to every job as JSON in an environment variable; trusted code in the
job checks keys and ranges. Because the value is built from the source text by the parser, no
object the agent wrote ever exists — a ``float`` subclass with rigged comparisons cannot.
"""

from __future__ import annotations

import ast
import json
import math
from typing import TYPE_CHECKING

from env._policy import Violation
from env._regions import find_regions

if TYPE_CHECKING:
    from env._spec import TaskSpec

#: the largest data region value accepted, as JSON (it travels in an environment variable)
MAX_JSON_CHARS = 16_384


class DataRegionError(ValueError):
    """The region is not one ``NAME = <literal>`` assignment of JSON-compatible data."""


def parse_data_region(text: str, variable: str) -> object:
    """The value assigned to ``variable`` in a region's text; `DataRegionError` otherwise."""
    try:
        tree = ast.parse(text)
    except SyntaxError as e:
        raise DataRegionError(f"syntax error: {e.msg}") from None
    statements = tree.body
    if (
        len(statements) != 1
        or not isinstance(statements[0], ast.Assign)
        or len(statements[0].targets) != 1
        or not isinstance(statements[0].targets[0], ast.Name)
        or statements[0].targets[0].id != variable
    ):
        raise DataRegionError(
            f"this region holds data: it must be exactly one assignment `{variable} = {{...}}` "
            "of a literal value (it is read as data and never run)"
        )
    try:
        value = ast.literal_eval(statements[0].value)
    except (ValueError, TypeError, SyntaxError, MemoryError, RecursionError):
        raise DataRegionError(
            f"the value of {variable} must be a literal (numbers, strings, True/False/None, "
            "lists, tuples and dicts of them): no names, calls or expressions"
        ) from None
    _check_json(value, variable)
    return value


def data_region_json(text: str, variable: str) -> str:
    """The region's value as compact JSON (what jobs receive)."""
    return json.dumps(parse_data_region(text, variable), separators=(",", ":"), sort_keys=True)


def data_region_violations(text: str, variable: str, first_line: int) -> list[Violation]:
    """The edit-time check: [] or one violation at the region's first line."""
    try:
        parse_data_region(text, variable)
    except DataRegionError as e:
        return [Violation(first_line, str(e))]
    return []


def _check_json(value: object, variable: str) -> None:
    def walk(v: object) -> None:
        if isinstance(v, dict):
            for k, item in v.items():
                if not isinstance(k, str):
                    raise DataRegionError(f"{variable}: dict keys must be strings, got {k!r}")
                walk(item)
        elif isinstance(v, list | tuple):
            for item in v:
                walk(item)
        elif isinstance(v, float) and not math.isfinite(v):
            raise DataRegionError(f"{variable}: {v!r} is not a finite number")
        elif not (v is None or isinstance(v, bool | int | float | str)):
            raise DataRegionError(f"{variable}: {type(v).__name__} values are not allowed")

    walk(value)
    if len(json.dumps(value)) > MAX_JSON_CHARS:
        raise DataRegionError(f"{variable} is longer than {MAX_JSON_CHARS} characters as JSON")


def data_region_env(task: TaskSpec, files: dict[str, str]) -> dict[str, str]:
    """The job variables of a submission's data regions: ``{env name: JSON text}``.

    ``files`` are the submission's files (codebase-relative path → text); a file it does not
    carry is read from the untouched codebase.
    """
    out: dict[str, str] = {}
    for name, data in task.data_regions.items():
        path = next(f.path for f in task.editable_files if name in f.regions)
        text = files.get(path)
        if text is None:
            text = (task.codebase_dir / path).read_text(encoding="utf-8")
        lines = text.split("\n")
        span = next((s for s in find_regions(lines) if s.name == name), None)
        if span is None:
            raise DataRegionError(f"region {name} is missing from {task.agent_path(path)}")
        first, last = span.body
        out[data.env] = data_region_json("\n".join(lines[first - 1 : last]), data.variable)
    return out
