"""The leaderboard store: SQLite by default (WAL, busy timeout), PostgreSQL by URL.

Writes are idempotent per ``run_id``: recording the same record again changes nothing; a
changed record replaces the old one in a single transaction (readers see the old or the new
run, never a mix). Concurrent writers — threads or processes — lose nothing: SQLite write
transactions start with ``BEGIN IMMEDIATE`` and wait on the busy timeout instead of failing
when they would have to upgrade a read lock, and races on the same new ``run_id`` retry.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal

import tenacity
from sqlalchemy import Engine, Row, create_engine, delete, event, exists, func, insert, select
from sqlalchemy.engine import make_url
from sqlalchemy.exc import IntegrityError, OperationalError
from sqlalchemy.orm import Session

from ._records import (
    FinalRecord,
    MetricInfo,
    RunRecord,
    SeedRecord,
    SweepRecord,
    decode_metrics,
    decode_number,
    encode_curve,
    encode_metrics,
    encode_number,
)
from ._schema import RunRow, SweepRow, TaskRow, TestRow, migrate
from ._scoring import UNBUDGETED, ComparableGroup, RunResult

DEFAULT_URL = "sqlite:///pretrainbench.db"
SQLITE_BUSY_TIMEOUT_MS = 60_000
RecordOutcome = Literal["inserted", "replaced", "unchanged"]


@dataclass(frozen=True)
class TaskInfo:
    """A task as the store knows it."""

    task_id: str
    title: str | None
    description: str | None
    n_runs: int


@dataclass(frozen=True)
class NoResultRun:
    """A run that failed before any test (an infrastructure error): listed with its cause,
    never ranked and never the reason a comparison group exists."""

    run_id: str
    type: str
    method: str
    agent: str
    status: str
    reason: str | None
    started_at: datetime


@dataclass(frozen=True)
class TaskData:
    """Everything a task page needs, without curves, diffs or transcripts."""

    task: TaskInfo
    results: list[RunResult]
    started_at: dict[str, datetime]
    run_specs: dict[str, list[MetricInfo]]
    no_result: list[NoResultRun] = field(default_factory=list)

    def specs_for(self, group: ComparableGroup) -> list[MetricInfo]:
        """The metric specs of a group's runs (the latest run's version of each metric)."""
        specs: dict[str, MetricInfo] = {}
        for res in self.results:  # in start order: later runs win
            if group.admits(res):
                for spec in self.run_specs.get(res.run_id, []):
                    specs.pop(spec.key, None)
                    specs[spec.key] = spec
        return list(specs.values())

    def groups(self) -> list[ComparableGroup]:
        """Comparable groups with at least one run, the most populated first."""
        counts: dict[ComparableGroup, int] = {}
        anchor_keys_with_runs = set()
        for res in self.results:
            if res.type not in UNBUDGETED:
                counts[res.group()] = counts.get(res.group(), 0) + 1
                anchor_keys_with_runs.add(res.anchor_key)
        for res in self.results:
            # Baselines and methods join every budget group of their anchor key: a group of
            # their own only where no budgeted run shares it.
            if res.type in UNBUDGETED and res.anchor_key not in anchor_keys_with_runs:
                counts[res.group()] = counts.get(res.group(), 0) + 1
        return sorted(counts, key=lambda g: (-counts[g], g.slug()))


class Store:
    """Runs, tests, final results and transcripts in a SQL database.

    ``url`` is any SQLAlchemy URL: ``sqlite:///path.db`` (default, created with its folder),
    ``postgresql://user@host:port/db`` (driven by psycopg 3). The schema is migrated on open.
    """

    def __init__(self, url: str = DEFAULT_URL, *, echo: bool = False) -> None:
        self.url = url
        self.engine = _make_engine(url, echo=echo)
        migrate(self.engine)

    def close(self) -> None:
        """Release all connections."""
        self.engine.dispose()

    def __enter__(self) -> Store:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # ── writing ─────────────────────────────────────────────────────────────
    def record(self, run: RunRecord) -> RecordOutcome:
        """Store ``run``; returns whether it was new, replaced an older version, or unchanged."""
        digest = _content_digest(run)
        # A concurrent writer inserted the same run or task first (or SQLite stayed busy past its
        # timeout): the next attempt sees its row and updates it.
        retrying = tenacity.Retrying(
            retry=tenacity.retry_if_exception_type((IntegrityError, OperationalError)),
            stop=tenacity.stop_after_attempt(8),
            wait=tenacity.wait_incrementing(start=0.05, increment=0.05),
            reraise=True,
        )
        try:
            outcome: RecordOutcome = retrying(self._record_once, run, digest)
        except (IntegrityError, OperationalError) as exc:
            raise RuntimeError(f"could not record run {run.run_id}: {exc}") from exc
        return outcome

    def _record_once(self, run: RunRecord, digest: str) -> RecordOutcome:
        now = datetime.now(UTC)
        with Session(self._write_engine) as session, session.begin():
            existing = session.execute(
                select(RunRow.content_hash).where(RunRow.run_id == run.run_id)
            ).first()
            if existing is not None and existing[0] == digest:
                return "unchanged"
            self._upsert_task(session, run, now)
            if existing is not None:
                session.execute(delete(TestRow).where(TestRow.run_id == run.run_id))
                session.execute(delete(RunRow).where(RunRow.run_id == run.run_id))
            session.execute(insert(RunRow).values(**_run_columns(run, digest, now)))
            rows = [_test_columns(run.run_id, t, False) for t in run.tests]
            if run.final is not None:
                rows += [_test_columns(run.run_id, t, True) for t in run.final.per_seed]
            if rows:
                session.execute(insert(TestRow), rows)
            return "replaced" if existing is not None else "inserted"

    def _upsert_task(self, session: Session, run: RunRecord, now: datetime) -> None:
        task = session.get(TaskRow, run.task_id)
        if task is None:
            session.add(
                TaskRow(
                    task_id=run.task_id,
                    title=run.task_title,
                    description=run.task_description,
                    updated_at=now,
                )
            )
            session.flush()
        elif run.task_title is not None or run.task_description is not None:
            task.title = run.task_title if run.task_title is not None else task.title
            if run.task_description is not None:
                task.description = run.task_description
            task.updated_at = now

    def record_sweep(self, sweep: SweepRecord) -> None:
        """Store ``sweep`` (insert, or replace the stored version: points gain run ids)."""
        now = datetime.now(UTC)
        data = sweep.model_dump(mode="json")
        with Session(self._write_engine) as session, session.begin():
            row = session.get(SweepRow, sweep.sweep_id)
            if row is None:
                session.add(
                    SweepRow(
                        sweep_id=sweep.sweep_id,
                        task_id=sweep.task_id,
                        data=data,
                        created_at=sweep.created_at,
                        updated_at=now,
                    )
                )
            else:
                row.task_id, row.data, row.updated_at = sweep.task_id, data, now

    def get_sweep(self, sweep_id: str) -> SweepRecord | None:
        """The stored sweep, or ``None``."""
        with Session(self.engine) as session:
            row = session.get(SweepRow, sweep_id)
            return None if row is None else SweepRecord.model_validate(row.data)

    def list_sweeps(self, task_id: str | None = None) -> list[SweepRecord]:
        """All sweeps (of one task), newest first."""
        stmt = select(SweepRow.data).order_by(SweepRow.created_at.desc(), SweepRow.sweep_id)
        if task_id is not None:
            stmt = stmt.where(SweepRow.task_id == task_id)
        with Session(self.engine) as session:
            return [SweepRecord.model_validate(d) for d in session.scalars(stmt)]

    def sweep_runs(self, sweep: SweepRecord) -> dict[str, RunRecord]:
        """The stored runs its points name (run id → record); points without one are absent."""
        runs: dict[str, RunRecord] = {}
        for point in sweep.points:
            if point.run_id is not None and point.run_id not in runs:
                run = self.get_run(point.run_id)
                if run is not None:
                    runs[point.run_id] = run
        return runs

    def delete_run(self, run_id: str) -> bool:
        """Remove a run and its tests; returns whether it existed."""
        with Session(self._write_engine) as session, session.begin():
            session.execute(delete(TestRow).where(TestRow.run_id == run_id))
            gone = session.execute(delete(RunRow).where(RunRow.run_id == run_id))
            return bool(gone.rowcount)  # type: ignore[attr-defined]

    # ── reading ─────────────────────────────────────────────────────────────
    def get_run(self, run_id: str) -> RunRecord | None:
        """The recorded run, rebuilt exactly as it was recorded, or ``None``."""
        with Session(self.engine) as session:
            row = session.get(RunRow, run_id)
            if row is None:
                return None
            tests = session.scalars(
                select(TestRow).where(TestRow.run_id == run_id).order_by(TestRow.id)
            ).all()
            return _run_from_rows(row, list(tests))

    def identical_run(self, run: RunRecord) -> str | None:
        """The first recorded run (not ``run`` itself, not a repeat) with ``run``'s result
        identity (``RunRecord.result_identity``), or ``None``."""
        identity = run.result_identity()
        if identity is None:
            return None
        stmt = (
            select(RunRow.run_id)
            .where(
                RunRow.result_identity == identity,
                RunRow.repeat_of.is_(None),
                RunRow.run_id != run.run_id,
            )
            .order_by(RunRow.started_at, RunRow.run_id)
            .limit(1)
        )
        with Session(self.engine) as session:
            return session.scalars(stmt).first()

    def repeats_of(self, run_id: str) -> list[str]:
        """The runs that repeat ``run_id``'s result: recorded as its repeat, or (recorded by
        another writer) later with the same result identity."""
        with Session(self.engine) as session:
            row = session.get(RunRow, run_id)
            if row is None or row.repeat_of is not None:
                return []
            same = RunRow.repeat_of == run_id
            if row.result_identity is not None:
                same = same | (
                    (RunRow.result_identity == row.result_identity)
                    & (RunRow.run_id != run_id)
                    & (RunRow.started_at > row.started_at)
                )
            stmt = select(RunRow.run_id).where(same).order_by(RunRow.started_at)
            return list(session.scalars(stmt))

    def run_ids(self, task_id: str | None = None) -> list[str]:
        """All run ids (of one task), in id order."""
        stmt = select(RunRow.run_id).order_by(RunRow.run_id)
        if task_id is not None:
            stmt = stmt.where(RunRow.task_id == task_id)
        with Session(self.engine) as session:
            return list(session.scalars(stmt))

    def count_results(self, task_id: str | None = None) -> int:
        """The number of stored per-seed results (test and final rows)."""
        stmt = select(func.count(TestRow.id))
        if task_id is not None:
            stmt = stmt.join(RunRow, RunRow.run_id == TestRow.run_id).where(
                RunRow.task_id == task_id
            )
        with Session(self.engine) as session:
            return int(session.execute(stmt).scalar_one())

    def task_revision(self, task_id: str) -> tuple[int, str]:
        """Changes whenever a run of the task is recorded, replaced or deleted (cheap query)."""
        with Session(self.engine) as session:
            count, last = session.execute(
                select(func.count(RunRow.run_id), func.max(RunRow.recorded_at)).where(
                    RunRow.task_id == task_id
                )
            ).one()
        return int(count), str(last)

    def list_tasks(self) -> list[TaskInfo]:
        """Every task with at least one run, by id."""
        with Session(self.engine) as session:
            counts = dict(
                session.execute(
                    select(RunRow.task_id, func.count(RunRow.run_id)).group_by(RunRow.task_id)
                ).all()
            )
            tasks = session.scalars(select(TaskRow).order_by(TaskRow.task_id)).all()
            return [
                TaskInfo(t.task_id, t.title, t.description, int(counts.get(t.task_id, 0)))
                for t in tasks
                if counts.get(t.task_id)
            ]

    def task_data(self, task_id: str) -> TaskData | None:
        """The scoring view of every run of a task (one light query), or ``None``."""
        cols = (
            RunRow.run_id,
            RunRow.type,
            RunRow.method,
            RunRow.profile,
            RunRow.codebase_version,
            RunRow.dataset_source,
            RunRow.max_steps,
            RunRow.max_tests,
            RunRow.result_status,
            RunRow.results,
            RunRow.result_stderr,
            RunRow.reference,
            RunRow.agent,
            RunRow.model,
            RunRow.started_at,
            RunRow.metric_specs,
            RunRow.status,
            RunRow.status_reason,
            RunRow.final_reason,
            RunRow.final_auto_submitted,
            RunRow.result_identity,
            RunRow.repeat_of,
            RunRow.origin,
            RunRow.sweep_id,
            exists()
            .where(TestRow.run_id == RunRow.run_id, TestRow.is_final.is_(False))
            .label("has_tests"),
        )
        with Session(self.engine) as session:
            task = session.get(TaskRow, task_id)
            if task is None:
                return None
            rows = session.execute(
                select(*cols).where(RunRow.task_id == task_id).order_by(RunRow.started_at)
            ).all()
        results: list[RunResult] = []
        started: dict[str, datetime] = {}
        run_specs: dict[str, list[MetricInfo]] = {}
        parsed_specs: dict[str, list[MetricInfo]] = {}
        no_result: list[NoResultRun] = []
        identities: set[str] = set()
        for r in rows:
            # One result, one row: a repeat (``--force``, or an identical result another writer
            # recorded) is shown on the first run's page, never ranked again.
            if r.repeat_of is not None or r.result_identity in identities:
                continue
            if r.sweep_id is not None:  # a sweep's point: shown on its sweep's page
                continue
            if r.result_identity is not None:
                identities.add(r.result_identity)
            if r.status == "infra_error" and not r.has_tests:
                no_result.append(_no_result_run(r))
                continue
            results.append(_run_result(r, task_id))
            started[r.run_id] = _as_utc(r.started_at)
            # Runs of one codebase share their specs' text: parse each distinct text once.
            if r.metric_specs not in parsed_specs:
                parsed_specs[r.metric_specs] = [
                    MetricInfo.model_validate(s) for s in json.loads(r.metric_specs)
                ]
            run_specs[r.run_id] = parsed_specs[r.metric_specs]
        info = TaskInfo(task.task_id, task.title, task.description, len(rows))
        return TaskData(info, results, started, run_specs, no_result)

    def iter_runs(self, task_id: str | None = None) -> Iterator[RunRecord]:
        """Every recorded run (of one task), in run id order."""
        for run_id in self.run_ids(task_id):
            run = self.get_run(run_id)
            if run is not None:
                yield run

    @property
    def _write_engine(self) -> Engine:
        return self.engine.execution_options(pb_write=True)


def _make_engine(url: str, *, echo: bool) -> Engine:
    parsed = make_url(url)
    if parsed.get_backend_name() == "postgresql":
        if parsed.drivername == "postgresql":
            parsed = parsed.set(drivername="postgresql+psycopg")  # psycopg 3, not psycopg2
        return create_engine(parsed, echo=echo, pool_pre_ping=True)
    if parsed.get_backend_name() != "sqlite":
        raise ValueError(f"unsupported store URL {url!r}: use sqlite:///… or postgresql://…")
    if parsed.database and parsed.database != ":memory:":
        Path(parsed.database).expanduser().parent.mkdir(parents=True, exist_ok=True)
    engine = create_engine(
        parsed, echo=echo, connect_args={"timeout": SQLITE_BUSY_TIMEOUT_MS / 1000}
    )

    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_conn: Any, _record: Any) -> None:
        # Let SQLAlchemy, not the sqlite3 module, decide when transactions begin.
        dbapi_conn.isolation_level = None
        cur = dbapi_conn.cursor()
        cur.execute("PRAGMA journal_mode=WAL")
        cur.execute(f"PRAGMA busy_timeout={SQLITE_BUSY_TIMEOUT_MS}")
        cur.execute("PRAGMA synchronous=NORMAL")  # durable at checkpoints; safe with WAL
        cur.execute("PRAGMA foreign_keys=ON")
        cur.close()

    @event.listens_for(engine, "begin")
    def _on_begin(conn: Any) -> None:
        # A write transaction takes the write lock up front: a deferred one that later
        # upgrades can fail with SQLITE_BUSY without waiting on the busy timeout.
        immediate = conn.get_execution_options().get("pb_write", False)
        conn.exec_driver_sql("BEGIN IMMEDIATE" if immediate else "BEGIN")

    return engine


def _no_result_run(r: Row[Any]) -> NoResultRun:
    """A run that failed before any test: listed with its reason, never ranked."""
    return NoResultRun(
        r.run_id,
        r.type,
        r.method,
        r.agent,
        r.status,
        r.status_reason or r.final_reason,
        _as_utc(r.started_at),
    )


def _run_result(r: Row[Any], task_id: str) -> RunResult:
    """The scoring view of one run row (stored numbers decoded)."""
    values = {
        k: [x if type(x) is float else float(decode_number(x)) for x in v]
        for k, v in r.results.items()
    }
    return RunResult(
        run_id=r.run_id,
        task_id=task_id,
        type=r.type,
        method=r.method,
        profile=r.profile,
        codebase_version=r.codebase_version,
        dataset_source=r.dataset_source,
        max_steps=r.max_steps,
        max_tests=r.max_tests,
        status=r.result_status,
        values=values,
        stderr=r.result_stderr or {},
        reference=r.reference,
        agent=r.agent,
        model=r.model,
        auto_submitted=r.final_auto_submitted,
        origin=r.origin,
    )


def _as_utc(value: datetime) -> datetime:
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


def _content_digest(run: RunRecord) -> str:
    """The hash that decides "unchanged". Fields added after a store was written are left out
    while they hold their defaults, so a run recorded before them hashes as it did then."""
    exclude: dict[str, Any] = {}
    if run.status_reason is None:
        exclude["status_reason"] = True
    if not run.agent_settings:
        exclude["agent_settings"] = True
    if run.repeat_of is None:
        exclude["repeat_of"] = True
    if run.origin == "own":
        exclude["origin"] = True
    if run.sweep_id is None:
        exclude["sweep_id"] = True
    if run.sweep_point is None:
        exclude["sweep_point"] = True
    if run.final is not None and not run.final.auto_submitted:
        exclude["final"] = {"auto_submitted": True}
    seeds = [*run.tests, *(run.final.per_seed if run.final else [])]
    if not any(s.stderr for s in seeds):
        exclude["tests"] = {"__all__": {"stderr"}}
        if run.final is not None:
            exclude.setdefault("final", {})["per_seed"] = {"__all__": {"stderr"}}
    payload = run.model_dump_json(exclude=exclude)
    return hashlib.sha256(payload.encode()).hexdigest()


def _run_columns(run: RunRecord, digest: str, now: datetime) -> dict[str, Any]:
    scoring = RunResult.from_record(run)
    return {
        "run_id": run.run_id,
        "task_id": run.task_id,
        "agent": run.agent,
        "model": run.model,
        "type": run.type,
        "method": run.method,
        "reference": run.reference,
        "profile": run.profile,
        "max_steps": run.max_steps,
        "max_tests": run.max_tests,
        "codebase_version": run.codebase_version,
        "dataset_source": run.dataset_source,
        "hardware": run.hardware,
        "library_versions": run.library_versions,
        "git_commit": run.git_commit,
        "started_at": run.started_at,
        "finished_at": run.finished_at,
        "status": run.status,
        "status_reason": run.status_reason,
        "agent_settings": run.agent_settings,
        "result_status": run.result_status(),
        "final_test_number": run.final.test_number if run.final else None,
        "final_status": run.final.status if run.final else None,
        "final_reason": run.final.reason if run.final else None,
        "final_auto_submitted": run.final.auto_submitted if run.final else False,
        "regions": run.regions,
        "diff": run.diff,
        "transcript": run.transcript,
        "transcript_ref": run.transcript_ref,
        "metric_specs": json.dumps([s.model_dump() for s in run.metric_specs], sort_keys=True),
        "results": {k: [encode_number(x) for x in v] for k, v in scoring.values.items()},
        "result_stderr": {k: list(v) for k, v in scoring.stderr.items()},
        "task_title": run.task_title,
        "task_description": run.task_description,
        "content_hash": digest,
        "recorded_at": now,
        "result_identity": run.result_identity(),
        "repeat_of": run.repeat_of,
        "origin": run.origin,
        "sweep_id": run.sweep_id,
        "sweep_point": run.sweep_point,
    }


def _test_columns(run_id: str, test: SeedRecord, is_final: bool) -> dict[str, Any]:
    return {
        "run_id": run_id,
        "is_final": is_final,
        "number": test.number,
        "setting": test.setting,
        "seed": test.seed,
        "status": test.status,
        "reason": test.reason,
        "metrics": encode_metrics(test.metrics),
        "stderr": test.stderr,
        "elapsed_s": test.elapsed_s,
        "curve": encode_curve(test.curve),
    }


def _test_from_row(row: TestRow) -> SeedRecord:
    return SeedRecord(
        number=row.number,
        setting=row.setting,
        seed=row.seed,
        status=row.status,  # type: ignore[arg-type]
        reason=row.reason,
        metrics=decode_metrics(row.metrics),
        stderr=row.stderr or {},
        elapsed_s=row.elapsed_s,
        curve=row.curve,
    )


def _run_from_rows(row: RunRow, tests: list[TestRow]) -> RunRecord:
    final = None
    if row.final_test_number is not None:
        final = FinalRecord(
            test_number=row.final_test_number,
            status=row.final_status,  # type: ignore[arg-type]
            reason=row.final_reason,
            per_seed=[_test_from_row(t) for t in tests if t.is_final],
            auto_submitted=row.final_auto_submitted,
        )
    return RunRecord(
        run_id=row.run_id,
        task_id=row.task_id,
        task_title=row.task_title,
        task_description=row.task_description,
        agent=row.agent,
        model=row.model,
        type=row.type,  # type: ignore[arg-type]
        method=row.method,
        reference=row.reference,
        profile=row.profile,
        max_steps=row.max_steps,
        max_tests=row.max_tests,
        codebase_version=row.codebase_version,
        dataset_source=row.dataset_source,
        hardware=row.hardware,
        library_versions=row.library_versions,
        git_commit=row.git_commit,
        started_at=_as_utc(row.started_at),
        finished_at=_as_utc(row.finished_at) if row.finished_at else None,
        status=row.status,  # type: ignore[arg-type]
        status_reason=row.status_reason,
        agent_settings=row.agent_settings,
        tests=[_test_from_row(t) for t in tests if not t.is_final],
        final=final,
        regions=row.regions,
        diff=row.diff,
        transcript=row.transcript,
        transcript_ref=row.transcript_ref,
        metric_specs=[MetricInfo.model_validate(s) for s in json.loads(row.metric_specs)],
        repeat_of=row.repeat_of,
        origin=row.origin,  # type: ignore[arg-type]
        sweep_id=row.sweep_id,
        sweep_point=row.sweep_point,
    )
