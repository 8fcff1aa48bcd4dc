"""Helpers for the send tests: a project with a list of N subscribers, PostgreSQL databases."""

from __future__ import annotations

import contextlib
import datetime as dt
import os
import re
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
import sqlalchemy as sa

from newsletter.audience.lists import create_list
from newsletter.authoring.project import init_project
from newsletter.config import Settings, load_settings
from newsletter.db.connect import open_store
from newsletter.db.tables import memberships, subscribers

PG_ADMIN = ("postgresql+psycopg://postgres@127.0.0.1:5432/postgres",
            "postgresql+psycopg://root@127.0.0.1:5432/postgres")


# Real sends refuse `newsletter init`'s example values (example.org, "1 Example Street":
# newsletter.delivery.placeholders); projects that send use this made-up newsroom instead. No test
# reaches the internet: mail goes to the outbox or to a local SMTP server.
NEWSROOM = {
    "from_address": "Send Test <news@sendtest.news>",
    "reply_to": "editors@sendtest.news",
    "postal_address": "12 Harbour Road, Portsmouth PO1 3AX",
    "base_url": "https://sendtest.news",
}


def use_newsroom(folder: Path) -> None:
    """Replace init's example values in ``folder``'s newsletter.toml by ``NEWSROOM``."""
    config = folder / "newsletter.toml"
    text = config.read_text("utf-8")
    for key, value in NEWSROOM.items():
        text = re.sub(rf"^{key} = .*$", f'{key} = "{value}"', text, count=1, flags=re.M)
    config.write_text(text, encoding="utf-8")


def make_project(folder: Path, database_url: str | None = None) -> Settings:
    init_project(folder, name="Send Test")
    use_newsroom(folder)
    if database_url:  # top-level keys must come before the [brand] table
        config = folder / "newsletter.toml"
        config.write_text(f'database_url = "{database_url}"\n' + config.read_text("utf-8"),
                          encoding="utf-8")
    return load_settings(folder)


def seed(settings: Settings, count: int, list_name: str = "daily", domain: str = "example.com"
         ) -> sa.Engine:
    """A list with ``count`` active subscribers r1@domain ... rN@domain (ids 1..N)."""
    engine = open_store(settings)
    mailing_list = create_list(engine, list_name)
    now = dt.datetime.now(dt.UTC)
    with engine.begin() as conn:
        start = conn.execute(sa.select(sa.func.coalesce(sa.func.max(subscribers.c.id), 0))
                             ).scalar_one()
        rows = [
            {"email": f"r{start + n}@{domain}", "email_key": f"r{start + n}@{domain}",
             "name": f"Reader {start + n}", "attributes": {}, "status": "active",
             "status_changed_at": now, "created_at": now, "source": "test"}
            for n in range(1, count + 1)
        ]
        for chunk in range(0, len(rows), 5000):
            conn.execute(subscribers.insert(), rows[chunk:chunk + 5000])
        ids = conn.execute(sa.select(subscribers.c.id).where(subscribers.c.id > start)
                           ).scalars().all()
        conn.execute(memberships.insert(), [
            {"list_id": mailing_list.id, "subscriber_id": i, "status": "subscribed",
             "created_at": now, "status_changed_at": now} for i in ids
        ])
    return engine


def pg_admin_engine() -> sa.Engine | None:
    for url in PG_ADMIN:
        engine = sa.create_engine(url, isolation_level="AUTOCOMMIT")
        try:
            with engine.connect():
                return engine
        except sa.exc.OperationalError:  # not there: try the next account
            engine.dispose()
    return None


@contextlib.contextmanager
def pg_database(admin_url: str | None = None) -> Iterator[str]:
    """A fresh PostgreSQL database for one test; dropped after. Skips (or fails under CI).
    ``admin_url``: on that server (a benchmark's own cluster) instead of 127.0.0.1:5432."""
    admin = (pg_admin_engine() if admin_url is None
             else sa.create_engine(admin_url, isolation_level="AUTOCOMMIT"))
    if admin is None:
        if os.environ.get("CI") == "true":
            pytest.fail("PostgreSQL at 127.0.0.1:5432 is not reachable, and CI=true needs it")
        pytest.skip("PostgreSQL at 127.0.0.1:5432 is not reachable")
    name = f"newsletter_send_{uuid.uuid4().hex[:10]}"
    with admin.connect() as conn:
        conn.execute(sa.text(f'CREATE DATABASE "{name}"'))
    url = admin.url.set(database=name).render_as_string(hide_password=False)
    try:
        yield url
    finally:
        with admin.connect() as conn:
            conn.execute(sa.text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


def newsletter_cmd(project: Path, *args: str) -> list[str]:
    return [sys.executable, "-m", "newsletter", "--project", str(project), *args]


def run_cli(project: Path, *args: str, env: dict | None = None, timeout: float = 300
            ) -> subprocess.CompletedProcess[str]:
    return subprocess.run(newsletter_cmd(project, *args), capture_output=True, text=True,
                          env={**os.environ, **(env or {})}, timeout=timeout,
                          stdin=subprocess.DEVNULL)
