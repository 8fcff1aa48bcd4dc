"""Claiming batches of a send's recipients and recording the backend's answers.

The hot path of every send (see ``ledger`` for the states a recipient goes through):
one transaction marks a batch ``sending`` before the backend is called
(``claim_batch``), another records its answer (``record_batch``), or both at once
(``record_and_claim``). ``release_batch`` hands back a batch the backend took none of.
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


# PostgreSQL: a claim (and the answer before it) is one statement, one round trip. Other
# workers claim at the same time; SKIP LOCKED gives each its own rows. A MATERIALIZED CTE
# picks and locks exactly :size rows once (a LIMIT subquery in a semi-join may be re-run
# per row, claiming far more). The claim index is on rows in no batch (``batch_id IS
# NULL``, migration 0015), so that recording the answer later changes no indexed column
# (a HOT update). The batch row is inserted only when rows were picked, with their count
# as its size; the heartbeat rides along. Data-modifying CTEs all run, on disjoint rows
# (the answered ones are 'sending', the picked ones pending), in one transaction.
_PG_CLAIM = """
beat AS (UPDATE send_workers SET heartbeat_at = :now WHERE id = :worker),
picked AS MATERIALIZED (
    SELECT seq FROM send_recipients
    WHERE send_id = :send AND batch_id IS NULL AND status = 'pending'
    ORDER BY seq LIMIT :size FOR UPDATE SKIP LOCKED),
batch AS (
    INSERT INTO send_batches (send_id, worker_id, status, size, claimed_at)
    SELECT :send, :worker, 'sending', count(*), :now FROM picked HAVING count(*) > 0
    RETURNING id)
UPDATE send_recipients AS r SET status = 'sending', batch_id = batch.id, updated_at = :now
FROM picked, batch WHERE r.send_id = :send AND r.seq = picked.seq
RETURNING r.subscriber_id, r.email, r.name, r.seq, batch.id"""

_PICK = {
    # SQLite: the transaction holds the database's write lock (BEGIN IMMEDIATE), so the
    # first :size pending rows are read, then marked as one seq range: a pending row
    # inside that range is one of them.
    "sqlite": """
SELECT subscriber_id, email, name, seq FROM send_recipients
WHERE send_id = :send AND status = 'pending' ORDER BY seq LIMIT :size""",
    # PostgreSQL: one statement, the rows with the new batch's id last (see above).
    "postgresql": "WITH" + _PG_CLAIM,
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


_PG_ANSWERED = """
answered AS (
    UPDATE send_recipients SET status = :status, reason = :reason, provider_id = :provider,
        attempts = attempts + 1, updated_at = :now
    WHERE send_id = :send AND seq BETWEEN :low AND :high AND batch_id = :answered
      AND status = 'sending'),
finished AS (
    UPDATE send_batches SET status = 'done', finished_at = :now WHERE id = :answered),"""


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
        self.pick = sql(_PICK[dialect])
        self.mark = sql(_MARK)
        self.new_batch = sql(_NEW_BATCH)
        self.batch_claimed = sql(_BATCH_CLAIMED)
        self.batch_done = sql(_BATCH_DONE)
        self.batch_empty = sql(_BATCH_EMPTY)
        self.beat = sql(_BEAT)
        self.each = sql(_EACH)
        self.rest = sql(_REST)
        self.pg_claim = sql(_PICK["postgresql"])
        self.pg_record_and_claim = sql("WITH" + _PG_ANSWERED + _PG_CLAIM)

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
    """Mark up to ``size`` pending recipients ``sending`` in one transaction.

    (Recipients no longer sendable are ``skipped`` already, by the triggers.) Returns the
    batch id and the claimed recipients (``ClaimedRow``: subscriber id, email, name,
    seq; in seq order), or None when nothing is pending.
    """
    with write_transaction(engine) as conn:
        return _claim(conn, _statements(engine), send, worker_id, size, utcnow())


def record_and_claim(
    engine: Engine, send: SendInfo, batch_id: int, answer: Answer, worker_id: str, size: int,
) -> tuple[int, list[ClaimedRow]] | None:
    """``record_batch`` then ``claim_batch``, in one transaction (one commit, one sync).

    The answer to one batch is on disk before the next batch is marked: the same order,
    and the same crash guarantees, as the two calls made one after the other.
    """
    now = utcnow()
    statements = _statements(engine)
    with write_transaction(engine) as conn:
        if statements.dialect == "postgresql" and not answer.each and answer.rest is not None:
            verdict = answer.rest  # one answer for the whole batch: all in one statement
            return _claim_pg(conn, statements.pg_record_and_claim, {
                "send": send.id, "worker": worker_id, "size": size, "now": now,
                "answered": batch_id, "low": answer.low, "high": answer.high,
                "status": verdict.status, **_verdict_text(verdict)})
        _record(conn, statements, send.id, batch_id, answer, now)
        return _claim(conn, statements, send, worker_id, size, now)


def _verdict_text(verdict: Verdict) -> dict[str, str | None]:
    """The reason and provider id as stored: bounded, an empty reason as NULL."""
    return {"reason": (verdict.reason or None) and verdict.reason[:2000],
            "provider": verdict.provider_id and verdict.provider_id[:200]}


def _claim_pg(conn: sa.Connection, statement: str, params: dict
              ) -> tuple[int, list[ClaimedRow]] | None:
    """Run one of the PostgreSQL claim statements: the batch id and its rows in seq
    order, or None when nothing was pending."""
    cursor = _cursor(conn)
    try:
        cursor.execute(statement, params)
        found = cursor.fetchall()
    finally:
        cursor.close()
    if not found:
        return None
    rows = claimed_rows([r[:-1] for r in found])
    rows.sort(key=_by_seq)
    return found[0][-1], rows


def _cursor(conn: sa.Connection):  # the driver's cursor, inside conn's transaction
    return conn.connection.cursor()


def _claim(
    conn: sa.Connection, sql: _Statements, send: SendInfo, worker_id: str, size: int,
    now: dt.datetime,
) -> tuple[int, list[ClaimedRow]] | None:
    if sql.dialect == "postgresql":
        return _claim_pg(conn, sql.pg_claim, {"send": send.id, "worker": worker_id,
                                              "size": size, "now": now})
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
    with write_transaction(engine) as conn:
        _record(conn, _statements(engine), send_id, batch_id, answer, utcnow())


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
        reopen(conn, send_id, [send_recipients.c.send_id == send_id,
                               send_recipients.c.batch_id == batch_id,
                               send_recipients.c.status == "sending"])
        conn.execute(
            send_batches.update().where(send_batches.c.id == batch_id)
            .values(status="done", finished_at=now)
        )
