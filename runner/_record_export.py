"""`runner export ID --format record`: a stored run or sweep as a folder anyone can check.

The folder holds ``README.md`` (summary, the diff, the results table with every seed, the
command that reproduces it, hardware, versions and timings), ``submission.json`` (the format of
`runner._record_format`, validated against the committed schema before the folder appears),
``logs/`` (each final seed's job logs, from the run directory) and ``code/`` (the file as run,
one file per region, the diff). It is written to a temporary folder beside the target and
renamed at the end, so a failure leaves nothing half-written.
"""

from __future__ import annotations

import contextlib
import json
import math
import re
import secrets
import shlex
import shutil
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING

from pydantic import ValidationError

from runner._record_format import (
    MAX_FILE_BYTES,
    RECORD_FORMAT,
    RECORD_FORMAT_VERSION,
    RUN_FIELDS,
    SUBMISSION_FILE,
    FileKind,
    RecordError,
    RecordFile,
    ResultEntry,
    RunEntry,
    SeedEntry,
    Submission,
    SweepEntry,
    SweepPointEntry,
    file_sha256,
    validate_submission,
)
from runner._record_readme import LogFile, metric_summaries, run_readme, sweep_readme

_REGION_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,99}$")
_FILE_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,99}$")

if TYPE_CHECKING:
    from env import Workspace
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


@dataclass
class ExportOutcome:
    """What `export_record` wrote: the folder, the record's kind and notes (missing logs)."""

    out: Path
    kind: str
    files: int
    notes: list[str] = field(default_factory=list)


def export_record(store: Store, record_id: str, out: Path, *, force: bool = False) -> ExportOutcome:
    """Write the record of run or sweep ``record_id`` to ``out``; raises `RecordError` when the
    store has neither, or ``out`` is a non-empty folder (``force`` replaces an earlier record,
    nothing else)."""
    run = store.get_run(record_id)
    sweep = None if run is not None else store.get_sweep(record_id)
    if run is None and sweep is None:
        raise RecordError(f"the store {store.url} has no run or sweep {record_id!r}")
    out = out.expanduser().absolute()
    if out.is_symlink() or (out.exists() and not out.is_dir()):
        raise RecordError(f"{out} exists and is not a folder")
    if out.is_dir() and any(out.iterdir()):
        if not (out / SUBMISSION_FILE).is_file():
            # --force replaces an earlier record, never some other folder's contents
            raise RecordError(f"{out} is not empty and holds no record: choose another --out")
        if not force:
            raise RecordError(
                f"{out} holds a record: choose another --out, or --force to replace it"
            )
    out.parent.mkdir(parents=True, exist_ok=True)
    staging = out.parent / f".{out.name}.partial-{secrets.token_hex(4)}"
    staging.mkdir()
    try:
        writer = _Writer(staging)
        try:
            if run is not None:
                submission = _write_run(writer, run)
            else:
                assert sweep is not None
                submission = _write_sweep(writer, store, sweep)
        except ValidationError as e:  # a stored value the record format does not allow
            first = e.errors()[0]
            where = "/".join(str(p) for p in first["loc"])
            raise RecordError(f"cannot export {record_id}: {where}: {first['msg']}") from e
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
        try:
            digest, size = file_sha256(self.root / path, MAX_FILE_BYTES)
        except RecordError as e:
            raise RecordError(f"{path}: {e}") from None
        self.files.append(
            RecordFile.model_validate(
                {"path": path, "sha256": digest, "bytes": size, "kind": kind, **meta}
            )
        )


# ── one run ──────────────────────────────────────────────────────────────────────────────


def _write_run(writer: _Writer, run: RunRecord) -> Submission:
    entry = run_entry(run)
    _write_regions(writer, run.regions)
    if run.diff:
        writer.text("code/diff.patch", _line_end(run.diff), "diff")
    sources, how = _sources_as_run(run), "the edited file as run"
    if not sources:
        sources = rebuilt_sources(run)
        how = "the edited file rebuilt from the original code and these regions"
    sources = {n: t for n, t in sources.items() if _FILE_NAME.match(n)}
    for name, text in sources.items():
        writer.text(f"code/{name}", text, "source")
    logs = _write_logs(writer, run, "logs")
    changed = changed_regions(run)
    command = reproduce_command(run, changed)
    readme = run_readme(run, entry, command, logs, writer.notes, how if sources else None, changed)
    writer.text("README.md", readme, "readme")
    return _submission("run", run.task_id, run.task_title, command, [entry], None, writer)


def _write_regions(writer: _Writer, regions: dict[str, str]) -> None:
    """``code/<region>.py`` per region (a region named otherwise, e.g. a created file's path,
    is in submission.json and the diff only)."""
    for region, body in regions.items():
        if _REGION_NAME.match(region):
            writer.text(f"code/{region}.py", _line_end(body), "region", region=region)


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
    return RunEntry.model_validate(
        {
            **run.model_dump(mode="json", include=set(RUN_FIELDS)),
            "seeds": _test_seeds(run),
            "final_seeds": sorted({r.seed for r in run.final.per_seed}) if run.final else [],
            "result": result,
            "summary": metric_summaries(run),
            "total_elapsed_s": sum(elapsed) if elapsed else None,
            "wall_s": wall,
        }
    )


def _seed_entry(row: SeedRecord) -> SeedEntry:
    # the record's JSON spells a non-finite metric as "NaN" / "Infinity" / "-Infinity"
    return SeedEntry.model_validate_json(row.model_dump_json(exclude={"number", "curve"}))


def _number(value: float) -> float | NonFinite:
    if math.isfinite(value):
        return value
    if math.isnan(value):
        return "NaN"
    return "Infinity" if value > 0 else "-Infinity"


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


def _write_logs(writer: _Writer, run: RunRecord, prefix: str) -> list[LogFile]:
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
            written.append(LogFile(name, row.setting, row.seed))
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


def changed_regions(run: RunRecord) -> list[str] | None:
    """The regions whose text differs from the task's original, or ``None`` when this checkout
    cannot tell (the task is unknown here, or its codebase is not the one the run used)."""
    with _original_workspace(run) as workspace:
        if workspace is None:
            return None
        original = workspace.region_texts()
    return [
        name
        for name, body in run.regions.items()
        if original.get(name, "").rstrip("\n") != body.rstrip("\n")
    ]


def rebuilt_sources(run: RunRecord) -> dict[str, str]:
    """The edited files rebuilt from the original codebase and the run's regions, through the
    same ``edit`` path a baseline takes (file name → text); empty when this checkout lacks the
    run's codebase or an edit is refused."""
    from env import Baseline, EditError, baseline_edits
    from env._tools import EditArgs

    with _original_workspace(run) as workspace:
        if workspace is None or not run.regions:
            return {}
        try:
            method = Baseline(name=run.method, doc="", regions=dict(run.regions))
            for edit in baseline_edits(method, workspace.task, workspace.edited_files()):
                workspace.apply(EditArgs.model_validate(edit.arguments))
        except (EditError, ValueError, RuntimeError):
            return {}
        return {Path(p).name: text for p, text in sorted(workspace.edited_files().items())}


@contextlib.contextmanager
def _original_workspace(run: RunRecord) -> Iterator[Workspace | None]:
    """A scratch workspace of the run's task as the codebase ships it, or ``None`` when the
    task is unknown here or its codebase is not the one the run used (hash)."""
    from env import Workspace
    from runner import _components as comp
    from sandbox import hash_tree

    try:
        task = comp.load_task(run.task_id)
        same = hash_tree(task.codebase_dir) == run.codebase_version
    except Exception:  # an imported record of a task this checkout lacks
        same = False
    if not same:
        yield None
        return
    with tempfile.TemporaryDirectory() as scratch:
        yield Workspace.create(task, scratch)


def reproduce_command(run: RunRecord, changed: list[str] | None = None) -> str:
    """The `runner run` command that evaluates the same code at the same profile and seeds:
    ``--region NAME=code/NAME.py --label L`` for a method, ``--agent baseline:X`` for a
    baseline, the agent with its model, budgets and settings for an agent. ``changed`` names
    the regions to pass (default: all the run's regions; an unchanged one edits in its own
    original text)."""
    argv = ["runner", "run", "--task", run.task_id]
    kind = run.agent.partition(":")[0]
    if run.type == "method":
        for name in run.regions if changed is None else changed:
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


# ── a sweep ──────────────────────────────────────────────────────────────────────────────


def _write_sweep(writer: _Writer, store: Store, sweep: SweepRecord) -> Submission:
    from leaderboard import sweep_table

    runs = store.sweep_runs(sweep)
    try:
        table = sweep_table(sweep, runs)
    except KeyError as e:
        raise RecordError(f"sweep {sweep.sweep_id}: no point has a result yet ({e})") from None
    _write_regions(writer, sweep.base_regions)
    entries = []
    logs: list[LogFile] = []
    for point in sweep.points:
        run = runs.get(point.run_id) if point.run_id else None
        if run is None:
            continue
        entries.append(run_entry(run))
        logs += _write_logs(writer, run, f"logs/point{point.index}")
    command = sweep.command or "# the sweep's command was not recorded"
    sweep_entry = _sweep_entry(sweep, table)
    writer.text("README.md", sweep_readme(sweep, table, command, logs, writer.notes), "readme")
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
        record=sweep,
        metric=table.metric.key,
        direction=table.metric.direction,
        table=points,
    )


def _finite(value: float | None) -> float | None:
    return value if value is not None and math.isfinite(value) else None


def _line_end(text: str) -> str:
    return text if text.endswith("\n") else text + "\n"
