"""Webhook events, engagement counters per send and recipient, and the web archive.

Revision ID: 0003_events_archive
Revises: 0002_delivery_ledger
Create Date: 2026-11-25
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0003_events_archive"
down_revision = "0002_delivery_ledger"
branch_labels = None
depends_on = None

ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
Stamp = sa.DateTime(timezone=True)
COUNTERS = ("delivered", "opens", "clicks", "deferred", "dropped", "bounced", "complained",
            "unsubscribed")


def upgrade() -> None:
    op.create_table(
        "webhook_events",
        sa.Column("sg_event_id", sa.String(200), nullable=False),
        sa.Column("kind", sa.String(40), nullable=False),
        sa.Column("send_id", ID, nullable=True),
        sa.Column("subscriber_id", ID, nullable=True),
        sa.Column("email", sa.String(320), nullable=False),
        sa.Column("effect", sa.String(16), nullable=False),
        sa.Column("reason", sa.Text(), nullable=True),
        sa.Column("url", sa.Text(), nullable=True),
        sa.Column("occurred_at", Stamp, nullable=True),
        sa.Column("received_at", Stamp, nullable=False),
        sa.PrimaryKeyConstraint("sg_event_id", name="pk_webhook_events"),
    )
    op.create_table(
        "webhook_requests",
        sa.Column("digest", sa.String(64), nullable=False),
        sa.Column("received_at", Stamp, nullable=False),
        sa.PrimaryKeyConstraint("digest", name="pk_webhook_requests"),
    )
    op.create_index("ix_webhook_requests_received_at", "webhook_requests", ["received_at"])
    op.create_table(
        "send_event_counts",
        sa.Column("send_id", ID, nullable=False),
        sa.Column("kind", sa.String(40), nullable=False),
        sa.Column("events", sa.Integer(), nullable=False),
        sa.PrimaryKeyConstraint("send_id", "kind", name="pk_send_event_counts"),
        sa.ForeignKeyConstraint(["send_id"], ["sends.id"], ondelete="CASCADE",
                                name="fk_send_event_counts_send_id_sends"),
    )
    op.create_table(
        "send_recipient_events",
        sa.Column("send_id", ID, nullable=False),
        sa.Column("email", sa.String(320), nullable=False),
        sa.Column("subscriber_id", ID, nullable=True),
        *(sa.Column(name, sa.Integer(), nullable=False, server_default="0")
          for name in COUNTERS),
        sa.Column("last_event_at", Stamp, nullable=True),
        sa.PrimaryKeyConstraint("send_id", "email", name="pk_send_recipient_events"),
        sa.ForeignKeyConstraint(["send_id"], ["sends.id"], ondelete="CASCADE",
                                name="fk_send_recipient_events_send_id_sends"),
    )
    op.create_table(
        "archive_issues",
        sa.Column("slug", sa.String(200), nullable=False),
        sa.Column("issue_date", sa.Date(), nullable=False),
        sa.Column("subject", sa.Text(), nullable=False),
        sa.Column("preheader", sa.Text(), nullable=True),
        sa.Column("html", sa.Text(), nullable=False),
        sa.Column("text", sa.Text(), nullable=False),
        sa.Column("published_at", Stamp, nullable=False),
        sa.Column("updated_at", Stamp, nullable=False),
        sa.PrimaryKeyConstraint("slug", name="pk_archive_issues"),
    )
    op.create_index("ix_archive_issues_issue_date", "archive_issues", ["issue_date"])


def downgrade() -> None:
    op.drop_index("ix_archive_issues_issue_date", "archive_issues")
    op.drop_table("archive_issues")
    op.drop_table("send_recipient_events")
    op.drop_table("send_event_counts")
    op.drop_index("ix_webhook_requests_received_at", "webhook_requests")
    op.drop_table("webhook_requests")
    op.drop_table("webhook_events")
