"""A database that cannot work (disk full, not a database at all) is a one-line error
with exit status 1, never an internal error (70); nothing already stored is lost, and
running the command again after the fix completes it."""

from __future__ import annotations

import io
import os
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from sqlalchemy import event

from newsletter.audience.lists import create_list
from newsletter.audience.subscribers import count_subscribers
from newsletter.authoring.project import init_project
from newsletter.cli import main
from newsletter.config import load_settings
from newsletter.db.connect import open_store

from .sendtools import newsletter_cmd, seed, use_newsroom

Run = Callable[..., tuple[int, str, str]]
ISSUE = "issues/2026-11-24.md"


@pytest.fixture
def project(tmp_path: Path) -> Path:
    folder = tmp_path / "p"
    init_project(folder)
    use_newsroom(folder)  # real-looking settings: init's example values refuse a send
    return folder


@pytest.fixture
def run(project: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture) -> Run:
    """`newsletter --project P ARGS...` in-process: (exit code, stdout, stderr)."""
    monkeypatch.chdir(project)

    def invoke(*args: str) -> tuple[int, str, str]:
        capsys.readouterr()
        monkeypatch.setattr(sys, "stdin", io.StringIO(""))
        with pytest.raises(SystemExit) as exit_info:
            main(["--project", str(project), *args])
        out, err = capsys.readouterr()
        return int(exit_info.value.code or 0), out, err

    return invoke


@pytest.fixture
def disk_full() -> Iterator[Callable[[int], None]]:
    """``disk_full(pages)``: from now on each new SQLite connection may grow the database
    by ``pages`` pages only (PRAGMA max_page_count), so SQLite fails with SQLITE_FULL as
    on a full disk. Removed after the test."""
    margin: list[int] = []

    def limit(dbapi_connection: Any, _record: Any) -> None:
        if margin and dbapi_connection.__class__.__module__.startswith("sqlite3"):
            cursor = dbapi_connection.cursor()
            pages = cursor.execute("PRAGMA page_count").fetchone()[0]
            cursor.execute(f"PRAGMA max_page_count = {pages + margin[-1]}")
            cursor.close()

    event.listen(sa.engine.Engine, "connect", limit)
    try:
        yield lambda pages: margin.append(pages)
    finally:
        event.remove(sa.engine.Engine, "connect", limit)


def one_line_error(code: int, err: str, *words: str) -> None:
    assert code == 1, err
    assert err.startswith("newsletter: ") and err.count("\n") == 1, err
    assert "internal error" not in err and "Traceback" not in err, err
    for word in words:
        assert word in err, err


# -- a full disk -------------------------------------------------------------------------


def test_disk_full_during_add_loses_nothing(run: Run, project: Path, disk_full) -> None:
    run("subscribers", "add", "ann@example.org")
    disk_full(1)
    # names are cut to 200 characters (headersafe), so a big attribute fills the page
    code, _, err = run("subscribers", "add", "bob@example.org", "--attr", "bio=" + "B" * 200_000)
    one_line_error(code, err, "newsletter.db: the disk is full", "free some space")
    engine = open_store(load_settings(project))
    assert count_subscribers(engine) == 1  # Ann is there, Bob is not half there
    engine.dispose()


def test_disk_full_during_import_then_the_same_import_completes(
    run: Run, project: Path, tmp_path: Path, disk_full
) -> None:
    members = tmp_path / "members.csv"
    members.write_text("email,name,bio\n" + "".join(
        f"r{n}@example.org,Reader {n},{'x' * 300}\n" for n in range(12_000)))
    run("lists", "create", "daily")
    disk_full(250)
    code, _, err = run("subscribers", "import", str(members), "--list", "daily")
    one_line_error(code, err, "the disk is full", "run the same command again")
    engine = open_store(load_settings(project))
    stored = count_subscribers(engine)
    assert 0 < stored < 12_000  # the chunks before the full disk stayed
    engine.dispose()
    disk_full(1_000_000)  # space freed
    code, out, err = run("subscribers", "import", str(members), "--list", "daily")
    assert code == 0, err
    engine = open_store(load_settings(project))
    assert count_subscribers(engine, list_name="daily", status="active") == 12_000
    engine.dispose()


def test_disk_full_during_a_send_then_resume_sends_each_once(
    run: Run, project: Path, disk_full
) -> None:
    seed(load_settings(project), 20_000).dispose()
    # room for the send (its stored copy, tracked links and first snapshot chunk) and a
    # part of its recipients' records: the disk fills half way through
    disk_full(120)
    code, out, err = run("send", ISSUE, "--list", "daily", "--yes")
    one_line_error(code, err, "the disk is full", "run the same command again")
    assert 0 < len(list((project / "outbox").glob("*.eml"))) < 20_000  # stopped half way
    disk_full(1_000_000)
    code, out, err = run("send", ISSUE, "--list", "daily", "--yes")
    assert code == 0 and "20,000 sent, 0 failed" in out, out + err
    assert len(list((project / "outbox").glob("*.eml"))) == 20_000


# -- not a database ----------------------------------------------------------------------


@pytest.mark.parametrize("args", [
    ("subscribers", "list"),
    ("subscribers", "add", "ann@example.org"),
    ("lists", "create", "daily"),
    ("db", "current"),
    ("db", "upgrade"),
    ("sends", "list"),
    ("schedule", "list"),
    ("send", ISSUE, "--list", "daily", "--dry-run"),
    ("subscribers", "export"),
])
def test_a_garbage_database_file_is_refused_and_left_as_it_is(
    run: Run, project: Path, args: tuple[str, ...]
) -> None:
    garbage = os.urandom(64 * 1024)
    (project / "newsletter.db").write_bytes(garbage)
    code, _, err = run(*args)
    one_line_error(code, err, f"{project / 'newsletter.db'}: not an SQLite database",
                   "restore it from a backup")
    assert (project / "newsletter.db").read_bytes() == garbage


def test_a_garbage_database_for_the_worker_and_the_server(project: Path) -> None:
    """The long-running commands, as a service manager starts them."""
    (project / "newsletter.db").write_bytes(b"not a database " * 1000)
    for args in (("worker",), ("serve", "--port", "0")):
        result = subprocess.run(newsletter_cmd(project, *args), capture_output=True,
                                text=True, timeout=60, stdin=subprocess.DEVNULL)
        one_line_error(result.returncode, result.stderr, "not an SQLite database")


def test_a_database_that_is_not_writable_is_a_one_line_error(
    run: Run, project: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    engine = open_store(load_settings(project))
    create_list(engine, "daily")
    engine.dispose()
    monkeypatch.setenv("NEWSLETTER_DATABASE_URL",
                       f"sqlite:///file:{project / 'newsletter.db'}?mode=ro&uri=true")
    code, _, err = run("subscribers", "add", "ann@example.org", "--list", "daily")
    one_line_error(code, err, "cannot write to the database")
