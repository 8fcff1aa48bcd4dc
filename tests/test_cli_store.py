"""The db, lists and subscribers commands, end to end, on SQLite and PostgreSQL."""

from __future__ import annotations

import io
import json
import os
import pty
import re
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pytest
import sqlalchemy as sa
from sqlalchemy.engine import Engine

from newsletter.audience.lists import get_list
from newsletter.audience.subscribers import count_subscribers, get_subscriber, set_status
from newsletter.cli import main
from newsletter.db import schema as schema_module
from newsletter.db.connect import open_store
from newsletter.db.engine import make_engine
from newsletter.db.tables import memberships, subscribers

from .conftest import REPO

Run = Callable[..., tuple[int, str, str]]
NEWSLETTER = [
    sys.executable,
    "-c",
    "import sys; from newsletter.cli import main; main(sys.argv[1:])",
]


@pytest.fixture
def cli(
    project: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture
) -> Callable[[str], Run]:
    """``cli(url)``: a runner of `newsletter --project PROJECT ARGS...` in-process on the
    database at ``url``, returning (exit code, stdout, stderr)."""

    def on(url: str) -> Run:
        def invoke(*args: str) -> tuple[int, str, str]:
            monkeypatch.setenv("NEWSLETTER_DATABASE_URL", url)
            capsys.readouterr()
            monkeypatch.setattr(sys, "stdin", io.StringIO(""))  # not a terminal
            with pytest.raises(SystemExit) as exit_info:
                main(["--project", str(project), *args])
            out, err = capsys.readouterr()
            return int(exit_info.value.code or 0), out, err

        return invoke

    return on


@pytest.fixture
def run(cli: Callable[[str], Run], store_url: str) -> Run:
    """The runner on the parametrized store (SQLite, then PostgreSQL)."""
    return cli(store_url)


def test_lists_and_subscribers_commands(run: Run) -> None:
    assert run("lists", "create", "daily", "--description", "The daily briefing")[0] == 0
    code, _, err = run("lists", "create", "daily")
    assert code == 2 and "already exists" in err
    code, out, _ = run(
        "subscribers", "add", "Ann@Example.org", "--name", "Ann", "--list", "daily",
        "--attr", "city=Rome",
    )  # fmt: skip
    assert code == 0 and "Ann@example.org: added" in out and "subscribed to daily" in out
    run("subscribers", "add", "bob@example.org", "--list", "daily")
    code, out, _ = run("subscribers", "add", "BOB@example.org", "--list", "daily")
    assert "already there" in out and "already subscribed to daily" in out

    code, out, _ = run("lists", "list", "--format", "json")
    assert json.loads(out)[0] | {"created": None} == {
        "name": "daily",
        "active": 2,
        "inactive": 0,
        "description": "The daily briefing",
        "created": None,
    }
    code, out, _ = run("subscribers", "show", "ann@example.org", "--format", "json")
    shown = json.loads(out)
    assert shown["attributes"] == {"city": "Rome"} and shown["lists"][0]["list"] == "daily"
    code, out, _ = run("subscribers", "show", "ann@example.org")
    assert "attribute:  city = Rome" in out and "list:       daily: subscribed" in out

    code, out, _ = run("subscribers", "unsubscribe", "bob@example.org", "--list", "daily")
    assert code == 0 and "unsubscribed from list 'daily'" in out
    code, out, _ = run(
        "subscribers", "list", "--list", "daily", "--status", "active", "--format", "csv"
    )
    assert out.splitlines()[1:] == [out.splitlines()[1]] and "Ann@example.org" in out
    code, out, _ = run("subscribers", "count", "--list", "daily", "--status", "unsubscribed")
    assert out.strip() == "1"
    code, out, _ = run("subscribers", "count", "--format", "json")
    assert {r["status"]: r["count"] for r in json.loads(out)}["total"] == 2
    code, out, _ = run("subscribers", "list")
    assert out.splitlines()[0].split() == ["id", "email", "name", "status", "created"]

    code, _, err = run("subscribers", "remove", "bob@example.org")
    assert code == 2 and "add --yes" in err
    assert run("subscribers", "remove", "bob@example.org", "--yes")[0] == 0
    code, _, err = run("subscribers", "show", "bob@example.org")
    assert code == 1 and err.strip() == "newsletter: no subscriber bob@example.org"
    code, _, err = run("subscribers", "add", "not-an-address")
    assert code == 2 and "not a valid email address" in err and "Traceback" not in err
    assert run("lists", "delete", "daily", "--yes")[0] == 0
    code, out, _ = run("lists", "list")
    assert "no lists yet" in out


def test_import_report_and_resubscribe_needs_confirmation(
    run: Run, store: Engine, tmp_path: Path
) -> None:
    run("lists", "create", "daily")
    csv_file = tmp_path / "members.csv"
    csv_file.write_text("Email;Name\nleft@example.org;Left\nnew@example.org;New\nbad;x\n")
    run("subscribers", "add", "left@example.org", "--list", "daily")
    set_status(store, "left@example.org", "unsubscribed", "asked")
    code, out, err = run("subscribers", "import", str(csv_file), "--list", "daily")
    assert code == 0 and err == ""  # no progress bar when stderr is not a terminal
    assert "added 1 new" in out
    assert "not reactivated (unsubscribed, bounced or complained): 1" in out
    assert f"see {tmp_path / 'members.rejects.csv'}" in out

    code, _, err = run("subscribers", "import", str(csv_file), "--list", "daily", "--resubscribe")
    assert code == 2 and "--yes" in err
    assert get_subscriber(store, "left@example.org").status == "unsubscribed"
    code, out, _ = run(
        "subscribers", "import", str(csv_file), "--list", "daily", "--resubscribe", "--yes",
        "--format", "json",
    )  # fmt: skip
    assert json.loads(out)["resubscribed"] == 1
    assert get_subscriber(store, "left@example.org").status == "active"


def test_export_command_reads_back(run: Run, store: Engine, tmp_path: Path) -> None:
    run("lists", "create", "daily")
    run("subscribers", "add", "a@example.org", "--name", "A", "--list", "daily", "--attr", "k=v")
    run("subscribers", "add", "b@example.org", "--list", "daily")
    run("subscribers", "unsubscribe", "b@example.org")
    out_file = tmp_path / "out.csv"
    code, _, err = run("subscribers", "export", "--list", "daily", "-o", str(out_file))
    assert code == 0 and "exported 2 subscribers" in err
    assert out_file.read_text().splitlines() == [
        "email,name,status,list_status,k",
        "a@example.org,A,active,subscribed,v",
        "b@example.org,,unsubscribed,subscribed,",
    ]
    code, out, _ = run("subscribers", "export", "--status", "active")
    assert out.splitlines() == ["email,name,status,k", "a@example.org,A,active,v"]
    code, out, _ = run("subscribers", "import", str(out_file), "--list", "daily")
    assert "0 unchanged" not in out and "2 unchanged" in out


def test_old_schema_is_named_with_the_command_that_migrates(
    cli: Callable[[str], Run], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from tests.test_store import _script_with_next_revision

    run = cli(f"sqlite:///{tmp_path / 'old.db'}")  # its own database: the schema changes
    run("lists", "create", "daily")
    monkeypatch.setattr(schema_module, "MIGRATIONS", _script_with_next_revision(tmp_path))
    code, _, err = run("subscribers", "count")
    assert code == 1
    assert re.search(r"has an old schema .*: run `newsletter db upgrade`", err)
    code, out, _ = run("db", "current")
    assert code == 0 and "old schema: run `newsletter db upgrade`" in out
    code, out, _ = run("db", "upgrade")
    assert code == 0 and "-> 9999_next" in out
    assert run("db", "upgrade")[1].strip().endswith("already at schema 9999_next")
    code, out, _ = run("lists", "list")
    assert code == 0 and "daily" in out


def _big_csv(path: Path, rows: int) -> int:
    """A CSV with some invalid and duplicate rows; returns the number of distinct valid ones."""
    valid = 0
    with open(path, "w", encoding="utf-8", newline="") as f:
        f.write("email,name\r\n")
        for n in range(rows):
            if n % 50 == 7:
                f.write(f"broken{n},x\r\n")
            elif n % 50 == 9:
                f.write(f"USER{n - 9}@example.org,dup\r\n")
            else:
                f.write(f"user{n}@example.org,User {n}\r\n")
                valid += 1
    return valid


def _consistent(engine: Engine, list_id: int) -> int:
    """Every subscriber the import created is on the list: no half-applied chunk."""
    with engine.connect() as conn:
        subs = conn.execute(sa.select(sa.func.count()).select_from(subscribers)).scalar_one()
        members = conn.execute(
            sa.select(sa.func.count()).where(memberships.c.list_id == list_id)
        ).scalar_one()
        if engine.dialect.name == "sqlite":
            assert conn.exec_driver_sql("PRAGMA integrity_check").scalar() == "ok"
    assert subs == members
    return int(subs)


@pytest.mark.slow
@pytest.mark.parametrize("stop", [signal.SIGKILL, signal.SIGINT], ids=["kill", "ctrl-c"])
def test_killed_import_leaves_the_database_consistent_and_a_rerun_completes_it(
    store: Engine, store_url: str, project: Path, tmp_path: Path, stop: signal.Signals
) -> None:
    from newsletter.audience.lists import create_list

    daily = create_list(store, "daily")
    csv_file = tmp_path / "big.csv"
    rows = 150_000 if stop == signal.SIGKILL else 100_000
    expected = _big_csv(csv_file, rows)
    env = {**os.environ, "NEWSLETTER_DATABASE_URL": store_url}
    command = [*NEWSLETTER, "--project", str(project)]
    command += ["subscribers", "import", str(csv_file), "--list", "daily"]
    proc = subprocess.Popen(command, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 120
    try:
        while count_subscribers(store) < 10_000:  # a few chunks are in
            assert proc.poll() is None, proc.communicate()
            assert time.monotonic() < deadline, "the import made no progress"
            time.sleep(0.02)
    finally:
        proc.send_signal(stop)
        _, err = proc.communicate(timeout=60)
    if stop == signal.SIGKILL:
        assert proc.returncode == -signal.SIGKILL
    else:  # Ctrl-C: the chunk in progress is rolled back, one line, no traceback
        assert proc.returncode == 130
        assert err.decode().strip() in ("newsletter: interrupted", "newsletter: aborted")
    partial = _consistent(store, daily.id)
    assert 10_000 <= partial < expected, "killed after it had finished: use a bigger file"

    done = subprocess.run(command + ["--format", "json"], env=env, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    report = json.loads(done.stdout)
    assert report["added"] == expected - partial
    assert report["unchanged"] == partial
    assert _consistent(store, daily.id) == expected
    assert report["invalid"] == rows // 50 and report["duplicates"] == rows // 50
    again = subprocess.run(command + ["--format", "json"], env=env, capture_output=True, text=True)
    assert json.loads(again.stdout)["added"] == 0
    assert get_list(store, "daily").id == daily.id


def test_progress_bar_with_rate_and_eta_on_a_terminal(project: Path, tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'tty.db'}"
    engine = open_store(url)
    engine.dispose()
    csv_file = tmp_path / "in.csv"
    _big_csv(csv_file, 12_000)
    primary, secondary = pty.openpty()
    env = {**os.environ, "NEWSLETTER_DATABASE_URL": url}
    proc = subprocess.run(
        [*NEWSLETTER, "--project", str(project)] + ["subscribers", "import", str(csv_file)],
        env=env,
        stdout=subprocess.PIPE,
        stderr=secondary,
        text=True,
        timeout=120,
    )
    os.close(secondary)
    shown = b""
    while True:
        try:
            chunk = os.read(primary, 65536)
        except OSError:
            break
        if not chunk:
            break
        shown += chunk
    os.close(primary)
    assert proc.returncode == 0
    text = shown.decode()
    assert "100%" in text and "rows/s" in text and "ETA" in text
    assert "added 11,520 new" in proc.stdout
    engine = make_engine(url)
    assert count_subscribers(engine) == 11_520
    engine.dispose()


def test_readme_documents_every_store_command() -> None:
    readme = (REPO / "README.md").read_text(encoding="utf-8")
    for group, subcommands in {
        "db": ["upgrade", "current"],
        "lists": ["create", "list", "delete"],
        "subscribers": [
            "add", "remove", "unsubscribe", "show", "list", "count", "import", "export",
        ],
    }.items():  # fmt: skip
        assert f"### `newsletter {group}`" in readme
        for sub in subcommands:
            assert f"newsletter {group} {sub}" in readme, f"{group} {sub}"
