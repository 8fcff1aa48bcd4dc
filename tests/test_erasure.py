"""Erasing a subscriber scrubs their address and name from every delivery record.

The rows and their counts stay (a send's totals, its per-status counts, the engagement
counts); the address becomes a keyed token, the name goes, the server's reply loses
the address, and a row that could still be retried is skipped as ``erased``. Every
table of the schema is searched afterwards, on SQLite and PostgreSQL.
"""

from __future__ import annotations

import datetime as dt

import sqlalchemy as sa
from sqlalchemy.engine import Engine

from newsletter.audience import erasure
from newsletter.audience.lists import create_list
from newsletter.audience.subscribers import add_subscriber, remove_subscriber
from newsletter.db.tables import metadata
from newsletter.delivery import ledger
from newsletter.feedback.effects import apply_events, engagement
from newsletter.feedback.sendgrid import Effect, Event

ADDRESS = "Ann.Lee@example.org"
KEY = "k" * 40


def _send(store: Engine, slug: str, list_id: int, **options) -> int:
    return ledger.create_send(store, kind=options.pop("kind", "real"), issue_path=f"{slug}.md",
                              issue_slug=slug, subject="S", list_id=list_id,
                              list_name="daily", backend="smtp", html="", text="", **options)


def _set(store: Engine, send_id: int, seq: int, **values) -> None:
    r = ledger.send_recipients.c
    with store.begin() as conn:
        conn.execute(ledger.send_recipients.update()
                     .where(r.send_id == send_id, r.seq == seq).values(**values))


def _event(n: int, send_id: int, subscriber_id: int, kind: str, reason: str | None = None
           ) -> Event:
    return Event(event_id=f"ev{n}", kind=kind, email=ADDRESS.lower(), timestamp=1_790_000_000,
                 send_id=send_id, subscriber_id=subscriber_id, effect=Effect.NONE,
                 reason=reason)


def _everything(store: Engine) -> list[str]:
    """Every text value in every table, as one string per row."""
    found = []
    with store.connect() as conn:
        for table in metadata.sorted_tables:
            for row in conn.execute(sa.select(table)):
                found.append(f"{table.name}: {tuple(row)}")
    return found


def _counts(store: Engine, send_id: int) -> tuple:
    send = ledger.get_send(store, send_id)
    return send.total, sum(send.counts.values()), engagement(store, send_id).recipients


def test_erase_scrubs_every_delivery_record_and_keeps_the_counts(store: Engine) -> None:
    daily = create_list(store, "daily")
    ann = add_subscriber(store, ADDRESS, name="Ann Lee", lists=["daily"]).subscriber
    bob = add_subscriber(store, "bob@example.org", name="Bob Roe", lists=["daily"]).subscriber
    first = _send(store, "one", daily.id)
    _set(store, first, ann.id, status="failed",
         reason=f"550 5.1.1 <{ADDRESS}>: Recipient address rejected")
    _set(store, first, bob.id, status="sent")
    second = _send(store, "two", daily.id)  # unfinished: Ann still pending
    _set(store, second, bob.id, status="uncertain")
    test = _send(store, "two", daily.id, kind="test", test_to=[ADDRESS, "desk@example.org"])
    _set(store, test, 1, status="uncertain")
    apply_events(store, [_event(1, first, ann.id, "delivered"), _event(2, first, ann.id, "open"),
                         _event(3, second, ann.id, "deferred", f"4.2.2 {ADDRESS} mailbox full")])
    before = {s: _counts(store, s) for s in (first, second, test)}
    assert any("ann.lee" in row.lower() for row in _everything(store))

    remove_subscriber(store, ADDRESS, key=KEY)

    leaks = [row for row in _everything(store) if "ann.lee" in row.lower() or "Ann Lee" in row]
    assert leaks == []
    assert {s: _counts(store, s) for s in (first, second, test)} == before
    token = erasure.token(ADDRESS.lower(), KEY)
    states = {(s, r.email, r.status, r.reason) for s in (first, second, test)
              for r in ledger.recipients(store, s, ledger.STATUSES, limit=None)}
    assert states == {
        (first, token, "failed", "550 5.1.1 <[erased]>: Recipient address rejected"),
        (first, "bob@example.org", "sent", None),
        (second, token, "skipped", "erased"),  # would have been sent: never will
        (second, "bob@example.org", "uncertain", None),  # others untouched
        (test, token, "skipped", "erased"),
        (test, "desk@example.org", "pending", None),
    }
    assert all(r.name is None for r in ledger.recipients(store, first, ["failed"]))
    assert ledger.requeue(store, second, ["uncertain"]) == 1  # Bob only


def test_the_token_is_keyed_and_the_same_everywhere(store: Engine) -> None:
    assert erasure.token("a@example.org", KEY) == erasure.token("a@example.org", KEY)
    assert erasure.token("a@example.org", KEY) != erasure.token("b@example.org", KEY)
    assert erasure.token("a@example.org", KEY) != erasure.token("a@example.org", "other" * 8)
    assert erasure.token("a@example.org", None) != erasure.token("a@example.org", None)
    daily = create_list(store, "daily")
    ann = add_subscriber(store, ADDRESS, lists=["daily"]).subscriber
    sends = [_send(store, slug, daily.id) for slug in ("one", "two")]
    apply_events(store, [_event(n, s, ann.id, "delivered") for n, s in enumerate(sends)])
    remove_subscriber(store, ADDRESS, key=KEY)
    with store.connect() as conn:
        tokens = set(conn.execute(sa.text(
            "SELECT email FROM send_recipients UNION SELECT email FROM webhook_events "
            "UNION SELECT email FROM send_recipient_events")).scalars())
    assert tokens == {erasure.token(ADDRESS.lower(), KEY)}


def test_erasing_someone_with_no_delivery_records_works(store: Engine) -> None:
    add_subscriber(store, "new@example.org")
    start = dt.datetime.now(dt.UTC)
    assert remove_subscriber(store, "new@example.org").created_at <= start
