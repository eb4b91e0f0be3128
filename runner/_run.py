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
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Literal, TypedDict

from pydantic import BaseModel, ConfigDict, Field, JsonValue, model_validator

from runner import _components as comp
from runner._agents import (
    AUTO,
    Agent,
    BaselineAgent,
    BudgetView,
    LimitsExceeded,
    LLMAgent,
    Spend,
    Submitted,
    ToolBox,
    append_tool_result,
    conversation_from_transcript,
)
from runner._choices import DataSource, RunMode, SandboxKind
from runner._display import Display
from runner._hardware import git_commit, hardware_info, library_versions
from runner._llm import AgentSettings, LLMError, Message, ToolSchema
from runner._transcript import Event, Transcript, read_transcript

if TYPE_CHECKING:
    from env import Session, TaskSpec
    from leaderboard import MetricInfo, RunRecord, SeedRecord, Store
    from leaderboard._records import RunType
    from sandbox import DataPaths, Executor, TestResult

RUN_FORMAT_VERSION = 1
AGENT_SPEC = r"^(baseline|method|openai|mcp|http):[A-Za-z0-9][A-Za-z0-9._:@/+-]{0,150}$"
RunStatus = Literal["running", "finished", "failed", "infra_error", "incomplete"]


class RunError(Exception):
    """A run that cannot start or continue; the message says why and where."""


class RunConfig(BaseModel):
    """What the user asked for (stored in run.json; secrets such as API keys never are)."""

    model_config = ConfigDict(extra="forbid")

    task: str
    agent: str = Field(
        pattern=AGENT_SPEC,
        description="baseline:<name>, method:<label> (a hand-written method: ``regions``), "
        "openai:<model>, or mcp:<label> / http:<label> for externally driven runs",
    )
    mode: RunMode = RunMode.AGENT
    profile: str  # a profile of the task (`runner run --profile auto` picks the task's default)
    sandbox: SandboxKind = SandboxKind.LOCAL
    seeds: list[int] | None = None  # tests and the final evaluation
    final_seeds: list[int] | None = None  # the final evaluation only (wins over ``seeds``)
    max_steps: int | None = Field(default=None, ge=1)
    max_tests: int | None = Field(default=None, ge=1)
    base_url: str | None = None
    agent_settings: AgentSettings = Field(default_factory=AgentSettings)
    db: str | None = None
    home: str | None = None
    data_source: DataSource = DataSource.OFFLINE
    allow_weak_isolation: bool = False
    force: bool = False  # record a result identical to a stored one, as its repeat
    #: a ``method:`` run's region texts (region name → body), edited in like a baseline's
    regions: dict[str, str] = Field(default_factory=dict)
    #: the sweep a ``method:`` run is a point of (`runner sweep`), and the point's overrides
    sweep_id: str | None = None
    sweep_point: dict[str, int | float | str | bool] | None = None

    @model_validator(mode="after")
    def _method_has_regions(self) -> RunConfig:
        is_method = self.agent.startswith("method:")
        if is_method and not self.regions and self.sweep_point is None:
            raise ValueError("a method: run needs at least one region (--region NAME=FILE)")
        if not is_method and (self.regions or self.sweep_id):
            raise ValueError("regions and sweeps belong to method: runs only")
        return self


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
    hardware: dict[str, JsonValue]
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
    records: list[RunRecord]
    #: run id → the stored run whose identical result kept this one from being recorded
    identical_to: dict[str, str] = field(default_factory=dict)


def new_run_id(task_id: str, agent: str) -> str:
    """``<task>-<agent>-<UTC time>-<random>``, safe for URLs and file names."""
    slug = re.sub(r"[^A-Za-z0-9._-]+", "-", agent).strip("-")[:60] or "run"
    stamp = datetime.now(UTC).strftime("%Y%m%d-%H%M%S")
    return f"{task_id}-{slug}-{stamp}-{secrets.token_hex(2)}"


def write_run_info(run_dir: Path, info: RunInfo) -> None:
    """Atomically (re)write run.json."""
    from sandbox import write_atomic

    write_atomic(run_dir / "run.json", info.model_dump_json(indent=2) + "\n")


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
        task: TaskSpec,
        session: Session,
        transcript: Transcript,
        display: Display,
    ) -> None:
        self.run_dir = run_dir
        self.info = info
        self.task = task
        self.session = session
        self.transcript = transcript
        self.display = display
        self.tools = ToolBox(session, transcript, display.on_tool)
        self.records: list[RunRecord] = []
        self.identical_to: dict[str, str] = {}

    @classmethod
    def create(
        cls,
        config: RunConfig,
        runs_dir: Path,
        display: Display,
        *,
        gpus: list[str] | None = None,
        run_id: str | None = None,
        executor: Executor | None = None,
    ) -> ActiveRun:
        """Make ``runs_dir/<run-id>/`` with run.json and a fresh session."""
        from sandbox import hash_tree

        task = comp.load_task(config.task)
        run_id = run_id or new_run_id(task.id, config.agent)
        run_dir = runs_dir / run_id
        run_dir.mkdir(parents=True, exist_ok=False)
        max_steps = config.max_steps or task.budgets.max_steps
        max_tests = config.max_tests or task.budgets.max_tests
        if config.agent.startswith(("baseline:", "method:")) or config.mode == "vanilla":
            max_tests = 1  # one test, then submit (the 2-test rule is for larger budgets)
        config = config.model_copy(update={"max_steps": max_steps, "max_tests": max_tests})
        executor = executor or _executor(config)
        info = RunInfo(
            run_id=run_id,
            task_id=task.id,
            config=config,
            max_steps=max_steps,
            max_tests=max_tests,
            # the sandbox's own identity of the codebase: the cache key carries the same one
            codebase_version=hash_tree(task.codebase_dir),
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
            data=_data_paths(config, task),
            max_steps=max_steps,
            max_tests=max_tests,
            seeds=config.seeds,
            final_seeds=config.final_seeds,
            progress=display.on_progress,
        )
        transcript = Transcript(run_dir, header=_header(info))
        transcript.append("start", run_id=run_id)
        return cls(run_dir, info, task, session, transcript, display)

    @classmethod
    def reopen(
        cls, run_dir: Path, display: Display, *, executor: Executor | None = None
    ) -> ActiveRun:
        """Reopen a killed run; `reconcile` then finishes work that was in flight."""
        info = read_run_info(run_dir)
        if info.status == "finished":
            raise RunError(f"run {info.run_id} already finished ({info.reason}); nothing to resume")
        task = comp.load_task(info.config.task)
        info = info.model_copy(
            update={"resumed": info.resumed + 1, "status": "running", "finished_at": None}
        )
        write_run_info(run_dir, info)
        try:
            session = comp.resume_session(
                run_dir,
                executor=executor or _executor(info.config),
                data=_data_paths(info.config, task),
                progress=display.on_progress,
            )
        except Exception as e:
            raise RunError(f"cannot resume {run_dir}: {e}") from e
        transcript = Transcript(run_dir, header=_header(info))
        transcript.append("resume", run_id=info.run_id, count=info.resumed)
        return cls(run_dir, info, task, session, transcript, display)

    def finish(self, status: RunStatus, reason: str | None) -> list[RunRecord]:
        """Close the transcript, rewrite run.json, build and store the leaderboard records."""
        budget = BudgetView.of(self.session)
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
        records = build_records(self.run_dir, self.info, self.task, self.session)
        if self.info.config.db:
            store = comp.open_store(self.info.config.db)
            try:
                records = self._record_once_each(store, records)
            finally:
                store.close()
        (self.run_dir / "record.json").write_text(
            json.dumps([r.model_dump(mode="json") for r in records], indent=1) + "\n",
            encoding="utf-8",
        )
        self.records = [r for r in records if r.run_id not in self.identical_to]
        return self.records

    def _record_once_each(self, store: Store, records: list[RunRecord]) -> list[RunRecord]:
        """Store each record unless the store holds an identical result (one result, one
        row). A baseline's identical result is left out (named in ``identical_to``), or with
        ``force`` stored as that run's repeat. An agent's or vanilla run is always stored —
        its transcript is data of its own — and labelled a repeat, so it is never ranked as a
        second row. Returns the records, repeats labelled."""
        kept = []
        for record in records:
            original = store.identical_run(record)
            unranked = record.type in ("baseline", "method")  # no transcript worth keeping
            if original is not None and unranked and not self.info.config.force:
                self.identical_to[record.run_id] = original
                self.display.note(
                    f"run {record.run_id}: identical to run {original}, not recorded; "
                    "--force records a repeat"
                )
                kept.append(record)
                continue
            if original is not None:
                record = record.model_copy(update={"repeat_of": original})
                if not unranked:
                    self.display.note(
                        f"run {record.run_id}: its result is identical to run {original}'s; "
                        "recorded as a repeat of it (not ranked twice)"
                    )
            store.record(record)
            kept.append(record)
        return kept


def _home(config: RunConfig) -> Path:
    return Path(config.home) if config.home else comp.pretrainbench_home()


def _executor(config: RunConfig) -> Executor:
    return comp.make_executor(
        config.sandbox, _home(config) / "cache", allow_weak_isolation=config.allow_weak_isolation
    )


def _data_paths(config: RunConfig, task: TaskSpec) -> DataPaths:
    """The prepared data, and the compile cache of the task's codebase at the run's profile:
    every run's jobs read it; only a baseline run (every job runs code of ours) adds to it."""
    from sandbox import CompileCache, compile_cache_path

    home = _home(config)
    cache = CompileCache(
        path=compile_cache_path(home / "compile-cache", task.codebase_dir, config.profile),
        writable=config.agent.startswith("baseline:"),
    )
    paths = comp.data_paths(home, source=config.data_source)
    return paths.model_copy(update={"compile_cache": cache})


def _header(info: RunInfo) -> Event:
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
    executor: Executor | None = None,
) -> RunOutcome:
    """Create ``runs_dir/<run-id>/`` and run ``config``'s agent in it to the end; an LLM
    agent without an API key is refused before anything is created (`check_agent`)."""
    check_agent(config.agent, config.base_url, api_key)
    active = ActiveRun.create(
        config, runs_dir, display, gpus=gpus, run_id=run_id, executor=executor
    )
    return _drive(active, resume=False, api_key=api_key)


def check_agent(agent: str, base_url: str | None, api_key: str | None) -> None:
    """Raise `RunError` when ``agent``, an LLM agent, cannot call its endpoint: no API key
    (named: OPENAI_API_KEY or --api-key), unless the endpoint is keyless or on loopback."""
    from runner._llm import LLMConfigError, resolve_api_key

    if agent.startswith("openai:"):
        try:
            resolve_api_key(api_key, base_url)
        except LLMConfigError as e:
            raise RunError(str(e)) from e


def resume_run(
    run_dir: Path,
    display: Display,
    *,
    api_key: str | None = None,
    executor: Executor | None = None,
) -> RunOutcome:
    """Continue a killed run: the session state, the transcript and the conversation."""
    config = read_run_info(run_dir).config
    check_agent(config.agent, config.base_url, api_key)
    active = ActiveRun.reopen(run_dir, display, executor=executor)
    return _drive(active, resume=True, api_key=api_key)


def _drive(active: ActiveRun, *, resume: bool, api_key: str | None) -> RunOutcome:
    info, display = active.info, active.display
    config = info.config
    display.start(
        f"{config.agent} · {active.task.id} · profile {config.profile} · run {info.run_id}",
        max_steps=info.max_steps,
    )
    settings = agent_settings(config)
    if settings:
        display.note("agent settings: " + ", ".join(f"{k}={v}" for k, v in settings.items()))
    status: RunStatus = "finished"
    reason: str | None = None
    method_refused = False  # a hand-written method's edit was refused: failed, not infra
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
    except Submitted as e:
        reason = str(e).removeprefix(AUTO) if str(e).startswith(AUTO) else "submitted"
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
        from env import BaselineError

        if config.agent.startswith("method:") and isinstance(e, BaselineError):
            reason = str(e)  # the method's own fault, said as the edit tool said it
            method_refused = True
    if status == "failed" and not active.session.state.tests and not method_refused:
        # Nothing of the agent's was evaluated: the harness or the endpoint failed it.
        status = "infra_error"
    submission = active.session.state.submission
    if submission is not None and submission.auto:
        reason = f"auto-submitted test #{submission.test_number}: {reason}"
    records = active.finish(status, reason)
    display.stop(f"run {info.run_id}: {active.info.status} ({reason})")
    return RunOutcome(
        run_dir=active.run_dir,
        info=active.info,
        records=records,
        identical_to=dict(active.identical_to),
    )


def reconcile(session: Session, transcript: Transcript) -> None:
    """Bring the transcript level with the session after a crash.

    A tool call in the transcript without a result is either (a) a test or final evaluation
    still pending in the session — finished now, charged once, by `complete_pending` — or
    (b) a call the session completed but whose result never reached the transcript, or
    (c) a call the session never saw, which the agent will issue again.
    """
    events = read_transcript(transcript.path)
    open_calls: list[Event] = []
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
            name = "test" if kind == "test" else "submit"
            append_tool_result(
                transcript,
                session,
                name,
                call_id,
                result,
                text=result.text,
                elapsed_s=None,
                resumed=True,
            )
        return
    calls = session.state.calls
    if open_call is not None and len(calls) > results:
        record = calls[-1]
        append_tool_result(
            transcript,
            session,
            record.tool,
            call_id,
            record,
            elapsed_s=None,
            text="[harness] This call completed just before the runner stopped; "
            "its output was lost. Use view to see the current file.",
            resumed=True,
        )


def _build_agent(
    config: RunConfig,
    task: TaskSpec,
    session: Session,
    transcript: Transcript,
    *,
    resume: bool,
    api_key: str | None,
    display: Display,
) -> Agent:
    kind, _, name = config.agent.partition(":")
    if kind == "baseline":
        baselines = {b.name: b for b in comp.load_baselines(task)}
        if name not in baselines:
            raise RunError(
                f"task {task.id} has no baseline {name!r}; it has: {', '.join(sorted(baselines))}"
            )
        return BaselineAgent(baselines[name])
    if kind == "method":
        from env import Baseline

        return BaselineAgent(
            Baseline(name=name, doc="", regions=dict(config.regions)), kind="method"
        )
    if kind == "openai":
        import env
        from runner._llm import ChatClient

        if not name:
            raise RunError("--agent openai:<model> needs a model name, e.g. openai:gpt-4o")
        client = ChatClient(
            name, base_url=config.base_url, api_key=api_key, settings=config.agent_settings
        )
        events = read_transcript(transcript.path) if resume else []
        messages = conversation_from_transcript(events)
        if not messages:
            observation = session.initial_observation()
            if config.mode == "vanilla":
                observation = f"{observation}\n\n{env.VANILLA_INSTRUCTION}"
            opening: list[Message] = [
                {"role": "system", "content": env.SYSTEM_PROMPT},
                {"role": "user", "content": observation},
            ]
            for message in opening:
                messages.append(message)
                transcript.append("message", message=message)
        return LLMAgent(
            client,
            _openai_tools(),
            messages,
            mode=config.mode,
            spend=Spend.of(events),
            on_text=lambda text: display.note(f"assistant: {text[:200]}"),
            on_retry=display.note,
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


def build_records(
    run_dir: Path, info: RunInfo, task: TaskSpec, session: Session
) -> list[RunRecord]:
    """The run as leaderboard RunRecords: one, of type baseline, vanilla or agent.

    An agent run yields no vanilla row: MLS-Bench's vanilla result is evaluated like a final
    result (hidden settings, final seeds), which an agent's first test is not; a vanilla row
    comes from a ``--mode vanilla`` run (docs/RUNNER.md).
    """
    return [_run_record(run_dir, info, task, session)]


def _run_record(run_dir: Path, info: RunInfo, task: TaskSpec, session: Session) -> RunRecord:
    """The record of the run's own result: the baseline's test, or the agent's submission."""
    from leaderboard import FinalRecord, RunRecord

    state = session.state
    config = info.config
    kind, _, name = config.agent.partition(":")
    final = None
    submitted = state.submission
    if submitted is not None and state.final is not None:
        final = FinalRecord(
            test_number=submitted.test_number,
            status=state.final.status,
            reason=state.final.reason,
            per_seed=_rows(submitted.test_number, state.final),
            auto_submitted=submitted.auto,
        )
    chosen = next((t for t in state.tests if submitted and t.number == submitted.test_number), None)
    sources = {r.dataset_source for t in state.tests for r in t.result.results if r.dataset_source}
    baseline = kind == "baseline"
    method = name if kind in ("baseline", "method") else (name or config.agent)
    run_type: RunType = (
        "baseline"
        if baseline
        else "method"
        if kind == "method"
        else ("vanilla" if config.mode == "vanilla" else "agent")
    )
    return RunRecord(
        run_id=info.run_id,
        type=run_type,
        method=method,
        model=None if kind in ("baseline", "method") else method,
        reference=baseline and name == task.reference_baseline,
        status=info.status,
        status_reason=info.reason,
        agent_settings=agent_settings(config),
        tests=[row for t in state.tests for row in _rows(t.number, t.result)],
        final=final,
        regions=chosen.regions if chosen else {},
        diff=chosen.diff if chosen else "",
        transcript=read_transcript(run_dir),
        task_id=task.id,
        task_title=task.title,
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
        sweep_id=config.sweep_id,
        sweep_point=config.sweep_point,
    )


def agent_settings(config: RunConfig) -> dict[str, float | int | str | None]:
    """The LLM agent's settings and limits that were set, with its endpoint (empty for a
    baseline): recorded with the run and shown."""
    if not config.agent.startswith("openai:"):
        return {}
    settings: dict[str, float | int | str | None] = config.agent_settings.model_dump(
        exclude_none=True
    )
    if config.base_url:
        settings["base_url"] = config.base_url
    return settings


def _rows(number: int, result: TestResult) -> list[SeedRecord]:
    from leaderboard import SeedRecord

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
            SeedRecord(
                number=number,
                setting=r.setting,
                seed=r.seed,
                status=r.status,
                reason=r.reason,
                metrics={f"{k}_{r.setting}": float(v) for k, v in r.metrics.items()},
                stderr={f"{k}_{r.setting}": float(v) for k, v in r.stderr.items()},
                elapsed_s=max(0.0, float(r.elapsed_s)) if math.isfinite(r.elapsed_s) else None,
                curve=curve,
            )
        )
    return rows


def metric_specs(task: TaskSpec, profile: str) -> list[MetricInfo]:
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


class SummaryRow(TypedDict):
    """One line of the CLI's results table."""

    run_id: str
    method: str
    type: str
    reference: bool
    status: str
    note: str
    metrics: dict[str, float]
    headers: dict[str, str]
    primary: str | None


def summary_rows(records: list[RunRecord]) -> list[SummaryRow]:
    """Per record: method, type, status and every metric value of its result rows.

    Researchers see all metrics, hidden ones too (their header carries a dagger): hidden means
    hidden from the agent during its run, not from the people reading the results.
    """
    rows: list[SummaryRow] = []
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
            reasons: list[str | None] = [record.final.reason] if record.final is not None else []
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


def _openai_tools() -> list[ToolSchema]:
    """env's tool schemas in the OpenAI dialect, as the chat client's type."""
    import env

    return [dict(schema) for schema in env.tool_schemas("openai")]
