"""Reading what a finished job left behind: trusted metrics, curves, logs, failure reasons."""

from __future__ import annotations

import json
import math
import re
from pathlib import Path
from typing import Any

from sandbox._models import JobSpec

METRICS_FILE = "metrics.json"
CURVE_FILE = "curve.jsonl"
FAILURE_FILE = "failure.json"
LOG_FILE = "log.txt"
FAILURE_CAP = 2000  # characters of a job's own failure reason that are kept

_MAX_CURVE_POINTS = 20000
_MAX_JSON_BYTES = 64 * 1024 * 1024  # a curve or metrics file beyond this is not read
_ERROR_LINE = re.compile(
    r"^\s*([A-Za-z_][\w.]*(Error|Exception|Interrupt)|AssertionError|Killed)\b.*"
)


def untrusted_json(text: str) -> Any:
    """``json.loads`` of text a job wrote or printed; `ValueError` for anything unreadable.

    A job controls these bytes: deep nesting (RecursionError) is one more malformed input,
    never an exception that escapes into the supervisor.
    """
    try:
        return json.loads(text)
    except RecursionError:
        raise ValueError("nested too deeply") from None


class MetricsError(ValueError):
    """``metrics.json`` is missing or not what the trusted evaluator writes."""


def read_metrics(
    out_dir: Path, job: JobSpec, seed: int, profile: str
) -> tuple[dict[str, float], dict[str, float], str | None]:
    """The metrics the trusted evaluator wrote for this (job, seed), the standard errors it
    gives for some of them (``stderr``: optional, finite and >= 0, declared names only), and
    their data source.

    Only this file counts, and only the names the job declares: nothing the job printed is
    ever read as a metric. (Jobs that report metrics run only the original code.)
    """
    path = out_dir / METRICS_FILE
    if path.is_symlink() or not path.is_file():
        raise MetricsError("the trusted evaluator wrote no metrics.json")
    if path.stat().st_size > _MAX_JSON_BYTES:
        raise MetricsError("metrics.json is implausibly large")
    try:
        doc = untrusted_json(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise MetricsError(f"metrics.json is not valid JSON: {exc}") from exc
    if not isinstance(doc, dict) or doc.get("schema_version") != 1:
        raise MetricsError("metrics.json lacks schema_version 1")
    if "seed" in doc and doc["seed"] != seed:
        raise MetricsError(f"metrics.json is for seed {doc['seed']!r}, expected {seed}")
    if "profile" in doc and doc["profile"] != profile:
        raise MetricsError(f"metrics.json is for profile {doc['profile']!r}, expected {profile!r}")
    raw = doc.get("metrics")
    if not isinstance(raw, dict) or not raw:
        raise MetricsError("metrics.json has no metrics")
    missing = [name for name in job.metrics if name not in raw]
    if missing:
        raise MetricsError(f"metrics.json lacks {', '.join(missing)}")
    metrics: dict[str, float] = {}
    for name in job.metrics:
        value = raw[name]
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise MetricsError(f"metrics.json value {name!r} is not a number")
        if not math.isfinite(value):
            raise MetricsError(f"metric {name} is not finite ({value})")
        metrics[name] = float(value)
    raw_se = doc.get("stderr", {})
    if not isinstance(raw_se, dict):
        raise MetricsError("metrics.json stderr is not an object")
    stderr: dict[str, float] = {}
    for name in job.metrics:
        se = raw_se.get(name)
        if se is None:
            continue
        if (
            isinstance(se, bool)
            or not isinstance(se, int | float)
            or not se >= 0
            or not math.isfinite(se)
        ):
            raise MetricsError(f"metrics.json stderr of {name} is not a finite number >= 0")
        stderr[name] = float(se)
    return (
        metrics,
        stderr,
        dataset_identity(doc.get("dataset_source"), doc.get("data_fingerprint")),
    )


def dataset_identity(source: object, fingerprint: object) -> str | None:
    """``offline@d8f66142a1b2``: where the data came from and which tokens exactly.

    Results on different corpora (an offline corpus built by another Python version, another
    FineWeb sample) must never share a ranking, so the fingerprint is part of the identity.
    """
    if not isinstance(source, str):
        return None
    if isinstance(fingerprint, str) and fingerprint:
        return f"{source}@{fingerprint.removeprefix('sha256:')[:12]}"
    return source


def read_curve(out_dir: Path) -> list[dict[str, Any]]:
    """The logged training curve (display only), skipping malformed lines."""
    path = out_dir / CURVE_FILE
    points: list[dict[str, Any]] = []
    if path.is_symlink() or not path.is_file() or path.stat().st_size > _MAX_JSON_BYTES:
        return points
    with path.open(encoding="utf-8", errors="replace") as fh:
        for line in fh:
            try:
                point = untrusted_json(line)
            except ValueError:
                continue
            if isinstance(point, dict):
                points.append(point)
            if len(points) >= _MAX_CURVE_POINTS:
                break
    return points


def read_failure(out_dir: Path) -> str | None:
    """The reason a job gave for stopping itself (``failure.json``), if any, capped.

    Written by the job, so only ever shown to the agent whose code ran there."""
    path = out_dir / FAILURE_FILE
    if path.is_symlink() or not path.is_file() or path.stat().st_size > _MAX_JSON_BYTES:
        return None
    try:
        doc = untrusted_json(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    reason = doc.get("reason") if isinstance(doc, dict) else None
    return str(reason)[:FAILURE_CAP] if reason else None


def tail_text(path: Path, lines: int = 40, max_chars: int = 4000) -> str:
    """The last ``lines`` lines of a log, at most ``max_chars`` characters.

    Machine-readable ``PB_PROGRESS`` lines are left out: each repeats the human-readable
    progress line before it and would halve what the agent sees of the log.
    """
    if path.is_symlink() or not path.is_file():
        return ""
    with path.open("rb") as fh:
        fh.seek(0, 2)
        size = fh.tell()
        fh.seek(max(0, size - 64 * 1024))
        data = fh.read().decode("utf-8", "replace")
    kept = [line for line in data.splitlines() if not line.startswith("PB_PROGRESS ")]
    return "\n".join(kept[-lines:])[-max_chars:]


def last_error_line(log_tail: str) -> str | None:
    """The last line of a log that names an exception (the most useful one-line reason)."""
    for line in reversed(log_tail.splitlines()):
        if _ERROR_LINE.match(line):
            return line.strip()[:300]
    return None
