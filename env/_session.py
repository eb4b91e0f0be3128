"""A session: one agent's run on one task — tools, budgets, tests, the submission, resume.

Budget rules (MLS-Bench compatible, with its leaks and double charges fixed):

- every call but ``submit`` costs a step, invalid and unknown calls included (as in MLS-Bench,
  where the agent loop counts turns, not successful calls); ``submit`` is free, errors included;
- ``test`` costs a test only when it completes (``ok`` or ``failed``); a test refused by a
  preflight job (the task's ``stage: preflight`` jobs, run first in the sandbox), or lost to an
  infrastructure failure (a workspace that fails its own integrity check included), costs none;
- when the steps run out without a submission, the latest completed test is submitted for the
  agent (``Submission.auto``); the runner does the same through `Session.auto_submit` when the
  agent stops calling tools or reaches a run limit (tokens, cost, time).

The state is written atomically to ``run_dir/session.json`` after every call, and before a test
or final evaluation starts with a ``pending`` marker: a process that dies mid-test is resumed
with `Session.resume` and `Session.complete_pending`, which re-runs the test (the executor
skips finished (job, seed) pairs) and charges it once, when it completes.
"""

from __future__ import annotations

import fnmatch
import shutil
import tempfile
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Protocol

from env import _texts as texts
from env._baselines import Baseline, load_baselines
from env._data_regions import DataRegionError, data_region_env
from env._errors import EditError, IntegrityError
from env._observation import render_observation
from env._spec import TaskSpec, load_task
from env._state import (
    Budgets,
    CallRecord,
    PendingWork,
    SeedPlan,
    SessionState,
    Submission,
    TestEntry,
    ToolResult,
    UncountedAttempt,
    UncountedKind,
    state_json,
)
from env._tools import (
    EditArgs,
    SubmitArgs,
    UndoArgs,
    ViewArgs,
    parse_tool_call,
)
from env._workspace import Workspace
from sandbox import (
    DataPaths,
    JobSpec,
    ProgressCallback,
    TestRequest,
    TestResult,
    write_atomic,
)

__all__ = ["ExecutorLike", "Session", "SessionError"]

STATE_FILE = "session.json"
WORKSPACE_DIR = "workspace"
TESTS_DIR = "tests"


class ExecutorLike(Protocol):
    """What a session needs of `sandbox.Executor`."""

    def run(self, request: TestRequest, progress: ProgressCallback | None = None) -> TestResult:
        """Run every (setting, seed) of `request`; finished pairs in its out_dir are reused."""
        ...


class SessionError(RuntimeError):
    """A misuse of the session by the harness (not by the agent): bad run dir, pending work."""


class Session:
    """One agent's run on one task: executes tool calls and owns the state and the budgets."""

    def __init__(
        self,
        task: TaskSpec,
        run_dir: Path,
        *,
        executor: ExecutorLike,
        profile: str,
        data: DataPaths,
        budgets: Budgets | None = None,
        seeds: SeedPlan | None = None,
        progress: ProgressCallback | None = None,
        env: dict[str, str] | None = None,
    ) -> None:
        self._bind(task, run_dir, executor, profile, progress)
        if (self.run_dir / STATE_FILE).exists():
            raise SessionError(
                f"{self.run_dir / STATE_FILE} exists: this run has started; use Session.resume"
            )
        self.run_dir.mkdir(parents=True, exist_ok=True)
        self.workspace = Workspace.create(task, self.run_dir / WORKSPACE_DIR)
        self._state = SessionState(
            run_id=self.run_dir.name,
            task_id=task.id,
            task_source=str(task.task_dir),
            profile=profile,
            budgets=(budgets or task.budgets).model_copy(),
            seeds=(seeds or task.seeds(profile)).model_copy(),
            data=data,
            env=dict(env or {}),
            workspace=self.workspace.state(),
        )
        self.save()

    # ── restore ───────────────────────────────────────────────────────────────────────────

    @classmethod
    def resume(
        cls,
        run_dir: Path,
        *,
        executor: ExecutorLike,
        data: DataPaths | None = None,
        task: TaskSpec | None = None,
        progress: ProgressCallback | None = None,
    ) -> Session:
        """Restore the session saved in `run_dir` exactly as it was last written.

        `data` replaces the saved data paths (the data may live elsewhere on the resuming
        machine); `task` defaults to the task loaded from the saved task folder. If a test was
        in flight, `pending` says so and `complete_pending` finishes it.
        """
        path = Path(run_dir) / STATE_FILE
        if not path.exists():
            raise SessionError(f"no session to resume: {path} does not exist")
        try:
            state = SessionState.model_validate_json(path.read_text(encoding="utf-8"))
        except ValueError as e:
            raise SessionError(f"{path} is not a valid session state: {e}") from e
        if data is not None:
            state.data = data
        if task is None:
            # The saved folder, or the task of that id where the run moved to another machine.
            source = Path(state.task_source)
            task = load_task(source if source.is_dir() else state.task_id)
        if task.id != state.task_id:
            raise SessionError(f"{path} belongs to task {state.task_id!r}, not {task.id!r}")
        session = cls.__new__(cls)
        session._bind(task, Path(run_dir), executor, state.profile, progress)
        session._state = state
        session.workspace = Workspace.load(task, session.run_dir / WORKSPACE_DIR, state.workspace)
        return session

    def _bind(
        self,
        task: TaskSpec,
        run_dir: Path,
        executor: ExecutorLike,
        profile: str,
        progress: ProgressCallback | None,
    ) -> None:
        self.task = task
        self.run_dir = Path(run_dir)
        self.executor = executor
        self.progress = progress
        self.jobs: list[JobSpec] = task.jobs(profile)
        self.visible_jobs = [j for j in self.jobs if not j.hidden]
        self.preflight_jobs = [j for j in self.visible_jobs if j.stage == "preflight"]
        self.hidden_metric_patterns = task.hidden_metric_patterns(profile)
        #: labels of the hidden jobs: nothing about them may reach an agent-facing stream
        self.hidden_labels = frozenset(j.label for j in self.jobs if j.hidden)

    # ── public view of the state ──────────────────────────────────────────────────────────

    @property
    def state(self) -> SessionState:
        """The full state (a copy: change the session only through `call`)."""
        return self._state.model_copy(deep=True)

    @property
    def budgets(self) -> Budgets:
        return self._state.budgets

    @property
    def profile(self) -> str:
        return self._state.profile

    @property
    def tests(self) -> list[TestEntry]:
        """The counted tests, numbered from 1."""
        return list(self._state.tests)

    @property
    def submission(self) -> Submission | None:
        return self._state.submission

    @property
    def final(self) -> TestResult | None:
        """The final evaluation of the submitted test, hidden settings included (never shown
        to the agent; for the leaderboard)."""
        return self._state.final

    @property
    def pending(self) -> PendingWork | None:
        return self._state.pending

    @property
    def steps_left(self) -> int:
        return self._state.budgets.max_steps - self._state.steps_used

    @property
    def tests_left(self) -> int:
        return self._state.budgets.max_tests - self._state.tests_used

    @property
    def done(self) -> bool:
        """True once a test is submitted or the steps are spent."""
        return self._state.submission is not None or self.steps_left <= 0

    def initial_observation(self, baselines: Sequence[Baseline] | None = None) -> str:
        """The text an agent reads first (`render_observation`), with the task's baselines
        unless `baselines` is given."""
        shown = load_baselines(self.task) if baselines is None else baselines
        return render_observation(self.task, self.workspace, self.profile, self.budgets, shown)

    def save(self) -> None:
        """Write the state atomically to ``run_dir/session.json``."""
        self._state.workspace = self.workspace.state()
        write_atomic(self.run_dir / STATE_FILE, state_json(self._state))

    # ── tool calls ────────────────────────────────────────────────────────────────────────

    def call(self, tool: str, arguments: Mapping[str, object] | str | None = None) -> ToolResult:
        """Execute one tool call and return its observation; agent mistakes become ``ERROR:``."""
        if self._state.pending is not None and self._state.pending.kind == "test":
            raise SessionError(
                f"run {self._state.run_id}: a {self._state.pending.kind} was in flight when the "
                "session stopped; call complete_pending() before further tool calls"
            )
        if self.done:
            return self._result(tool, _over_text(self._state), ok=False)
        if tool == "submit":
            return self._submit_call(arguments)
        self._state.steps_used += 1
        try:
            args = parse_tool_call(tool, arguments)
        except EditError as e:
            return self._finish(tool, str(e), ok=False, cost_test=0)
        try:
            if isinstance(args, ViewArgs):
                text = self.workspace.view(args.filename, args.start_line, args.end_line)
            elif isinstance(args, EditArgs):
                text = self.workspace.apply(args)
            elif isinstance(args, UndoArgs):
                text = self.workspace.undo(args.n)
            else:
                return self._test_call()
        except EditError as e:
            return self._finish(tool, str(e), ok=False, cost_test=0)
        return self._finish(tool, text, ok=True, cost_test=0)

    def complete_pending(self) -> ToolResult | None:
        """Finish the test or final evaluation that was in flight when the process died.

        Its step was charged when it started; its test is charged now, when it completes, so
        nothing is charged twice. Returns the observation the agent would have received.
        """
        pending = self._state.pending
        if pending is None:
            return None
        if pending.kind == "test":
            text, ok, cost_test = self._run_test(pending)
            return self._finish("test", text, ok=ok, cost_test=cost_test)
        return self._result("submit", self._run_final(pending), ok=True)

    # ── test ──────────────────────────────────────────────────────────────────────────────

    def _test_call(self) -> ToolResult:
        st = self._state
        if st.tests_used >= st.budgets.max_tests:
            text = texts.test_budget_exhausted(st.tests_used, st.budgets.max_tests, len(st.tests))
            return self._finish("test", text, ok=False, cost_test=0)
        try:
            self.workspace.check()
        except IntegrityError as e:
            # The files or the saved state changed behind the workspace's back (accepted edits
            # always pass): the harness's failure, labelled and charged no test.
            self._uncounted("infra_error", f"run {st.run_id}: {e}")
            text = texts.infrastructure_failure(texts.WORKSPACE_DAMAGED, self.tests_left)
            return self._finish("test", text, ok=False, cost_test=0)
        files = self.workspace.edited_files()
        number = len(st.tests) + 1
        # A folder here can only be left over from outside this session's records; never let
        # its pairs pass for results of this code.
        _set_aside(self._test_dir(number), "stale")
        if self.preflight_jobs:
            refused = self._preflight(number, files)
            if refused is not None:
                return self._finish("test", refused, ok=False, cost_test=0)
        pending = PendingWork(kind="test", number=number, step=st.steps_used, files=files)
        st.pending = pending
        self.save()
        text, ok, cost_test = self._run_test(pending)
        return self._finish("test", text, ok=ok, cost_test=cost_test)

    def _preflight(self, number: int, files: dict[str, str]) -> str | None:
        """Run the task's preflight jobs on ``files``; the refusal text, or None to go on.

        Uncharged either way. A refusal quotes only the failed job's own reason (its
        ``failure.json``: the agent's exception and traceback), never a log.
        """
        st = self._state
        pending = PendingWork(kind="test", number=number, step=st.steps_used, files=files)
        out_dir = self._test_dir(number)
        result = self._execute(pending, self.preflight_jobs, st.seeds.test, out_dir)
        if result.status == "ok":
            return None
        if result.status == "infra_error":
            kept = _set_aside(out_dir, "infra")
            self._uncounted("infra_error", result.reason or "infrastructure failure", kept)
            return texts.infrastructure_failure(self._redact(result.reason), self.tests_left)
        kept = _set_aside(out_dir, "preflight")
        failed = [r for r in result.results if r.status == "failed"]
        reasons = "\n\n".join(
            texts.setting_reason(r.setting, self._redact(r.reason)) for r in failed[:1]
        )
        self._uncounted("preflight", reasons, kept)
        return texts.preflight_refused(result.elapsed_s, self.tests_left, reasons)

    def _run_test(self, pending: PendingWork) -> tuple[str, bool, int]:
        """Run the visible jobs for the test seeds; returns (text, ok, tests charged)."""
        st = self._state
        out_dir = self._test_dir(pending.number)
        result = self._execute(pending, self.visible_jobs, st.seeds.test, out_dir)
        st.pending = None
        if result.status == "infra_error":
            # Keep the logs of the lost attempt beside the test, and start the retry clean so
            # that no pair of this attempt is mistaken for a finished result of the next one.
            kept = _set_aside(out_dir, "infra")
            self._uncounted("infra_error", result.reason or "infrastructure failure", kept)
            return (
                texts.infrastructure_failure(self._redact(result.reason), self.tests_left),
                False,
                0,
            )
        st.tests_used += 1
        record = TestEntry(
            number=pending.number,
            step=pending.step,
            status="ok" if result.status == "ok" else "failed",
            files=pending.files,
            regions=self.workspace.region_texts(),
            diff=self.workspace.diff(),
            result=result,
        )
        st.tests.append(record)
        left = self.tests_left
        feedback = self._feedback(result)
        parts = [texts.test_header(record.number, left, self._submit_blocked())]
        seed_reasons = [r.reason for r in result.results if r.status != "ok" and r.reason]
        said = bool(seed_reasons) and all(reason in feedback for reason in seed_reasons)
        if record.status == "failed" and result.reason and not said:
            # The overall reason, when the per-setting sections do not already say it.
            parts.append(texts.test_failed(self._redact(result.reason)))
        parts += [feedback, self._results_saved(result)]
        if left == 0:
            parts.append(texts.last_test(len(st.tests)))
        return texts.tool_result(parts), record.status == "ok", 1

    # ── submit ────────────────────────────────────────────────────────────────────────────

    def _submit_call(self, arguments: Mapping[str, object] | str | None) -> ToolResult:
        st = self._state
        try:
            args = parse_tool_call("submit", arguments)
            assert isinstance(args, SubmitArgs)
            number = self._check_submit(args.n)
        except EditError as e:
            st.failed_submits += 1
            return self._result("submit", str(e), ok=False)
        pending = PendingWork(
            kind="final", number=number, step=st.steps_used, files=st.tests[number - 1].files
        )
        return self._result("submit", self._start_final(pending), ok=True)

    def _submit_blocked(self) -> bool:
        """True while the two-test rule forbids ``submit`` (MLS-Bench's "iterate at least
        once"): fewer than two tests, a budget that allows two, and a test left."""
        st = self._state
        needed = texts.TESTS_BEFORE_SUBMIT
        return len(st.tests) < needed and st.budgets.max_tests >= needed and self.tests_left > 0

    def _check_submit(self, n: int | None) -> int:
        st = self._state
        if not st.tests:
            raise EditError(texts.no_tests_yet())
        if self._submit_blocked():
            raise EditError(texts.iterate_first(len(st.tests), self.tests_left))
        if n is None or n <= 0:
            return len(st.tests)
        if n > len(st.tests):
            raise EditError(texts.invalid_test_number(n, len(st.tests)))
        return n

    def _start_final(self, pending: PendingWork, *, auto: bool = False) -> str:
        st = self._state
        st.submission = Submission(test_number=pending.number, step=pending.step, auto=auto)
        st.pending = pending
        self.save()
        return self._run_final(pending)

    def _run_final(self, pending: PendingWork) -> str:
        """The final evaluation: every job (hidden too) for the final seeds."""
        st = self._state
        record = st.tests[pending.number - 1]
        if record.status == "failed":
            # A test that failed already fails its final evaluation; nothing is re-run.
            final = record.result
        else:
            final = self._execute(
                pending, self.jobs, st.seeds.final, self._test_dir(pending.number)
            )
        record.final = final
        st.final = final
        # An infrastructure failure leaves the marker so that a resumed run retries it.
        st.pending = pending if final.status == "infra_error" else None
        self.save()
        parts = [texts.submitting(pending.number, pending.auto)]
        if final.status == "infra_error":
            parts.append(texts.final_infrastructure_failure(self._redact(final.reason)))
        else:
            parts += [self._feedback(final), self._results_saved(final)]
        return texts.tool_result(parts)

    def _auto_submit(self) -> str:
        st = self._state
        if not st.tests:
            return texts.steps_exhausted_nothing_submitted()
        note = texts.steps_exhausted_auto_submit(
            st.steps_used, st.budgets.max_steps, st.tests[-1].number
        )
        return texts.tool_result([note, self._submit_latest()])

    def auto_submit(self, why: str) -> str | None:
        """Submit the latest completed test for an agent that stopped without submitting
        (``why``: it stopped calling tools, or reached a run limit of tokens, cost or time),
        as the steps' end does; the two-test rule does not apply (MLS-Bench's fallback to the
        latest complete test). The submit observation, or None with no completed test or a
        submission already made."""
        st = self._state
        if not st.tests or st.submission is not None or st.pending is not None:
            return None
        note = texts.agent_stopped_auto_submit(why, st.tests[-1].number)
        return texts.tool_result([note, self._submit_latest()])

    def _submit_latest(self) -> str:
        st = self._state
        latest = st.tests[-1]
        pending = PendingWork(
            kind="final", number=latest.number, step=st.steps_used, files=latest.files, auto=True
        )
        return self._start_final(pending, auto=True)

    # ── helpers ───────────────────────────────────────────────────────────────────────────

    def _execute(
        self,
        pending: PendingWork,
        jobs: list[JobSpec],
        seeds: list[int],
        out_dir: Path,
    ) -> TestResult:
        st = self._state
        test_id = f"{st.run_id}/test-{pending.number}"
        try:
            data_env = data_region_env(self.task, pending.files)
        except (DataRegionError, OSError) as e:  # edits are checked: only a damaged state
            return TestResult(status="infra_error", reason=f"cannot read the data regions: {e}")
        request = TestRequest(
            run_id=st.run_id,
            test_id=test_id + "/final" if pending.kind == "final" else test_id,
            codebase_dir=self.task.codebase_dir,
            files=pending.files,
            jobs=jobs,
            seeds=seeds,
            profile=st.profile,
            out_dir=out_dir,
            data=st.data,
            env={**st.env, **data_env},
        )
        try:
            return self.executor.run(request, self.progress)
        except Exception as e:  # the executor is the infrastructure: its crash is not the agent's
            return TestResult(
                status="infra_error",
                reason=f"executor raised {type(e).__name__}: {e} (run {st.run_id}, {out_dir})",
            )

    def _redact(self, reason: str | None) -> str:
        """A harness reason fit for the agent (`texts.Redaction`): no hidden job or metric
        named, no path of the host shown."""
        st = self._state
        roots = [self.run_dir.parent, self.task.codebase_dir, Path(tempfile.gettempdir())]
        roots += [
            p
            for p in (
                st.data.data_dir,
                st.data.eval_data_dir,
                st.data.tokenizer_dir,
                st.data.hf_home,
            )
            if p is not None
        ]
        roots.append(Path.home())
        hidden = [name for job in self.jobs if job.hidden for name in (job.script, job.label)]
        metrics = [m.name for m in self.task.metrics if m.hidden]
        return texts.Redaction.of(roots, hidden, metrics)(reason)

    def _feedback(self, result: TestResult) -> str:
        return texts.render_feedback(result, self.visible_jobs, self.hidden_metric_patterns).strip()

    def _results_saved(self, result: TestResult) -> str:
        return texts.results_saved(self.visible_metrics(result))

    def visible_metrics(self, result: TestResult) -> dict[str, float]:
        """The metrics an agent may see: visible jobs only, hidden metrics removed."""
        shown: dict[str, float] = {}
        for key, value in result.metrics(self.visible_jobs).items():
            if any(fnmatch.fnmatchcase(key, p) for p in self.hidden_metric_patterns):
                continue
            shown[key] = round(value) if key.startswith("elapsed_") else round(value, 4)
        return shown

    def _test_dir(self, number: int) -> Path:
        return self.run_dir / TESTS_DIR / str(number)

    def _uncounted(self, kind: UncountedKind, reason: str, out_dir: Path | None = None) -> None:
        self._state.uncounted.append(
            UncountedAttempt(
                step=self._state.steps_used,
                kind=kind,
                reason=reason,
                out_dir=str(out_dir) if out_dir else None,
            )
        )

    def _finish(self, tool: str, text: str, *, ok: bool, cost_test: int) -> ToolResult:
        """Close a step-costing call: auto-submit if the steps ran out, then save."""
        # (The "few steps left, no test yet" reminder is the agent loop's, as in MLS-Bench.)
        if self.steps_left <= 0 and self._state.submission is None:
            text = texts.tool_result([text, self._auto_submit()])
        return self._result(tool, text, ok=ok, cost_step=1, cost_test=cost_test)

    def _result(
        self, tool: str, text: str, *, ok: bool, cost_step: int = 0, cost_test: int = 0
    ) -> ToolResult:
        self._state.calls.append(
            CallRecord(tool=tool, ok=ok, cost_step=cost_step, cost_test=cost_test)
        )
        self.save()
        return ToolResult(
            tool=tool,
            text=text,
            ok=ok,
            cost_step=cost_step,
            cost_test=cost_test,
            steps_left=self.steps_left,
            tests_left=self.tests_left,
            done=self.done,
        )


def _over_text(state: SessionState) -> str:
    if state.submission is not None:
        return texts.already_submitted(state.submission.test_number)
    return texts.session_over(state.steps_used, state.budgets.max_steps)


def _set_aside(out_dir: Path, label: str) -> Path | None:
    if not out_dir.exists():
        return None
    i = 1
    while (target := out_dir.with_name(f"{out_dir.name}.{label}-{i}")).exists():
        i += 1
    shutil.move(str(out_dir), str(target))
    return target
