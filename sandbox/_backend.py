"""The one small interface every backend implements, and the job it is given."""

from __future__ import annotations

import abc
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from sandbox._models import DataPaths

LineCallback = Callable[[str], None]


@dataclass(frozen=True)
class SettingJob:
    """One (setting, seed) to run: a setting script in a fresh copy of the codebase.

    ``env`` holds only the harness variables that do not name host paths (profile, seed,
    overrides); each backend adds the path variables (``PB_OUT_DIR``, ``PB_DATA_DIR`` …) as
    they are seen from inside its sandbox.
    """

    label: str
    seed: int
    script: str
    codebase_dir: Path
    files: dict[str, str]
    out_dir: Path
    log_path: Path
    data: DataPaths
    time_limit_s: float
    gpus: int = 0
    ckpt_dir: Path | None = None
    env: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class JobOutcome:
    """What a backend observed about a finished job; the executor turns it into a status.

    ``infra_error`` is set when the environment, not the submission, stopped the job
    (killed from outside, daemon lost, disk full); ``oom`` when the memory limit killed it.
    """

    exit_code: int | None
    wall_s: float
    timed_out: bool = False
    oom: bool = False
    infra_error: str | None = None
    peak_mem_mb: float | None = None
    gpu_type: str | None = None
    notes: tuple[str, ...] = ()


class BackendError(RuntimeError):
    """The backend cannot run jobs at all (daemon missing, image missing); an infra error."""


class Backend(abc.ABC):
    """Runs setting jobs somewhere isolated. Lifecycle: construct → ``run_setting``* → ``close``.

    ``run_setting`` blocks until the job ends (or its time limit kills it), writes the job's
    merged stdout/stderr to ``job.log_path`` and calls ``on_line`` for each line. It may be
    called from several threads at once. ``cancel`` stops every job in flight (they then
    return with ``infra_error`` set); it is safe to call from another thread.
    """

    name: str = "backend"

    #: GPUs this backend can hand out at once (0: CPU only); the executor packs groups by it.
    gpu_capacity: int = 0
    #: jobs without GPUs that may run at once
    cpu_slots: int = 1

    @abc.abstractmethod
    def run_setting(self, job: SettingJob, on_line: LineCallback | None = None) -> JobOutcome:
        """Run one job to completion and report what happened."""

    def cancel(self) -> None:  # noqa: B027 - optional hook
        """Stop every job in flight."""

    def close(self) -> None:  # noqa: B027 - optional hook
        """Release what the backend holds (daemons connections, temp dirs)."""

    def describe(self) -> dict[str, str]:
        """A short description for run records (backend name and isolation in use)."""
        return {"backend": self.name}

    def __enter__(self) -> Backend:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


# Variables copied from the host environment into a job's scrubbed environment: locale and
# thread counts only; nothing that could carry credentials or proxies.
_PASS_THROUGH = ("LANG", "LC_ALL", "OMP_NUM_THREADS", "MKL_NUM_THREADS", "TORCH_NUM_THREADS")


def job_environment(
    job: SettingJob,
    *,
    path: str,
    home: str,
    tmpdir: str,
    out_dir: str,
    data_dir: str,
    eval_data_dir: str | None,
    tokenizer_dir: str | None,
    hf_home: str | None,
    ckpt_dir: str | None,
    host_env: dict[str, str] | None = None,
) -> dict[str, str]:
    """The complete, scrubbed environment of a job, with paths as seen inside its sandbox."""
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
            # lm-eval and Hugging Face libraries must never try the network inside a sandbox.
            "HF_DATASETS_OFFLINE": "1",
            "HF_HUB_OFFLINE": "1",
            "TRANSFORMERS_OFFLINE": "1",
            "HF_HUB_DISABLE_TELEMETRY": "1",
        }
    )
    # Harness overrides first, so a request cannot redirect the paths set below.
    env.update({k: v for k, v in job.env.items() if k.startswith("PB_")})
    env.update(
        {
            "PB_SEED": str(job.seed),
            "PB_OUT_DIR": out_dir,
            "PB_DATA_DIR": data_dir,
            "PB_EVAL_SOURCE": job.data.eval_source,
            "PB_SETTING": job.label,
        }
    )
    if eval_data_dir:
        env["PB_EVAL_DATA_DIR"] = eval_data_dir
    if tokenizer_dir:
        env["PB_TOKENIZER_DIR"] = tokenizer_dir
    if hf_home:
        env["HF_HOME"] = hf_home
    if ckpt_dir:
        env["PB_CKPT_DIR"] = ckpt_dir
    if job.gpus == 0:
        env.setdefault("PB_DEVICE", "cpu")
        env["CUDA_VISIBLE_DEVICES"] = ""
    return env
