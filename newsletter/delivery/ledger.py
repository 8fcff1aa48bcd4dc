"""The delivery ledger: sends, their per-recipient records, batches and workers.

Nothing lost, nothing twice. A send snapshots its recipients into ``send_recipients``
when it is created (one ``INSERT ... SELECT``). Workers then claim batches: one
transaction marks the batch's recipients ``sending`` *before* the backend is called; a
second transaction records the backend's answer. A subscriber who unsubscribes, bounces
or complains meanwhile has their pending rows marked ``skipped`` by the database itself
(triggers, migration 0004), whatever made the change. So after a crash every recipient
is in a precise state:

=============  ==========================================================================
``pending``    not yet claimed: the next run sends it
``sending``    in a batch whose backend call started; if that batch's worker is dead,
               ``reconcile`` settles it from the worker's progress journal (``recovery``)
``sent``       accepted by the backend: never sent again by this send
``temporary``  refused for now (SMTP 4xx, SendGrid 5xx/429 after retries): retried within
               the run up to ``MAX_ATTEMPTS``, then by ``--retry-failed``
``failed``     refused for good (SMTP 5xx, SendGrid 400): shown with the server's reply
``uncertain``  the call went out but no answer came back: resent only on request
``skipped``    unsubscribed, bounced, complained or erased before their message went out
               (or before a retry: every requeue asks ``audience.receiving``'s rule)
=============  ==========================================================================

Batches are claimed with ``SELECT ... FOR UPDATE SKIP LOCKED`` on PostgreSQL, so any
number of workers on any number of machines share a send; on SQLite one process claims
(``BEGIN IMMEDIATE`` serialises its threads). Workers register in ``send_workers`` and
heartbeat; a batch left ``sending`` by a worker whose heartbeat stopped (or whose process
is gone, on the same host) is reconciled: message by message from the worker's progress
journal where it can be read, else the whole batch ``uncertain``.
"""

from __future__ import annotations

import datetime as dt
import os
import re
import socket
import threading
import uuid
import weakref
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from itertools import repeat
from typing import TYPE_CHECKING, NamedTuple

import sqlalchemy as sa
from sqlalchemy.engine import Engine

from ..audience.receiving import CLEAR, SUPPRESSED, receives, suppression_of
from ..authoring.identity import Identity
from ..db.tables import (
    ID,
    memberships,
    send_batches,
    send_recipients,
    send_workers,
    sends,
    subscribers,
)
from ..db.transactions import DB, aware, retry_on_conflict, transaction, utcnow
from ..errors import SendExists, SendNotFound

if TYPE_CHECKING:
    from .requeue import Requeued

STATUSES = ("pending", "sending", "sent", "temporary", "failed", "uncertain", "skipped")
DONE = ("sent", "failed", "skipped")
SEND_STATES = ("sending", "finished", "cancelled")
MAX_ATTEMPTS = 3
LEASE = dt.timedelta(seconds=30)

@dataclass
class SendInfo:
    id: int
    kind: str
    issue_path: str
    issue_slug: str
    subject: str
    list_id: int | None
    list_name: str
    backend: str
    status: str
    total: int
    created_at: dt.datetime
    finished_at: dt.datetime | None
    counts: dict[str, int] = field(default_factory=dict)
    snapshot_after: int | None = None  # not None: recipients still being snapshotted
    issue_key: str | None = None
    content_hash: str | None = None

    @property
    def snapshotting(self) -> bool:
        return self.snapshot_after is not None

    @property
    def unfinished(self) -> int:
        """Recipients pending or being sent (at least 1 while the snapshot is incomplete)."""
        count = self.counts.get("pending", 0) + self.counts.get("sending", 0)
        return max(count, 1) if self.snapshotting else count

    @property
    def ok(self) -> bool:
        bad = ("temporary", "failed", "uncertain", "pending", "sending")
        return not self.snapshotting and not any(self.counts.get(s, 0) for s in bad)


def _info(row: sa.Row, counts: dict[str, int] | None = None) -> SendInfo:
    return SendInfo(
        id=row.id,
        kind=row.kind,
        issue_path=row.issue_path,
        issue_slug=row.issue_slug,
        subject=row.subject,
        list_id=row.list_id,
        list_name=row.list_name,
        backend=row.backend,
        status=row.status,
        total=row.total,
        created_at=aware(row.created_at),  # type: ignore[arg-type]
        finished_at=aware(row.finished_at),
        counts=counts or {},
        snapshot_after=row.snapshot_after,
        issue_key=row.issue_key,
        content_hash=row.content_hash,
    )


_INFO_COLUMNS = [c for c in sends.c if c.name not in ("html", "text")]


# -- creating a send -------------------------------------------------------------------


def create_send(
    db: DB,
    *,
    kind: str,
    issue_path: str,
    issue_slug: str,
    subject: str,
    list_id: int | None,
    list_name: str,
    backend: str,
    html: str,
    text: str,
    test_to: Sequence[str] = (),
    recipient_filter: sa.ColumnElement[bool] | None = None,
    first_chunk: int | None = None,
    identity: Identity | None = None,
) -> int:
    """Create a send and snapshot its recipients; returns the send id.

    ``identity`` (``newsletter.authoring.identity.of_issue``) is stored with the send, so that
    ``find_latest`` finds it for a copied or renamed issue file too.

    ``recipient_filter`` (a condition on ``subscribers``) narrows the snapshot of a real
    send, e.g. to the first wave of a local-time schedule; ``add_recipients`` adds more.
    ``first_chunk``: snapshot only the first that many recipients (by subscriber id) now;
    ``continue_snapshot`` copies the rest while the first batches go out.
    """
    try:
        return _create_send(db, kind=kind, issue_path=issue_path, issue_slug=issue_slug,
                            subject=subject, list_id=list_id, list_name=list_name,
                            backend=backend, html=html, text=text, test_to=test_to,
                            recipient_filter=recipient_filter, first_chunk=first_chunk,
                            identity=identity)
    except sa.exc.IntegrityError:
        if kind != "real":
            raise
        raise SendExists(
            f"issue {issue_slug} is being sent to list {list_name!r} by another process"
        ) from None


def _create_send(db: DB, *, kind: str, issue_path: str, issue_slug: str, subject: str,
                 list_id: int | None, list_name: str, backend: str, html: str, text: str,
                 test_to: Sequence[str],
                 recipient_filter: sa.ColumnElement[bool] | None,
                 first_chunk: int | None = None, identity: Identity | None = None) -> int:
    now = utcnow()
    known = {} if identity is None else {
        "issue_date": identity.issue_date, "issue_key": identity.issue_key,
        "content_hash": identity.content_hash}
    with transaction(db) as conn:
        send_id = conn.execute(
            sends.insert()
            .values(
                kind=kind,
                issue_path=issue_path,
                issue_slug=issue_slug,
                subject=subject,
                list_id=list_id,
                list_name=list_name,
                backend=backend,
                status="sending",
                html=html,
                text=text,
                total=0,
                created_at=now,
                **known,
            )
            .returning(sends.c.id)
        ).scalar_one()
        if kind == "test":
            rows = [
                {
                    "send_id": send_id,
                    "seq": n,
                    "subscriber_id": None,
                    "email": email,
                    "name": None,
                    "status": "pending",
                    "attempts": 0,
                }
                for n, email in enumerate(test_to, start=1)
            ]
            if rows:
                conn.execute(send_recipients.insert(), rows)
            total = len(rows)
        else:
            assert list_id is not None
            if first_chunk is not None and recipient_filter is None:
                until = conn.execute(sa.select(sa.func.coalesce(sa.func.max(subscribers.c.id), 0))
                                     ).scalar_one()
                total, after = _snapshot_chunk(conn, send_id, list_id, 0, until, first_chunk)
                conn.execute(sends.update().where(sends.c.id == send_id)
                             .values(total=total, snapshot_after=after, snapshot_until=until))
                return send_id
            total = conn.execute(_snapshot(send_id, list_id, recipient_filter)).rowcount
            if total is None or total < 0:  # a driver that cannot tell (sqlite3 and psycopg can)
                total = _count(conn, send_id)
        conn.execute(sends.update().where(sends.c.id == send_id).values(total=total))
    return send_id


def _snapshot_chunk(
    conn: sa.Connection, send_id: int, list_id: int, after: int, until: int, size: int
) -> tuple[int, int | None]:
    """Snapshot the sendable members among the list's next ``size`` members after
    subscriber id ``after`` (and up to ``until``).

    ``until`` is the highest subscriber id when the send was created: people who sign up
    later are not added. The chunk is an id range found on the list's primary key first,
    so that each chunk costs its own size, not the size of what is left (a LIMIT over the
    join made PostgreSQL join and sort all the rest for every chunk). Returns how many
    were copied and the new ``snapshot_after`` (None: that was all).
    """
    upper = conn.execute(
        sa.select(memberships.c.subscriber_id)
        .where(memberships.c.list_id == list_id, memberships.c.subscriber_id > after,
               memberships.c.subscriber_id <= until)
        .order_by(memberships.c.subscriber_id).offset(size - 1).limit(1)
    ).scalar()
    last = upper is None  # fewer than size members left
    upper = until if last else upper
    span = sa.and_(subscribers.c.id > after, subscribers.c.id <= upper)
    rows = conn.execute(_snapshot(send_id, list_id, span)).rowcount
    if rows is None or rows < 0:  # the driver cannot tell: count them
        rows = conn.execute(
            sa.select(sa.func.count()).select_from(send_recipients)
            .where(send_recipients.c.send_id == send_id, send_recipients.c.seq > after,
                   send_recipients.c.seq <= upper)
        ).scalar_one()
    return rows, None if last else upper


def continue_snapshot(engine: Engine, send_id: int, size: int) -> tuple[int, int | None]:
    """Copy the next chunk of a send's recipients; returns the send's new total and
    ``snapshot_after`` (None: the snapshot is complete).

    Safe with several workers (on several machines, with PostgreSQL): the send's row is
    locked and re-read first, so each chunk is copied once.
    """
    with _write(engine) as conn:
        row = conn.execute(
            sa.select(sends.c.list_id, sends.c.snapshot_after, sends.c.snapshot_until,
                      sends.c.total)
            .where(sends.c.id == send_id).with_for_update()
        ).one()
        if row.snapshot_after is None:
            return row.total, None
        if row.list_id is None:  # the list was deleted meanwhile: nobody more to add
            added, after = 0, None
        else:
            added, after = _snapshot_chunk(conn, send_id, row.list_id, row.snapshot_after,
                                           row.snapshot_until, size)
        conn.execute(sends.update().where(sends.c.id == send_id)
                     .values(total=row.total + added, snapshot_after=after))
    return row.total + added, after


def _snapshot(
    send_id: int, list_id: int, condition: sa.ColumnElement[bool] | None
) -> sa.Insert:
    """INSERT ... SELECT of the list's members who may receive (``receiving.receives``)
    and match ``condition``, as pending; members refused only because their address is
    suppressed are recorded ``skipped`` (reason ``suppressed``), so the report counts them."""
    clear = suppression_of() == CLEAR
    snapshot = (
        sa.select(
            sa.literal(send_id, ID).label("send_id"),
            subscribers.c.id.label("seq"),
            subscribers.c.id.label("subscriber_id"),
            subscribers.c.email,
            subscribers.c.name,
            sa.case((clear, sa.literal("pending")), else_=sa.literal("skipped")).label("status"),
            sa.literal(0).label("attempts"),
            sa.case((clear, sa.null()), else_=sa.literal(SUPPRESSED)).label("reason"),
        )
        .join(memberships, memberships.c.subscriber_id == subscribers.c.id)
        .where(memberships.c.list_id == list_id, receives(suppression=sa.literal(CLEAR)))
    )
    if condition is not None:
        snapshot = snapshot.where(condition)
    return send_recipients.insert().from_select(
        ["send_id", "seq", "subscriber_id", "email", "name", "status", "attempts", "reason"],
        snapshot,
    )


def add_recipients(db: DB, send_id: int, condition: sa.ColumnElement[bool]) -> int:
    """Add the list's sendable members matching ``condition`` who are not yet in the send.

    Each subscriber is in a send at most once (the primary key is the subscriber id), so
    a later wave never repeats an earlier one. Returns how many were added; the send is
    ``sending`` again when any were.
    """
    with transaction(db) as conn:
        row = conn.execute(sa.select(sends.c.list_id, sends.c.kind)
                           .where(sends.c.id == send_id)).first()
        if row is None:
            raise SendNotFound(f"no send with id {send_id}")
        if row.kind != "real" or row.list_id is None:
            return 0
        already = sa.exists(
            sa.select(sa.literal(1)).where(send_recipients.c.send_id == send_id,
                                           send_recipients.c.seq == subscribers.c.id)
        )
        before = _count(conn, send_id)
        conn.execute(_snapshot(send_id, row.list_id, sa.and_(condition, ~already)))
        after = _count(conn, send_id)
        if after != before:
            conn.execute(sends.update().where(sends.c.id == send_id)
                         .values(total=after, status="sending", finished_at=None))
    return after - before


def _count(conn: sa.Connection, send_id: int) -> int:
    return conn.execute(
        sa.select(sa.func.count()).select_from(send_recipients)
        .where(send_recipients.c.send_id == send_id)
    ).scalar_one()


def find_latest(
    db: DB, issue_slug: str, list_id: int, identity: Identity | None = None
) -> SendInfo | None:
    """The newest real send of this issue to this list, if any.

    With ``identity``, a send of the same issue under any file name: the same date and
    subject, or the same content (``newsletter.authoring.identity``); a send older than the
    identity columns whose file could not be read then is matched by its slug.
    """
    same = sends.c.issue_slug == issue_slug
    if identity is not None:
        same = sa.or_(sends.c.issue_key == identity.issue_key,
                      sends.c.content_hash == identity.content_hash,
                      sa.and_(sends.c.issue_key.is_(None), same))
    with transaction(db) as conn:
        row = conn.execute(
            sa.select(*_INFO_COLUMNS)
            .where(same, sends.c.list_id == list_id, sends.c.kind == "real")
            .order_by(sends.c.id.desc())
            .limit(1)
        ).first()
    return None if row is None else get_send(db, row.id)


def get_send(db: DB, send_id: int, *, counts: bool = True) -> SendInfo:
    """The send, with its recipients counted per status unless ``counts=False``.

    Counting reads every recipient row of the send (about 0.4 s for a million on
    SQLite), so callers that only need the send itself skip it.
    """
    with transaction(db, read=True) as conn:
        row = conn.execute(sa.select(*_INFO_COLUMNS).where(sends.c.id == send_id)).first()
        if row is None:
            raise SendNotFound(
                f"no send with id {send_id}; `newsletter sends list` shows the sends"
            )
        if not counts:
            return _info(row)
        per_status = dict(
            conn.execute(
                sa.select(send_recipients.c.status, sa.func.count())
                .where(send_recipients.c.send_id == send_id)
                .group_by(send_recipients.c.status)
            ).all()
        )
    return _info(row, per_status)


def send_content(db: DB, send_id: int) -> tuple[str, str]:
    with transaction(db) as conn:
        row = conn.execute(sa.select(sends.c.html, sends.c.text).where(sends.c.id == send_id)).one()
    return row.html, row.text


def list_sends(db: DB, *, limit: int = 50) -> list[SendInfo]:
    with transaction(db) as conn:
        rows = conn.execute(
            sa.select(*_INFO_COLUMNS).order_by(sends.c.id.desc()).limit(limit)
        ).all()
        ids = [r.id for r in rows]
        counts: dict[int, dict[str, int]] = {i: {} for i in ids}
        if ids:
            for send_id, status, n in conn.execute(
                sa.select(send_recipients.c.send_id, send_recipients.c.status, sa.func.count())
                .where(send_recipients.c.send_id.in_(ids))
                .group_by(send_recipients.c.send_id, send_recipients.c.status)
            ):
                counts[send_id][status] = n
    return [_info(r, counts[r.id]) for r in rows]


def recipients(
    db: DB, send_id: int, statuses: Iterable[str], *, limit: int | None = 100
) -> list[sa.Row]:
    query = (
        sa.select(send_recipients)
        .where(send_recipients.c.send_id == send_id, send_recipients.c.status.in_(list(statuses)))
        .order_by(send_recipients.c.seq)
    )
    if limit is not None:
        query = query.limit(limit)
    with transaction(db) as conn:
        return list(conn.execute(query).all())


# -- workers ---------------------------------------------------------------------------


def register_worker(db: DB, send_id: int, journal_dir: str | None = None) -> str:
    """A new worker of the send; ``journal_dir``: where it keeps its progress journal."""
    worker_id = uuid.uuid4().hex
    now = utcnow()
    with transaction(db) as conn:
        conn.execute(
            send_workers.insert().values(
                id=worker_id,
                send_id=send_id,
                host=socket.gethostname()[:255],
                pid=os.getpid(),
                started_at=now,
                heartbeat_at=now,
                journal_dir=journal_dir,
            )
        )
    return worker_id


def heartbeat(engine: Engine, worker_id: str) -> None:
    with _write(engine) as conn:
        conn.execute(
            send_workers.update()
            .where(send_workers.c.id == worker_id)
            .values(heartbeat_at=utcnow())
        )


def stop_worker(db: DB, worker_id: str) -> None:
    with transaction(db) as conn:
        conn.execute(
            send_workers.update()
            .where(send_workers.c.id == worker_id)
            .values(stopped_at=utcnow(), heartbeat_at=utcnow())
        )


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _dead_workers(conn: sa.Connection, send_id: int, now: dt.datetime) -> list[sa.Row]:
    """The send's workers that stopped, stopped beating or whose process is gone."""
    host = socket.gethostname()[:255]
    dead = []
    for row in conn.execute(sa.select(send_workers).where(send_workers.c.send_id == send_id)):
        stale = aware(row.heartbeat_at) < now - LEASE  # type: ignore[operator]
        gone = row.host == host and row.pid != os.getpid() and not _pid_alive(row.pid)
        if row.stopped_at is not None or stale or gone:
            dead.append(row)
    return dead


def reconcile(db: DB, send_id: int) -> int:
    """Settle the batches left ``sending`` by dead workers (see ``recovery``): from their
    progress journals where found, else as uncertain. Returns the recipients changed."""
    from .recovery import settle_dead_workers

    return settle_dead_workers(db, send_id)


def requeue(
    db: DB, send_id: int, statuses: Sequence[str], *, max_attempts: int | None = None
) -> int:
    """Put recipients in ``statuses`` back to ``pending``; returns how many.

    Those who may no longer receive are ``skipped`` instead (``requeue_counted``)."""
    return requeue_counted(db, send_id, statuses, max_attempts=max_attempts).pending


def requeue_counted(
    db: DB, send_id: int, statuses: Sequence[str], *, max_attempts: int | None = None
) -> Requeued:
    """``requeue``, returning how many became pending and how many were skipped, why."""
    from .requeue import reopen

    condition = [send_recipients.c.send_id == send_id, send_recipients.c.status.in_(list(statuses))]
    if max_attempts is not None:
        condition.append(send_recipients.c.attempts < max_attempts)

    def work() -> Requeued:
        with transaction(db) as conn:
            done = reopen(conn, send_id, condition)
            if done.pending:
                conn.execute(
                    sends.update()
                    .where(sends.c.id == send_id)
                    .values(status="sending", finished_at=None)
                )
        return done

    return retry_on_conflict(work)


# -- claiming and recording ------------------------------------------------------------
#
# The hot path: for a million recipients these run a thousand times each, so they are
# hand-written SQL on the driver's own cursor (no Row objects, no statement compilation),
# one statement per step, and hand back tuples (``ClaimedRow``, a tuple subclass).


class ClaimedRow(NamedTuple):
    """One claimed recipient, as ``_PICK`` selects it: its fields are the statement's
    select list, in that order (a test compares them). ``claim_batch`` hands these back;
    personalize, the backends' row path and the engine read them by name."""

    subscriber_id: int | None
    email: str
    name: str | None
    seq: int


def claimed_rows(rows: list[tuple]) -> list[ClaimedRow]:
    """The driver's row tuples as ``ClaimedRow`` (a C-level loop: no Python call per row)."""
    return list(map(tuple.__new__, repeat(ClaimedRow, len(rows)), rows))


_PICK = {
    # SQLite: the transaction holds the database's write lock (BEGIN IMMEDIATE), so the
    # first :size pending rows are read, then marked as one seq range: a pending row
    # inside that range is one of them.
    "sqlite": """
SELECT subscriber_id, email, name, seq FROM send_recipients
WHERE send_id = :send AND status = 'pending' ORDER BY seq LIMIT :size""",
    # PostgreSQL: other workers claim at the same time; SKIP LOCKED gives each its own
    # rows. A MATERIALIZED CTE picks and locks exactly :size rows once (a LIMIT subquery
    # in a semi-join may be re-run per row, claiming far more).
    "postgresql": """
WITH picked AS MATERIALIZED (
    SELECT seq FROM send_recipients WHERE send_id = :send AND status = 'pending'
    ORDER BY seq LIMIT :size FOR UPDATE SKIP LOCKED)
UPDATE send_recipients AS r SET status = 'sending', batch_id = :batch, updated_at = :now
FROM picked WHERE r.send_id = :send AND r.seq = picked.seq
RETURNING r.subscriber_id, r.email, r.name, r.seq""",
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
        self.pick = sql(_PICK[dialect])
        self.mark = sql(_MARK)
        self.new_batch = sql(_NEW_BATCH)
        self.batch_claimed = sql(_BATCH_CLAIMED)
        self.batch_done = sql(_BATCH_DONE)
        self.batch_empty = sql(_BATCH_EMPTY)
        self.beat = sql(_BEAT)
        self.each = sql(_EACH)
        self.rest = sql(_REST)

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
def _write(engine: Engine) -> Iterator[sa.Connection]:
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
    with _write(engine) as conn:
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
    with _write(engine) as conn:
        _record(conn, statements, send.id, batch_id, answer, now)
        return _claim(conn, statements, send, worker_id, size, now)


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
        if sql.dialect == "sqlite":
            params.update(low=rows[0].seq, high=rows[-1].seq)
            cursor.execute(sql.mark, params)
            if cursor.rowcount != len(rows):  # the write lock makes this impossible
                raise RuntimeError(f"claimed {cursor.rowcount} rows, expected {len(rows)}")
        else:
            rows.sort(key=_by_seq)
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
    with _write(engine) as conn:
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
                "status": verdict.status,
                "reason": (verdict.reason or None) and verdict.reason[:2000],
                "provider": verdict.provider_id and verdict.provider_id[:200], "now": stamp,
            })
        cursor.execute(sql.batch_done, {"batch": batch_id, "now": stamp})
    finally:
        cursor.close()


def in_flight(db: DB, send_id: int) -> int:
    """How many recipients of the send are still pending or in a batch being sent."""
    with transaction(db) as conn:
        return conn.execute(
            sa.select(sa.func.count())
            .select_from(send_recipients)
            .where(
                send_recipients.c.send_id == send_id,
                send_recipients.c.status.in_(["pending", "sending"]),
            )
        ).scalar_one()


def finish_if_done(db: DB, send_id: int) -> bool:
    """Mark the send finished when no recipient is pending or sending."""
    with transaction(db) as conn:
        open_count = in_flight(conn, send_id)
        snapshotting = conn.execute(
            sa.select(sends.c.snapshot_after).where(sends.c.id == send_id)
        ).scalar()
        if open_count or snapshotting is not None:
            return False
        conn.execute(
            sends.update()
            .where(sends.c.id == send_id, sends.c.status == "sending")
            .values(status="finished", finished_at=utcnow())
        )
    return True


def settle(db: DB, send_id: int) -> SendInfo:
    """The send with its counts, marked finished first if nothing is pending or sending.

    ``finish_if_done`` and ``get_send`` in one transaction: the recipients are counted
    once (at the end of a million-recipient send, each count reads a million rows).
    """
    with transaction(db) as conn:
        info = get_send(conn, send_id)
        if info.status == "sending" and not info.unfinished:
            now = utcnow()
            conn.execute(
                sends.update()
                .where(sends.c.id == send_id, sends.c.status == "sending")
                .values(status="finished", finished_at=now)
            )
            info.status, info.finished_at = "finished", now
    return info


def release_batch(engine: Engine, send_id: int, batch_id: int) -> None:
    """The backend accepted nothing of this batch (it was unavailable): back to pending,
    or skipped for those who may no longer receive (``requeue.reopen``)."""
    from .requeue import reopen

    now = utcnow()
    with _write(engine) as conn:
        reopen(conn, send_id, [send_recipients.c.send_id == send_id,
                               send_recipients.c.batch_id == batch_id,
                               send_recipients.c.status == "sending"])
        conn.execute(
            send_batches.update().where(send_batches.c.id == batch_id)
            .values(status="done", finished_at=now)
        )


def cancel_send(db: DB, send_id: int, *, reason: str = "the send was cancelled") -> int:
    """Stop a send: its recipients not yet claimed are ``skipped`` with ``reason`` and never
    sent; batches in flight finish and are recorded. Returns how many were skipped."""
    now = utcnow()
    with transaction(db) as conn:
        skipped = conn.execute(
            send_recipients.update()
            .where(send_recipients.c.send_id == send_id, send_recipients.c.status == "pending")
            .values(status="skipped", reason=reason, updated_at=now)
        ).rowcount
        conn.execute(sends.update().where(sends.c.id == send_id, sends.c.status == "sending")
                     .values(status="cancelled", finished_at=now))
    return skipped


def skipped_reasons(db: DB, send_id: int) -> dict[str, int]:
    """How many recipients of a send were skipped, per reason (``suppressed``, ...)."""
    r = send_recipients.c
    with transaction(db) as conn:
        rows = conn.execute(sa.select(r.reason, sa.func.count())
                            .where(r.send_id == send_id, r.status == "skipped")
                            .group_by(r.reason)).all()
    return {reason or "skipped": int(n) for reason, n in rows}
