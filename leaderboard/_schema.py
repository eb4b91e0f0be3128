"""The store's tables (SQLAlchemy 2 typed ORM) and their versioned migrations.

Migrations are a hand-written, append-only list: each step has a version number and a
function of a connection. ``migrate(engine)`` applies the missing steps in order inside one
write transaction (serialised across processes: ``BEGIN IMMEDIATE`` on SQLite, an advisory
lock on PostgreSQL) and records each in ``pb_schema_version``. A database written by a newer
version of this code is refused rather than silently misread.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

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
    select,
    text,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column


class Base(DeclarativeBase):
    """Declarative base of the leaderboard tables."""


class SchemaVersion(Base):
    """One applied migration step."""

    __tablename__ = "pb_schema_version"

    version: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=False)
    description: Mapped[str] = mapped_column(String(200))
    applied_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))


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
    result_status: Mapped[str] = mapped_column(String(20))
    final_test_number: Mapped[int | None] = mapped_column(Integer)
    final_status: Mapped[str | None] = mapped_column(String(20))
    final_reason: Mapped[str | None] = mapped_column(Text)
    regions: Mapped[dict[str, str]] = mapped_column(JSON)
    diff: Mapped[str] = mapped_column(Text)
    transcript: Mapped[list[dict[str, Any]] | None] = mapped_column(JSON)
    transcript_ref: Mapped[str | None] = mapped_column(Text)
    metric_specs: Mapped[str] = mapped_column(Text)  # JSON text: identical across runs, parsed once
    results: Mapped[dict[str, list[Any]]] = mapped_column(JSON)
    content_hash: Mapped[str] = mapped_column(String(64))
    recorded_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))

    __table_args__ = (Index("ix_pb_runs_task_profile", "task_id", "profile"),)


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
    elapsed_s: Mapped[float | None] = mapped_column(Float)
    curve: Mapped[list[dict[str, Any]]] = mapped_column(JSON)

    __table_args__ = (
        UniqueConstraint(
            "run_id", "is_final", "number", "setting", "seed", name="uq_pb_tests_result"
        ),
    )


@dataclass(frozen=True)
class Migration:
    """One schema step: applied once, in order, recorded in ``pb_schema_version``."""

    version: int
    description: str
    apply: Callable[[Connection], None]


def _initial_schema(conn: Connection) -> None:
    # Version 1 is the tables as declared above. Later steps must ALTER explicitly and never
    # edit this step, so that an old database and a new one converge on the same schema.
    Base.metadata.create_all(
        conn,
        tables=[TaskRow.__table__, RunRow.__table__, TestRow.__table__],  # type: ignore[list-item]
    )


MIGRATIONS: list[Migration] = [
    Migration(1, "initial schema: tasks, runs, tests", _initial_schema),
]
SCHEMA_VERSION = MIGRATIONS[-1].version


class SchemaTooNewError(RuntimeError):
    """The database was written by a newer version of the leaderboard."""


def current_version(conn: Connection) -> int:
    """The highest applied migration (0 for an empty database)."""
    SchemaVersion.__table__.create(conn, checkfirst=True)  # type: ignore[attr-defined]
    found = conn.execute(
        select(SchemaVersion.version).order_by(SchemaVersion.version.desc())
    ).first()
    return int(found[0]) if found else 0


def migrate(engine: Engine) -> int:
    """Bring the database up to ``SCHEMA_VERSION``; returns the number of steps applied."""
    with engine.execution_options(pb_write=True).begin() as conn:
        if conn.dialect.name == "postgresql":
            # Two processes opening a fresh database must not both create the tables.
            conn.execute(text("SELECT pg_advisory_xact_lock(7312024)"))
        version = current_version(conn)
        if version > SCHEMA_VERSION:
            raise SchemaTooNewError(
                f"database schema version {version} is newer than this code's {SCHEMA_VERSION}; "
                "upgrade pretrainbench"
            )
        applied = 0
        for step in MIGRATIONS:
            if step.version <= version:
                continue
            step.apply(conn)
            conn.execute(
                SchemaVersion.__table__.insert().values(  # type: ignore[attr-defined]
                    version=step.version,
                    description=step.description,
                    applied_at=datetime.now(UTC),
                )
            )
            applied += 1
        return applied
