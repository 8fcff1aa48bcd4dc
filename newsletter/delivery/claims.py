"""Claiming batches of a send's recipients and recording the backend's answers.

The hot path of every send (see ``ledger`` for the states a recipient goes through):
one transaction claims a batch before the backend is called (``claim_batch``), another
records its answer (``record_batch``), or both at once (``record_and_claim``).
``release_batch`` hands back a batch the backend took none of.

SQLite marks the claimed rows ``sending``. PostgreSQL claims by seq range from the send's
cursor (``send_cursors``) and leaves the rows pending, their seqs in the batch row
(migration 0017): a pending row of an open batch is ``sending``, and a batch accepted as a
whole is recorded on its batch row alone, its rows pending and ``sent`` (revision 0021;
``outcomes`` reads them so). Other answers are written row by row; ``batch_rows`` finds a
batch's rows in flight either way. Rows made pending again behind the cursor are
``requeued`` and claimed by a second path, marked ``sending`` as on SQLite.
"""

from __future__ import annotations

import datetime as dt
import re
import threading
import weakref
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from itertools import repeat
from typing import TYPE_CHECKING, NamedTuple

import sqlalchemy as sa
from sqlalchemy.engine import Engine

from ..db.tables import send_batches, send_recipients, send_workers
from ..db.transactions import utcnow

if TYPE_CHECKING:
    from .ledger import SendInfo

# -- claiming and recording ------------------------------------------------------------
#
# The hot path: for a million recipients these run a thousand times each, so they are
# hand-written SQL on the driver's own cursor (no Row objects, no statement compilation),
# one statement per step, and hand back tuples (``ClaimedRow``, a tuple subclass).


class ClaimedRow(NamedTuple):
    """One claimed recipient, as ``_PICK`` selects it: its fields are the statement's
    select list, in that order (a test compares them). ``claim_batch`` hands these back;
    personalize, the backends' row path and the runner read them by name."""

    subscriber_id: int | None
    email: str
    name: str | None
    seq: int


def claimed_rows(rows: list[tuple]) -> list[ClaimedRow]:
    """The driver's row tuples as ``ClaimedRow`` (a C-level loop: no Python call per row)."""
    return list(map(tuple.__new__, repeat(ClaimedRow, len(rows)), rows))


# PostgreSQL: claims by seq range from the send's cursor (``send_cursors``, migration
# 0017). A transaction first locks the cursor row (creating it at the first claim), which
# orders the claims of every worker of the send; the answer to the previous batch and the
# heartbeat ride along in that statement. A second statement, with a snapshot taken once
# the lock is held (so it sees every claim and snapshot chunk committed before), reads the
# next :size pending rows after the cursor on the primary key, moves the cursor to the
# last of them and inserts the batch row with their seqs. The rows are not written: they
# stay pending until the answer, the one write of each row, which changes no indexed
# column (a HOT update). The snapshot copies chunks in seq order, one at a time, so a chunk
# still uncommitted holds only seqs above every pending row the claim can see.
_PG_LOCK = """
INSERT INTO send_cursors (send_id, claimed_through) VALUES (:send, 0)
ON CONFLICT (send_id) DO UPDATE SET claimed_through = send_cursors.claimed_through
RETURNING claimed_through"""
_PG_BEAT = "beat AS (UPDATE send_workers SET heartbeat_at = :now WHERE id = :worker),"
_PG_FRESH = """
WITH fresh AS MATERIALIZED (
    SELECT subscriber_id, email, name, seq FROM send_recipients
    WHERE send_id = :send AND seq > :after AND status = 'pending' AND NOT requeued
    ORDER BY seq LIMIT :size),
batch AS (
    INSERT INTO send_batches (send_id, worker_id, status, size, claimed_at, seqs)
    SELECT :send, :worker, 'sending', count(*), :now, array_agg(seq ORDER BY seq)
    FROM fresh HAVING count(*) > 0
    RETURNING id),
moved AS (
    UPDATE send_cursors SET claimed_through = (SELECT max(seq) FROM fresh)
    WHERE send_id = :send AND EXISTS (SELECT 1 FROM fresh))
SELECT fresh.subscriber_id, fresh.email, fresh.name, fresh.seq, batch.id FROM fresh, batch"""
# The second path: rows made pending again behind the cursor (``requeued``, by
# ``requeue.reopen`` and ``flag_behind``), found through the partial index that holds only
# them, once the cursor has nothing more. They are claimed as before the cursor: locked
# with SKIP LOCKED (a MATERIALIZED CTE picks exactly :size rows once), marked ``sending``
# with the batch id, and out of the index.
_PG_AGAIN = """
WITH picked AS MATERIALIZED (
    SELECT seq FROM send_recipients
    WHERE send_id = :send AND requeued AND status = 'pending'
    ORDER BY seq LIMIT :size FOR UPDATE SKIP LOCKED),
batch AS (
    INSERT INTO send_batches (send_id, worker_id, status, size, claimed_at)
    SELECT :send, :worker, 'sending', count(*), :now FROM picked HAVING count(*) > 0
    RETURNING id)
UPDATE send_recipients AS r
SET status = 'sending', batch_id = batch.id, requeued = false, updated_at = :now
FROM picked, batch WHERE r.send_id = :send AND r.seq = picked.seq
RETURNING r.subscriber_id, r.email, r.name, r.seq, batch.id"""
# The rows of batch :answered still in flight, among seqs :low..:high: of a cursor batch
# ({ranged}), the pending ones not requeued (every such row in its range is one of its
# seqs) and those of its seqs a trigger skipped while in flight (the message went out
# anyway: its answer is what happened); of a batch marked ``sending`` ({open}), those rows.
# The batch's seqs are read once (an InitPlan), and only for skipped rows.
_PG_IN_FLIGHT = """
r.send_id = :send AND r.seq BETWEEN :low AND :high
  AND ({ranged} AND (r.status = 'pending' AND NOT r.requeued
                     OR r.status = 'skipped'
                        AND r.seq = ANY(CAST((SELECT seqs FROM send_batches
                                             WHERE id = :answered) AS bigint[])))
       OR {open} AND r.batch_id = :answered AND r.status = 'sending')"""
# The answer to a whole batch: the batch is finished only if still open (``recovery``
# may have settled it, its worker taken for dead), and its rows answered only then.
# ``:by_batch`` (the rest accepted, ``sent``): a cursor batch's pending rows are not
# written, the batch row is their record (``outcomes``); only rows a trigger skipped
# while in flight (revisions before 0021) are written, as the message went out anyway.
_PG_ANSWERED = """
finished AS (
    UPDATE send_batches SET status = 'done', finished_at = :now,
        provider_id = CASE WHEN :by_batch AND seqs IS NOT NULL THEN :provider END
    WHERE id = :answered AND status = 'sending' RETURNING seqs IS NOT NULL AS ranged),
answered AS (
    UPDATE send_recipients AS r SET status = :status, reason = :reason,
        provider_id = :provider, attempts = r.attempts + 1, updated_at = :now
    WHERE :whole AND NOT (:by_batch AND r.status = 'pending'
                          AND (SELECT ranged FROM finished))
      AND """ + _PG_IN_FLIGHT.format(
        ranged="(SELECT ranged FROM finished)", open="EXISTS (SELECT 1 FROM finished)") + ")"
_PG_EACH = """
UPDATE send_recipients AS r SET status = :status, reason = :reason, provider_id = :provider,
    attempts = r.attempts + 1, updated_at = :now
FROM send_batches AS f
WHERE f.id = :answered AND f.status = 'sending' AND r.seq = :seq AND """ + \
    _PG_IN_FLIGHT.format(ranged="f.seqs IS NOT NULL", open="true")
# The claim's read of the next rows must walk the primary key in order from the cursor.
# Right after the snapshot the table's statistics are those of an empty table, and the
# planner then prefers a bitmap scan of *every* row after the cursor plus a sort (130 ms
# for 80,000 rows instead of 0.5 ms): bitmap scans are off for the claim's transaction.
_PG_PLAN = ", (SELECT set_config('enable_bitmapscan', 'off', true))"


_PICK = {
    # SQLite: the transaction holds the database's write lock (BEGIN IMMEDIATE), so the
    # first :size pending rows are read, then marked as one seq range: a pending row
    # inside that range is one of them.
    "sqlite": """
SELECT subscriber_id, email, name, seq FROM send_recipients
WHERE send_id = :send AND status = 'pending' ORDER BY seq LIMIT :size""",
    # PostgreSQL: the rows, with the new batch's id last (see above)
    "postgresql": _PG_FRESH,
    "postgresql, requeued": _PG_AGAIN,
}
# No recipient is checked again here. A row becomes pending only where the rule of
# ``audience.receiving`` was asked (the snapshot, ``requeue.reopen``); a subscriber who
# unsubscribes, bounces, complains or is erased later has their pending rows marked
# skipped at that moment, by the database's triggers (migration 0004_skip_unsendable).
_MARK = """
UPDATE send_recipients SET status = 'sending', batch_id = :batch, updated_at = :now
WHERE send_id = :send AND seq BETWEEN :low AND :high AND status = 'pending'"""
_NEW_BATCH = """
INSERT INTO send_batches (send_id, worker_id, status, size, claimed_at)
VALUES (:send, :worker, 'sending', :size, :now) RETURNING id"""
_BATCH_CLAIMED = "UPDATE send_batches SET size = :size WHERE id = :batch"
_BATCH_DONE = """
UPDATE send_batches SET status = 'done', finished_at = :now WHERE id = :batch"""
_BATCH_EMPTY = "DELETE FROM send_batches WHERE id = :batch"
_BEAT = "UPDATE send_workers SET heartbeat_at = :now WHERE id = :worker"
_EACH = """
UPDATE send_recipients SET status = :status, reason = :reason, provider_id = :provider,
    attempts = attempts + 1, updated_at = :now
WHERE send_id = :send AND seq = :seq AND status = 'sending'"""
_REST = """
UPDATE send_recipients SET status = :status, reason = :reason, provider_id = :provider,
    attempts = attempts + 1, updated_at = :now
WHERE send_id = :send AND seq BETWEEN :low AND :high AND batch_id = :batch
  AND status = 'sending'"""



def _dialect_sql(sql: str, dialect: str) -> str:
    """``:name`` parameters (sqlite3's named style) as psycopg's ``%(name)s``."""
    if dialect == "postgresql":
        return re.sub(r"(?<![:\w]):(\w+)", r"%(\1)s", sql)
    return sql


class _Statements:
    """The hot path's SQL in one dialect's parameter style."""

    def __init__(self, dialect: str) -> None:
        def sql(text: str) -> str:
            return _dialect_sql(text, dialect)

        self.dialect = dialect
        self.pick = sql(_PICK["sqlite"])
        self.mark = sql(_MARK)
        self.new_batch = sql(_NEW_BATCH)
        self.batch_claimed = sql(_BATCH_CLAIMED)
        self.batch_done = sql(_BATCH_DONE)
        self.batch_empty = sql(_BATCH_EMPTY)
        self.beat = sql(_BEAT)
        self.each = sql(_EACH)
        self.rest = sql(_REST)
        self.pg_lock = sql("WITH " + _PG_BEAT.rstrip(",") + _PG_LOCK + _PG_PLAN)
        self.pg_answer_and_lock = sql("WITH " + _PG_BEAT + _PG_ANSWERED + _PG_LOCK
                                      + _PG_PLAN)
        self.pg_answer = sql("WITH" + _PG_ANSWERED + "\nSELECT count(*) FROM finished")
        self.pg_each = sql(_PG_EACH)
        self.pg_fresh = sql(_PG_FRESH)
        self.pg_again = sql(_PG_AGAIN)

    def stamp(self, now: dt.datetime) -> object:
        """``now`` as the driver should store it (as SQLAlchemy stores a DateTime)."""
        if self.dialect == "sqlite":
            return now.strftime("%Y-%m-%d %H:%M:%S.%f")
        return now


_STATEMENTS: dict[str, _Statements] = {}
_SQLITE_WRITERS: weakref.WeakKeyDictionary[Engine, threading.Lock] = (
    weakref.WeakKeyDictionary()
)
_SQLITE_WRITERS_LOCK = threading.Lock()


def _statements(engine: Engine) -> _Statements:
    dialect = engine.dialect.name
    statements = _STATEMENTS.get(dialect)
    if statements is None:
        statements = _STATEMENTS[dialect] = _Statements(dialect)
    return statements


@contextmanager
def write_transaction(engine: Engine) -> Iterator[sa.Connection]:
    """A write transaction on ``engine``.

    On SQLite the threads of this process take turns in Python first: SQLite's own wait
    for its write lock is a sleep-and-retry loop (1, 2, 5, 10 ms ...), which with four
    workers wasted more time than the transactions took. Other processes (the web
    endpoints recording an unsubscribe) still wait through ``busy_timeout``.
    """
    if engine.dialect.name != "sqlite":
        with engine.begin() as conn:
            yield conn
        return
    lock = _SQLITE_WRITERS.get(engine)
    if lock is None:
        with _SQLITE_WRITERS_LOCK:
            lock = _SQLITE_WRITERS.setdefault(engine, threading.Lock())
    with lock, engine.begin() as conn:
        yield conn


class Outcome(NamedTuple):
    """One recipient's own answer."""

    seq: int
    status: str  # sent | temporary | failed | uncertain
    reason: str = ""
    provider_id: str | None = None


class Verdict(NamedTuple):
    """One answer for many recipients (a SendGrid request is accepted or refused whole)."""

    status: str
    reason: str = ""
    provider_id: str | None = None


class Answer(NamedTuple):
    """The backend's answer for one claimed batch, as the ledger records it.

    ``each`` is recorded first, one row at a time; then ``rest`` (if any) for every other
    recipient of the batch still ``sending``, in one statement over the batch's seq range
    ``low``..``high``.
    """

    low: int
    high: int
    each: Sequence[Outcome] = ()
    rest: Verdict | None = None


def claim_batch(
    engine: Engine, send: SendInfo, worker_id: str, size: int
) -> tuple[int, list[ClaimedRow]] | None:
    """Claim up to ``size`` pending recipients, in one transaction (SQLite: marked
    ``sending``; PostgreSQL: past the send's cursor, see ``_PG_FRESH``).

    (Recipients no longer sendable are ``skipped`` already, by the triggers.) Returns the
    batch id and the claimed recipients (``ClaimedRow``: subscriber id, email, name,
    seq; in seq order), or None when nothing is pending.
    """
    now = utcnow()
    statements = _statements(engine)
    with write_transaction(engine) as conn:
        if statements.dialect == "postgresql":
            return _pg_claim(conn, statements, send.id, worker_id, size, now)
        return _claim(conn, statements, send, worker_id, size, now)


def record_and_claim(
    engine: Engine, send: SendInfo, batch_id: int, answer: Answer, worker_id: str, size: int,
) -> tuple[int, list[ClaimedRow]] | None:
    """``record_batch`` then ``claim_batch``, in one transaction (one commit, one sync).

    The answer to one batch is on disk before the next batch is claimed: the same order,
    and the same crash guarantees, as the two calls made one after the other.
    """
    now = utcnow()
    statements = _statements(engine)
    with write_transaction(engine) as conn:
        if statements.dialect == "postgresql":
            return _pg_claim(conn, statements, send.id, worker_id, size, now,
                             (batch_id, answer))
        _record(conn, statements, send.id, batch_id, answer, now)
        return _claim(conn, statements, send, worker_id, size, now)


def _pg_claim(conn: sa.Connection, sql: _Statements, send_id: int, worker_id: str, size: int,
              now: dt.datetime, answered: tuple[int, Answer] | None = None
              ) -> tuple[int, list[ClaimedRow]] | None:
    """PostgreSQL: record ``answered`` (batch id, answer), lock the cursor, claim."""
    params: dict[str, object] = {"send": send_id, "worker": worker_id, "size": size,
                                 "now": now}
    cursor = _cursor(conn)
    try:
        if answered is None:
            cursor.execute(sql.pg_lock, params)
        else:
            _pg_each(cursor, sql, send_id, *answered, now)
            params.update(_pg_answer(*answered))
            cursor.execute(sql.pg_answer_and_lock, params)
        params["after"] = cursor.fetchone()[0]
        cursor.execute(sql.pg_fresh, params)
        found = cursor.fetchall()
        if not found:  # the cursor is at the end: rows made pending again behind it
            cursor.execute(sql.pg_again, params)
            found = cursor.fetchall()
    finally:
        cursor.close()
    if not found:
        return None
    rows = claimed_rows([r[:-1] for r in found])
    rows.sort(key=_by_seq)
    return found[0][-1], rows


def _pg_answer(batch_id: int, answer: Answer) -> dict[str, object]:
    """The parameters of ``_PG_ANSWERED``: the batch, and the verdict for its rest."""
    verdict = answer.rest or Verdict("")
    return {"answered": batch_id, "low": answer.low, "high": answer.high,
            "whole": answer.rest is not None, "status": verdict.status or None,
            "by_batch": verdict.status == "sent", **_verdict_text(verdict)}


def _pg_each(cursor, sql: _Statements, send_id: int, batch_id: int, answer: Answer,
             now: dt.datetime) -> None:
    """PostgreSQL: the answer's own outcomes, row by row (before the rest's verdict)."""
    if answer.each:
        cursor.executemany(sql.pg_each, [
            {"send": send_id, "answered": batch_id, "low": answer.low, "high": answer.high,
             "seq": o.seq, "status": o.status, "now": now,
             **_verdict_text(Verdict(o.status, o.reason, o.provider_id))}
            for o in answer.each])


def _verdict_text(verdict: Verdict) -> dict[str, str | None]:
    """The reason and provider id as stored: bounded, an empty reason as NULL."""
    return {"reason": (verdict.reason or None) and verdict.reason[:2000],
            "provider": verdict.provider_id and verdict.provider_id[:200]}


def _cursor(conn: sa.Connection):  # the driver's cursor, inside conn's transaction
    return conn.connection.cursor()


def _claim(
    conn: sa.Connection, sql: _Statements, send: SendInfo, worker_id: str, size: int,
    now: dt.datetime,
) -> tuple[int, list[ClaimedRow]] | None:
    stamp = sql.stamp(now)
    cursor = _cursor(conn)
    try:
        cursor.execute(sql.new_batch, {"send": send.id, "worker": worker_id, "size": size,
                                       "now": stamp})
        batch_id = cursor.fetchone()[0]
        params = {"send": send.id, "size": size, "batch": batch_id, "now": stamp}
        cursor.execute(sql.pick, params)
        rows = claimed_rows(cursor.fetchall())
        if not rows:
            cursor.execute(sql.batch_empty, {"batch": batch_id})
            return None
        params.update(low=rows[0].seq, high=rows[-1].seq)
        cursor.execute(sql.mark, params)
        if cursor.rowcount != len(rows):  # the write lock makes this impossible
            raise RuntimeError(f"claimed {cursor.rowcount} rows, expected {len(rows)}")
        if len(rows) != size:
            cursor.execute(sql.batch_claimed, {"batch": batch_id, "size": len(rows)})
        cursor.execute(sql.beat, {"worker": worker_id, "now": stamp})
    finally:
        cursor.close()
    return batch_id, rows


def _by_seq(row: ClaimedRow) -> int:
    return row.seq


def record_batch(engine: Engine, send_id: int, batch_id: int, answer: Answer) -> None:
    """Record the backend's answer for a batch, in one transaction."""
    now, statements = utcnow(), _statements(engine)
    with write_transaction(engine) as conn:
        if statements.dialect != "postgresql":
            _record(conn, statements, send_id, batch_id, answer, now)
            return
        cursor = _cursor(conn)
        try:
            _pg_each(cursor, statements, send_id, batch_id, answer, now)
            cursor.execute(statements.pg_answer,
                           {"send": send_id, "now": now, **_pg_answer(batch_id, answer)})
        finally:
            cursor.close()


def _record(conn: sa.Connection, sql: _Statements, send_id: int, batch_id: int,
            answer: Answer, now: dt.datetime) -> None:
    stamp = sql.stamp(now)
    cursor = _cursor(conn)
    try:
        if answer.each:
            cursor.executemany(sql.each, [
                {"send": send_id, "seq": o.seq, "status": o.status,
                 "reason": (o.reason or None) and o.reason[:2000],
                 "provider": o.provider_id and o.provider_id[:200], "now": stamp}
                for o in answer.each
            ])
        if answer.rest is not None:
            verdict = answer.rest
            cursor.execute(sql.rest, {
                "send": send_id, "batch": batch_id, "low": answer.low, "high": answer.high,
                "status": verdict.status, "now": stamp, **_verdict_text(verdict)})
        cursor.execute(sql.batch_done, {"batch": batch_id, "now": stamp})
    finally:
        cursor.close()

def heartbeat(engine: Engine, worker_id: str) -> None:
    with write_transaction(engine) as conn:
        conn.execute(
            send_workers.update()
            .where(send_workers.c.id == worker_id)
            .values(heartbeat_at=utcnow())
        )


def release_batch(engine: Engine, send_id: int, batch_id: int) -> None:
    """The backend accepted nothing of this batch (it was unavailable): back to pending,
    or skipped for those who may no longer receive (``requeue.reopen``)."""
    from .requeue import reopen

    now = utcnow()
    with write_transaction(engine) as conn:
        reopen(conn, send_id, batch_rows(conn, send_id, batch_id))
        conn.execute(
            send_batches.update().where(send_batches.c.id == batch_id)
            .values(status="done", finished_at=now)
        )


# -- the rows in flight ------------------------------------------------------------------


def batch_rows(conn: sa.Connection, send_id: int, batch_id: int
               ) -> list[sa.ColumnElement[bool]]:
    """Conditions for the rows of an open batch still in flight: marked ``sending`` with
    its id, or (a PostgreSQL cursor batch) pending among its seqs. Rows of its seqs that
    a trigger skipped while in flight are made pending again first (their message may
    have left: what they become is the caller's to decide, as for the others); the row
    lock this takes holds off the triggers until the caller commits."""
    r = send_recipients.c
    seqs = conn.execute(sa.select(send_batches.c.seqs).where(send_batches.c.id == batch_id)
                        ).scalar()
    if seqs is None:
        return [r.send_id == send_id, r.batch_id == batch_id, r.status == "sending"]
    in_flight = [r.send_id == send_id, r.seq.in_(seqs), r.requeued.is_(False)]
    conn.execute(send_recipients.update().where(*in_flight, r.status == "skipped")
                 .values(status="pending", reason=None))
    return [*in_flight, r.status == "pending"]


def lock_cursor(conn: sa.Connection, send_id: int) -> int | None:
    """PostgreSQL: lock the send's claim cursor until commit (no claim of the send runs
    meanwhile) and return it: the rows at or below it were claimed by the cursor path, so
    a row made pending there must be ``requeued`` (``outcomes``: such a row, pending and
    not requeued, is in flight or sent). None on SQLite (no cursor)."""
    if conn.dialect.name != "postgresql":
        return None
    return conn.execute(sa.text(_PG_LOCK), {"send": send_id}).scalar_one()
