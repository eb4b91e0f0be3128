"""A chat-completions client with native tool calling, retries and token accounting.

Speaks the OpenAI chat-completions protocol through the ``openai`` SDK, so any compatible
endpoint works (OPENAI_BASE_URL / OPENAI_API_KEY). Rate limits (429), server errors (5xx)
and connection failures are retried (tenacity) with exponential backoff or the server's
Retry-After, for at most ``llm_timeout_s`` of failing; every retry is reported to ``on_event``
so the transcript and the live display show it, but none of it costs the agent a step.
`AgentSettings` holds what a researcher tunes (sampling, prices, the run's limits); a missing
API key is refused by `resolve_api_key` before a run starts.
"""

from __future__ import annotations

import contextlib
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Protocol, Required, TypeAlias, TypedDict, cast
from urllib.parse import urlparse

from pydantic import BaseModel, ConfigDict, Field

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

#: The --api-key value that marks an endpoint as keyless (a local server without auth).
NO_KEY = "none"
DEFAULT_LLM_TIMEOUT_S = 60.0


class AgentSettings(BaseModel):
    """Sampling, prices and run-level limits of an LLM agent (``runner run`` options or the
    ``--agent-file``); stored in run.json and in every record of the run."""

    model_config = ConfigDict(extra="forbid")

    temperature: float | None = Field(default=None, ge=0)
    max_tokens: int | None = Field(default=None, ge=1, description="per reply")
    max_total_tokens: int | None = Field(default=None, ge=1, description="prompt + completion")
    max_cost: float | None = Field(default=None, gt=0, description="USD")
    max_agent_time: float | None = Field(
        default=None, gt=0, description="seconds of model calls and non-test tools"
    )
    price_in: float | None = Field(default=None, ge=0, description="USD per million tokens")
    price_out: float | None = Field(default=None, ge=0, description="USD per million tokens")
    llm_timeout: float = Field(
        default=DEFAULT_LLM_TIMEOUT_S, gt=0, description="seconds a call may spend failing"
    )

    def prices(self, model: str) -> tuple[float, float] | None:
        """USD per million (input, output) tokens: the settings', else the table's."""
        if self.price_in is not None or self.price_out is not None:
            return (self.price_in or 0.0, self.price_out or 0.0)
        return PRICES_PER_MTOK.get(model)


class AgentFile(AgentSettings):
    """A YAML agent file: the settings, plus the model, the endpoint and a ``limits`` block."""

    model: str | None = None
    base_url: str | None = None
    limits: dict[str, float] = Field(default_factory=dict)


LIMIT_KEYS = ("max_total_tokens", "max_cost", "max_agent_time")


def read_agent_file(path: Path) -> AgentFile:
    """The agent file at ``path``; its ``limits`` keys are folded into the settings."""
    import yaml

    try:
        raw = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
        if not isinstance(raw, dict):
            raise ValueError("the file must hold a mapping of settings")
        limits = raw.get("limits") or {}
        unknown = sorted(set(limits) - set(LIMIT_KEYS))
        if unknown:
            raise ValueError(f"unknown limits {unknown}; known: {list(LIMIT_KEYS)}")
        return AgentFile.model_validate({**raw, **limits, "limits": {}})
    except (OSError, ValueError, yaml.YAMLError) as e:
        raise LLMConfigError(f"agent file {path}: {e}") from e


def is_loopback(base_url: str | None) -> bool:
    """True for an endpoint on this machine (localhost, 127.0.0.0/8, ::1)."""
    host = urlparse(base_url or "").hostname or ""
    return host == "localhost" or host.startswith("127.") or host == "::1"


def resolve_api_key(api_key: str | None, base_url: str | None) -> str:
    """The key to send: ``api_key``, else $OPENAI_API_KEY; ``none`` or a loopback endpoint
    without a key sends a placeholder. Raises `LLMConfigError` naming the variable otherwise."""
    key = api_key or os.environ.get("OPENAI_API_KEY")
    if key and key != NO_KEY:
        return key
    url = base_url or os.environ.get("OPENAI_BASE_URL")
    if key == NO_KEY or is_loopback(url):
        return NO_KEY  # the SDK needs some key; a keyless server ignores it
    raise LLMConfigError(
        f"no API key for {url or 'the OpenAI API'}: set OPENAI_API_KEY or pass --api-key "
        f"(--api-key {NO_KEY} for an endpoint without authentication)"
    )


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


class LLMConfigError(LLMError):
    """The agent cannot be configured (no API key, a bad agent file): found before a run."""


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


def price(model: str, usage: Usage, prices: tuple[float, float] | None = None) -> float | None:
    """Cost in USD of ``usage`` at ``prices`` (USD per million input, output tokens), by
    default the table's for ``model``; None when neither knows a price."""
    entry = prices or PRICES_PER_MTOK.get(model)
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
        settings: AgentSettings | None = None,
        max_retries: int = 6,
        backoff_s: float = 2.0,
        max_backoff_s: float = 60.0,
        read_timeout_s: float = 600.0,
    ) -> None:
        import openai  # deferred: keeps `runner --help` fast

        self.model = model
        self.settings = settings or AgentSettings()
        self.max_retries = max_retries
        self.backoff_s = backoff_s
        self.max_backoff_s = max_backoff_s
        self.base_url = base_url or os.environ.get("OPENAI_BASE_URL") or None
        self._openai = openai
        bound = self.settings.llm_timeout
        self._client = openai.OpenAI(
            base_url=self.base_url,
            api_key=resolve_api_key(api_key, self.base_url),
            max_retries=0,  # we retry ourselves, so that every retry is recorded
            # reaching the endpoint is bounded by llm_timeout; a long generation is not
            timeout=openai.Timeout(max(read_timeout_s, bound), connect=bound),
        )
        self.url = str(self._client.base_url)

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
        usage.cost_usd = price(self.model, usage, self.settings.prices(self.model))
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
        tenacity for at most ``llm_timeout`` seconds, each retry reported to ``on_event`` (an
        ``llm_retry`` transcript event)."""
        import tenacity

        openai = self._openai
        transient = (
            openai.RateLimitError,
            openai.InternalServerError,
            openai.APIConnectionError,
            openai.APITimeoutError,
        )

        settings = self.settings
        bound = settings.llm_timeout

        def delay(state: tenacity.RetryCallState) -> float:
            left = bound - (time.monotonic() - start)
            return max(0.0, min(left, self._delay(state.attempt_number, _failure(state))))

        def report(state: tenacity.RetryCallState) -> None:
            error = _failure(state)
            if on_event is not None:
                on_event(
                    "llm_retry",
                    attempt=state.attempt_number,
                    status=getattr(error, "status_code", None),
                    error=f"{type(error).__name__}: {str(error)[:500]}",
                    delay_s=round(state.upcoming_sleep, 3),
                    url=self.url,
                )

        def create() -> ChatCompletion:
            return self._client.chat.completions.create(
                model=self.model,
                # Our message and schema types are subsets of the SDK's unions.
                messages=cast("list[ChatCompletionMessageParam]", messages),
                tools=cast("list[ChatCompletionToolUnionParam]", tools),
                temperature=openai.omit if settings.temperature is None else settings.temperature,
                max_tokens=openai.omit if settings.max_tokens is None else settings.max_tokens,
            )

        start = time.monotonic()
        retrying = tenacity.Retrying(
            retry=tenacity.retry_if_exception_type(transient),
            stop=tenacity.stop_after_attempt(self.max_retries + 1)
            | tenacity.stop_after_delay(bound),
            wait=delay,
            before_sleep=report,
            reraise=True,
        )
        try:
            return retrying(create), retrying.statistics["attempt_number"]
        except transient as e:
            attempts = retrying.statistics["attempt_number"]
            raise LLMError(
                f"model endpoint {self.url} failed after {attempts} attempts in "
                f"{time.monotonic() - start:.1f}s (bound {bound:g}s): {type(e).__name__}: {e}"
            ) from e
        except openai.APIStatusError as e:
            raise LLMError(
                f"model endpoint {self.url} refused the request (HTTP {e.status_code}): "
                f"{str(e)[:1000]}"
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
