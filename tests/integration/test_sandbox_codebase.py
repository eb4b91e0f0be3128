"""The real nanoGPT codebase through the local sandbox, job by job, as the tasks declare them:
the preflight jobs' verdicts, a tiny test of each task, the logits workers, and the cache."""

from __future__ import annotations

import shutil
import time
from pathlib import Path

import pytest

import env
from env._texts import render_feedback
from sandbox import DataPaths, Executor, JobSpec, LocalBackend, TestRequest

pytestmark = pytest.mark.integration

LR = "llm-pretrain-lr-schedule"
NORM = "llm-pretrain-normalization"
EDIT_MARK = "        x = x + self.mlp(self.ln_2(x))\n"
GET_LR = "def get_lr(it, warmup_iters, lr_decay_iters, learning_rate, min_lr):\n"


def _jobs(task_id: str, *labels: str) -> list[JobSpec]:
    jobs = {j.label: j for j in env.load_task(task_id).jobs("tiny")}
    return [jobs[label] for label in labels]


def _request(
    codebase: Path, data: DataPaths, out: Path, jobs: list[JobSpec], files: dict[str, str]
) -> TestRequest:
    return TestRequest(
        run_id="sandbox-it",
        test_id="1",
        codebase_dir=codebase,
        files=files,
        jobs=jobs,
        seeds=[42],
        profile="tiny",
        out_dir=out,
        data=data,
        env={"PB_MAX_ITERS": "30", "PB_CONFIG_OVERRIDES": "{}"},
    )


@pytest.fixture
def snapshot(codebase_dir: Path, tmp_path: Path) -> Path:
    """A copy of the codebase: its version is part of the cache key, and others may edit it."""
    copy = tmp_path / "codebase"
    shutil.copytree(codebase_dir, copy, ignore=shutil.ignore_patterns("__pycache__"))
    return copy


def _source(codebase: Path) -> str:
    return (codebase / "custom_pretrain.py").read_text()


@pytest.mark.parametrize(
    ("edit", "expected"),
    [
        ("        x = x + self.mlp(self.ln_2(x))[..., :-1]\n", "must match the size"),
        ("        x = x + self.mlp(self.ln_2(x)) * float('nan')\n", "non-finite"),
        (
            "        x = x + self.mlp(self.ln_2(x))\n        import not_a_module_pb\n",
            "ModuleNotFoundError",
        ),
    ],
)
def test_the_preflight_job_reports_a_crashing_architecture_fast(
    snapshot: Path, pb_data_paths: DataPaths, tmp_path: Path, edit: str, expected: str
) -> None:
    source = _source(snapshot)
    if EDIT_MARK not in source:
        pytest.skip("the Block.forward line this test edits has changed")
    start = time.monotonic()
    files = {"custom_pretrain.py": source.replace(EDIT_MARK, edit)}
    result = Executor(LocalBackend()).run(
        _request(snapshot, pb_data_paths, tmp_path / "t", _jobs(NORM, "preflight"), files)
    )
    reason = result.results[0].reason or ""
    assert result.status == "failed" and expected in reason, reason
    assert time.monotonic() - start < 30
    assert str(tmp_path) not in reason and "/pb/" not in reason  # the agent's own lines only


def test_the_schedule_job_checks_get_lr_over_every_real_profile(
    snapshot: Path, pb_data_paths: DataPaths, tmp_path: Path
) -> None:
    source = _source(snapshot)
    bad = source.replace(GET_LR, GET_LR + "    if it > 9000:\n        return float('inf')\n")
    result = Executor(LocalBackend()).run(
        _request(
            snapshot,
            pb_data_paths,
            tmp_path / "t",
            _jobs(LR, "schedule"),
            {"custom_pretrain.py": bad},
        )
    )
    reason = result.results[0].reason or ""
    assert result.status == "failed" and "9001" in reason and "full" in reason, reason


def test_a_tiny_lr_test_then_the_cache(
    snapshot: Path, pb_data_paths: DataPaths, tmp_path: Path
) -> None:
    jobs = _jobs(LR, "schedule", "train-tiny", "gpt-tiny", "lm-eval-tiny")
    files = {"custom_pretrain.py": _source(snapshot)}
    request = _request(snapshot, pb_data_paths, tmp_path / "t1", jobs, files)
    executor = Executor(LocalBackend(), cache_dir=tmp_path / "cache")
    result = executor.run(request)
    assert result.status == "ok", f"{result.reason}\n{result.results[1].log_tail}"
    metrics = result.metrics(jobs)
    for name in ("val_loss", "wikitext2_ppl", "lambada_ppl"):
        assert f"{name}_gpt-tiny" in metrics
    for name in ("arc_easy", "hellaswag", "piqa", "winogrande"):
        assert f"{name}_lm-eval-tiny" in metrics
    train = result.for_setting("train-tiny")[0]
    assert train.curve and train.resources.wall_s > 0
    text = render_feedback(result, [j for j in jobs if not j.hidden], ["piqa_*", "winogrande_*"])
    assert "Final metrics (gpt-tiny): val_loss_gpt-tiny=" in text and "lm-eval" not in text

    start = time.monotonic()
    again = executor.run(request.model_copy(update={"out_dir": tmp_path / "t2"}))
    assert time.monotonic() - start < 2.0
    assert again.cached and again.metrics(jobs) == metrics


def test_a_tiny_normalisation_test_evaluates_through_sandboxed_workers(
    snapshot: Path, pb_data_paths: DataPaths, tmp_path: Path
) -> None:
    jobs = _jobs(NORM, "preflight", "train-tiny", "gpt-tiny")
    assert jobs[2].workers is not None and jobs[2].workers.count >= 2
    files = {"custom_pretrain.py": _source(snapshot)}
    result = Executor(LocalBackend()).run(
        _request(snapshot, pb_data_paths, tmp_path / "t", jobs, files)
    )
    assert result.status == "ok", result.reason
    assert "val_loss_gpt-tiny" in result.metrics(jobs)
    evaluation = result.for_setting("gpt-tiny")[0]
    logs = sorted(Path(evaluation.log_path or "").parent.glob("seed_42.worker-*.log"))
    assert len(logs) == jobs[2].workers.count  # one sandbox each, their output kept apart
