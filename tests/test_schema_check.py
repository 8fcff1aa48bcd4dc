"""The schema check every command runs: one query and no Alembic when the database is current."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import sqlalchemy as sa
from alembic.script import ScriptDirectory
from sqlalchemy import event
from sqlalchemy.engine import Engine

from newsletter.db import schema as schema_module
from newsletter.db.connect import open_store
from newsletter.db.engine import make_engine

ROOT = Path(__file__).resolve().parent.parent


def test_heads_constant_names_the_newest_shipped_migrations() -> None:
    """Fails when a migration is added without updating ``schema.HEADS``."""
    config = schema_module.alembic_config(make_engine("sqlite://"))
    shipped = ScriptDirectory.from_config(config).get_heads()
    assert sorted(schema_module.HEADS) == sorted(shipped), (
        f"set HEADS in newsletter/db/schema.py to {tuple(sorted(shipped))!r}"
    )


def _statements(engine: Engine) -> list[str]:
    seen: list[str] = []
    event.listen(engine, "before_cursor_execute", lambda *a: seen.append(a[2]))
    return seen


def test_a_current_database_is_checked_with_one_query(store_url: str) -> None:
    """SQLite and PostgreSQL: one statement besides the connection's own set-up."""
    engine = make_engine(store_url)
    seen = _statements(engine)
    state = schema_module.ensure_schema(engine)
    assert state.up_to_date and state.current == schema_module.HEADS
    assert [s for s in seen if "alembic" in s.lower()] == [
        "SELECT version_num FROM alembic_version"
    ]
    assert not [s for s in seen if "pg_catalog" in s or "sqlite_master" in s]  # no inspection
    engine.dispose()


def test_an_old_database_still_gets_the_upgrade_command(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'n.db'}"
    engine = open_store(url)
    with engine.begin() as conn:
        conn.execute(sa.text("UPDATE alembic_version SET version_num = '0010_pause_and_welcome'"))
    try:
        schema_module.ensure_schema(engine)
    except schema_module.SchemaError as exc:
        assert "run `newsletter db upgrade`" in str(exc)
    else:
        raise AssertionError("an old schema was accepted")
    engine.dispose()


def test_everyday_commands_load_no_alembic_and_no_migration(tmp_path: Path) -> None:
    """As a user runs them: `lists list` and `sends list` on a current database."""
    project = tmp_path / "p"
    env = dict(os.environ, PYTHONPATH=str(ROOT), NEWSLETTER_PROJECT=str(project))
    probe = (
        "import sys, json, runpy\n"
        "sys.argv = ['newsletter'] + sys.argv[1:]\n"
        "try:\n    runpy.run_module('newsletter', run_name='__main__')\n"
        "except SystemExit as exc:\n    code = exc.code\n"
        "loaded = sorted(m for m in sys.modules if m.startswith(('alembic', 'mako'))\n"
        "                or 'migrations' in m)\n"
        "print(json.dumps({'code': code, 'loaded': loaded}), file=sys.stderr)\n"
    )
    subprocess.run([sys.executable, "-m", "newsletter", "init", str(project)], env=env,
                   check=True, capture_output=True)
    subprocess.run([sys.executable, "-m", "newsletter", "lists", "create", "daily"], env=env,
                   check=True, capture_output=True)  # first use: the schema is created
    for args in (["lists", "list"], ["sends", "list"], ["schedule", "list"], ["db", "current"]):
        done = subprocess.run([sys.executable, "-c", probe, *args], env=env,
                              capture_output=True, text=True)
        report = json.loads(done.stderr.strip().splitlines()[-1])
        assert report == {"code": 0, "loaded": []}, (args, report)
    listed = subprocess.run([sys.executable, "-m", "newsletter", "lists", "list"], env=env,
                            capture_output=True, text=True, check=True)
    assert "daily" in listed.stdout
