"""Subscribers: add, find, remove, unsubscribe (globally or from one list), set status,
list and count with filters, iterate in batches, and the query the dry run needs.

Who may receive a send is ``receiving``'s rule; this module only asks it."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

import sqlalchemy as sa
from sqlalchemy.exc import IntegrityError

from ..db.tables import MEMBERSHIP_STATUSES, STATUSES, lists, memberships, subscribers
from ..db.transactions import DB, aware, transaction, utcnow
from ..delivery.headersafe import clean_text
from ..errors import SubscriberNotFound, UsageError
from . import receiving
from . import status_changes as transitions
from .emails import InvalidEmail, normalize_email
from .lists import MailingList, get_list

#: Column names of a subscriber that attributes may not use (import and export columns).
RESERVED_ATTRIBUTES = frozenset(
    {"email", "name", "status", "list_status", "first_name", "last_name", "id", "created_at"}
)


@dataclass(frozen=True)
class Subscriber:
    id: int
    email: str
    name: str | None
    attributes: dict[str, Any]
    status: str
    status_changed_at: dt.datetime
    status_reason: str | None
    created_at: dt.datetime
    source: str | None
    #: the membership status in the list a query was filtered by (None without a list)
    list_status: str | None = None

    @property
    def effective_status(self) -> str:
        """The status in the list a query was filtered by (``receiving.effective_status``:
        active but unsubscribed from the list is ``unsubscribed``); without a list, the
        global status."""
        if self.list_status is None:
            return self.status
        return receiving.effective_status(self.status, self.list_status)

    def as_dict(self) -> dict[str, Any]:
        data = {
            "id": self.id,
            "email": self.email,
            "name": self.name,
            "status": self.status,
            "status_changed_at": self.status_changed_at.isoformat(),
            "status_reason": self.status_reason,
            "created_at": self.created_at.isoformat(),
            "source": self.source,
            "attributes": self.attributes,
        }
        if self.list_status is not None:
            data["list_status"] = self.list_status
        return data


@dataclass(frozen=True)
class Membership:
    list_name: str
    status: str
    created_at: dt.datetime
    status_changed_at: dt.datetime
    status_reason: str | None


@dataclass
class AddResult:
    subscriber: Subscriber
    created: bool
    added_to: list[str] = field(default_factory=list)  # lists joined now
    already_in: list[str] = field(default_factory=list)  # lists already subscribed to
    not_resubscribed: list[str] = field(default_factory=list)  # lists left unsubscribed
    resubscribed: bool = False  # the global status was made active again


def _row_to_subscriber(row: Any, list_status: str | None = None) -> Subscriber:
    return Subscriber(
        id=row.id,
        email=row.email,
        name=row.name,
        attributes=dict(row.attributes or {}),
        status=row.status,
        status_changed_at=aware(row.status_changed_at),
        status_reason=row.status_reason,
        created_at=aware(row.created_at),
        source=row.source,
        list_status=list_status,
    )


def check_status(status: str) -> str:
    if status not in STATUSES:
        raise UsageError(f"unknown status {status!r}: use one of {', '.join(STATUSES)}")
    return status


def check_attributes(attributes: Mapping[str, Any] | None) -> dict[str, Any]:
    result = dict(attributes or {})
    for key in result:
        if not key or key.strip() != key:
            raise UsageError(f"attribute name {key!r} is empty or has surrounding spaces")
        if key.lower() in RESERVED_ATTRIBUTES:
            raise UsageError(
                f"{key!r} is a subscriber field, not an attribute; choose another name"
            )
    return result


def _key(email: str) -> tuple[str, str]:
    try:
        return normalize_email(email)
    except InvalidEmail as exc:
        raise UsageError(f"{email!r} is not a valid email address: {exc}") from None


def get_subscriber(db: DB, email_or_id: str | int) -> Subscriber:
    """The subscriber with this address (any case) or id; raises SubscriberNotFound."""
    with transaction(db, read=True) as conn:
        if isinstance(email_or_id, int) or str(email_or_id).isdigit():
            where = subscribers.c.id == int(email_or_id)
        else:
            where = subscribers.c.email_key == _key(str(email_or_id))[1]
        row = conn.execute(sa.select(subscribers).where(where)).first()
    if row is None:
        raise SubscriberNotFound(f"no subscriber {email_or_id}")
    return _row_to_subscriber(row)


def subscriber_lists(db: DB, subscriber_id: int) -> list[Membership]:
    query = (
        sa.select(lists.c.name, memberships)
        .join(lists, lists.c.id == memberships.c.list_id)
        .where(memberships.c.subscriber_id == subscriber_id)
        .order_by(lists.c.name)
    )
    with transaction(db, read=True) as conn:
        rows = conn.execute(query).all()
    return [
        Membership(
            list_name=row.name,
            status=row.status,
            created_at=aware(row.created_at),
            status_changed_at=aware(row.status_changed_at),
            status_reason=row.status_reason,
        )
        for row in rows
    ]


def add_subscriber(
    db: DB,
    email: str,
    *,
    name: str | None = None,
    attributes: Mapping[str, Any] | None = None,
    lists: Iterable[str] = (),
    source: str | None = "cli",
    resubscribe: bool = False,
) -> AddResult:
    """Add a subscriber (or find the existing one) and subscribe it to ``lists``.

    An existing subscriber keeps its name and attributes. One that unsubscribed,
    bounced or complained, or unsubscribed from a list, stays so unless ``resubscribe``.
    The name is stored made safe for email headers (``delivery.headersafe.clean_text``).
    """
    normalised, key = _key(email)
    attrs = check_attributes(attributes)
    name = clean_text(name)  # header-safe where it enters: one line, no controls, bounded
    now = utcnow()
    with transaction(db) as conn:
        targets = [get_list(conn, list_name) for list_name in dict.fromkeys(lists)]
        row = conn.execute(sa.select(subscribers).where(subscribers.c.email_key == key)).first()
        created = row is None
        result_resubscribed = False
        if row is None:
            try:
                with conn.begin_nested():
                    new_id = conn.execute(
                        sa.insert(subscribers)
                        .values(
                            email=normalised,
                            email_key=key,
                            name=name or None,
                            attributes=attrs,
                            status="active",
                            status_changed_at=now,
                            status_reason="added",
                            created_at=now,
                            source=source,
                        )
                        .returning(subscribers.c.id)
                    ).scalar_one()
            except IntegrityError:  # added by someone else in the meantime
                created = False
                new_id = None
            row = conn.execute(sa.select(subscribers).where(subscribers.c.email_key == key)).one()
            assert new_id is None or row.id == new_id
        elif row.status != "active" and resubscribe:
            result_resubscribed = transitions.change(
                conn, row.id, "active", "resubscribed", resubscribe=True, now=now)
            row = conn.execute(sa.select(subscribers).where(subscribers.c.id == row.id)).one()
        subscriber = _row_to_subscriber(row)
        result = AddResult(subscriber=subscriber, created=created, resubscribed=result_resubscribed)
        for target in targets:
            _join(conn, result, target, now, resubscribe)
    return result


def _join(
    conn: sa.Connection, result: AddResult, target: MailingList, now: dt.datetime, resubscribe: bool
) -> None:
    sub = result.subscriber
    current = conn.execute(
        sa.select(memberships.c.status).where(
            memberships.c.list_id == target.id, memberships.c.subscriber_id == sub.id
        )
    ).scalar_one_or_none()
    if current == "subscribed":
        result.already_in.append(target.name)
    elif transitions.may_change_membership(
        current, "subscribed", active=sub.status == "active", resubscribe=resubscribe
    ) and transitions.change(
        conn, sub.id, "subscribed", "resubscribed" if current else "added",
        list_id=target.id, resubscribe=resubscribe, now=now,
    ):
        result.added_to.append(target.name)
    else:
        result.not_resubscribed.append(target.name)


def remove_subscriber(db: DB, email: str, *, key: str | bytes | None = None) -> Subscriber:
    """Delete a subscriber and its memberships for good (erasure); returns what was removed.

    The delivery records keep their rows and counts without the address or name
    (``newsletter.audience.erasure.erase``; ``key``, the project's ``secret_key``, makes the token
    that replaces the address the same for one address everywhere)."""
    from .erasure import erase

    with transaction(db) as conn:
        found = get_subscriber(conn, email)
        erase(conn, found.id, _key(found.email)[1], key)
    return found


def set_status(
    db: DB, email_or_id: str | int, new_status: str, reason: str | None = None, *,
    resubscribe: bool = False,
) -> bool:
    """Set the global status, as the rules of ``status_changes`` allow: False when nothing
    changed (it had that status or a stronger one, or ``active`` without ``resubscribe``)."""
    check_status(new_status)
    with transaction(db) as conn:
        found = get_subscriber(conn, email_or_id)
        return transitions.change(conn, found.id, new_status, reason, resubscribe=resubscribe)


def unsubscribe(
    db: DB, email_or_id: str | int, list_name: str | None = None, reason: str | None = None
) -> bool:
    """Unsubscribe globally, or from one list only; False when nothing changed.

    A per-list unsubscribe of someone not on the list records it anyway, so that a
    later import into that list does not subscribe them.
    """
    with transaction(db) as conn:
        found = get_subscriber(conn, email_or_id)
        list_id = get_list(conn, list_name).id if list_name is not None else None
        return transitions.change(
            conn, found.id, "unsubscribed", reason or "unsubscribed", list_id=list_id)


# -- queries --------------------------------------------------------------------------


def _filtered(conn: sa.Connection, list_name: str | None, status: str | None) -> sa.Select:
    if status is not None:
        check_status(status)
    if list_name is None:
        query = sa.select(subscribers, sa.null().label("list_status"))
        if status is not None:
            query = query.where(subscribers.c.status == status)
        return query
    target = get_list(conn, list_name)
    query = (
        sa.select(subscribers, memberships.c.status.label("list_status"))
        .join(memberships, memberships.c.subscriber_id == subscribers.c.id)
        .where(memberships.c.list_id == target.id)
    )
    if status is not None:
        query = query.where(receiving.effective_status_sql() == status)
    return query


def list_subscribers(
    db: DB,
    *,
    list_name: str | None = None,
    status: str | None = None,
    limit: int | None = None,
    after_id: int = 0,
) -> list[Subscriber]:
    """Subscribers in id order, filtered by list and by (effective) status."""
    with transaction(db, read=True) as conn:
        query = _filtered(conn, list_name, status).where(subscribers.c.id > after_id)
        query = query.order_by(subscribers.c.id).limit(limit)
        return [_row_to_subscriber(row, row.list_status) for row in conn.execute(query)]


def count_subscribers(db: DB, *, list_name: str | None = None, status: str | None = None) -> int:
    with transaction(db, read=True) as conn:
        inner = _filtered(conn, list_name, status).with_only_columns(subscribers.c.id)
        return int(conn.execute(sa.select(sa.func.count()).select_from(inner.subquery())).scalar())


def count_by_status(db: DB, *, list_name: str | None = None) -> dict[str, int]:
    """``{status: count}`` for every status (zero included), globally or in one list."""
    with transaction(db, read=True) as conn:
        base = _filtered(conn, list_name, None)
        status = receiving.effective_status_sql() if list_name else subscribers.c.status
        query = base.with_only_columns(status.label("s"), sa.func.count()).group_by(status)
        counts = {s: 0 for s in STATUSES}
        counts.update({row[0]: int(row[1]) for row in conn.execute(query)})
    return counts


def iter_subscribers(
    db: DB,
    *,
    list_name: str | None = None,
    status: str | None = None,
    batch_size: int = 1000,
) -> Iterator[Subscriber]:
    """Every matching subscriber in id order, fetched in batches (one short transaction
    per batch, so that a long export never holds a lock)."""
    after = 0
    while True:
        batch = list_subscribers(
            db, list_name=list_name, status=status, limit=batch_size, after_id=after
        )
        yield from batch
        if len(batch) < batch_size:
            return
        after = batch[-1].id


def attribute_keys(db: DB, *, list_name: str | None = None, status: str | None = None) -> list[str]:
    """The attribute names used by matching subscribers, sorted (the export's columns)."""
    with transaction(db, read=True) as conn:
        ids = _filtered(conn, list_name, status).with_only_columns(subscribers.c.id).subquery()
        if conn.dialect.name == "postgresql":
            keys = sa.func.jsonb_object_keys(subscribers.c.attributes)
            query = sa.select(keys).where(subscribers.c.id.in_(sa.select(ids.c.id))).distinct()
            found = conn.execute(query).scalars().all()
        else:
            found = (
                conn.exec_driver_sql(
                    "SELECT DISTINCT j.key FROM subscribers s, json_each(s.attributes) j "
                    f"WHERE s.id IN ({_compile(conn, sa.select(ids.c.id))})"
                )
                .scalars()
                .all()
            )
    return sorted(found)


def _compile(conn: sa.Connection, query: sa.Select) -> str:
    return str(query.compile(conn, compile_kwargs={"literal_binds": True}))


# -- for delivery ---------------------------------------------------------------------


def sendable_batch(
    db: DB, list_id: int, *, after_id: int = 0, limit: int = 1000
) -> list[Subscriber]:
    """The next ``limit`` subscribers of list ``list_id`` who may receive a send to it
    (``receiving.receives``), with ``id > after_id``, in id order. Runs as a range scan of
    the memberships primary key (list_id, subscriber_id)."""
    query = (
        sa.select(subscribers, memberships.c.status.label("list_status"))
        .join(memberships, memberships.c.subscriber_id == subscribers.c.id)
        .where(
            memberships.c.list_id == list_id,
            memberships.c.subscriber_id > after_id,
            receiving.receives(),
        )
        .order_by(memberships.c.subscriber_id)
        .limit(limit)
    )
    with transaction(db, read=True) as conn:
        return [_row_to_subscriber(row, row.list_status) for row in conn.execute(query)]


__all__ = [
    "MEMBERSHIP_STATUSES",
    "STATUSES",
    "AddResult",
    "Membership",
    "Subscriber",
    "SubscriberNotFound",
    "add_subscriber",
    "attribute_keys",
    "count_by_status",
    "count_subscribers",
    "get_subscriber",
    "iter_subscribers",
    "list_subscribers",
    "remove_subscriber",
    "sendable_batch",
    "set_status",
    "subscriber_lists",
    "unsubscribe",
]
