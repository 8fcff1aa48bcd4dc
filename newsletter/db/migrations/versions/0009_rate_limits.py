"""A shared send rate per backend.

``rate_limits``: one row per backend (``name``) holding ``next_at``, the moment (seconds
since the epoch, by the database's clock) at which its next message may leave. Every
worker of every process moves it forward by one statement per batch
(``newsletter.delivery.ratelimit``), so ``max_rate`` holds across processes and machines.

Revision ID: 0009_rate_limits
Revises: 0008_worker_journal
Create Date: 2026-11-30
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0009_rate_limits"
down_revision = "0008_worker_journal"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "rate_limits",
        sa.Column("name", sa.String(40), nullable=False),
        sa.Column("next_at", sa.Float(), nullable=False),
        sa.PrimaryKeyConstraint("name", name="pk_rate_limits"),
    )


def downgrade() -> None:
    op.drop_table("rate_limits")
