"""No click lost on a crash: the click journal (feedback/click_journal.py).

A real `newsletter serve` answers clicks while the database cannot take them (a
transaction of the test holds the clicks table), is killed with SIGKILL, and a new one
started: every answered click is then in the database exactly once. On SQLite and on
PostgreSQL.
"""

from __future__ import annotations

import datetime as dt
import os
import re
import signal
import sqlite3
import stat
import subprocess
import time
import warnings
from collections import Counter
from pathlib import Path

import httpx
import psycopg
import sqlalchemy as sa

from newsletter.audience.lists import create_list
from newsletter.db.connect import open_store
from newsletter.db.engine import make_engine
from newsletter.db.schema import ensure_schema
from newsletter.db.tables import clicks, opens, send_links
from newsletter.delivery import ledger, tracking
from newsletter.feedback import click_journal
from newsletter.feedback.click_journal import Journal
from newsletter.web import create_app
from newsletter.web.clicks import Writer

from .sendtools import make_project, newsletter_cmd

with warnings.catch_warnings():
    warnings.simplefilter("ignore", DeprecationWarning)
    from starlette.testclient import TestClient

LINKS = 5


def _serve(project: Path, workers: int = 1) -> tuple[subprocess.Popen, str]:
    process = subprocess.Popen(newsletter_cmd(project, "serve", "--port", "0",
                                              "--workers", str(workers)),
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    line = process.stdout.readline()
    found = re.search(r"http://127\.0\.0\.1:\d+", line)
    assert found, line + process.stderr.read()
    deadline = time.monotonic() + 30
    while True:
        try:
            if httpx.get(f"{found.group(0)}/healthz", timeout=2).status_code == 200:
                return process, found.group(0)
        except httpx.TransportError:
            pass
        assert time.monotonic() < deadline, "serve did not answer"
        time.sleep(0.1)


def _send(engine: sa.Engine) -> int:
    list_id = create_list(engine, "daily").id
    send_id = ledger.create_send(engine, kind="real", issue_path="x.md", issue_slug="x",
                                 subject="X", list_id=list_id, list_name="daily",
                                 backend="outbox", html="", text="")
    tracking.store(engine, send_id, [tracking.TrackedLink(i, f"https://example.org/{i}",
                                                          "Story") for i in range(LINKS + 1)])
    return send_id


def _stored(engine: sa.Engine) -> Counter:
    with engine.connect() as conn:
        rows = conn.execute(sa.select(clicks.c.subscriber_id, clicks.c.link_idx,
                                      clicks.c.method)).all()
    return Counter(tuple(row) for row in rows)


def _hold_clicks(engine: sa.Engine):
    """A driver connection whose open transaction keeps every writer of the clicks table
    waiting (until its ``rollback``)."""
    if engine.dialect.name == "sqlite":
        conn = sqlite3.connect(engine.url.database, isolation_level=None)
        conn.execute("BEGIN IMMEDIATE")
    else:
        conn = psycopg.connect(engine.url.set(drivername="postgresql")
                               .render_as_string(hide_password=False))
        conn.execute("LOCK TABLE clicks IN EXCLUSIVE MODE")
    return conn


def test_clicks_answered_before_a_kill_9_are_stored_once_after_the_restart(
        tmp_path: Path, store: sa.Engine, store_url: str) -> None:
    settings = make_project(tmp_path / "p", store_url)
    send_id = _send(store)
    signer = tracking.ClickSigner(settings)
    wanted = Counter({(sub, 1 + sub % LINKS, "HEAD" if sub % 7 == 0 else "GET"): 1
                      for sub in range(1, 61)})
    process, url = _serve(settings.project_dir)
    holder = _hold_clicks(store)
    try:
        with httpx.Client(timeout=10) as client:
            for sub, idx, method in wanted:
                answer = client.request(method, f"{url}/c/{signer.sign(send_id, sub, idx)}")
                assert answer.status_code == 302
                assert answer.headers["location"] == f"https://example.org/{idx}"
        assert holder.execute("SELECT count(*) FROM clicks").fetchone()[0] == 0
        journals = list(click_journal.folder_for(settings.project_dir).glob("*.clicks"))
        assert len(journals) == 1 and stat.S_IMODE(journals[0].stat().st_mode) == 0o600
        process.send_signal(signal.SIGKILL)
        process.wait(10)
    finally:
        if process.poll() is None:
            process.kill()
        holder.rollback()
        holder.close()
    assert _stored(store) == Counter(), "the killed server wrote clicks: nothing was at stake"
    process, url = _serve(settings.project_dir)  # its start-up stores what the journal kept
    try:
        assert _stored(store) == wanted
        assert list(click_journal.folder_for(settings.project_dir).glob("*.clicks")) == []
        answer = httpx.get(f"{url}/c/{signer.sign(send_id, 99, 2)}", timeout=10)
        assert answer.status_code == 302
    finally:
        process.send_signal(signal.SIGINT)
        _, err = process.communicate(timeout=20)
    assert "Traceback" not in err
    assert _stored(store) == wanted + Counter({(99, 2, "GET"): 1})
    assert list(click_journal.folder_for(settings.project_dir).glob("*.clicks")) == []


def _workers(pid: int) -> list[int]:
    """The uvicorn worker processes of a `serve --workers N` (its spawned children)."""
    found = []
    for proc in Path("/proc").glob("[0-9]*"):
        try:
            ppid = (proc / "stat").read_text().rpartition(")")[2].split()[1]
            command = (proc / "cmdline").read_bytes()
        except OSError:
            continue
        if ppid == str(pid) and b"spawn_main" in command:
            found.append(int(proc.name))
    return found


def test_workers_killed_with_9_are_restarted_and_store_their_clicks(
        tmp_path: Path, store: sa.Engine, store_url: str) -> None:
    """`serve --workers 2`: both workers killed while their clicks wait for the
    database; uvicorn starts new ones, whose start-up stores them, each once."""
    settings = make_project(tmp_path / "p", store_url)
    send_id = _send(store)
    signer = tracking.ClickSigner(settings)
    wanted = Counter({(sub, 1 + sub % LINKS, "GET"): 1 for sub in range(1, 41)})
    process, url = _serve(settings.project_dir, workers=2)
    try:
        workers = _workers(process.pid)
        assert len(workers) == 2
        holder = _hold_clicks(store)
        try:
            for sub, idx, _ in wanted:  # a new connection each: both workers take some
                answer = httpx.get(f"{url}/c/{signer.sign(send_id, sub, idx)}", timeout=10)
                assert answer.status_code == 302
            assert holder.execute("SELECT count(*) FROM clicks").fetchone()[0] == 0
            for pid in workers:
                os.kill(pid, signal.SIGKILL)
        finally:
            holder.rollback()
            holder.close()
        deadline = time.monotonic() + 60
        while _stored(store) != wanted:
            assert time.monotonic() < deadline, f"stored {_stored(store)}"
            time.sleep(0.2)
        assert set(_workers(process.pid)).isdisjoint(workers)
    finally:
        process.send_signal(signal.SIGINT)
        process.communicate(timeout=30)
    assert _stored(store) == wanted


def test_a_replay_stores_what_is_missing_once_however_often_it_runs(
        tmp_path: Path, store: sa.Engine) -> None:
    """A server that died after its batch was committed and before its journal was
    emptied: the replay stores only the clicks not in the database yet."""
    at = dt.datetime(2026, 11, 30, 6, 0, 0, 123456, tzinfo=dt.UTC)
    rows = [("click", {"send_id": 3, "subscriber_id": sub, "link_idx": 1, "method": "GET",
                       "clicked_at": at + dt.timedelta(microseconds=sub)})
            for sub in range(1, 5)]
    rows.append(("open", {"send_id": 3, "subscriber_id": 1, "opened_at": at}))
    journal = Journal(tmp_path / "clicks")
    for kind, row in rows:
        journal.append(kind, row)
    with store.begin() as conn:  # the first two clicks made it, the rest did not
        conn.execute(clicks.insert(), [row for _, row in rows[:2]])
    fd = journal._current.fd
    os.close(os.dup(fd))
    assert click_journal.replay(store, tmp_path / "clicks") == 0, "its owner is alive"
    os.close(fd)  # the owner dies: its lock goes, its file stays
    assert click_journal.replay(store, tmp_path / "clicks") == 3
    assert click_journal.replay(store, tmp_path / "clicks") == 0
    with store.connect() as conn:
        got = conn.execute(sa.select(clicks.c.subscriber_id, clicks.c.clicked_at)
                           .order_by(clicks.c.subscriber_id)).all()
        opened = conn.execute(sa.select(sa.func.count()).select_from(opens)).scalar_one()
    assert [(sub, stamp.replace(tzinfo=dt.UTC) if stamp.tzinfo is None else stamp)
            for sub, stamp in got] == [(row["subscriber_id"], row["clicked_at"])
                                       for kind, row in rows if kind == "click"]
    assert opened == 1
    assert list((tmp_path / "clicks").iterdir()) == []


def test_the_journal_is_emptied_once_its_clicks_are_written(tmp_path: Path) -> None:
    journal = Journal(tmp_path / "clicks")
    row = {"send_id": 1, "subscriber_id": 2, "link_idx": 3, "method": "HEAD",
           "clicked_at": dt.datetime.now(dt.UTC)}
    first = journal.append("click", row)
    second = journal.append("click", row)
    assert first is second and first.path.read_bytes().count(b"\n") == 2
    assert click_journal.decode(first.path.read_bytes().splitlines()[0]) == ("click", row)
    journal.written([(first, 1)])
    assert first.path.stat().st_size > 0, "one click is not written yet"
    journal.written([(first, 1)])
    assert first.path.stat().st_size == 0
    journal.close()
    assert list((tmp_path / "clicks").iterdir()) == []


def test_a_link_with_spaces_or_letters_beyond_ascii_redirects_percent_encoded(
        tmp_path: Path) -> None:
    """The Location header carries ASCII only: the rest is percent-encoded as UTF-8, as
    a browser would (it was a 503 for a letter beyond Latin-1), and the click counts."""
    settings = make_project(tmp_path / "p")
    engine = open_store(settings)
    send_id = _send(engine)
    with engine.begin() as conn:
        conn.execute(sa.update(send_links).where(send_links.c.send_id == send_id,
                                                 send_links.c.idx == 2)
                     .values(url="https://example.org/Łódź café?q=a b"))
    token = tracking.ClickSigner(settings).sign(send_id, 7, 2)
    app = create_app(settings, preview=False, public=True)
    with TestClient(app, base_url="https://sendtest.news") as client:
        answer = client.get(f"/c/{token}", follow_redirects=False)
        assert answer.status_code == 302
        assert answer.headers["location"] == ("https://example.org/%C5%81%C3%B3d%C5%BA%20"
                                               "caf%C3%A9?q=a%20b")
        assert answer.headers["cache-control"] == "no-store, private"
        assert answer.headers["x-content-type-options"] == "nosniff"
        app.state.parts[0].state.click_writer.flush()
    assert _stored(engine) == Counter({(7, 2, "GET"): 1})
    engine.dispose()


def test_clicks_left_while_the_database_was_away_are_stored_once_it_is_back(
        tmp_path: Path) -> None:
    """A server starting while its database cannot take the clicks a dead one left
    starts all the same, and stores them after its first write that succeeds."""
    at = dt.datetime(2026, 11, 30, 6, 0, tzinfo=dt.UTC)
    left = {"send_id": 1, "subscriber_id": 5, "link_idx": 2, "method": "GET", "clicked_at": at}
    folder = tmp_path / "clicks"
    dead = Journal(folder)
    dead.append("click", left)
    os.close(dead._current.fd)  # the server dies: its lock goes, its file stays
    engine = make_engine(f"sqlite:///{tmp_path / 'store.db'}")  # no tables yet
    writer = Writer(engine, Journal(folder))
    assert writer.start() == 0
    ensure_schema(engine)  # the database is back
    writer.put("click", {**left, "subscriber_id": 6})
    assert writer.flush()
    writer.close()
    assert _stored(engine) == Counter({(5, 2, "GET"): 1, (6, 2, "GET"): 1})
    assert list(folder.iterdir()) == []
    engine.dispose()
