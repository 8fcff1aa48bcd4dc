"""Making a send's recipients pending again, asking first whether they may still receive.

A recipient's row becomes ``pending`` again when it is retried: ``--retry-failed``,
``--resend-uncertain``, a temporary failure retried within a run, a batch released
because the backend was unavailable. The database's triggers only skip rows that are
*pending* when a subscriber changes; a row that was ``temporary``, ``uncertain`` or
``sending`` at that moment was left alone. So each of these paths asks the rule
(``audience.receiving.refusal``) at the moment it would make a row pending: a recipient who
may no longer receive (unsubscribed, bounced, complained, paused, suppressed, off the
list, erased) becomes
``skipped`` with that reason instead; the others become ``pending``.

On PostgreSQL a row the send's claim cursor has passed (``claims``) is flagged
``requeued``, for the claims' second path; the cursor is locked first, so that no claim
moves past a row while it is being made pending.

On PostgreSQL the statement first takes a share lock on the subscribers and memberships
of those rows, so a concurrent unsubscribe either commits before (and is seen) or waits
until the rows are pending (and its trigger skips them). On SQLite the transaction holds
the database's write lock, which orders everything anyway.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from typing import NamedTuple

import sqlalchemy as sa

from ..audience.receiving import refusal, suppression_of
from ..db.tables import memberships, send_recipients, sends, subscribers
from ..db.transactions import utcnow
from .claims import lock_cursor

#: kinds of send whose recipients are subscribers (``seq`` is the subscriber id)
SUBSCRIBER_KINDS = ("real", "welcome")


class Requeued(NamedTuple):
    """What a requeue did: rows made pending, and rows skipped per reason."""

    pending: int
    skipped: dict[str, int]

    @property
    def skipped_total(self) -> int:
        return sum(self.skipped.values())

    def skipped_line(self) -> str:
        """``3 skipped (2 unsubscribed, 1 erased)``, or an empty string."""
        if not self.skipped:
            return ""
        parts = ", ".join(f"{n:,} {reason}" for reason, n in sorted(self.skipped.items()))
        return f"{self.skipped_total:,} skipped, no longer receiving ({parts})"


def reopen(conn: sa.Connection, send_id: int, where: Sequence[sa.ColumnElement[bool]]
           ) -> Requeued:
    """Rows of ``send_id`` matching ``where`` become pending, or skipped with the reason
    the rule gives; inside the caller's transaction. Test sends (editors' addresses, no
    subscriber) are only made pending."""
    r = send_recipients
    row = conn.execute(sa.select(sends.c.kind, sends.c.list_id).where(sends.c.id == send_id)
                       ).first()
    now = utcnow()
    skipped: dict[str, int] = {}
    if row is not None and row.kind in SUBSCRIBER_KINDS:
        _lock_subscribers(conn, row.list_id, where)
        why = refusal(
            sa.select(subscribers.c.status)
            .where(subscribers.c.id == r.c.subscriber_id).scalar_subquery(),
            sa.select(memberships.c.status)
            .where(memberships.c.list_id == row.list_id,
                   memberships.c.subscriber_id == r.c.subscriber_id).scalar_subquery(),
            suppression_of(r.c.subscriber_id),
            paused_until=sa.select(subscribers.c.paused_until)
            .where(subscribers.c.id == r.c.subscriber_id).scalar_subquery(),
        )
        skipped = dict(Counter(conn.execute(
            r.update().where(*where, why.is_not(None))
            .values(status="skipped", reason=why, updated_at=now).returning(r.c.reason)
        ).scalars()))
    behind = lock_cursor(conn, send_id)  # PostgreSQL: rows the cursor has passed
    again = {} if behind is None else {"requeued": r.c.seq <= behind}
    pending = conn.execute(r.update().where(*where).values(status="pending", batch_id=None,
                                                            updated_at=now, **again)
                           ).rowcount
    return Requeued(pending, skipped)


def _lock_subscribers(conn: sa.Connection, list_id: int | None,
                      where: Sequence[sa.ColumnElement[bool]]) -> None:
    """PostgreSQL: share-lock the rows' subscribers and memberships until commit."""
    if conn.dialect.name != "postgresql":
        return
    ids = sa.select(send_recipients.c.subscriber_id).where(*where)
    conn.execute(sa.select(subscribers.c.id).where(subscribers.c.id.in_(ids))
                 .order_by(subscribers.c.id).with_for_update(read=True)).all()
    if list_id is not None:
        conn.execute(sa.select(memberships.c.subscriber_id)
                     .where(memberships.c.list_id == list_id,
                            memberships.c.subscriber_id.in_(ids))
                     .order_by(memberships.c.subscriber_id).with_for_update(read=True)).all()
