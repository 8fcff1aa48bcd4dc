"""Subscribers, lists and list memberships.

Revision ID: 0001_subscribers_and_lists
Revises:
Create Date: 2026-11-25
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects.postgresql import JSONB

revision = "0001_subscribers_and_lists"
down_revision = None
branch_labels = None
depends_on = None

ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
Stamp = sa.DateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "subscribers",
        sa.Column("id", ID, primary_key=True, autoincrement=True),
        sa.Column("email", sa.String(320), nullable=False),
        sa.Column(
            "email_key",
            sa.String(320).with_variant(sa.String(320, collation="C"), "postgresql"),
            nullable=False,
        ),
        sa.Column("name", sa.Text(), nullable=True),
        sa.Column("attributes", sa.JSON().with_variant(JSONB(), "postgresql"), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("status_changed_at", Stamp, nullable=False),
        sa.Column("status_reason", sa.Text(), nullable=True),
        sa.Column("created_at", Stamp, nullable=False),
        sa.Column("source", sa.String(200), nullable=True),
        sa.PrimaryKeyConstraint("id", name="pk_subscribers"),
        sa.UniqueConstraint("email_key", name="uq_subscribers_email_key"),
        sa.CheckConstraint(
            "status IN ('active', 'unsubscribed', 'bounced', 'complained')",
            name="ck_subscribers_status",
        ),
        sqlite_autoincrement=True,
    )
    op.create_table(
        "lists",
        sa.Column("id", ID, primary_key=True, autoincrement=True),
        sa.Column("name", sa.String(100), nullable=False),
        sa.Column("description", sa.Text(), nullable=True),
        sa.Column("created_at", Stamp, nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_lists"),
        sa.UniqueConstraint("name", name="uq_lists_name"),
        sqlite_autoincrement=True,
    )
    op.create_table(
        "memberships",
        sa.Column("list_id", ID, nullable=False),
        sa.Column("subscriber_id", ID, nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("created_at", Stamp, nullable=False),
        sa.Column("status_changed_at", Stamp, nullable=False),
        sa.Column("status_reason", sa.Text(), nullable=True),
        sa.PrimaryKeyConstraint("list_id", "subscriber_id", name="pk_memberships"),
        sa.ForeignKeyConstraint(
            ["list_id"],
            ["lists.id"],
            ondelete="CASCADE",
            name="fk_memberships_list_id_lists",
        ),
        sa.ForeignKeyConstraint(
            ["subscriber_id"],
            ["subscribers.id"],
            ondelete="CASCADE",
            name="fk_memberships_subscriber_id_subscribers",
        ),
        sa.CheckConstraint(
            "status IN ('subscribed', 'unsubscribed')", name="ck_memberships_status"
        ),
        sqlite_with_rowid=False,
    )
    op.create_index("ix_memberships_subscriber_id", "memberships", ["subscriber_id"])


def downgrade() -> None:
    op.drop_table("memberships")
    op.drop_table("lists")
    op.drop_table("subscribers")
