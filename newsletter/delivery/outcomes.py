"""What a recipient's row of the ledger says, read with its batch: the one rule.

On SQLite every answer is written to each recipient's row, and ``send_recipients.status``
is the whole truth.

On PostgreSQL a batch claimed by the send's cursor (``claims``: the batch row holds its
seqs, the rows stay ``pending``) and accepted as a whole (a SendGrid request answered
2xx, the rest of a batch after its per-recipient outcomes) is recorded on the batch row
alone (revision 0021): status ``done``, its provider's message id, its time. Its rows
stay ``pending`` and are **sent**; nothing writes a million rows for a million messages
that had one answer per thousand. Every other answer is written row by row, as before.

The invariant that makes this exact, kept by every path that makes a row pending:

    a ``pending`` row at or behind its send's cursor, and not ``requeued``, was claimed
    by the cursor path: it is in an open batch (in flight, counted ``sending``) or in a
    batch accepted as a whole (``sent``).

The cursor claims *every* pending, not-requeued row of its seq range; a row made pending
behind it later (a retry, a released batch, a subject test's rest, a later wave) is
``requeued`` in the same statement (``requeue.reopen``, ``ledger.add_recipients``); the
database's skip triggers leave such rows alone (revision 0021), as the snapshot only adds
rows ahead of the cursor. So the readers below need no join with the batches, except to
tell in flight from sent (the few open batches of a send).

Every reader of a recipient's status goes through here: ``status_of`` (the status a
person should see), ``sent`` / ``claimable`` / ``unfinished`` (conditions) and
``status_counts`` (per send). Writers keep to ``claimable`` rows.
"""

from __future__ import annotations

from collections.abc import Iterable

import sqlalchemy as sa

from ..db.tables import send_batches, send_cursors, send_recipients

_r = send_recipients.c


def _postgresql(conn_or_dialect: sa.Connection | str) -> bool:
    name = conn_or_dialect if isinstance(conn_or_dialect, str) else conn_or_dialect.dialect.name
    return name == "postgresql"


#: one send's id, when the statement is about one send: its cursor is then read once
#: (an InitPlan) instead of once per row
Send = int | None


def _cursor_of(send_id: Send) -> sa.ColumnElement:
    """The cursor of the row's send, or of ``send_id`` (0 before its first claim)."""
    return sa.func.coalesce(
        sa.select(send_cursors.c.claimed_through)
        .where(send_cursors.c.send_id == (_r.send_id if send_id is None else send_id))
        .scalar_subquery(), 0)


def _behind(send_id: Send = None) -> sa.ColumnElement[bool]:
    """Pending, not requeued, at or behind the cursor: in flight or sent by its batch."""
    return sa.and_(_r.status == "pending", _r.requeued.is_(False),
                   _r.seq <= _cursor_of(send_id))


def _in_open_batch() -> sa.ColumnElement[bool]:
    """Within the seq range of an open cursor batch of the row's send (its seqs are
    sorted: the first and last bound it; the ranges of a send's batches are disjoint)."""
    b = send_batches.c
    return sa.exists().where(
        b.send_id == _r.send_id, b.status == "sending", b.seqs.is_not(None),
        _r.seq.between(b.seqs[1], b.seqs[sa.func.cardinality(b.seqs)]))


def sent(dialect: sa.Connection | str, send_id: Send = None) -> sa.ColumnElement[bool]:
    """Rows that are ``sent``."""
    if not _postgresql(dialect):
        return _r.status == "sent"
    return sa.or_(_r.status == "sent", sa.and_(_behind(send_id), ~_in_open_batch()))


def claimable(dialect: sa.Connection | str, send_id: Send = None
              ) -> sa.ColumnElement[bool]:
    """Rows pending and not in any batch: what the next claim may take, what a cancel
    skips, what a trigger may skip."""
    if not _postgresql(dialect):
        return _r.status == "pending"
    return sa.and_(_r.status == "pending",
                   sa.or_(_r.requeued.is_(True), _r.seq > _cursor_of(send_id)))


def in_flight(dialect: sa.Connection | str, send_id: Send = None
              ) -> sa.ColumnElement[bool]:
    """Rows in a batch whose backend call started (``sending``)."""
    if not _postgresql(dialect):
        return _r.status == "sending"
    return sa.or_(_r.status == "sending", sa.and_(_behind(send_id), _in_open_batch()))


UNFINISHED = ("pending", "sending", "held")


def unfinished_count(conn: sa.Connection, send_id: int) -> int:
    """How many of the send's rows have yet to go or are going: claimable, in flight, or
    held for a subject test's decision (one pass over the rows, as ``status_counts``)."""
    counts = status_counts(conn, [send_id])[send_id]
    return sum(counts.get(status, 0) for status in UNFINISHED)


def status_of(dialect: sa.Connection | str) -> sa.ColumnElement[str]:
    """The row's status as the ledger means it, labelled ``status``."""
    if not _postgresql(dialect):
        return _r.status.label("status")
    return sa.case(
        (sa.and_(_behind(), _in_open_batch()), sa.literal("sending")),
        (_behind(), sa.literal("sent")),
        else_=_r.status).label("status")


def attempts_of(dialect: sa.Connection | str) -> sa.ColumnElement[int]:
    """The row's attempts, counting the one its batch's answer stands for."""
    if not _postgresql(dialect):
        return _r.attempts.label("attempts")
    return (_r.attempts + sa.case((sa.and_(_behind(), ~_in_open_batch()), 1), else_=0)
            ).label("attempts")


def _from_batch(column: sa.Column, dialect: sa.Connection | str) -> sa.ColumnElement:
    """The row's ``column``, or for a row sent by its batch the batch's (its answer's
    time, its provider id), labelled as the column."""
    if not _postgresql(dialect):
        return column.label(column.name)
    b = send_batches.c
    of_batch = (sa.select(b[column.name if column.name != "updated_at" else "finished_at"])
                .where(b.send_id == _r.send_id, b.status == "done", b.seqs.is_not(None),
                       _r.seq.between(b.seqs[1], b.seqs[sa.func.cardinality(b.seqs)]))
                .limit(1).scalar_subquery())
    return sa.case((sa.and_(_behind(), ~_in_open_batch()), of_batch),
                   else_=column).label(column.name)


def updated_at_of(dialect: sa.Connection | str) -> sa.ColumnElement:
    """When the row last changed: for a row sent by its batch, the batch's answer."""
    return _from_batch(_r.updated_at, dialect)


def with_status(dialect: sa.Connection | str) -> list[sa.ColumnElement]:
    """Every column of ``send_recipients`` as the ledger means it: ``status``,
    ``attempts``, ``provider_id`` and ``updated_at`` of a row sent by its batch."""
    special = {"status": status_of(dialect), "attempts": attempts_of(dialect),
               "provider_id": _from_batch(_r.provider_id, dialect),
               "updated_at": updated_at_of(dialect)}
    return [special.get(c.name, c) for c in send_recipients.columns]


def status_counts(conn: sa.Connection, send_ids: Iterable[int]) -> dict[int, dict[str, int]]:
    """Recipients per status of each send: one pass over their rows, plus (PostgreSQL)
    one over the rows of their open batches. Call it inside one snapshot (the ledger's
    ``transaction(..., snapshot=True)``) so that both passes see the same claims."""
    ids = list(send_ids)
    counts: dict[int, dict[str, int]] = {i: {} for i in ids}
    if not ids:
        return counts
    if not _postgresql(conn):
        for send_id, status, n in conn.execute(
                sa.select(_r.send_id, _r.status, sa.func.count())
                .where(_r.send_id.in_(ids)).group_by(_r.send_id, _r.status)):
            counts[send_id][status] = n
        return counts
    c = send_cursors.c
    behind = sa.and_(_r.status == "pending", _r.requeued.is_(False),
                     _r.seq <= sa.func.coalesce(c.claimed_through, 0))
    status = sa.case((behind, sa.literal("sent")), else_=_r.status)
    for send_id, name, n in conn.execute(
            sa.select(_r.send_id, status, sa.func.count())
            .select_from(send_recipients.outerjoin(send_cursors, c.send_id == _r.send_id))
            .where(_r.send_id.in_(ids)).group_by(_r.send_id, status)):
        counts[send_id][name] = n
    _count_in_flight(conn, counts)
    return counts


def _count_in_flight(conn: sa.Connection, counts: dict[int, dict[str, int]]) -> None:
    """Move the rows of open cursor batches to ``sending``: pending ones (counted
    ``sent`` by the first pass) and those a trigger skipped while in flight (revisions
    before 0021 did; the batch's answer decides what they become)."""
    found = conn.execute(sa.text("""
SELECT b.send_id, r.status, count(*) FROM send_batches AS b
CROSS JOIN LATERAL unnest(b.seqs) AS s(seq)
JOIN send_recipients AS r ON r.send_id = b.send_id AND r.seq = s.seq
WHERE b.send_id = ANY(:sends) AND b.status = 'sending' AND b.seqs IS NOT NULL
  AND r.status IN ('pending', 'skipped') AND NOT r.requeued
GROUP BY b.send_id, r.status"""), {"sends": list(counts)}).all()
    for send_id, status, n in found:
        mine = counts[send_id]
        was = "sent" if status == "pending" else status
        mine[was] -= n
        if not mine[was]:
            del mine[was]
        mine["sending"] = mine.get("sending", 0) + n
