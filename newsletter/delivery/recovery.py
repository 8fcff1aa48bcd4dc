"""The batches of workers that died mid-send: ``ledger.reconcile``.

A worker claims a batch before it calls the backend and records the answer after: its
rows are marked ``sending``, or (PostgreSQL's cursor path) stay pending with their seqs
in the batch row (``claims.batch_rows`` finds them either way; a row a trigger skipped
while in flight counts as in flight: its message may have left). A worker found dead
(stopped, no heartbeat for ``senders.LEASE``, or its process gone from this machine) may
have left a batch ``sending``. Its progress journal
(``delivery.journal``), where it can be believed, says message by message what happened:

- accepted by the backend (SMTP 250, API 2xx, outbox file in place) -> ``sent``;
- handed over with no answer yet (at most one per SMTP connection, per outbox worker,
  or the recipients of one API request) -> ``uncertain``;
- never handed over, or answered without being accepted -> ``pending`` again (the next
  run sends it, as if it had never been claimed), or ``skipped`` if the subscriber may
  no longer receive (``requeue.reopen`` asks the rule).

Without a journal to believe (the worker ran on another machine, this one has rebooted
since, as after a power cut, or it kept none), every recipient of the batch is
``uncertain``, as before journals.
"""

from __future__ import annotations

import datetime as dt
import socket
from pathlib import Path

import sqlalchemy as sa

from ..db.tables import send_batches, send_recipients
from ..db.transactions import DB, transaction, utcnow
from . import journal
from .claims import batch_rows
from .requeue import reopen
from .senders import dead_workers

UNKNOWN = "the worker stopped during the backend call; outcome unknown"
NO_ANSWER = "the worker stopped after handing the message over, before the answer"
ACCEPTED = "accepted; recorded from the worker's progress journal after it stopped"
_IN_CHUNKS = 500  # seqs per IN (...) list


def _effect(mark: str | None) -> str | None:
    """Accepted or handed over (to be settled so), or None: never delivered (pending)."""
    return mark if mark in (journal.ACCEPTED, journal.HANDED) else None


def _apply(conn: sa.Connection, send_id: int, mark: str | None,
           where: tuple[sa.ColumnElement[bool], ...], now: dt.datetime) -> int:
    """Rows ``where`` as ``mark`` says; returns how many changed."""
    if mark in (journal.ACCEPTED, journal.HANDED):
        accepted = mark == journal.ACCEPTED
        return conn.execute(send_recipients.update().where(*where).values(
            status="sent" if accepted else "uncertain",
            reason=ACCEPTED if accepted else NO_ANSWER, updated_at=now,
            attempts=send_recipients.c.attempts + 1)).rowcount
    done = reopen(conn, send_id, where)  # never handed over, or refused: not delivered
    return done.pending + done.skipped_total


def settle_dead_workers(db: DB, send_id: int) -> int:
    """Settle the send's batches left ``sending`` by dead workers, in one transaction;
    returns how many recipients changed. Then removes those workers' journals."""
    now = utcnow()
    host = socket.gethostname()[:255]
    with transaction(db) as conn:
        dead = {row.id: row for row in dead_workers(conn, send_id, now)}
        if not dead:
            return 0
        batches = conn.execute(  # locked: two processes resuming at once settle each once
            sa.select(send_batches.c.id, send_batches.c.worker_id)
            .where(send_batches.c.send_id == send_id, send_batches.c.status == "sending",
                   send_batches.c.worker_id.in_(list(dead)))
            .order_by(send_batches.c.id).with_for_update()
        ).all()
        marks: dict[str, dict[int, journal.Marks] | None] = {}
        changed = 0
        for batch_id, worker_id in batches:
            if worker_id not in marks:
                row = dead[worker_id]
                local = row.journal_dir is not None and row.host == host
                marks[worker_id] = journal.read(Path(row.journal_dir), worker_id) if local else None
            known = marks[worker_id]
            batch_marks = None if known is None else known.get(batch_id, journal.Marks())
            changed += _settle(conn, send_id, batch_id, batch_marks, now)
    for row in dead.values():  # their batches are settled: the journals are done with
        if row.journal_dir is not None and row.host == host:
            journal.remove(Path(row.journal_dir), row.id)
    return changed


def _settle(conn: sa.Connection, send_id: int, batch_id: int,
            marks: journal.Marks | None, now: dt.datetime) -> int:
    """One batch: from its marks, or (None) every recipient still in it uncertain."""
    in_batch = tuple(batch_rows(conn, send_id, batch_id))
    if marks is None:
        uncertain = conn.execute(send_recipients.update().where(*in_batch).values(
            status="uncertain", reason=UNKNOWN, updated_at=now)).rowcount
        changed = uncertain
    else:
        by_mark: dict[str | None, list[int]] = {}
        rest = _effect(marks.rest)
        for seq, mark in marks.each.items():
            if _effect(mark) != rest:  # else it is settled with the rest
                by_mark.setdefault(_effect(mark), []).append(seq)
        changed = uncertain = 0
        for mark, seqs in by_mark.items():
            for start in range(0, len(seqs), _IN_CHUNKS):
                where = (*in_batch, send_recipients.c.seq.in_(seqs[start:start + _IN_CHUNKS]))
                count = _apply(conn, send_id, mark, where, now)
                changed += count
                uncertain += count if mark == journal.HANDED else 0
        count = _apply(conn, send_id, rest, in_batch, now)
        changed += count
        uncertain += count if rest == journal.HANDED else 0
    conn.execute(send_batches.update().where(send_batches.c.id == batch_id).values(
        status="uncertain" if uncertain else "done", finished_at=now))
    return changed
