"""The one small interface every backend implements, and the job it is given."""

from __future__ import annotations

import abc
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from sandbox._compile_cache import COMPILE_OUTPUT, PRIVATE_DIR
from sandbox._models import CompileCache

LineCallback = Callable[[str], None]


@dataclass(frozen=True)
class SandboxPaths:
    """Where a job finds things inside a sandbox that has its own filesystem view (bubblewrap,
    Docker). Backends without one (the weak local mode, Slurm without a container) pass host
    paths in the same variables instead."""

    code: str = "/pb/code"
    out: str = "/pb/out"
    data: str = "/pb/data"  # /pb/data/<input name>
    needs: str = "/pb/needs"  # /pb/needs/<job label>
    workers: str = "/pb/workers"  # /pb/workers/<i>: the job's side of worker i's socket dir
    worker: str = "/pb/worker"  # a worker's own socket dir
    compile_cache: str = "/pb/compile-cache"  # the shared compile cache, read-only
    tmp: str = "/tmp"


IN_SANDBOX = SandboxPaths()

#: The variable that names each data input inside a job.
INPUT_VARIABLES: dict[str, str] = {
    "train_data": "PB_DATA_DIR",
    "eval_data": "PB_EVAL_DATA_DIR",
    "tokenizer": "PB_TOKENIZER_DIR",
    "hf_home": "HF_HOME",
}


@dataclass(frozen=True)
class Workers:
    """The helper processes of a job (see ``sandbox.WorkerSpec``)."""

    script: str
    count: int


@dataclass(frozen=True)
class Job:
    """One job of a test for one seed: a script in a fresh copy of the codebase.

    ``files`` are laid over the copy (empty for jobs on the original code). ``inputs`` are the
    data directories the job is granted (name → host path, read-only), ``needs`` the output
    directories of finished jobs it reads (label → host path, read-only). ``env`` holds only
    harness variables that name no host path; each backend adds the path variables as they are
    seen from inside its sandbox (`job_environment`). ``log_path`` is written by the supervisor,
    never by the job; ``out_dir`` is the only place the job can write that outlives it.
    """

    label: str
    seed: int
    script: str
    codebase_dir: Path
    files: dict[str, str]
    out_dir: Path
    log_path: Path
    time_limit_s: float
    inputs: dict[str, Path] = field(default_factory=dict)
    needs: dict[str, Path] = field(default_factory=dict)
    workers: Workers | None = None
    gpus: int = 0
    #: CPU threads of each process (``JobSpec.threads``), set by `job_environment`
    threads: int = 1
    env: dict[str, str] = field(default_factory=dict)
    #: the executor's cap on the job's output (its share of the free disk); backends apply the
    #: smaller of this and their own
    max_output_mb: int | None = None
    #: the shared compile cache: bound read-only (never into workers), named by
    #: ``PB_COMPILE_CACHE_DIR``; see `job_environment`
    compile_cache: CompileCache | None = None

    def worker_log(self, index: int) -> Path:
        """Where the supervisor keeps worker ``index``'s output (never shown to an agent)."""
        return self.log_path.with_name(f"{self.log_path.stem}.worker-{index}.log")


@dataclass(frozen=True)
class JobOutcome:
    """What a backend observed about a finished job; the executor turns it into a status.

    ``infra_error`` is set only for what the supervisor itself observed: the sandbox could not
    be started, the daemon or node was lost, the supervisor stopped the job for a reason outside
    it (cancelled, host shutting down), the log could not be written. Whatever the job did —
    its exit status, signals it sent itself, running out of its own memory limit, what it
    printed — is the submission's outcome, never an infrastructure failure. ``oom`` when the
    job's memory limit killed it; ``limit`` names another limit the supervisor enforced
    (output size, process count) when that is what ended the job.
    """

    exit_code: int | None
    wall_s: float
    timed_out: bool = False
    oom: bool = False
    infra_error: str | None = None
    peak_mem_mb: float | None = None
    gpu_type: str | None = None
    notes: tuple[str, ...] = ()
    limit: str | None = None


class GpuPool:
    """The GPUs a backend hands out (device ids as its runtime names them), thread-safe."""

    def __init__(self, ids: list[str]) -> None:
        self._free = list(ids)
        self._lock = threading.Lock()

    def take(self, count: int) -> list[str]:
        """``count`` free GPUs; `BackendError` when fewer are free (the executor's slots keep
        that from happening)."""
        if count <= 0:
            return []
        with self._lock:
            if count > len(self._free):
                raise BackendError(f"{count} GPUs requested but {len(self._free)} free")
            taken, self._free = self._free[:count], self._free[count:]
        return taken

    def give(self, ids: list[str]) -> None:
        """Return GPUs taken earlier."""
        with self._lock:
            self._free.extend(ids)


class BackendError(RuntimeError):
    """The backend cannot run jobs at all (daemon missing, image missing); an infra error."""


def cancelled_outcome() -> JobOutcome:
    """What a job started after its backend's `cancel` gets: an uncharged infrastructure
    failure (the supervisor stopped it, not the job)."""
    return JobOutcome(None, 0.0, infra_error="the supervisor cancelled the job")


class Backend(abc.ABC):
    """Runs jobs somewhere isolated. Lifecycle: construct → ``run_job``* → ``close``.

    ``run_job`` blocks until the job ends (or its time limit kills it), writes the job's
    merged stdout/stderr to ``job.log_path`` and calls ``on_line`` for each line; with
    ``job.workers`` it starts the workers first and stops them when the job ends. It may be
    called from several threads at once. ``cancel`` stops every job in flight (they then
    return with ``infra_error`` set); it is safe to call from another thread.
    """

    name: str = "backend"

    #: GPUs this backend can hand out at once (0: CPU only); the executor packs groups by it.
    gpu_capacity: int = 0
    #: jobs without GPUs that may run at once
    cpu_slots: int = 1

    @abc.abstractmethod
    def run_job(self, job: Job, on_line: LineCallback | None = None) -> JobOutcome:
        """Run one job to completion and report what happened."""

    def cancel(self) -> None:  # noqa: B027 - optional hook
        """Stop every job in flight."""

    def close(self) -> None:
        """Release what the backend holds; by default, stop every job in flight (`cancel`)."""
        self.cancel()

    def describe(self) -> dict[str, str]:
        """A short description for run records (backend name and the guarantees in force)."""
        return {"backend": self.name}

    def __enter__(self) -> Backend:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


# Variables that name a path the backend decides; never taken from a request.
_PATH_VARIABLES = (
    "PB_NEEDS_DIR",
    "PB_WORKERS_DIR",
    "PB_WORKER_DIR",
    "PB_COMPILE_CACHE_DIR",
    "TORCHINDUCTOR_CACHE_DIR",
    "TRITON_CACHE_DIR",
    "PB_COMPILE_CACHE_PUBLISH",
)

# Variables copied from the host environment into a job's scrubbed environment: the locale
# only; nothing that could carry credentials or proxies, nor thread counts (the job's own).
_PASS_THROUGH = ("LANG", "LC_ALL")


def job_environment(
    job: Job,
    *,
    path: str,
    home: str,
    tmpdir: str,
    out_dir: str,
    inputs: dict[str, str],
    needs_dir: str | None,
    workers_dir: str | None,
    host_env: dict[str, str] | None = None,
    compile_cache_dir: str | None = None,
) -> dict[str, str]:
    """The complete, scrubbed environment of a job, with paths as seen inside its sandbox.

    ``inputs`` maps each granted data input to its path inside the sandbox; only those get a
    variable (`INPUT_VARIABLES`), so a job never even learns where ungranted data lives.
    ``compile_cache_dir``: where the job sees the shared compile cache (read-only). The job then
    compiles in its own working cache under its private temp dir (``TORCHINDUCTOR_CACHE_DIR``,
    Triton's beneath it); when the request is trusted to add to the cache, the job leaves a copy
    in its output directory (``PB_COMPILE_CACHE_PUBLISH``), which the supervisor publishes.
    """
    source = host_env if host_env is not None else {}
    env = {k: source[k] for k in _PASS_THROUGH if k in source}
    env.setdefault("LANG", "C.UTF-8")
    env.update(
        {
            "PATH": path,
            "HOME": home,
            "TMPDIR": tmpdir,
            "PYTHONUNBUFFERED": "1",
            "PYTHONDONTWRITEBYTECODE": "1",
            # the job spec's thread count, whatever the backend or host: torch's and numpy's
            # CPU kernels size their pools from these (torchrun keeps a value that is set)
            "OMP_NUM_THREADS": str(job.threads),
            "MKL_NUM_THREADS": str(job.threads),
            # lm-eval and Hugging Face libraries must never try the network inside a sandbox.
            "HF_DATASETS_OFFLINE": "1",
            "HF_HUB_OFFLINE": "1",
            "TRANSFORMERS_OFFLINE": "1",
            "HF_HUB_DISABLE_TELEMETRY": "1",
        }
    )
    # Harness overrides first, so a request cannot redirect the paths set below.
    env.update({k: v for k, v in job.env.items() if k.startswith("PB_")})
    for var in (*INPUT_VARIABLES.values(), *_PATH_VARIABLES):
        env.pop(var, None)
    env.update({"PB_SEED": str(job.seed), "PB_OUT_DIR": out_dir, "PB_JOB": job.label})
    for name, inside in inputs.items():
        env[INPUT_VARIABLES[name]] = inside
    if needs_dir is not None:
        env["PB_NEEDS_DIR"] = needs_dir
    if compile_cache_dir is not None and job.compile_cache is not None:
        # One working path for every job: inductor's kernels name their headers by absolute
        # path, so entries compiled elsewhere would miss.
        working = f"{tmpdir}/{PRIVATE_DIR}"
        env["PB_COMPILE_CACHE_DIR"] = compile_cache_dir
        env["TORCHINDUCTOR_CACHE_DIR"] = working
        env["TRITON_CACHE_DIR"] = f"{working}/triton"
        if job.compile_cache.writable:
            env["PB_COMPILE_CACHE_PUBLISH"] = f"{out_dir}/{COMPILE_OUTPUT}"
    if workers_dir is not None and job.workers is not None:
        env["PB_WORKERS_DIR"] = workers_dir
        env["PB_WORKERS"] = str(job.workers.count)
    if job.gpus == 0:
        env.setdefault("PB_DEVICE", "cpu")
        env["CUDA_VISIBLE_DEVICES"] = ""
    return env


def worker_environment(
    job: Job,
    index: int,
    *,
    path: str,
    tmpdir: str,
    worker_dir: str,
    needs_dir: str | None,
    host_env: dict[str, str] | None = None,
) -> dict[str, str]:
    """The environment of worker ``index`` of ``job``: its socket dir and the job's needs."""
    env = job_environment(
        job,
        path=path,
        home=tmpdir,
        tmpdir=tmpdir,
        out_dir=worker_dir,
        inputs={},
        needs_dir=needs_dir,
        workers_dir=None,
        host_env=host_env,
    )
    env.update({"PB_WORKER_DIR": worker_dir, "PB_WORKER_INDEX": str(index)})
    return env


def sandboxed_job_environment(
    job: Job, *, path: str, home: str, host_env: dict[str, str] | None = None
) -> dict[str, str]:
    """``job_environment`` with every path where an isolating sandbox (bubblewrap, Docker, a
    Slurm container) mounts it: ``IN_SANDBOX.out``, ``IN_SANDBOX.data/<input>``, ``IN_SANDBOX.needs``…"""
    return job_environment(
        job,
        path=path,
        home=home,
        tmpdir=IN_SANDBOX.tmp,
        out_dir=IN_SANDBOX.out,
        inputs={name: f"{IN_SANDBOX.data}/{name}" for name in job.inputs},
        needs_dir=IN_SANDBOX.needs if job.needs else None,
        workers_dir=IN_SANDBOX.workers if job.workers else None,
        host_env=host_env,
        compile_cache_dir=IN_SANDBOX.compile_cache if job.compile_cache else None,
    )


def sandboxed_worker_environment(
    job: Job, index: int, *, path: str, host_env: dict[str, str] | None = None
) -> dict[str, str]:
    """``worker_environment`` with the sandbox's paths (``IN_SANDBOX.worker``, ``IN_SANDBOX.needs``)."""
    return worker_environment(
        job,
        index,
        path=path,
        tmpdir=IN_SANDBOX.tmp,
        worker_dir=IN_SANDBOX.worker,
        needs_dir=IN_SANDBOX.needs if job.needs else None,
        host_env=host_env,
    )
