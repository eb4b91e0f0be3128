"""Session: tool texts, every budget rule, the submission, persistence and resume (in process)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any, Literal

import pytest

from env import Budgets, Session, SessionError, load_task
from env._spec import SeedPlan, TaskSpec
from sandbox import DataPaths, TestResult
from tests._fixtures.scripted_backend import Outcome, RecordingExecutor, scripted_executor
from tests._fixtures.worlds import mini_task_world

FILE = "nanoGPT/custom_pretrain.py"
HIDDEN_WORDS = ("piqa", "lm-eval-tiny", "lm_eval_tiny")


@pytest.fixture
def task(tmp_path: Path) -> TaskSpec:
    task_dir = mini_task_world(tmp_path / "src").task_dir
    return load_task(task_dir)


def make_session(
    task: TaskSpec,
    tmp_path: Path,
    outcomes: list[Outcome] | None = None,
    *,
    max_steps: int = 20,
    max_tests: int = 3,
    preflight: Literal["ok", "failed"] = "ok",
) -> tuple[Session, RecordingExecutor]:
    executor = scripted_executor(outcomes or [], preflight=preflight)
    session = Session(
        task,
        tmp_path / "runs" / "run-1",
        executor=executor,
        profile="tiny",
        data=DataPaths(data_dir=tmp_path / "data"),
        budgets=Budgets(max_steps=max_steps, max_tests=max_tests),
    )
    return session, executor


def get_lr_range(session: Session) -> tuple[int, int]:
    return session.workspace.editable_ranges(FILE)[0]


def edit_lr(session: Session, body: str = "    return learning_rate * 0.5") -> Any:
    first, last = get_lr_range(session)
    content = "def get_lr(it, warmup_iters, lr_decay_iters, learning_rate, min_lr):\n" + body
    return session.call(
        "edit",
        {
            "op": "replace",
            "filename": FILE,
            "start_line": first,
            "end_line": last,
            "content": content,
        },
    )


# ── steps ─────────────────────────────────────────────────────────────────────────────────


def test_view_and_edit_cost_one_step_each(task: TaskSpec, tmp_path: Path) -> None:
    session, _ = make_session(task, tmp_path)
    result = session.call("view", {"filename": FILE, "start_line": 1, "end_line": 3})
    assert result.ok and result.cost_step == 1 and result.cost_test == 0
    assert result.steps_left == 19 and result.tests_left == 3
    result = edit_lr(session)
    assert result.ok and result.text.startswith("OK: Replaced lines")
    assert "[Current file: nanoGPT/custom_pretrain.py" in result.text
    assert session.steps_left == 18


def test_invalid_and_unknown_calls_cost_a_step(task: TaskSpec, tmp_path: Path) -> None:
    session, _ = make_session(task, tmp_path)
    bad = session.call("edit", {"filename": FILE, "content": "x", "start_line": 1, "end_line": 2})
    assert not bad.ok and bad.cost_step == 1
    assert bad.text.startswith(
        "ERROR: Invalid arguments for 'edit': missing required argument 'op'"
    )
    unknown = session.call("read", {"filename": FILE})
    assert unknown.text.startswith("ERROR: Unknown tool 'read'") and unknown.cost_step == 1
    refused = session.call(
        "edit", {"op": "replace", "filename": FILE, "start_line": 1, "end_line": 1, "content": "x"}
    )
    assert refused.text.startswith("ERROR:") and refused.cost_step == 1
    malformed = session.call("edit", '{"op": ')
    assert "not valid JSON" in malformed.text
    assert session.steps_left == 16
    assert [c.ok for c in session.state.calls] == [False] * 4


def test_arguments_as_json_string_and_undo(task: TaskSpec, tmp_path: Path) -> None:
    session, _ = make_session(task, tmp_path)
    original = session.workspace.text(FILE)
    first, last = get_lr_range(session)
    result = session.call(
        "edit",
        json.dumps(
            {
                "op": "replace",
                "filename": FILE,
                "start_line": first,
                "end_line": last,
                "content": "def get_lr(it, warmup_iters, lr_decay_iters, learning_rate, min_lr):\n"
                "    return min_lr",
            }
        ),
    )
    assert result.ok
    assert session.workspace.text(FILE) != original
    undo = session.call("undo", {})
    assert undo.ok and undo.text.startswith("Undo complete") and undo.cost_step == 1
    assert session.workspace.text(FILE) == original
    assert session.call("undo").text.startswith("ERROR: Nothing to undo")


# ── test ──────────────────────────────────────────────────────────────────────────────────


def test_test_runs_visible_settings_for_test_seeds(task: TaskSpec, tmp_path: Path) -> None:
    session, executor = make_session(task, tmp_path)
    edit_lr(session)
    result = session.call("test")
    assert result.ok and result.cost_step == 1 and result.cost_test == 1
    assert result.text.startswith(
        "[Test #1] (2 tests remaining; run at least one more test before you can submit: "
        "iterate at least once)"
    )
    request = executor.requests[0]
    assert [j.label for j in request.jobs] == ["schedule", "train-tiny", "gpt-tiny"]
    assert request.env == {"PB_CONFIG_OVERRIDES": "{}"}  # the data region, parsed, never run
    assert request.seeds == [42]
    assert request.out_dir == session.run_dir / "tests" / "1"
    assert request.files == session.workspace.edited_files()
    assert request.profile == "tiny"
    assert "### gpt-tiny" in result.text
    saved = result.text.split("[Leaderboard] Results saved: ", 1)[1].splitlines()[0]
    assert "'val_loss_gpt-tiny'" in saved and "'elapsed_gpt-tiny'" in saved
    assert not any(w in result.text for w in HIDDEN_WORDS)
    record = session.tests[0]
    assert record.number == 1 and record.status == "ok" and record.step == 2
    assert record.diff.startswith("--- a/nanoGPT/custom_pretrain.py")
    assert "return learning_rate * 0.5" in record.regions["get_lr"]


def test_last_test_note_then_budget_exhausted(task: TaskSpec, tmp_path: Path) -> None:
    session, _ = make_session(task, tmp_path, max_tests=2)
    session.call("test")
    second = session.call("test")
    assert second.text.startswith("[Test #2] (0 tests remaining;")
    assert "[NOTE] This was your last test. You MUST now call submit(n=X)" in second.text
    third = session.call("test")
    assert third.text.startswith("ERROR: Test budget exhausted (2/2)")
    assert third.cost_step == 1 and third.cost_test == 0 and not third.ok
    assert session.state.tests_used == 2


def test_one_test_remaining_is_singular(task: TaskSpec, tmp_path: Path) -> None:
    session, _ = make_session(task, tmp_path)
    session.call("test")
    assert session.call("test").text.startswith("[Test #2] (1 test remaining;")


def test_preflight_rejection_costs_no_test(task: TaskSpec, tmp_path: Path) -> None:
    session, executor = make_session(task, tmp_path, preflight="failed")
    result = session.call("test")
    assert not result.ok and result.cost_step == 1 and result.cost_test == 0
    assert result.text.startswith("ERROR: Preflight failed")
    assert "No test was used (3 tests remaining)" in result.text
    assert "schedule: exit code 1: NameError: name 'mathh'" in result.text
    assert [[j.label for j in r.jobs] for r in executor.preflight_requests] == [["schedule"]]
    assert executor.requests == []
    assert session.state.uncounted[0].kind == "preflight"
    assert session.tests_left == 3 and session.steps_left == 19


def test_infra_failure_costs_no_test_and_keeps_its_logs(task: TaskSpec, tmp_path: Path) -> None:
    session, executor = make_session(task, tmp_path, ["infra_error", "ok"])
    lost = session.call("test")
    assert lost.text.startswith(
        "[Test not counted] Infrastructure failure: train-tiny (seed 42): infrastructure: node lost"
    )
    assert lost.cost_test == 0 and lost.cost_step == 1 and not lost.ok
    assert session.tests_left == 3 and session.tests == []
    kept = session.state.uncounted[0]
    assert kept.kind == "infra_error" and kept.out_dir is not None
    assert (Path(kept.out_dir) / "train-tiny" / "seed_42.log").is_file()
    retry = session.call("test")
    assert retry.text.startswith("[Test #1] (2 tests remaining;")
    assert len(executor.backend.runs_of("train-tiny", 42)) == 2  # the lost pair ran again


def test_executor_crash_is_an_infra_failure(task: TaskSpec, tmp_path: Path) -> None:
    session, _ = make_session(task, tmp_path)
    session.executor = scripted_executor(crash=OSError("disk full (simulated)"))
    result = session.call("test")
    assert "Infrastructure failure: executor raised OSError: disk full" in result.text
    assert session.tests_left == 3


def test_failed_test_is_charged(task: TaskSpec, tmp_path: Path) -> None:
    session, _ = make_session(task, tmp_path, ["failed"])
    result = session.call("test")
    assert result.cost_test == 1 and not result.ok
    assert result.text.startswith("[Test #1] (2 tests remaining;")
    assert "[STATUS: FAILED] exit code 1: boom" in result.text  # the per-setting reason ...
    assert "training crashed" not in result.text  # ... says it; the overall one is not repeated
    assert session.tests[0].status == "failed"


# ── submit ────────────────────────────────────────────────────────────────────────────────


def test_submit_before_any_test(task: TaskSpec, tmp_path: Path) -> None:
    session, _ = make_session(task, tmp_path)
    result = session.call("submit", {"n": 1})
    assert result.text.startswith("ERROR: No test results yet")
    assert result.cost_step == 0 and session.steps_left == 20 and not session.done
    assert session.state.failed_submits == 1


def test_submit_requires_iterating_while_tests_remain(task: TaskSpec, tmp_path: Path) -> None:
    session, _ = make_session(task, tmp_path)
    session.call("test")
    result = session.call("submit", {"n": 1})
    assert result.text.startswith(
        "ERROR: You must iterate at least once (edit → test → review → edit → test) before "
        "submitting"
    )
    assert result.cost_step == 0 and session.submission is None


def test_submit_after_one_test_when_budget_allows_one(task: TaskSpec, tmp_path: Path) -> None:
    session, _ = make_session(task, tmp_path, max_tests=1)
    session.call("test")
    assert session.call("submit", {"n": 1}).text.startswith(
        "[submit] Submitting result from test #1"
    )


def test_submit_invalid_n_and_arguments(task: TaskSpec, tmp_path: Path) -> None:
    session, _ = make_session(task, tmp_path)
    session.call("test")
    session.call("test")
    assert session.call("submit", {"n": 3}).text.startswith("ERROR: Invalid test number n=3")
    assert session.call("submit", {"n": "two"}).text.startswith(
        "ERROR: Invalid arguments for 'submit': argument 'n'"
    )
    assert session.call("submit", {"m": 1}).text.startswith("ERROR: Invalid arguments for 'submit'")
    assert session.state.failed_submits == 3 and session.steps_left == 18


def test_submit_runs_the_final_evaluation(task: TaskSpec, tmp_path: Path) -> None:
    session, executor = make_session(task, tmp_path)
    edit_lr(session)
    session.call("test")
    edit_lr(session, "    return min_lr")
    session.call("test")
    result = session.call("submit", {"n": 1})
    assert result.ok and result.cost_step == 0 and result.done
    assert result.text.startswith("[submit] Submitting result from test #1 as final.")
    final_request = executor.requests[-1]
    assert [j.label for j in final_request.jobs] == [
        "schedule",
        "train-tiny",
        "gpt-tiny",
        "lm-eval-tiny",
    ]
    assert final_request.seeds == [42, 43]
    assert final_request.out_dir == session.run_dir / "tests" / "1"
    assert final_request.files == session.tests[0].files != session.tests[1].files
    # The finished (gpt-tiny, 42) pair of test 1 was reused, not re-run.
    test_1 = (session.run_dir / "tests" / "1").resolve()
    assert [d for d in executor.backend.runs_of("gpt-tiny", 42) if d.is_relative_to(test_1)] == [
        test_1 / "gpt-tiny" / "seed_42"
    ]
    assert len(executor.backend.runs_of("gpt-tiny", 43)) == 1
    assert session.final is not None
    assert "piqa_lm-eval-tiny" in session.final.metrics()  # kept for the leaderboard ...
    assert not any(w in result.text for w in HIDDEN_WORDS)  # ... never shown to the agent
    assert "'val_loss_gpt-tiny'" in result.text
    assert session.submission is not None and not session.submission.auto
    assert session.tests[0].final == session.final


def test_submit_latest_by_default_and_only_once(task: TaskSpec, tmp_path: Path) -> None:
    session, _ = make_session(task, tmp_path)
    session.call("test")
    session.call("test")
    assert "from test #2" in session.call("submit", {"n": 0}).text
    again = session.call("submit", {"n": 1})
    assert again.text.startswith("ERROR: Already submitted test #2")
    after = session.call("view", {"filename": FILE})
    assert after.text.startswith("ERROR: Already submitted") and after.cost_step == 0


def test_submitting_a_failed_test_runs_nothing_more(task: TaskSpec, tmp_path: Path) -> None:
    session, executor = make_session(task, tmp_path, ["failed", "ok"])
    session.call("test")
    session.call("test")
    session.call("submit", {"n": 1})
    assert len(executor.requests) == 2
    assert session.final is not None and session.final.status == "failed"


# ── step exhaustion ───────────────────────────────────────────────────────────────────────


def test_steps_run_out_latest_test_is_auto_submitted(task: TaskSpec, tmp_path: Path) -> None:
    session, executor = make_session(task, tmp_path, max_steps=3)
    session.call("test")
    edit_lr(session)
    last = session.call("view", {"filename": FILE, "start_line": 1, "end_line": 2})
    assert last.done and last.steps_left == 0
    assert "[NOTE] Step budget exhausted (3/3); your latest test #1 is submitted" in last.text
    assert "[submit] Auto-submitting result from test #1 as final." in last.text
    assert session.submission is not None and session.submission.auto
    assert [j.label for j in executor.requests[-1].jobs][-1] == "lm-eval-tiny"
    over = session.call("test")
    assert over.text.startswith("ERROR: Already submitted") and over.cost_step == 0


def test_steps_run_out_without_a_test(task: TaskSpec, tmp_path: Path) -> None:
    session, _ = make_session(task, tmp_path, max_steps=1)
    result = session.call("view", {"filename": FILE})
    assert "nothing was submitted" in result.text and result.done
    assert session.submission is None and session.final is None
    assert session.call("test").text.startswith("ERROR: Step budget exhausted (1/1)")


# ── persistence ───────────────────────────────────────────────────────────────────────────


def test_state_is_written_after_every_call(task: TaskSpec, tmp_path: Path) -> None:
    session, _ = make_session(task, tmp_path)
    path = session.run_dir / "session.json"
    for call in (("view", {"filename": FILE}), ("test", {}), ("bogus", {})):
        session.call(*call)
        saved = json.loads(path.read_text())
        assert saved == session.state.model_dump(mode="json")
    assert not list(session.run_dir.glob(".session.json.*"))


def test_a_started_run_cannot_be_started_again(task: TaskSpec, tmp_path: Path) -> None:
    make_session(task, tmp_path)
    with pytest.raises(SessionError, match=r"use Session\.resume"):
        make_session(task, tmp_path)


def test_resume_restores_exactly_and_continues(task: TaskSpec, tmp_path: Path) -> None:
    session, _ = make_session(task, tmp_path)
    edit_lr(session)
    session.call("test")
    edit_lr(session, "    return min_lr")
    before = (session.run_dir / "session.json").read_text()
    resumed = Session.resume(session.run_dir, executor=scripted_executor(), task=task)
    assert resumed.state == session.state
    assert resumed.workspace.text(FILE) == session.workspace.text(FILE)
    assert (session.run_dir / "session.json").read_text() == before
    assert resumed.call("undo").text.startswith("Undo complete")  # undo history survived
    assert resumed.call("test").text.startswith("[Test #2] (1 test remaining;")
    assert resumed.steps_left == 15


def test_resume_loads_the_task_from_its_folder(task: TaskSpec, tmp_path: Path) -> None:
    session, _ = make_session(task, tmp_path)
    session.call("view", {"filename": FILE})
    resumed = Session.resume(session.run_dir, executor=scripted_executor())
    assert resumed.task.id == task.id and resumed.state == session.state


def test_resume_errors(tmp_path: Path, task: TaskSpec) -> None:
    with pytest.raises(SessionError, match="does not exist"):
        Session.resume(tmp_path / "nothing", executor=scripted_executor())
    session, _ = make_session(task, tmp_path)
    (session.run_dir / "session.json").write_text("{not json")
    with pytest.raises(SessionError, match="not a valid session state"):
        Session.resume(session.run_dir, executor=scripted_executor())


class _Killed(BaseException):
    """Stands for the process dying: not an Exception, so nothing catches it."""


def test_test_in_flight_is_rerun_once_and_charged_once(task: TaskSpec, tmp_path: Path) -> None:
    session, _ = make_session(task, tmp_path)
    edit_lr(session)
    session.executor = scripted_executor(crash=_Killed())
    with pytest.raises(_Killed):
        session.call("test")
    saved = json.loads((session.run_dir / "session.json").read_text())
    assert saved["pending"]["kind"] == "test" and saved["steps_used"] == 2
    assert saved["tests_used"] == 0
    executor = scripted_executor()
    resumed = Session.resume(session.run_dir, executor=executor)
    assert resumed.pending is not None
    with pytest.raises(SessionError, match="complete_pending"):
        resumed.call("view", {"filename": FILE})
    result = resumed.complete_pending()
    assert result is not None and result.text.startswith("[Test #1] (2 tests remaining;")
    assert resumed.state.tests_used == 1 and resumed.state.steps_used == 2
    assert resumed.pending is None and resumed.complete_pending() is None
    assert executor.requests[0].files == resumed.workspace.edited_files()


def test_final_in_flight_is_finished_on_resume(task: TaskSpec, tmp_path: Path) -> None:
    session, _ = make_session(task, tmp_path)
    session.call("test")
    session.call("test")
    session.executor = scripted_executor(crash=_Killed())
    with pytest.raises(_Killed):
        session.call("submit", {"n": 2})
    resumed = Session.resume(session.run_dir, executor=scripted_executor())
    assert resumed.pending is not None and resumed.pending.kind == "final"
    assert resumed.done  # the agent has submitted; only the evaluation is left
    assert resumed.call("test").text.startswith("ERROR: Already submitted test #2")
    result = resumed.complete_pending()
    assert result is not None and "from test #2" in result.text
    assert resumed.final is not None and resumed.final.status == "ok"
    assert resumed.pending is None


def test_custom_seeds_and_harness_env(task: TaskSpec, tmp_path: Path) -> None:
    executor = scripted_executor()
    session = Session(
        task,
        tmp_path / "r",
        executor=executor,
        profile="tiny",
        data=DataPaths(data_dir=tmp_path),
        seeds=SeedPlan(test=[7], final=[7, 8]),
        env={"PB_MAX_ITERS": "20"},
    )
    session.call("test")
    assert executor.requests[0].seeds == [7]
    assert executor.requests[0].env == {"PB_MAX_ITERS": "20", "PB_CONFIG_OVERRIDES": "{}"}


def test_hidden_results_never_reach_the_agent(task: TaskSpec, tmp_path: Path) -> None:
    session, _ = make_session(task, tmp_path, ["ok", "failed", "infra_error", "ok", "ok"])
    texts = [edit_lr(session).text]
    for _ in range(4):
        texts.append(session.call("test").text)
    texts.append(session.call("submit", {"n": 1}).text)
    assert session.final is not None and "piqa_lm-eval-tiny" in session.final.metrics()
    for text in texts:
        assert not any(w in text for w in HIDDEN_WORDS), text


def test_final_lost_to_infra_is_retried_by_the_harness(task: TaskSpec, tmp_path: Path) -> None:
    session, _ = make_session(task, tmp_path, ["ok", "ok", "infra_error"])
    session.call("test")
    session.call("test")
    result = session.call("submit", {"n": 2})
    assert "[NOTE] The final evaluation hit an infrastructure failure" in result.text
    assert session.done and session.pending is not None and session.pending.kind == "final"
    retry = session.complete_pending()
    assert retry is not None and "'val_loss_gpt-tiny'" in retry.text
    assert session.final is not None and session.final.status == "ok" and session.pending is None


def test_preflight_crash_is_an_infra_failure(task: TaskSpec, tmp_path: Path) -> None:
    session, executor = make_session(task, tmp_path)

    def broken(request: Any, progress: Any = None) -> Any:
        raise RuntimeError("sandbox could not start")

    executor.run = broken  # type: ignore[method-assign]
    result = session.call("test")
    assert result.text.startswith(
        "[Test not counted] Infrastructure failure: executor raised RuntimeError"
    )
    assert session.tests_left == 3 and session.tests == []
    assert session.state.uncounted[0].kind == "infra_error"


def test_initial_observation(task: TaskSpec, tmp_path: Path) -> None:
    session, _ = make_session(task, tmp_path, max_steps=7)
    text = session.initial_observation(baselines=[])
    assert text.startswith("# Mini task") and "You have 7 steps and 3 tests." in text
    assert "[EDITABLE — lines 9–13, line 22 only]" in text
    assert session.steps_left == 7  # reading the task costs nothing


def test_a_leftover_test_folder_is_never_reused(task: TaskSpec, tmp_path: Path) -> None:
    # The leftover: the finished test of another run of the same code and data, so that every
    # pair's executor record matches this test's keys, with a better number written in.
    other = Session(
        task,
        tmp_path / "runs" / "other",
        executor=scripted_executor(),
        profile="tiny",
        data=DataPaths(data_dir=tmp_path / "data"),
    )
    other.call("test")
    session, executor = make_session(task, tmp_path)
    shutil.copytree(other.run_dir / "tests" / "1", session.run_dir / "tests" / "1")
    record = session.run_dir / "tests" / "1" / "gpt-tiny" / "seed_42.result.json"
    doc = json.loads(record.read_text())
    doc["result"]["metrics"]["val_loss"] = 0.001
    record.write_text(json.dumps(doc))
    session.call("test")
    assert len(executor.backend.runs_of("gpt-tiny", 42)) == 1  # run, not reused
    assert session.tests[0].result.metrics()["val_loss_gpt-tiny"] > 1
    assert (session.run_dir / "tests" / "1.stale-1" / "gpt-tiny" / "seed_42").is_dir()


def test_infra_failure_of_a_hidden_setting_is_not_named_to_the_agent(
    task: TaskSpec, tmp_path: Path
) -> None:
    session, executor = make_session(task, tmp_path, max_tests=1)
    edit_lr(session)
    assert session.call("test").ok

    def lose_the_hidden_setting(request: Any, progress: Any = None) -> TestResult:
        return TestResult(
            status="infra_error",
            reason="lm-eval-tiny seed 42: infrastructure: node lost running "
            "scripts/lm_eval_tiny.sh while scoring piqa_lm-eval-tiny",
        )

    executor.run = lose_the_hidden_setting  # type: ignore[method-assign]
    result = session.call("submit", {"n": 1})
    assert "infrastructure failure" in result.text
    assert not any(w in result.text for w in HIDDEN_WORDS), result.text
    assert "<hidden>" in result.text


def test_no_host_path_reaches_the_agent(task: TaskSpec, tmp_path: Path) -> None:
    session, executor = make_session(task, tmp_path)

    def broken(request: Any, progress: Any = None) -> Any:
        raise OSError(28, "No space left on device", str(request.out_dir / "x" / "ckpt.pt"))

    executor.run = broken  # type: ignore[method-assign]
    result = session.call("test")
    assert "No space left on device" in result.text
    assert str(tmp_path) not in result.text and "<host>" in result.text


def test_a_damaged_workspace_is_an_uncharged_infrastructure_failure(
    task: TaskSpec, tmp_path: Path
) -> None:
    """Files changed behind the workspace's back are the harness's failure, not the agent's:
    labelled, charged no test, and nothing runs."""
    session, executor = make_session(task, tmp_path)
    on_disk = session.run_dir / "workspace" / "custom_pretrain.py"
    on_disk.write_text(on_disk.read_text().replace("import math", "import math, os"))
    result = session.call("test")
    assert result.text.startswith(
        "[Test not counted] Infrastructure failure: the harness's copy of your files failed "
        "its integrity check. This was not caused by your code. No test was used (3 tests "
        "remaining)"
    )
    assert result.cost_test == 0 and result.cost_step == 1 and session.tests_left == 3
    attempt = session.state.uncounted[-1]
    assert attempt.kind == "infra_error" and "differs from the workspace" in attempt.reason
    assert not executor.requests and not executor.preflight_requests


def test_standard_errors_never_reach_the_agent(task: TaskSpec, tmp_path: Path) -> None:
    """The evaluator's standard errors go to the leaderboard (researchers), never into a text
    the agent reads: not a visible metric's, and certainly not a hidden one's."""
    session, executor = make_session(task, tmp_path, max_tests=1)
    run = executor.run

    def with_stderr(request: Any, progress: Any = None) -> TestResult:
        result = run(request, progress)
        seeds = [
            r.model_copy(update={"stderr": {k: 7.654321 for k in r.metrics}})
            for r in result.results
        ]
        return result.model_copy(update={"results": seeds})

    executor.run = with_stderr  # type: ignore[method-assign]
    texts = [edit_lr(session).text, session.call("test").text]
    texts.append(session.call("submit", {"n": 1}).text)
    assert session.final is not None
    assert session.final.for_setting("lm-eval-tiny")[0].stderr  # they were there to leak
    for text in texts:
        assert "7.65" not in text and "stderr" not in text, text
