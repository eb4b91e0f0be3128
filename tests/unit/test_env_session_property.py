"""Budget accounting under random call sequences (hypothesis): whatever an agent does, the
counters add up, limits hold, hidden results stay hidden, and the saved state restores exactly."""

from __future__ import annotations

import json
import tempfile
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from env import Budgets, Session, load_task
from env._spec import TaskSpec
from sandbox import DataPaths
from tests._fixtures.scripted_backend import scripted_executor
from tests._fixtures.worlds import mini_task_world

FILE = "nanoGPT/custom_pretrain.py"
HEAD = "def get_lr(it, warmup_iters, lr_decay_iters, learning_rate, min_lr):\n"

CALLS = st.one_of(
    st.just(("view", {"filename": FILE, "start_line": 1, "end_line": 3})),
    st.sampled_from(["0.5", "0.25", "0.1"]).map(
        lambda k: ("edit-lr", {"content": HEAD + f"    return learning_rate * {k}"})
    ),
    st.just(
        (
            "edit",
            {"op": "replace", "filename": FILE, "start_line": 1, "end_line": 1, "content": "x"},
        )
    ),  # refused: frozen line
    st.just(("undo", {})),
    st.just(("test", {})),
    st.integers(-1, 4).map(lambda n: ("submit", {"n": n})),
    st.just(("read", {})),
    st.just(("edit", "{broken json")),
)
OUTCOMES = st.lists(st.sampled_from(["ok", "ok", "failed", "infra_error"]), max_size=12)


@pytest.fixture(scope="module")
def task(tmp_path_factory: pytest.TempPathFactory) -> TaskSpec:
    return load_task(mini_task_world(tmp_path_factory.mktemp("mini")).task_dir)


def _call(session: Session, tool: str, arguments: Any) -> Any:
    if tool == "edit-lr":
        first, last = session.workspace.editable_ranges(FILE)[0]
        arguments = {
            **arguments,
            "op": "replace",
            "filename": FILE,
            "start_line": first,
            "end_line": last,
        }
        tool = "edit"
    return session.call(tool, arguments)


@settings(
    max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    calls=st.lists(CALLS, min_size=1, max_size=14),
    outcomes=OUTCOMES,
    max_steps=st.integers(1, 8),
    max_tests=st.integers(1, 3),
)
def test_budgets_add_up(
    task: TaskSpec, calls: list[Any], outcomes: list[Any], max_steps: int, max_tests: int
) -> None:
    with tempfile.TemporaryDirectory() as root:
        run_dir = Path(root) / "run"
        session = Session(
            task,
            run_dir,
            executor=scripted_executor(outcomes),
            profile="tiny",
            data=DataPaths(data_dir=Path(root)),
            budgets=Budgets(max_steps=max_steps, max_tests=max_tests),
        )
        step_calls = 0
        for tool, arguments in calls:
            was_done = session.done
            result = _call(session, tool, arguments)
            if not was_done and tool != "submit":
                step_calls += 1
            assert result.cost_step == (0 if was_done or tool == "submit" else 1)
            for word in ("piqa", "lm-eval-tiny"):
                assert word not in result.text
            state = session.state
            assert state.steps_used == step_calls <= max_steps
            assert state.tests_used == len(state.tests) <= max_tests
            assert sum(c.cost_test for c in state.calls) == state.tests_used
            assert sum(c.cost_step for c in state.calls) == state.steps_used
            assert [t.number for t in state.tests] == list(range(1, len(state.tests) + 1))
            assert session.done == (state.submission is not None or state.steps_used == max_steps)
            if state.submission is not None:
                assert state.final is not None
                assert (
                    state.submission.auto
                    or len(state.tests) >= min(2, max_tests)
                    or (state.tests_used == max_tests)
                )
            elif session.done:
                assert not state.tests  # steps ran out before any test completed
            saved = json.loads((run_dir / "session.json").read_text())
            assert saved == state.model_dump(mode="json")
        resumed = Session.resume(run_dir, executor=scripted_executor(), task=task)
        assert resumed.state == session.state
        assert resumed.workspace.text(FILE) == session.workspace.text(FILE)
