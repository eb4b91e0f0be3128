"""The compile cache through the executor and the real local backend (bubblewrap).

Every job of a request with a cache sees it read-only at /pb/compile-cache and compiles in a
working copy; only the supervisor writes the shared cache, and only from a trusted request's
jobs that ended ok. The jobs here are bash scripts that do what a compiling job does (copy
the cache, add entries), plus what a hostile one would (write, replace, remove, chmod, link in
the shared cache; stage a file where a trusted job's entries are published from). The shared
cache's files are world-writable on purpose: only the read-only mount stops the writes.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import stat
from pathlib import Path

import pytest

from sandbox import CompileCache, DataPaths, Executor, JobSpec, LocalBackend, TestRequest
from tests._fixtures.worlds import write_files

pytestmark = pytest.mark.integration

ENTRY = "fxgraph/aa/entry"  # an entry a trusted run published earlier
ATTEMPTS = {
    "overwrite": f'echo POISON > "$c/{ENTRY}"',
    "append": f'echo POISON >> "$c/{ENTRY}"',
    "create": 'echo POISON > "$c/fxgraph/aa/PWNED"',
    "replace": f'mv -f "$c/fxgraph/aa/other" "$c/{ENTRY}"',
    "remove": f'rm -f "$c/{ENTRY}"',
    "chmod": f'chmod 0600 "$c/{ENTRY}"',
    "mkdir": 'mkdir "$c/PWNED-dir"',
    "symlink": 'ln -s /etc/passwd "$c/fxgraph/PWNED-link"',
    "truncate": f'truncate -s 0 "$c/{ENTRY}"',
}
JOB = (
    """set -u
out="$PB_OUT_DIR"
{ echo "cache=${PB_COMPILE_CACHE_DIR-<unset>}"; echo "inductor=${TORCHINDUCTOR_CACHE_DIR-<unset>}"
  echo "triton=${TRITON_CACHE_DIR-<unset>}"
  if [ -e /pb/compile-cache ]; then echo mounted=yes; else echo mounted=no; fi
  env; } > "$out/seen.txt"
if [ -n "${PB_COMPILE_CACHE_DIR-}" ]; then
    c="$PB_COMPILE_CACHE_DIR"
    w="$TORCHINDUCTOR_CACHE_DIR"
    # what a compiling job does: work in a copy of the cache, add what it compiled
    mkdir -p "$w/fxgraph/zz" "$w/locks"
    cp -R "$c/." "$w/"
    echo "compiled by $PB_JOB" > "$w/fxgraph/zz/$PB_JOB-entry"
    touch "$w/locks/held.lock"
    ln -s /etc/passwd "$w/fxgraph/zz/link"
    mkfifo "$w/fxgraph/zz/fifo"
"""
    + "".join(
        f'    ( {cmd} ) 2> "$out/{name}.err" && echo ok > "$out/{name}.err"\n'
        for name, cmd in ATTEMPTS.items()
    )
    + """fi
if [ -n "${PB_COMPILE_CACHE_PUBLISH-}" ]; then  # a trusted job keeps what it compiled
    mkdir -p "$PB_COMPILE_CACHE_PUBLISH" && cp -R "$w/." "$PB_COMPILE_CACHE_PUBLISH/"
fi
if [ "${PB_STAGE_POISON-}" = 1 ]; then  # where a trusted job's entries would come from
    mkdir -p "$out/compile-cache/fxgraph/aa" && echo POISON > "$out/compile-cache/fxgraph/aa/PWNED"
fi
exit "${PB_EXIT:-0}"
"""
)
WORKER = """set -u
{ echo "cache=${PB_COMPILE_CACHE_DIR-<unset>}"; echo "inductor=${TORCHINDUCTOR_CACHE_DIR-<unset>}"
  if [ -e /pb/compile-cache ]; then echo mounted=yes; else echo mounted=no; fi
  env; } > "$PB_WORKER_DIR/seen.tmp"
mv "$PB_WORKER_DIR/seen.tmp" "$PB_WORKER_DIR/seen.txt"
sleep 30
"""
WITH_WORKER = """set -u
for _ in $(seq 200); do [ -f "$PB_WORKERS_DIR/0/seen.txt" ] && break; sleep 0.05; done
cp "$PB_WORKERS_DIR/0/seen.txt" "$PB_OUT_DIR/worker-seen.txt"
"""


@pytest.fixture
def codebase(tmp_path: Path) -> Path:
    return write_files(
        tmp_path / "codebase",
        {"job.sh": JOB, "worker.sh": WORKER, "with_worker.sh": WITH_WORKER},
    )


@pytest.fixture
def cache(tmp_path: Path) -> Path:
    """A shared cache holding two published entries, every file and folder world-writable."""
    root = tmp_path / "home" / "compile-cache" / "torch-x" / "codebase" / "tiny"
    write_files(root, {ENTRY: "trusted entry\n", "fxgraph/aa/other": "another entry\n"})
    for path in [root, *root.rglob("*")]:
        path.chmod(0o777 if path.is_dir() else 0o666)
    return root


def digest(root: Path) -> str:
    h = hashlib.sha256()
    for path in sorted(root.rglob("*")):
        st = os.lstat(path)
        h.update(f"{path.relative_to(root)}\0{st.st_mode:o}\0{st.st_uid}\0".encode())
        if stat.S_ISREG(st.st_mode):
            h.update(path.read_bytes())
    return h.hexdigest()


def run(
    tmp_path: Path,
    codebase: Path,
    cache: CompileCache | None,
    *,
    script: str = "job.sh",
    stage: str = "test",
    code: str = "edited",
    env: dict[str, str] | None = None,
    workers: str | None = None,
) -> Path:
    """Run one job; its output directory."""
    spec = JobSpec.model_validate(
        {
            "label": "job",
            "script": script,
            "code": code,
            "stage": stage,
            "time_limit": 60,
            **({"workers": {"script": workers}} if workers else {}),
        }
    )
    data_dir = tmp_path / "data"
    data_dir.mkdir(exist_ok=True)
    out = tmp_path / f"test-{len(list(tmp_path.glob('test-*')))}"
    request = TestRequest(
        run_id="compile-cache",
        test_id="1",
        codebase_dir=codebase,
        jobs=[spec],
        seeds=[1],
        profile="tiny",
        out_dir=out,
        data=DataPaths(data_dir=data_dir, compile_cache=cache),
        env=env or {},
    )
    result = Executor(LocalBackend()).run(request)
    expected = "failed" if (env or {}).get("PB_EXIT", "0") != "0" else "ok"
    assert result.status == expected, result.reason
    return out / "job" / "seed_1"


def refusals(out: Path) -> dict[str, str]:
    return {name: (out / f"{name}.err").read_text().strip() for name in ATTEMPTS}


def assert_read_only(out: Path) -> None:
    for name, error in refusals(out).items():
        assert "Read-only file system" in error, (name, error)


def test_a_job_of_an_untrusted_request_gets_erofs_and_publishes_nothing(
    tmp_path: Path, codebase: Path, cache: Path
) -> None:
    before = digest(cache)
    out = run(tmp_path, codebase, CompileCache(path=cache), env={"PB_STAGE_POISON": "1"})
    seen = (out / "seen.txt").read_text()
    assert "cache=/pb/compile-cache\n" in seen and "mounted=yes" in seen
    assert "inductor=/tmp/pb-compile-cache\n" in seen  # its own copy, gone with the sandbox
    assert "triton=/tmp/pb-compile-cache/triton\n" in seen
    assert "PB_COMPILE_CACHE_PUBLISH" not in seen
    assert str(cache) not in seen and str(tmp_path) not in seen  # no host path
    assert_read_only(out)
    assert digest(cache) == before
    assert not list(cache.rglob("PWNED*"))
    # the staged file is only the job's output: never published, and left where it was
    assert (out / "compile-cache" / "fxgraph" / "aa" / "PWNED").is_file()
    # the next run of the same request finds the cache as it was
    run(tmp_path, codebase, CompileCache(path=cache))
    assert digest(cache) == before


def test_a_trusted_request_adds_what_its_job_compiled_through_the_supervisor(
    tmp_path: Path, codebase: Path, cache: Path
) -> None:
    out = run(tmp_path, codebase, CompileCache(path=cache, writable=True))
    seen = (out / "seen.txt").read_text()
    assert "inductor=/tmp/pb-compile-cache\n" in seen  # the same path in every job
    assert "PB_COMPILE_CACHE_PUBLISH=/pb/out/compile-cache\n" in seen
    assert_read_only(out)  # read-only to a trusted job too: only the supervisor writes
    published = cache / "fxgraph" / "zz" / "job-entry"
    assert published.read_text() == "compiled by job\n"
    st = published.stat()
    assert (st.st_uid, stat.S_IMODE(st.st_mode)) == (os.getuid(), 0o644)
    assert stat.S_IMODE((cache / "fxgraph" / "zz").stat().st_mode) == 0o755
    assert (cache / ENTRY).read_text() == "trusted entry\n"  # published entries never change
    for skipped in ("locks", "fxgraph/zz/link", "fxgraph/zz/fifo"):
        assert not os.path.lexists(cache / skipped), skipped
    assert not (out / "compile-cache").exists()  # not a result, and not read from there


def test_a_trusted_job_that_fails_publishes_nothing(
    tmp_path: Path, codebase: Path, cache: Path
) -> None:
    before = digest(cache)
    out = run(tmp_path, codebase, CompileCache(path=cache, writable=True), env={"PB_EXIT": "3"})
    assert digest(cache) == before
    assert not (out / "compile-cache").exists()


@pytest.mark.parametrize("where", ["no cache", "preflight", "worker"])
def test_a_job_without_the_cache_sees_no_host_path(
    tmp_path: Path, codebase: Path, cache: Path, where: str
) -> None:
    granted = None if where == "no cache" else CompileCache(path=cache, writable=True)
    if where == "worker":
        out = run(tmp_path, codebase, granted, script="with_worker.sh", workers="worker.sh")
        seen = (out / "worker-seen.txt").read_text()
    else:
        stage = "preflight" if where == "preflight" else "test"
        out = run(tmp_path, codebase, granted, stage=stage)
        seen = (out / "seen.txt").read_text()
    assert "cache=<unset>" in seen and "inductor=<unset>" in seen and "mounted=no" in seen
    assert str(cache) not in seen and "compile-cache" not in seen


@pytest.mark.docker
def test_docker_mounts_the_cache_read_only_into_the_job_only(
    tmp_path: Path,
    codebase: Path,
    cache: Path,
    docker_daemon: object,
    docker_host_image: tuple[str, tuple[Path, ...]],
) -> None:
    from sandbox._backend import Workers
    from sandbox._docker import DockerBackend
    from tests._fixtures.sandbox import probe_job

    image, runtime = docker_host_image
    backend = DockerBackend(image, host_runtime=runtime, client=docker_daemon)
    before = digest(cache)
    job = probe_job(
        tmp_path,
        codebase,
        (codebase / "job.sh").read_text(),
        env={"PB_STAGE_POISON": "1"},
    )
    job = dataclasses.replace(job, compile_cache=CompileCache(path=cache))
    outcome = backend.run_job(job)
    assert outcome.exit_code == 0 and outcome.infra_error is None, job.log_path.read_text()
    seen = (job.out_dir / "seen.txt").read_text()
    assert "cache=/pb/compile-cache\n" in seen and "inductor=/tmp/pb-compile-cache\n" in seen
    assert str(cache) not in seen
    assert_read_only(job.out_dir)
    assert digest(cache) == before
    with_worker = probe_job(
        tmp_path,
        codebase,
        WITH_WORKER,
        label="with-worker",
        files={"worker.sh": WORKER},
        workers=Workers("worker.sh", 1),
    )
    with_worker = dataclasses.replace(with_worker, compile_cache=CompileCache(path=cache))
    outcome = backend.run_job(with_worker)
    assert outcome.exit_code == 0, with_worker.log_path.read_text()
    seen = (with_worker.out_dir / "worker-seen.txt").read_text()
    assert "cache=<unset>" in seen and "mounted=no" in seen and str(cache) not in seen


@pytest.mark.slow
def test_a_baseline_compiles_once_and_an_agent_run_loads_it_read_only(
    tmp_path: Path, pb_data_paths: DataPaths
) -> None:
    """Real inductor in the real sandbox: a trusted request's tiny training (compiled, 2
    iterations) fills the cache through the supervisor; an untrusted one then compiles from a
    copy of it (its first iteration far shorter than the cold one) and changes nothing."""
    from tests._fixtures.codebase import CODEBASE_DIR

    shared = tmp_path / "compile-cache"
    spec = JobSpec.model_validate(
        {
            "label": "train-tiny",
            "script": "scripts/train_tiny.sh",
            "code": "edited",
            "inputs": ["train_data"],
            "time_limit": 1800,
            "threads": 2,  # as the tiny profile's jobs (the ratio below was measured so)
        }
    )

    def first_iteration_s(name: str, writable: bool) -> float:
        data = pb_data_paths.model_copy(
            update={"compile_cache": CompileCache(path=shared, writable=writable)}
        )
        request = TestRequest(
            run_id=name,
            test_id="1",
            codebase_dir=CODEBASE_DIR,
            jobs=[spec],
            seeds=[42],
            profile="tiny",
            out_dir=tmp_path / name,
            data=data,
            env={"PB_MAX_ITERS": "2", "PB_VAL_WINDOWS": "8", "PB_COMPILE": "1"},
        )
        result = Executor(LocalBackend()).run(request)
        assert result.status == "ok", result.reason
        out = tmp_path / name / "train-tiny" / "seed_42"
        assert not (out / "compile-cache").exists()
        return float(json.loads((out / "curve.jsonl").read_text().splitlines()[0])["dt_ms"]) / 1000

    cold = first_iteration_s("baseline", writable=True)
    published = digest(shared)
    # inductor's FX graph cache; AOT autograd caches no graph holding a custom
    # autograd.Function (the chunked loss), so there is no aotautograd folder to check
    assert (shared / "fxgraph").is_dir()
    assert not (shared / "locks").exists()
    warm = first_iteration_s("agent", writable=False)
    assert digest(shared) == published
    # Cold compiles the kernels (codegen and a C++ compiler); warm only traces and loads them:
    # 2.7-5x apart in every run measured (benchmarks/compile_cache.py has the figures), about
    # 1x if the cache were not used. The margin is for the load of a shared CI machine.
    assert warm < 0.6 * cold, (cold, warm)


# A stand-in for custom_pretrain.py: it lists the working cache it was given, then "compiles"
# one 64 KiB entry (above the copy's file-size limit, which it lifts for itself alone).
_TRAINER = """import json, os, resource
soft, hard = resource.getrlimit(resource.RLIMIT_FSIZE)
resource.setrlimit(resource.RLIMIT_FSIZE, (hard, hard))
work, out = os.environ["TORCHINDUCTOR_CACHE_DIR"], os.environ["PB_OUT_DIR"]
seen = {n: os.path.getsize(os.path.join(work, n)) for n in os.listdir(work)}
with open(os.path.join(out, "seen.json"), "w") as f:
    json.dump(seen, f)
with open(os.path.join(work, "compiled.bin"), "wb") as f:
    f.write(b"k" * 65536)
open(os.path.join(out, ".training_complete"), "w").close()
"""


def test_train_sh_never_keeps_or_publishes_a_cut_off_cache_file(tmp_path: Path) -> None:
    """The real _train.sh, its copies limited to 16 KiB per file (as a full disk or temp dir
    would cut them): the job compiles from an empty working cache instead of a cut-off copy of
    the shared one, and leaves nothing to publish rather than a cut-off entry, which would
    stay in the shared cache for good."""
    import shutil
    import subprocess
    import sys

    code = tmp_path / "code"
    shutil.copytree(Path(__file__).parents[2] / "tasks" / "codebases" / "nanogpt", code)
    (code / "custom_pretrain.py").write_text(_TRAINER)
    shared, work, out = tmp_path / "shared", tmp_path / "work", tmp_path / "out"
    (shared / "fxgraph").mkdir(parents=True)
    (shared / "fxgraph" / "entry").write_bytes(b"e" * 65536)
    env = {
        "PATH": os.environ["PATH"],
        "PYTHON": sys.executable,
        "PB_PROFILE": "tiny",
        "PB_DEVICE": "cpu",
        "PB_OUT_DIR": str(out),
        "PB_DATA_DIR": str(tmp_path),
        "PB_COMPILE_CACHE_DIR": str(shared),
        "TORCHINDUCTOR_CACHE_DIR": str(work),
        "PB_COMPILE_CACHE_PUBLISH": str(out / "compile-cache"),
    }
    script = code / "scripts" / "train_tiny.sh"
    done = subprocess.run(
        ["bash", "-c", f'ulimit -S -f 16 && exec bash "{script}"'],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    assert "compiling without it" in done.stderr
    assert "could not be kept" in done.stderr
    assert json.loads((out / "seen.json").read_text()) == {}  # no cut-off "fxgraph/entry"
    assert not (out / "compile-cache").exists()  # no cut-off "compiled.bin" to publish
