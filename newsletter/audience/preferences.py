"""The preference centre's library: what a subscriber may see and change about themselves.

``web.preferences`` (``GET/POST /p/{token}``) calls these with the subscriber id its token
names; nothing here checks tokens. Every status and membership change goes through
``status_changes`` (the one path, with its rules), erasure through ``erasure`` as
``newsletter subscribers remove`` does.

- ``overview``: address, name, pause and the lists offered: those the subscriber is or
  was on (a membership row, subscribed or not) and the lists the newsroom makes public
  (``public_lists``, as the sign-up form offers them).
- ``choose_lists``: subscribe to the ticked lists among those offered, unsubscribe from
  the others. Ticking a list one left is the person's own explicit choice, so it counts
  as a resubscribe to that list; it needs a globally active address all the same.
- ``pause``: nothing is sent for 1, 2 or 4 weeks; the pause ends by itself.
- ``rename``: the name used in greetings, made header-safe as ``subscribers add`` does.
- ``download``: everything kept about them, as JSON-ready data.
- ``erase``: the subscriber and their memberships are deleted, delivery records keep
  their counts without the address.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Engine

from ..config import Settings
from ..db.tables import (
    lists,
    memberships,
    metadata,
    send_recipient_events,
    send_recipients,
    sends,
    subscribers,
    webhook_events,
)
from ..db.transactions import aware, transaction, utcnow
from ..delivery import outcomes
from ..delivery.headersafe import clean_text
from . import erasure, status_changes

PAUSE_WEEKS = (1, 2, 4)
WHY = "preference centre"


@dataclass(frozen=True)
class ListChoice:
    id: int
    name: str
    description: str | None
    subscribed: bool


@dataclass(frozen=True)
class Overview:
    subscriber_id: int
    email: str
    name: str | None
    status: str
    paused_until: dt.datetime | None  # None, or a moment still to come
    lists: list[ListChoice]

    @property
    def active(self) -> bool:
        return self.status == "active"


def overview(engine: Engine, subscriber_id: int, *, now: dt.datetime | None = None,
             public: Sequence[str] = ()) -> Overview | None:
    """What the page shows; None when there is no such subscriber (erased)."""
    with engine.connect() as conn:
        row = conn.execute(sa.select(subscribers).where(subscribers.c.id == subscriber_id)
                           ).first()
        if row is None:
            return None
        choices = [ListChoice(r.id, r.name, r.description, r.status == "subscribed")
                   for r in conn.execute(_offered(subscriber_id, public))]
    paused = aware(row.paused_until)
    if paused is not None and paused <= (now or utcnow()):
        paused = None
    return Overview(row.id, row.email, row.name, row.status, paused, choices)


def _offered(subscriber_id: int, public: Sequence[str] = ()) -> sa.Select:
    """The lists offered, with the subscriber's membership status (None: never on it)."""
    mine = sa.and_(memberships.c.list_id == lists.c.id,
                   memberships.c.subscriber_id == subscriber_id)
    return (sa.select(lists.c.id, lists.c.name, lists.c.description, memberships.c.status)
            .outerjoin(memberships, mine)
            .where(sa.or_(memberships.c.subscriber_id.is_not(None),
                          lists.c.name.in_(list(public))))
            .order_by(lists.c.name))


def choose_lists(engine: Engine, subscriber_id: int, wanted: set[int],
                 public: Sequence[str] = ()) -> tuple[int, int]:
    """Subscribe to the offered lists in ``wanted``, unsubscribe from the other offered
    ones; ids that are not offered are ignored. Returns (joined, left)."""
    joined = left = 0
    with transaction(engine) as conn:
        for row in conn.execute(_offered(subscriber_id, public)).all():
            if row.id in wanted and row.status != "subscribed":
                joined += status_changes.change(
                    conn, subscriber_id, "subscribed", WHY, list_id=row.id, resubscribe=True)
            elif row.id not in wanted and row.status == "subscribed":
                left += status_changes.change(
                    conn, subscriber_id, "unsubscribed", WHY, list_id=row.id)
    return joined, left


def pause(engine: Engine, subscriber_id: int, weeks: int, *, now: dt.datetime | None = None
          ) -> dt.datetime:
    """Send nothing for ``weeks`` (1, 2 or 4) weeks from ``now``; returns when it ends."""
    if weeks not in PAUSE_WEEKS:
        raise ValueError(f"a pause is 1, 2 or 4 weeks, not {weeks!r}")
    until = (now or utcnow()) + dt.timedelta(weeks=weeks)
    with transaction(engine) as conn:
        status_changes.pause(conn, subscriber_id, until)
    return until


def resume(engine: Engine, subscriber_id: int) -> None:
    """End a pause now."""
    with transaction(engine) as conn:
        status_changes.pause(conn, subscriber_id, None)


def rename(engine: Engine, subscriber_id: int, name: str) -> str | None:
    """The name used in greetings (empty: none), header-safe; returns it as stored."""
    cleaned = clean_text(name)
    with transaction(engine) as conn:
        conn.execute(sa.update(subscribers).where(subscribers.c.id == subscriber_id)
                     .values(name=cleaned))
    return cleaned


def _iso(value: object) -> object:
    if isinstance(value, dt.datetime):
        return aware(value).isoformat()  # type: ignore[union-attr]
    if isinstance(value, dt.date):
        return value.isoformat()
    return value


def _rows(conn: sa.Connection, query: sa.Select) -> list[dict[str, Any]]:
    return [{key: _iso(value) for key, value in row._mapping.items()}
            for row in conn.execute(query)]


def download(engine: Engine, subscriber_id: int) -> dict[str, Any] | None:
    """Everything kept about the subscriber (GDPR Art. 15/20), ready for ``json.dumps``:
    the subscriber, their memberships, consent records (where the store keeps them),
    the messages sent to them and the delivery events about them. None: no such one."""
    s, r, d = subscribers.c, send_recipients.c, sends.c
    with engine.connect() as conn:
        person = _rows(conn, sa.select(s.email, s.name, s.attributes, s.status,
                                       s.status_changed_at, s.status_reason, s.created_at,
                                       s.source, s.paused_until).where(s.id == subscriber_id))
        if not person:
            return None
        data: dict[str, Any] = {"subscriber": person[0]}
        data["memberships"] = _rows(conn, sa.select(
            lists.c.name.label("list"), memberships.c.status, memberships.c.created_at,
            memberships.c.status_changed_at, memberships.c.status_reason)
            .join(lists, lists.c.id == memberships.c.list_id)
            .where(memberships.c.subscriber_id == subscriber_id).order_by(lists.c.name))
        consent = metadata.tables.get("consents")  # kept by the sign-up, where present
        if consent is not None and "subscriber_id" in consent.c:
            data["consent"] = _rows(conn, sa.select(consent).where(
                consent.c.subscriber_id == subscriber_id))
        data["sends_received"] = _rows(conn, sa.select(
            d.id.label("send"), d.kind, d.subject, d.list_name.label("list"),
            outcomes.status_of(conn), outcomes.updated_at_of(conn))
            .select_from(send_recipients).join(sends, d.id == r.send_id)
            .where(r.subscriber_id == subscriber_id, d.kind.in_(("real", "welcome")))
            .order_by(d.id))
        e, c = webhook_events.c, send_recipient_events.c
        data["events"] = _rows(conn, sa.select(
            e.kind, e.send_id.label("send"), e.effect, e.url, e.occurred_at)
            .where(e.subscriber_id == subscriber_id).order_by(e.received_at))
        data["engagement"] = _rows(conn, sa.select(
            c.send_id.label("send"), c.delivered, c.opens, c.clicks, c.last_event_at)
            .where(c.subscriber_id == subscriber_id).order_by(c.send_id))
    return data


def erase(engine: Engine, settings: Settings, subscriber_id: int) -> bool:
    """Erase the subscriber as ``newsletter subscribers remove`` does; False when there
    was nobody to erase (already erased: the same answer, nothing revealed)."""
    with transaction(engine) as conn:
        key = conn.execute(sa.select(subscribers.c.email_key)
                           .where(subscribers.c.id == subscriber_id)).scalar()
        if key is None:
            return False
        erasure.erase(conn, subscriber_id, key, settings.secret_key)
    return True
