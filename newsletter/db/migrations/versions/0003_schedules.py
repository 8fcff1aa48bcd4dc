"""Scheduled sends and the workers that run them.

Revision ID: 0003_schedules
Revises: 0002_delivery_ledger
Create Date: 2026-11-25
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects.postgresql import JSONB

revision = "0003_schedules"
down_revision = "0002_delivery_ledger"
branch_labels = None
depends_on = None

ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
Stamp = sa.DateTime(timezone=True)
JSONType = sa.JSON().with_variant(JSONB(), "postgresql")


def upgrade() -> None:
    op.create_table(
        "schedules",
        sa.Column("id", ID, primary_key=True, autoincrement=True),
        sa.Column("issue_path", sa.Text(), nullable=False),
        sa.Column("list_name", sa.String(100), nullable=False),
        sa.Column("backend", sa.String(20), nullable=True),
        sa.Column("zone", sa.String(64), nullable=False),
        sa.Column("wall", sa.String(19), nullable=False),
        sa.Column("due_at", Stamp, nullable=False),
        sa.Column("local_time", sa.Boolean(), nullable=False),
        sa.Column("again", sa.Boolean(), nullable=False),
        sa.Column("source", sa.String(10), nullable=False),
        sa.Column("status", sa.String(12), nullable=False),
        sa.Column("send_id", ID, nullable=True),
        sa.Column("worker_id", sa.String(40), nullable=True),
        sa.Column("waves", JSONType, nullable=True),
        sa.Column("note", sa.Text(), nullable=True),
        sa.Column("created_at", Stamp, nullable=False),
        sa.Column("started_at", Stamp, nullable=True),
        sa.Column("finished_at", Stamp, nullable=True),
        sa.PrimaryKeyConstraint("id", name="pk_schedules"),
        sa.ForeignKeyConstraint(
            ["send_id"], ["sends.id"], ondelete="SET NULL", name="fk_schedules_send_id_sends"
        ),
        sa.CheckConstraint(
            "status IN ('scheduled', 'sending', 'sent', 'failed', 'missed', 'cancelled')",
            name="ck_schedules_status",
        ),
        sqlite_autoincrement=True,
    )
    op.create_index("ix_schedules_status_due_at", "schedules", ["status", "due_at"])
    op.create_table(
        "schedule_workers",
        sa.Column("id", sa.String(40), nullable=False),
        sa.Column("host", sa.String(255), nullable=False),
        sa.Column("pid", sa.Integer(), nullable=False),
        sa.Column("state", sa.String(20), nullable=False),
        sa.Column("detail", sa.Text(), nullable=True),
        sa.Column("started_at", Stamp, nullable=False),
        sa.Column("heartbeat_at", Stamp, nullable=False),
        sa.Column("stopped_at", Stamp, nullable=True),
        sa.PrimaryKeyConstraint("id", name="pk_schedule_workers"),
    )


def downgrade() -> None:
    op.drop_table("schedule_workers")
    op.drop_index("ix_schedules_status_due_at", "schedules")
    op.drop_table("schedules")
