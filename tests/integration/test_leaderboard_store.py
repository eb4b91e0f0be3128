"""The store against a real SQLite file and, when one can be started, a real PostgreSQL server."""

from __future__ import annotations

import math
import multiprocessing
import sqlite3
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import create_engine, inspect, text

from leaderboard import FinalRecord, MetricInfo, RunRecord, SeedRecord, Store
from leaderboard._schema import SCHEMA_VERSION, Base, SchemaTooNewError, current_version, migrate
from leaderboard._scoring import RunResult
from tests._fixtures.leaderboard import NO_RESULT_REASON, NO_RESULT_RUN

FIXTURES = Path(__file__).parents[1] / "_fixtures"

pytestmark = pytest.mark.integration

WRITERS = 8
RESULTS_PER_WRITER = 1000
RUNS_PER_WRITER = 100  # 100 runs × (5 tests × 2 seeds) = 1,000 results per writer


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def store_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'store.db'}"
        return
    server = request.getfixturevalue("postgres_url")
    name = "t_" + uuid.uuid4().hex[:12]
    admin = create_engine(
        server.replace("postgresql://", "postgresql+psycopg://"), isolation_level="AUTOCOMMIT"
    )
    with admin.connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{name}"'))
    admin.dispose()
    yield server.rsplit("/", 1)[0] + "/" + name


def small_run(
    run_id: str, *, tests: int = 5, seeds: int = 2, val: float = 2.25, task_id: str = "task-a"
) -> RunRecord:
    rows = [
        SeedRecord(
            number=n,
            setting="gpt-tiny",
            seed=40 + s,
            status="ok",
            metrics={"val_loss_gpt-tiny": val + 0.01 * n + 0.001 * s},
            elapsed_s=1.5,
            curve=[
                {"step": 0, "lr": 1e-3, "train_loss": 10.0},
                {"step": 10, "lr": 5e-4, "train_loss": 4.0},
            ],
        )
        for n in range(1, tests + 1)
        for s in range(seeds)
    ]
    return RunRecord(
        run_id=run_id,
        task_id=task_id,
        task_title="Task A",
        agent="baseline:wsd",
        model=None,
        type="baseline",
        method="wsd",
        profile="tiny",
        max_steps=20,
        max_tests=3,
        codebase_version="v1",
        dataset_source="offline",
        hardware={"cpus": 2},
        library_versions={"torch": "2.13.0"},
        git_commit="abc",
        status="finished",
        started_at=datetime(2026, 11, 1, tzinfo=UTC),
        tests=rows,
        final=FinalRecord(test_number=1, status="ok", per_seed=[r for r in rows if r.number == 1]),
        regions={"get_lr": "def get_lr(...): ..."},
        diff="--- a\n+++ b\n",
        transcript=[{"role": "user", "content": "hi"}],
        metric_specs=[MetricInfo(name="val_loss", setting="gpt-tiny", direction="lower", bound=0)],
    )


def test_round_trip_of_the_realistic_run_set(store_url: str, lb_runs: list[RunRecord]) -> None:
    with Store(store_url) as store:
        for run in lb_runs:
            assert store.record(run) == "inserted"
        for run in lb_runs:
            back = store.get_run(run.run_id)
            assert back is not None
            if any(
                p.get("train_loss") is not None and not math.isfinite(p["train_loss"])
                for t in run.tests
                for p in t.curve
            ):
                continue  # non-finite curve points are stored as gaps; checked below
            assert back.model_dump(exclude={"tests", "final"}) == run.model_dump(
                exclude={"tests", "final"}
            )
            assert back.model_dump_json() == run.model_dump_json()
        diverged = store.get_run("llm-pretrain-normalization.gpt-5.4.vanilla")
        assert diverged is not None
        assert math.isnan(diverged.tests[0].metrics["val_loss_gpt-345m"])
        assert diverged.tests[0].curve[-1]["train_loss"] is None
        assert store.count_results() == sum(
            len(r.tests) + (len(r.final.per_seed) if r.final else 0) for r in lb_runs
        )
        data = store.task_data("llm-pretrain-lr-schedule")
        assert data is not None
        by_id = {r.run_id: r for r in data.results}
        # A run that failed before any test is listed apart, with its cause, and never scored.
        assert [(r.run_id, r.reason) for r in data.no_result] == [(NO_RESULT_RUN, NO_RESULT_REASON)]
        for run in lb_runs:
            if run.task_id == "llm-pretrain-lr-schedule" and run.run_id != NO_RESULT_RUN:
                assert by_id[run.run_id] == RunResult.from_record(run)
        assert [t.task_id for t in store.list_tasks()] == [
            "llm-pretrain-lr-schedule",
            "llm-pretrain-normalization",
        ]


def test_recording_is_idempotent_and_replaces_atomically(store_url: str) -> None:
    with Store(store_url) as store:
        run = small_run("r1")
        assert store.record(run) == "inserted"
        assert store.record(run) == "unchanged"
        assert store.record(RunRecord.model_validate_json(run.model_dump_json())) == "unchanged"
        assert store.count_results() == 12  # 10 tests + 2 final rows
        changed = small_run("r1", tests=2, val=2.0)
        assert store.record(changed) == "replaced"
        back = store.get_run("r1")
        assert back == changed
        assert store.count_results() == 6  # old rows are gone, none duplicated
        assert store.run_ids() == ["r1"]
        assert store.delete_run("r1") and store.get_run("r1") is None


def test_why_a_run_ended_and_its_agent_settings_round_trip(store_url: str) -> None:
    with Store(store_url) as store:
        plain = small_run("r1")
        assert store.record(plain) == "inserted"
        assert store.get_run("r1") == plain and plain.agent_settings == {}
        assert plain.final is not None and not plain.final.auto_submitted
        final = plain.final.model_copy(update={"auto_submitted": True})
        told = plain.model_copy(
            update={
                "final": final,
                "status_reason": "the agent stopped calling tools 3 times in a row",
                "agent_settings": {"temperature": 0.2, "max_tokens": 4096, "max_cost_usd": None},
            }
        )
        assert store.record(told) == "replaced"  # each new field is part of the content
        assert store.get_run("r1") == told
        assert store.record(told) == "unchanged"


def test_standard_errors_persist_across_restarts(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'lb.db'}"
    one_seed = small_run("r1", tests=1, seeds=1)
    assert one_seed.final is not None
    [row] = one_seed.final.per_seed
    with_se = row.model_copy(update={"stderr": {"val_loss_gpt-tiny": 0.0123}})
    run = one_seed.model_copy(
        update={
            "tests": [with_se],
            "final": one_seed.final.model_copy(update={"per_seed": [with_se]}),
        }
    )
    with Store(url) as store:
        assert store.record(one_seed) == "inserted"
        assert store.record(run) == "replaced"  # a standard error is part of the content
    with Store(url) as store:  # a new process's view: the file, not a cache
        back = store.get_run("r1")
        assert back == run and back.tests[0].stderr == {"val_loss_gpt-tiny": 0.0123}
        data = store.task_data("task-a")
        assert data is not None
        assert dict(data.results[0].stderr) == {"val_loss_gpt-tiny": [0.0123]}
    with pytest.raises(ValueError, match="stderr"):
        SeedRecord.model_validate({**row.model_dump(), "stderr": {"val_loss_gpt-tiny": -1.0}})


def test_schema_version_and_migration_path(store_url: str) -> None:
    with Store(store_url) as store:
        assert migrate(store.engine) == 0  # already current: nothing applied twice
        with store.engine.connect() as conn:
            assert current_version(conn) == SCHEMA_VERSION
            # The tables the models declare are exactly the ones the migrations built.
            assert compare_metadata(MigrationContext.configure(conn), Base.metadata) == []
        with store.engine.begin() as conn:
            conn.execute(text("UPDATE alembic_version SET version_num = 'from-the-future'"))
    with pytest.raises(SchemaTooNewError):
        Store(store_url)


def test_a_store_made_by_the_hand_written_migrations_upgrades(tmp_path: Path) -> None:
    # The fixture is the `.dump` of a SQLite file the earlier code (its own migration
    # framework, ``pb_schema_version`` at 1) wrote with one run recorded.
    path = tmp_path / "old.db"
    with sqlite3.connect(path) as conn:
        conn.executescript((FIXTURES / "leaderboard_store_v1.sql").read_text())
    url = f"sqlite:///{path}"
    with Store(url) as store:
        with store.engine.connect() as conn:
            assert current_version(conn) == SCHEMA_VERSION
            assert not inspect(conn).has_table("pb_schema_version")
            assert compare_metadata(MigrationContext.configure(conn), Base.metadata) == []
        old = small_run("old-r1", tests=2)
        assert store.run_ids() == ["old-r1"] and store.count_results() == 6
        assert store.record(old) == "unchanged"  # the same content hash: nothing lost or altered
        assert store.get_run("old-r1") == old
        assert store.record(small_run("new-r1")) == "inserted"
    with Store(url) as store:
        assert migrate(store.engine) == 0
        assert store.run_ids() == ["new-r1", "old-r1"]


def test_a_store_from_a_newer_hand_written_version_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "old.db"
    with sqlite3.connect(path) as conn:
        conn.executescript((FIXTURES / "leaderboard_store_v1.sql").read_text())
        conn.execute("INSERT INTO pb_schema_version VALUES (2, 'future', '2030-01-01')")
    with pytest.raises(SchemaTooNewError):
        Store(f"sqlite:///{path}")


def _writer(url: str, writer: int) -> int:
    store = Store(url)
    try:
        for i in range(RUNS_PER_WRITER):
            store.record(small_run(f"w{writer}-r{i:03d}", task_id=f"task-{writer % 2}"))
        # Every writer also records one shared run with the same content: one row results.
        store.record(small_run("shared", tests=1, seeds=1))
        return writer
    finally:
        store.close()


def test_concurrent_writers_lose_nothing(store_url: str) -> None:
    Store(store_url).close()  # create the schema once; writers race on data, not DDL
    ctx = multiprocessing.get_context("fork")
    with ctx.Pool(WRITERS) as pool:
        done = pool.starmap(_writer, [(store_url, w) for w in range(WRITERS)])
    assert sorted(done) == list(range(WRITERS))
    with Store(store_url) as store:
        expected_runs = WRITERS * RUNS_PER_WRITER + 1
        assert len(store.run_ids()) == expected_runs
        per_run = 5 * 2 + 2  # test rows + final rows of small_run
        assert RESULTS_PER_WRITER == RUNS_PER_WRITER * 5 * 2
        assert store.count_results() == WRITERS * RUNS_PER_WRITER * per_run + 2
        for w in range(WRITERS):
            run = store.get_run(f"w{w}-r{RUNS_PER_WRITER - 1:03d}")
            assert run is not None and len(run.tests) == 10


def test_bad_urls_fail_clearly(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="unsupported store URL"):
        Store("mysql://nobody@localhost/db")
    nested = tmp_path / "a" / "b" / "lb.db"
    with Store(f"sqlite:///{nested}") as store:
        assert store.run_ids() == []
    assert nested.exists()
    with Store(f"sqlite:///{nested}") as store, store.engine.connect() as conn:
        assert conn.exec_driver_sql("PRAGMA journal_mode").scalar() == "wal"
