"""Subject tests' decisions, as the worker process polls them.

A test starts with its send: ``newsletter send``'s, or a schedule's when the worker
starts it (``due``: the options ``newsletter schedule`` stored, or the issue's
``subject_variants``). When a test's ``decide_at`` has passed, ``decide_due`` picks the winner and releases the
rest of the list to it (``delivery.variants.decide``: one transaction, once, whichever
worker process gets there first); the worker then runs the send, so the editor's
terminal may have closed long before. A worker process killed at any moment leaves
either an undecided test (decided again by the next one) or a decided send with pending
recipients, which ``to_run`` finds and the next worker process resumes through the
ledger: nobody gets two subjects, nobody gets one twice.
"""

from __future__ import annotations

import datetime as dt

import sqlalchemy as sa

from newsletter.db.tables import send_recipients, sends, subject_tests
from newsletter.db.transactions import transaction

from .context import WorkerContext
from .log import event
from .tables import schedules


def decide_due(ctx: WorkerContext, now: dt.datetime) -> list[int]:
    """Decide every test that is due; the sends it released."""
    from newsletter.delivery import variants  # here: it loads the renderer (schedule list)

    decided = []
    for send_id in variants.due_tests(ctx.engine, now):
        event("subject_test.deciding", send=send_id)
        test = variants.decide(ctx.engine, send_id, now)
        if test is not None:
            event("subject_test.decided", send=send_id, winner=test.winner, note=test.note)
            decided.append(send_id)
    return decided


def to_run(ctx: WorkerContext, *, in_flight_too: bool = False) -> list[int]:
    """Sends of decided tests with recipients still pending (``in_flight_too``: or in a
    batch being sent, which a worker process that died may have left; run() settles them).
    Not those of a schedule that is sending: the worker resumes those as the schedule's
    (``due.resume``), which settles the schedule when the rest of the list has it."""
    from newsletter.delivery import outcomes

    r = send_recipients.c
    scheduled = sa.exists(sa.select(sa.literal(1)).where(
        schedules.c.send_id == subject_tests.c.send_id, schedules.c.status == "sending"))
    with transaction(ctx.engine, read=True) as conn:
        rows = outcomes.claimable(conn)
        if in_flight_too:
            rows = sa.or_(rows, outcomes.in_flight(conn))
        waiting = sa.exists(sa.select(sa.literal(1)).where(
            r.send_id == subject_tests.c.send_id, rows))
        return list(conn.execute(
            sa.select(subject_tests.c.send_id)
            .join(sends, sends.c.id == subject_tests.c.send_id)
            .where(subject_tests.c.status == "decided", sends.c.status == "sending", waiting,
                   ~scheduled)
            .order_by(subject_tests.c.send_id)).scalars())


def next_decision(ctx: WorkerContext) -> dt.datetime | None:
    from newsletter.delivery import variants

    return variants.next_decision(ctx.engine)
