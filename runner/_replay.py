"""`runner replay RUN_DIR`: re-drive a recorded run's tool calls and compare the observations.

The recorded ``tool_call`` events of ``transcript.jsonl`` (with their arguments, in order) are
sent to a fresh session of the same task, profile, budgets, seeds, sandbox and data (from
``run.json``) in a new run directory, through the runner's own ToolBox, so the replay is
itself a run that can be read. Each observation is compared with the recorded ``tool_result``
text: identical texts reproduce the run (an agent run, or the harness after a change); a
difference is shown as a unified diff. Wall-clock timings, the marks of cached results and
the runs' own ids and directories differ by nature and are masked on both sides before
comparing.

By default the replay's tests run with no result cache, so the harness really re-runs each
test (training is deterministic on CPU for the same seed); ``use_cache`` reuses cached
results of identical workspaces instead (fast, but it then checks the texts, not the runs).
A replay is never recorded in the leaderboard.
"""

from __future__ import annotations

import difflib
import re
from pathlib import Path
from typing import TYPE_CHECKING

from pydantic import BaseModel, ConfigDict, JsonValue, TypeAdapter

import env
from runner import _components as comp
from runner._run import ActiveRun, RunError, new_run_id, read_run_info
from runner._transcript import Event, read_transcript

if TYPE_CHECKING:
    from runner._agents import ToolArguments
    from runner._display import Display

# What differs between two runs of the same calls without meaning anything, besides timings
# (`env.mask_timings`): the marks of a result that came from the cache (env/_texts.py:
# ``[cached]``, ``[cached, seed 1]`` on a line of its own after a job without metrics,
# `` [cached]`` after its final metrics).
_CACHE_MARKS = [
    (re.compile(r"^\[cached[^\]\n]*\]\n", re.M), ""),
    (re.compile(r" \[cached\]$", re.M), ""),
]


_JSON: TypeAdapter[JsonValue] = TypeAdapter(JsonValue)


class ReplayStep(BaseModel):
    """One recorded tool call, replayed: both observations and their diff ("" when equal)."""

    model_config = ConfigDict(extra="forbid")

    step: int
    tool: str
    arguments: JsonValue
    call_id: str | None
    same: bool
    recorded: str | None
    replayed: str
    diff: str


class ReplayReport(BaseModel):
    """The replay of one run (what `runner replay --json` prints)."""

    model_config = ConfigDict(extra="forbid")

    run_id: str
    replay_run_id: str
    replay_dir: str
    use_cache: bool
    steps: list[ReplayStep]

    @property
    def matches(self) -> bool:
        """Every observation reproduced."""
        return all(step.same for step in self.steps)


def recorded_calls(events: list[Event]) -> list[tuple[Event, str | None]]:
    """Each ``tool_call`` event in order with the text of the ``tool_result`` that answered it
    (None when the run stopped before one was written)."""
    calls: list[tuple[Event, str | None]] = []
    open_call: Event | None = None
    for event in events:
        if event["kind"] == "tool_call":
            if open_call is not None:
                calls.append((open_call, None))
            open_call = event
        elif event["kind"] == "tool_result" and open_call is not None:
            text = event.get("text")
            calls.append((open_call, text if isinstance(text, str) else None))
            open_call = None
    if open_call is not None:
        calls.append((open_call, None))
    return calls


def replay_run(
    run_dir: Path, runs_dir: Path, display: Display, *, use_cache: bool = False
) -> ReplayReport:
    """Replay the tool calls of ``run_dir`` in a new run directory under ``runs_dir``."""
    info = read_run_info(run_dir)
    calls = recorded_calls(read_transcript(run_dir))
    if not calls:
        raise RunError(f"run {info.run_id} recorded no tool calls to replay ({run_dir})")
    config = info.config.model_copy(update={"db": None})  # a replay is not a result
    home = Path(config.home) if config.home else comp.pretrainbench_home()
    executor = comp.make_executor(
        config.sandbox,
        home / "cache" if use_cache else None,
        allow_weak_isolation=config.allow_weak_isolation,
    )
    active = ActiveRun.create(
        config,
        runs_dir,
        display,
        run_id=new_run_id(info.task_id, f"replay-{config.agent}"),
        executor=executor,
    )
    active.transcript.append("replay", of_run=info.run_id, of_dir=str(run_dir), use_cache=use_cache)
    display.start(f"replay of {info.run_id} · run {active.info.run_id}")
    steps: list[ReplayStep] = []
    try:
        for number, (call, recorded) in enumerate(calls, start=1):
            arguments = call.get("arguments")
            call_id = call.get("call_id")
            result = active.tools.call(
                str(call["name"]),
                _tool_arguments(arguments),
                call_id=call_id if isinstance(call_id, str) else None,
            )
            mask = (str(run_dir), str(active.run_dir), info.run_id, active.info.run_id)
            before = _comparable(recorded, mask)
            after = _comparable(result.text, mask)
            steps.append(
                ReplayStep(
                    step=number,
                    tool=str(call["name"]),
                    arguments=_JSON.validate_python(arguments),
                    call_id=call_id if isinstance(call_id, str) else None,
                    same=before == after,
                    recorded=recorded,
                    replayed=result.text,
                    diff=_diff(before, after, number),
                )
            )
    finally:
        active.finish("finished", f"replay of {info.run_id}")
        same = sum(step.same for step in steps)
        display.stop(f"replay {active.info.run_id}: {same}/{len(steps)} observations reproduced")
    return ReplayReport(
        run_id=info.run_id,
        replay_run_id=active.info.run_id,
        replay_dir=str(active.run_dir),
        use_cache=use_cache,
        steps=steps,
    )


def _tool_arguments(recorded: object) -> ToolArguments:
    """The recorded arguments as the ToolBox takes them: an object, or the model's raw
    (possibly malformed) JSON text, which the session answers with the same error again."""
    if isinstance(recorded, dict):
        return {str(key): value for key, value in recorded.items()}
    return recorded if isinstance(recorded, str) else None


def _comparable(text: str | None, mask: tuple[str, ...]) -> str:
    """``text`` without timings and cache marks, and with the two runs' own ids and
    directories replaced by placeholders (longest first, so that a directory is replaced before the id inside it)."""
    if text is None:
        return "<no recorded result>"
    for value in sorted(mask, key=len, reverse=True):
        text = text.replace(value, "<run>")
    for pattern, placeholder in _CACHE_MARKS:
        text = pattern.sub(placeholder, text)
    return env.mask_timings(text)


def _diff(recorded: str, replayed: str, step: int) -> str:
    if recorded == replayed:
        return ""
    lines = difflib.unified_diff(
        recorded.splitlines(),
        replayed.splitlines(),
        fromfile=f"recorded/step-{step}",
        tofile=f"replayed/step-{step}",
        lineterm="",
    )
    return "\n".join(lines) + "\n"
