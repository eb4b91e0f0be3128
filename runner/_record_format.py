"""The record format: ``submission.json`` of a folder that `runner export --format record`
writes and `runner import` reads.

A record is what a researcher publishes beside a result (the shape of the parameter-golf
records): a README, the code as run, one log per seed and this file, whose JSON Schema is
committed as ``docs/record.schema.json`` (generated from these models; a test keeps the two
equal) and documented in ``docs/RECORD.md``. Everything here crosses a trust boundary — an
imported folder may come from anyone — so every field is bounded, every name is a plain
relative path, and numbers are finite except a seed's metric value, which may be spelled
``"NaN"`` / ``"Infinity"`` / ``"-Infinity"`` (a diverged run reports one).
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, JsonValue, field_validator

from leaderboard import MetricInfo, SweepRecord

RECORD_FORMAT = "pretrainbench-record"
RECORD_FORMAT_VERSION = 1
SUBMISSION_FILE = "submission.json"
#: the committed schema, relative to the repository root
SCHEMA_PATH = Path("docs") / "record.schema.json"

#: a record file's path: relative, "/"-separated, each part starting with a letter or digit
#: (so no "..", no absolute path, no hidden file)
FILE_PATH_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9._-]{0,99}(/[A-Za-z0-9][A-Za-z0-9._-]{0,99}){0,3}$"
_ID = r"^[A-Za-z0-9][A-Za-z0-9._:@+-]{0,199}$"
_LABEL = r"^[A-Za-z0-9][A-Za-z0-9._-]{0,99}$"
_SHA256 = r"^[0-9a-f]{64}$"
#: the spellings of a non-finite metric value (JSON has no such numbers)
NonFinite = Literal["NaN", "Infinity", "-Infinity"]
SweepValue = int | float | str | bool
FileKind = Literal["readme", "log", "region", "source", "diff"]
#: a time read as UTC (a naive one is taken to be UTC, as the leaderboard's records do)
UtcTime = Annotated[
    datetime,
    AfterValidator(lambda t: t.replace(tzinfo=UTC) if t.tzinfo is None else t.astimezone(UTC)),
]
#: a region's body text (an editable region is a function or a dict, not a corpus)
RegionText = Annotated[str, Field(max_length=256 * 1024)]


#: the run fields a record shares with the leaderboard's ``RunRecord`` (copied both ways)
RUN_FIELDS = frozenset(
    {
        "run_id", "type", "method", "agent", "model", "reference", "origin", "profile",
        "max_steps", "max_tests", "codebase_version", "dataset_source", "hardware",
        "library_versions", "git_commit", "started_at", "finished_at", "status",
        "status_reason", "agent_settings", "metric_specs", "regions", "diff", "sweep_point",
    }
)  # fmt: skip


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)


class RecordFile(_Model):
    """One file of the record besides ``submission.json``, with its size and sha256."""

    path: str = Field(pattern=FILE_PATH_PATTERN, max_length=420)
    sha256: str = Field(pattern=_SHA256)
    bytes: int = Field(ge=0)
    kind: FileKind
    #: a region file's region name (``kind: region``)
    region: str | None = Field(default=None, pattern=r"^[A-Za-z_][A-Za-z0-9_]{0,99}$")
    #: a log's run id, evaluation job (setting) and seed (``kind: log``)
    run_id: str | None = Field(default=None, pattern=_ID)
    job: str | None = Field(default=None, pattern=_LABEL)
    seed: int | None = None


class MetricSummary(_Model):
    """One metric over the result's ok seeds: n, mean, sample std and the 95 % t-interval
    (``null`` below two seeds)."""

    key: str = Field(pattern=r"^[A-Za-z0-9_.-]{1,200}$")
    n: int = Field(ge=1)
    mean: float
    std: float | None = None
    ci95: tuple[float, float] | None = None


class SeedEntry(_Model):
    """One (evaluation setting, seed) result of the final evaluation."""

    setting: str = Field(pattern=_LABEL)
    seed: int
    status: Literal["ok", "failed", "infra_error"]
    reason: str | None = Field(default=None, max_length=20_000)
    metrics: dict[str, float | NonFinite] = Field(default_factory=dict, max_length=1000)
    #: the evaluator's standard error of a metric, keyed like ``metrics``
    stderr: dict[str, float] = Field(default_factory=dict, max_length=1000)
    elapsed_s: float | None = Field(default=None, ge=0)

    @field_validator("stderr")
    @classmethod
    def _non_negative(cls, value: dict[str, float]) -> dict[str, float]:
        bad = sorted(k for k, v in value.items() if v < 0)
        if bad:
            raise ValueError(f"stderr of {bad} is negative")
        return value


class ResultEntry(_Model):
    """The result rows of a run: its final evaluation (``source: final``), or for a baseline
    without one the rows of its first test (``source: test``)."""

    source: Literal["final", "test"]
    test_number: int = Field(ge=0)
    status: Literal["ok", "failed", "infra_error", "incomplete"]
    reason: str | None = Field(default=None, max_length=20_000)
    auto_submitted: bool = False
    per_seed: list[SeedEntry] = Field(default_factory=list, max_length=10_000)


class RunEntry(_Model):
    """One run: what was evaluated, where and how, and its result with summaries."""

    # what was evaluated
    run_id: str = Field(pattern=_ID)
    type: Literal["baseline", "vanilla", "agent", "method"]
    #: the method's label (a baseline's name, a method's ``--label``, an agent's model)
    method: str = Field(min_length=1, max_length=200)
    agent: str = Field(min_length=1, max_length=200)
    model: str | None = Field(default=None, max_length=200)
    agent_settings: dict[str, float | int | str | None] = Field(default_factory=dict)
    reference: bool = False
    #: ``own``: the exporting store ran it; ``imported``: it was itself an imported record
    origin: Literal["own", "imported"]
    #: the code as run: each edited region's body (region name → text) and the diff against
    #: the original codebase (also in the record's ``code/`` folder)
    regions: dict[str, RegionText] = Field(default_factory=dict, max_length=100)
    diff: str = Field(default="", max_length=2_000_000)
    #: the sweep point this run is (its CONFIG_OVERRIDES on top of the sweep's base)
    sweep_point: dict[str, SweepValue] | None = None

    # its comparable group: ranked only beside results that share all five
    profile: str = Field(pattern=_LABEL)
    max_steps: int = Field(ge=0)
    max_tests: int = Field(ge=0)
    #: the sha256 tree hash of the codebase the run used (frozen text included)
    codebase_version: str = Field(min_length=1, max_length=200)
    #: the training data's identity (its fingerprint or source name)
    dataset_source: str = Field(min_length=1, max_length=200)

    # where, when and with what it ran
    git_commit: str | None = Field(default=None, max_length=100)
    library_versions: dict[str, str] = Field(default_factory=dict, max_length=500)
    hardware: dict[str, JsonValue] = Field(default_factory=dict, max_length=200)
    started_at: UtcTime
    finished_at: UtcTime | None = None
    #: seconds: each final seed's elapsed time summed, and the run's wall time
    total_elapsed_s: float | None = Field(default=None, ge=0)
    wall_s: float | None = Field(default=None, ge=0)

    # its outcome
    status: Literal["running", "finished", "failed", "infra_error", "incomplete"]
    status_reason: str | None = Field(default=None, max_length=20_000)
    #: the test seeds and the final evaluation's seeds
    seeds: list[int] = Field(default_factory=list, max_length=1000)
    final_seeds: list[int] = Field(default_factory=list, max_length=1000)
    metric_specs: list[MetricInfo] = Field(default_factory=list, max_length=1000)
    result: ResultEntry | None = None
    summary: list[MetricSummary] = Field(default_factory=list, max_length=1000)


class SweepPointEntry(_Model):
    """One sweep point: its overrides, its run (``null`` without a result) and its table row."""

    index: int = Field(ge=0)
    overrides: dict[str, SweepValue] = Field(default_factory=dict)
    run_id: str | None = Field(default=None, pattern=_ID)
    status: Literal["ok", "failed", "infra_error", "incomplete", "pending"]
    seeds: list[int] = Field(default_factory=list)
    values: list[float | NonFinite] = Field(default_factory=list)
    mean: float | None = None
    ci95: tuple[float, float] | None = None
    delta: float | None = None
    p_value: float | None = Field(default=None, ge=0, le=1)
    better: bool | None = None


class SweepEntry(_Model):
    """A sweep: the leaderboard's record of it as stored (grid, seeds, base code and
    overrides, points and their runs, command), and its table on ``metric``."""

    record: SweepRecord
    metric: str = Field(pattern=r"^[A-Za-z0-9_.-]{1,200}$")
    direction: Literal["lower", "higher"]
    #: one row per point, in point order
    table: list[SweepPointEntry] = Field(min_length=1, max_length=10_000)


class Submission(_Model):
    """``submission.json``: a record's metadata, metrics and files."""

    format: Literal["pretrainbench-record"]
    format_version: Literal[1]
    kind: Literal["run", "sweep"]
    task_id: str = Field(pattern=_ID)
    task_title: str | None = Field(default=None, max_length=500)
    #: the command that reproduces the record (for an LLM agent: the same setup, not the same
    #: result — its replies are not deterministic)
    command: str = Field(max_length=20_000)
    exported_at: UtcTime
    #: the exporting runner's git commit
    exported_by: str | None = Field(default=None, max_length=100)
    runs: list[RunEntry] = Field(max_length=10_000)
    sweep: SweepEntry | None = None
    files: list[RecordFile] = Field(max_length=10_000)


def submission_schema() -> dict[str, JsonValue]:
    """The JSON Schema of ``submission.json`` as committed in ``docs/record.schema.json``."""
    schema: dict[str, JsonValue] = {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "$id": "https://pretrainbench.invalid/record.schema.json",
        **Submission.model_json_schema(),
    }
    return schema


def schema_text() -> str:
    """``submission_schema()`` as the committed file's text."""
    return json.dumps(submission_schema(), indent=2, sort_keys=True) + "\n"


# ── limits and helpers shared by export and import ────────────────────────────────────────

#: the most ``submission.json`` may weigh, one file of a record, and a whole record
MAX_SUBMISSION_BYTES = 32 * 2**20
MAX_FILE_BYTES = 64 * 2**20
MAX_RECORD_BYTES = 1024 * 2**20


class RecordError(ValueError):
    """A record that cannot be exported or imported; the message names the file and field."""


def file_sha256(path: Path, limit: int) -> tuple[str, int]:
    """The sha256 and size of the regular file ``path`` (not followed if a symlink), reading
    at most ``limit`` bytes; raises `RecordError` (saying why, without the name) past it or
    for anything but a regular file."""
    import hashlib
    import os
    import stat

    digest = hashlib.sha256()
    size = 0
    # O_NONBLOCK: a FIFO planted in a record must not hang the reader (it is refused below)
    fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK)
    with os.fdopen(fd, "rb") as handle:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            raise RecordError("not a regular file")
        while chunk := handle.read(min(2**20, limit + 1 - size)):
            size += len(chunk)
            if size > limit:
                raise RecordError(f"larger than {limit:,} bytes")
            digest.update(chunk)
    return digest.hexdigest(), size


def fence(text: str, info: str = "") -> str:
    """``text`` as a fenced code block that nothing in it can close: the fence is one backtick
    longer than the longest run of backticks in the text (at least three). Agent and method
    text shown in a README is untrusted; inside such a block Markdown and HTML are inert."""
    longest = max((len(run) for run in _backtick_runs(text)), default=0)
    bar = "`" * max(3, longest + 1)
    body = text if text.endswith("\n") or not text else text + "\n"
    return f"{bar}{info}\n{body}{bar}\n"


def inline_code(text: str, *, in_table: bool = False) -> str:
    """``text`` on one line as an inline code span no backtick in it can end (for untrusted
    names in headings and sentences); in a table cell ``|`` is escaped so that it cannot
    split the cell (GFM reads ``\\|`` as ``|`` there, even inside code)."""
    flat = " ".join(text.split())
    longest = max((len(run) for run in _backtick_runs(flat)), default=0)
    bar = "`" * (longest + 1)
    pad = " " if flat.startswith("`") or flat.endswith("`") else ""
    span = f"{bar}{pad}{flat}{pad}{bar}"
    return span.replace("|", "\\|") if in_table else span


def _backtick_runs(text: str) -> list[str]:
    import re

    return re.findall(r"`+", text)


def committed_schema() -> dict[str, JsonValue]:
    """The schema committed in ``docs/record.schema.json`` (the generated one where this
    installation has no docs folder; a test keeps the two equal)."""
    path = Path(__file__).resolve().parent.parent / SCHEMA_PATH
    if not path.is_file():
        return submission_schema()
    loaded: dict[str, JsonValue] = json.loads(path.read_text(encoding="utf-8"))
    return loaded


def validate_submission(data: JsonValue, where: str) -> None:
    """Check ``data`` against the committed JSON Schema; raises `RecordError` naming the
    field of the most relevant error."""
    import jsonschema

    validator = jsonschema.Draft202012Validator(committed_schema())
    error = jsonschema.exceptions.best_match(validator.iter_errors(data))
    if error is not None:
        field = "/".join(str(p) for p in error.absolute_path) or "(top level)"
        message = error.message if len(error.message) <= 300 else error.message[:297] + "..."
        raise RecordError(f"{where}: field {field}: {message}")
