"""Small helpers shared by the entity modules: transactions and timestamps."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator
from contextlib import contextmanager

import sqlalchemy as sa
from sqlalchemy.engine import Engine

DB = Engine | sa.Connection


@contextmanager
def transaction(db: DB) -> Iterator[sa.Connection]:
    """A connection in a transaction: a new one committed at the end for an Engine,
    or the caller's own connection (and transaction) as it is."""
    if isinstance(db, sa.Connection):
        yield db
        return
    with db.begin() as connection:
        yield connection


def utcnow() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


def aware(value: dt.datetime | None) -> dt.datetime | None:
    """SQLite hands back naive datetimes: they were stored as UTC."""
    if value is None or value.tzinfo is not None:
        return value
    return value.replace(tzinfo=dt.UTC)
