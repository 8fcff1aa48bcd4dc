"""Small helpers shared by the entity modules: transactions and timestamps."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator
from contextlib import contextmanager

import sqlalchemy as sa
from sqlalchemy.engine import Engine

from .engine import READ_ONLY

DB = Engine | sa.Connection


@contextmanager
def transaction(db: DB, *, read: bool = False) -> Iterator[sa.Connection]:
    """A connection in a transaction: a new one committed at the end for an Engine,
    or the caller's own connection (and transaction) as it is. ``read``: it only reads
    (on SQLite it then takes no write lock)."""
    if isinstance(db, sa.Connection):
        yield db
        return
    with db.connect() as connection:
        if read:
            connection.execution_options(**{READ_ONLY: True})
        with connection.begin():
            yield connection


def utcnow() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


def aware(value: dt.datetime | None) -> dt.datetime | None:
    """SQLite hands back naive datetimes: they were stored as UTC."""
    if value is None or value.tzinfo is not None:
        return value
    return value.replace(tzinfo=dt.UTC)
