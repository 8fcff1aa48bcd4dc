"""Sign-ups with double opt-in: pending subscriptions with their consent records, and
the counters of the sign-up rate limits (shared by every `newsletter serve` process).

Revision ID: 0009_signups
Revises: 0008_worker_journal
Create Date: 2026-11-30
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0009_signups"
down_revision = "0008_worker_journal"
branch_labels = None
depends_on = None

ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
Stamp = sa.DateTime(timezone=True)
EmailKey = sa.String(320).with_variant(sa.String(320, collation="C"), "postgresql")


def upgrade() -> None:
    op.create_table(
        "signups",
        sa.Column("id", ID, primary_key=True, autoincrement=True),
        sa.Column("email", sa.String(320), nullable=False),
        sa.Column("email_key", EmailKey, nullable=False),
        sa.Column("name", sa.Text(), nullable=True),
        sa.Column("list_id", ID, nullable=False),
        sa.Column("status", sa.String(10), nullable=False),
        sa.Column("round", sa.Integer(), nullable=False),
        sa.Column("source", sa.String(10), nullable=False),
        sa.Column("consent_text", sa.Text(), nullable=False),
        sa.Column("consent_version", sa.String(40), nullable=False),
        sa.Column("ip_hash", sa.String(64), nullable=True),
        sa.Column("requested_at", Stamp, nullable=False),
        sa.Column("confirmed_at", Stamp, nullable=True),
        sa.Column("mailed_at", Stamp, nullable=True),
        sa.ForeignKeyConstraint(["list_id"], ["lists.id"], ondelete="CASCADE",
                                name="fk_signups_list_id_lists"),
        sa.PrimaryKeyConstraint("id", name="pk_signups"),
        sa.UniqueConstraint("email_key", "list_id", name="uq_signups_email_key_list_id"),
        sa.CheckConstraint("status IN ('pending', 'confirmed', 'cancelled')",
                           name=op.f("ck_signups_status")),
        sa.CheckConstraint("source IN ('form', 'api')", name=op.f("ck_signups_source")),
        sqlite_autoincrement=True,
    )
    op.create_table(
        "rate_limits",
        sa.Column("key", sa.String(80), nullable=False),
        sa.Column("window", sa.BigInteger(), nullable=False),
        sa.Column("hits", sa.Integer(), nullable=False),
        sa.PrimaryKeyConstraint("key", "window", name="pk_rate_limits"),
    )
    op.create_index("ix_rate_limits_window", "rate_limits", ["window"])


def downgrade() -> None:
    op.drop_index("ix_rate_limits_window", table_name="rate_limits")
    op.drop_table("rate_limits")
    op.drop_table("signups")
