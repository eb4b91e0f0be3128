"""The evaluator's standard errors: ``pb_tests.stderr`` and ``pb_runs.result_stderr``.

``pb_tests.stderr`` holds a seed's {metric key: standard error}; ``pb_runs.result_stderr`` the
scoring view's {metric key: [standard error per seed]} beside ``results``. Both are ``{}`` for
existing rows, so a store written before them upgrades in place and reads back unchanged.

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


def downgrade() -> None:
    op.drop_column("pb_runs", "result_stderr")
    op.drop_column("pb_tests", "stderr")
