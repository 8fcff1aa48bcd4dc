"""Files holding a secret or personal data are readable by their owner only (0600, their
folders 0700) under the usual umask 022, for every writer; the dry run's sample cannot
unsubscribe anyone."""

from __future__ import annotations

import email
import io
import os
import stat
import sys
import warnings
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from newsletter.audience.subscribers import count_subscribers
from newsletter.cli import main
from newsletter.config import load_settings
from newsletter.db.connect import open_store
from newsletter.web import create_app

from .sendtools import seed

with warnings.catch_warnings():  # Starlette's TestClient: "httpx is deprecated"
    warnings.simplefilter("ignore")
    from starlette.testclient import TestClient

from .sendtools import use_newsroom

Run = Callable[..., tuple[int, str, str]]
ISSUE = "issues/2026-11-24.md"


@pytest.fixture(autouse=True)
def umask_022() -> Iterator[None]:
    old = os.umask(0o022)  # what most systems give: files 0644 unless the tool says otherwise
    try:
        yield
    finally:
        os.umask(old)


@pytest.fixture
def run(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture) -> Run:
    """`newsletter ARGS...` in-process in tmp_path: (exit code, stdout, stderr)."""
    monkeypatch.chdir(tmp_path)

    def invoke(*args: str) -> tuple[int, str, str]:
        capsys.readouterr()
        monkeypatch.setattr(sys, "stdin", io.StringIO(""))
        with pytest.raises(SystemExit) as exit_info:
            main(list(args))
        out, err = capsys.readouterr()
        return int(exit_info.value.code or 0), out, err

    return invoke


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_init_writes_the_config_0600_and_says_so(run: Run, tmp_path: Path) -> None:
    code, out, _ = run("init", "briefing")
    assert code == 0
    assert mode(tmp_path / "briefing" / "newsletter.toml") == 0o600
    assert "readable only by you" in out
    assert mode(tmp_path / "briefing" / "issues" / "2026-11-24.md") == 0o644  # not secret


def test_the_database_and_its_wal_and_shm_are_0600(run: Run, tmp_path: Path) -> None:
    run("init", "p")
    use_newsroom(tmp_path / "p")  # init's example values would refuse a send
    settings = load_settings(tmp_path / "p")
    engine = open_store(settings)
    try:
        with engine.connect() as conn:  # a connection open: the -wal and -shm files exist
            conn.exec_driver_sql("CREATE TABLE IF NOT EXISTS t (x)")
            conn.commit()
            files = sorted((tmp_path / "p").glob("newsletter.db*"))
            assert [f.name for f in files] == ["newsletter.db", "newsletter.db-shm",
                                               "newsletter.db-wal"]
            assert {f.name: mode(f) for f in files} == {f.name: 0o600 for f in files}
    finally:
        engine.dispose()


def test_rejects_and_export_files_are_0600(run: Run, tmp_path: Path) -> None:
    run("init", "p")
    use_newsroom(tmp_path / "p")  # init's example values would refuse a send
    members = tmp_path / "members.csv"
    members.write_text("email,name\nann@example.org,Ann\nnot-an-address,Bob\n")
    stale = tmp_path / "members.rejects.csv"
    stale.write_text("an older run's rejects\n")  # 0644: rewritten, it becomes 0600
    code, _, err = run("--project", "p", "subscribers", "import", str(members))
    assert code == 0, err
    assert mode(stale) == 0o600 and "not-an-address" in stale.read_text()
    export = tmp_path / "export.csv"
    export.write_text("")  # an existing world-readable file is replaced by a private one
    code, _, err = run("--project", "p", "subscribers", "export", "-o", str(export))
    assert code == 0, err
    assert mode(export) == 0o600 and "ann@example.org" in export.read_text()


def test_outbox_folder_0700_and_messages_0600(run: Run, tmp_path: Path) -> None:
    run("init", "p")
    use_newsroom(tmp_path / "p")  # init's example values would refuse a send
    seed(load_settings(tmp_path / "p"), 3).dispose()
    code, _, err = run("--project", "p", "send", f"p/{ISSUE}", "--list", "daily", "--yes")
    assert code == 0, err
    outbox = tmp_path / "p" / "outbox"
    assert mode(outbox) == 0o700
    messages = sorted(outbox.glob("*.eml"))
    assert len(messages) == 3 and {mode(m) for m in messages} == {0o600}


def test_dry_run_sample_is_0600_and_its_unsubscribe_link_unsubscribes_nobody(
    run: Run, tmp_path: Path
) -> None:
    run("init", "p")
    use_newsroom(tmp_path / "p")  # init's example values would refuse a send
    settings = load_settings(tmp_path / "p")
    engine = seed(settings, 3)
    sample = tmp_path / "p" / "out" / "sample.eml"
    code, out, err = run("--project", "p", "send", f"p/{ISSUE}", "--list", "daily",
                         "--dry-run", "--sample", str(sample))
    assert code == 0 and "3 recipient(s)" in out, err
    assert mode(sample) == 0o600 and mode(sample.parent) == 0o700
    message = email.message_from_bytes(sample.read_bytes())
    assert "r1@example.com" not in message["To"]
    url = message["List-Unsubscribe"].strip("<>")
    path = url.removeprefix(settings.base_url or "")
    assert path.startswith("/u/")
    with TestClient(create_app(settings, preview=False, public=True)) as client:
        client.post(path, data={"List-Unsubscribe": "One-Click"})
        client.post(path, data={"scope": "all"})
    assert count_subscribers(engine, list_name="daily", status="active") == 3
    assert count_subscribers(engine, status="active") == 3
    engine.dispose()


def test_unwritable_places_are_one_line_errors(run: Run, tmp_path: Path) -> None:
    (tmp_path / "a-file").write_text("not a folder")
    code, _, err = run("init", "a-file/briefing")
    assert code == 2 and "cannot create the project" in err and err.count("\n") == 1, err
    run("init", "p")
    use_newsroom(tmp_path / "p")  # init's example values would refuse a send
    seed(load_settings(tmp_path / "p"), 1).dispose()
    code, _, err = run("--project", "p", "send", f"p/{ISSUE}", "--list", "daily", "--dry-run",
                       "--sample", str(tmp_path / "a-file" / "sample.eml"))
    assert code == 2 and "cannot write the sample message" in err, err
    assert "internal error" not in err and err.count("\n") == 1
