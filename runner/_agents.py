"""Agents: the baseline replayer and the LLM tool-calling loop (agent and vanilla modes).

Control flow follows mini-swe-agent: the loop fits on a screen, and it ends by exceptions
that carry their reason (`Submitted`, `LimitsExceeded`). Every tool call goes through a
`ToolBox`, which records the call and its result in the transcript as they happen.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol, cast

from runner._llm import ChatClient, LLMError, Message, Reply, ToolCall, ToolSchema
from runner._transcript import Event, Transcript

if TYPE_CHECKING:
    from env import Baseline, Session, ToolResult

MAX_REPLIES_WITHOUT_TOOL = 3


class Submitted(Exception):
    """The agent submitted a test; the message is the submit observation."""


class LimitsExceeded(Exception):
    """The step budget is spent, or the agent stopped calling tools."""


#: The arguments of a tool call as an agent sends them: a JSON object, or its text.
ToolArguments = dict[str, object] | str | None


@dataclass(frozen=True)
class BudgetView:
    """How much of the budget is used, as the session reports it."""

    steps_used: int
    max_steps: int
    tests_used: int
    max_tests: int
    submitted: bool

    @classmethod
    def of(cls, session: Session) -> BudgetView:
        """The session's current budget use."""
        state = session.state
        return cls(
            steps_used=state.steps_used,
            max_steps=state.budgets.max_steps,
            tests_used=state.tests_used,
            max_tests=state.budgets.max_tests,
            submitted=state.submission is not None,
        )

    @property
    def steps_left(self) -> int:
        """Steps the agent may still take."""
        return max(0, self.max_steps - self.steps_used)


class ToolBox:
    """Calls session tools and records each call and result in the transcript."""

    def __init__(
        self,
        session: Session,
        transcript: Transcript,
        on_tool: Callable[[str, ToolArguments, BudgetView], None] | None = None,
    ) -> None:
        self.session = session
        self.transcript = transcript
        self._on_tool = on_tool

    def budget(self) -> BudgetView:
        """The session's current budget use."""
        return BudgetView.of(self.session)

    def call(
        self, name: str, arguments: ToolArguments = None, *, call_id: str | None = None
    ) -> ToolResult:
        """Run one tool; the result is in the transcript before this returns."""
        before = self.budget()
        if self._on_tool:
            self._on_tool(name, arguments, before)
        self.transcript.append(
            "tool_call", name=name, arguments=arguments, call_id=call_id, step=before.steps_used + 1
        )
        start = time.monotonic()
        result = self.session.call(name, arguments if arguments is not None else {})
        after = append_tool_result(
            self.transcript,
            self.session,
            name,
            call_id,
            result,
            text=result.text,
            elapsed_s=round(time.monotonic() - start, 3),
        )
        if name in ("edit", "undo") and result.ok:
            self._snapshot(after.steps_used)
        return result

    def _snapshot(self, step: int) -> None:
        """The edited files' full text after ``step``, saved beside the transcript."""
        files = {
            path: str(self.transcript.snapshot(step, path, text))
            for path, text in self.session.workspace.edited_files().items()
        }
        self.transcript.append("snapshot", step=step, files=files)


class ResultFacts(Protocol):
    """What a transcript's ``tool_result`` keeps of a result (`ToolResult`, `CallRecord`)."""

    @property
    def ok(self) -> bool: ...
    @property
    def cost_step(self) -> int: ...
    @property
    def cost_test(self) -> int: ...


def append_tool_result(
    transcript: Transcript,
    session: Session,
    name: str,
    call_id: object,
    result: ResultFacts,
    *,
    text: str,
    elapsed_s: float | None,
    resumed: bool = False,
) -> BudgetView:
    """Write the ``tool_result`` event of a call, with the budget use after it; returns that
    budget use."""
    budget = BudgetView.of(session)
    transcript.append(
        "tool_result",
        name=name,
        call_id=call_id,
        text=text,
        ok=result.ok,
        cost_step=result.cost_step,
        cost_test=result.cost_test,
        elapsed_s=elapsed_s,
        steps_used=budget.steps_used,
        tests_used=budget.tests_used,
        **({"resumed": True} if resumed else {}),
    )
    return budget


class Agent(Protocol):
    """Something that drives a session through a ToolBox until it submits or stops."""

    def run(self, tools: ToolBox) -> None: ...


class BaselineAgent:
    """Applies a baseline's regions through the edit path, runs one test, submits it."""

    def __init__(self, baseline: Baseline) -> None:
        self.baseline = baseline

    def run(self, tools: ToolBox) -> None:
        """Idempotent on resume: re-applying a baseline rewrites the same region bodies."""
        if tools.budget().submitted:
            raise Submitted("already submitted")
        if tools.budget().tests_used == 0:
            self.apply(tools)
            result = tools.call("test")
            if tools.budget().tests_used == 0:
                raise LimitsExceeded(f"the baseline's test was not run: {result.text[:2000]}")
        result = tools.call("submit", {})
        if not result.ok:
            raise LimitsExceeded(f"baseline submit failed: {result.text[:2000]}")
        raise Submitted(result.text)

    def apply(self, tools: ToolBox) -> list[str]:
        """Edit the baseline's regions in through the ``edit`` tool, recorded and charged as
        an agent's edits are; returns the observations. Raises `BaselineError` on a refusal."""
        from env import BaselineError, baseline_edits

        session = tools.session
        edits = baseline_edits(self.baseline, session.task, session.workspace.edited_files())
        texts = []
        for edit in edits:
            result = tools.call("edit", edit.arguments)
            if not result.ok:
                raise BaselineError(
                    f"baseline {self.baseline.name!r}: the edit of region {edit.region!r} in "
                    f"{edit.arguments['filename']} was refused:\n{result.text}"
                )
            texts.append(result.text)
        return texts


class LLMAgent:
    """The tool-calling loop over an OpenAI-compatible chat endpoint.

    ``messages`` is the conversation so far (rebuilt from the transcript on resume).
    """

    def __init__(
        self,
        client: ChatClient,
        tools_schema: list[ToolSchema],
        messages: list[Message],
        *,
        mode: str = "agent",
        on_text: Callable[[str], None] | None = None,
    ) -> None:
        self.client = client
        self.tools_schema = tools_schema
        self.messages = messages
        self.mode = mode
        self.on_text = on_text

    def run(self, tools: ToolBox) -> None:
        """Loop until Submitted or LimitsExceeded is raised."""
        import env  # the agent texts; imported here so that `runner --help` does not pay for env

        self._finish_pending(tools)
        if self.mode == "vanilla":
            return self._run_vanilla(tools)
        replies_without_tool = 0
        reminded = any(
            m.get("role") == "user" and str(m.get("content", "")).startswith("[Reminder]")
            for m in self.messages
        )
        while True:
            budget = tools.budget()
            if budget.submitted:
                raise Submitted("already submitted")
            if budget.steps_left <= 0:
                raise LimitsExceeded(f"step budget spent ({budget.steps_used}/{budget.max_steps})")
            if budget.steps_left <= 2 and budget.tests_used == 0 and not reminded:
                self._say(tools, env.steps_reminder(budget.steps_left))
                reminded = True
            reply = self._query(tools)
            if not reply.tool_calls:
                replies_without_tool += 1
                if replies_without_tool >= MAX_REPLIES_WITHOUT_TOOL:
                    raise LimitsExceeded(f"{MAX_REPLIES_WITHOUT_TOOL} replies without a tool call")
                self._say(tools, env.NO_TOOL_NUDGE)
                continue
            replies_without_tool = 0
            for call in reply.tool_calls:
                self._execute(tools, call)

    def _run_vanilla(self, tools: ToolBox) -> None:
        budget = tools.budget()
        if budget.tests_used == 0:
            if not any(m.get("role") == "assistant" for m in self.messages):
                reply = self._query(tools)
                for call in reply.tool_calls:
                    if call["function"]["name"] in ("edit", "view", "undo"):
                        self._execute(tools, call)
                    else:
                        tools.transcript.append(
                            "skipped_call",
                            call_id=call["id"],
                            reason="vanilla mode: the harness tests and submits",
                        )
            tools.call("test")
        result = tools.call("submit", {})
        raise Submitted(result.text)

    def _query(self, tools: ToolBox) -> Reply:
        try:
            reply = self.client.complete(
                self.messages, self.tools_schema, on_event=tools.transcript.append
            )
        except LLMError as e:
            tools.transcript.append("llm_error", error=str(e))
            raise
        self.messages.append(reply.message)
        tools.transcript.append(
            "message",
            message=reply.message,
            prompt_tokens=reply.usage.prompt_tokens,
            completion_tokens=reply.usage.completion_tokens,
            cost_usd=reply.usage.cost_usd,
            latency_s=reply.latency_s,
            attempts=reply.attempts,
            model=self.client.model,
        )
        if self.on_text and reply.message.get("content"):
            self.on_text(str(reply.message["content"]))
        return reply

    def _execute(self, tools: ToolBox, call: ToolCall) -> None:
        name = call["function"]["name"]
        result = tools.call(name, call["function"]["arguments"], call_id=call["id"])
        self.messages.append({"role": "tool", "tool_call_id": call["id"], "content": result.text})
        if name == "submit" and result.ok:
            raise Submitted(result.text)

    def _say(self, tools: ToolBox, text: str) -> None:
        message: Message = {"role": "user", "content": text}
        self.messages.append(message)
        tools.transcript.append("message", message=message)

    def _finish_pending(self, tools: ToolBox) -> None:
        """After a resume: run tool calls of the last assistant message that have no result."""
        if not self.messages or self.messages[-1].get("role") not in ("assistant", "tool"):
            return
        last_assistant = next(
            (m for m in reversed(self.messages) if m.get("role") == "assistant"), None
        )
        if last_assistant is None:
            return
        answered = {m.get("tool_call_id") for m in self.messages if m.get("role") == "tool"}
        pending = [c for c in last_assistant.get("tool_calls", []) if c["id"] not in answered]
        if pending:
            tools.transcript.append("resume_pending_calls", call_ids=[c["id"] for c in pending])
        for call in pending:
            if self.mode == "vanilla" and call["function"]["name"] not in ("edit", "view", "undo"):
                continue
            self._execute(tools, call)


def conversation_from_transcript(events: list[Event]) -> list[Message]:
    """Rebuild the chat messages from transcript events (for resume)."""
    messages: list[Message] = []
    for event in events:
        if event["kind"] == "message":
            # written by this module from a `Message` (see `_query` and `_say`)
            messages.append(cast(Message, event["message"]))
        elif event["kind"] == "tool_result" and event.get("call_id"):
            messages.append(
                {
                    "role": "tool",
                    "tool_call_id": str(event["call_id"]),
                    "content": str(event["text"]),
                }
            )
    return messages
