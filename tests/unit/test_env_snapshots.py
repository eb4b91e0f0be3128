"""Snapshots of every text an agent reads, per shipped task: the first observation and each
tool text (view, edit ok and each ERROR kind, undo, test feedback, preflight refusal, submit,
budget exhausted), so that a change to any of them shows up as a readable diff.

The snapshots are files under ``tests/unit/snapshots/<task>/``. After a deliberate text change,
regenerate them with ``PB_UPDATE_SNAPSHOTS=1 python -m pytest tests/unit/test_env_snapshots.py``
and review the diff.
"""

from __future__ import annotations

import difflib
import json
import os
from collections.abc import Callable
from pathlib import Path
from typing import Literal

import pytest

from env import Budgets, Session, TaskSpec, list_tasks, load_task, mask_timings, tool_schemas
from sandbox import DataPaths
from tests._fixtures.scripted_backend import Outcome, scripted_executor

SNAPSHOTS = Path(__file__).parent / "snapshots"
UPDATE = os.environ.get("PB_UPDATE_SNAPSHOTS") == "1"
TASKS = list_tasks()


def check_snapshot(path: Path, text: str) -> None:
    """Compare `text` (timings as placeholders) with the stored snapshot, or store it when
    regenerating."""
    text = mask_timings(text)  # the texts, not how fast this machine was
    if UPDATE:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")
        return
    if not path.is_file():
        pytest.fail(f"no snapshot {path}; create it with PB_UPDATE_SNAPSHOTS=1")
    expected = path.read_text(encoding="utf-8")
    if text != expected:
        diff = difflib.unified_diff(
            expected.splitlines(keepends=True),
            text.splitlines(keepends=True),
            fromfile=f"{path} (stored)",
            tofile="now",
        )
        pytest.fail(
            "agent-facing text changed (regenerate with PB_UPDATE_SNAPSHOTS=1 if meant):\n"
            + "".join(diff)
        )


def _session(
    task: TaskSpec,
    tmp_path: Path,
    outcomes: list[Outcome] | None = None,
    *,
    preflight: Literal["ok", "failed"] = "ok",
    max_steps: int = 30,
) -> Session:
    executor = scripted_executor(outcomes or [], preflight=preflight)
    return Session(
        task,
        tmp_path / "runs" / "run-1",
        executor=executor,
        profile="tiny",
        data=_prepared_data(tmp_path / "data"),
        budgets=Budgets(max_steps=max_steps, max_tests=3),
    )


def _prepared_data(root: Path) -> DataPaths:
    """Empty folders standing for prepared data: the scripted backend reads none of it, but the
    real executor refuses a job whose declared inputs are missing."""
    paths = DataPaths(
        data_dir=root / "train", tokenizer_dir=root / "tokenizer", eval_data_dir=root / "eval"
    )
    for folder in (paths.data_dir, paths.tokenizer_dir, paths.eval_data_dir):
        assert folder is not None
        folder.mkdir(parents=True, exist_ok=True)
    return paths


class _Recorder:
    """Runs tool calls and snapshots each result under a numbered name."""

    def __init__(self, session: Session, folder: Path) -> None:
        self.session = session
        self.folder = folder
        self.count = 0
        self.file = session.task.agent_path(session.task.editable_files[0].path)
        self.first, self.last = session.workspace.editable_ranges(self.file)[0]

    def __call__(self, name: str, tool: str, arguments: dict[str, object] | str | None) -> str:
        self.count += 1
        text = self.session.call(tool, arguments).text
        check_snapshot(self.folder / f"{self.count:02d}-{name}.txt", text)
        return text

    def region(self) -> str:
        """The current text of the first region (valid code for it, whatever the task)."""
        lines = self.session.workspace.text(self.file).split("\n")
        return "\n".join(lines[self.first - 1 : self.last])

    def replace(self, content: str) -> dict[str, object]:
        return {
            "op": "replace",
            "filename": self.file,
            "start_line": self.first,
            "end_line": self.last,
            "content": content,
        }


@pytest.mark.parametrize("task_id", TASKS)
def test_first_observation(task_id: str, tmp_path: Path) -> None:
    session = _session(load_task(task_id), tmp_path)
    check_snapshot(SNAPSHOTS / task_id / "00-first-observation.txt", session.initial_observation())


@pytest.mark.parametrize("task_id", TASKS)
def test_tool_texts(task_id: str, tmp_path: Path) -> None:
    task = load_task(task_id)
    rec = _Recorder(_session(task, tmp_path), SNAPSHOTS / task_id / "tools")
    f, first = rec.file, rec.first
    original = rec.region()
    rec("view", "view", {"filename": f, "start_line": max(1, first - 3), "end_line": first + 2})
    rec("view-error-range", "view", {"filename": f, "start_line": 5, "end_line": 2})
    rec("view-error-not-found", "view", {"filename": f"{task.package}/nope.py"})
    rec("error-unknown-tool", "read", {"filename": f})
    rec("error-arguments", "edit", {"filename": f, "content": "x"})
    rec("error-json", "edit", "{not json")
    rec("error-package", "edit", {**rec.replace("x = 1"), "filename": "other/file.py"})
    elsewhere = task.agent_path(task.read_only_files[0] if task.read_only_files else "nope.py")
    rec("error-not-editable", "edit", {**rec.replace("x = 1"), "filename": elsewhere})
    rec("error-outside", "edit", {**rec.replace("x = 1"), "start_line": 1, "end_line": 1})
    rec("error-range", "edit", {**rec.replace("x = 1"), "start_line": first + 1, "end_line": first})
    rec("error-insert-outside", "edit", {"op": "insert", "filename": f, "after_line": 1,
                                         "content": "x = 1"})  # fmt: skip
    rec("error-create", "edit", {"op": "create", "filename": f"{task.package}/h.py", "content": ""})
    rec("error-content", "edit", rec.replace("x = 1  # \u202e"))
    rec("error-syntax", "edit", rec.replace("def (:"))
    rec("error-policy", "edit", rec.replace("import os\n" + original))
    rec("error-invariant", "edit", rec.replace("x = 1"))
    rec("undo-nothing", "undo", {})
    rec("edit-replace", "edit", rec.replace(original + "\n# a comment at the end"))
    rec("edit-insert", "edit", {"op": "insert", "filename": f, "after_line": first - 1,
                                "content": "# a comment at the start"})  # fmt: skip
    rec("undo", "undo", {"n": 1})
    rec("submit-error-no-test", "submit", {"n": 1})
    rec("test-1", "test", {})
    rec("submit-error-iterate", "submit", {"n": 1})
    rec("test-2", "test", {})
    rec("test-3-last", "test", {})
    rec("test-budget-exhausted", "test", {})
    rec("submit-error-number", "submit", {"n": 7})
    rec("submit", "submit", {"n": 2})
    rec("after-submit", "view", {"filename": f})


Scenario = Callable[[_Recorder], None]


def _preflight_refused(rec: _Recorder) -> None:
    rec("test-preflight-refused", "test", {})


def _test_failed(rec: _Recorder) -> None:
    rec("test-failed", "test", {})


def _infra_failure(rec: _Recorder) -> None:
    rec("test-infrastructure-failure", "test", {})


def _steps_exhausted(rec: _Recorder) -> None:
    rec("test-1", "test", {})
    rec("steps-exhausted-auto-submit", "undo", {})
    rec("session-over", "test", {})


SCENARIOS: dict[str, tuple[Scenario, list[Outcome], Literal["ok", "failed"], int]] = {
    "preflight": (_preflight_refused, [], "failed", 30),
    "failed": (_test_failed, ["failed"], "ok", 30),
    "infra": (_infra_failure, ["infra_error"], "ok", 30),
    "steps": (_steps_exhausted, [], "ok", 2),
}


@pytest.mark.parametrize("scenario", sorted(SCENARIOS))
@pytest.mark.parametrize("task_id", TASKS)
def test_test_outcome_texts(task_id: str, scenario: str, tmp_path: Path) -> None:
    run, outcomes, preflight, max_steps = SCENARIOS[scenario]
    session = _session(
        load_task(task_id), tmp_path, outcomes, preflight=preflight, max_steps=max_steps
    )
    run(_Recorder(session, SNAPSHOTS / task_id / scenario))


def test_tool_schemas() -> None:
    for dialect in ("openai", "mcp"):
        text = json.dumps(tool_schemas(dialect), indent=1, ensure_ascii=False) + "\n"
        check_snapshot(SNAPSHOTS / f"tool-schemas-{dialect}.json", text)
