"""Skip a pending recipient the moment the subscriber stops being sendable.

A subscriber who unsubscribes (from the list or from everything), bounces or complains
while a send is under way must not get its message. The sends used to check every
recipient again when claiming its batch: a join per recipient, a fifth of the ledger's
work for a million recipients. These triggers do it once, when the status changes,
whatever changes it (the unsubscribe page, the webhook, the CLI, an import, a hand edit):
the subscriber's pending rows in unfinished real sends (of that list, for a membership)
become ``skipped``. A membership row deleted (or cascaded from a deleted subscriber or
list) counts as leaving the list.

The rule these triggers state (and CATCH_UP below) is the one defined in
``newsletter/store/receiving.py``: exists, globally ``active``, membership ``subscribed``.
A migration is frozen in time, so it is written out here; ``tests/test_receiving.py``
checks on SQLite and PostgreSQL that the triggers and ``receiving`` agree on every
status and membership combination. Changing the rule means a new migration for them.

This revision also joins the two branches of revision 0003.

Revision ID: 0004_skip_unsendable
Revises: 0003_events_archive, 0003_schedules
Create Date: 2026-11-25
"""

from __future__ import annotations

from alembic import op

revision = "0004_skip_unsendable"
down_revision = ("0003_events_archive", "0003_schedules")
branch_labels = None
depends_on = None

REASON = "unsubscribed, bounced or complained before sending"
# SQLite: the text form SQLAlchemy stores and reads back for a DateTime
SQLITE_NOW = "strftime('%Y-%m-%d %H:%M:%S', 'now') || substr(strftime('%f', 'now'), 3) || '000'"


def _skip(seq: str, sends_where: str, now: str) -> str:
    return f"""
    UPDATE send_recipients SET status = 'skipped', updated_at = {now}, reason = '{REASON}'
    WHERE status = 'pending' AND seq = {seq} AND send_id IN (
        SELECT id FROM sends WHERE status = 'sending' AND kind = 'real'{sends_where})"""


SUBSCRIBER = ("NEW.id", "")
MEMBERSHIP_CHANGED = ("NEW.subscriber_id", " AND list_id = NEW.list_id")
MEMBERSHIP_REMOVED = ("OLD.subscriber_id", " AND list_id = OLD.list_id")

# rows already pending for subscribers no longer sendable (a send under way while the
# database is upgraded): what the claim used to check
CATCH_UP = f"""
UPDATE send_recipients SET status = 'skipped', reason = '{REASON}'
WHERE status = 'pending' AND send_id IN (
    SELECT id FROM sends WHERE status = 'sending' AND kind = 'real')
AND NOT EXISTS (
    SELECT 1 FROM sends d JOIN memberships m ON m.list_id = d.list_id
    JOIN subscribers s ON s.id = m.subscriber_id
    WHERE d.id = send_recipients.send_id AND m.subscriber_id = send_recipients.subscriber_id
      AND m.status = 'subscribed' AND s.status = 'active')
"""


def upgrade() -> None:
    if op.get_bind().dialect.name == "sqlite":
        op.execute(f"""
CREATE TRIGGER tr_subscribers_unsendable AFTER UPDATE OF status ON subscribers
WHEN NEW.status != 'active'
BEGIN {_skip(*SUBSCRIBER, SQLITE_NOW)}; END""")
        op.execute(f"""
CREATE TRIGGER tr_memberships_unsendable AFTER UPDATE OF status ON memberships
WHEN NEW.status != 'subscribed'
BEGIN {_skip(*MEMBERSHIP_CHANGED, SQLITE_NOW)}; END""")
        op.execute(f"""
CREATE TRIGGER tr_memberships_removed AFTER DELETE ON memberships
BEGIN {_skip(*MEMBERSHIP_REMOVED, SQLITE_NOW)}; END""")
    else:
        op.execute(f"""
CREATE FUNCTION nl_subscriber_unsendable() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN {_skip(*SUBSCRIBER, "now()")}; RETURN NULL; END $$""")
        op.execute(f"""
CREATE FUNCTION nl_membership_unsendable() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN {_skip(*MEMBERSHIP_CHANGED, "now()")}; RETURN NULL; END $$""")
        op.execute(f"""
CREATE FUNCTION nl_membership_removed() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN {_skip(*MEMBERSHIP_REMOVED, "now()")}; RETURN NULL; END $$""")
        op.execute("""
CREATE TRIGGER tr_subscribers_unsendable AFTER UPDATE OF status ON subscribers
FOR EACH ROW WHEN (NEW.status != 'active') EXECUTE FUNCTION nl_subscriber_unsendable()""")
        op.execute("""
CREATE TRIGGER tr_memberships_unsendable AFTER UPDATE OF status ON memberships
FOR EACH ROW WHEN (NEW.status != 'subscribed') EXECUTE FUNCTION nl_membership_unsendable()""")
        op.execute("""
CREATE TRIGGER tr_memberships_removed AFTER DELETE ON memberships
FOR EACH ROW EXECUTE FUNCTION nl_membership_removed()""")
    op.execute(CATCH_UP)


def downgrade() -> None:
    for name, table in (("tr_subscribers_unsendable", "subscribers"),
                        ("tr_memberships_unsendable", "memberships"),
                        ("tr_memberships_removed", "memberships")):
        if op.get_bind().dialect.name == "sqlite":
            op.execute(f"DROP TRIGGER IF EXISTS {name}")
        else:
            op.execute(f"DROP TRIGGER IF EXISTS {name} ON {table}")
    if op.get_bind().dialect.name != "sqlite":
        for function in ("nl_subscriber_unsendable", "nl_membership_unsendable",
                         "nl_membership_removed"):
            op.execute(f"DROP FUNCTION IF EXISTS {function}()")
