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
``held``       a subject test's rest of the list, until the decision (``variants``)
=============  ==========================================================================

Batches are claimed on PostgreSQL by seq range from a per-send cursor whose row lock
orders the claims (rows in flight stay ``pending`` in the table and are counted as
``sending``; see ``claims``), so any number of workers on any number of machines share a
send; a batch accepted as a whole is recorded on its batch row and its rows, still
``pending`` in the table, are ``sent`` (``outcomes`` reads them so: ``pending``, ``sending``
and ``sent`` are read only through it; the other statuses are always written to the row); on SQLite one process claims (``BEGIN IMMEDIATE`` serialises its threads). Workers register in ``send_workers`` and
heartbeat; a batch left ``sending`` by a worker whose heartbeat stopped (or whose process
is gone, on the same host) is reconciled: message by message from the worker's progress
journal where it can be read, else the whole batch ``uncertain``.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import sqlalchemy as sa
from sqlalchemy.engine import Engine

from ..audience.receiving import CLEAR, SUPPRESSED, receives, suppression_joined
from ..db.tables import (
    ID,
    memberships,
    send_recipients,
    sends,
    subscribers,
)
from ..db.transactions import DB, aware, retry_on_conflict, transaction, utcnow
from ..errors import SendExists, SendNotFound
from . import outcomes
from .claims import lock_cursor, write_transaction

if TYPE_CHECKING:
    from ..authoring.identity import Identity  # not at run time: `sends list` starts faster
    from .requeue import Requeued

STATUSES = ("pending", "sending", "sent", "temporary", "failed", "uncertain", "skipped",
            "held")
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
        """Recipients pending, being sent or held for a subject test's decision (at least 1
        while the snapshot is incomplete)."""
        count = sum(self.counts.get(s, 0) for s in ("pending", "sending", "held"))
        return max(count, 1) if self.snapshotting else count

    @property
    def ok(self) -> bool:
        bad = ("temporary", "failed", "uncertain", "pending", "sending", "held")
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
    # the range on both sides of the join: PostgreSQL does not carry a range across an
    # equality, and without it scanned the whole list's memberships for every chunk
    span = sa.and_(subscribers.c.id > after, subscribers.c.id <= upper,
                   memberships.c.subscriber_id > after, memberships.c.subscriber_id <= upper)
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
    locked and re-read first, so each chunk is copied once. The lock is PostgreSQL's
    ``FOR NO KEY UPDATE`` (only ``total`` and ``snapshot_after`` change): a full row
    lock would also block the key checks of every claim's batch row, so every worker
    waited for each chunk's commit (a tenth of a million-recipient send's time).
    """
    with write_transaction(engine) as conn:
        row = conn.execute(
            sa.select(sends.c.list_id, sends.c.snapshot_after, sends.c.snapshot_until,
                      sends.c.total)
            .where(sends.c.id == send_id).with_for_update(key_share=True)
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
    send_id: int, list_id: int, condition: sa.ColumnElement[bool] | None,
    behind: int | None = None,
) -> sa.Insert:
    """INSERT ... SELECT of the list's members who may receive (``receiving.receives``)
    and match ``condition``, as pending; members refused only because their address is
    suppressed are recorded ``skipped`` (reason ``suppressed``), so the report counts them.
    ``behind``: the send's claim cursor (PostgreSQL, a later wave): rows at or below it
    are born ``requeued`` (``outcomes``: the cursor will not come back for them)."""
    listed, on, suppression = suppression_joined()
    clear = suppression == CLEAR
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
        .outerjoin(listed, on)
        .where(memberships.c.list_id == list_id, receives(suppression=sa.literal(CLEAR)))
    )
    if condition is not None:
        snapshot = snapshot.where(condition)
    names = ["send_id", "seq", "subscriber_id", "email", "name", "status", "attempts",
             "reason"]
    if behind is not None:
        snapshot = snapshot.add_columns((subscribers.c.id <= behind).label("requeued"))
        names.append("requeued")
    return send_recipients.insert().from_select(names, snapshot)


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
        behind = lock_cursor(conn, send_id)  # PostgreSQL: no claim moves meanwhile
        conn.execute(_snapshot(send_id, row.list_id, sa.and_(condition, ~already), behind))
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
    SQLite), so callers that only need the send itself skip it. The counts come from
    one snapshot: on PostgreSQL a batch in flight is counted by a second statement
    (``count_in_flight``), which must see the batch as the first one did.
    """
    with transaction(db, read=True, snapshot=counts) as conn:
        row = conn.execute(sa.select(*_INFO_COLUMNS).where(sends.c.id == send_id)).first()
        if row is None:
            raise SendNotFound(
                f"no send with id {send_id}; `newsletter sends list` shows the sends"
            )
        if not counts:
            return _info(row)
        per_status = outcomes.status_counts(conn, [send_id])[send_id]
    return _info(row, per_status)


def send_content(db: DB, send_id: int) -> tuple[str, str]:
    with transaction(db) as conn:
        row = conn.execute(sa.select(sends.c.html, sends.c.text).where(sends.c.id == send_id)).one()
    return row.html, row.text


def list_sends(db: DB, *, limit: int = 50) -> list[SendInfo]:
    with transaction(db, read=True, snapshot=True) as conn:  # counts: see get_send
        rows = conn.execute(
            sa.select(*_INFO_COLUMNS).order_by(sends.c.id.desc()).limit(limit)
        ).all()
        counts = outcomes.status_counts(conn, [r.id for r in rows])
    return [_info(r, counts[r.id]) for r in rows]


def recipients(
    db: DB, send_id: int, statuses: Iterable[str], *, limit: int | None = 100
) -> list[sa.Row]:
    """The send's recipients in ``statuses`` (as ``outcomes`` reads them), in seq order."""
    with transaction(db) as conn:
        status = outcomes.status_of(conn)
        query = (
            sa.select(*outcomes.with_status(conn))
            .where(send_recipients.c.send_id == send_id, status.in_(list(statuses)))
            .order_by(send_recipients.c.seq)
        )
        if limit is not None:
            query = query.limit(limit)
        return list(conn.execute(query).all())


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


def in_flight(db: DB, send_id: int) -> int:
    """How many recipients of the send are still pending, in a batch being sent, or held
    for a subject test's decision."""
    with transaction(db, snapshot=True) as conn:
        return outcomes.unfinished_count(conn, send_id)


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
    once (at the end of a million-recipient send, each count reads a million rows), from
    one snapshot (``get_send``); when another process sharing the send settles it at the
    same moment, PostgreSQL refuses one of the two updates and that one counts again.
    """
    def attempt() -> SendInfo:
        with transaction(db, snapshot=True) as conn:
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

    return attempt() if isinstance(db, sa.Connection) else retry_on_conflict(attempt)


def cancel_send(db: DB, send_id: int, *, reason: str = "the send was cancelled") -> int:
    """Stop a send: its recipients not yet claimed are ``skipped`` with ``reason`` and never
    sent; batches in flight finish and are recorded. Returns how many were skipped."""
    now = utcnow()
    with transaction(db) as conn:
        skipped = conn.execute(
            send_recipients.update()
            .where(send_recipients.c.send_id == send_id,  # not those in flight or sent
                   sa.or_(outcomes.claimable(conn, send_id),
                          send_recipients.c.status == "held"))
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
