"""One run, start to finish: a run directory, a session, an agent, the record.

``runs/<run-id>/run.json`` says what the run is (task, agent, profile, budgets, versions,
hardware); ``session.json`` (env) holds the tool state; ``transcript.jsonl`` everything said.
`resume_run` continues a killed run from those three files.
"""

from __future__ import annotations

import json
import math
import re
import secrets
import traceback
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from runner import _components as comp
from runner._agents import (
    SYSTEM_PROMPT,
    VANILLA_INSTRUCTION,
    BaselineAgent,
    LimitsExceeded,
    LLMAgent,
    Submitted,
    ToolBox,
    conversation_from_transcript,
)
from runner._display import Display
from runner._hardware import git_commit, hardware_info, library_versions
from runner._llm import LLMError
from runner._transcript import Transcript, read_transcript

RUN_FORMAT_VERSION = 1
AGENT_SPEC = r"^(baseline|openai|mcp|http):[A-Za-z0-9][A-Za-z0-9._:@/+-]{0,150}$"
RunStatus = Literal["running", "finished", "failed", "infra_error", "incomplete"]


class RunError(Exception):
    """A run that cannot start or continue; the message says why and where."""


class RunConfig(BaseModel):
    """What the user asked for (stored in run.json; secrets such as API keys never are)."""

    model_config = ConfigDict(extra="forbid")

    task: str
    agent: str = Field(
        pattern=AGENT_SPEC,
        description="baseline:<name>, openai:<model>, or "
        "mcp:<label> / http:<label> for externally driven runs",
    )
    mode: Literal["agent", "vanilla"] = "agent"
    profile: str = "tiny"
    sandbox: Literal["local", "docker", "slurm"] = "local"
    seeds: list[int] | None = None
    max_steps: int | None = Field(default=None, ge=1)
    max_tests: int | None = Field(default=None, ge=1)
    base_url: str | None = None
    db: str | None = None
    home: str | None = None
    data_source: Literal["offline", "fineweb"] = "offline"
    allow_weak_isolation: bool = False


class RunInfo(BaseModel):
    """run.json: the run's identity and provenance."""

    model_config = ConfigDict(extra="forbid")

    format_version: int = RUN_FORMAT_VERSION
    run_id: str
    task_id: str
    config: RunConfig
    max_steps: int
    max_tests: int
    codebase_version: str
    git_commit: str | None
    hardware: dict[str, Any]
    library_versions: dict[str, str]
    started_at: datetime
    finished_at: datetime | None = None
    status: RunStatus = "running"
    reason: str | None = None
    resumed: int = 0


@dataclass
class RunOutcome:
    """What a run produced: its directory, info, and the leaderboard records stored."""

    run_dir: Path
    info: RunInfo
    records: list[Any]


def new_run_id(task_id: str, agent: str) -> str:
    """``<task>-<agent>-<UTC time>-<random>``, safe for URLs and file names."""
    slug = re.sub(r"[^A-Za-z0-9._-]+", "-", agent).strip("-")[:60] or "run"
    stamp = datetime.now(UTC).strftime("%Y%m%d-%H%M%S")
    return f"{task_id}-{slug}-{stamp}-{secrets.token_hex(2)}"


def write_run_info(run_dir: Path, info: RunInfo) -> None:
    """Atomically (re)write run.json."""
    tmp = run_dir / ".run.json.tmp"
    tmp.write_text(info.model_dump_json(indent=2) + "\n", encoding="utf-8")
    tmp.replace(run_dir / "run.json")


def read_run_info(run_dir: Path) -> RunInfo:
    """run.json of a run directory, validated."""
    path = run_dir / "run.json"
    if not path.is_file():
        raise RunError(f"{run_dir} is not a run directory (no run.json)")
    try:
        return RunInfo.model_validate_json(path.read_text(encoding="utf-8"))
    except ValueError as e:
        raise RunError(f"{path} is not a valid run.json: {e}") from e


class ActiveRun:
    """An open run: its directory, run.json, the env session, the transcript and the ToolBox.

    Used by the agent loop (`start_run`, `resume_run`) and by externally driven runs (the
    MCP server and the HTTP API), which call ``tools.call`` and then `finish`.
    """

    def __init__(
        self,
        run_dir: Path,
        info: RunInfo,
        task: Any,
        session: Any,
        transcript: Transcript,
        display: Display,
    ) -> None:
        self.run_dir = run_dir
        self.info = info
        self.task = task
        self.session = session
        self.transcript = transcript
        self.display = display
        self.tools = ToolBox(
            session, transcript, comp.budget_view, comp.edited_files, display.on_tool
        )
        self.records: list[Any] = []

    @classmethod
    def create(
        cls,
        config: RunConfig,
        runs_dir: Path,
        display: Display,
        *,
        gpus: list[str] | None = None,
        run_id: str | None = None,
        executor: Any = None,
    ) -> ActiveRun:
        """Make ``runs_dir/<run-id>/`` with run.json and a fresh session."""
        task = comp.load_task(config.task)
        run_id = run_id or new_run_id(task.id, config.agent)
        run_dir = runs_dir / run_id
        run_dir.mkdir(parents=True, exist_ok=False)
        max_steps = config.max_steps or task.budgets.max_steps
        max_tests = config.max_tests or task.budgets.max_tests
        if config.agent.startswith("baseline:") or config.mode == "vanilla":
            max_tests = 1  # one test, then submit (the 2-test rule is for larger budgets)
        config = config.model_copy(update={"max_steps": max_steps, "max_tests": max_tests})
        home = Path(config.home) if config.home else comp.pretrainbench_home()
        executor = executor or comp.make_executor(
            config.sandbox, home / "cache", allow_weak_isolation=config.allow_weak_isolation
        )
        info = RunInfo(
            run_id=run_id,
            task_id=task.id,
            config=config,
            max_steps=max_steps,
            max_tests=max_tests,
            codebase_version=comp.codebase_version(comp.codebase_dir(task)),
            git_commit=git_commit(comp.REPO_ROOT),
            # the guarantees the sandbox gave this run: recorded and shown on its page
            hardware={**hardware_info(gpus), "sandbox": comp.sandbox_description(executor)},
            library_versions=library_versions(),
            started_at=datetime.now(UTC),
        )
        write_run_info(run_dir, info)
        session = comp.open_session(
            task,
            run_dir,
            executor=executor,
            profile=config.profile,
            data=comp.data_paths(home, source=config.data_source),
            max_steps=max_steps,
            max_tests=max_tests,
            seeds=config.seeds,
            progress=display.on_progress,
        )
        transcript = Transcript(run_dir, header=_header(info))
        transcript.append("start", run_id=run_id)
        return cls(run_dir, info, task, session, transcript, display)

    @classmethod
    def reopen(cls, run_dir: Path, display: Display, *, executor: Any = None) -> ActiveRun:
        """Reopen a killed run; `reconcile` then finishes work that was in flight."""
        info = read_run_info(run_dir)
        if info.status == "finished":
            raise RunError(f"run {info.run_id} already finished ({info.reason}); nothing to resume")
        task = comp.load_task(info.config.task)
        info = info.model_copy(
            update={"resumed": info.resumed + 1, "status": "running", "finished_at": None}
        )
        write_run_info(run_dir, info)
        config = info.config
        home = Path(config.home) if config.home else comp.pretrainbench_home()
        try:
            session = comp.resume_session(
                run_dir,
                executor=executor
                or comp.make_executor(
                    config.sandbox,
                    home / "cache",
                    allow_weak_isolation=config.allow_weak_isolation,
                ),
                data=comp.data_paths(home, source=config.data_source),
                progress=display.on_progress,
            )
        except Exception as e:
            raise RunError(f"cannot resume {run_dir}: {e}") from e
        transcript = Transcript(run_dir, header=_header(info))
        transcript.append("resume", run_id=info.run_id, count=info.resumed)
        return cls(run_dir, info, task, session, transcript, display)

    def finish(self, status: RunStatus, reason: str | None) -> list[Any]:
        """Close the transcript, rewrite run.json, build and store the leaderboard records."""
        budget = comp.budget_view(self.session)
        if status == "finished" and not budget.submitted:
            status = "incomplete"
        if (
            status == "finished"
            and self.session.final is not None
            and self.session.final.status == "infra_error"
        ):
            status = "infra_error"
        self.transcript.append(
            "end",
            status=status,
            reason=reason,
            steps_used=budget.steps_used,
            tests_used=budget.tests_used,
            submitted=budget.submitted,
        )
        self.transcript.close()
        self.info = self.info.model_copy(
            update={"status": status, "reason": reason, "finished_at": datetime.now(UTC)}
        )
        write_run_info(self.run_dir, self.info)
        self.records = build_records(self.run_dir, self.info, self.task, self.session)
        (self.run_dir / "record.json").write_text(
            json.dumps([r.model_dump(mode="json") for r in self.records], indent=1) + "\n",
            encoding="utf-8",
        )
        if self.info.config.db:
            store = comp.open_store(self.info.config.db)
            try:
                for record in self.records:
                    store.record(record)
            finally:
                close = getattr(store, "close", None)
                if close:
                    close()
        return self.records


def _header(info: RunInfo) -> dict[str, Any]:
    return {
        "run_id": info.run_id,
        "task_id": info.task_id,
        "agent": info.config.agent,
        "mode": info.config.mode,
        "profile": info.config.profile,
    }


def start_run(
    config: RunConfig,
    runs_dir: Path,
    display: Display,
    *,
    gpus: list[str] | None = None,
    api_key: str | None = None,
    run_id: str | None = None,
    executor: Any = None,
) -> RunOutcome:
    """Create ``runs_dir/<run-id>/`` and run ``config``'s agent in it to the end."""
    active = ActiveRun.create(
        config, runs_dir, display, gpus=gpus, run_id=run_id, executor=executor
    )
    return _drive(active, resume=False, api_key=api_key)


def resume_run(
    run_dir: Path,
    display: Display,
    *,
    api_key: str | None = None,
    executor: Any = None,
) -> RunOutcome:
    """Continue a killed run: the session state, the transcript and the conversation."""
    active = ActiveRun.reopen(run_dir, display, executor=executor)
    return _drive(active, resume=True, api_key=api_key)


def _drive(active: ActiveRun, *, resume: bool, api_key: str | None) -> RunOutcome:
    info, display = active.info, active.display
    config = info.config
    display.start(
        f"{config.agent} · {active.task.id} · profile {config.profile} · run {info.run_id}"
    )
    status: RunStatus = "finished"
    reason: str | None = None
    try:
        if resume:
            reconcile(active.session, active.transcript)
        agent = _build_agent(
            config,
            active.task,
            active.session,
            active.transcript,
            resume=resume,
            api_key=api_key,
            display=display,
        )
        agent.run(active.tools)
        reason = "agent returned"
    except Submitted:
        reason = "submitted"
    except LimitsExceeded as e:
        reason = str(e)
    except LLMError as e:
        status, reason = "failed", f"model endpoint: {e}"
    except (KeyboardInterrupt, SystemExit) as e:
        # Stopped from outside: the run stays resumable; say so and re-raise.
        reason = f"{type(e).__name__}; resume with `runner resume {active.run_dir}`"
        active.transcript.append("error", error=reason)
        active.transcript.close()
        write_run_info(active.run_dir, info.model_copy(update={"reason": reason}))
        display.stop(f"run {info.run_id}: stopped ({reason})")
        e.run_dir = active.run_dir  # type: ignore[union-attr]  # for the caller's message
        raise
    except Exception as e:
        # A refused baseline edit, a broken task, a bug: the run fails with its reason
        # (and the log path in the transcript); the other runs of the command go on.
        status, reason = "failed", f"{type(e).__name__}: {e}"
        active.transcript.append("error", error=reason, traceback=traceback.format_exc()[-4000:])
    records = active.finish(status, reason)
    display.stop(f"run {info.run_id}: {active.info.status} ({reason})")
    return RunOutcome(run_dir=active.run_dir, info=active.info, records=records)


def reconcile(session: Any, transcript: Transcript) -> None:
    """Bring the transcript level with the session after a crash.

    A tool call in the transcript without a result is either (a) a test or final evaluation
    still pending in the session — finished now, charged once, by `complete_pending` — or
    (b) a call the session completed but whose result never reached the transcript, or
    (c) a call the session never saw, which the agent will issue again.
    """
    events = read_transcript(transcript.path)
    open_calls: list[dict[str, Any]] = []
    results = 0
    for event in events:
        if event["kind"] == "tool_call":
            open_calls.append(event)
        elif event["kind"] == "tool_result":
            results += 1
            if open_calls:
                open_calls.pop()
    open_call = open_calls[-1] if open_calls else None
    call_id = open_call.get("call_id") if open_call else None
    if session.pending is not None:
        kind = session.pending.kind
        transcript.append("resume_pending", pending=kind, number=session.pending.number)
        result = session.complete_pending()
        if result is not None:
            budget = comp.budget_view(session)
            transcript.append(
                "tool_result",
                name="test" if kind == "test" else "submit",
                call_id=call_id,
                text=result.text,
                ok=bool(result.ok),
                cost_step=result.cost_step,
                cost_test=result.cost_test,
                elapsed_s=None,
                steps_used=budget.steps_used,
                tests_used=budget.tests_used,
                resumed=True,
            )
        return
    calls = comp.session_state(session).calls
    if open_call is not None and len(calls) > results:
        record = calls[-1]
        budget = comp.budget_view(session)
        transcript.append(
            "tool_result",
            name=record.tool,
            call_id=call_id,
            ok=record.ok,
            text="[harness] This call completed just before the runner stopped; "
            "its output was lost. Use view to see the current file.",
            cost_step=record.cost_step,
            cost_test=record.cost_test,
            elapsed_s=None,
            steps_used=budget.steps_used,
            tests_used=budget.tests_used,
            resumed=True,
        )


def _build_agent(
    config: RunConfig,
    task: Any,
    session: Any,
    transcript: Transcript,
    *,
    resume: bool,
    api_key: str | None,
    display: Display,
) -> Any:
    kind, _, name = config.agent.partition(":")
    if kind == "baseline":
        baselines = {b.name: b for b in comp.load_baselines(task)}
        if name not in baselines:
            raise RunError(
                f"task {task.id} has no baseline {name!r}; it has: {', '.join(sorted(baselines))}"
            )
        return BaselineAgent(baselines[name])
    if kind == "openai":
        from runner._llm import ChatClient

        if not name:
            raise RunError("--agent openai:<model> needs a model name, e.g. openai:gpt-4o")
        client = ChatClient(name, base_url=config.base_url, api_key=api_key)
        messages = conversation_from_transcript(read_transcript(transcript.path)) if resume else []
        if not messages:
            observation = comp.initial_observation(session, task)
            if config.mode == "vanilla":
                observation = f"{observation}\n\n{VANILLA_INSTRUCTION}"
            for message in (
                {"role": "system", "content": SYSTEM_PROMPT},
                {"role": "user", "content": observation},
            ):
                messages.append(message)
                transcript.append("message", message=message)
        return LLMAgent(
            client,
            comp.tool_schemas("openai"),
            messages,
            mode=config.mode,
            on_text=lambda text: display.note(f"assistant: {text[:200]}"),
        )
    if kind in ("mcp", "http"):
        raise RunError(
            f"run {config.agent!r} is driven by an external client; reopen it with "
            "`runner mcp --run-dir <dir>` instead of `runner resume`"
        )
    raise RunError(
        f"unknown agent {config.agent!r}; use baseline:<name>, baseline:all or openai:<model>"
    )


# ── leaderboard records ──────────────────────────────────────────────────────────────────


def build_records(run_dir: Path, info: RunInfo, task: Any, session: Any) -> list[Any]:
    """The run as leaderboard RunRecords: one per baseline/vanilla/agent result it holds."""
    from leaderboard import FinalRecord, RunRecord

    state = comp.session_state(session)
    config = info.config
    kind, _, name = config.agent.partition(":")
    tests = [row for t in state.tests for row in _rows(t.number, t.result)]
    final = None
    submitted = state.submission
    if submitted is not None and state.final is not None:
        final = FinalRecord(
            test_number=submitted.test_number,
            status=state.final.status,
            reason=state.final.reason,
            per_seed=_rows(submitted.test_number, state.final),
        )
    chosen = next((t for t in state.tests if submitted and t.number == submitted.test_number), None)
    events = read_transcript(run_dir)
    sources = {r.dataset_source for t in state.tests for r in t.result.results if r.dataset_source}
    common: dict[str, Any] = dict(
        task_id=task.id,
        task_title=getattr(task, "title", None),
        agent=config.agent,
        profile=config.profile,
        max_steps=info.max_steps,
        max_tests=info.max_tests,
        codebase_version=info.codebase_version,
        dataset_source=",".join(sorted(sources)) or config.data_source,
        hardware=info.hardware,
        library_versions=info.library_versions,
        git_commit=info.git_commit,
        started_at=info.started_at,
        finished_at=info.finished_at,
        metric_specs=metric_specs(task, config.profile),
        transcript_ref=str(run_dir / "transcript.jsonl"),
    )
    status = info.status
    run_type: Literal["baseline", "vanilla", "agent"]
    model: str | None
    if kind == "baseline":
        run_type, method, model = "baseline", name, None
        reference = name == getattr(task, "reference_baseline", None)
    else:
        method = name or config.agent
        run_type = "vanilla" if config.mode == "vanilla" else "agent"
        model, reference = method, False
    records = [
        RunRecord(
            run_id=info.run_id,
            type=run_type,
            method=method,
            model=model,
            reference=reference,
            status=status,
            tests=tests,
            final=final,
            regions=chosen.regions if chosen else {},
            diff=chosen.diff if chosen else "",
            transcript=events,
            **common,
        )
    ]
    if run_type == "agent" and state.tests:
        # MLS-Bench "vanilla": the agent's first test, shown beside its submitted result.
        first = min(state.tests, key=lambda t: t.number)
        records.append(
            RunRecord(
                run_id=f"{info.run_id}:vanilla",
                type="vanilla",
                method=method,
                model=model,
                status="finished",
                tests=_rows(first.number, first.result),
                final=None,
                regions=first.regions,
                diff=first.diff,
                transcript=None,
                **common,
            )
        )
    return records


def _rows(number: int, result: Any) -> list[Any]:
    from leaderboard import SeedResult

    rows = []
    for r in result.results:
        # Only numeric curve fields go to the leaderboard (plots); the full curve stays on disk.
        curve: list[dict[str, float | None]] = [
            {
                str(k): float(v)
                for k, v in point.items()
                if isinstance(v, int | float) and not isinstance(v, bool)
            }
            for point in r.curve
        ]
        rows.append(
            SeedResult(
                number=number,
                setting=r.setting,
                seed=r.seed,
                status=r.status,
                reason=r.reason,
                metrics={f"{k}_{r.setting}": float(v) for k, v in r.metrics.items()},
                elapsed_s=max(0.0, float(r.elapsed_s)) if math.isfinite(r.elapsed_s) else None,
                curve=curve,
            )
        )
    return rows


def metric_specs(task: Any, profile: str) -> list[Any]:
    """The task's metrics bound to the job of this profile that reports each."""
    from leaderboard import MetricInfo

    return [
        MetricInfo(
            name=metric.name,
            setting=task.metric_job(metric, profile).label,
            direction=metric.direction,
            bound=metric.bound,
            weight=metric.weight,
            hidden=metric.hidden,
            primary=metric.primary,
        )
        for metric in task.metrics
    ]


def summary_rows(records: list[Any]) -> list[dict[str, Any]]:
    """Per record: method, type, status and every metric value of its result rows.

    Researchers see all metrics, hidden ones too (their header carries a dagger): hidden means
    hidden from the agent during its run, not from the people reading the results.
    """
    rows = []
    for record in records:
        visible = list(record.metric_specs)
        values: dict[str, float] = {}
        result_rows = record.result_rows()
        for spec in visible:
            found = [r.metrics[spec.key] for r in result_rows if spec.key in r.metrics]
            if found:
                values[spec.key] = sum(found) / len(found)
        status = record.result_status()
        note = ""
        if status != "ok":
            reasons = [record.final.reason] if record.final is not None else []
            reasons += [r.reason for r in result_rows if r.status != "ok"]
            note = next((r for r in reasons if r), "") or "no submitted result"
        rows.append(
            {
                "run_id": record.run_id,
                "method": record.method,
                "type": record.type,
                "reference": record.reference,
                "status": status,
                "note": note if len(note) <= 80 else note[:77] + "...",
                "metrics": values,
                "headers": {
                    s.key: f"{s.name}{'†' if s.hidden else ''}\n{s.setting}" for s in visible
                },
                "primary": next((s.key for s in visible if s.primary), None),
            }
        )
    return rows
