"""One real tiny-profile run through `Session`: a baseline applied with the edit tool, real
preflight, a real test in the local sandbox, a resume from the run directory, and the final
evaluation (hidden lm-eval setting) that reuses the finished training."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from env import Budgets, Session, TaskSpec, TaskSpecError, baseline_edits, load_baselines, load_task
from sandbox import DataPaths, Executor, LocalBackend

pytestmark = [pytest.mark.integration, pytest.mark.slow]

REPO_ROOT = Path(__file__).resolve().parents[2]


TASK_ID = "llm-pretrain-lr-schedule"
# Fewer iterations and validation windows than the tiny profile: the run must finish within
# the setting's time limit even on a shared, busy CPU.
FAST = {"PB_MAX_ITERS": "30", "PB_EVAL_INTERVAL": "15", "PB_VAL_WINDOWS": "8"}


def _snapshot_task(root: Path) -> tuple[TaskSpec, Path]:
    """A private copy of the task, its codebase and baselines: the run takes minutes, and a
    resumed workspace rightly refuses a codebase that changed underneath it."""
    shutil.copytree(REPO_ROOT / "tasks" / TASK_ID, root / "tasks" / TASK_ID)
    shutil.copytree(
        REPO_ROOT / "tasks" / "codebases" / "nanogpt",
        root / "tasks" / "codebases" / "nanogpt",
        ignore=shutil.ignore_patterns("__pycache__"),
    )
    shutil.copytree(REPO_ROOT / "baselines" / TASK_ID, root / "baselines" / TASK_ID)
    try:
        return load_task(root / "tasks" / TASK_ID), root / "baselines"
    except TaskSpecError as e:
        pytest.skip(f"the lr-schedule task does not load yet: {e}")


def test_real_tiny_test_resume_and_submit(tmp_path: Path, pb_data_paths: DataPaths) -> None:
    task, baselines_root = _snapshot_task(tmp_path / "src")
    run_dir = tmp_path / "run"
    session = Session(
        task,
        run_dir,
        executor=Executor(LocalBackend()),
        profile="tiny",
        data=pb_data_paths,
        budgets=Budgets(max_steps=6, max_tests=1),
        env=FAST,
    )
    wsd = next(b for b in load_baselines(task, baselines_root) if b.name == "wsd")
    for edit in baseline_edits(wsd, task, session.workspace.edited_files()):
        assert session.call("edit", edit.arguments).ok

    result = session.call("test")
    assert result.ok, result.text
    assert result.text.startswith("[Test #1] (0 tests remaining;")
    assert "[NOTE] This was your last test." in result.text
    saved = result.text.split("[Leaderboard] Results saved: ", 1)[1]
    assert "'val_loss_gpt-tiny'" in saved and "lm-eval" not in result.text
    train_metrics = run_dir / "tests" / "1" / "gpt-tiny" / "seed_42" / "metrics.json"
    assert json.loads(train_metrics.read_text())["metrics"]["val_loss"] > 0
    mtime = train_metrics.stat().st_mtime_ns

    resumed = Session.resume(run_dir, executor=Executor(LocalBackend()))
    assert resumed.state == session.state
    final = resumed.call("submit", {"n": 1})
    assert final.ok and final.done, final.text
    assert final.text.startswith("[submit] Submitting result from test #1 as final.")
    for hidden in ("lm-eval-tiny", "piqa", "winogrande"):
        assert hidden not in final.text
    assert resumed.final is not None and resumed.final.status == "ok", resumed.final
    metrics = resumed.final.metrics(task.jobs("tiny"))
    assert "val_loss_gpt-tiny" in metrics and "arc_easy_lm-eval-tiny" in metrics
    # the tiny profile's default final seeds: each setting evaluated on 42, 43 and 44
    seeds = {(r.setting, r.seed) for r in resumed.final.results}
    assert {seed for _, seed in seeds} == {42, 43, 44} and ("lm-eval-tiny", 44) in seeds
    assert train_metrics.stat().st_mtime_ns == mtime  # the finished training was reused
