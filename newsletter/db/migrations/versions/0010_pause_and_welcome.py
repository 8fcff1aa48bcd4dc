"""Pausing subscribers, and welcome emails as sends of their own kind.

- ``subscribers.paused_until``: the preference centre's "pause for 1, 2 or 4 weeks"; the
  rule of who may receive (``newsletter/audience/receiving.py``) refuses a subscriber
  whose pause has not ended yet (reason ``paused``). Nothing resumes them: the moment
  passes.
- ``subscribers.welcomed_at``: when their welcome email entered the ledger
  (``newsletter/audience/welcome.py``), set in the same transaction, so a subscriber is
  welcomed at most once whoever asks and however often.
- ``sends.kind`` may be ``welcome``: a welcome send is a ledger send like a real one
  (``seq`` is the subscriber id), so the progress journal, ``reconcile`` and
  ``--resume`` make it exactly once across a crash.

The triggers of revision 0004 now also skip pending rows of unfinished welcome sends, and
a new one skips a subscriber's pending rows when they pause (``paused_until`` set to a
moment still to come). The rule they state, written out here because a migration is
frozen in time: exists, globally ``active``, not paused, membership ``subscribed``;
``tests/test_receiving.py`` checks that they and ``receiving`` agree.

The CHECK constraint ``ck_sends_kind`` is replaced on PostgreSQL; on SQLite its text is
edited in the stored ``CREATE TABLE`` (rebuilding ``sends`` would cascade-delete its
recipients), as revision 0007 does and for the same reasons.

Revision ID: 0010_pause_and_welcome
Revises: 0009_signups
Create Date: 2026-11-30
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0010_pause_and_welcome"
down_revision = "0009_signups"
branch_labels = None
depends_on = None

REASON = "unsubscribed, bounced or complained before sending"
PAUSED = "paused"
SQLITE_NOW = "strftime('%Y-%m-%d %H:%M:%S', 'now') || substr(strftime('%f', 'now'), 3) || '000'"
KINDS_BEFORE = "kind IN ('real', 'test')"
KINDS_AFTER = "kind IN ('real', 'test', 'welcome')"


def _skip(seq: str, sends_where: str, now: str, kinds: str, reason: str = REASON) -> str:
    return f"""
    UPDATE send_recipients SET status = 'skipped', updated_at = {now}, reason = '{reason}'
    WHERE status = 'pending' AND seq = {seq} AND send_id IN (
        SELECT id FROM sends WHERE status = 'sending' AND kind IN ({kinds}){sends_where})"""


# (trigger, PostgreSQL function, table, event, SQLite WHEN, PostgreSQL WHEN, seq, sends_where)
TRIGGERS = (
    ("tr_subscribers_unsendable", "nl_subscriber_unsendable", "subscribers",
     "UPDATE OF status", "NEW.status != 'active'", "NEW.status != 'active'", "NEW.id", ""),
    ("tr_memberships_unsendable", "nl_membership_unsendable", "memberships",
     "UPDATE OF status", "NEW.status != 'subscribed'", "NEW.status != 'subscribed'",
     "NEW.subscriber_id", " AND list_id = NEW.list_id"),
    ("tr_memberships_removed", "nl_membership_removed", "memberships", "DELETE", None, None,
     "OLD.subscriber_id", " AND list_id = OLD.list_id"),
)
PAUSE = ("tr_subscribers_paused", "nl_subscriber_paused", "subscribers",
         "UPDATE OF paused_until", f"NEW.paused_until > {SQLITE_NOW}",
         "NEW.paused_until > now()", "NEW.id", "")


def _create(trigger: tuple, kinds: str, reason: str, sqlite: bool) -> None:
    name, function, table, event, when_lite, when_pg, seq, where = trigger
    if sqlite:
        when = f" WHEN {when_lite}" if when_lite else ""
        op.execute(f"CREATE TRIGGER {name} AFTER {event} ON {table}{when} "
                   f"BEGIN {_skip(seq, where, SQLITE_NOW, kinds, reason)}; END")
        return
    op.execute(f"CREATE OR REPLACE FUNCTION {function}() RETURNS trigger LANGUAGE plpgsql AS $$ "
               f"BEGIN {_skip(seq, where, 'now()', kinds, reason)}; RETURN NULL; END $$")
    when = f" WHEN ({when_pg})" if when_pg else ""
    op.execute(f"DROP TRIGGER IF EXISTS {name} ON {table}")
    op.execute(f"CREATE TRIGGER {name} AFTER {event} ON {table} FOR EACH ROW{when} "
               f"EXECUTE FUNCTION {function}()")


def _drop(trigger: tuple, sqlite: bool, function: bool) -> None:
    name, func, table = trigger[:3]
    op.execute(f"DROP TRIGGER IF EXISTS {name}" + ("" if sqlite else f" ON {table}"))
    if function and not sqlite:
        op.execute(f"DROP FUNCTION IF EXISTS {func}()")


def _kind_check(before: str, after: str) -> None:
    conn = op.get_bind()
    if conn.dialect.name == "postgresql":
        op.execute("ALTER TABLE sends DROP CONSTRAINT ck_sends_kind")
        op.execute(f"ALTER TABLE sends ADD CONSTRAINT ck_sends_kind CHECK ({after})")
        return
    sql = conn.execute(sa.text("SELECT sql FROM sqlite_master WHERE type = 'table' "
                               "AND name = 'sends'")).scalar()
    if sql is None or before not in sql:
        return
    version = conn.exec_driver_sql("PRAGMA schema_version").scalar()
    conn.exec_driver_sql("PRAGMA writable_schema = ON")
    try:
        conn.execute(sa.text("UPDATE sqlite_master SET sql = :sql WHERE type = 'table' "
                             "AND name = 'sends'"), {"sql": sql.replace(before, after)})
        conn.exec_driver_sql(f"PRAGMA schema_version = {int(version) + 1}")
    finally:
        conn.exec_driver_sql("PRAGMA writable_schema = OFF")


def upgrade() -> None:
    sqlite = op.get_bind().dialect.name == "sqlite"
    op.add_column("subscribers", sa.Column("paused_until", sa.DateTime(timezone=True),
                                           nullable=True))
    op.add_column("subscribers", sa.Column("welcomed_at", sa.DateTime(timezone=True),
                                           nullable=True))
    _kind_check(KINDS_BEFORE, KINDS_AFTER)
    for trigger in TRIGGERS:
        if sqlite:
            _drop(trigger, sqlite, function=False)
        _create(trigger, "'real', 'welcome'", REASON, sqlite)
    _create(PAUSE, "'real', 'welcome'", PAUSED, sqlite)


def downgrade() -> None:
    sqlite = op.get_bind().dialect.name == "sqlite"
    _drop(PAUSE, sqlite, function=True)
    for trigger in TRIGGERS:
        if sqlite:
            _drop(trigger, sqlite, function=False)
        _create(trigger, "'real'", REASON, sqlite)
    op.execute("DELETE FROM sends WHERE kind = 'welcome'")
    _kind_check(KINDS_AFTER, KINDS_BEFORE)
    # ALTER TABLE ... DROP COLUMN (SQLite 3.35+): rebuilding the table would drop the
    # triggers on it and cascade-delete its memberships
    op.drop_column("subscribers", "welcomed_at")
    op.drop_column("subscribers", "paused_until")
