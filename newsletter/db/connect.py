"""Opening the project's database: SQLite by default, PostgreSQL for production.

``open_store(settings)`` (or ``open_store(url)``) returns an SQLAlchemy ``Engine`` whose
schema has been checked. An empty database is created at the newest schema on first use;
an older schema raises ``SchemaError`` saying "run `newsletter db upgrade`". The functions
of ``newsletter.audience`` take that Engine (each call is its own transaction) or a
``Connection`` already in a transaction (the call joins it), so calls compose::

    engine = open_store(settings)
    create_list(engine, "daily")
    add_subscriber(engine, "Ann@Example.org", name="Ann", lists=["daily"])
    with engine.begin() as conn:                 # one transaction for several calls
        unsubscribe(conn, "ann@example.org", list_name="daily")
"""

from __future__ import annotations

from sqlalchemy.engine import Engine

from ..config import Settings
from .engine import make_engine
from .schema import ensure_schema


def database_url(settings_or_url: Settings | str) -> str:
    if isinstance(settings_or_url, str):
        return settings_or_url
    return settings_or_url.effective_database_url


def open_store(settings_or_url: Settings | str, *, create: bool = True) -> Engine:
    """An Engine on the project's database with a checked schema (see module docs)."""
    engine = make_engine(database_url(settings_or_url))
    try:
        ensure_schema(engine, create=create)
    except BaseException:
        engine.dispose()
        raise
    return engine
