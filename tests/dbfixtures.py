"""Database fixtures: every store test runs on SQLite and on the PostgreSQL server.

- ``store``: an Engine on a fresh, migrated store, parametrized ``sqlite`` (a file in
  the test's tmp_path) and ``postgresql`` (a database ``newsletter_test_<random>``
  created once per test session at 127.0.0.1:5432 and dropped at its end; every table
  is emptied before each test).
- ``store_url``: the URL of that store, for commands run as subprocesses.

When PostgreSQL cannot be reached its tests skip with the reason, except under
CI=true, where they fail: CI must run them.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
import sqlalchemy as sa
from sqlalchemy.engine import Engine

from newsletter.db.connect import open_store
from newsletter.db.engine import make_engine
from newsletter.db.schema import ensure_schema

PG_HOST = os.environ.get("NEWSLETTER_TEST_PG_HOST", "127.0.0.1:5432")
PG_ADMIN_URLS = [
    f"postgresql+psycopg://{user}@{PG_HOST}/{db}"
    for user in ("postgres", "root")
    for db in ("postgres", "test")
]


def _admin_engine() -> tuple[Engine | None, str]:
    reasons = []
    for url in PG_ADMIN_URLS:
        engine = sa.create_engine(
            url, isolation_level="AUTOCOMMIT", connect_args={"connect_timeout": 3}
        )
        try:
            with engine.connect() as conn:
                conn.exec_driver_sql("SELECT 1")
            return engine, url
        except sa.exc.OperationalError as exc:
            engine.dispose()
            reasons.append(f"{url}: {str(exc.orig).strip().splitlines()[0]}")
    return None, f"{reasons[0]}; also tried user root and database test"


@pytest.fixture(scope="session")
def postgres_url() -> Iterator[str]:
    """A fresh PostgreSQL database for this test session, migrated; dropped at the end."""
    admin, info = _admin_engine()
    if admin is None:
        message = f"PostgreSQL at {PG_HOST} is not reachable ({info})"
        if os.environ.get("CI") == "true":
            pytest.fail(f"{message}; under CI=true the PostgreSQL tests must run")
        pytest.skip(message)
    name = f"newsletter_test_{uuid.uuid4().hex[:10]}"
    with admin.connect() as conn:
        conn.exec_driver_sql(f'CREATE DATABASE "{name}"')
    url = info.rsplit("/", 1)[0] + f"/{name}"
    try:
        engine = make_engine(url)
        ensure_schema(engine)
        engine.dispose()
        yield url
    finally:
        with admin.connect() as conn:
            conn.exec_driver_sql(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        admin.dispose()


def _empty_postgres(engine: Engine) -> None:
    names = [n for n in sa.inspect(engine).get_table_names() if n != "alembic_version"]
    if names:
        with engine.begin() as conn:
            tables = ", ".join(f'"{n}"' for n in names)
            conn.exec_driver_sql(f"TRUNCATE {tables} RESTART IDENTITY CASCADE")


@pytest.fixture(
    params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)],
)
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Engine]:
    """An Engine on an empty, migrated store: SQLite, then PostgreSQL."""
    if request.param == "sqlite":
        engine = open_store(f"sqlite:///{tmp_path / 'store.db'}")
    else:
        url = request.getfixturevalue("postgres_url")
        engine = make_engine(url)
        ensure_schema(engine)
        _empty_postgres(engine)
    try:
        yield engine
    finally:
        engine.dispose()


@pytest.fixture
def store_url(store: Engine) -> str:
    return store.url.render_as_string(hide_password=False)
