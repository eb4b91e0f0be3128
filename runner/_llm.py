"""A chat-completions client with native tool calling, retries and token accounting.

Speaks the OpenAI chat-completions protocol through the ``openai`` SDK, so any compatible
endpoint works (OPENAI_BASE_URL / OPENAI_API_KEY). Rate limits (429), server errors (5xx)
and connection failures are retried (tenacity) with exponential backoff or the server's
Retry-After; every retry is reported to ``on_event`` so the transcript shows it, but none of it
costs the agent a step.
"""

from __future__ import annotations

import contextlib
import os
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Protocol, Required, TypeAlias, TypedDict, cast

if TYPE_CHECKING:
    import tenacity
    from openai.types.chat import (
        ChatCompletion,
        ChatCompletionMessageParam,
        ChatCompletionToolUnionParam,
    )

# USD per million tokens (input, output). Only models whose public price we know; others
# get no cost figure rather than a wrong one.
PRICES_PER_MTOK: dict[str, tuple[float, float]] = {
    "gpt-4o": (2.5, 10.0),
    "gpt-4o-mini": (0.15, 0.6),
    "gpt-4.1": (2.0, 8.0),
    "gpt-4.1-mini": (0.4, 1.6),
    "gpt-5": (1.25, 10.0),
    "gpt-5-mini": (0.25, 2.0),
}

#: A tool's JSON schema, as env generates it (OpenAI function-calling dialect).
ToolSchema: TypeAlias = dict[str, object]


class EventSink(Protocol):
    """Where retries are reported (`Transcript.append`)."""

    def __call__(self, kind: str, **data: object) -> object: ...


class FunctionCall(TypedDict):
    """The function part of a tool call: its name and its JSON-encoded arguments."""

    name: str
    arguments: str


class ToolCall(TypedDict):
    """One tool call of an assistant message (OpenAI chat format)."""

    id: str
    type: str
    function: FunctionCall


class Message(TypedDict, total=False):
    """One chat message as it goes to the endpoint and into the transcript."""

    role: Required[str]
    content: str
    tool_calls: list[ToolCall]
    tool_call_id: str


class LLMError(Exception):
    """The model endpoint failed for good (after retries, or a non-retryable error)."""


@dataclass
class Usage:
    """Token counts of one call, and its cost when the price table knows the model."""

    prompt_tokens: int = 0
    completion_tokens: int = 0
    cost_usd: float | None = None


@dataclass
class Reply:
    """One assistant reply: the message as it goes back into the conversation, and usage."""

    message: Message
    usage: Usage
    latency_s: float
    attempts: int
    tool_calls: list[ToolCall] = field(default_factory=list)


def price(model: str, usage: Usage) -> float | None:
    """Cost in USD of ``usage`` on ``model``, or None when the model is not in the table."""
    entry = PRICES_PER_MTOK.get(model)
    if entry is None:
        return None
    return round((usage.prompt_tokens * entry[0] + usage.completion_tokens * entry[1]) / 1e6, 6)


class ChatClient:
    """Calls ``model`` on an OpenAI-compatible endpoint, retrying transient failures."""

    def __init__(
        self,
        model: str,
        *,
        base_url: str | None = None,
        api_key: str | None = None,
        max_retries: int = 6,
        backoff_s: float = 2.0,
        max_backoff_s: float = 60.0,
        timeout_s: float = 600.0,
        temperature: float | None = None,
    ) -> None:
        import openai  # deferred: keeps `runner --help` fast

        self.model = model
        self.max_retries = max_retries
        self.backoff_s = backoff_s
        self.max_backoff_s = max_backoff_s
        self.temperature = temperature
        self._openai = openai
        self._client = openai.OpenAI(
            base_url=base_url or os.environ.get("OPENAI_BASE_URL") or None,
            api_key=api_key or os.environ.get("OPENAI_API_KEY") or "unset",
            max_retries=0,  # we retry ourselves, so that every retry is recorded
            timeout=timeout_s,
        )

    def complete(
        self,
        messages: list[Message],
        tools: list[ToolSchema],
        on_event: EventSink | None = None,
    ) -> Reply:
        """One chat completion; retries 429/5xx/connection errors with exponential backoff."""
        from openai.types.chat import ChatCompletionMessageFunctionToolCall

        start = time.monotonic()
        response, attempts = self._create(messages, tools, on_event)
        if not response.choices:
            raise LLMError("model endpoint returned no choices")
        choice = response.choices[0].message
        tool_calls: list[ToolCall] = [
            {
                "id": tc.id,
                "type": "function",
                "function": {"name": tc.function.name, "arguments": tc.function.arguments or ""},
            }
            for tc in (choice.tool_calls or [])
            if isinstance(tc, ChatCompletionMessageFunctionToolCall)
        ]
        message: Message = {"role": "assistant", "content": choice.content or ""}
        if tool_calls:
            message["tool_calls"] = tool_calls
        usage = Usage()
        if response.usage is not None:
            usage.prompt_tokens = response.usage.prompt_tokens or 0
            usage.completion_tokens = response.usage.completion_tokens or 0
        usage.cost_usd = price(self.model, usage)
        return Reply(
            message=message,
            usage=usage,
            latency_s=round(time.monotonic() - start, 3),
            attempts=attempts,
            tool_calls=tool_calls,
        )

    def _create(
        self, messages: list[Message], tools: list[ToolSchema], on_event: EventSink | None
    ) -> tuple[ChatCompletion, int]:
        """The completion and how many attempts it took; transient failures are retried by
        tenacity, each retry reported to ``on_event`` (an ``llm_retry`` transcript event)."""
        import tenacity

        openai = self._openai
        transient = (
            openai.RateLimitError,
            openai.InternalServerError,
            openai.APIConnectionError,
            openai.APITimeoutError,
        )

        def delay(state: tenacity.RetryCallState) -> float:
            return self._delay(state.attempt_number, _failure(state))

        def report(state: tenacity.RetryCallState) -> None:
            error = _failure(state)
            if on_event is not None:
                on_event(
                    "llm_retry",
                    attempt=state.attempt_number,
                    status=getattr(error, "status_code", None),
                    error=f"{type(error).__name__}: {str(error)[:500]}",
                    delay_s=state.upcoming_sleep,
                )

        def create() -> ChatCompletion:
            return self._client.chat.completions.create(
                model=self.model,
                # Our message and schema types are subsets of the SDK's unions.
                messages=cast("list[ChatCompletionMessageParam]", messages),
                tools=cast("list[ChatCompletionToolUnionParam]", tools),
                temperature=openai.omit if self.temperature is None else self.temperature,
            )

        retrying = tenacity.Retrying(
            retry=tenacity.retry_if_exception_type(transient),
            stop=tenacity.stop_after_attempt(self.max_retries + 1),
            wait=delay,
            before_sleep=report,
            reraise=True,
        )
        try:
            return retrying(create), retrying.statistics["attempt_number"]
        except transient as e:
            attempts = retrying.statistics["attempt_number"]
            raise LLMError(
                f"model endpoint failed after {attempts} attempts: {type(e).__name__}: {e}"
            ) from e
        except openai.APIStatusError as e:
            raise LLMError(
                f"model endpoint refused the request (HTTP {e.status_code}): {str(e)[:1000]}"
            ) from e

    def _delay(self, attempt: int, error: BaseException) -> float:
        """The server's Retry-After when it gives one (capped), else exponential backoff."""
        response = getattr(error, "response", None)
        retry_after = response.headers.get("retry-after") if response is not None else None
        if retry_after:
            # An HTTP-date Retry-After is ignored: the exponential delay is good enough.
            with contextlib.suppress(ValueError):
                return min(self.max_backoff_s, max(0.0, float(retry_after)))
        return min(self.max_backoff_s, self.backoff_s * 2 ** (attempt - 1))


def _failure(state: tenacity.RetryCallState) -> BaseException:
    """The exception of the attempt that just failed."""
    error = state.outcome.exception() if state.outcome is not None else None
    if error is None:  # tenacity only retries on an exception here
        raise RuntimeError("retry without an exception")
    return error
