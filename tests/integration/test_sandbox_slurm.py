"""The Slurm backend against a one-node cluster (started by the test when the machine allows)."""

from __future__ import annotations

from pathlib import Path

import pytest

from sandbox import DataPaths, EvaluationSetting, Executor, TestRequest
from sandbox._slurm import SlurmBackend
from tests._fixtures.sandbox import FAKE_TRAIN, HOOK, fake_request, fake_settings

pytestmark = [pytest.mark.integration, pytest.mark.slurm]

TRAIN, LM_EVAL = fake_settings("0:05:00")


def _request(
    codebase: Path,
    data: DataPaths,
    out: Path,
    files: dict[str, str] | None = None,
    settings: list[EvaluationSetting] | None = None,
    env: dict[str, str] | None = None,
) -> TestRequest:
    return fake_request(
        codebase,
        data,
        out,
        run_id="slurm",
        files=files,
        settings=settings or [TRAIN],
        seeds=[42, 43],
        env=env,
    )


def test_fake_codebase_as_sbatch_jobs(
    slurm_cluster: None, fake_codebase: Path, fake_data: Path, tmp_path: Path
) -> None:
    backend = SlurmBackend(poll_s=0.5, cpus_per_task=1, mem="512M")
    result = Executor(backend, cache_dir=tmp_path / "cache").run(
        _request(
            fake_codebase, DataPaths(data_dir=fake_data), tmp_path / "t", settings=[TRAIN, LM_EVAL]
        )
    )
    assert result.status == "ok", f"{result.reason}\n{result.results[0].log_tail}"
    assert len(result.results) == 4 and "arc_easy_lm-eval-tiny" in result.metrics()
    assert not list((tmp_path / "t" / "gpt-tiny").glob(".work-*"))  # work copies removed


def test_failing_submission_and_impossible_job(
    slurm_cluster: None, fake_codebase: Path, fake_data: Path, tmp_path: Path
) -> None:
    files = {
        "custom_pretrain.py": FAKE_TRAIN.replace(
            HOOK, HOOK + "raise RuntimeError('boom in slurm')\n"
        )
    }
    result = Executor(SlurmBackend(poll_s=0.5, cpus_per_task=1, mem="512M")).run(
        _request(fake_codebase, DataPaths(data_dir=fake_data), tmp_path / "t", files=files)
    )
    assert result.status == "failed" and "RuntimeError: boom in slurm" in (result.reason or "")
    # a job no node can ever run is an infrastructure error, not an endless wait
    huge = SlurmBackend(poll_s=0.5, cpus_per_task=4096)
    stuck = Executor(huge).run(
        _request(fake_codebase, DataPaths(data_dir=fake_data), tmp_path / "u")
    )
    assert stuck.status == "infra_error", stuck.reason


def test_real_codebase_tiny_on_slurm(
    slurm_cluster: None, codebase_dir: Path, pb_data_paths: DataPaths, tmp_path: Path
) -> None:
    if not (codebase_dir / "scripts" / "gpt_tiny.sh").is_file():
        pytest.skip("the nanoGPT codebase has no scripts/gpt_tiny.sh yet")
    setting = TRAIN.model_copy(update={"time_limit_s": 900})
    req = _request(
        codebase_dir, pb_data_paths, tmp_path / "t", settings=[setting], env={"PB_MAX_ITERS": "20"}
    )
    result = Executor(SlurmBackend(poll_s=1.0)).run(req.model_copy(update={"seeds": [42]}))
    assert result.status == "ok", f"{result.reason}\n{result.results[0].log_tail}"
    assert "val_loss_gpt-tiny" in result.metrics()


def test_cancel_scancels_the_jobs(
    slurm_cluster: None, fake_codebase: Path, fake_data: Path, tmp_path: Path
) -> None:
    import subprocess
    import threading
    import time

    backend = SlurmBackend(poll_s=0.5, cpus_per_task=1, mem="256M")
    executor = Executor(backend)
    req = _request(
        fake_codebase, DataPaths(data_dir=fake_data), tmp_path / "t", env={"PB_FAKE_STEP_S": "2"}
    )
    box: dict[str, object] = {}
    thread = threading.Thread(target=lambda: box.update(result=executor.run(req)))
    thread.start()
    deadline = time.monotonic() + 30
    while not backend._jobs and time.monotonic() < deadline:
        time.sleep(0.2)
    jobs = sorted(backend._jobs)
    assert jobs
    executor.cancel()
    thread.join(60)
    result = box["result"]
    assert result.status == "infra_error", result.reason  # type: ignore[attr-defined]
    queue = subprocess.run(
        ["squeue", "-h", "-j", ",".join(jobs), "-o", "%T"], capture_output=True, text=True
    )
    assert "RUNNING" not in queue.stdout and "PENDING" not in queue.stdout
