"""Erasing a subscriber from the delivery records: rows and counts stay, the person goes.

``subscribers.remove_subscriber`` (``newsletter subscribers remove``, the only way a subscriber
is erased) calls ``erase`` in its transaction: ``scrub`` first, then the subscriber and
their memberships are deleted through ``status_changes.erase`` (the one path of every status
change; the database's triggers skip their pending deliveries). Every row that holds
their address keeps its place and its counts, with the address replaced by a token and
the name removed:

- ``send_recipients``: their rows in real and welcome sends (``seq`` is their subscriber id) and rows
  of test sends addressed to them. The server's reply kept as ``reason`` loses the
  address. A row not yet final (``pending``, ``temporary``, ``uncertain``) becomes
  ``skipped`` with reason ``erased``, so no retry can reach them; a row ``sending`` (its
  batch is with the backend right now) keeps its status for the batch's answer.
- ``webhook_events`` (SendGrid's events: address and reason) and
  ``send_recipient_events`` (engagement counts per send and address).

Their tracked clicks and opens (``clicks``, ``opens``) are deleted, not scrubbed: a
click says what a person read, and a send's report then counts it no more.

The token is ``erased:`` and an HMAC-SHA256 of the address's key (lower-cased) with the
project's ``secret_key``: the same person has the same token in every table and send,
so per-recipient counts stay correct, and nobody without the key can test an address
against it. Without a key the token is random (unlinkable).
"""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
from collections.abc import Iterable

import sqlalchemy as sa

from ..delivery import outcomes
from ..delivery.ledger import send_recipients, sends
from ..feedback.effects import send_recipient_events, webhook_events
from . import status_changes

PURPOSE = b"newsletter erased address v1\0"
NOT_FINAL = ("pending", "temporary", "uncertain")
REDACTED = "[erased]"


def token(email_key: str, key: str | bytes | None) -> str:
    """``erased:`` + 32 hex digits, the same for one address and key."""
    secret = key.encode("utf-8") if isinstance(key, str) else key
    secret = secret or secrets.token_bytes(32)
    digest = hmac.digest(secret, PURPOSE + email_key.encode("utf-8"), hashlib.sha256)
    return "erased:" + digest.hex()[:32]


def erase(conn: sa.Connection, subscriber_id: int, email_key: str,
          key: str | bytes | None) -> int:
    """Erase a subscriber in the caller's transaction: scrub the delivery records, then
    delete the subscriber and their memberships; returns the delivery rows scrubbed."""
    from ..feedback.clicks import forget as forget_clicks
    from .signup import forget

    scrubbed = scrub(conn, subscriber_id, email_key, key)
    forget(conn, email_key)  # the sign-ups and consent records hold the address too
    forget_clicks(conn, subscriber_id)  # their tracked clicks and opens go with them
    status_changes.erase(conn, subscriber_id)
    return scrubbed


def scrub(conn: sa.Connection, subscriber_id: int, email_key: str,
          key: str | bytes | None) -> int:
    """Replace the address and name in every delivery record; returns rows changed."""
    erased = token(email_key, key)
    pattern = re.compile(re.escape(email_key), re.IGNORECASE)
    return (_recipients(conn, subscriber_id, email_key, erased, pattern)
            + _events(conn, subscriber_id, email_key, erased, pattern)
            + _engagement(conn, subscriber_id, email_key, erased))


def _redact(pattern: re.Pattern[str], text: str | None) -> str | None:
    return None if text is None else pattern.sub(REDACTED, text)


def _recipients(conn: sa.Connection, subscriber_id: int, email_key: str, erased: str,
                pattern: re.Pattern[str]) -> int:
    r = send_recipients.c
    real = sa.and_(r.seq == subscriber_id,
                   r.send_id.in_(sa.select(sends.c.id).where(sends.c.kind.in_(("real", "welcome")))))
    test = sa.and_(sa.func.lower(r.email) == email_key,
                   r.send_id.in_(sa.select(sends.c.id).where(sends.c.kind == "test")))
    rows = conn.execute(sa.select(r.send_id, r.seq, outcomes.status_of(conn), r.reason)
                        .where(sa.or_(real, test))).all()
    for row in rows:
        values: dict[str, object] = {"email": erased, "name": None,
                                     "reason": _redact(pattern, row.reason)}
        if row.status in NOT_FINAL:
            values.update(status="skipped", reason="erased")
        conn.execute(send_recipients.update()
                     .where(r.send_id == row.send_id, r.seq == row.seq).values(**values))
    return len(rows)


def _events(conn: sa.Connection, subscriber_id: int, email_key: str, erased: str,
            pattern: re.Pattern[str]) -> int:
    e = webhook_events.c
    rows = conn.execute(sa.select(e.sg_event_id, e.reason).where(
        sa.or_(e.subscriber_id == subscriber_id, sa.func.lower(e.email) == email_key))).all()
    for row in rows:
        conn.execute(webhook_events.update().where(e.sg_event_id == row.sg_event_id)
                     .values(email=erased, reason=_redact(pattern, row.reason)))
    return len(rows)


def _engagement(conn: sa.Connection, subscriber_id: int, email_key: str, erased: str) -> int:
    """Counts per (send, address): the address becomes the token (numbered in the rare
    case of two spellings of it in one send, so the primary key stays unique)."""
    c = send_recipient_events.c
    rows = conn.execute(sa.select(c.send_id, c.email).where(
        sa.or_(c.subscriber_id == subscriber_id, sa.func.lower(c.email) == email_key))
        .order_by(c.send_id, c.email)).all()
    for send_id, email, new in _numbered(rows, erased):
        conn.execute(send_recipient_events.update()
                     .where(c.send_id == send_id, c.email == email).values(email=new))
    return len(rows)


def _numbered(rows: Iterable[sa.Row], erased: str) -> list[tuple[int, str, str]]:
    seen: dict[int, int] = {}
    result = []
    for send_id, email in rows:
        seen[send_id] = seen.get(send_id, 0) + 1
        n = seen[send_id]
        result.append((send_id, email, erased if n == 1 else f"{erased}-{n}"))
    return result
