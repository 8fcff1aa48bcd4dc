"""The delivery ledger: sends, per-recipient records, batches and workers.

Revision ID: 0002_delivery_ledger
Revises: 0001_subscribers_and_lists
Create Date: 2026-11-25
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0002_delivery_ledger"
down_revision = "0001_subscribers_and_lists"
branch_labels = None
depends_on = None

ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
Stamp = sa.DateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "sends",
        sa.Column("id", ID, primary_key=True, autoincrement=True),
        sa.Column("kind", sa.String(8), nullable=False),
        sa.Column("issue_path", sa.Text(), nullable=False),
        sa.Column("issue_slug", sa.String(200), nullable=False),
        sa.Column("subject", sa.Text(), nullable=False),
        sa.Column("list_id", ID, nullable=True),
        sa.Column("list_name", sa.String(100), nullable=False),
        sa.Column("backend", sa.String(20), nullable=False),
        sa.Column("status", sa.String(12), nullable=False),
        sa.Column("html", sa.Text(), nullable=False),
        sa.Column("text", sa.Text(), nullable=False),
        sa.Column("total", sa.Integer(), nullable=False),
        sa.Column("created_at", Stamp, nullable=False),
        sa.Column("finished_at", Stamp, nullable=True),
        sa.PrimaryKeyConstraint("id", name="pk_sends"),
        sa.ForeignKeyConstraint(
            ["list_id"], ["lists.id"], ondelete="SET NULL", name="fk_sends_list_id_lists"
        ),
        sa.CheckConstraint("kind IN ('real', 'test')", name="ck_sends_kind"),
        sa.CheckConstraint(
            "status IN ('sending', 'finished', 'cancelled')", name="ck_sends_status"
        ),
        sqlite_autoincrement=True,
    )
    op.create_index("ix_sends_issue_slug_list_id_kind", "sends", ["issue_slug", "list_id", "kind"])
    op.create_index(
        "uq_sends_unfinished",
        "sends",
        ["issue_slug", "list_id"],
        unique=True,
        sqlite_where=sa.text("kind = 'real' AND status = 'sending'"),
        postgresql_where=sa.text("kind = 'real' AND status = 'sending'"),
    )
    op.create_table(
        "send_recipients",
        sa.Column("send_id", ID, nullable=False),
        sa.Column("seq", ID, nullable=False),
        sa.Column("subscriber_id", ID, nullable=True),
        sa.Column("email", sa.String(320), nullable=False),
        sa.Column("name", sa.Text(), nullable=True),
        sa.Column("status", sa.String(10), nullable=False),
        sa.Column("batch_id", ID, nullable=True),
        sa.Column("attempts", sa.Integer(), nullable=False, server_default="0"),
        sa.Column("reason", sa.Text(), nullable=True),
        sa.Column("provider_id", sa.String(200), nullable=True),
        sa.Column("updated_at", Stamp, nullable=True),
        sa.PrimaryKeyConstraint("send_id", "seq", name="pk_send_recipients"),
        sa.ForeignKeyConstraint(
            ["send_id"], ["sends.id"], ondelete="CASCADE", name="fk_send_recipients_send_id_sends"
        ),
    )
    # only pending rows are indexed: later status changes touch no index
    op.create_index(
        "ix_send_recipients_pending",
        "send_recipients",
        ["send_id", "seq"],
        sqlite_where=sa.text("status = 'pending'"),
        postgresql_where=sa.text("status = 'pending'"),
    )
    op.create_table(
        "send_batches",
        sa.Column("id", ID, primary_key=True, autoincrement=True),
        sa.Column("send_id", ID, nullable=False),
        sa.Column("worker_id", sa.String(40), nullable=False),
        sa.Column("status", sa.String(10), nullable=False),
        sa.Column("size", sa.Integer(), nullable=False),
        sa.Column("claimed_at", Stamp, nullable=False),
        sa.Column("finished_at", Stamp, nullable=True),
        sa.PrimaryKeyConstraint("id", name="pk_send_batches"),
        sa.ForeignKeyConstraint(
            ["send_id"], ["sends.id"], ondelete="CASCADE", name="fk_send_batches_send_id_sends"
        ),
        sqlite_autoincrement=True,
    )
    op.create_index("ix_send_batches_send_id_status", "send_batches", ["send_id", "status"])
    op.create_table(
        "send_workers",
        sa.Column("id", sa.String(40), nullable=False),
        sa.Column("send_id", ID, nullable=False),
        sa.Column("host", sa.String(255), nullable=False),
        sa.Column("pid", sa.Integer(), nullable=False),
        sa.Column("started_at", Stamp, nullable=False),
        sa.Column("heartbeat_at", Stamp, nullable=False),
        sa.Column("stopped_at", Stamp, nullable=True),
        sa.PrimaryKeyConstraint("id", name="pk_send_workers"),
        sa.ForeignKeyConstraint(
            ["send_id"], ["sends.id"], ondelete="CASCADE", name="fk_send_workers_send_id_sends"
        ),
    )


def downgrade() -> None:
    op.drop_table("send_workers")
    op.drop_table("send_batches")
    op.drop_index("ix_send_recipients_pending", "send_recipients")
    op.drop_table("send_recipients")
    op.drop_index("uq_sends_unfinished", "sends")
    op.drop_index("ix_sends_issue_slug_list_id_kind", "sends")
    op.drop_table("sends")
