"""The run page's transcript viewer: transcript events turned into steps a reader can follow.

Everything here is untrusted agent or tool output. Plain text stays ``str`` and is escaped by
the template; the one piece of HTML built here is the assistant's markdown, rendered by
markdown-it with raw HTML off (tags come out as text), images off (no request leaves the
page) and only the links markdown-it validates (no ``javascript:``). Two transcript shapes
are read: the runner's events (``kind`` = ``message``, ``tool_call``, ``tool_result``,
``snapshot``, ``llm_retry``, ``error``, …) and the older role-based entries (``role``,
``content``, ``tool_name``, ``tool_input``), which are first rewritten as events.
"""

from __future__ import annotations

import contextlib
import json
import math
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from markdown_it import MarkdownIt
from markdown_it.renderer import RendererHTML
from markdown_it.token import Token
from markdown_it.utils import EnvType, OptionsDict
from markupsafe import Markup

LONG_RESULT_CHARS = 1500  # results longer than this (or LONG_RESULT_LINES) start collapsed
LONG_RESULT_LINES = 25
MAX_METRIC_ROWS = 200  # a hostile result cannot make the metrics table unbounded

# "Final metrics (gpt-tiny): val_loss_gpt-tiny=3.2100, wikitext2_ppl_gpt-tiny=812.4"
_FINAL_METRICS = re.compile(r"^[ \t]*Final metrics \(([^()\n]{1,100})\):[ \t]*(.*)$", re.M)
_METRIC_NAME = re.compile(r"^[A-Za-z0-9_.:/+-]{1,100}$")


def _link_open(
    renderer: RendererHTML, tokens: Sequence[Token], idx: int, options: OptionsDict, env: EnvType
) -> str:
    tokens[idx].attrSet("rel", "nofollow noopener noreferrer")
    return renderer.renderToken(tokens, idx, options, env)


_MARKDOWN = MarkdownIt("commonmark", {"html": False}).disable("image")
_MARKDOWN.add_render_rule("link_open", _link_open)


def render_markdown(text: str) -> Markup:
    """Markdown as HTML in which no HTML of the author's survives (see the module docstring)."""
    return Markup(_MARKDOWN.render(text))


def diff_class(line: str) -> str:
    """The CSS class of one unified-diff line."""
    if line.startswith(("+++", "---")):
        return "diff-file"
    if line.startswith("@@"):
        return "diff-hunk"
    if line.startswith("+"):
        return "diff-add"
    if line.startswith("-"):
        return "diff-del"
    return ""


def diff_lines(diff: str) -> list[tuple[str, str]]:
    """(CSS class, line) pairs of a unified diff."""
    return [(diff_class(line), line) for line in diff.splitlines()]


@dataclass(frozen=True)
class MetricRow:
    """One ``name=value`` of a ``Final metrics (<job>):`` line."""

    job: str
    name: str
    value: float | str


def parse_final_metrics(text: str) -> list[MetricRow]:
    """The metrics a test result states; anything that does not parse is left out."""
    rows: list[MetricRow] = []
    for match in _FINAL_METRICS.finditer(text):
        job = match.group(1).strip()
        for item in match.group(2).split(","):
            name, sep, raw = item.strip().partition("=")
            name, raw = name.strip(), raw.strip()
            if not sep or not raw or not _METRIC_NAME.match(name):
                continue
            value: float | str
            try:
                value = float(raw)
            except ValueError:
                value = raw[:50]
            rows.append(MetricRow(job, name, value))
            if len(rows) >= MAX_METRIC_ROWS:
                return rows
    return rows


@dataclass(frozen=True)
class Usage:
    """What one model reply cost."""

    prompt_tokens: int | None = None
    completion_tokens: int | None = None
    elapsed_s: float | None = None
    cost_usd: float | None = None

    @property
    def empty(self) -> bool:
        """Whether nothing was recorded."""
        return all(v is None for v in vars(self).values())


@dataclass(frozen=True)
class ToolView:
    """A tool call with its arguments, its result and, for an edit, the diff it made."""

    name: str
    call_id: str | None
    arguments: dict[str, Any] | str | None  # short arguments (multi-line strings are blocks)
    blocks: dict[str, str]  # multi-line string arguments, e.g. an edit's content
    diffs: dict[str, list[tuple[str, str]]]  # path → classed lines, from the snapshot event
    result: str | None
    ok: bool | None
    result_note: str  # elapsed time and budget use after the call
    metrics: list[MetricRow]

    @property
    def signature(self) -> str:
        """The call as one line, e.g. ``edit(op="replace", start_line=191)``; multi-line
        arguments are shown below it and named here as ``content=…``."""
        if isinstance(self.arguments, str):
            return f"{self.name}({self.arguments})"
        args = [
            f"{k}={json.dumps(v, ensure_ascii=False, default=str)}"
            for k, v in (self.arguments or {}).items()
        ]
        args += [f"{k}=…" for k in self.blocks]
        return f"{self.name}({', '.join(args)})"

    @property
    def long_result(self) -> bool:
        """Whether the result starts collapsed."""
        text = self.result or ""
        return len(text) > LONG_RESULT_CHARS or text.count("\n") > LONG_RESULT_LINES


@dataclass(frozen=True)
class StepView:
    """One item of the transcript, with its anchor."""

    anchor: str
    kind: str  # assistant | user | system | tool | retry | error | event
    label: str
    step: int | None = None
    text: Markup | None = None  # the assistant's markdown, rendered safely
    plain: str | None = None  # text shown as is (prompts, observations, error messages)
    thinking: str | None = None
    calls: list[str] = field(default_factory=list)  # tool names a reply asked for
    tool: ToolView | None = None
    usage: Usage | None = None
    data: str | None = None  # any other fields, as JSON
    is_error: bool = False

    @property
    def is_tool(self) -> bool:
        """Whether this item is a tool call (the "tool calls only" filter)."""
        return self.tool is not None


@dataclass(frozen=True)
class TranscriptView:
    """The steps of a transcript and its totals."""

    steps: list[StepView]
    prompt_tokens: int
    completion_tokens: int
    cost_usd: float
    model_s: float
    n_errors: int
    n_tool_calls: int


def transcript_view(entries: list[dict[str, Any]]) -> TranscriptView:
    """The viewer's steps for a stored transcript (either shape; see the module docstring)."""
    events = [e for entry in entries for e in _as_events(entry)]
    steps: list[StepView] = []
    used: set[int] = set()
    for i, event in enumerate(events):
        if i in used:
            continue
        anchor = f"ev-{len(steps) + 1}"
        kind = str(event.get("kind"))
        if kind == "message":
            steps.append(_message_step(anchor, event))
        elif kind in ("tool_call", "tool_result"):
            steps.append(_tool_step(anchor, events, i, used))
        elif kind == "snapshot":
            steps.append(_snapshot_step(anchor, event))
        elif kind == "llm_retry":
            steps.append(_retry_step(anchor, event))
        elif kind in ("error", "llm_error"):
            steps.append(
                StepView(
                    anchor,
                    "error",
                    "LLM error" if kind == "llm_error" else "error",
                    plain=_text(event.get("error")),
                    data=_json(_rest(event, {"kind", "t", "error"})),
                    is_error=True,
                )
            )
        else:
            steps.append(
                StepView(
                    anchor,
                    "event",
                    kind,
                    step=_int(event.get("step")),
                    data=_json(_rest(event, {"kind", "t"})),
                    is_error=kind == "end" and event.get("status") not in (None, "finished"),
                )
            )
    usages = [s.usage for s in steps if s.usage is not None]
    return TranscriptView(
        steps=steps,
        prompt_tokens=sum(u.prompt_tokens or 0 for u in usages),
        completion_tokens=sum(u.completion_tokens or 0 for u in usages),
        cost_usd=sum(u.cost_usd or 0.0 for u in usages),
        model_s=sum(u.elapsed_s or 0.0 for u in usages),
        n_errors=sum(s.is_error for s in steps),
        n_tool_calls=sum(s.is_tool for s in steps),
    )


# ── one item per kind ───────────────────────────────────────────────────────
def _message_step(anchor: str, event: dict[str, Any]) -> StepView:
    message = event.get("message")
    message = message if isinstance(message, dict) else {}
    role = str(message.get("role", "message"))
    content = _text(message.get("content"))
    step = _int(event.get("step"))
    if role != "assistant":
        kind = role if role in ("user", "system") else "event"
        return StepView(anchor, kind, role, step=step, plain=content)
    calls = message.get("tool_calls")
    names = [
        str(c["function"].get("name"))
        for c in (calls if isinstance(calls, list) else [])
        if isinstance(c, dict) and isinstance(c.get("function"), dict)
    ]
    usage = event.get("usage")
    usage = usage if isinstance(usage, dict) else event  # older events keep them at top level
    return StepView(
        anchor,
        "assistant",
        "assistant",
        step=step,
        text=render_markdown(content) if content else None,
        thinking=_text(message.get("thinking") or message.get("reasoning_content")),
        calls=names,
        usage=Usage(
            prompt_tokens=_int(usage.get("prompt_tokens")),
            completion_tokens=_int(usage.get("completion_tokens")),
            elapsed_s=_float(event.get("elapsed_s", event.get("latency_s"))),
            cost_usd=_float(event.get("cost_usd")),
        ),
    )


def _tool_step(anchor: str, events: list[dict[str, Any]], i: int, used: set[int]) -> StepView:
    """A call, the result that answers it and the snapshot after it, as one item."""
    call: dict[str, Any] = events[i] if events[i].get("kind") == "tool_call" else {}
    result: dict[str, Any] = {} if call else events[i]
    snapshot: dict[str, Any] = {}
    if call:
        for j in range(i + 1, len(events)):
            kind = events[j].get("kind")
            if kind == "tool_call":
                break
            if kind == "tool_result" and not result and _answers(events[j], call):
                result = events[j]
                used.add(j)
            elif kind == "snapshot" and result and not snapshot:
                snapshot = events[j]
                used.add(j)
    name = str(call.get("name") or result.get("name") or "tool")
    arguments = call.get("arguments")
    if isinstance(arguments, str):  # the model's JSON text, when the call kept it as sent
        with contextlib.suppress(ValueError):
            arguments = json.loads(arguments) if arguments.strip() else {}
    blocks: dict[str, str] = {}
    if isinstance(arguments, dict):
        blocks = {k: v for k, v in arguments.items() if isinstance(v, str) and "\n" in v}
        arguments = {k: v for k, v in arguments.items() if k not in blocks}
    elif arguments is not None and not isinstance(arguments, str):
        arguments = _json(arguments)
    diffs = snapshot.get("diffs")
    text = _text(result.get("text", result.get("content"))) if result else None
    ok = result.get("ok") if isinstance(result.get("ok"), bool) else None
    if ok is None and text is not None:
        ok = not text.startswith("ERROR")
    tool = ToolView(
        name=name,
        call_id=_text(call.get("call_id") or result.get("call_id")),
        arguments=arguments,
        blocks=blocks,
        diffs={
            str(path): diff_lines(str(d))
            for path, d in (diffs.items() if isinstance(diffs, dict) else [])
        },
        result=text,
        ok=ok,
        result_note=_result_note(result),
        metrics=parse_final_metrics(text or ""),
    )
    return StepView(
        anchor,
        "tool",
        name,
        step=_int(call.get("step", result.get("step"))),
        tool=tool,
        is_error=ok is False,
    )


def _snapshot_step(anchor: str, event: dict[str, Any]) -> StepView:
    diffs = event.get("diffs")
    plain = "\n\n".join(
        f"{path}\n{diff}" for path, diff in (diffs.items() if isinstance(diffs, dict) else [])
    )
    return StepView(
        anchor,
        "event",
        "snapshot",
        step=_int(event.get("step")),
        plain=plain or None,
        data=_json(_rest(event, {"kind", "t", "diffs"})),
    )


def _retry_step(anchor: str, event: dict[str, Any]) -> StepView:
    delay = _float(event.get("delay_s", event.get("wait_s")))
    parts = [f"attempt {event.get('attempt', '?')}"]
    if event.get("status") is not None:
        parts.append(f"HTTP {event.get('status')}")
    if delay is not None:
        parts.append(f"retrying in {delay:.1f} s")
    return StepView(
        anchor,
        "retry",
        "LLM retry",
        plain=" · ".join(parts) + (f"\n{_text(event.get('error'))}" if event.get("error") else ""),
        is_error=True,
    )


# ── helpers ─────────────────────────────────────────────────────────────────
def _as_events(entry: dict[str, Any]) -> list[dict[str, Any]]:
    """A runner event as is; an older role-based entry as the events it stands for."""
    if "kind" in entry or "role" not in entry:
        return [entry]
    role, step = entry.get("role"), entry.get("step")
    name = entry.get("tool_name") or entry.get("name")
    if role == "tool":
        return [{"kind": "tool_result", "name": name, "text": entry.get("content"), "step": step}]
    message = {k: entry[k] for k in ("role", "content", "thinking") if k in entry}
    events: list[dict[str, Any]] = [{"kind": "message", "message": message, "step": step}]
    if name is not None:
        arguments = entry.get("tool_input", entry.get("arguments"))
        events.append({"kind": "tool_call", "name": name, "arguments": arguments, "step": step})
    for call in entry.get("tool_calls") or []:
        if isinstance(call, dict):
            function: dict[str, Any] = (
                call["function"] if isinstance(call.get("function"), dict) else call
            )
            events.append(
                {
                    "kind": "tool_call",
                    "name": function.get("name"),
                    "arguments": function.get("arguments"),
                    "call_id": call.get("id"),
                    "step": step,
                }
            )
    return events


def _answers(result: dict[str, Any], call: dict[str, Any]) -> bool:
    if call.get("call_id") is not None and result.get("call_id") is not None:
        return bool(result.get("call_id") == call.get("call_id"))
    return result.get("name") in (None, call.get("name"))


def _result_note(result: dict[str, Any]) -> str:
    parts = []
    if (elapsed := _float(result.get("elapsed_s"))) is not None:
        parts.append(f"{elapsed:.1f} s")
    if result.get("steps_used") is not None:
        parts.append(f"steps used {result.get('steps_used')}")
    if result.get("tests_used") is not None:
        parts.append(f"tests used {result.get('tests_used')}")
    if result.get("resumed"):
        parts.append("replayed on resume")
    return " · ".join(parts)


def _rest(event: dict[str, Any], drop: set[str]) -> dict[str, Any]:
    return {k: v for k, v in event.items() if k not in drop}


def _json(value: Any) -> str | None:
    if value in (None, {}, []):
        return None
    return json.dumps(value, indent=2, ensure_ascii=False, default=str)


def _text(value: Any) -> str | None:
    if value is None or isinstance(value, str):
        return value
    return json.dumps(value, indent=2, ensure_ascii=False, default=str)


def _int(value: Any) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def _float(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return float(value) if math.isfinite(value) else None
