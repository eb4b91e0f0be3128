"""Initial schema: tasks, runs, tests.

The tables as the hand-written migration framework's version 1 created them, so that a
database made by that code is stamped with this revision and carries on from here. Later
revisions ALTER explicitly and never edit this one.

Revision ID: 0001
Revises:
Create Date: 2026-11-26
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "pb_runs",
        sa.Column("run_id", sa.String(length=200), nullable=False),
        sa.Column("task_id", sa.String(length=200), nullable=False),
        sa.Column("task_title", sa.String(length=500), nullable=True),
        sa.Column("task_description", sa.Text(), nullable=True),
        sa.Column("agent", sa.String(length=200), nullable=False),
        sa.Column("model", sa.String(length=200), nullable=True),
        sa.Column("type", sa.String(length=20), nullable=False),
        sa.Column("method", sa.String(length=200), nullable=False),
        sa.Column("reference", sa.Boolean(), nullable=False),
        sa.Column("profile", sa.String(length=100), nullable=False),
        sa.Column("max_steps", sa.Integer(), nullable=False),
        sa.Column("max_tests", sa.Integer(), nullable=False),
        sa.Column("codebase_version", sa.String(length=200), nullable=False),
        sa.Column("dataset_source", sa.String(length=200), nullable=False),
        sa.Column("hardware", sa.JSON(), nullable=False),
        sa.Column("library_versions", sa.JSON(), nullable=False),
        sa.Column("git_commit", sa.String(length=100), nullable=True),
        sa.Column("started_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("finished_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("status", sa.String(length=20), nullable=False),
        sa.Column("result_status", sa.String(length=20), nullable=False),
        sa.Column("final_test_number", sa.Integer(), nullable=True),
        sa.Column("final_status", sa.String(length=20), nullable=True),
        sa.Column("final_reason", sa.Text(), nullable=True),
        sa.Column("regions", sa.JSON(), nullable=False),
        sa.Column("diff", sa.Text(), nullable=False),
        sa.Column("transcript", sa.JSON(), nullable=True),
        sa.Column("transcript_ref", sa.Text(), nullable=True),
        sa.Column("metric_specs", sa.Text(), nullable=False),
        sa.Column("results", sa.JSON(), nullable=False),
        sa.Column("content_hash", sa.String(length=64), nullable=False),
        sa.Column("recorded_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("run_id"),
    )
    op.create_index("ix_pb_runs_task_id", "pb_runs", ["task_id"], unique=False)
    op.create_index("ix_pb_runs_task_profile", "pb_runs", ["task_id", "profile"], unique=False)
    op.create_table(
        "pb_tasks",
        sa.Column("task_id", sa.String(length=200), nullable=False),
        sa.Column("title", sa.String(length=500), nullable=True),
        sa.Column("description", sa.Text(), nullable=True),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("task_id"),
    )
    op.create_table(
        "pb_tests",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("run_id", sa.String(length=200), nullable=False),
        sa.Column("is_final", sa.Boolean(), nullable=False),
        sa.Column("number", sa.Integer(), nullable=False),
        sa.Column("setting", sa.String(length=100), nullable=False),
        sa.Column("seed", sa.Integer(), nullable=False),
        sa.Column("status", sa.String(length=20), nullable=False),
        sa.Column("reason", sa.Text(), nullable=True),
        sa.Column("metrics", sa.JSON(), nullable=False),
        sa.Column("elapsed_s", sa.Float(), nullable=True),
        sa.Column("curve", sa.JSON(), nullable=False),
        sa.ForeignKeyConstraint(["run_id"], ["pb_runs.run_id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint(
            "run_id", "is_final", "number", "setting", "seed", name="uq_pb_tests_result"
        ),
    )
    op.create_index("ix_pb_tests_run_id", "pb_tests", ["run_id"], unique=False)


def downgrade() -> None:
    op.drop_index("ix_pb_tests_run_id", table_name="pb_tests")
    op.drop_table("pb_tests")
    op.drop_table("pb_tasks")
    op.drop_index("ix_pb_runs_task_profile", table_name="pb_runs")
    op.drop_index("ix_pb_runs_task_id", table_name="pb_runs")
    op.drop_table("pb_runs")
