"""Engines: SQLite (the default, a file in the project) or PostgreSQL via psycopg.

SQLite connections run in WAL mode (synchronous=FULL: every commit is on disk before
it returns) with foreign keys on, a busy timeout and
``BEGIN IMMEDIATE`` transactions, so that a read-then-write transaction never fails
half way with "database is locked" when another process writes at the same time.
Connections with the execution option ``READ_ONLY`` begin plain (deferred) transactions
instead: in WAL mode those read a snapshot without waiting for any writer.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import sqlalchemy as sa
from sqlalchemy import event
from sqlalchemy.engine import Engine, make_url
from sqlalchemy.exc import ArgumentError, NoSuchModuleError

from ..errors import ConfigError, NewsletterError
from ..private import create_private

SQLITE_BUSY_TIMEOUT_MS = 30_000
#: Execution option of a connection that only reads: on SQLite its transactions begin
#: DEFERRED (no write lock, so a long import does not hold it up); others IMMEDIATE.
READ_ONLY = "newsletter_read_only"


def _describe(url: str) -> str:
    try:
        return make_url(url).render_as_string(hide_password=True)
    except ArgumentError:
        return url


def make_engine(url: str, **kwargs: Any) -> Engine:
    """An Engine for ``url`` (``sqlite:///path`` or ``postgresql+psycopg://...``)."""
    try:
        parsed = make_url(url)
    except ArgumentError:
        raise ConfigError(
            f"database_url {url!r} is not a database URL: use sqlite:///path/newsletter.db "
            "or postgresql+psycopg://user@host/dbname"
        ) from None
    backend = parsed.get_backend_name()
    if backend == "postgresql" and parsed.drivername in ("postgresql", "postgres"):
        parsed = parsed.set(drivername="postgresql+psycopg")
    elif backend not in ("sqlite", "postgresql"):
        raise ConfigError(
            f"database_url {_describe(url)}: unsupported database {backend!r}; "
            "use sqlite:/// or postgresql+psycopg://"
        )
    if backend == "sqlite":
        database = parsed.database or ""
        if database and database != ":memory:" and not database.startswith("file:"):
            path = Path(database).expanduser().resolve()
            if not path.parent.is_dir():
                raise ConfigError(
                    f"database_url {_describe(url)}: folder {path.parent} does not exist; "
                    "create it or change database_url"
                )
            _create_private_database(path)
    try:
        engine = sa.create_engine(parsed, **kwargs)
    except (NoSuchModuleError, ImportError) as exc:
        raise ConfigError(f"database_url {_describe(url)}: driver not available ({exc})") from None
    if backend == "sqlite":
        _configure_sqlite(engine)
    return engine


def _create_private_database(path: Path) -> None:
    """Create a missing SQLite file 0600 before SQLite opens it: it holds addresses, and
    SQLite gives the -wal, -shm and -journal files the database file's mode."""
    try:
        create_private(path)
    except OSError as exc:
        raise NewsletterError(
            f"{path}: cannot create the database file: {exc.strerror}; check the folder's "
            "permissions and free space, or change database_url"
        ) from None


def _configure_sqlite(engine: Engine) -> None:
    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_connection: Any, _record: Any) -> None:
        # Let SQLAlchemy's "begin" event below open transactions, not the driver.
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        cursor.execute(f"PRAGMA busy_timeout = {SQLITE_BUSY_TIMEOUT_MS}")
        # A new database gets 16 KB pages (no effect on an existing one): a send rewrites
        # its recipients' rows in long runs, and with 4 KB pages a million-recipient send
        # made four times as many WAL frames (and system calls) for the same bytes.
        cursor.execute("PRAGMA page_size = 16384")
        cursor.execute("PRAGMA journal_mode = WAL")
        cursor.execute("PRAGMA synchronous = FULL")  # a commit (an unsubscribe) is on disk
        cursor.execute("PRAGMA foreign_keys = ON")
        cursor.close()

    @event.listens_for(engine, "begin")
    def _on_begin(connection: sa.Connection) -> None:
        if connection.get_execution_options().get(READ_ONLY):
            connection.exec_driver_sql("BEGIN")  # WAL: a reader never waits for a writer
        else:
            connection.exec_driver_sql("BEGIN IMMEDIATE")
