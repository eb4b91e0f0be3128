"""The sbatch options and batch scripts the Slurm backend writes (no cluster needed)."""

from __future__ import annotations

import dataclasses
import os
import shlex
from pathlib import Path

import pytest

from sandbox._backend import (
    BackendError,
    Job,
    Workers,
    job_environment,
    sandboxed_job_environment,
)
from sandbox._slurm import SlurmBackend


@pytest.fixture(autouse=True)
def as_root(monkeypatch: pytest.MonkeyPatch) -> None:
    """The scripts differ by who submits; these tests describe a root harness."""
    monkeypatch.setattr("os.geteuid", lambda: 0)


def _job(tmp_path: Path, gpus: int = 0, workers: int = 0) -> Job:
    out = tmp_path / "test" / "gpt-345m" / "seed_42"
    return Job(
        label="gpt-345m",
        seed=42,
        script="scripts/eval_345m.sh",
        codebase_dir=tmp_path / "code",
        files={},
        out_dir=out,
        log_path=out.parent / "seed_42.log",
        time_limit_s=12 * 3600,
        inputs={"eval_data": tmp_path / "data" / "eval", "hf_home": tmp_path / "hf"},
        needs={"train-345m": tmp_path / "test" / "train-345m" / "seed_42"},
        workers=Workers("scripts/logits_worker.sh", workers) if workers else None,
        gpus=gpus,
        env={"PB_PROFILE": "full", "PB_CKPT_JOB": "train-345m"},
    )


def _apptainer(**kw: object) -> SlurmBackend:
    return SlurmBackend(check_cluster=False, container="apptainer", image="/images/pb.sif", **kw)  # type: ignore[arg-type]


def test_without_a_container_runtime_weak_isolation_must_be_asked_for() -> None:
    with pytest.raises(BackendError, match="no filesystem isolation"):
        SlurmBackend(check_cluster=False)
    with pytest.raises(BackendError, match="needs an image"):
        SlurmBackend(check_cluster=False, container="apptainer")
    weak = SlurmBackend(check_cluster=False, allow_weak_isolation=True).describe()
    assert weak["isolation"].startswith("WEAK") and "whole filesystem" in weak["isolation"]
    strong = _apptainer().describe()
    assert "--containall" in strong["isolation"] and strong["user"].startswith("61000")


def test_gpu_job_sbatch_options(tmp_path: Path) -> None:
    backend = _apptainer(partition="gpu", time_grace_s=300, mem="8G", gpu_mem="64G")
    args = backend.sbatch_args(_job(tmp_path, gpus=2), tmp_path / "work")
    assert args[:2] == ["sbatch", "--parsable"]
    for option in (
        "--gres=gpu:2",
        "--partition=gpu",
        "--time=725",  # 12 h + 300 s grace, in minutes
        "--export=NONE",
        "--no-requeue",
        "--mem=64G",  # the GPU job's memory, not the CPU jobs'
        "--nodes=1",
        f"--output={tmp_path / 'test' / 'gpt-345m' / 'seed_42.log'}",
        f"--chdir={tmp_path / 'work'}",
    ):
        assert option in args, option
    cpu = backend.sbatch_args(_job(tmp_path, gpus=0), tmp_path / "work")
    assert "--mem=8G" in cpu and not any(a.startswith("--gres") for a in cpu)


def test_a_percent_in_the_log_path_is_literal(tmp_path: Path) -> None:
    job = _job(tmp_path / "100%")
    args = _apptainer().sbatch_args(job, tmp_path / "work")
    assert any(a.startswith("--output=") and "100%%" in a for a in args)


def test_apptainer_script(tmp_path: Path) -> None:
    backend = _apptainer()
    work = tmp_path / "work"
    job = _job(tmp_path, gpus=2, workers=2)
    text = backend.batch_script(job, work)
    lines = text.splitlines()
    job_line = next(line for line in lines if "eval_345m.sh" in line)
    assert job_line.endswith(" </dev/null")
    argv = shlex.split(job_line.removesuffix(" </dev/null"))
    # privileges dropped before the runtime starts; the runtime isolates everything else
    assert argv[:2] == ["setpriv", "--reuid=61000"] and "--bounding-set=-all" in argv
    runtime = argv[argv.index("apptainer") :]
    for flag in ("--containall", "--no-home", "--cleanenv", "--net", "--nv"):
        assert flag in runtime, flag
    assert runtime[runtime.index("--network") + 1] == "none"
    assert "--writable-tmpfs" not in runtime and "--writable" not in runtime  # read-only image
    binds = [runtime[i + 1] for i, a in enumerate(runtime) if a == "--bind"]
    assert binds == [
        f"{work / 'code'}:/pb/code:ro",
        f"{job.out_dir}:/pb/out:rw",
        f"{tmp_path / 'data' / 'eval'}:/pb/data/eval_data:ro",
        f"{tmp_path / 'hf'}:/pb/data/hf_home:ro",
        f"{tmp_path / 'test' / 'train-345m' / 'seed_42'}:/pb/needs/train-345m:ro",
        f"{work / 'workers' / '0'}:/pb/workers/0:rw",
        f"{work / 'workers' / '1'}:/pb/workers/1:rw",
    ]
    assert runtime[-5] == "/images/pb.sif" and runtime[-3:-1] == ["-c", runtime[-2]]
    assert runtime[-1] == "scripts/eval_345m.sh"  # an argument, never spliced into shell text
    # each worker: its own container, the original code, the needs, its own socket dir only
    worker_lines = [line for line in lines if "logits_worker.sh" in line]
    assert len(worker_lines) == 2 and all(line.startswith("setsid ") for line in worker_lines)
    worker = shlex.split(worker_lines[1])
    wbinds = [worker[i + 1] for i, a in enumerate(worker) if a == "--bind"]
    assert wbinds == [
        f"{work / 'code'}:/pb/code:ro",
        f"{tmp_path / 'test' / 'train-345m' / 'seed_42'}:/pb/needs/train-345m:ro",
        f"{work / 'workers' / '1'}:/pb/worker:rw",
    ]
    assert worker_lines[1].endswith("</dev/null &") and str(job.worker_log(1)) in worker_lines[1]
    # workers start before the job and are killed after it; the job's status is kept
    assert lines.index(worker_lines[0]) < lines.index(job_line)
    after = lines[lines.index(job_line) + 1 :]
    assert after[:2] == ["rc=$?", "stop_workers"] and after[-1] == 'exit "$rc"'
    # Slurm's GPU assignment reaches the containers through their env files
    assert (
        'printf "CUDA_VISIBLE_DEVICES=%q\\n" "${CUDA_VISIBLE_DEVICES-}" >> "$work/job.env"' in lines
    )


def test_apptainer_env_files_hold_sandbox_paths_only(tmp_path: Path) -> None:
    job = _job(tmp_path, gpus=2, workers=1)
    files = _apptainer()._env_files(job, tmp_path / "work")
    env = dict(line.split("=", 1) for line in files["job.env"].splitlines())
    assert env["PB_OUT_DIR"] == "/pb/out" and env["PB_NEEDS_DIR"] == "/pb/needs"
    assert env["PB_EVAL_DATA_DIR"] == "/pb/data/eval_data" and env["HF_HOME"] == "/pb/data/hf_home"
    assert env["PB_WORKERS_DIR"] == "/pb/workers" and env["PB_NPROC"] == "2"
    assert env["PB_PROFILE"] == "full" and "PB_DATA_DIR" not in env  # not granted
    assert "CUDA_VISIBLE_DEVICES" not in env  # Slurm's, added when the job runs
    worker = dict(line.split("=", 1) for line in files["worker-0.env"].splitlines())
    assert worker["PB_WORKER_DIR"] == "/pb/worker" and worker["PB_WORKER_INDEX"] == "0"
    assert "PB_EVAL_DATA_DIR" not in worker and "HF_HOME" not in worker
    for text in files.values():
        assert str(tmp_path) not in text  # no host path inside the container


def test_weak_script(tmp_path: Path) -> None:
    backend = SlurmBackend(
        check_cluster=False, allow_weak_isolation=True, python="/opt/py/bin/python"
    )
    work = tmp_path / "work"
    job = _job(tmp_path, gpus=2, workers=1)
    text = backend.batch_script(job, work)
    job_line = next(line for line in text.splitlines() if "eval_345m.sh" in line)
    argv = shlex.split(job_line.removesuffix(" </dev/null"))
    assert argv[0] == "unshare" and {"--net", "--pid", "--mount", "--kill-child"} <= set(argv)
    assert f"--wd={work / 'code'}" in argv
    assert "ip link set lo up" in job_line  # loopback up for torchrun's rendezvous
    setpriv = argv[argv.index("setpriv") :]
    assert {"--reuid=61000", "--inh-caps=-all", "--bounding-set=-all", "--no-new-privs"} <= set(
        setpriv
    )
    env = setpriv[setpriv.index("-i") + 1 : setpriv.index("bash")]
    variables = dict(item.split("=", 1) for item in env)
    assert variables["PATH"].startswith("/opt/py/bin:")
    assert variables["PB_OUT_DIR"] == str(job.out_dir) and variables["PB_NEEDS_DIR"] == str(
        work / "needs"
    )
    assert variables["CUDA_VISIBLE_DEVICES"] == "${CUDA_VISIBLE_DEVICES-}"  # expanded by bash
    assert not any(k.startswith("SLURM_") for k in variables)
    # a failed sandbox start is recorded where the job cannot write, before anything runs
    failure = "|| fail 'the node cannot start the sandbox (unshare)'"
    probe = next(line for line in text.splitlines() if line.endswith(failure))
    assert text.index(probe) < text.index(job_line)


def test_unsafe_paths_are_refused_before_submitting(tmp_path: Path) -> None:
    backend = _apptainer(poll_s=0.01)
    job = _job(tmp_path / "a:b")
    outcome = backend.run_job(job)
    assert outcome.infra_error and "cannot prepare" in outcome.infra_error


def test_a_jobs_thread_count_is_its_own_under_every_backend(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Float sums split over another number of threads round differently: the job spec's
    ``threads`` decides, never the submitting shell's OMP_NUM_THREADS nor the allocation."""
    monkeypatch.setenv("OMP_NUM_THREADS", "7")
    job = dataclasses.replace(_job(tmp_path), threads=3)
    host = dict(os.environ)
    local = sandboxed_job_environment(job, path="/bin", home="/h", host_env=host)
    weak = job_environment(
        job,
        path="/bin",
        home="/h",
        tmpdir="/t",
        out_dir="/o",
        inputs={},
        needs_dir=None,
        workers_dir=None,
        host_env=host,
    )
    in_image = _apptainer()._env_files(job, tmp_path / "work")["job.env"]
    for env in (local, weak):
        assert (env["OMP_NUM_THREADS"], env["MKL_NUM_THREADS"]) == ("3", "3")
    assert "OMP_NUM_THREADS=3\n" in in_image
    args = SlurmBackend(check_cluster=False, allow_weak_isolation=True).sbatch_args(job, tmp_path)
    assert "--cpus-per-task=3" in args
