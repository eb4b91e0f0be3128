"""The tool-call layer: argument parsing, its error texts, and the generated schemas."""

from __future__ import annotations

import json

import pytest

from env._errors import EditError
from env._tools import (
    TOOL_NAMES,
    EditArgs,
    SubmitArgs,
    UndoArgs,
    ViewArgs,
    parse_tool_call,
    tool_schemas,
)


def _error(name: str, arguments: object) -> str:
    with pytest.raises(EditError) as info:
        parse_tool_call(name, arguments)  # type: ignore[arg-type]
    return str(info.value)


def test_unknown_tool_lists_the_tools() -> None:
    text = _error("read", {})
    assert text.startswith("ERROR: Unknown tool 'read'")
    for name in ("view", "edit", "undo", "test", "submit"):
        assert name in text


def test_edit_missing_op_names_the_field() -> None:
    text = _error(
        "edit",
        {"filename": "nanoGPT/custom_pretrain.py", "content": "x", "start_line": 1, "end_line": 2},
    )
    assert text.startswith("ERROR: Invalid arguments for 'edit': ")
    assert "missing required argument 'op'" in text
    assert "Traceback" not in text


def test_edit_wrong_type_names_the_field_and_value() -> None:
    text = _error(
        "edit",
        {"op": "replace", "filename": "f", "content": "x", "start_line": "abc", "end_line": 2},
    )
    assert "argument 'start_line'" in text and "'abc'" in text


def test_edit_unknown_field_is_refused() -> None:
    text = _error(
        "edit", {"op": "insert", "filename": "f", "content": "x", "after_line": 3, "line": 4}
    )
    assert "unexpected argument 'line'" in text


def test_edit_bad_op_is_refused() -> None:
    text = _error("edit", {"op": "delete", "filename": "f", "content": ""})
    assert "argument 'op'" in text and "'delete'" in text


@pytest.mark.parametrize(
    ("arguments", "missing"),
    [
        ({"op": "replace", "filename": "f", "content": "x"}, "start_line and end_line"),
        ({"op": "replace", "filename": "f", "content": "x", "start_line": 3}, "end_line"),
        ({"op": "insert", "filename": "f", "content": "x"}, "after_line"),
    ],
)
def test_edit_op_requires_its_lines(arguments: dict[str, object], missing: str) -> None:
    text = _error("edit", arguments)
    assert f"requires {missing}" in text


def test_edit_content_must_be_text() -> None:
    text = _error("edit", {"op": "create", "filename": "f", "content": 5})
    assert "argument 'content'" in text


def test_arguments_as_json_string() -> None:
    args = parse_tool_call(
        "edit", json.dumps({"op": "insert", "filename": "f", "content": "x", "after_line": 4})
    )
    assert isinstance(args, EditArgs) and args.after_line == 4


def test_malformed_json_is_a_clear_error() -> None:
    text = _error("edit", '{"op": "replace", ')
    assert text.startswith("ERROR: Invalid arguments for 'edit': arguments are not valid JSON")


def test_json_that_is_not_an_object() -> None:
    assert "must be a JSON object" in _error("view", "[1, 2]")


def test_empty_arguments_mean_none() -> None:
    assert parse_tool_call("test", "").model_dump() == {}
    assert parse_tool_call("test", None).model_dump() == {}
    assert isinstance(parse_tool_call("undo", {}), UndoArgs)
    assert parse_tool_call("submit", {}) == SubmitArgs(n=None)


def test_test_takes_no_arguments() -> None:
    assert "unexpected argument 'n'" in _error("test", {"n": 1})


def test_undo_n_must_be_positive() -> None:
    assert "argument 'n'" in _error("undo", {"n": 0})


def test_numeric_strings_are_accepted_for_lines() -> None:
    args = parse_tool_call("view", {"filename": "f", "start_line": "10"})
    assert isinstance(args, ViewArgs) and args.start_line == 10


def test_usage_line_follows_the_error() -> None:
    assert "Usage: edit(op, filename, content" in _error("edit", {})


@pytest.mark.parametrize("dialect", ["openai", "mcp"])
def test_schemas_are_generated_from_the_models(dialect: str) -> None:
    schemas = tool_schemas(dialect)  # type: ignore[arg-type]
    if dialect == "openai":
        assert all(s["type"] == "function" for s in schemas)
        by_name = {s["function"]["name"]: s["function"]["parameters"] for s in schemas}
        descriptions = [s["function"]["description"] for s in schemas]
    else:
        by_name = {s["name"]: s["inputSchema"] for s in schemas}
        descriptions = [s["description"] for s in schemas]
    assert tuple(by_name) == TOOL_NAMES
    assert all(d for d in descriptions)
    edit = by_name["edit"]
    assert edit["required"] == ["op", "filename", "content"]
    assert edit["properties"]["op"]["enum"] == ["replace", "insert", "create"]
    assert edit["properties"]["start_line"]["type"] == "integer"
    assert all(p.get("description") for p in edit["properties"].values())
    assert edit["additionalProperties"] is False
    assert by_name["test"]["properties"] == {} and by_name["test"]["required"] == []
    # Every field of each model appears; none of pydantic's title noise does.
    assert "title" not in json.dumps(schemas)
    json.dumps(schemas)  # plain JSON


def test_unknown_dialect() -> None:
    with pytest.raises(ValueError, match="dialect"):
        tool_schemas("anthropic")  # type: ignore[arg-type]
