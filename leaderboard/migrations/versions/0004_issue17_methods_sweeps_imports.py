"""Hand-written methods, sweeps and imported records.

``pb_runs.origin`` is ``own`` (existing rows) or ``imported`` (`runner import`);
``pb_runs.sweep_id`` (indexed) and ``pb_runs.sweep_point`` tie a ``method`` run to the sweep
and grid point it belongs to. ``pb_sweeps`` holds each sweep's `SweepRecord` as JSON. A store
written before these columns upgrades in place and reads back unchanged.

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-27
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # Plain ADD COLUMN, never a batch copy (see 0002: a rebuilt pb_runs would cascade-delete).
    op.add_column(
        "pb_runs", sa.Column("origin", sa.String(20), nullable=False, server_default="own")
    )
    op.add_column("pb_runs", sa.Column("sweep_id", sa.String(200), nullable=True))
    op.add_column("pb_runs", sa.Column("sweep_point", sa.JSON(), nullable=True))
    op.create_index("ix_pb_runs_sweep_id", "pb_runs", ["sweep_id"])
    op.create_table(
        "pb_sweeps",
        sa.Column("sweep_id", sa.String(200), primary_key=True),
        sa.Column("task_id", sa.String(200), nullable=False),
        sa.Column("data", sa.JSON(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
    )
    op.create_index("ix_pb_sweeps_task_id", "pb_sweeps", ["task_id"])


def downgrade() -> None:
    op.drop_index("ix_pb_sweeps_task_id", "pb_sweeps")
    op.drop_table("pb_sweeps")
    op.drop_index("ix_pb_runs_sweep_id", "pb_runs")
    op.drop_column("pb_runs", "sweep_point")
    op.drop_column("pb_runs", "sweep_id")
    op.drop_column("pb_runs", "origin")
