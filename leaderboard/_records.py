"""The run record: what the runner hands the leaderboard for one finished (or failed) run.

These models cross process and network boundaries (``POST /api/runs``), so they forbid
unknown fields and validate everything a reader will later see. Metric values may be
non-finite (a diverged run reports ``nan``); JSON has no such numbers, so the store encodes
them as the strings ``"NaN"``, ``"Infinity"`` and ``"-Infinity"`` (see ``encode_metrics``).
"""

from __future__ import annotations

import hashlib
import json
import math
from datetime import UTC, datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

RunType = Literal["baseline", "vanilla", "agent", "method"]
#: where a result was computed: by this store's runner, or brought in by `runner import`
Origin = Literal["own", "imported"]
#: a swept CONFIG_OVERRIDES value
SweepValue = int | float | str | bool
Direction = Literal["lower", "higher"]

# Identifiers end up in URLs and file names; keep them to a safe alphabet.
_ID_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9._:@+-]{0,199}$"
_LABEL_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9._-]{0,99}$"


class _Model(BaseModel):
    # "strings": a NaN metric survives a JSON round trip as "NaN" instead of turning into null.
    model_config = ConfigDict(extra="forbid", ser_json_inf_nan="strings")


class MetricInfo(_Model):
    """How one metric of one evaluation setting is scored (the leaderboard's record of a
    metric, which the runner builds from env's ``MetricSpec``).

    The reported key is ``f"{name}_{setting}"`` (e.g. ``val_loss_gpt-345m``), as in the
    sandbox's suffixed metrics.
    """

    name: str = Field(pattern=r"^[A-Za-z0-9_]{1,100}$")
    setting: str = Field(pattern=_LABEL_PATTERN)
    direction: Direction
    bound: float | None = None
    weight: float = Field(default=1.0, gt=0)
    hidden: bool = False
    primary: bool = False

    @property
    def key(self) -> str:
        """The suffixed metric key, e.g. ``val_loss_gpt-345m``."""
        return f"{self.name}_{self.setting}"


class SeedRecord(_Model):
    """One (test number, evaluation setting, seed) result."""

    number: int = Field(ge=0)
    setting: str = Field(pattern=_LABEL_PATTERN)
    seed: int
    status: Literal["ok", "failed", "infra_error"]
    reason: str | None = Field(default=None, max_length=20_000)
    metrics: dict[str, float] = Field(default_factory=dict)
    #: the evaluator's standard error of a metric (same units; e.g. an accuracy's sampling
    #: error over its evaluation items), keyed like ``metrics``; shown where one seed is all
    stderr: dict[str, float] = Field(default_factory=dict)
    elapsed_s: float | None = Field(default=None, ge=0)
    curve: list[dict[str, float | None]] = Field(default_factory=list)

    @field_validator("stderr")
    @classmethod
    def _finite_stderr(cls, value: dict[str, float]) -> dict[str, float]:
        bad = [k for k, v in value.items() if not (math.isfinite(v) and v >= 0)]
        if bad:
            raise ValueError(f"stderr of {bad} is not a finite number >= 0")
        return value

    @field_validator("metrics", mode="before")
    @classmethod
    def _decode_non_finite(cls, value: Any) -> Any:
        # Accept the string spellings JSON cannot carry as numbers.
        if isinstance(value, dict):
            return {k: _decode_number(v) for k, v in value.items()}
        return value

    @field_validator("curve", mode="before")
    @classmethod
    def _decode_curve(cls, value: Any) -> Any:
        if isinstance(value, list):
            return [
                {k: _decode_number(v) for k, v in point.items()}
                if isinstance(point, dict)
                else point
                for point in value
            ]
        return value


class FinalRecord(_Model):
    """The final evaluation of the submitted test: all final seeds (and hidden settings)."""

    test_number: int = Field(ge=0)
    status: Literal["ok", "failed", "infra_error"]
    reason: str | None = Field(default=None, max_length=20_000)
    per_seed: list[SeedRecord] = Field(default_factory=list)
    auto_submitted: bool = False  # the harness submitted the latest completed test for the agent


class RunRecord(_Model):
    """One run of one method on one task: a baseline, an agent's first test, or its submission.

    ``reference`` marks the task's unmodified default (e.g. ``cosine``): shown, but not a
    scoring anchor unless the scorer is told otherwise.
    """

    run_id: str = Field(pattern=_ID_PATTERN)
    task_id: str = Field(pattern=_ID_PATTERN)
    task_title: str | None = Field(default=None, max_length=500)
    task_description: str | None = Field(default=None, max_length=200_000)
    agent: str = Field(min_length=1, max_length=200)
    model: str | None = Field(default=None, max_length=200)
    type: RunType
    method: str = Field(min_length=1, max_length=200)
    reference: bool = False
    profile: str = Field(pattern=_LABEL_PATTERN)
    max_steps: int = Field(ge=0)
    max_tests: int = Field(ge=0)
    codebase_version: str = Field(min_length=1, max_length=200)
    dataset_source: str = Field(min_length=1, max_length=200)
    hardware: dict[str, Any] = Field(default_factory=dict)
    library_versions: dict[str, str] = Field(default_factory=dict)
    git_commit: str | None = Field(default=None, max_length=100)
    started_at: datetime
    finished_at: datetime | None = None
    status: Literal["running", "finished", "failed", "infra_error", "incomplete"]
    status_reason: str | None = Field(default=None, max_length=20_000)
    agent_settings: dict[str, float | int | str | None] = Field(default_factory=dict)
    tests: list[SeedRecord] = Field(default_factory=list)
    final: FinalRecord | None = None
    regions: dict[str, str] = Field(default_factory=dict)
    diff: str = Field(default="", max_length=2_000_000)
    transcript: list[dict[str, Any]] | None = None
    transcript_ref: str | None = Field(default=None, max_length=2000)
    metric_specs: list[MetricInfo] = Field(default_factory=list)
    #: the run this one repeats (recorded with ``runner run --force``): shown on that run's
    #: page, never ranked as a second row
    repeat_of: str | None = Field(default=None, pattern=_ID_PATTERN)
    #: ``imported``: a record another store produced (``runner import``): shown as such, and
    #: ranked only inside a comparable group its own metadata names
    origin: Origin = "own"
    #: the sweep this run is a point of (``runner sweep``), and that point's overrides
    sweep_id: str | None = Field(default=None, pattern=_ID_PATTERN)
    sweep_point: dict[str, SweepValue] | None = None

    @field_validator("started_at", "finished_at")
    @classmethod
    def _utc(cls, value: datetime | None) -> datetime | None:
        # Naive times are taken as UTC, so a record reads back equal to what was written.
        if value is None:
            return None
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)

    @model_validator(mode="after")
    def _check_consistency(self) -> RunRecord:
        seen: set[tuple[int, str, int]] = set()
        for test in self.tests:
            key = (test.number, test.setting, test.seed)
            if key in seen:
                raise ValueError(
                    f"duplicate test result: test {test.number}, setting {test.setting!r}, "
                    f"seed {test.seed}"
                )
            seen.add(key)
        if self.final is not None:
            final_keys = [(t.setting, t.seed) for t in self.final.per_seed]
            if len(final_keys) != len(set(final_keys)):
                raise ValueError("final.per_seed holds the same (setting, seed) twice")
        spec_keys = [s.key for s in self.metric_specs]
        if len(spec_keys) != len(set(spec_keys)):
            raise ValueError("metric_specs names the same metric of the same setting twice")
        return self

    def result_rows(self) -> list[SeedRecord]:
        """The per-seed rows that represent this run on the leaderboard.

        The final evaluation when there is one; otherwise, for baselines and vanilla runs
        (an agent's first test), the rows of the first test. An agent run without a final
        result has no result rows: it is shown as incomplete.
        """
        if self.final is not None:
            return list(self.final.per_seed)
        if self.type in ("baseline", "vanilla") and self.tests:
            first = min(t.number for t in self.tests)
            return [t for t in self.tests if t.number == first]
        return []

    def result_identity(self) -> str | None:
        """What makes two results the same result, as a hash; ``None`` without a complete one.

        The task, type and method label; the comparable group (profile, budgets for
        non-baselines, codebase hash, dataset identity); the seeds of the result rows; and the
        code as run: the codebase hash covers the frozen text (byte-checked after every edit)
        and ``regions`` the submitted test's editable text.
        """
        if self.result_status() != "ok":
            return None
        baseline = self.type == "baseline"
        identity = {
            "task": self.task_id,
            "type": self.type,
            "method": self.method,
            "profile": self.profile,
            "budgets": None if baseline else [self.max_steps, self.max_tests],
            "codebase": self.codebase_version,
            "data": self.dataset_source,
            "seeds": sorted({(r.setting, r.seed) for r in self.result_rows()}),
            "regions": self.regions,
        }
        return hashlib.sha256(json.dumps(identity, sort_keys=True).encode()).hexdigest()

    def result_status(self) -> Literal["ok", "failed", "infra_error", "incomplete"]:
        """Whether the result rows are a complete, successful result."""
        rows = self.result_rows()
        if self.final is not None and self.final.status != "ok":
            return self.final.status
        if not rows:
            return "incomplete"
        if any(r.status == "infra_error" for r in rows):
            return "infra_error"
        if any(r.status != "ok" for r in rows):
            return "failed"
        return "ok"


def decode_number(value: Any) -> Any:
    """A float from ``encode_number``'s spelling (other values pass through)."""
    return _decode_number(value)


_SPELLED = {
    "nan": math.nan,
    "infinity": math.inf,
    "-infinity": -math.inf,
    "inf": math.inf,
    "-inf": -math.inf,
}


def _decode_number(value: Any) -> Any:
    if isinstance(value, str):
        return _SPELLED.get(value.strip().lower(), value)
    return value


def encode_number(value: float | None) -> float | str | None:
    """A JSON-safe spelling of a float: non-finite values become strings."""
    if value is None or math.isfinite(value):
        return value
    if math.isnan(value):
        return "NaN"
    return "Infinity" if value > 0 else "-Infinity"


def encode_metrics(metrics: dict[str, float]) -> dict[str, float | str | None]:
    """``metrics`` with non-finite values spelled as strings (JSON and PostgreSQL safe)."""
    return {k: encode_number(v) for k, v in metrics.items()}


def decode_metrics(metrics: dict[str, Any]) -> dict[str, float]:
    """The inverse of ``encode_metrics``."""
    return {k: float(_decode_number(v)) for k, v in metrics.items() if v is not None}


def encode_curve(curve: list[dict[str, float | None]]) -> list[dict[str, float | None]]:
    """Curve points with non-finite values dropped to ``None`` (plots skip them)."""
    return [
        {k: (v if v is None or math.isfinite(v) else None) for k, v in point.items()}
        for point in curve
    ]


class SweepPoint(_Model):
    """One grid point of a sweep: its CONFIG_OVERRIDES on top of the sweep's base, and the
    run that holds its result (``None`` until one does). Point 0 is the default: no swept
    override."""

    index: int = Field(ge=0)
    overrides: dict[str, SweepValue] = Field(default_factory=dict)
    run_id: str | None = Field(default=None, pattern=_ID_PATTERN)


class SweepRecord(_Model):
    """A hyper-parameter sweep (``runner sweep``): one method's code, a grid of
    CONFIG_OVERRIDES values and the seeds every point runs; its points' results are runs of
    type ``method`` that carry ``sweep_id``."""

    sweep_id: str = Field(pattern=_ID_PATTERN)
    task_id: str = Field(pattern=_ID_PATTERN)
    label: str = Field(pattern=_LABEL_PATTERN)
    profile: str = Field(pattern=_LABEL_PATTERN)
    sandbox: str = Field(min_length=1, max_length=50)
    #: swept key → its values, in the order given on the command line
    grid: dict[str, list[SweepValue]]
    seeds: list[int] = Field(min_length=1)
    #: the method's region texts (region name → body); CONFIG_OVERRIDES holds the base values
    base_regions: dict[str, str] = Field(default_factory=dict)
    base_overrides: dict[str, SweepValue] = Field(default_factory=dict)
    points: list[SweepPoint] = Field(min_length=1)
    command: str = Field(default="", max_length=20_000)
    created_at: datetime
    origin: Origin = "own"

    @field_validator("created_at")
    @classmethod
    def _utc(cls, value: datetime) -> datetime:
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)

    @model_validator(mode="after")
    def _check_points(self) -> SweepRecord:
        if [p.index for p in self.points] != list(range(len(self.points))):
            raise ValueError("sweep points must be numbered 0, 1, … in order")
        if self.points[0].overrides:
            raise ValueError("point 0 is the default: it overrides nothing")
        for point in self.points[1:]:
            unknown = set(point.overrides) - set(self.grid)
            if unknown:
                raise ValueError(f"point {point.index} overrides unswept keys {sorted(unknown)}")
        return self
