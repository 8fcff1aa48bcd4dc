"""Applying provider feedback events: subscriber effects and per-send engagement counters.

The events come from SendGrid's webhook (``feedback.sendgrid``), and in the same shape
(SendGrid's event kinds, ids prefixed by the provider) from SES, Postmark and Mailgun
(``feedback.ses``, ``feedback.postmark``, ``feedback.mailgun``) and the bounce mailbox
(``feedback.mailbox``).

``apply_events(engine, events, request_key=...)`` takes the parsed events of one webhook
request (``newsletter.feedback.sendgrid.parse_events``) and applies them in one transaction with a
handful of statements, whatever the batch size:

1. ``request_key`` (a digest of the signed timestamp and body) goes into
   ``webhook_requests``: the same signed request seen twice raises ``Replayed``.
2. The events go into ``webhook_events`` with ``INSERT ... ON CONFLICT DO NOTHING
   RETURNING sg_event_id``: its primary key is SendGrid's ``sg_event_id``, so only the
   events never seen before come back, and only those are applied. Two requests carrying
   the same event at once cannot both apply it: the second waits on the first's
   uncommitted row (PostgreSQL) or on its write lock (SQLite), then inserts nothing.
3. ``send_event_counts`` (send, event kind) -> events, and ``send_recipient_events``
   (send, address) -> delivered, opens, clicks, deferred, dropped, bounced, complained,
   unsubscribed: upserts that add the batch's counts (``ON CONFLICT DO UPDATE``).
4. Effects on subscribers (found by address, the store's identity): a hard bounce or a
   dropped-for-bounce marks them ``bounced``; a spam report ``complained``; SendGrid's
   unsubscribe and group unsubscribe ``unsubscribed``, through ``audience.status_changes`` (one
   statement per effect): a stronger status is never weakened (complained > bounced >
   unsubscribed > active), and the reason says "SendGrid: ...". A send in progress skips them
   from its next batch on (the database's triggers skip their pending rows at once).

Rows are written in key order so concurrent transactions take their locks in the same
order; a deadlock or serialization failure reported by PostgreSQL is retried.
"""

from __future__ import annotations

import datetime as dt
import importlib
import time
from collections import Counter, defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

import sqlalchemy as sa
from sqlalchemy.engine import Engine
from sqlalchemy.exc import DBAPIError

from ..audience import status_changes
from ..db.tables import (
    RECIPIENT_COUNTERS,
    send_event_counts,
    send_recipient_events,
    sends,
    webhook_events,
    webhook_requests,
)
from ..db.transactions import DB, transaction, utcnow
from ..errors import Replayed
from .sendgrid import Effect, Event

#: the per-recipient counter (RECIPIENT_COUNTERS) each event kind and effect raises
_KIND_COUNTER = {"delivered": "delivered", "open": "opens", "click": "clicks",
                 "deferred": "deferred", "dropped": "dropped"}
_EFFECT_COUNTER = {Effect.BOUNCED: "bounced", Effect.COMPLAINED: "complained",
                   Effect.UNSUBSCRIBED: "unsubscribed"}

_CHUNK = 2000  # rows per multi-row statement (SQLite allows 32,766 parameters)
_RETRIES = 5


@dataclass
class Applied:
    received: int  # events in the request
    applied: int  # events seen for the first time, now applied
    effects: Counter[str] = field(default_factory=Counter)  # subscribers changed per effect

    @property
    def duplicates(self) -> int:
        return self.received - self.applied


def _insert(conn: sa.Connection, table: sa.Table):  # -> dialect Insert with on_conflict_*
    # the connection's own dialect, already loaded: importing the other costs up to 35 ms
    return importlib.import_module(f"sqlalchemy.dialects.{conn.dialect.name}").insert(table)


def _chunks(rows: Sequence, size: int = _CHUNK) -> Iterable[Sequence]:
    for start in range(0, len(rows), size):
        yield rows[start:start + size]


def _stamp(epoch: int) -> dt.datetime | None:
    if epoch <= 0:
        return None
    try:
        return dt.datetime.fromtimestamp(epoch, dt.UTC)
    except (OverflowError, OSError, ValueError):
        return None


def _retryable(exc: DBAPIError) -> bool:
    code = getattr(exc.orig, "sqlstate", None) or getattr(exc.orig, "pgcode", None)
    return code in ("40P01", "40001")  # deadlock detected, serialization failure


def apply_events(
    engine: Engine, events: Sequence[Event], *, request_key: str | None = None,
    forget_requests_after: float = 600.0, source: str = "SendGrid",
) -> Applied:
    """Apply one request's events once each (see the module docs); raises ``Replayed``.
    ``source`` names the provider in the subscribers' status reasons ("SES: ...")."""
    for attempt in range(_RETRIES):
        try:
            with engine.begin() as conn:
                if request_key is not None:
                    _remember_request(conn, request_key, forget_requests_after)
                return _apply(conn, events, source)
        except DBAPIError as exc:
            if attempt + 1 >= _RETRIES or not _retryable(exc):
                raise
            time.sleep(0.05 * (attempt + 1))
    raise AssertionError("unreachable")


def apply_in(conn: sa.Connection, events: Sequence[Event], source: str) -> Applied:
    """``apply_events`` inside the caller's transaction (the bounce mailbox claims its
    reports in the same one)."""
    return _apply(conn, events, source)


def _remember_request(conn: sa.Connection, key: str, forget_after: float) -> None:
    now = utcnow()
    conn.execute(webhook_requests.delete().where(
        webhook_requests.c.received_at < now - dt.timedelta(seconds=forget_after)))
    stored = conn.execute(
        _insert(conn, webhook_requests).values(digest=key, received_at=now)
        .on_conflict_do_nothing().returning(webhook_requests.c.digest)
    ).first()
    if stored is None:
        raise Replayed("this request was already received")


def _apply(conn: sa.Connection, events: Sequence[Event], source: str = "SendGrid") -> Applied:
    unique: dict[str, Event] = {}
    for event in events:
        unique.setdefault(event.event_id, event)
    ordered = [unique[k] for k in sorted(unique)]
    now = utcnow()
    stamps = {t: _stamp(t) for t in {e.timestamp for e in ordered}}  # few distinct seconds
    rows = [
        {"sg_event_id": e.event_id, "kind": e.kind, "send_id": e.send_id,
         "subscriber_id": e.subscriber_id, "email": e.email, "effect": e.effect.value,
         "reason": e.reason, "url": e.url, "occurred_at": stamps[e.timestamp],
         "received_at": now}
        for e in ordered
    ]
    new_ids = set(_insert_new(conn, rows)) if rows else set()
    fresh = [e for e in ordered if e.event_id in new_ids]
    result = Applied(received=len(events), applied=len(fresh))
    if fresh:
        _count(conn, fresh, now)
        result.effects = _effects(conn, fresh, now, source)
    return result


# PostgreSQL: one statement per table for a whole batch, the rows passed as arrays
# (``unnest``): a short statement text whatever the batch size, unlike a multi-row VALUES.
_EVENT_FIELDS = (("sg_event_id", "VARCHAR"), ("kind", "VARCHAR"), ("send_id", "BIGINT"),
                 ("subscriber_id", "BIGINT"), ("email", "VARCHAR"), ("effect", "VARCHAR"),
                 ("reason", "TEXT"), ("url", "TEXT"), ("occurred_at", "TIMESTAMPTZ"),
                 ("received_at", "TIMESTAMPTZ"))
_RECIPIENT_FIELDS = (("send_id", "BIGINT"), ("email", "VARCHAR"), ("subscriber_id", "BIGINT"),
                     *((name, "INTEGER") for name in RECIPIENT_COUNTERS),
                     ("last_event_at", "TIMESTAMPTZ"))


def _unnest(fields: Sequence[tuple[str, str]]) -> str:
    return ", ".join(f"CAST(:{name} AS {kind}[])" for name, kind in fields)


_EVENTS_PG = sa.text(
    f"INSERT INTO webhook_events ({', '.join(n for n, _ in _EVENT_FIELDS)}) "
    f"SELECT * FROM unnest({_unnest(_EVENT_FIELDS)}) "
    "ON CONFLICT (sg_event_id) DO NOTHING RETURNING sg_event_id"
)
_RECIPIENTS_PG = sa.text(
    f"INSERT INTO send_recipient_events ({', '.join(n for n, _ in _RECIPIENT_FIELDS)}) "
    f"SELECT * FROM unnest({_unnest(_RECIPIENT_FIELDS)}) "
    "ON CONFLICT (send_id, email) DO UPDATE SET "
    + ", ".join(f"{n} = send_recipient_events.{n} + excluded.{n}" for n in RECIPIENT_COUNTERS)
    + ", subscriber_id = COALESCE(excluded.subscriber_id, send_recipient_events.subscriber_id)"
    ", last_event_at = GREATEST(send_recipient_events.last_event_at, excluded.last_event_at)"
)


def _columns(rows: Sequence[dict], fields: Sequence[tuple[str, str]]) -> dict[str, list]:
    return {name: [row[name] for row in rows] for name, _ in fields}


def _insert_new(conn: sa.Connection, rows: Sequence[dict]) -> Iterable[str]:
    """Insert the events not stored yet; returns the ids of those inserted."""
    if conn.dialect.name == "postgresql":
        return conn.execute(_EVENTS_PG, _columns(rows, _EVENT_FIELDS)).scalars().all()
    insert = (_insert(conn, webhook_events).on_conflict_do_nothing()
              .returning(webhook_events.c.sg_event_id))
    return conn.execute(insert, list(rows)).scalars().all()


def _known_sends(conn: sa.Connection, ids: set[int]) -> set[int]:
    known: set[int] = set()
    ordered = sorted(ids)
    for chunk in _chunks(ordered):
        known.update(conn.execute(sa.select(sends.c.id).where(sends.c.id.in_(chunk))).scalars())
    return known


def _count(conn: sa.Connection, fresh: Sequence[Event], now: dt.datetime) -> None:
    known = _known_sends(conn, {e.send_id for e in fresh if e.send_id is not None})
    per_send: Counter[tuple[int, str]] = Counter()
    per_recipient: dict[tuple[int, str], dict[str, int]] = defaultdict(
        lambda: dict.fromkeys(RECIPIENT_COUNTERS, 0))
    subscriber_of: dict[tuple[int, str], int | None] = {}
    last: dict[tuple[int, str], int] = {}
    for e in fresh:
        if e.send_id not in known:
            continue
        assert e.send_id is not None
        per_send[(e.send_id, e.kind)] += 1
        if not e.email:
            continue
        key = (e.send_id, e.email)
        counters = per_recipient[key]
        column = _KIND_COUNTER.get(e.kind)
        if column:
            counters[column] += 1
        effect_column = _EFFECT_COUNTER.get(e.effect)
        if effect_column:
            counters[effect_column] += 1
        if e.subscriber_id is not None or key not in subscriber_of:
            subscriber_of[key] = e.subscriber_id
        last[key] = max(last.get(key, 0), e.timestamp)
    if per_send:
        upsert = _insert(conn, send_event_counts)
        upsert = upsert.on_conflict_do_update(
            index_elements=["send_id", "kind"],
            set_={"events": send_event_counts.c.events + upsert.excluded.events},
        )
        rows = [{"send_id": s, "kind": k, "events": n} for (s, k), n in sorted(per_send.items())]
        conn.execute(upsert, rows)
    if per_recipient:
        rows = [
            {"send_id": s, "email": email, "subscriber_id": subscriber_of[(s, email)],
             "last_event_at": _stamp(last[(s, email)]) or now, **counts}
            for (s, email), counts in sorted(per_recipient.items())
        ]
        upsert = _insert(conn, send_recipient_events)
        table = send_recipient_events.c
        upsert = upsert.on_conflict_do_update(
            index_elements=["send_id", "email"],
            set_={
                **{name: table[name] + upsert.excluded[name] for name in RECIPIENT_COUNTERS},
                "subscriber_id": sa.func.coalesce(upsert.excluded.subscriber_id,
                                                  table.subscriber_id),
                "last_event_at": sa.func.coalesce(upsert.excluded.last_event_at,
                                                  table.last_event_at),
            },
        )
        if conn.dialect.name == "postgresql":
            conn.execute(_RECIPIENTS_PG, _columns(rows, _RECIPIENT_FIELDS))
        else:
            conn.execute(upsert, rows)


def _effects(conn: sa.Connection, fresh: Sequence[Event], now: dt.datetime,
             source: str = "SendGrid") -> Counter[str]:
    wanted: dict[Effect, dict[str, str | None]] = defaultdict(dict)
    for e in fresh:
        if e.effect is not Effect.NONE and e.email:
            wanted[e.effect].setdefault(e.email, e.reason)
    changed: Counter[str] = Counter()
    # weakest first, so that the strongest effect of a batch is the one that stays
    # (``audience.status_changes`` never weakens a status)
    for effect in (Effect.UNSUBSCRIBED, Effect.BOUNCED, Effect.COMPLAINED):
        emails = wanted.get(effect)
        if not emails:
            continue
        items = [(email, f"{source}: {reason or effect}") for email, reason in sorted(emails.items())]
        changed[str(effect)] += status_changes.set_global(
            conn, str(effect), items, by="email_key", now=now, source=source.lower()[:40])
    return changed


# -- reading -----------------------------------------------------------------------------


@dataclass
class Engagement:
    """What the webhook told about one send."""

    recipients: dict[str, int]  # recipients with at least one such event, per counter
    events: dict[str, int]  # events per SendGrid event kind

    def line(self) -> str:
        r = self.recipients
        opens, clicks = self.events.get("open", 0), self.events.get("click", 0)
        return (
            f"delivered {r['delivered']:,}, opened {r['opens']:,} ({opens:,} opens), "
            f"clicked {r['clicks']:,} ({clicks:,} clicks), bounced {r['bounced']:,}, "
            f"complained {r['complained']:,}, unsubscribed {r['unsubscribed']:,}"
        )

    def as_dict(self) -> dict[str, object]:
        r = self.recipients
        return {
            "delivered": r["delivered"], "opened": r["opens"], "clicked": r["clicks"],
            "bounced": r["bounced"], "complained": r["complained"],
            "unsubscribed": r["unsubscribed"], "deferred": r["deferred"],
            "dropped": r["dropped"], "events": dict(self.events),
        }


def engagement(db: DB, send_id: int) -> Engagement:
    """Delivered / opened / clicked / bounced / complained / unsubscribed for a send."""
    table = send_recipient_events.c
    with transaction(db) as conn:
        row = conn.execute(
            sa.select(*(sa.func.count().filter(table[name] > 0).label(name)
                        for name in RECIPIENT_COUNTERS))
            .where(table.send_id == send_id)
        ).one()
        events = dict(conn.execute(
            sa.select(send_event_counts.c.kind, send_event_counts.c.events)
            .where(send_event_counts.c.send_id == send_id)
        ).all())
    return Engagement(recipients={name: int(getattr(row, name) or 0)
                                  for name in RECIPIENT_COUNTERS}, events=events)
