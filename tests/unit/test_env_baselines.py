"""Baselines: parsing region files, load order, errors, and applying through the edit tool."""

from __future__ import annotations

from pathlib import Path

import pytest

from env import BaselineError, Budgets, Session, TaskSpecError, load_baselines, load_task
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


def test_apply_edits_through_the_tool_path(mini: tuple[TaskSpec, Path], tmp_path: Path) -> None:
    task, root = mini
    flat = load_baselines(task, root)[1]
    session = _session(task, tmp_path)
    texts = flat.apply(session)
    # Bottom-most region first, so the second edit's line numbers were still right.
    assert texts[0].startswith("OK: Replaced lines 22..22 with 1 line(s)")
    assert texts[1].startswith("OK: Replaced lines 9..13 with 2 line(s)")
    regions = session.workspace.region_texts()
    assert regions["get_lr"].rstrip("\n") == flat.regions["get_lr"]
    assert regions["config_overrides"].rstrip("\n") == flat.regions["config_overrides"]
    assert [c.tool for c in session.state.calls] == ["edit", "edit"]
    assert session.steps_left == 18  # charged like an agent's edits


def test_default_baseline_applies_nothing(mini: tuple[TaskSpec, Path], tmp_path: Path) -> None:
    task, root = mini
    session = _session(task, tmp_path)
    before = session.workspace.text(FILE)
    assert load_baselines(task, root)[0].apply(session) == []
    assert session.workspace.text(FILE) == before and session.steps_left == 20


def test_refused_edit_is_a_clear_error(mini: tuple[TaskSpec, Path], tmp_path: Path) -> None:
    task, _ = mini
    bad = parse_baseline(
        "sneaky",
        '"""d"""\n# ── EDITABLE REGION START: get_lr ──\nimport os\n'
        "def get_lr(it, warmup_iters, lr_decay_iters, learning_rate, min_lr):\n"
        "    return float(os.environ['LR'])\n# ── EDITABLE REGION END: get_lr ──\n",
        OPEN,
    )
    session = _session(task, tmp_path)
    with pytest.raises(BaselineError, match="baseline 'sneaky': the edit of region 'get_lr'") as e:
        bad.apply(session)
    assert "ERROR:" in str(e.value)


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
