"""Feedback from SendGrid's Event Webhook: what each event does, on SQLite and PostgreSQL.

The events are parsed from JSON as SendGrid posts them (``feedback.sendgrid.parse_events``) and
applied by ``feedback.effects.apply_events``; what is asserted is what an editor sees afterwards:
the subscriber's status and reason, who the running send still reaches, and the counts
``newsletter sends show`` prints.
"""

from __future__ import annotations

import json

import pytest
from sqlalchemy.engine import Engine

from newsletter.audience.lists import create_list
from newsletter.audience.subscribers import add_subscriber, get_subscriber
from newsletter.delivery import ledger
from newsletter.feedback.effects import Replayed, apply_events, engagement
from newsletter.feedback.sendgrid import parse_events

READERS = [f"r{n}@example.com" for n in range(1, 7)]


@pytest.fixture
def send(store: Engine) -> int:
    """A send to six readers, none of them sent to yet."""
    daily = create_list(store, "daily")
    for email in READERS:
        add_subscriber(store, email, lists=["daily"])
    return ledger.create_send(store, kind="real", issue_path="issues/a.md", issue_slug="a",
                              subject="S", list_id=daily.id, list_name="daily",
                              backend="sendgrid", html="", text="")


def _events(send_id: int, *events: tuple) -> list:
    """(event id, kind, address, extra fields) -> parsed events, as the webhook reads them."""
    body = [{"sg_event_id": event_id, "event": kind, "email": email, "timestamp": 1_790_000_000,
             "send_id": str(send_id), "list_id": "1", **extra}
            for event_id, kind, email, extra in events]
    return parse_events(json.dumps(body).encode())


def _status(store: Engine, email: str) -> tuple[str, str | None]:
    subscriber = get_subscriber(store, email)
    return subscriber.status, subscriber.status_reason


def _pending(store: Engine, send_id: int) -> set[str]:
    return {r.email for r in ledger.recipients(store, send_id, ["pending"], limit=None)}


def test_bounce_complaint_and_unsubscribe_change_the_subscriber_and_the_send(
    store: Engine, send: int
) -> None:
    applied = apply_events(store, _events(
        send,
        ("e1", "bounce", "r1@example.com", {"reason": "550 5.1.1 no such user"}),
        ("e2", "spamreport", "r2@example.com", {}),
        ("e3", "unsubscribe", "r3@example.com", {}),
        ("e4", "group_unsubscribe", "r4@example.com", {}),
        ("e5", "bounce", "r5@example.com", {"type": "blocked", "reason": "try later"}),
    ))
    assert applied.applied == 5
    assert applied.effects == {"bounced": 1, "complained": 1, "unsubscribed": 2}
    assert _status(store, "r1@example.com") == ("bounced", "SendGrid: 550 5.1.1 no such user")
    assert _status(store, "r2@example.com") == ("complained", "SendGrid: spam report")
    assert _status(store, "r3@example.com")[0] == "unsubscribed"
    assert _status(store, "r4@example.com")[0] == "unsubscribed"
    assert _status(store, "r5@example.com")[0] == "active"  # blocked is temporary
    # the send in progress reaches only those who may still receive
    assert _pending(store, send) == {"r5@example.com", "r6@example.com"}
    skipped = ledger.recipients(store, send, ["skipped"], limit=None)
    assert {r.email for r in skipped} == {f"r{n}@example.com" for n in range(1, 5)}
    assert all("before sending" in (r.reason or "") for r in skipped)


@pytest.mark.parametrize(("reason", "status"), [
    ("Bounced Address", "bounced"),
    ("Invalid", "bounced"),
    ("Spam Reporting Address", "complained"),
    ("Unsubscribed Address", "unsubscribed"),
    ("Invalid SMTPAPI header", "active"),  # our own mistake, not the reader's address
])
def test_dropped_acts_by_its_reason(store: Engine, send: int, reason: str, status: str) -> None:
    apply_events(store, _events(send, ("d1", "dropped", "r1@example.com", {"reason": reason})))
    assert _status(store, "r1@example.com")[0] == status


def test_a_stronger_status_is_never_weakened(store: Engine, send: int) -> None:
    apply_events(store, _events(send, ("c1", "spamreport", "r1@example.com", {})))
    apply_events(store, _events(send, ("b1", "bounce", "r1@example.com", {}),
                                ("u1", "unsubscribe", "r1@example.com", {})))
    assert _status(store, "r1@example.com") == ("complained", "SendGrid: spam report")
    # in one batch, the strongest effect wins whatever the order
    apply_events(store, _events(send, ("u2", "unsubscribe", "r2@example.com", {}),
                                ("b2", "bounce", "r2@example.com", {})))
    assert _status(store, "r2@example.com")[0] == "bounced"


def test_counts_per_send_count_each_event_once(store: Engine, send: int) -> None:
    batch = _events(
        send,
        ("d1", "delivered", "r1@example.com", {}), ("d2", "delivered", "r2@example.com", {}),
        ("o1", "open", "r1@example.com", {}), ("o2", "open", "r1@example.com", {}),
        ("k1", "click", "r2@example.com", {"url": "https://example.org/a"}),
        ("b1", "bounce", "r3@example.com", {}),
    )
    assert apply_events(store, batch).applied == 6
    again = apply_events(store, batch[:3])  # SendGrid retries part of it
    assert again.applied == 0 and again.duplicates == 3
    counts = engagement(store, send)
    assert counts.line() == ("delivered 2, opened 1 (2 opens), clicked 1 (1 clicks), "
                             "bounced 1, complained 0, unsubscribed 0")
    assert counts.events == {"delivered": 2, "open": 2, "click": 1, "bounce": 1}


def test_the_same_signed_request_twice_is_refused(store: Engine, send: int) -> None:
    batch = _events(send, ("d1", "delivered", "r1@example.com", {}))
    apply_events(store, batch, request_key="digest-1")
    with pytest.raises(Replayed):
        apply_events(store, batch, request_key="digest-1")
    assert engagement(store, send).events == {"delivered": 1}


def test_an_event_for_an_unknown_address_changes_nobody(store: Engine, send: int) -> None:
    applied = apply_events(store, _events(send, ("b1", "bounce", "stranger@example.com", {})))
    assert applied.applied == 1 and sum(applied.effects.values()) == 0
    assert {get_subscriber(store, e).status for e in READERS} == {"active"}
