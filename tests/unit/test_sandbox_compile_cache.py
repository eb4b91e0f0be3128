"""The compile cache's parts: its key, the supervisor's publishing, the job's variables, the
Slurm binds, and the runner's choice of who may add to it (see docs/SECURITY.md)."""

from __future__ import annotations

import dataclasses
import importlib.metadata
import os
import shlex
import stat
from pathlib import Path

import pytest

from runner._run import RunConfig, _data_paths
from sandbox import CompileCache, compile_cache_path, publish_compile_cache
from sandbox._backend import (
    Job,
    Workers,
    job_environment,
    sandboxed_job_environment,
    sandboxed_worker_environment,
)
from sandbox._slurm import SlurmBackend
from tests._fixtures.sandbox import probe_job
from tests._fixtures.worlds import write_files


def test_the_key_is_torch_release_codebase_identity_and_profile(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    code = write_files(tmp_path / "code", {"train.py": "print(1)\n"})
    monkeypatch.setattr(importlib.metadata, "version", lambda name: "9.1.0+cu128")
    first = compile_cache_path(tmp_path / "cc", code, "tiny")
    assert first.parent.parent == tmp_path / "cc" / "torch-9.1.0+cu128"
    assert first.name == "tiny" and len(first.parent.name) == 16
    assert compile_cache_path(tmp_path / "cc", code, "full") == first.parent / "full"
    (code / "train.py").write_text("print(2)\n")
    assert compile_cache_path(tmp_path / "cc", code, "tiny").parent != first.parent
    monkeypatch.setattr(importlib.metadata, "version", lambda name: "9.2.0")
    assert compile_cache_path(tmp_path / "cc", code, "tiny").parts[-3] == "torch-9.2.0"

    def missing(name: str) -> str:
        raise importlib.metadata.PackageNotFoundError(name)

    monkeypatch.setattr(importlib.metadata, "version", missing)
    assert compile_cache_path(tmp_path / "cc", code, "tiny").parts[-3] == "torch-none"


def test_publishing_adds_regular_files_whole_and_never_replaces(tmp_path: Path) -> None:
    staged = write_files(
        tmp_path / "staged",
        {
            "fxgraph/ab/new": "new entry",
            "fxgraph/ab/old": "a different old entry",
            "xy/kernel.so": "binary",
            "locks/held.lock": "",
            "triton/0/k/kernel.json": "{}",
        },
    )
    (staged / "xy" / "kernel.so").chmod(0o700)
    os.symlink("/etc/passwd", staged / "fxgraph" / "ab" / "link")
    os.symlink(tmp_path, staged / "linked-dir")
    os.mkfifo(staged / "fxgraph" / "fifo")
    cache = write_files(tmp_path / "cache", {"fxgraph/ab/old": "old entry"})
    assert publish_compile_cache(staged, cache) == 3
    assert (cache / "fxgraph" / "ab" / "new").read_text() == "new entry"
    assert (cache / "fxgraph" / "ab" / "old").read_text() == "old entry"
    assert (cache / "triton" / "0" / "k" / "kernel.json").read_text() == "{}"
    assert stat.S_IMODE((cache / "xy" / "kernel.so").stat().st_mode) == 0o755
    assert stat.S_IMODE((cache / "fxgraph" / "ab" / "new").stat().st_mode) == 0o644
    assert stat.S_IMODE((cache / "triton" / "0").stat().st_mode) == 0o755
    for absent in ("locks", "fxgraph/ab/link", "linked-dir", "fxgraph/fifo"):
        assert not os.path.lexists(cache / absent), absent
    assert not list(cache.rglob(".pb-publish-*"))
    assert publish_compile_cache(staged, cache) == 0  # a second time adds nothing


def _job(tmp_path: Path, cache: CompileCache | None, workers: int = 0) -> Job:
    job = probe_job(
        tmp_path,
        tmp_path / "code",
        "true\n",
        workers=Workers("logits_worker.sh", workers) if workers else None,
        # a request cannot point the job's caches anywhere: only PB_* pass, paths never
        env={"PB_COMPILE_CACHE_DIR": "/evil", "TORCHINDUCTOR_CACHE_DIR": "/evil"},
    )
    return dataclasses.replace(job, compile_cache=cache)


COMPILE_VARS = (
    "PB_COMPILE_CACHE_DIR",
    "TORCHINDUCTOR_CACHE_DIR",
    "TRITON_CACHE_DIR",
    "PB_COMPILE_CACHE_PUBLISH",
)


def test_a_job_compiles_in_its_temp_dir_unless_its_request_is_trusted(tmp_path: Path) -> None:
    untrusted = sandboxed_job_environment(
        _job(tmp_path, CompileCache(path=tmp_path / "cc")), path="/usr/bin", home="/tmp"
    )
    assert [untrusted[v] for v in COMPILE_VARS[:3]] == [
        "/pb/compile-cache",
        "/tmp/pb-compile-cache",
        "/tmp/pb-compile-cache/triton",
    ]
    trusted = sandboxed_job_environment(
        _job(tmp_path, CompileCache(path=tmp_path / "cc", writable=True)),
        path="/usr/bin",
        home="/tmp",
    )
    assert trusted["TORCHINDUCTOR_CACHE_DIR"] == untrusted["TORCHINDUCTOR_CACHE_DIR"]
    assert trusted["PB_COMPILE_CACHE_PUBLISH"] == "/pb/out/compile-cache"
    assert "PB_COMPILE_CACHE_PUBLISH" not in untrusted
    for env in (untrusted, trusted):
        assert str(tmp_path) not in "".join(env.values())
    # weak backends pass host paths in the same variables
    weak = job_environment(
        _job(tmp_path, CompileCache(path=tmp_path / "cc")),
        path="/usr/bin",
        home=str(tmp_path / "tmp"),
        tmpdir=str(tmp_path / "tmp"),
        out_dir=str(tmp_path / "out"),
        inputs={},
        needs_dir=None,
        workers_dir=None,
        compile_cache_dir=str(tmp_path / "cc"),
    )
    assert weak["PB_COMPILE_CACHE_DIR"] == str(tmp_path / "cc")
    assert weak["TORCHINDUCTOR_CACHE_DIR"] == str(tmp_path / "tmp" / "pb-compile-cache")


def test_without_a_cache_and_in_workers_no_variable_is_set(tmp_path: Path) -> None:
    none = sandboxed_job_environment(_job(tmp_path, None), path="/usr/bin", home="/tmp")
    worker = sandboxed_worker_environment(
        _job(tmp_path, CompileCache(path=tmp_path / "cc", writable=True), workers=1),
        0,
        path="/usr/bin",
    )
    for env in (none, worker):
        assert not set(COMPILE_VARS) & set(env)


def test_slurm_binds_the_cache_read_only_into_the_job_only(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("os.geteuid", lambda: 0)
    backend = SlurmBackend(check_cluster=False, container="apptainer", image="/images/pb.sif")
    job = _job(tmp_path, CompileCache(path=tmp_path / "cc"), workers=1)
    lines = backend.batch_script(job, tmp_path / "work").splitlines()
    job_line = next(line for line in lines if "probe.sh" in line)
    worker_line = next(line for line in lines if "logits_worker.sh" in line)
    assert f"{tmp_path / 'cc'}:/pb/compile-cache:ro" in shlex.split(job_line)
    assert "compile-cache" not in worker_line
    files = backend._env_files(job, tmp_path / "work")
    assert "PB_COMPILE_CACHE_DIR=/pb/compile-cache\n" in files["job.env"]
    assert "compile" not in files["worker-0.env"].lower()


@pytest.mark.parametrize(
    ("agent", "writable"),
    [
        ("baseline:cosine", True),
        ("openai:gpt-x", False),
        ("mcp:client", False),
        ("http:client", False),
    ],
)
def test_only_a_baseline_run_adds_to_the_cache(tmp_path: Path, agent: str, writable: bool) -> None:
    from runner import _components as comp

    task = comp.load_task("llm-pretrain-lr-schedule")
    config = RunConfig(task=task.id, agent=agent, profile="tiny", home=str(tmp_path))
    cache = _data_paths(config, task).compile_cache
    assert cache is not None and cache.writable is writable
    assert cache.path == compile_cache_path(tmp_path / "compile-cache", task.codebase_dir, "tiny")
