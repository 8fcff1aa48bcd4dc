"""Claims on both databases, and PostgreSQL's claim cursor (migration 0017).

On PostgreSQL a claim moves the send's cursor past the next pending rows and leaves them
pending until the answer; rows made pending again behind it (retries, released batches,
recovery, later waves) are claimed by a second path. What is asserted is what a user
sees: who is claimed (once), the send's counts, each recipient's status.
"""

from __future__ import annotations

import threading
from collections import Counter

import sqlalchemy as sa
from sqlalchemy.engine import Engine

from newsletter.audience.lists import create_list
from newsletter.audience.subscribers import add_subscriber, unsubscribe
from newsletter.db.engine import make_engine
from newsletter.db.tables import subscribers
from newsletter.delivery import claims, ledger, outcomes, senders

SENT = claims.Verdict("sent", "", "x-message-id")


def _list(store: Engine, count: int) -> int:
    mailing_list = create_list(store, "daily")
    for n in range(1, count + 1):
        add_subscriber(store, f"r{n}@example.com", name=f"Reader {n}", lists=["daily"])
    return mailing_list.id


def _send(store: Engine, list_id: int, **options) -> ledger.SendInfo:
    send_id = ledger.create_send(store, kind="real", issue_path="issues/2026-11-24.md",
                                 issue_slug="2026-11-24", subject="S", list_id=list_id,
                                 list_name="daily", backend="outbox", html="<p>h</p>",
                                 text="t", **options)
    return ledger.get_send(store, send_id)


def _answer(rows: list[claims.ClaimedRow], verdict: claims.Verdict = SENT,
            each: tuple[claims.Outcome, ...] = ()) -> claims.Answer:
    return claims.Answer(rows[0].seq, rows[-1].seq, each, verdict)


def _drain(engine: Engine, send: ledger.SendInfo, size: int) -> list[int]:
    """Claim and answer ``sent`` until nothing is pending; the seqs claimed, in order."""
    worker = senders.register_worker(engine, send.id)
    seen: list[int] = []
    claimed = claims.claim_batch(engine, send, worker, size)
    while claimed is not None:
        batch_id, rows = claimed
        seen += [r.seq for r in rows]
        claimed = claims.record_and_claim(engine, send, batch_id, _answer(rows), worker, size)
    return seen


def test_two_workers_with_their_own_connections_claim_each_recipient_once(
        store: Engine) -> None:
    """Two workers (each its own engine, as two processes have) share a send whose
    snapshot is still being copied, chunk by chunk, while they claim."""
    send = _send(store, _list(store, 60), first_chunk=10)
    assert send.snapshotting
    url = store.url.render_as_string(hide_password=False)
    engines = [make_engine(url), make_engine(url)]
    claimed: list[list[int]] = [[], []]

    def work(k: int) -> None:
        for _ in range(20):  # the snapshot may still be adding rows: ask again
            claimed[k] += _drain(engines[k], send, 7)

    try:
        threads = [threading.Thread(target=work, args=(k,)) for k in (0, 1)]
        for thread in threads:
            thread.start()
        after = send.snapshot_after
        while after is not None:
            _, after = ledger.continue_snapshot(store, send.id, 10)
        for thread in threads:
            thread.join()
        claimed[0] += _drain(engines[0], send, 7)  # anything copied after they stopped
    finally:
        for engine in engines:
            engine.dispose()
    every = Counter(claimed[0] + claimed[1])
    assert sorted(every) == sorted(r.seq for r in ledger.recipients(
        store, send.id, ledger.STATUSES, limit=None))
    assert len(every) == 60 and set(every.values()) == {1}, "a recipient claimed twice"
    assert ledger.get_send(store, send.id).counts == {"sent": 60}


def test_a_requeued_row_is_claimed_again_once(store: Engine) -> None:
    send = _send(store, _list(store, 20))
    worker = senders.register_worker(store, send.id)
    batch_id, rows = claims.claim_batch(store, send, worker, 5)  # r1..r5
    failed = (claims.Outcome(2, "temporary", "451 try later"),)
    claims.record_batch(store, send.id, batch_id, _answer(rows, each=failed))
    assert ledger.get_send(store, send.id).counts == {"sent": 4, "temporary": 1,
                                                      "pending": 15}
    assert ledger.requeue(store, send.id, ["temporary"]) == 1  # now behind the cursor
    seen = _drain(store, send, 5)
    assert Counter(seen) == Counter(range(2, 21)) - Counter(range(3, 6))
    assert ledger.get_send(store, send.id).counts == {"sent": 20}


def test_a_later_wave_behind_the_cursor_is_claimed(store: Engine) -> None:
    list_id = _list(store, 12)
    send = _send(store, list_id, recipient_filter=subscribers.c.id % 2 == 0)
    assert _drain(store, send, 4) == [2, 4, 6, 8, 10, 12]
    added = ledger.add_recipients(store, send.id, subscribers.c.id % 2 == 1)
    assert added == 6
    assert sorted(_drain(store, send, 4)) == [1, 3, 5, 7, 9, 11]
    assert ledger.get_send(store, send.id).counts == {"sent": 12}


def test_a_dead_workers_batch_is_uncertain_even_for_who_left_while_it_was_out(
        store: Engine) -> None:
    """Killed mid-batch with no journal to believe: the batch is uncertain (a reader who
    unsubscribed while it was with the backend too: the message may have left); the rest
    of the send is untouched, and a late answer from the dead worker changes nothing."""
    send = _send(store, _list(store, 5))
    worker = senders.register_worker(store, send.id)
    batch_id, rows = claims.claim_batch(store, send, worker, 3)  # r1..r3
    unsubscribe(store, "r2@example.com")  # in flight
    unsubscribe(store, "r4@example.com")  # not yet claimed
    assert ledger.get_send(store, send.id).counts == {"sending": 3, "skipped": 1,
                                                      "pending": 1}
    senders.stop_worker(store, worker)  # as if its process had died
    assert ledger.reconcile(store, send.id) == 3
    states = {r.seq: r.status for r in ledger.recipients(store, send.id, ledger.STATUSES,
                                                           limit=None)}
    assert states == {1: "uncertain", 2: "uncertain", 3: "uncertain", 4: "skipped",
                      5: "pending"}
    claims.record_batch(store, send.id, batch_id, _answer(rows))  # too late: settled
    assert ledger.get_send(store, send.id).counts == {"uncertain": 3, "skipped": 1,
                                                      "pending": 1}
    assert _drain(store, send, 3) == [5]


def test_an_answer_records_who_left_while_the_batch_was_out(store: Engine) -> None:
    send = _send(store, _list(store, 3))
    worker = senders.register_worker(store, send.id)
    batch_id, rows = claims.claim_batch(store, send, worker, 2)
    unsubscribe(store, "r1@example.com")
    unsubscribe(store, "r3@example.com")
    claims.record_batch(store, send.id, batch_id, _answer(rows))
    with store.connect() as conn:
        found = dict(conn.execute(sa.select(ledger.send_recipients.c.seq,
                                            outcomes.status_of(conn))).all())
    assert found == {1: "sent", 2: "sent", 3: "skipped"}


def test_a_count_sees_a_batch_out_or_answered_never_its_rows_pending_again(
        store: Engine) -> None:
    """Another process records a batch's answer while this one counts the send, between
    the count's two statements (PostgreSQL: the statuses, then the batches still out):
    the count is of one moment, the batch out or answered, never its rows back to
    pending (which a process ending its share of a send reported as its last word)."""
    send = _send(store, _list(store, 6))
    batch_id, rows = claims.claim_batch(store, send, senders.register_worker(store, send.id), 4)
    other = make_engine(store.url.render_as_string(hide_password=False))
    answered: list[bool] = []

    def answer_in_between(conn, cursor, statement, *args) -> None:  # noqa: ANN001
        if not answered and "GROUP BY" in statement and "send_batches" not in statement:
            answered.append(True)  # after the statuses were counted
            claims.record_batch(other, send.id, batch_id, _answer(rows))

    sa.event.listen(store, "after_cursor_execute", answer_in_between)
    try:
        counts = ledger.get_send(store, send.id).counts
    finally:
        sa.event.remove(store, "after_cursor_execute", answer_in_between)
        other.dispose()
    assert answered
    assert counts in ({"sending": 4, "pending": 2}, {"sent": 4, "pending": 2}), counts
    assert ledger.get_send(store, send.id).counts == {"sent": 4, "pending": 2}
