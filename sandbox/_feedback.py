"""Data the agent-facing test feedback is built from (the text itself is env's): which metrics
are hidden, and the ``TRAIN_METRICS`` lines of a training log."""

from __future__ import annotations

from fnmatch import fnmatchcase
from pathlib import Path

from sandbox._models import SeedResult

_TRAIN_LINE = "TRAIN_METRICS"


def is_hidden_metric(name: str, label: str, patterns: list[str]) -> bool:
    """Whether metric ``name`` of setting ``label`` is hidden.

    Patterns are matched against the suffixed key (``piqa_lm-eval-345m``) and the bare name.
    """
    key = f"{name}_{label}"
    return any(fnmatchcase(key, p) or fnmatchcase(name, p) for p in patterns)


def train_metric_lines(result: SeedResult, count: int = 5) -> list[str]:
    """The last ``count`` ``TRAIN_METRICS`` lines of a run's log (each cut to 300 characters),
    read from its log file when it is still there, else from the log tail."""
    path = Path(result.log_path) if result.log_path else None
    if path is not None and path.is_file():
        with path.open(encoding="utf-8", errors="replace") as fh:
            source = fh.read()[-2_000_000:]
    else:
        source = result.log_tail
    lines = [line[:300] for line in source.splitlines() if line.startswith(_TRAIN_LINE)]
    return lines[-count:]
