"""Small helpers shared by the entity modules: transactions and timestamps."""

from __future__ import annotations

import datetime as dt
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import TypeVar

import sqlalchemy as sa
from sqlalchemy.engine import Engine

from .engine import READ_ONLY

DB = Engine | sa.Connection
T = TypeVar("T")
#: PostgreSQL aborts one of two transactions that deadlock (or conflict, at SERIALIZABLE)
RETRYABLE = ("40P01", "40001")  # deadlock detected, serialization failure


@contextmanager
def transaction(db: DB, *, read: bool = False, snapshot: bool = False
                ) -> Iterator[sa.Connection]:
    """A connection in a transaction: a new one committed at the end for an Engine,
    or the caller's own connection (and transaction) as it is. ``read``: it only reads
    (on SQLite it then takes no write lock). ``snapshot``: every statement sees the
    database as it was when the first one ran (PostgreSQL's REPEATABLE READ; a write
    to a row another transaction changed since then fails with a serialization error,
    for ``retry_on_conflict``); SQLite's transactions always do."""
    if isinstance(db, sa.Connection):
        yield db
        return
    with db.connect() as connection:
        if read:
            connection.execution_options(**{READ_ONLY: True})
        if snapshot and connection.dialect.name == "postgresql":
            connection.execution_options(isolation_level="REPEATABLE READ")
        with connection.begin():
            yield connection


def utcnow() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


def aware(value: dt.datetime | None) -> dt.datetime | None:
    """SQLite hands back naive datetimes: they were stored as UTC."""
    if value is None or value.tzinfo is not None:
        return value
    return value.replace(tzinfo=dt.UTC)


def retry_on_conflict(work: Callable[[], T], *, attempts: int = 5) -> T:
    """Run ``work`` (one whole transaction) again when PostgreSQL aborted it for a
    deadlock or a serialization failure; anything else is raised at once."""
    for attempt in range(attempts):
        try:
            return work()
        except sa.exc.DBAPIError as exc:
            code = getattr(exc.orig, "sqlstate", None) or getattr(exc.orig, "pgcode", None)
            if code not in RETRYABLE or attempt + 1 >= attempts:
                raise
            time.sleep(0.05 * (attempt + 1))
    raise AssertionError("unreachable")
