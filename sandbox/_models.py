"""The data that crosses the sandbox boundary: what to run and what came back."""

from __future__ import annotations

import re
from collections.abc import Callable
from pathlib import Path
from statistics import fmean
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

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


class EvaluationSetting(_Model):
    """One command of a test: a training run or an evaluation of its checkpoint."""

    label: str = Field(pattern=r"^[a-z0-9][a-z0-9.-]*$")
    script: str
    kind: Literal["train", "lm_eval"]
    gpus: int = Field(default=0, ge=0)
    time_limit_s: int = Field(gt=0, validation_alias="time_limit")
    group: int = Field(default=1, ge=1)
    hidden: bool = False
    needs: str | None = None

    model_config = ConfigDict(extra="forbid", populate_by_name=True)

    @field_validator("time_limit_s", mode="before")
    @classmethod
    def _parse_time_limit(cls, value: Any) -> int:
        return parse_duration(value)

    @property
    def time_limit(self) -> str:
        return format_duration(self.time_limit_s)


class DataPaths(_Model):
    """Where the prepared data lives on the host; backends mount or pass these read-only."""

    data_dir: Path
    eval_data_dir: Path | None = None
    tokenizer_dir: Path | None = None
    eval_source: Literal["offline", "hf"] = "offline"
    hf_home: Path | None = None


class TestRequest(_Model):
    """Everything an executor needs to run one test (or add to a finished one)."""

    __test__ = False  # not a pytest class

    run_id: str
    test_id: str
    codebase_dir: Path
    files: dict[str, str] = Field(default_factory=dict)
    settings: list[EvaluationSetting]
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
    """The outcome of one evaluation setting for one seed."""

    setting: str
    seed: int
    status: Status
    reason: str | None = None
    metrics: dict[str, float] = Field(default_factory=dict)
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

    def metrics(self, settings: list[EvaluationSetting] | None = None) -> dict[str, float]:
        """Seed-averaged metrics keyed ``<metric>_<label>``, plus ``elapsed_<label>``.

        Only settings whose every seed finished ``ok`` contribute metric values.
        """
        labels = (
            [s.label for s in settings] if settings else _unique(r.setting for r in self.results)
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
    phase: Literal["queued", "preflight", "train", "eval", "done"] = "train"
    step: int | None = None
    max_steps: int | None = None
    loss: float | None = None
    tokens_per_s: float | None = None
    eta_s: float | None = None
    message: str | None = None


ProgressCallback = Callable[[ProgressEvent], None]


class PreflightResult(_Model):
    ok: bool
    error: str | None = None
    elapsed_s: float = 0.0


def _unique(items: Any) -> list[str]:
    seen: dict[str, None] = {}
    for item in items:
        seen.setdefault(item, None)
    return list(seen)
