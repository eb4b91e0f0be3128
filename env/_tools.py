"""The agent-facing tools: one pydantic argument model per tool, parsing, and JSON schemas.

The argument models are the single source of truth: `parse_tool_call` validates against them
and `tool_schemas` generates the OpenAI and MCP schemas from them, so what an agent is told and
what is enforced cannot drift apart. Texts follow MLS-Bench so that agents transfer.
"""

from __future__ import annotations

import copy
import json
from collections.abc import Mapping
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from env import _texts as texts
from env._errors import EditError
from env._json import JSONObject

__all__ = [
    "TOOL_NAMES",
    "EditArgs",
    "SubmitArgs",
    "TestArgs",
    "UndoArgs",
    "ViewArgs",
    "parse_tool_call",
    "tool_schemas",
]


class _Args(BaseModel):
    model_config = ConfigDict(extra="forbid")


class ViewArgs(_Args):
    """Show numbered lines of a file; editable lines are marked."""

    filename: str = Field(description=texts.FILENAME_HELP)
    start_line: int | None = Field(
        default=None, description="First line to show (1-indexed). Default: the first line."
    )
    end_line: int | None = Field(
        default=None, description="Last line to show (inclusive). Default: the last line."
    )


class EditArgs(_Args):
    """Edit the editable lines of a file."""

    op: Literal["replace", "insert", "create"] = Field(
        description=(
            "'replace' replaces lines start_line..end_line (inclusive) with content; "
            "'insert' inserts content after line after_line; "
            "'create' creates a new file (only when the task allows it)."
        )
    )
    filename: str = Field(description=texts.FILENAME_HELP)
    content: str = Field(description="The new text (one or more lines).")
    start_line: int | None = Field(
        default=None, description="replace: first line to replace (1-indexed)."
    )
    end_line: int | None = Field(
        default=None, description="replace: last line to replace (inclusive)."
    )
    after_line: int | None = Field(
        default=None, description="insert: the new lines go after this line (0 = file start)."
    )

    @model_validator(mode="after")
    def _op_needs_its_lines(self) -> EditArgs:
        # Said here rather than by the Workspace so the message names the missing field.
        if self.op == "replace":
            missing = [f for f in ("start_line", "end_line") if getattr(self, f) is None]
            if missing:
                raise ValueError(f"op='replace' requires {' and '.join(missing)}")
        if self.op == "insert" and self.after_line is None:
            raise ValueError("op='insert' requires after_line")
        return self


class UndoArgs(_Args):
    """Undo the last n edits (restores file contents and editable ranges)."""

    n: int = Field(default=1, ge=1, description="How many edits to undo (default 1).")


class TestArgs(_Args):
    """Run a full test of the current code: training plus evaluation."""

    __test__ = False  # not a pytest class


class SubmitArgs(_Args):
    """Choose which test result is your final result."""

    n: int | None = Field(
        default=None,
        description="The test number to submit (n <= 0 or omitted: the latest test).",
    )


_MODELS: dict[str, type[_Args]] = {
    "view": ViewArgs,
    "edit": EditArgs,
    "undo": UndoArgs,
    "test": TestArgs,
    "submit": SubmitArgs,
}
TOOL_NAMES: tuple[str, ...] = tuple(_MODELS)


def parse_tool_call(name: str, arguments: Mapping[str, object] | str | None) -> BaseModel:
    """Validate a tool call; return its argument model or raise `EditError`.

    `arguments` may be a dict or a JSON string (as OpenAI function calling delivers them);
    empty or missing arguments mean ``{}``.
    """
    model = _MODELS.get(name) if isinstance(name, str) else None
    if model is None:
        raise EditError(texts.unknown_tool(name, TOOL_NAMES))
    if arguments is None:
        arguments = {}
    if isinstance(arguments, str):
        if not arguments.strip():
            arguments = {}
        else:
            try:
                arguments = json.loads(arguments)
            except json.JSONDecodeError as e:
                raise EditError(texts.invalid_arguments(name, texts.bad_json(e))) from e
    if not isinstance(arguments, dict):
        raise EditError(texts.invalid_arguments(name, texts.not_an_object(arguments)))
    try:
        return model.model_validate(arguments)
    except ValidationError as e:
        raise EditError(texts.invalid_arguments(name, _describe(e))) from e


def _describe(error: ValidationError) -> str:
    parts: list[str] = []
    for item in error.errors(include_url=False):
        field = ".".join(str(x) for x in item["loc"])
        kind = item["type"]
        if kind == "missing":
            parts.append(texts.missing_argument(field))
        elif kind == "extra_forbidden":
            parts.append(texts.unexpected_argument(field))
        elif not field:
            # A model-level rule, e.g. "op='replace' requires start_line".
            parts.append(str(item["msg"]).removeprefix("Value error, "))
        else:
            parts.append(texts.bad_argument(field, item["msg"], item.get("input")))
    return "; ".join(parts)


def tool_schemas(dialect: Literal["openai", "mcp"] = "openai") -> list[JSONObject]:
    """The tools as OpenAI function-calling dicts or MCP ``name/description/inputSchema`` dicts.

    Generated from the argument models, with pydantic's ``title`` noise removed and optional
    fields written as their plain type (LLM providers handle that best).
    """
    if dialect not in ("openai", "mcp"):
        raise ValueError(f"unknown tool schema dialect {dialect!r}; use 'openai' or 'mcp'")
    out: list[JSONObject] = []
    for name, model in _MODELS.items():
        schema = _clean(model.model_json_schema())
        schema.setdefault("properties", {})
        schema.setdefault("required", [])
        schema["additionalProperties"] = False
        description = texts.TOOL_DESCRIPTIONS[name]
        if dialect == "openai":
            function: JSONObject = {"name": name, "description": description, "parameters": schema}
            out.append({"type": "function", "function": function})
        else:
            out.append({"name": name, "description": description, "inputSchema": schema})
    return out


def _clean(schema: JSONObject) -> JSONObject:
    schema = copy.deepcopy(schema)
    schema.pop("title", None)
    schema.pop("description", None)  # the tool's description is said once, at the top
    properties = schema.get("properties")
    for prop in properties.values() if isinstance(properties, dict) else []:
        if not isinstance(prop, dict):
            continue
        prop.pop("title", None)
        options = prop.pop("anyOf", None)
        if isinstance(options, list):
            non_null = [o for o in options if not (isinstance(o, dict) and o.get("type") == "null")]
            if len(non_null) == 1 and isinstance(non_null[0], dict):
                prop.update(non_null[0])
            else:
                prop["anyOf"] = non_null
        if prop.get("default", 0) is None:
            del prop["default"]
    return schema
