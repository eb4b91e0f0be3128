"""The initial observation: slots, the numbered file, baselines, budgets, nothing hidden."""

from __future__ import annotations

from pathlib import Path

import pytest

from env import (
    Budgets,
    ObservationError,
    TaskSpecError,
    Workspace,
    load_baselines,
    load_task,
    render_observation,
)
from env._spec import TaskSpec
from tests._fixtures.worlds import mini_task_world


@pytest.fixture
def mini(tmp_path: Path) -> tuple[TaskSpec, Path, Workspace]:
    world = mini_task_world(tmp_path / "src")
    task_dir, baselines = world.task_dir, world.baselines_dir
    task = load_task(task_dir)
    return task, baselines, Workspace.create(task, tmp_path / "ws")


def test_slots_are_filled(mini: tuple[TaskSpec, Path, Workspace]) -> None:
    task, _, ws = mini
    text = render_observation(task, ws, "tiny", Budgets(max_steps=12, max_tests=2))
    assert "Change `get_lr` in `nanoGPT/custom_pretrain.py` (lines 9–13)" in text
    assert "(line 22)" in text
    assert "Model: 4L/4H/128D, 80 iterations" in text
    assert "profile `tiny`, hardware CPU" in text
    assert "You have 12 steps and 2 tests." in text
    assert "| `gpt-tiny` | scripts/eval_tiny.sh | does not run here | 0 (CPU) | 0:10:00 |" in text
    assert "| `schedule` (before the test is counted) | scripts/schedule.sh | runs here |" in text
    assert "`CONFIG_OVERRIDES` is read as data (a Python literal) and never run." in text
    assert "{" not in text.split("nanoGPT/custom_pretrain.py [EDITABLE")[0].replace("{}", "")


def test_numbered_file_and_budget(mini: tuple[TaskSpec, Path, Workspace]) -> None:
    task, _, ws = mini
    text = render_observation(task, ws, "tiny")
    assert "nanoGPT/custom_pretrain.py [EDITABLE — lines 9–13, line 22 only]" in text
    assert "     9  def get_lr(" in text and "     8| # ── EDITABLE REGION START" in text
    # The budget rules are said once, generated from the spec (the task text does not say them).
    assert text.count("## Your budget") == 1 and text.count("uses a step") == 1
    budget = text.split("## Your budget", 1)[1]
    assert "20 steps and 3 tests" in budget
    assert "infrastructure failure use no test" in budget and "submit(n)" in budget
    assert "rejected before training (by the preflight job `schedule`)" in budget
    # The jobs table was a slot of the description, so it is not repeated.
    assert "## How a test runs" not in text


def test_jobs_table_added_when_the_description_has_none(
    mini: tuple[TaskSpec, Path, Workspace],
) -> None:
    task, _, ws = mini
    task._description_template = "Improve {file}."
    text = render_observation(task, ws, "tiny")
    assert "## How a test runs" in text and "| `train-tiny` | scripts/train_tiny.sh |" in text


def test_baselines_are_shown_read_only(mini: tuple[TaskSpec, Path, Workspace]) -> None:
    task, root, ws = mini
    text = render_observation(task, ws, "tiny", baselines=load_baselines(task, root))
    assert "[READ-ONLY — reference implementation: cosine]" in text
    assert "(This baseline is the unmodified code shown above.)" in text
    flat = text.split("[READ-ONLY — reference implementation: flat]", 1)[1]
    assert "region get_lr, in place of lines 9–13:" in flat
    assert "    10      return learning_rate" in flat
    assert '    22  CONFIG_OVERRIDES = {"min_lr": 1e-5}' in flat


def test_hidden_settings_and_metrics_never_appear(mini: tuple[TaskSpec, Path, Workspace]) -> None:
    task, root, ws = mini
    text = render_observation(task, ws, "tiny", baselines=load_baselines(task, root))
    for word in ("lm-eval-tiny", "lm_eval_tiny", "piqa"):
        assert word not in text


@pytest.mark.parametrize(
    ("template", "message"),
    [
        ("{nope}", "unknown slot 'nope'"),
        ("{recipe[tokens]}", r"unknown recipe key in \{recipe\[…\]\} 'tokens'"),
        ("{lines[block]}", "unknown region"),
        ("{file", "not a valid template"),
    ],
)
def test_unknown_slots_are_errors(
    mini: tuple[TaskSpec, Path, Workspace], template: str, message: str
) -> None:
    task, _, ws = mini
    task._description_template = template
    with pytest.raises(ObservationError, match=message):
        render_observation(task, ws, "tiny")


def test_real_task_renders() -> None:
    task = _real_task()
    import tempfile

    with tempfile.TemporaryDirectory() as root:
        ws = Workspace.create(task, Path(root))
        for profile in task.profiles:
            text = render_observation(task, ws, profile, baselines=load_baselines(task))
            assert "[EDITABLE — lines" in text
            # The markers of the other task's regions are frozen here and do not read as open.
            assert "EDITABLE REGION START: layernorm" not in text
            assert "| # ── FROZEN REGION START: layernorm ──" in text
            for job in task.jobs(profile):
                assert (f"`{job.label}`" in text) != job.hidden
            for metric in task.metrics:
                if metric.hidden:
                    assert metric.name not in text


def _real_task() -> TaskSpec:
    """The shipped task; skipped (with the reason) while its codebase is still incomplete."""
    try:
        return load_task("llm-pretrain-lr-schedule")
    except TaskSpecError as e:
        pytest.skip(f"the real task does not load yet: {e}")
