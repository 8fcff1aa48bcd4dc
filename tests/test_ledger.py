"""The delivery ledger on its own: create a send, claim, record, settle, find it again.

Every test runs on SQLite and PostgreSQL (the ``store`` fixture). What is asserted is
what ``newsletter sends show`` reports: each recipient's status and reason, the send's
counts and status.
"""

from __future__ import annotations

import datetime as dt

import pytest
from sqlalchemy.engine import Engine

from newsletter.audience.lists import create_list
from newsletter.audience.subscribers import add_subscriber, set_status, unsubscribe
from newsletter.authoring.identity import Identity
from newsletter.delivery import claims, ledger, senders


def _list(store: Engine, count: int, name: str = "daily") -> int:
    mailing_list = create_list(store, name)
    for n in range(1, count + 1):
        add_subscriber(store, f"r{n}@example.com", name=f"Reader {n}", lists=[name])
    return mailing_list.id


def _send(store: Engine, list_id: int, slug: str = "2026-11-24", **options) -> int:
    return ledger.create_send(store, kind="real", issue_path=f"issues/{slug}.md",
                              issue_slug=slug, subject="S", list_id=list_id, list_name="daily",
                              backend="outbox", html="<p>h</p>", text="t", **options)


def _statuses(store: Engine, send_id: int) -> dict[str, str]:
    return {r.email: r.status
            for r in ledger.recipients(store, send_id, ledger.STATUSES, limit=None)}


def test_a_send_snapshots_exactly_who_may_receive(store: Engine) -> None:
    list_id = _list(store, 5)
    set_status(store, "r2@example.com", "bounced", "test")
    unsubscribe(store, "r3@example.com", list_name="daily")
    create_list(store, "weekly")
    add_subscriber(store, "other@example.com", lists=["weekly"])
    send_id = _send(store, list_id)
    send = ledger.get_send(store, send_id)
    assert send.status == "sending" and send.total == 3
    assert send.counts == {"pending": 3}
    assert _statuses(store, send_id) == {f"r{n}@example.com": "pending" for n in (1, 4, 5)}
    add_subscriber(store, "late@example.com", lists=["daily"])  # signs up after it started
    assert ledger.get_send(store, send_id).total == 3


def test_claim_record_and_settle(store: Engine) -> None:
    send_id = _send(store, _list(store, 5))
    send = ledger.get_send(store, send_id)
    sender = senders.register_worker(store, send_id)
    batch_id, rows = claims.claim_batch(store, send, sender, 3)
    claimed = list(rows)  # ClaimedRow: named fields
    assert [c.email for c in claimed] == ["r1@example.com", "r2@example.com", "r3@example.com"]
    assert ledger.get_send(store, send_id).counts == {"sending": 3, "pending": 2}
    answer = claims.Answer(low=claimed[0].seq, high=claimed[-1].seq, each=[
        claims.Outcome(claimed[1].seq, "failed", "550 no such user"),
        claims.Outcome(claimed[2].seq, "temporary", "451 try later"),
    ], rest=claims.Verdict("sent", provider_id="id-1"))
    claims.record_batch(store, send_id, batch_id, answer)
    assert ledger.settle(store, send_id).status == "sending"  # two still pending
    second = claims.claim_batch(store, send, sender, 3)
    assert second is not None and len(second[1]) == 2
    low, high = second[1][0][3], second[1][-1][3]
    claims.record_batch(store, send_id, second[0],
                        claims.Answer(low, high, rest=claims.Verdict("sent")))
    assert claims.claim_batch(store, send, sender, 3) is None  # nothing left
    info = ledger.settle(store, send_id)
    assert info.status == "finished" and info.finished_at is not None
    assert info.counts == {"sent": 3, "failed": 1, "temporary": 1} and not info.ok
    failed = ledger.recipients(store, send_id, ["failed"])
    assert [(r.email, r.reason) for r in failed] == [("r2@example.com", "550 no such user")]
    assert ledger.requeue(store, send_id, ["temporary"]) == 1
    assert ledger.get_send(store, send_id).status == "sending"


def test_a_batch_of_a_dead_sender_becomes_uncertain_not_pending(store: Engine) -> None:
    send_id = _send(store, _list(store, 4))
    send = ledger.get_send(store, send_id)
    sender = senders.register_worker(store, send_id)
    claims.claim_batch(store, send, sender, 2)
    assert ledger.reconcile(store, send_id) == 0  # alive: its batch is in flight
    senders.stop_worker(store, sender)  # it stopped without recording an answer
    assert ledger.reconcile(store, send_id) == 2
    assert ledger.get_send(store, send_id).counts == {"uncertain": 2, "pending": 2}
    assert ledger.reconcile(store, send_id) == 0  # once


def test_find_latest_knows_an_issue_by_slug_and_by_identity(store: Engine) -> None:
    list_id = _list(store, 2)
    assert ledger.find_latest(store, "2026-11-24", list_id) is None
    same = Identity(dt.date(2026, 11, 24), "k" * 64, "c" * 64)
    first = _send(store, list_id, identity=same)
    ledger.settle(store, first)
    assert ledger.find_latest(store, "2026-11-24", list_id).id == first
    renamed = ledger.find_latest(store, "2026-11-24-copy", list_id,
                                 Identity(dt.date(2026, 11, 24), "k" * 64, "x" * 64))
    assert renamed is not None and renamed.id == first  # same date and subject
    edited = ledger.find_latest(store, "other", list_id,
                                Identity(dt.date(2026, 11, 25), "y" * 64, "c" * 64))
    assert edited is not None and edited.id == first  # same content
    assert ledger.find_latest(store, "other", list_id,
                              Identity(dt.date(2026, 11, 25), "y" * 64, "z" * 64)) is None
    other_list = create_list(store, "weekly").id
    assert ledger.find_latest(store, "2026-11-24", other_list, same) is None


def test_a_second_unfinished_send_of_the_issue_to_the_list_is_refused(store: Engine) -> None:
    list_id = _list(store, 2)
    identity = Identity(dt.date(2026, 11, 24), "k" * 64, "c" * 64)
    first = _send(store, list_id, identity=identity)
    with pytest.raises(ledger.SendExists, match="being sent to list 'daily'"):
        _send(store, list_id, slug="2026-11-24-copy", identity=identity)
    for _ in range(2):  # once it is finished, sending it again (--again) is a new send
        claims.record_batch(store, first, *_all_sent(store, first))
    assert ledger.settle(store, first).status == "finished"
    assert _send(store, list_id, identity=identity) != first


def _all_sent(store: Engine, send_id: int) -> tuple[int, claims.Answer]:
    claimed = claims.claim_batch(store, ledger.get_send(store, send_id),
                                 senders.register_worker(store, send_id), 1)
    assert claimed is not None
    batch_id, rows = claimed
    return batch_id, claims.Answer(rows[0][3], rows[-1][3], rest=claims.Verdict("sent"))


def test_cancel_send_skips_the_pending_and_lets_the_batch_in_flight_finish(store: Engine
                                                                          ) -> None:
    send_id = _send(store, _list(store, 5))
    send = ledger.get_send(store, send_id)
    sender = senders.register_worker(store, send_id)
    batch_id, rows = claims.claim_batch(store, send, sender, 2)
    assert ledger.cancel_send(store, send_id, reason="the schedule was cancelled") == 3
    claims.record_batch(store, send_id, batch_id,
                        claims.Answer(rows[0][3], rows[-1][3], rest=claims.Verdict("sent")))
    info = ledger.get_send(store, send_id)
    assert info.status == "cancelled" and info.counts == {"sent": 2, "skipped": 3}
    skipped = ledger.recipients(store, send_id, ["skipped"])
    assert {r.reason for r in skipped} == {"the schedule was cancelled"}
    assert claims.claim_batch(store, send, sender, 5) is None  # nothing more goes out
    assert ledger.cancel_send(store, send_id) == 0
    assert ledger.get_send(store, send_id).status == "cancelled"


def test_test_sends_hold_only_their_addresses(store: Engine) -> None:
    list_id = _list(store, 3)
    send_id = ledger.create_send(store, kind="test", issue_path="issues/a.md", issue_slug="a",
                                 subject="[TEST] S", list_id=list_id, list_name="daily",
                                 backend="outbox", html="", text="",
                                 test_to=["me@example.org", "desk@example.org"])
    assert _statuses(store, send_id) == {"me@example.org": "pending",
                                         "desk@example.org": "pending"}
    assert ledger.find_latest(store, "a", list_id) is None  # not a real send
