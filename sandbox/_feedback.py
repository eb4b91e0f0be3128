"""The text an agent reads after ``test()``: MLS-Bench shaped, without anything hidden."""

from __future__ import annotations

import re
from fnmatch import fnmatchcase
from pathlib import Path

from sandbox._models import JobSpec, SeedResult, TestResult

SECTION_CAP = 6000
_TRAIN_LINE = "TRAIN_METRICS"
_IDENT = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_WITHHELD = "[line withheld: it names a hidden metric]"


def is_hidden_metric(name: str, label: str, patterns: list[str]) -> bool:
    """Whether metric ``name`` of setting ``label`` is hidden.

    Patterns are matched against the suffixed key (``piqa_lm-eval-345m``) and the bare name.
    """
    key = f"{name}_{label}"
    return any(fnmatchcase(key, p) or fnmatchcase(name, p) for p in patterns)


def _scrub(text: str, label: str, patterns: list[str]) -> str:
    """Drop every line that mentions a hidden metric of this setting."""
    out = []
    for line in text.splitlines():
        if any(is_hidden_metric(tok, label, patterns) for tok in _IDENT.findall(line)):
            out.append(_WITHHELD)
        else:
            out.append(line)
    return "\n".join(out)


def cap_text(text: str, limit: int = SECTION_CAP) -> str:
    """Head and tail of ``text`` within ``limit`` characters, with a marker where it was cut."""
    if len(text) <= limit:
        return text
    marker = f"\n… [{len(text) - limit} characters truncated] …\n"
    keep = max(0, limit - len(marker))
    head = keep // 3
    return text[:head] + marker + text[len(text) - (keep - head) :]


def _train_lines(result: SeedResult, count: int = 5) -> list[str]:
    lines: list[str] = []
    path = Path(result.log_path) if result.log_path else None
    source = ""
    if path is not None and path.is_file():
        with path.open(encoding="utf-8", errors="replace") as fh:
            source = fh.read()[-2_000_000:]
    else:
        source = result.log_tail
    for line in source.splitlines():
        if line.startswith(_TRAIN_LINE):
            lines.append(line[:300])
    return lines[-count:]


def _fmt(value: float) -> str:
    return f"{value:.4f}"


def render_feedback(result: TestResult, jobs: list[JobSpec], hidden_metrics: list[str]) -> str:
    """What the agent reads about a test, built from trusted outputs only.

    Per visible job that ran, ``### <label> (<script>)`` and: for a job whose log may be shown
    (``show_log``, a training run) its last ``TRAIN_METRICS`` lines, or on failure its reason and
    a quoted log tail; for a job that reports metrics, the values its trusted ``metrics.json``
    holds (4 decimals), or its failure reason; for any other job, its failure reason only.
    Hidden jobs and metrics matching ``hidden_metrics`` (fnmatch) never appear, and nothing
    printed by a job that may not show its log (an evaluation, a worker) is ever included.
    """
    sections: list[str] = []
    for job in jobs:
        if job.hidden:
            continue
        rows = result.for_setting(job.label)
        if not rows:
            continue
        label = job.label
        if not job.show_log and not job.metrics and all(r.status == "ok" for r in rows):
            continue  # a preflight or helper job that passed says nothing
        parts = [f"### {label} ({job.script})"]
        for row in rows:
            seed_tag = f", seed {row.seed}" if len(rows) > 1 else ""
            if job.show_log:
                train = _train_lines(row)
                if train:
                    parts.append(f"Training metrics (last steps{seed_tag}):")
                    parts.extend(train)
            if row.status == "ok":
                if job.metrics:
                    shown = [
                        (k, v)
                        for k, v in row.metrics.items()
                        if not is_hidden_metric(k, label, hidden_metrics)
                    ]
                    values = ", ".join(f"{k}_{label}={_fmt(v)}" for k, v in shown)
                    cached = " [cached]" if row.cached else ""
                    parts.append(f"Final metrics ({label}{seed_tag}): {values}{cached}")
                elif row.cached:
                    parts.append(f"[cached{seed_tag}]")
            else:
                kind = "FAILED" if row.status == "failed" else "INFRASTRUCTURE ERROR (not charged)"
                parts.append(f"[STATUS: {kind}{seed_tag}] {row.reason or ''}".rstrip())
                if job.show_log and row.log_tail:
                    # Quoted, so lines the submission printed cannot pass for harness lines.
                    parts.append("Last lines of the log:")
                    parts.extend(f"  | {line}" for line in row.log_tail.splitlines())
        if job.metrics and len(rows) > 1 and all(r.status == "ok" for r in rows):
            means = result.metrics([job])
            shown_means = [
                f"{k}={_fmt(v)}"
                for k, v in means.items()
                if not k.startswith("elapsed_")
                and not is_hidden_metric(k[: -len(label) - 1], label, hidden_metrics)
            ]
            parts.append(
                f"Final metrics ({label}, mean over {len(rows)} seeds): " + ", ".join(shown_means)
            )
        section = _scrub("\n".join(parts), label, hidden_metrics)
        sections.append(cap_text(section))
    if not sections:
        return "(no visible evaluation settings ran)"
    return "\n\n".join(sections)
