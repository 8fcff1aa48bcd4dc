"""A batch accepted as a whole, recorded once (revision 0021, ``delivery.outcomes``).

On PostgreSQL such a batch's rows are not written: they stay pending behind the send's
cursor and the batch row is their record. Every test here asserts what a user sees (the
counts, ``sends recipients``, the reports, a subscriber's export) on both databases, and
on PostgreSQL also that the rows really were not written, which is the point.
"""

from __future__ import annotations

import pytest
import sqlalchemy as sa
from alembic import command
from sqlalchemy.engine import Engine

from newsletter.audience.lists import create_list
from newsletter.audience.preferences import download
from newsletter.audience.subscribers import (
    add_subscriber,
    get_subscriber,
    remove_subscriber,
    set_status,
    unsubscribe,
)
from newsletter.db.engine import make_engine
from newsletter.db.schema import alembic_config
from newsletter.db.tables import send_recipients, subscribers
from newsletter.delivery import claims, ledger, outcomes, senders

from .sendtools import pg_database

SENT = claims.Verdict("sent", "", "x-message-id")


def _send(store: Engine, count: int) -> ledger.SendInfo:
    list_id = create_list(store, "daily").id
    for n in range(1, count + 1):
        add_subscriber(store, f"r{n}@example.com", name=f"Reader {n}", lists=["daily"])
    send_id = ledger.create_send(store, kind="real", issue_path="issues/2026-11-30.md",
                                 issue_slug="2026-11-30", subject="S", list_id=list_id,
                                 list_name="daily", backend="sendgrid", html="<p>h</p>",
                                 text="t")
    return ledger.get_send(store, send_id)


def _answer(rows: list[claims.ClaimedRow], verdict: claims.Verdict = SENT,
            each: tuple[claims.Outcome, ...] = ()) -> claims.Answer:
    return claims.Answer(rows[0].seq, rows[-1].seq, each, verdict)


def _send_batches(store: Engine, send: ledger.SendInfo, size: int, batches: int) -> str:
    """Claim and answer ``batches`` batches of ``size`` as accepted; the worker's id."""
    worker = senders.register_worker(store, send.id)
    for _ in range(batches):
        batch_id, rows = claims.claim_batch(store, send, worker, size)
        claims.record_batch(store, send.id, batch_id, _answer(rows))
    return worker


def _raw(store: Engine) -> dict[int, str]:
    with store.connect() as conn:
        return dict(conn.execute(sa.select(send_recipients.c.seq, send_recipients.c.status)
                                 .order_by(send_recipients.c.seq)).all())


def test_every_reader_sees_a_batch_accepted_whole_as_sent(store: Engine) -> None:
    send = _send(store, 5)
    _send_batches(store, send, 2, 2)  # r1..r4 sent, r5 still pending
    if store.dialect.name == "postgresql":  # the point: those rows were not written
        assert _raw(store) == dict.fromkeys(range(1, 6), "pending")
    assert ledger.get_send(store, send.id).counts == {"sent": 4, "pending": 1}
    sent = ledger.recipients(store, send.id, ["sent"])
    assert [r.seq for r in sent] == [1, 2, 3, 4]
    assert {(r.status, r.attempts, r.provider_id) for r in sent} == {
        ("sent", 1, "x-message-id")}
    assert all(r.updated_at is not None for r in sent)
    assert [r.seq for r in ledger.recipients(store, send.id, ["pending"])] == [5]
    assert not ledger.finish_if_done(store, send.id)
    _send_batches(store, send, 2, 1)
    assert ledger.settle(store, send.id).status == "finished"
    assert ledger.get_send(store, send.id).counts == {"sent": 5}


def test_who_leaves_after_their_message_went_stays_sent(store: Engine) -> None:
    """Unsubscribing, bouncing, complaining or being erased after the batch was accepted
    (the send still under way, so the skip triggers are armed) changes no sent row; the
    reader not yet claimed is skipped, as before."""
    send = _send(store, 6)
    _send_batches(store, send, 4, 1)  # r1..r4 sent
    unsubscribe(store, "r1@example.com")
    unsubscribe(store, "r2@example.com", "daily")
    set_status(store, "r3@example.com", "bounced", "webhook")
    remove_subscriber(store, "r4@example.com", key="k")
    unsubscribe(store, "r5@example.com")  # not yet claimed
    assert ledger.get_send(store, send.id).counts == {"sent": 4, "skipped": 1, "pending": 1}
    erased = ledger.recipients(store, send.id, ["sent"])[3]
    assert erased.email.startswith("erased:") and erased.status == "sent"


def test_a_cancel_skips_only_who_was_not_claimed(store: Engine) -> None:
    send = _send(store, 6)
    worker = _send_batches(store, send, 2, 1)  # r1, r2 sent
    batch_id, rows = claims.claim_batch(store, send, worker, 2)  # r3, r4 in flight
    assert ledger.cancel_send(store, send.id) == 2  # r5, r6
    assert ledger.get_send(store, send.id).counts == {"sent": 2, "sending": 2, "skipped": 2}
    claims.record_batch(store, send.id, batch_id, _answer(rows))  # the answer still counts
    assert ledger.get_send(store, send.id).counts == {"sent": 4, "skipped": 2}


def test_a_batch_partly_refused_is_written_for_the_refused_and_sent_for_the_rest(
        store: Engine) -> None:
    send = _send(store, 4)
    worker = senders.register_worker(store, send.id)
    batch_id, rows = claims.claim_batch(store, send, worker, 4)
    refused = (claims.Outcome(2, "failed", "550 no such user"),)
    claims.record_batch(store, send.id, batch_id, _answer(rows, each=refused))
    assert ledger.get_send(store, send.id).counts == {"sent": 3, "failed": 1}
    failed = ledger.recipients(store, send.id, ["failed"])
    assert [(r.seq, r.reason) for r in failed] == [(2, "550 no such user")]
    if store.dialect.name == "postgresql":
        assert _raw(store) == {1: "pending", 2: "failed", 3: "pending", 4: "pending"}


def test_a_later_wave_behind_the_cursor_is_pending_until_claimed(store: Engine) -> None:
    send = _send(store, 6)
    with store.begin() as conn:  # r2 and r4 join the send later (a later wave)
        conn.execute(send_recipients.delete().where(send_recipients.c.seq.in_([2, 4])))
    send = ledger.get_send(store, send.id)
    _send_batches(store, send, 4, 1)  # r1, r3, r5, r6: the cursor is past r2 and r4
    assert ledger.add_recipients(store, send.id, subscribers.c.id.in_([2, 4])) == 2
    assert ledger.get_send(store, send.id).counts == {"sent": 4, "pending": 2}
    _send_batches(store, send, 4, 1)
    assert ledger.get_send(store, send.id).counts == {"sent": 6}


def test_the_subscribers_export_says_sent(store: Engine) -> None:
    send = _send(store, 2)
    _send_batches(store, send, 2, 1)
    subscriber = get_subscriber(store, "r1@example.com")
    received = download(store, subscriber.id)["sends_received"]
    assert [(r["send"], r["status"]) for r in received] == [(send.id, "sent")]
    assert received[0]["updated_at"] is not None


# -- revision 0021 on PostgreSQL: downgrade writes the rows ------------------------------


def _downgrade_writes_the_rows(engine: Engine) -> None:
    config = alembic_config(engine)
    command.upgrade(config, "heads")
    send = _send(engine, 3)
    _send_batches(engine, send, 2, 1)
    assert _raw(engine) == {1: "pending", 2: "pending", 3: "pending"}
    command.downgrade(config, "0020_ledger_fillfactor_35")
    with engine.connect() as conn:
        rows = conn.exec_driver_sql("SELECT seq, status, provider_id, attempts FROM "
                                    "send_recipients ORDER BY seq").all()
    assert [tuple(r) for r in rows] == [(1, "sent", "x-message-id", 1),
                                        (2, "sent", "x-message-id", 1),
                                        (3, "pending", None, 0)]
    # the old triggers again: an unsubscribe skips the pending row, and only that
    unsubscribe(engine, "r1@example.com")
    unsubscribe(engine, "r3@example.com")
    assert _raw(engine) == {1: "sent", 2: "sent", 3: "skipped"}
    command.upgrade(config, "heads")
    with engine.connect() as conn:
        assert outcomes.status_counts(conn, [send.id]) == {
            send.id: {"sent": 2, "skipped": 1}}


@pytest.mark.postgres
def test_downgrading_revision_0021_writes_what_the_batches_recorded() -> None:
    with pg_database() as url:
        engine = make_engine(url)
        try:
            _downgrade_writes_the_rows(engine)
        finally:
            engine.dispose()
