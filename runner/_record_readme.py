"""The README.md of a record: what a person reads first (`runner export --format record`).

Built from the stored records only. Every piece of agent- or method-written text (labels, the
diff, reasons, settings) goes through `fence` or `inline_code`, so no Markdown or HTML in it
takes effect on the page that renders the README.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING

from runner._record_format import (
    RECORD_FORMAT_VERSION,
    SUBMISSION_FILE,
    MetricSummary,
    RunEntry,
    fence,
    inline_code,
)

if TYPE_CHECKING:
    from leaderboard import RunRecord, SeedRecord, SweepRecord, SweepTable

_NOT_DETERMINISTIC = (
    "An LLM agent's replies are not deterministic: this command repeats the setup (model, "
    "budgets, seeds, profile), not necessarily the result."
)


@dataclass(frozen=True)
class LogFile:
    """A log written into a record: its path there, its job and seed."""

    path: str
    job: str
    seed: int


def metric_summaries(run: RunRecord) -> list[MetricSummary]:
    """Per metric: n, mean, std and the 95 % interval over the ok seeds (finite values only:
    a metric with a non-finite seed has no summary; its seeds say why)."""
    from leaderboard import seed_stats

    summaries = []
    rows = [r for r in run.result_rows() if r.status == "ok"]
    for spec in run.metric_specs:
        values = [r.metrics[spec.key] for r in rows if spec.key in r.metrics]
        if not values or not all(map(math.isfinite, values)):
            continue
        st = seed_stats(values)
        ci = (st.ci_low, st.ci_high) if st.ci_low is not None and st.ci_high is not None else None
        summaries.append(MetricSummary(key=spec.key, n=st.n, mean=st.mean, std=st.std, ci95=ci))
    return summaries


# ── README ───────────────────────────────────────────────────────────────────────────────


def run_readme(
    run: RunRecord,
    entry: RunEntry,
    command: str,
    logs: list[LogFile],
    notes: list[str],
    sources: str | None,
    changed: list[str] | None,
) -> str:
    parts = [
        f"# {inline_code(run.method)} on {inline_code(run.task_id)} ({run.type})\n",
        _exported_line(run.origin),
        "## Summary\n",
        _summary(run, changed),
        "## What changed from the baseline\n",
        _changes(run, sources),
        "## Results\n",
        _results_table(run),
        "## Reproduce\n",
        fence(command, "bash"),
    ]
    if run.type in ("agent", "vanilla"):
        parts.append(_NOT_DETERMINISTIC + "\n")
    parts += [
        "## Provenance\n",
        _provenance(run),
        "## Timings\n",
        _timings(run, entry),
        "## Files\n",
        _files_section(logs, notes),
    ]
    return "\n".join(parts)


def _exported_line(origin: str) -> str:
    when = datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")
    where = "run by the exporting store" if origin == "own" else "itself an imported record"
    return (
        f"A PretrainBench record (format {RECORD_FORMAT_VERSION}), exported {when}; {where}. "
        f"`{SUBMISSION_FILE}` holds the metadata and metrics (JSON Schema: "
        "`docs/record.schema.json` of PretrainBench); `runner import` checks and stores it.\n"
    )


def _summary(run: RunRecord, changed: list[str] | None) -> str:
    lines = []
    if run.task_title:
        lines.append(f"- Task: {inline_code(run.task_title)} ({inline_code(run.task_id)})")
    lines.append(f"- Profile: {inline_code(run.profile)}")
    if run.type in ("method", "baseline"):
        what = (
            f"A hand-written method, {inline_code(run.method)}"
            if run.type == "method"
            else f"The task's baseline {inline_code(run.method)}"
            + (" (the task's unmodified default)" if run.reference else "")
        )
        if changed is not None:
            regions = ", ".join(inline_code(r) for r in changed) or "none"
            lines.append(f"- {what}; regions changed from the original code: {regions}")
        else:
            regions = ", ".join(inline_code(r) for r in run.regions) or "none"
            lines.append(f"- {what}; regions as run: {regions}")
    else:
        what = "one-shot (vanilla) run" if run.type == "vanilla" else "agent"
        lines.append(
            f"- An LLM {what}: {inline_code(run.agent)}"
            + (f", model {inline_code(run.model)}" if run.model else "")
            + f"; budgets {run.max_steps} steps, {run.max_tests} tests"
        )
        if run.agent_settings:
            settings = ", ".join(f"{k}={v}" for k, v in sorted(run.agent_settings.items()))
            lines.append(f"- Agent settings: {inline_code(settings)}")
    lines.append(f"- Status: {run.result_status()} (run: {run.status})")
    reason = run.final.reason if run.final is not None else None
    reason = reason or run.status_reason
    if reason and run.result_status() != "ok":
        lines.append("- Reason:\n\n" + _indent(fence(reason)))
    if run.sweep_point:
        point = ", ".join(f"{k}={v}" for k, v in run.sweep_point.items())
        lines.append(f"- Sweep point of {inline_code(run.sweep_id or '?')}: {inline_code(point)}")
    return "\n".join(lines) + "\n"


def _indent(text: str) -> str:
    return "".join(f"  {line}" if line.strip() else line for line in text.splitlines(True))


def _changes(run: RunRecord, sources: str | None) -> str:
    if not run.diff:
        return "Nothing: the run used the task's original code.\n"
    where = "`code/` holds each region (`code/<region>.py`)"
    where += f", {sources}" if sources else ""
    return (
        f"The diff against the task's original codebase (`code/diff.patch`; {where}):\n\n"
        + fence(run.diff, "diff")
    )


def _results_table(run: RunRecord) -> str:
    rows = run.result_rows()
    if not rows:
        return "No result: the run has no final evaluation.\n"
    source = (
        f"the final evaluation of test #{run.final.test_number}"
        if run.final is not None
        else f"test #{rows[0].number}"
    )
    seeds = sorted({r.seed for r in rows})
    summaries = {s.key: s for s in metric_summaries(run)}
    by_key: dict[tuple[str, int], SeedRecord] = {}
    for r in rows:
        for key in r.metrics:
            by_key[(key, r.seed)] = r
    head = "| metric | setting | " + " | ".join(f"seed {s}" for s in seeds) + " | mean ± 95 % CI |"
    lines = [head, "|" + "---|" * (len(seeds) + 3)]
    for spec in run.metric_specs:
        cells = []
        for seed in seeds:
            row = by_key.get((spec.key, seed))
            if row is None:
                cells.append("—")
            elif row.status != "ok":
                cells.append(row.status)
            else:
                cells.append(_fmt(row.metrics[spec.key]))
        summary = summaries.get(spec.key)
        mean = "—"
        if summary is not None:
            mean = _fmt(summary.mean)
            if summary.ci95 is not None:
                mean += f" ± {(summary.ci95[1] - summary.ci95[0]) / 2:.3g}"
        name = spec.name + (" †" if spec.hidden else "") + (" (primary)" if spec.primary else "")
        lines.append(f"| {name} | {spec.setting} | " + " | ".join(cells) + f" | {mean} |")
    failed = [r for r in rows if r.status != "ok"]
    text = (
        f"From {source}, seeds {', '.join(map(str, seeds))}; {_direction_note(run)}. "
        "† hidden from the agent during its run (shown here: this is after the run).\n\n"
        + "\n".join(lines)
        + "\n"
    )
    for r in failed:
        text += f"\n{r.setting} seed {r.seed}: {r.status}\n\n" + fence(r.reason or "no reason")
    return text


def _direction_note(run: RunRecord) -> str:
    lower = [s.name for s in run.metric_specs if s.direction == "lower"]
    higher = [s.name for s in run.metric_specs if s.direction == "higher"]
    parts = []
    if lower:
        parts.append("lower is better for " + ", ".join(lower))
    if higher:
        parts.append("higher for " + ", ".join(higher))
    return "; ".join(parts) or "no metrics"


def _fmt(value: float) -> str:
    return f"{value:.6g}" if math.isfinite(value) else str(value)


def _provenance(run: RunRecord) -> str:
    lines = [
        f"- Run id: {inline_code(run.run_id)}",
        f"- Git commit: {inline_code(run.git_commit or 'unknown')}",
        f"- Codebase hash: {inline_code(run.codebase_version)}",
        f"- Data fingerprint: {inline_code(run.dataset_source)}",
        f"- Started: {run.started_at.isoformat()}; finished: "
        + (run.finished_at.isoformat() if run.finished_at else "—"),
        "",
        "Hardware and sandbox:",
        "",
        fence(json.dumps(run.hardware, indent=1, sort_keys=True, default=str), "json"),
        "Library versions:",
        "",
        fence("\n".join(f"{k}=={v}" for k, v in sorted(run.library_versions.items())) or "unknown"),
    ]
    return "\n".join(lines)


def _timings(run: RunRecord, entry: RunEntry) -> str:
    rows = run.result_rows()
    if not rows:
        return "No timings.\n"
    lines = ["| setting | seed | status | elapsed (s) |", "|---|---|---|---|"]
    for r in sorted(rows, key=lambda r: (r.seed, r.setting)):
        elapsed = "—" if r.elapsed_s is None else f"{r.elapsed_s:.1f}"
        lines.append(f"| {r.setting} | {r.seed} | {r.status} | {elapsed} |")
    total = "—" if entry.total_elapsed_s is None else f"{entry.total_elapsed_s:.1f} s"
    wall = "—" if entry.wall_s is None else f"{entry.wall_s:.1f} s"
    return (
        "\n".join(lines)
        + f"\n\nTotal of the jobs above: {total}; the run's wall time (tests and final "
        f"evaluation, cached jobs reused): {wall}.\n"
    )


def _files_section(logs: list[LogFile], notes: list[str]) -> str:
    lines = [
        f"- `{SUBMISSION_FILE}`: metadata, metrics, and each file's sha256",
        "- `code/`: the code as run and `diff.patch`",
    ]
    lines += [f"- `{log.path}`: job {log.job}, seed {log.seed}" for log in logs]
    text = "\n".join(lines) + "\n"
    if notes:
        text += "\nNot included:\n\n" + fence("\n".join(notes))
    return text


def sweep_readme(
    sweep: SweepRecord, table: SweepTable, command: str, logs: list[LogFile], notes: list[str]
) -> str:
    metric = table.metric
    lines = [
        f"| # | point | seeds | {metric.name} ({metric.setting}) mean ± 95 % CI "
        "| Δ vs default | paired p |",
        "|---|---|---|---|---|---|",
    ]
    for row in table.rows:
        mean = "—"
        if row.stats is not None:
            mean = _fmt(row.stats.mean)
            if row.stats.ci_low is not None and row.stats.ci_high is not None:
                mean += f" ± {(row.stats.ci_high - row.stats.ci_low) / 2:.3g}"
        delta = "—" if row.delta is None else f"{row.delta:+.4g}"
        if row.better is not None:
            delta += " (better)" if row.better else " (worse)"
        p = "—" if row.test is None else f"{row.test.p_value:.3g}"
        seeds = ",".join(map(str, row.seeds)) or row.status
        lines.append(
            f"| {row.point.index} | {inline_code(row.label(), in_table=True)} | {seeds} "
            f"| {mean} | {delta} | {p} |"
        )
    grid = "\n".join(f"{k} = {', '.join(map(str, v))}" for k, v in sweep.grid.items())
    parts = [
        f"# Sweep {inline_code(sweep.label)} on {inline_code(sweep.task_id)}\n",
        _exported_line(sweep.origin),
        "## Summary\n",
        f"- Sweep id: {inline_code(sweep.sweep_id)}; profile {inline_code(sweep.profile)}; "
        f"sandbox {inline_code(sweep.sandbox)}; seeds {', '.join(map(str, sweep.seeds))}",
        f"- {len(sweep.points)} points (point 0 is the default: no swept override); "
        f"{len(table.rows) - sum(r.status == 'pending' for r in table.rows)} with a result",
        "\nThe grid (CONFIG_OVERRIDES keys and their values):\n",
        fence(grid),
        "## What changed from the baseline\n",
        _sweep_changes(sweep),
        "## Results\n",
        f"{metric.name} on {metric.setting} ({metric.direction} is better) per point: mean ± "
        "half-width of the 95 % t-interval over seeds; Δ against point 0 and a two-sided "
        "paired t-test over the seeds both ran (better / worse where p < 0.05). Every metric of "
        f"every seed is in `{SUBMISSION_FILE}`.\n",
        "\n".join(lines) + "\n",
        "## Reproduce\n",
        fence(command, "bash"),
        "## Files\n",
        _files_section(logs, notes),
    ]
    return "\n".join(parts)


def _sweep_changes(sweep: SweepRecord) -> str:
    if not sweep.base_regions:
        return (
            "Nothing but the overrides: every point runs the task's original code with its "
            "CONFIG_OVERRIDES (the table's point column).\n"
        )
    regions = "\n\n".join(f"# {name}\n{body}" for name, body in sweep.base_regions.items())
    return (
        "The method's regions (`code/<region>.py`); each point sets its overrides on top of "
        "them:\n\n" + fence(regions, "python")
    )
