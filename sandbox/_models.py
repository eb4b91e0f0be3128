"""The data that crosses the sandbox boundary: what to run and what came back."""

from __future__ import annotations

import re
from collections.abc import Callable
from pathlib import Path
from statistics import fmean
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

_DURATION = re.compile(r"^(?:(\d+)-)?(\d+):(\d{2}):(\d{2})$")


def parse_duration(value: str | int | float) -> int:
    """Seconds from ``"HH:MM:SS"``, ``"D-HH:MM:SS"`` (Slurm style) or a number of seconds."""
    if isinstance(value, int | float):
        if value <= 0:
            raise ValueError(f"time limit must be positive, got {value}")
        return int(value)
    match = _DURATION.match(value.strip())
    if not match:
        raise ValueError(f"time limit {value!r} is not HH:MM:SS or D-HH:MM:SS")
    days, hours, minutes, seconds = (int(g) if g else 0 for g in match.groups())
    if minutes >= 60 or seconds >= 60:
        raise ValueError(f"time limit {value!r} has minutes or seconds >= 60")
    total = ((days * 24 + hours) * 60 + minutes) * 60 + seconds
    if total <= 0:
        raise ValueError(f"time limit {value!r} must be positive")
    return total


def format_duration(seconds: int) -> str:
    hours, rest = divmod(int(seconds), 3600)
    minutes, secs = divmod(rest, 60)
    return f"{hours}:{minutes:02d}:{secs:02d}"


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid")


#: The prepared data a job may be granted, each read-only. A job sees exactly the inputs it
#: declares: a training job gets ``train_data`` and never ``eval_data`` (the answers).
DataInput = Literal["train_data", "eval_data", "tokenizer", "hf_home"]
#: The inputs that hold the evaluation sets (offline sets; the Hugging Face cache of the online
#: ones): never granted to a job that runs agent code, nor to one whose outputs such a job needs.
EVALUATION_INPUTS = frozenset({"eval_data", "hf_home"})


class WorkerSpec(_Model):
    """Helper processes started beside a job, each in a sandbox of its own.

    A worker sees what its job ``needs`` (read-only) and a private socket directory; no data
    inputs, no network, nothing of the other workers. The job reaches worker ``i`` through
    ``$PB_WORKERS_DIR/<i>/``. The trusted evaluator uses them to run agent model code apart.
    """

    script: str
    count: int = Field(default=1, ge=1, le=16)


class JobSpec(_Model):
    """One job of a test: a script run in a fresh sandbox, once per seed.

    ``code``: ``edited`` runs in a codebase copy with the agent's files laid over it;
    ``original`` in a copy of the untouched codebase. ``needs``: jobs whose outputs this one
    reads (read-only, at ``$PB_NEEDS_DIR/<label>``); it starts when they succeeded.
    ``metrics``: the names this job's ``metrics.json`` reports, keyed ``<name>_<label>`` in
    results; only jobs on ``original`` code may report metrics (agent code never runs in a
    process that decides a result). ``stage: preflight`` jobs run before a test is charged: if
    one fails the test is refused, uncharged, with the job's own error. ``show_log``: the job's
    log lines may be shown to the agent (a training run's progress); no other job's output is.
    ``threads``: the CPU threads of each of the job's processes (``OMP_NUM_THREADS``), the same
    under every backend and on every machine: a float sum split over another number of threads
    rounds differently, so the thread count is part of what decides a result.
    """

    label: str = Field(pattern=r"^[a-z0-9][a-z0-9.-]*$")
    script: str
    description: str = ""  # one line for the agent: what the job does (task.yaml is data)
    stage: Literal["preflight", "test"] = "test"
    code: Literal["edited", "original"] = "original"
    inputs: list[DataInput] = Field(default_factory=list)
    needs: list[str] = Field(default_factory=list)
    workers: WorkerSpec | None = None
    metrics: list[Annotated[str, Field(pattern=r"^[a-z0-9_]+$")]] = Field(default_factory=list)
    show_log: bool = False
    gpus: int = Field(default=0, ge=0)
    threads: int = Field(default=1, ge=1, le=256)
    time_limit_s: int = Field(gt=0, validation_alias="time_limit")
    hidden: bool = False
    env: dict[Annotated[str, Field(pattern=r"^PB_[A-Z0-9_]+$")], str] = Field(default_factory=dict)

    model_config = ConfigDict(extra="forbid", populate_by_name=True)

    @field_validator("time_limit_s", mode="before")
    @classmethod
    def _parse_time_limit(cls, value: Any) -> int:
        return parse_duration(value)

    @model_validator(mode="after")
    def _trusted_results_only(self) -> JobSpec:
        if self.metrics and self.code != "original":
            raise ValueError(
                f"job {self.label}: a job that reports metrics must run the original code "
                "(code: original); agent code never runs where a result is decided"
            )
        if self.code != "original" and EVALUATION_INPUTS & set(self.inputs):
            raise ValueError(
                f"job {self.label}: a job that runs agent code (code: edited) is never granted "
                "the evaluation sets"
            )
        if self.metrics and self.stage == "preflight":
            raise ValueError(f"job {self.label}: a preflight job cannot report metrics")
        if self.label in self.needs:
            raise ValueError(f"job {self.label} needs itself")
        return self

    @property
    def time_limit(self) -> str:
        return format_duration(self.time_limit_s)

    @property
    def reports_metrics(self) -> bool:
        return bool(self.metrics)


def job_levels(jobs: list[JobSpec]) -> dict[str, int]:
    """Each job's level in the ``needs`` graph (0: needs nothing); jobs of a level may run at
    once. Raises ``ValueError`` for an unknown need, a duplicate label, a cycle, or a job on
    agent code that needs (directly or through others) the outputs of a job that read the
    evaluation sets or reported metrics: what it could copy there, agent code could read."""
    by_label: dict[str, JobSpec] = {}
    for job in jobs:
        if job.label in by_label:
            raise ValueError(f"duplicate job label {job.label!r}")
        by_label[job.label] = job
    for job in jobs:
        for need in job.needs:
            if need not in by_label:
                raise ValueError(f"job {job.label} needs {need!r}, which is not a job here")
    levels: dict[str, int] = {}

    def level(label: str, path: tuple[str, ...]) -> int:
        if label in path:
            raise ValueError("jobs need each other in a cycle: " + " -> ".join((*path, label)))
        if label not in levels:
            needs = by_label[label].needs
            levels[label] = 1 + max((level(n, (*path, label)) for n in needs), default=-1)
        return levels[label]

    for job in jobs:
        level(job.label, ())
    sees_evaluation: dict[str, bool] = {}
    for label in sorted(levels, key=levels.__getitem__):
        job = by_label[label]
        sees_evaluation[label] = bool(job.metrics or EVALUATION_INPUTS & set(job.inputs)) or any(
            sees_evaluation[n] for n in job.needs
        )
        if job.code != "original" and sees_evaluation[label]:
            raise ValueError(
                f"job {label} runs agent code (code: edited) and needs the outputs of a job "
                "that read the evaluation sets or reported metrics"
            )
    return levels


class CompileCache(_Model):
    """The compile cache a test's jobs are granted (see ``sandbox._compile_cache``).

    Every ``stage: test`` job sees ``path`` read-only and compiles in a copy of it; workers and
    preflight jobs never see it. ``writable``: the supervisor adds what the jobs compiled to
    ``path`` afterwards. Only a request whose every job runs code the harness trusts (a
    baseline run: the codebase and the baselines' own regions) may set it; no job ever writes
    ``path`` itself.
    """

    path: Path
    writable: bool = False


class DataPaths(_Model):
    """Where the prepared data lives on the host; a job is granted the ones it declares
    (``JobSpec.inputs``), read-only. ``compile_cache``: the compile cache of the request (none:
    every job compiles from nothing, as without one)."""

    data_dir: Path
    eval_data_dir: Path | None = None
    tokenizer_dir: Path | None = None
    eval_source: Literal["offline", "hf"] = "offline"
    hf_home: Path | None = None
    compile_cache: CompileCache | None = None


class TestRequest(_Model):
    """Everything an executor needs to run one test (or add to a finished one).

    ``files`` overlay the codebase in the copies of ``code: edited`` jobs; ``env`` holds
    harness variables (``PB_*``) given to every job, e.g. the parsed ``CONFIG_OVERRIDES``.
    """

    __test__ = False  # not a pytest class

    run_id: str
    test_id: str
    codebase_dir: Path
    files: dict[str, str] = Field(default_factory=dict)
    jobs: list[JobSpec]
    seeds: list[int]
    profile: str
    out_dir: Path
    data: DataPaths
    env: dict[str, str] = Field(default_factory=dict)


class Resources(_Model):
    wall_s: float = 0.0
    gpus: int = 0
    gpu_type: str | None = None
    peak_mem_mb: float | None = None


Status = Literal["ok", "failed", "infra_error"]


class SeedResult(_Model):
    """The outcome of one job for one seed (``setting`` is the job's label)."""

    setting: str
    seed: int
    status: Status
    reason: str | None = None
    metrics: dict[str, float] = Field(default_factory=dict)
    #: the evaluator's standard error of each metric that has one (same units as the metric;
    #: e.g. an accuracy's sampling error over the evaluation items), as hidden as its metric
    stderr: dict[str, float] = Field(default_factory=dict)
    elapsed_s: float = 0.0
    log_path: str | None = None
    log_tail: str = ""
    curve: list[dict[str, Any]] = Field(default_factory=list)
    cached: bool = False
    resources: Resources = Field(default_factory=Resources)
    dataset_source: str | None = None


class TestResult(_Model):
    """The outcome of a test: every (setting, seed) that ran, and an overall status."""

    __test__ = False

    status: Status
    reason: str | None = None
    results: list[SeedResult] = Field(default_factory=list)
    elapsed_s: float = 0.0
    cached: bool = False

    def for_setting(self, label: str) -> list[SeedResult]:
        return [r for r in self.results if r.setting == label]

    def metrics(self, jobs: list[JobSpec] | None = None) -> dict[str, float]:
        """Seed-averaged metrics keyed ``<metric>_<label>``, plus ``elapsed_<label>``.

        Only jobs that report metrics and whose every seed finished ``ok`` contribute.
        """
        labels = (
            [j.label for j in jobs if j.reports_metrics]
            if jobs is not None
            else _unique(r.setting for r in self.results if r.metrics)
        )
        out: dict[str, float] = {}
        for label in labels:
            rows = self.for_setting(label)
            if not rows or any(r.status != "ok" for r in rows):
                continue
            names = _unique(name for r in rows for name in r.metrics)
            for name in names:
                values = [r.metrics[name] for r in rows if name in r.metrics]
                if len(values) == len(rows):
                    out[f"{name}_{label}"] = fmean(values)
            out[f"elapsed_{label}"] = round(fmean(r.elapsed_s for r in rows), 1)
        return out


class ProgressEvent(_Model):
    """A live progress report from a running setting (for display only; never for metrics)."""

    setting: str
    seed: int
    phase: Literal["queued", "running", "done"] = "running"
    step: int | None = None
    max_steps: int | None = None
    loss: float | None = None
    tokens_per_s: float | None = None
    eta_s: float | None = None
    message: str | None = None


ProgressCallback = Callable[[ProgressEvent], None]


def _unique(items: Any) -> list[str]:
    seen: dict[str, None] = {}
    for item in items:
        seen.setdefault(item, None)
    return list(seen)
