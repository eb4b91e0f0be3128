"""Every baseline of both tasks applies through the agent's edit path, passes the invariants and
the code policy, and completes a tiny-profile test plus its final evaluation with all metrics.

Real components throughout: the env Session, the sandbox's LocalBackend running the codebase's
setting scripts, the trusted evaluator and lm-eval on the offline evaluation sets. Runs that
leave the codebase unmodified (the two reference baselines) share one cached result.
"""

from __future__ import annotations

import math
from pathlib import Path

import pytest

import env
from sandbox import DataPaths, Executor, LocalBackend

pytestmark = [pytest.mark.integration, pytest.mark.slow]

CASES = [
    (task_id, name)
    for task_id, names in [
        ("llm-pretrain-lr-schedule", ["cosine", "trapezoidal", "wsd", "wsd_sqrt"]),
        (
            "llm-pretrain-normalization",
            ["layernorm", "rmsnorm", "rmsnorm_parallel", "rmsnorm_post"],
        ),
    ]
    for name in names
]
ALL_METRICS = [
    "val_loss",
    "wikitext2_ppl",
    "lambada_ppl",
    "arc_easy",
    "hellaswag",
    "piqa",
    "winogrande",
]


@pytest.fixture(scope="module")
def result_cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("result-cache")


@pytest.mark.parametrize(("task_id", "name"), CASES)
def test_baseline_completes_a_tiny_test(
    task_id: str, name: str, pb_data_paths: DataPaths, result_cache: Path, tmp_path: Path
) -> None:
    task = env.load_task(task_id)
    baseline = next(b for b in env.load_baselines(task) if b.name == name)
    session = env.Session(
        task,
        tmp_path / "run",
        executor=Executor(LocalBackend(), cache_dir=result_cache),
        profile="tiny",
        data=pb_data_paths,
        budgets=env.Budgets(max_steps=8, max_tests=1),
        # one final seed: this checks that each baseline runs, not the seed spread
        seeds=task.seeds("tiny").model_copy(update={"final": [42]}),
        # shorter than the profile: test_codebase_jobs pins the full chain's numbers already
        env={"PB_MAX_ITERS": "40"},
    )
    for edit in env.baseline_edits(baseline, task, session.workspace.edited_files()):
        text = session.call("edit", edit.arguments).text
        assert text.startswith("OK:"), text
    session.workspace.check()

    tested = session.call("test")
    assert tested.ok, tested.text
    assert "[Test #1]" in tested.text
    assert "Final metrics (gpt-tiny)" in tested.text
    for hidden in ("lm-eval-tiny", "piqa", "winogrande"):
        assert hidden not in tested.text

    submitted = session.call("submit", {"n": 1})
    assert submitted.ok, submitted.text
    final = session.final
    assert final is not None and final.status == "ok", final
    metrics = final.metrics(task.jobs("tiny"))
    for metric in ALL_METRICS:
        key = task.metric_key(metric, "tiny")
        assert key in metrics and math.isfinite(metrics[key]), (key, metrics)
    # the tiny profile learns: well below the loss of a uniform guess over the vocabulary
    assert metrics["val_loss_gpt-tiny"] < math.log(50257) - 2.0
    for metric in ("arc_easy", "hellaswag", "piqa", "winogrande"):
        assert 0.0 <= metrics[f"{metric}_lm-eval-tiny"] <= 100.0
