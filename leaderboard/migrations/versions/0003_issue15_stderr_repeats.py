"""Standard errors, and one row per result.

``pb_tests.stderr`` holds a seed's {metric key: standard error}; ``pb_runs.result_stderr`` the
scoring view's {metric key: [standard error per seed]} beside ``results``. Both are ``{}`` for
existing rows. ``pb_runs.result_identity`` (indexed) is ``RunRecord.result_identity()``, so an
identical result is found without reading every run; ``pb_runs.repeat_of`` names the run a
``--force`` repeat repeats. Existing runs keep a ``NULL`` identity (computing it needs the
whole record, not a column) until they are recorded again; a store written before these
columns upgrades in place and reads back unchanged.

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-26
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # Plain ADD COLUMN, never a batch copy (see 0002: a rebuilt pb_runs would cascade-delete).
    op.add_column("pb_tests", sa.Column("stderr", sa.JSON(), nullable=False, server_default="{}"))
    op.add_column(
        "pb_runs", sa.Column("result_stderr", sa.JSON(), nullable=False, server_default="{}")
    )
    op.add_column("pb_runs", sa.Column("result_identity", sa.String(64), nullable=True))
    op.add_column("pb_runs", sa.Column("repeat_of", sa.String(200), nullable=True))
    op.create_index("ix_pb_runs_result_identity", "pb_runs", ["result_identity"])


def downgrade() -> None:
    op.drop_index("ix_pb_runs_result_identity", "pb_runs")
    op.drop_column("pb_runs", "repeat_of")
    op.drop_column("pb_runs", "result_identity")
    op.drop_column("pb_runs", "result_stderr")
    op.drop_column("pb_tests", "stderr")
