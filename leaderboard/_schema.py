"""The store's tables (SQLAlchemy 2 typed ORM) and their migrations (Alembic).

The migration scripts ship inside the package (``leaderboard/migrations``). ``migrate(engine)``
runs them on every ``Store`` open, inside one write transaction serialised across processes
(``BEGIN IMMEDIATE`` on SQLite, an advisory lock on PostgreSQL). A database made by the earlier
hand-written framework (``pb_schema_version`` at version 1) is stamped with the revision that
has the same tables and carries on from there. A database written by a newer version of this
code is refused rather than silently misread.
"""

from __future__ import annotations

from datetime import datetime
from pathlib import Path
from typing import Any

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from alembic.script.revision import RevisionError
from sqlalchemy import (
    JSON,
    Boolean,
    Connection,
    DateTime,
    Engine,
    Float,
    ForeignKey,
    Index,
    Integer,
    String,
    Text,
    UniqueConstraint,
    false,
    inspect,
    text,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column


class Base(DeclarativeBase):
    """Declarative base of the leaderboard tables."""


class TaskRow(Base):
    """A task as last described by a recorded run."""

    __tablename__ = "pb_tasks"

    task_id: Mapped[str] = mapped_column(String(200), primary_key=True)
    title: Mapped[str | None] = mapped_column(String(500))
    description: Mapped[str | None] = mapped_column(Text)
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))


class RunRow(Base):
    """One run. ``results`` caches the scoring view ({metric key: [value per seed]}) so that a
    task page reads one row per run and never touches curves, diffs or transcripts."""

    __tablename__ = "pb_runs"

    run_id: Mapped[str] = mapped_column(String(200), primary_key=True)
    task_id: Mapped[str] = mapped_column(String(200), index=True)
    task_title: Mapped[str | None] = mapped_column(String(500))
    task_description: Mapped[str | None] = mapped_column(Text)
    agent: Mapped[str] = mapped_column(String(200))
    model: Mapped[str | None] = mapped_column(String(200))
    type: Mapped[str] = mapped_column(String(20))
    method: Mapped[str] = mapped_column(String(200))
    reference: Mapped[bool] = mapped_column(Boolean, default=False)
    profile: Mapped[str] = mapped_column(String(100))
    max_steps: Mapped[int] = mapped_column(Integer)
    max_tests: Mapped[int] = mapped_column(Integer)
    codebase_version: Mapped[str] = mapped_column(String(200))
    dataset_source: Mapped[str] = mapped_column(String(200))
    hardware: Mapped[dict[str, Any]] = mapped_column(JSON)
    library_versions: Mapped[dict[str, str]] = mapped_column(JSON)
    git_commit: Mapped[str | None] = mapped_column(String(100))
    started_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    finished_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    status: Mapped[str] = mapped_column(String(20))
    status_reason: Mapped[str | None] = mapped_column(Text)
    agent_settings: Mapped[dict[str, Any]] = mapped_column(JSON, server_default="{}")
    result_status: Mapped[str] = mapped_column(String(20))
    final_test_number: Mapped[int | None] = mapped_column(Integer)
    final_status: Mapped[str | None] = mapped_column(String(20))
    final_reason: Mapped[str | None] = mapped_column(Text)
    final_auto_submitted: Mapped[bool] = mapped_column(Boolean, server_default=false())
    regions: Mapped[dict[str, str]] = mapped_column(JSON)
    diff: Mapped[str] = mapped_column(Text)
    transcript: Mapped[list[dict[str, Any]] | None] = mapped_column(JSON)
    transcript_ref: Mapped[str | None] = mapped_column(Text)
    metric_specs: Mapped[str] = mapped_column(Text)  # JSON text: identical across runs, parsed once
    results: Mapped[dict[str, list[Any]]] = mapped_column(JSON)
    # {metric key: [standard error per seed]} beside ``results``, for metrics that have one
    result_stderr: Mapped[dict[str, list[float]]] = mapped_column(JSON, server_default="{}")
    content_hash: Mapped[str] = mapped_column(String(64))
    # RunRecord.result_identity(): an identical result is a repeat, not a second row
    result_identity: Mapped[str | None] = mapped_column(String(64), index=True)
    repeat_of: Mapped[str | None] = mapped_column(String(200))
    recorded_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    # "own" or "imported" (`runner import`); the sweep a method run is a point of, and its values
    origin: Mapped[str] = mapped_column(String(20), server_default="own")
    sweep_id: Mapped[str | None] = mapped_column(String(200), index=True)
    sweep_point: Mapped[dict[str, Any] | None] = mapped_column(JSON)

    __table_args__ = (Index("ix_pb_runs_task_profile", "task_id", "profile"),)


class SweepRow(Base):
    """One sweep (`runner sweep`): ``data`` is its `SweepRecord` as JSON; its points' results
    are the runs whose ``sweep_id`` names it."""

    __tablename__ = "pb_sweeps"

    sweep_id: Mapped[str] = mapped_column(String(200), primary_key=True)
    task_id: Mapped[str] = mapped_column(String(200), index=True)
    data: Mapped[dict[str, Any]] = mapped_column(JSON)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))


class TestRow(Base):
    """One (test number, setting, seed) result; ``is_final`` rows belong to the final evaluation."""

    __tablename__ = "pb_tests"
    __test__ = False  # not a pytest test class

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    run_id: Mapped[str] = mapped_column(
        String(200), ForeignKey("pb_runs.run_id", ondelete="CASCADE"), index=True
    )
    is_final: Mapped[bool] = mapped_column(Boolean)
    number: Mapped[int] = mapped_column(Integer)
    setting: Mapped[str] = mapped_column(String(100))
    seed: Mapped[int] = mapped_column(Integer)
    status: Mapped[str] = mapped_column(String(20))
    reason: Mapped[str | None] = mapped_column(Text)
    metrics: Mapped[dict[str, Any]] = mapped_column(JSON)
    stderr: Mapped[dict[str, float]] = mapped_column(JSON, server_default="{}")
    elapsed_s: Mapped[float | None] = mapped_column(Float)
    curve: Mapped[list[dict[str, Any]]] = mapped_column(JSON)

    __table_args__ = (
        UniqueConstraint(
            "run_id", "is_final", "number", "setting", "seed", name="uq_pb_tests_result"
        ),
    )


MIGRATIONS_DIR = Path(__file__).with_name("migrations")
_LEGACY_VERSION_TABLE = "pb_schema_version"  # the hand-written framework's bookkeeping
_LEGACY_V1_REVISION = "0001"  # the revision whose tables equal that framework's version 1


class SchemaTooNewError(RuntimeError):
    """The database was written by a newer version of the leaderboard."""


def _alembic_config(conn: Connection) -> Config:
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS_DIR))
    config.attributes["connection"] = conn  # env.py migrates on this connection, in its lock
    return config


def _scripts() -> ScriptDirectory:
    return ScriptDirectory(str(MIGRATIONS_DIR))


SCHEMA_VERSION: str = _scripts().get_current_head() or ""  # the newest revision id


def current_version(conn: Connection) -> str | None:
    """The database's Alembic revision (``None`` for an empty database)."""
    return MigrationContext.configure(conn).get_current_revision()


def migrate(engine: Engine) -> int:
    """Bring the database up to ``SCHEMA_VERSION``; returns the number of revisions applied."""
    with engine.execution_options(pb_write=True).begin() as conn:
        if conn.dialect.name == "postgresql":
            # Two processes opening a fresh database must not both create the tables.
            conn.execute(text("SELECT pg_advisory_xact_lock(7312024)"))
        config = _alembic_config(conn)
        _adopt_legacy_schema(conn, config)
        version = current_version(conn)
        scripts = _scripts()
        try:
            pending = list(scripts.iterate_revisions(SCHEMA_VERSION, version))
        except RevisionError as exc:
            raise SchemaTooNewError(
                f"database schema revision {version} is unknown to this code (newest "
                f"{SCHEMA_VERSION}): it was written by a newer pretrainbench; upgrade it"
            ) from exc
        if pending:
            command.upgrade(config, "head")
        return len(pending)


def _adopt_legacy_schema(conn: Connection, config: Config) -> None:
    """Stamp a database made by the hand-written framework and drop its version table."""
    if not inspect(conn).has_table(_LEGACY_VERSION_TABLE):
        return
    versions = [
        row[0] for row in conn.execute(text(f"SELECT version FROM {_LEGACY_VERSION_TABLE}"))
    ]
    if max(versions, default=0) > 1:
        raise SchemaTooNewError(
            f"database schema version {max(versions)} is newer than this code knows; "
            "upgrade pretrainbench"
        )
    if versions:
        command.stamp(config, _LEGACY_V1_REVISION)
    conn.execute(text(f"DROP TABLE {_LEGACY_VERSION_TABLE}"))
