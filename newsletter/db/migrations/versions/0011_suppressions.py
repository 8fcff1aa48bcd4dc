"""One suppression list, and the bounce mailbox's claims and soft bounces.

``suppressions``: addresses refused for every list and every backend (bounced,
complained, unsubscribed at a provider, or suppressed by hand), keyed by the lower-cased
address like ``subscribers.email_key``. ``bounce_messages``: each bounce report read from
the mailbox, claimed once by its Message-ID. ``soft_bounces``: temporary failures, counted
per address within ``soft_bounce_days``.

A new suppression skips the address's pending rows in unfinished real sends at once,
like an unsubscribe does (migration 0004): triggers on SQLite and PostgreSQL. The rule
is the one in ``newsletter/audience/receiving.py``; ``tests/test_receiving.py`` checks
that the triggers agree with it.

Revision ID: 0011_suppressions
Revises: 0010_pause_and_welcome
Create Date: 2026-11-27
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0011_suppressions"
down_revision = "0010_pause_and_welcome"
branch_labels = None
depends_on = None

ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
Stamp = sa.DateTime(timezone=True)
EmailKey = sa.String(320).with_variant(sa.String(320, collation="C"), "postgresql")
SQLITE_NOW = "strftime('%Y-%m-%d %H:%M:%S', 'now') || substr(strftime('%f', 'now'), 3) || '000'"


def _skip(now: str) -> str:
    return f"""
    UPDATE send_recipients SET status = 'skipped', updated_at = {now}, reason = 'suppressed'
    WHERE status = 'pending'
      AND seq IN (SELECT id FROM subscribers WHERE email_key = NEW.email_key)
      AND send_id IN (SELECT id FROM sends WHERE status = 'sending'
                      AND kind IN ('real', 'welcome'))"""


def upgrade() -> None:
    op.create_table(
        "suppressions",
        sa.Column("email_key", EmailKey, nullable=False),
        sa.Column("reason", sa.String(16), nullable=False),
        sa.Column("source", sa.String(40), nullable=False),
        sa.Column("detail", sa.Text(), nullable=True),
        sa.Column("created_at", Stamp, nullable=False),
        sa.PrimaryKeyConstraint("email_key", name="pk_suppressions"),
        sa.CheckConstraint("reason IN ('bounced', 'complained', 'unsubscribed', 'manual')",
                           name="reason"),
    )
    op.create_table(
        "bounce_messages",
        sa.Column("message_key", sa.String(200), nullable=False),
        sa.Column("outcome", sa.String(16), nullable=False),
        sa.Column("email_key", EmailKey, nullable=True),
        sa.Column("processed_at", Stamp, nullable=False),
        sa.PrimaryKeyConstraint("message_key", name="pk_bounce_messages"),
    )
    op.create_table(
        "soft_bounces",
        sa.Column("id", ID, autoincrement=True, nullable=False),
        sa.Column("email_key", EmailKey, nullable=False),
        sa.Column("send_id", ID, nullable=True),
        sa.Column("status", sa.String(16), nullable=True),
        sa.Column("bounced_at", Stamp, nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_soft_bounces"),
        sqlite_autoincrement=True,
    )
    op.create_index("ix_soft_bounces_email_key_bounced_at", "soft_bounces",
                    ["email_key", "bounced_at"])
    if op.get_bind().dialect.name == "sqlite":
        op.execute(f"""
CREATE TRIGGER tr_suppressions_skip AFTER INSERT ON suppressions
BEGIN {_skip(SQLITE_NOW)}; END""")
    else:
        op.execute(f"""
CREATE FUNCTION nl_suppression_skip() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN {_skip("now()")}; RETURN NULL; END $$""")
        op.execute("""
CREATE TRIGGER tr_suppressions_skip AFTER INSERT ON suppressions
FOR EACH ROW EXECUTE FUNCTION nl_suppression_skip()""")


def downgrade() -> None:
    if op.get_bind().dialect.name == "sqlite":
        op.execute("DROP TRIGGER IF EXISTS tr_suppressions_skip")
    else:
        op.execute("DROP TRIGGER IF EXISTS tr_suppressions_skip ON suppressions")
        op.execute("DROP FUNCTION IF EXISTS nl_suppression_skip()")
    op.drop_index("ix_soft_bounces_email_key_bounced_at", table_name="soft_bounces")
    op.drop_table("soft_bounces")
    op.drop_table("bounce_messages")
    op.drop_table("suppressions")
