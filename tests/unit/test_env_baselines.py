"""Baselines: parsing region files, load order, errors, and their edits through the edit tool."""

from __future__ import annotations

from pathlib import Path

import pytest

from env import (
    Baseline,
    BaselineError,
    Budgets,
    Session,
    TaskSpecError,
    baseline_edits,
    load_baselines,
    load_task,
)
from env._baselines import parse_baseline
from env._spec import TaskSpec
from sandbox import DataPaths
from tests._fixtures.scripted_backend import scripted_executor
from tests._fixtures.worlds import MINI_TASK_ID, mini_task_world

FILE = "nanoGPT/custom_pretrain.py"
OPEN = {"get_lr", "config_overrides"}


@pytest.fixture
def mini(tmp_path: Path) -> tuple[TaskSpec, Path]:
    world = mini_task_world(tmp_path / "src")
    task_dir, baselines = world.task_dir, world.baselines_dir
    return load_task(task_dir), baselines


def _session(task: TaskSpec, tmp_path: Path) -> Session:
    return Session(
        task,
        tmp_path / "run",
        executor=scripted_executor(),
        profile="tiny",
        data=DataPaths(data_dir=tmp_path),
        budgets=Budgets(max_steps=20, max_tests=3),
    )


def test_load_in_task_order(mini: tuple[TaskSpec, Path]) -> None:
    task, root = mini
    baselines = load_baselines(task, root)
    assert [b.name for b in baselines] == ["cosine", "flat"]
    cosine, flat = baselines
    assert cosine.is_default and cosine.regions == {}
    assert cosine.doc.startswith("cosine — the unmodified default.")
    assert flat.regions == {
        "get_lr": "def get_lr(it, warmup_iters, lr_decay_iters, learning_rate, min_lr):\n"
        "    return learning_rate",
        "config_overrides": 'CONFIG_OVERRIDES = {"min_lr": 1e-5}',
    }


def test_missing_file(mini: tuple[TaskSpec, Path]) -> None:
    task, root = mini
    (root / MINI_TASK_ID / "flat.py").unlink()
    with pytest.raises(TaskSpecError, match="baseline 'flat' has no file"):
        load_baselines(task, root)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("x = 1\n", "needs a module docstring"),
        ('"""d"""\ndef (:\n', "not valid Python"),
        ('"""d"""\n# ── EDITABLE REGION START: get_lr ──\nx = 1\n', "has no END marker"),
        (
            '"""d"""\n# ── EDITABLE REGION START: block ──\nx = 1\n# ── EDITABLE REGION END: block ──\n',
            "region 'block' is not an editable region",
        ),
    ],
)
def test_bad_baseline_files(text: str, message: str) -> None:
    with pytest.raises(TaskSpecError, match=message):
        parse_baseline("b", text, OPEN)


def test_empty_region_body() -> None:
    text = (
        '"""d"""\n# ── EDITABLE REGION START: config_overrides ──\n'
        "# ── EDITABLE REGION END: config_overrides ──\n"
    )
    assert parse_baseline("b", text, OPEN).regions == {"config_overrides": ""}


def _apply(baseline: Baseline, session: Session) -> list[str]:
    """Issue a baseline's edits through the session's edit tool, as the runner's agent does."""
    edits = baseline_edits(baseline, session.task, session.workspace.edited_files())
    return [session.call("edit", edit.arguments).text for edit in edits]


def test_edits_are_pure_data(mini: tuple[TaskSpec, Path], tmp_path: Path) -> None:
    task, root = mini
    flat = load_baselines(task, root)[1]
    files = _session(task, tmp_path).workspace.edited_files()
    edits = baseline_edits(flat, task, files)
    # Bottom-most region first, so the line numbers of the regions above stay valid.
    assert [e.region for e in edits] == ["config_overrides", "get_lr"]
    assert edits[0].arguments == {
        "op": "replace",
        "filename": FILE,
        "content": flat.regions["config_overrides"],
        "start_line": 22,
        "end_line": 22,
    }
    assert edits[1].arguments["start_line"] == 9 and edits[1].arguments["end_line"] == 13
    assert baseline_edits(flat, task, files) == edits  # the same texts, the same edits


def test_empty_region_is_an_insert_after_its_start_marker(mini: tuple[TaskSpec, Path]) -> None:
    task, _ = mini
    text = (
        "x = 1\n# ── EDITABLE REGION START: config_overrides ──\n"
        "# ── EDITABLE REGION END: config_overrides ──\n"
    )
    overrides = Baseline("b", "d", {"config_overrides": "CONFIG_OVERRIDES = {}"})
    path = next(e.path for e in task.editable_files if "config_overrides" in e.regions)
    [edit] = baseline_edits(overrides, task, {path: text})
    assert edit.arguments == {
        "op": "insert",
        "filename": FILE,
        "content": "CONFIG_OVERRIDES = {}",
        "after_line": 2,
    }


def test_a_region_missing_from_the_files_is_an_error(mini: tuple[TaskSpec, Path]) -> None:
    task, root = mini
    flat = load_baselines(task, root)[1]
    with pytest.raises(BaselineError, match="are not in the workspace"):
        baseline_edits(flat, task, {})


def test_edits_through_the_tool_path(mini: tuple[TaskSpec, Path], tmp_path: Path) -> None:
    task, root = mini
    flat = load_baselines(task, root)[1]
    session = _session(task, tmp_path)
    texts = _apply(flat, session)
    assert texts[0].startswith("OK: Replaced lines 22..22 with 1 line(s)")
    assert texts[1].startswith("OK: Replaced lines 9..13 with 2 line(s)")
    regions = session.workspace.region_texts()
    assert regions["get_lr"].rstrip("\n") == flat.regions["get_lr"]
    assert regions["config_overrides"].rstrip("\n") == flat.regions["config_overrides"]
    assert [c.tool for c in session.state.calls] == ["edit", "edit"]
    assert session.steps_left == 18  # charged like an agent's edits


def test_default_baseline_edits_nothing(mini: tuple[TaskSpec, Path], tmp_path: Path) -> None:
    task, root = mini
    session = _session(task, tmp_path)
    default = load_baselines(task, root)[0]
    assert baseline_edits(default, task, session.workspace.edited_files()) == []


def test_real_task_baselines_load() -> None:
    task = _real_task()
    baselines = load_baselines(task)
    assert [b.name for b in baselines] == task.baselines
    assert all(b.doc for b in baselines)
    assert any(not b.is_default for b in baselines)


def _real_task() -> TaskSpec:
    """The shipped task; skipped (with the reason) while its codebase is still incomplete."""
    try:
        return load_task("llm-pretrain-lr-schedule")
    except TaskSpecError as e:
        pytest.skip(f"the real task does not load yet: {e}")
