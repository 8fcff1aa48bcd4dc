"""Lists: create, find, list with counts, delete (memberships go, subscribers stay)."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

import sqlalchemy as sa
from sqlalchemy.exc import IntegrityError

from ..db.tables import lists, memberships, subscribers
from ..db.transactions import DB, aware, transaction, utcnow
from ..errors import ListNotFound, UsageError
from .receiving import receives


@dataclass(frozen=True)
class MailingList:
    id: int
    name: str
    description: str | None
    created_at: dt.datetime
    #: who may receive the next send (``receiving``: globally active and subscribed)
    active: int = 0
    #: unsubscribed from this list, or globally unsubscribed, bounced or complained
    inactive: int = 0

    @property
    def total(self) -> int:
        return self.active + self.inactive


def _check_name(name: str) -> str:
    name = name.strip()
    if not name:
        raise UsageError("a list needs a name, e.g. `newsletter lists create daily`")
    if len(name) > 100:
        raise UsageError(f"list name {name[:20]!r}... is longer than 100 characters")
    return name


def create_list(db: DB, name: str, description: str | None = None) -> MailingList:
    name = _check_name(name)
    now = utcnow()
    try:
        with transaction(db) as conn:
            new_id = conn.execute(
                sa.insert(lists)
                .values(name=name, description=description, created_at=now)
                .returning(lists.c.id)
            ).scalar_one()
    except IntegrityError:
        raise UsageError(f"list {name!r} already exists") from None
    return MailingList(id=new_id, name=name, description=description, created_at=now)


def get_list(db: DB, name: str) -> MailingList:
    """The list called ``name``; raises ListNotFound naming the lists that exist."""
    with transaction(db, read=True) as conn:
        row = conn.execute(sa.select(lists).where(lists.c.name == name)).first()
        if row is None:
            names = conn.execute(sa.select(lists.c.name).order_by(lists.c.name)).scalars().all()
    if row is None:
        known = ", ".join(names) if names else "none yet"
        raise ListNotFound(
            f"no list named {name!r} (lists: {known}); create it with "
            f"`newsletter lists create {name}`"
        )
    return MailingList(
        id=row.id, name=row.name, description=row.description, created_at=aware(row.created_at)
    )


def list_lists(db: DB) -> list[MailingList]:
    """Every list with its counts of active and inactive members, by name."""
    active = sa.func.coalesce(sa.func.sum(sa.case((receives(), 1), else_=0)), 0)
    members = sa.func.count(memberships.c.subscriber_id)
    query = (
        sa.select(lists, active.label("active"), members.label("members"))
        .select_from(
            lists.outerjoin(memberships, memberships.c.list_id == lists.c.id).outerjoin(
                subscribers, subscribers.c.id == memberships.c.subscriber_id
            )
        )
        .group_by(lists.c.id)
        .order_by(lists.c.name)
    )
    with transaction(db, read=True) as conn:
        rows = conn.execute(query).all()
    return [
        MailingList(
            id=row.id,
            name=row.name,
            description=row.description,
            created_at=aware(row.created_at),
            active=int(row.active),
            inactive=int(row.members) - int(row.active),
        )
        for row in rows
    ]


def delete_list(db: DB, name: str) -> int:
    """Delete a list and its memberships (not the subscribers); returns members removed."""
    with transaction(db) as conn:
        found = get_list(conn, name)
        count = conn.execute(
            sa.select(sa.func.count()).where(memberships.c.list_id == found.id)
        ).scalar_one()
        conn.execute(sa.delete(memberships).where(memberships.c.list_id == found.id))
        conn.execute(sa.delete(lists).where(lists.c.id == found.id))
    return int(count)
