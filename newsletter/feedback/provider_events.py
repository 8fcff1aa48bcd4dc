"""Provider feedback as ``sendgrid.Event`` objects, the shape ``effects.apply_events`` takes.

SES, Postmark, Mailgun and the bounce mailbox report the same few things in their own
words; each module maps them to SendGrid's event kinds (``delivered``, ``bounce``,
``deferred``, ``spamreport``, ``unsubscribe``, ``open``, ``click``) and effects, with event ids
prefixed by the provider so that they never collide, and the ids our sends attach
(``send_id``, ``subscriber_id``: SES tags, Postmark metadata, Mailgun user variables, the
VERP token) when they are there and valid.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping
from typing import Any

from .sendgrid import ID_MAX, Effect, Event, _clean, _int


def an_id(value: Any) -> int | None:
    """One of our ids (1..2^63-1), or None for anything else."""
    if isinstance(value, list | tuple) and value:  # SES tags are lists of strings
        value = value[0]
    number = _int(value)
    return number if number is not None and 1 <= number <= ID_MAX else None


def epoch(value: Any) -> int:
    """A timestamp (epoch seconds, or ISO 8601 text) as whole epoch seconds; 0 if unknown."""
    if isinstance(value, int | float) and not isinstance(value, bool):
        return int(value)
    if isinstance(value, str):
        try:
            stamp = dt.datetime.fromisoformat(value.replace("Z", "+00:00"))
        except ValueError:
            return _int(value) or 0
        return int((stamp if stamp.tzinfo else stamp.replace(tzinfo=dt.UTC)).timestamp())
    return 0


def event(provider: str, event_id: str, kind: str, email: str, effect: Effect,
          reason: str | None = None, *, ids: Mapping[str, Any] | None = None,
          timestamp: Any = None) -> Event:
    ids = ids or {}
    return Event(
        event_id=_clean(f"{provider}:{event_id}")[:200], kind=kind,
        email=_clean(email).strip().lower()[:320], timestamp=epoch(timestamp),
        send_id=an_id(ids.get("send_id")), subscriber_id=an_id(ids.get("subscriber_id")),
        effect=effect, reason=None if reason is None else _clean(str(reason))[:500],
    )
