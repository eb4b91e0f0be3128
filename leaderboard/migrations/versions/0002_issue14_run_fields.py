"""Why a run ended as it did, the agent's settings, and auto-submitted final results.

Adds ``pb_runs.status_reason``, ``pb_runs.agent_settings`` (``{}`` for existing runs) and
``pb_runs.final_auto_submitted`` (false for existing runs), so a store written before them
upgrades in place and reads back every run unchanged.

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-26
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # Plain ADD COLUMN, never a batch copy: rebuilding pb_runs on SQLite would cascade-delete
    # every pb_tests row through the foreign key.
    op.add_column("pb_runs", sa.Column("status_reason", sa.Text(), nullable=True))
    op.add_column(
        "pb_runs", sa.Column("agent_settings", sa.JSON(), nullable=False, server_default="{}")
    )
    op.add_column(
        "pb_runs",
        sa.Column("final_auto_submitted", sa.Boolean(), nullable=False, server_default=sa.false()),
    )


def downgrade() -> None:
    for column in ("final_auto_submitted", "agent_settings", "status_reason"):
        op.drop_column("pb_runs", column)
