"""A subscriber who stops being sendable during a send is skipped, whatever the change.

The database's triggers (migration 0004_skip_unsendable) mark the subscriber's pending
rows in unfinished real sends ``skipped`` when their status or a membership changes; the
claim no longer checks each recipient. Run on SQLite and on PostgreSQL.
"""

from __future__ import annotations

import contextlib
import datetime as dt
from pathlib import Path

import pytest
import sqlalchemy as sa

from newsletter.audience.lists import delete_list
from newsletter.audience.subscribers import remove_subscriber, set_status, unsubscribe
from newsletter.db.tables import memberships, subscribers
from newsletter.delivery import claims, ledger, outcomes, senders, sending

from .sendtools import make_project, pg_database, seed

ISSUE = "issues/2026-11-24.md"


@pytest.fixture(params=["sqlite", "postgresql"])
def project(request, tmp_path: Path):
    with pg_database() if request.param == "postgresql" else contextlib.nullcontext() as url:
        settings = make_project(tmp_path / "p", url)
        engine = seed(settings, 6)  # r1..r6 on "daily"
        seed(settings, 3, list_name="weekly", domain="example.net")  # ids 7..9
        now = dt.datetime.now(dt.UTC)
        with engine.begin() as conn:  # r1..r3 are on "weekly" too
            weekly = conn.execute(sa.text("SELECT id FROM lists WHERE name = 'weekly'")).scalar()
            conn.execute(memberships.insert(), [
                {"list_id": weekly, "subscriber_id": n, "status": "subscribed",
                 "created_at": now, "status_changed_at": now}
                for n in (1, 2, 3)
            ])
        yield settings, engine
        engine.dispose()


def _start(settings, engine, list_name: str, **options) -> ledger.SendInfo:
    prepared = sending.preflight(settings, settings.project_dir / ISSUE)
    return sending.start(engine, settings, prepared, list_name, backend="outbox",
                         **options).send


def _states(engine, send_id: int) -> dict[str, str]:
    with engine.connect() as conn:
        rows = conn.execute(sa.select(ledger.send_recipients.c.email,
                                      outcomes.status_of(conn))
                            .where(ledger.send_recipients.c.send_id == send_id)).all()
    return {email.split("@")[0]: status for email, status in rows}


def test_a_global_unsubscribe_skips_the_subscriber_in_every_unfinished_send(project) -> None:
    settings, engine = project
    daily, weekly = _start(settings, engine, "daily"), _start(settings, engine, "weekly")
    unsubscribe(engine, "r2@example.com")
    assert _states(engine, daily.id)["r2"] == "skipped"
    assert _states(engine, weekly.id)["r2"] == "skipped"
    assert {s for name, s in _states(engine, daily.id).items() if name != "r2"} == {"pending"}
    result = sending.run(engine, settings, daily.id, backend="outbox")
    assert result.counts == {"sent": 5, "skipped": 1}
    assert not (settings.project_dir / "outbox" / f"{daily.id}-2.eml").exists()


def test_a_list_unsubscribe_skips_only_that_lists_sends(project) -> None:
    settings, engine = project
    daily, weekly = _start(settings, engine, "daily"), _start(settings, engine, "weekly")
    unsubscribe(engine, "r1@example.com", list_name="weekly")
    assert _states(engine, weekly.id)["r1"] == "skipped"
    assert _states(engine, daily.id)["r1"] == "pending"


@pytest.mark.parametrize("status", ["bounced", "complained"])
def test_a_bounce_or_complaint_skips_pending_rows_only(project, status: str) -> None:
    settings, engine = project
    send = _start(settings, engine, "daily")
    worker = senders.register_worker(engine, send.id)
    batch_id, rows = claims.claim_batch(engine, send, worker, 2)  # r1, r2 being sent
    for email in ("r1@example.com", "r3@example.com"):
        set_status(engine, email, status, "webhook")
    assert _states(engine, send.id)["r3"] == "skipped"
    # too late for r1: still in flight (on PostgreSQL its row may say skipped meanwhile,
    # but it is counted as being sent, and its answer is what is recorded)
    assert ledger.get_send(engine, send.id).counts == {"sending": 2, "skipped": 1,
                                                       "pending": 3}
    claims.record_batch(engine, send.id, batch_id, claims.Answer(
        rows[0].seq, rows[-1].seq, rest=claims.Verdict("sent")))
    states = _states(engine, send.id)
    assert (states["r1"], states["r2"], states["r3"]) == ("sent", "sent", "skipped")


def test_finished_and_test_sends_are_left_alone(project) -> None:
    settings, engine = project
    finished = _start(settings, engine, "daily")
    sending.run(engine, settings, finished.id, backend="outbox")
    # a test send numbers its addresses 1, 2, ...: seq 4 is not subscriber 4
    test = _start(settings, engine, "daily", test_to=["editor@example.org", "desk@example.org",
                                                      "me@example.org", "you@example.org"])
    unsubscribe(engine, "r4@example.com")
    assert set(_states(engine, finished.id).values()) == {"sent"}
    assert set(_states(engine, test.id).values()) == {"pending"}


def test_removing_a_subscriber_or_a_list_skips_their_rows(project) -> None:
    settings, engine = project
    daily, weekly = _start(settings, engine, "daily"), _start(settings, engine, "weekly")
    remove_subscriber(engine, "r5@example.com")
    states = _states(engine, daily.id)
    assert "r5" not in states  # erased: the ledger keeps the row, not the address
    assert [s for name, s in states.items() if name.startswith("erased:")] == ["skipped"]
    delete_list(engine, "weekly")
    assert set(_states(engine, weekly.id).values()) == {"skipped"}
    assert list(_states(engine, daily.id).values()).count("pending") == 5


def test_a_hand_edit_in_the_database_is_seen_too(project) -> None:
    settings, engine = project
    send = _start(settings, engine, "daily")
    with engine.begin() as conn:
        conn.execute(subscribers.update().where(subscribers.c.id == 6)
                     .values(status="unsubscribed"))
        conn.execute(memberships.update().where(memberships.c.subscriber_id == 4)
                     .values(status="unsubscribed"))
    states = _states(engine, send.id)
    assert (states["r6"], states["r4"], states["r3"]) == ("skipped", "skipped", "pending")
    with engine.connect() as conn:  # the skip is stamped like any other change
        stamp = conn.execute(sa.select(ledger.send_recipients.c.updated_at)
                             .where(ledger.send_recipients.c.seq == 6)).scalar()
    assert stamp is not None
