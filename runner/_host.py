"""Runs driven from outside the runner (an MCP client, an HTTP API client).

A `HostedRun` is an `ActiveRun` whose tool calls arrive one at a time from the network; it
serialises them, fans progress out to listeners, and records the run on submit.

`_FanOut` is the only way from a hosted session's live events to an agent-facing stream (the
HTTP API's server-sent events, MCP progress notifications): whatever it withholds, no agent
sees. It withholds every event that names a hidden setting — the final evaluation of a submit
runs them, and their mere progress would tell the agent what is measured behind its back. (The
transcript records no progress, only tool results, which the session renders for the agent.)
"""

from __future__ import annotations

import contextlib
import json
import queue
import threading
from pathlib import Path
from typing import TYPE_CHECKING

from runner._agents import BudgetView, ToolArguments
from runner._display import Display
from runner._run import ActiveRun, RunConfig, RunError, RunStatus, read_run_info
from runner._transcript import Event

if TYPE_CHECKING:
    from env import ToolResult
    from sandbox import Executor, ProgressEvent


#: The agent kinds of a run an external client drives. A hosted run is labelled with one of
#: them, never ``baseline:`` or ``openai:``: the label decides a run's type on the leaderboard
#: and whether its jobs may add to the shared compile cache, and a client's code is untrusted.
HOSTED_KINDS = ("http", "mcp")


def check_hosted_agent(agent: str) -> None:
    """Refuse a hosted run labelled as a kind of run the harness drives itself."""
    if agent.partition(":")[0] not in HOSTED_KINDS:
        raise RunError(
            f"a run driven by an external client is labelled http:<name> or mcp:<name>, "
            f"not {agent!r}"
        )


class BusyError(Exception):
    """Another tool call of the same session is still running."""


class _FanOut(Display):
    """A Display that forwards progress and tool events to subscribed queues.

    Events naming a hidden setting are dropped here, once, for every subscriber.
    """

    def __init__(self) -> None:
        super().__init__()
        self._lock = threading.Lock()
        self._queues: list[queue.Queue[Event]] = []
        # None until `withhold` is called with the session's labels: until then no event
        # about any setting goes out (fail closed), since none can be told apart.
        self._hidden: frozenset[str] | None = None

    def withhold(self, hidden_labels: frozenset[str]) -> None:
        """Drop from now on every event that names one of ``hidden_labels``."""
        self._hidden = frozenset(hidden_labels)

    def _names_hidden(self, event: Event) -> bool:
        if self._hidden is None:
            return "setting" in event
        # The whole event, not just its "setting": a message or a later field naming a
        # hidden setting must not slip through either.
        text = json.dumps(event, default=str)
        return any(label in text for label in self._hidden)

    def subscribe(self) -> queue.Queue[Event]:
        """A queue that receives every event published from now on."""
        q: queue.Queue[Event] = queue.Queue(maxsize=10_000)
        with self._lock:
            self._queues.append(q)
        return q

    def unsubscribe(self, q: queue.Queue[Event]) -> None:
        """Stop delivering to ``q``."""
        with self._lock:
            if q in self._queues:
                self._queues.remove(q)

    def publish(self, event: Event) -> None:
        """Give ``event`` to every subscriber, unless it names a hidden setting."""
        if self._names_hidden(event):
            return
        with self._lock:
            targets = list(self._queues)
        for q in targets:
            # A reader that stopped reading loses events, not the run.
            with contextlib.suppress(queue.Full):
                q.put_nowait(event)

    def on_tool(self, name: str, arguments: ToolArguments, budget: BudgetView) -> None:
        self.publish(
            {
                "event": "tool",
                "tool": name,
                "steps_used": budget.steps_used,
                "tests_used": budget.tests_used,
            }
        )

    def on_progress(self, event: ProgressEvent) -> None:
        self.publish({"event": "progress", **event.model_dump(mode="json")})


class HostedRun:
    """One session served to an external agent; tool calls are serialised."""

    def __init__(
        self,
        config: RunConfig,
        runs_dir: Path,
        *,
        run_id: str | None = None,
        executor: Executor | None = None,
    ) -> None:
        check_hosted_agent(config.agent)
        self.events = _FanOut()
        self.active = ActiveRun.create(
            config, runs_dir, self.events, run_id=run_id, executor=executor
        )
        self.events.withhold(self.active.session.hidden_labels)
        self._lock = threading.Lock()
        self.finished = False
        self.busy_with: str | None = None

    @classmethod
    def reopen(cls, run_dir: Path, *, executor: Executor | None = None) -> HostedRun:
        """Serve an existing (killed) hosted run again; work in flight is finished first."""
        from runner._run import reconcile

        check_hosted_agent(read_run_info(run_dir).config.agent)
        self = cls.__new__(cls)
        self.events = _FanOut()
        self.active = ActiveRun.reopen(run_dir, self.events, executor=executor)
        self.events.withhold(self.active.session.hidden_labels)
        self._lock = threading.Lock()
        self.finished = False
        self.busy_with = None
        reconcile(self.active.session, self.active.transcript)
        return self

    @property
    def run_id(self) -> str:
        """The run's id (also its directory name)."""
        return self.active.info.run_id

    def observation(self) -> str:
        """The agent's initial observation."""
        return self.active.session.initial_observation()

    def call(self, name: str, arguments: ToolArguments, *, wait: bool = True) -> ToolResult:
        """Run one tool call; raises BusyError when ``wait`` is false and one is running."""
        if not self._lock.acquire(blocking=wait):
            raise BusyError(f"session {self.run_id} is running {self.busy_with}; try again later")
        try:
            self.busy_with = name
            result = self.active.tools.call(name, arguments)
            self.events.publish(
                {"event": "result", "tool": name, "ok": bool(result.ok), "done": bool(result.done)}
            )
            if result.done and not self.finished:
                self.finish(
                    "finished",
                    "submitted" if self.active.session.submission else "budget exhausted",
                )
            return result
        finally:
            self.busy_with = None
            self._lock.release()

    def budget(self) -> dict[str, int | bool | None]:
        """Budget use and whether the session is over."""
        view = BudgetView.of(self.active.session)
        submission = self.active.session.submission
        return {
            "steps_used": view.steps_used,
            "max_steps": view.max_steps,
            "tests_used": view.tests_used,
            "max_tests": view.max_tests,
            "submitted_test": submission.test_number if submission else None,
            "done": bool(self.active.session.done),
        }

    def finish(self, status: RunStatus, reason: str) -> None:
        """Record the run (once)."""
        if self.finished:
            return
        self.finished = True
        self.active.finish(status, reason)
        self.events.publish({"event": "end", "status": self.active.info.status})
