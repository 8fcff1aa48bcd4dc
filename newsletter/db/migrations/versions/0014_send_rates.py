"""A shared send rate per backend.

``send_rates``: one row per backend (``name``) holding ``next_at``, the moment (seconds
since the epoch, by the database's clock) at which its next message may leave. Every
worker of every process moves it forward by one statement per batch
(``newsletter.delivery.ratelimit``), so ``max_rate`` holds across processes and machines.

Revision ID: 0014_send_rates
Revises: 0013_click_tracking
Create Date: 2026-11-30
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0014_send_rates"
down_revision = "0013_click_tracking"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "send_rates",
        sa.Column("name", sa.String(40), nullable=False),
        sa.Column("next_at", sa.Float(), nullable=False),
        sa.PrimaryKeyConstraint("name", name="pk_send_rates"),
    )


def downgrade() -> None:
    op.drop_table("send_rates")
