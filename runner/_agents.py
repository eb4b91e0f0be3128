"""Agents: the baseline replayer and the LLM tool-calling loop (agent and vanilla modes).

Control flow follows mini-swe-agent: the loop fits on a screen, and it ends by exceptions
that carry their reason (`Submitted`, `LimitsExceeded`). Every tool call goes through a
`ToolBox`, which records the call and its result in the transcript as they happen.

An LLM agent that stops without submitting (no tool call three times in a row, the steps
spent, a run limit of tokens, cost or time reached) has its latest completed test submitted
for it (`ToolBox.auto_submit`), as MLS-Bench's scorer falls back to the latest complete test.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol, cast

from runner._llm import (
    AgentSettings,
    ChatClient,
    EventSink,
    LLMError,
    Message,
    Reply,
    ToolCall,
    ToolSchema,
)
from runner._transcript import Event, Transcript

if TYPE_CHECKING:
    from env import Baseline, Session, ToolResult

MAX_REPLIES_WITHOUT_TOOL = 3


class Submitted(Exception):
    """The agent submitted a test; the message is the submit observation, or `AUTO` and why
    the latest test was submitted for it."""


AUTO = "auto-submitted: "


class LimitsExceeded(Exception):
    """The step budget is spent, a run limit is reached, or the agent stopped calling tools."""


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
        files_before = self.session.workspace.edited_files() if name in ("edit", "undo") else {}
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
            self._snapshot(after.steps_used, files_before)
        return result

    def auto_submit(self, why: str) -> bool:
        """Submit the latest completed test for an agent that stopped (`Session.auto_submit`),
        recorded as an ``auto_submit`` event; False when there is no test to submit."""
        text = self.session.auto_submit(why)
        if text is None:
            return False
        number = self.session.state.submission
        self.transcript.append(
            "auto_submit",
            reason=why,
            test_number=number.test_number if number else None,
            text=text,
        )
        return True

    def _snapshot(self, step: int, before: dict[str, str]) -> None:
        """The edited files' full text after ``step``, saved beside the transcript, and the
        unified diff of each file this step changed (for the transcript viewer)."""
        after = self.session.workspace.edited_files()
        files = {
            path: str(self.transcript.snapshot(step, path, text)) for path, text in after.items()
        }
        import env

        diffs = {
            path: env.file_diff(before.get(path, ""), text, path)
            for path, text in after.items()
            if before.get(path) != text
        }
        self.transcript.append("snapshot", step=step, files=files, diffs=diffs)


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
    """Applies a baseline's regions through the edit path, runs one test, submits it.

    A hand-written method (``runner run --region``) is driven the same way; ``kind`` names it
    in messages.
    """

    def __init__(self, baseline: Baseline, kind: str = "baseline") -> None:
        self.baseline = baseline
        self.kind = kind

    def run(self, tools: ToolBox) -> None:
        """Idempotent on resume: re-applying a baseline rewrites the same region bodies."""
        if tools.budget().submitted:
            raise Submitted("already submitted")
        if tools.budget().tests_used == 0:
            self.apply(tools)
            result = tools.call("test")
            if tools.budget().tests_used == 0:
                raise LimitsExceeded(f"the {self.kind}'s test was not run: {result.text[:2000]}")
        result = tools.call("submit", {})
        if not result.ok:
            raise LimitsExceeded(f"{self.kind} submit failed: {result.text[:2000]}")
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
                    f"{self.kind} {self.baseline.name!r}: the edit of region {edit.region!r} in "
                    f"{edit.arguments['filename']} was refused:\n{result.text}"
                )
            texts.append(result.text)
        return texts


@dataclass
class Spend:
    """What an LLM agent has used of its run limits: tokens, cost, and its own time (model
    calls and non-test tools; tests and the final evaluation excluded)."""

    tokens: int = 0
    cost_usd: float = 0.0
    agent_s: float = 0.0

    @classmethod
    def of(cls, events: list[Event]) -> Spend:
        """The spend recorded in a transcript (for resume)."""
        spend = cls()
        for event in events:
            usage = event.get("usage")
            if event["kind"] == "message" and isinstance(usage, dict):
                spend.add_reply(usage, event.get("cost_usd"), event.get("elapsed_s"))
            elif event["kind"] == "tool_result" and event.get("name") not in EXCLUDED_TIME:
                elapsed = event.get("elapsed_s")
                spend.agent_s += float(elapsed) if isinstance(elapsed, int | float) else 0.0
        return spend

    def add_reply(self, usage: Mapping[str, object], cost: object, elapsed: object) -> None:
        """Count one model reply."""
        for key in ("prompt_tokens", "completion_tokens"):
            value = usage.get(key)
            self.tokens += value if isinstance(value, int) else 0
        self.cost_usd += float(cost) if isinstance(cost, int | float) else 0.0
        self.agent_s += float(elapsed) if isinstance(elapsed, int | float) else 0.0

    def exceeded(self, settings: AgentSettings) -> str | None:
        """Which run limit is reached, said with its numbers; None while within all."""
        s = settings
        if s.max_total_tokens is not None and self.tokens >= s.max_total_tokens:
            return f"token limit reached ({self.tokens} >= {s.max_total_tokens} tokens)"
        if s.max_cost is not None and self.cost_usd >= s.max_cost:
            return f"cost limit reached (${self.cost_usd:.4f} >= ${s.max_cost:g})"
        if s.max_agent_time is not None and self.agent_s >= s.max_agent_time:
            return f"agent time limit reached ({self.agent_s:.1f}s >= {s.max_agent_time:g}s)"
        return None


#: Tools whose time is the harness's (training, evaluation), not the agent's.
EXCLUDED_TIME = ("test", "submit")


class LLMAgent:
    """The tool-calling loop over an OpenAI-compatible chat endpoint.

    ``messages`` is the conversation so far (rebuilt from the transcript on resume), ``spend``
    what it has used of the run limits in ``client.settings``.
    """

    def __init__(
        self,
        client: ChatClient,
        tools_schema: list[ToolSchema],
        messages: list[Message],
        *,
        mode: str = "agent",
        spend: Spend | None = None,
        on_text: Callable[[str], None] | None = None,
        on_retry: Callable[[str], None] | None = None,
    ) -> None:
        self.client = client
        self.tools_schema = tools_schema
        self.messages = messages
        self.mode = mode
        self.spend = spend or Spend()
        self.on_text = on_text
        self.on_retry = on_retry

    def run(self, tools: ToolBox) -> None:
        """Loop until Submitted or LimitsExceeded is raised; an agent that stops without
        submitting has its latest completed test submitted for it."""
        self._finish_pending(tools)
        if self.mode == "vanilla":
            return self._run_vanilla(tools)
        try:
            self._loop(tools)
        except LimitsExceeded as stop:
            if tools.auto_submit(str(stop)):
                raise Submitted(f"{AUTO}{stop}") from stop
            raise

    def _loop(self, tools: ToolBox) -> None:
        import env  # the agent texts; imported here so that `runner --help` does not pay for env

        replies_without_tool = 0
        reminded = any(
            m.get("role") == "user" and str(m.get("content", "")).startswith("[Reminder]")
            for m in self.messages
        )
        while True:
            budget = tools.budget()
            if budget.submitted:
                state = tools.session.state.submission
                if state is not None and state.auto:
                    raise Submitted(f"{AUTO}step budget spent ({budget.max_steps})")
                raise Submitted("already submitted")
            if budget.steps_left <= 0:
                raise LimitsExceeded(f"step budget spent ({budget.steps_used}/{budget.max_steps})")
            limit = self.spend.exceeded(self.client.settings)
            if limit is not None:
                raise LimitsExceeded(limit)
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
        """MLS-Bench's vanilla: one response, its edits, one test, submitted (so it gets the
        final evaluation: hidden settings, final seeds)."""
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
                self.messages, self.tools_schema, on_event=self._events(tools.transcript.append)
            )
        except LLMError as e:
            tools.transcript.append("llm_error", error=str(e), url=self.client.url)
            raise
        self.messages.append(reply.message)
        usage = {
            "prompt_tokens": reply.usage.prompt_tokens,
            "completion_tokens": reply.usage.completion_tokens,
        }
        self.spend.add_reply(usage, reply.usage.cost_usd, reply.latency_s)
        tools.transcript.append(
            "message",
            message=reply.message,
            usage=usage,
            cost_usd=reply.usage.cost_usd,
            elapsed_s=reply.latency_s,
            attempts=reply.attempts,
            model=self.client.model,
        )
        if self.on_text and reply.message.get("content"):
            self.on_text(str(reply.message["content"]))
        return reply

    def _events(self, append: EventSink) -> EventSink:
        """Transcript events of the client, each retry also shown live."""

        def sink(kind: str, **data: object) -> object:
            if kind == "llm_retry" and self.on_retry is not None:
                self.on_retry(
                    f"model endpoint retry {data.get('attempt')}: {data.get('error')}; "
                    f"waiting {data.get('delay_s')}s"
                )
            return append(kind, **data)

        return sink

    def _execute(self, tools: ToolBox, call: ToolCall) -> None:
        name = call["function"]["name"]
        start = time.monotonic()
        result = tools.call(name, call["function"]["arguments"], call_id=call["id"])
        if name not in EXCLUDED_TIME:
            self.spend.agent_s += time.monotonic() - start
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
