"""`runner export ID --format record`: a stored run or sweep as a folder anyone can check.

The folder holds ``README.md`` (summary, the diff, the results table with every seed, the
command that reproduces it, hardware, versions and timings), ``submission.json`` (the format of
`runner._record_format`, validated against the committed schema before the folder appears),
``logs/`` (each final seed's job logs, from the run directory) and ``code/`` (the file as run,
one file per region, the diff). It is written to a temporary folder beside the target and
renamed at the end, so a failure leaves nothing half-written.
"""

from __future__ import annotations

import json
import math
import secrets
import shlex
import shutil
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING

from runner._record_format import (
    MAX_FILE_BYTES,
    RECORD_FORMAT,
    RECORD_FORMAT_VERSION,
    SUBMISSION_FILE,
    FileKind,
    MetricSpecEntry,
    MetricSummary,
    RecordError,
    RecordFile,
    ResultEntry,
    RunEntry,
    SeedEntry,
    Submission,
    SweepEntry,
    SweepPointEntry,
    fence,
    file_sha256,
    inline_code,
    validate_submission,
)

if TYPE_CHECKING:
    from leaderboard import RunRecord, SeedRecord, Store, SweepRecord, SweepTable
    from runner._record_format import NonFinite

#: the flags of `runner run` an LLM agent's recorded settings map to
_AGENT_FLAGS = (
    "temperature",
    "max_tokens",
    "max_total_tokens",
    "max_cost",
    "max_agent_time",
    "price_in",
    "price_out",
    "llm_timeout",
    "base_url",
)
_NOT_DETERMINISTIC = (
    "An LLM agent's replies are not deterministic: this command repeats the setup (model, "
    "budgets, seeds, profile), not necessarily the result."
)


@dataclass
class ExportOutcome:
    """What `export_record` wrote: the folder, the record's kind and notes (missing logs)."""

    out: Path
    kind: str
    files: int
    notes: list[str] = field(default_factory=list)


def export_record(store: Store, record_id: str, out: Path, *, force: bool = False) -> ExportOutcome:
    """Write the record of run or sweep ``record_id`` to ``out``; raises `RecordError` when the
    store has neither, or ``out`` is a non-empty folder and ``force`` is not set."""
    run = store.get_run(record_id)
    sweep = None if run is not None else store.get_sweep(record_id)
    if run is None and sweep is None:
        raise RecordError(f"the store {store.url} has no run or sweep {record_id!r}")
    out = out.expanduser().absolute()
    if out.is_symlink() or (out.exists() and not out.is_dir()):
        raise RecordError(f"{out} exists and is not a folder")
    if out.is_dir() and any(out.iterdir()) and not force:
        raise RecordError(f"{out} is not empty: choose another --out, or --force to replace it")
    out.parent.mkdir(parents=True, exist_ok=True)
    staging = out.parent / f".{out.name}.partial-{secrets.token_hex(4)}"
    staging.mkdir()
    try:
        writer = _Writer(staging)
        if run is not None:
            submission = _write_run(writer, run)
        else:
            assert sweep is not None
            submission = _write_sweep(writer, store, sweep)
        data = submission.model_dump(mode="json")
        validate_submission(data, SUBMISSION_FILE)
        (staging / SUBMISSION_FILE).write_text(json.dumps(data, indent=1) + "\n", encoding="utf-8")
        _replace(staging, out)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return ExportOutcome(out, submission.kind, len(submission.files) + 1, writer.notes)


def _replace(staging: Path, out: Path) -> None:
    """Move the finished folder into place (the old one, with --force, is removed after)."""
    old = None
    if out.exists():
        old = out.parent / f".{out.name}.old-{secrets.token_hex(4)}"
        out.rename(old)
    staging.rename(out)
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)


class _Writer:
    """Writes a record's files and lists each with its sha256."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.files: list[RecordFile] = []
        self.notes: list[str] = []

    def text(self, path: str, text: str, kind: FileKind, **meta: str | int | None) -> None:
        target = self.root / path
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(text, encoding="utf-8")
        self._list(path, kind, meta)

    def copy(self, path: str, source: Path, kind: FileKind, **meta: str | int | None) -> bool:
        """Copy a log (a regular file, at most MAX_FILE_BYTES); False, noted, when it cannot."""
        target = self.root / path
        try:
            if source.is_symlink() or not source.is_file():
                raise OSError("not a regular file")
            if source.stat().st_size > MAX_FILE_BYTES:
                raise OSError(f"larger than {MAX_FILE_BYTES:,} bytes")
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(source, target, follow_symlinks=False)
        except OSError as e:
            self.notes.append(f"{path}: not included ({e.strerror or e})")
            return False
        self._list(path, kind, meta)
        return True

    def _list(self, path: str, kind: FileKind, meta: dict[str, str | int | None]) -> None:
        digest, size = file_sha256(self.root / path, MAX_FILE_BYTES)
        self.files.append(
            RecordFile.model_validate(
                {"path": path, "sha256": digest, "bytes": size, "kind": kind, **meta}
            )
        )


# ── one run ──────────────────────────────────────────────────────────────────────────────


def _write_run(writer: _Writer, run: RunRecord) -> Submission:
    entry = run_entry(run)
    for region, body in run.regions.items():
        writer.text(f"code/{region}.py", _line_end(body), "region", region=region)
    if run.diff:
        writer.text("code/diff.patch", _line_end(run.diff), "diff")
    sources = _sources_as_run(run)
    for name, text in sources.items():
        writer.text(f"code/{name}", text, "source")
    logs = _write_logs(writer, run, "logs")
    command = reproduce_command(run)
    readme = _run_readme(run, entry, command, logs, writer.notes, bool(sources))
    writer.text("README.md", readme, "readme")
    return _submission("run", run.task_id, run.task_title, command, [entry], None, writer)


def _submission(
    kind: str,
    task_id: str,
    task_title: str | None,
    command: str,
    runs: list[RunEntry],
    sweep: SweepEntry | None,
    writer: _Writer,
) -> Submission:
    from runner._components import REPO_ROOT
    from runner._hardware import git_commit

    return Submission.model_validate(
        {
            "format": RECORD_FORMAT,
            "format_version": RECORD_FORMAT_VERSION,
            "kind": kind,
            "task_id": task_id,
            "task_title": task_title,
            "command": command,
            "exported_at": datetime.now(UTC),
            "exported_by": git_commit(REPO_ROOT),
            "runs": runs,
            "sweep": sweep,
            "files": writer.files,
        }
    )


def run_entry(run: RunRecord) -> RunEntry:
    """The submission.json entry of ``run``: metadata, result rows and their summaries."""
    rows = run.result_rows()
    result = None
    if rows or run.final is not None:
        final = run.final
        result = ResultEntry(
            source="final" if final is not None else "test",
            test_number=final.test_number if final is not None else rows[0].number,
            status=final.status if final is not None else run.result_status(),
            reason=final.reason if final is not None else None,
            auto_submitted=final.auto_submitted if final is not None else False,
            per_seed=[_seed_entry(r) for r in rows],
        )
    wall = None
    if run.finished_at is not None:
        wall = max(0.0, (run.finished_at - run.started_at).total_seconds())
    elapsed = [r.elapsed_s for r in rows if r.elapsed_s is not None]
    return RunEntry(
        run_id=run.run_id,
        type=run.type,
        method=run.method,
        agent=run.agent,
        model=run.model,
        reference=run.reference,
        origin=run.origin,
        profile=run.profile,
        max_steps=run.max_steps,
        max_tests=run.max_tests,
        codebase_version=run.codebase_version,
        dataset_source=run.dataset_source,
        hardware=json.loads(json.dumps(run.hardware, default=str)),
        library_versions=run.library_versions,
        git_commit=run.git_commit,
        started_at=run.started_at,
        finished_at=run.finished_at,
        status=run.status,
        status_reason=run.status_reason,
        agent_settings=run.agent_settings,
        seeds=_test_seeds(run),
        final_seeds=sorted({r.seed for r in run.final.per_seed}) if run.final else [],
        metric_specs=[MetricSpecEntry.model_validate(s.model_dump()) for s in run.metric_specs],
        regions=run.regions,
        diff=run.diff,
        result=result,
        summary=_summaries(run),
        sweep_point=run.sweep_point,
        total_elapsed_s=sum(elapsed) if elapsed else None,
        wall_s=wall,
    )


def _seed_entry(row: SeedRecord) -> SeedEntry:
    return SeedEntry(
        setting=row.setting,
        seed=row.seed,
        status=row.status,
        reason=row.reason,
        metrics={k: _number(v) for k, v in row.metrics.items()},
        stderr=row.stderr,
        elapsed_s=row.elapsed_s,
    )


def _number(value: float) -> float | NonFinite:
    if math.isfinite(value):
        return value
    if math.isnan(value):
        return "NaN"
    return "Infinity" if value > 0 else "-Infinity"


def _summaries(run: RunRecord) -> list[MetricSummary]:
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


def _test_seeds(run: RunRecord) -> list[int]:
    if not run.tests:
        return []
    first = min(t.number for t in run.tests)
    return sorted({t.seed for t in run.tests if t.number == first})


def _run_dir(run: RunRecord) -> Path | None:
    """The run's directory (the transcript's folder), when it still exists here."""
    if not run.transcript_ref:
        return None
    folder = Path(run.transcript_ref).parent
    return folder if (folder / "run.json").is_file() else None


def _sources_as_run(run: RunRecord) -> dict[str, str]:
    """The edited files as the submitted test ran them (file name → text), from the session
    the run directory keeps; empty without one."""
    from env import SessionState

    folder = _run_dir(run)
    result = run.result_rows()
    if folder is None or not result:
        return {}
    try:
        state = SessionState.model_validate_json(
            (folder / "session.json").read_text(encoding="utf-8")
        )
    except (OSError, ValueError):
        return {}
    number = result[0].number
    test = next((t for t in state.tests if t.number == number), None)
    if test is None:
        return {}
    return {Path(path).name: text for path, text in sorted(test.files.items())}


@dataclass(frozen=True)
class _Log:
    path: str
    job: str
    seed: int


def _write_logs(writer: _Writer, run: RunRecord, prefix: str) -> list[_Log]:
    """Each final seed's job logs: ``train_seed<S>.log`` for the training job, and
    ``<job>_seed<S>.log`` for the others (the evaluator's); missing ones are noted."""
    folder = _run_dir(run)
    rows = run.result_rows()
    if not rows:
        return []
    if folder is None:
        writer.notes.append(
            f"run {run.run_id}: no logs (its run directory is not on this machine"
            + (")" if run.origin == "own" else "; it is an imported record)")
        )
        return []
    test_dir = folder / "tests" / str(rows[0].number)
    training = _training_jobs(run)
    written = []
    for row in sorted(rows, key=lambda r: (r.seed, r.setting)):
        source = test_dir / row.setting / f"seed_{row.seed}.log"
        job = "train" if training == [row.setting] else row.setting
        name = f"{prefix}/{job}_seed{row.seed}.log"
        if not source.exists():
            writer.notes.append(f"{name}: no log in {test_dir}")
            continue
        meta: dict[str, str | int | None] = {
            "run_id": run.run_id,
            "job": row.setting,
            "seed": row.seed,
        }
        if writer.copy(name, source, "log", **meta):
            written.append(_Log(name, row.setting, row.seed))
    return written


def _training_jobs(run: RunRecord) -> list[str]:
    """The labels of the profile's training jobs (no metrics, not preflight), by the task
    spec; empty when the task is not known here."""
    from runner import _components as comp

    try:
        task = comp.load_task(run.task_id)
        jobs = task.profile(run.profile).jobs
    except Exception:  # an imported record of a task this checkout lacks
        return []
    return [j.label for j in jobs if not j.metrics and j.stage != "preflight"]


# ── the command that reproduces a record ─────────────────────────────────────────────────


def reproduce_command(run: RunRecord) -> str:
    """The `runner run` command that evaluates the same code at the same profile and seeds:
    ``--region NAME=code/NAME.py --label L`` for a method, ``--agent baseline:X`` for a
    baseline, the agent with its model, budgets and settings for an agent."""
    argv = ["runner", "run", "--task", run.task_id]
    kind = run.agent.partition(":")[0]
    if run.type == "method":
        for name in run.regions:
            argv += ["--region", f"{name}=code/{name}.py"]
        argv += ["--label", run.method]
    else:
        argv += ["--agent", run.agent]
        if run.type == "vanilla":
            argv += ["--mode", "vanilla"]
        if run.type in ("agent", "vanilla"):
            argv += ["--max-steps", str(run.max_steps), "--max-tests", str(run.max_tests)]
            for key in _AGENT_FLAGS:
                value = run.agent_settings.get(key)
                if value is not None:
                    argv += [f"--{key.replace('_', '-')}", str(value)]
    argv += ["--profile", run.profile]
    source = run.dataset_source.split("@")[0]
    if source in ("offline", "fineweb"):
        argv += ["--data", source]
    if seeds := _test_seeds(run):
        argv += ["--seeds", ",".join(map(str, seeds))]
    if run.final is not None:
        argv += ["--final-seeds", ",".join(map(str, sorted({r.seed for r in run.final.per_seed})))]
    command = shlex.join(argv)
    if kind in ("mcp", "http"):
        command = f"# driven by an external client through `runner {kind}`\n{command}"
    return command


# ── README ───────────────────────────────────────────────────────────────────────────────


def _run_readme(
    run: RunRecord,
    entry: RunEntry,
    command: str,
    logs: list[_Log],
    notes: list[str],
    has_sources: bool,
) -> str:
    parts = [
        f"# {inline_code(run.method)} on {inline_code(run.task_id)} ({run.type})\n",
        _exported_line(run.origin),
        "## Summary\n",
        _summary(run),
        "## What changed from the baseline\n",
        _changes(run, has_sources),
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
    where = "ran by the exporting store" if origin == "own" else "itself an imported record"
    return (
        f"A PretrainBench record (format {RECORD_FORMAT_VERSION}), exported {when}; {where}. "
        f"`{SUBMISSION_FILE}` holds the metadata and metrics (JSON Schema: "
        "`docs/record.schema.json` of PretrainBench); `runner import` checks and stores it.\n"
    )


def _summary(run: RunRecord) -> str:
    lines = []
    if run.task_title:
        lines.append(f"- Task: {inline_code(run.task_title)} ({inline_code(run.task_id)})")
    lines.append(f"- Profile: {inline_code(run.profile)}")
    if run.type == "method":
        regions = ", ".join(inline_code(r) for r in run.regions) or "none"
        lines.append(
            f"- A hand-written method, {inline_code(run.method)}; regions as run: {regions}"
        )
    elif run.type == "baseline":
        ref = " (the task's unmodified default)" if run.reference else ""
        lines.append(f"- The task's baseline {inline_code(run.method)}{ref}")
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


def _changes(run: RunRecord, has_sources: bool) -> str:
    if not run.diff:
        return "Nothing: the run used the task's original code.\n"
    where = "`code/` holds each region (`code/<region>.py`)"
    where += ", the edited file as run" if has_sources else ""
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
    summaries = {s.key: s for s in _summaries(run)}
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


def _files_section(logs: list[_Log], notes: list[str]) -> str:
    lines = [
        f"- `{SUBMISSION_FILE}`: metadata, metrics, and each file's sha256",
        "- `code/`: the code as run and `diff.patch`",
    ]
    lines += [f"- `{log.path}`: job {log.job}, seed {log.seed}" for log in logs]
    text = "\n".join(lines) + "\n"
    if notes:
        text += "\nNot included:\n\n" + fence("\n".join(notes))
    return text


# ── a sweep ──────────────────────────────────────────────────────────────────────────────


def _write_sweep(writer: _Writer, store: Store, sweep: SweepRecord) -> Submission:
    from leaderboard import sweep_table

    runs = store.sweep_runs(sweep)
    try:
        table = sweep_table(sweep, runs)
    except KeyError as e:
        raise RecordError(f"sweep {sweep.sweep_id}: no point has a result yet ({e})") from None
    for region, body in sweep.base_regions.items():
        writer.text(f"code/{region}.py", _line_end(body), "region", region=region)
    entries = []
    logs: list[_Log] = []
    for point in sweep.points:
        run = runs.get(point.run_id) if point.run_id else None
        if run is None:
            continue
        entries.append(run_entry(run))
        logs += _write_logs(writer, run, f"logs/point{point.index}")
    command = sweep.command or "# the sweep's command was not recorded"
    sweep_entry = _sweep_entry(sweep, table)
    writer.text("README.md", _sweep_readme(sweep, table, command, logs, writer.notes), "readme")
    return _submission("sweep", sweep.task_id, None, command, entries, sweep_entry, writer)


def _sweep_entry(sweep: SweepRecord, table: SweepTable) -> SweepEntry:
    points = []
    for row in table.rows:
        ci = None
        if row.stats is not None and row.stats.ci_low is not None and row.stats.ci_high is not None:
            ci = (row.stats.ci_low, row.stats.ci_high)
        points.append(
            SweepPointEntry(
                index=row.point.index,
                overrides=row.point.overrides,
                run_id=row.point.run_id,
                status=row.status,
                seeds=row.seeds,
                values=[_number(v) for v in row.values],
                mean=_finite(row.stats.mean) if row.stats else None,
                ci95=ci,
                delta=_finite(row.delta),
                p_value=row.test.p_value if row.test else None,
                better=row.better,
            )
        )
    return SweepEntry(
        sweep_id=sweep.sweep_id,
        label=sweep.label,
        profile=sweep.profile,
        sandbox=sweep.sandbox,
        grid=sweep.grid,
        seeds=sweep.seeds,
        base_regions=sweep.base_regions,
        base_overrides=sweep.base_overrides,
        command=sweep.command,
        created_at=sweep.created_at,
        origin=sweep.origin,
        metric=table.metric.key,
        direction=table.metric.direction,
        points=points,
    )


def _finite(value: float | None) -> float | None:
    return value if value is not None and math.isfinite(value) else None


def _sweep_readme(
    sweep: SweepRecord, table: SweepTable, command: str, logs: list[_Log], notes: list[str]
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
        "The method's regions are in `code/<region>.py`; each point sets its overrides on "
        "top of them:\n",
        fence(
            "\n\n".join(f"# {name}\n{body}" for name, body in sweep.base_regions.items())
            or "(no region text recorded)",
            "python",
        ),
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


def _line_end(text: str) -> str:
    return text if text.endswith("\n") else text + "\n"
