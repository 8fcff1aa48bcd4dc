"""The welcome email (issues/_welcome.md): once per subscriber through the ledger, the
may-receive rule, the CLI, and exactly once across kill -9 of the sending process."""

from __future__ import annotations

import datetime as dt
import os
import random
import re
import signal
import subprocess
import sys
import time
from email import message_from_bytes, policy
from pathlib import Path

import pytest
import sqlalchemy as sa

from newsletter.audience import preferences
from newsletter.audience.welcome import send_welcome, unfinished
from newsletter.config import Settings
from newsletter.db.tables import subscribers
from newsletter.delivery import ledger

from .sendtools import make_project, pg_database, run_cli, seed
from .smtpserver import SMTPTestServer


def _project(tmp_path: Path, count: int = 3, url: str | None = None
             ) -> tuple[Settings, sa.Engine]:
    settings = make_project(tmp_path / "p", url)
    return settings, seed(settings, count)


def _outbox(settings: Settings) -> list[str]:
    """The addresses the outbox holds a message for, one entry per message."""
    folder = settings.outbox_path
    paths = sorted(folder.glob("*.eml")) if folder.exists() else []
    return sorted(message_from_bytes(p.read_bytes(), policy=policy.default)["To"].addresses[0]
                  .addr_spec for p in paths)


def _welcomed(engine: sa.Engine) -> set[int]:
    with engine.connect() as conn:
        return set(conn.execute(sa.select(subscribers.c.id)
                                .where(subscribers.c.welcomed_at.is_not(None))).scalars())


def test_init_writes_a_sample_welcome_that_validates(tmp_path: Path) -> None:
    settings, _ = _project(tmp_path)
    welcome = settings.issues_path / "_welcome.md"
    assert welcome.is_file() and "date:" not in welcome.read_text()
    result = run_cli(settings.project_dir, "validate")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "3 files checked: 0 errors" in result.stderr


def test_an_error_in_the_welcome_is_reported_at_its_own_line(tmp_path: Path) -> None:
    settings, _ = _project(tmp_path)
    welcome = settings.issues_path / "_welcome.md"
    lines = welcome.read_text().splitlines()
    bad = next(i for i, line in enumerate(lines) if line.startswith("[Read more]"))
    lines[bad] = "[Read more](http://insecure.example.org/about)"
    welcome.write_text("\n".join(lines) + "\n")
    result = run_cli(settings.project_dir, "validate", str(welcome))
    assert result.returncode == 1
    assert re.search(rf"_welcome\.md:{bad + 1}:\d+: error: .*\[link-url\]", result.stdout), \
        result.stdout


@pytest.mark.parametrize("database", ["sqlite", pytest.param("postgresql",
                                                             marks=pytest.mark.postgres)])
def test_each_subscriber_is_welcomed_once_whoever_asks(tmp_path: Path, database: str) -> None:
    with pg_database() if database == "postgresql" else _nothing() as url:
        settings, engine = _project(tmp_path, 3, url)
        done = send_welcome(engine, settings, [1, 2])
        assert (done.queued, done.sent, done.not_sent) == (2, 2, 0)
        assert _outbox(settings) == ["r1@example.com", "r2@example.com"]
        again = send_welcome(engine, settings, [1, 2, 3])  # 1 and 2 had theirs already
        assert (again.queued, again.sent, again.not_sent) == (1, 1, 2)
        assert _outbox(settings) == ["r1@example.com", "r2@example.com", "r3@example.com"]
        assert send_welcome(engine, settings, [1, 2, 3]).queued == 0
        assert len(_outbox(settings)) == 3
        kinds = [s.kind for s in ledger.list_sends(engine)]
        assert kinds == ["welcome", "welcome"]
        engine.dispose()


class _nothing:
    def __enter__(self) -> None:
        return None

    def __exit__(self, *exc: object) -> None:
        return None


def test_the_welcome_message_is_personal_and_has_no_archive_link(tmp_path: Path) -> None:
    settings, engine = _project(tmp_path, 1)
    send_welcome(engine, settings, [1])
    path = next(settings.outbox_path.glob("*.eml"))
    message = message_from_bytes(path.read_bytes(), policy=policy.default)
    assert message["Subject"] == "Welcome to the briefing, Reader 1"
    assert message["List-Unsubscribe"].startswith(f"<{settings.base_url}/u/")
    html = message.get_body(("html",)).get_content()
    text = message.get_body(("plain",)).get_content()
    assert "Welcome, Reader 1" in html and "/archive/" not in html + text
    assert re.search(re.escape(settings.base_url) + r"/p/[A-Za-z0-9_-]+", text)


def test_who_may_not_receive_gets_none_and_stays_unwelcomed(tmp_path: Path) -> None:
    settings, engine = _project(tmp_path, 3)
    preferences.pause(engine, 2, 1)
    run_cli(settings.project_dir, "subscribers", "unsubscribe", "r3@example.com")
    done = send_welcome(engine, settings, [1, 2, 3, 99])  # 99: nobody
    assert (done.queued, done.not_sent) == (1, 3)
    assert _outbox(settings) == ["r1@example.com"] and _welcomed(engine) == {1}
    with engine.begin() as conn:  # the pause is over
        conn.execute(sa.update(subscribers).where(subscribers.c.id == 2).values(
            paused_until=dt.datetime.now(dt.UTC) - dt.timedelta(seconds=1)))
    assert send_welcome(engine, settings, [2]).sent == 1
    assert _outbox(settings) == ["r1@example.com", "r2@example.com"]


def test_without_a_welcome_file_nothing_is_sent_or_marked(tmp_path: Path) -> None:
    settings, engine = _project(tmp_path, 2)
    (settings.issues_path / "_welcome.md").unlink()
    done = send_welcome(engine, settings, [1, 2])
    assert (done.queued, done.not_sent) == (0, 2) and _welcomed(engine) == set()
    result = run_cli(settings.project_dir, "welcome", "send", "--to", "r1@example.com")
    assert result.returncode == 1 and "_welcome.md: no welcome email" in result.stderr
    assert "Traceback" not in result.stderr


def test_cli_send_preview_and_no_list_send_of_the_welcome(tmp_path: Path) -> None:
    settings, _ = _project(tmp_path, 2)
    project = settings.project_dir
    first = run_cli(project, "welcome", "send", "--to", "R1@example.com")
    assert first.returncode == 0 and "1 welcome email(s) sent" in first.stdout, first.stderr
    second = run_cli(project, "welcome", "send", "--to", "r1@example.com")
    assert second.returncode == 1 and "1 not sent: welcomed before" in second.stdout
    assert _outbox(settings) == ["r1@example.com"]
    preview = run_cli(project, "welcome", "preview", "--text")
    assert preview.returncode == 0 and "Welcome, reader" in preview.stdout
    assert "%%" not in preview.stdout and "/p/" not in preview.stdout
    refused = run_cli(project, "send", "issues/_welcome.md", "--list", "daily", "--yes")
    assert refused.returncode != 0 and "newsletter welcome send" in refused.stderr
    assert "Traceback" not in refused.stderr and _outbox(settings) == ["r1@example.com"]
    resume = run_cli(project, "welcome", "resume")
    assert resume.returncode == 0 and "no unfinished welcome sends" in resume.stdout


# -- exactly once across kill -9 --------------------------------------------------------

CRASH_RECIPIENTS = 1500
WORKERS = 4
SCRIPT = """
import sys
from newsletter.audience.welcome import send_welcome
from newsletter.config import load_settings
from newsletter.db.connect import open_store
settings = load_settings(sys.argv[1])
send_welcome(open_store(settings), settings, range(1, int(sys.argv[2]) + 1), workers=4)
"""


def _welcome_process(project: Path, env: dict) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-c", SCRIPT, str(project), str(CRASH_RECIPIENTS)],
                            env={**os.environ, **env}, stdin=subprocess.DEVNULL,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


@pytest.mark.slow
def test_welcome_exactly_once_across_kill_9(tmp_path: Path) -> None:
    rng = random.Random(16)
    with SMTPTestServer(record=False) as smtp:
        settings, engine = _project(tmp_path, CRASH_RECIPIENTS)
        env = {"NEWSLETTER_BACKEND": "smtp", "NEWSLETTER_SMTP_URL": smtp.url,
               "NEWSLETTER_SEND_BATCH_SIZE": "50"}
        kills = 0
        for _ in range(3):  # the confirmation's call dies mid-send; the next one resumes
            before = sum(smtp.counts.values())
            proc = _welcome_process(settings.project_dir, env)
            deadline = time.monotonic() + 20
            while sum(smtp.counts.values()) == before and time.monotonic() < deadline:
                time.sleep(0.01)
            time.sleep(rng.uniform(0.05, 0.3))
            if proc.poll() is None:
                proc.send_signal(signal.SIGKILL)
                kills += 1
            proc.wait()
            assert max(smtp.counts.values()) == 1  # nobody twice while the kills go on
        assert kills >= 2, "the welcome send finished before the kills: make it longer"
        assert unfinished(engine)  # a crash left the welcome send unfinished
        final = _welcome_process(settings.project_dir, env)
        assert final.wait(timeout=300) == 0
        sends = [s for s in ledger.list_sends(engine) if s.kind == "welcome"]
        assert len(sends) == 1, "a call after a crash must resume, not welcome again"
        send = ledger.get_send(engine, sends[0].id)
        assert send.status == "finished" and send.total == CRASH_RECIPIENTS, send.counts
        sent = {r.email for r in ledger.recipients(engine, send.id, ["sent"], limit=None)}
        uncertain = {r.email for r in ledger.recipients(engine, send.id, ["uncertain"],
                                                        limit=None)}
        assert len(sent) + len(uncertain) == CRASH_RECIPIENTS, send.counts
        assert len(uncertain) <= kills * WORKERS  # at most one per SMTP connection per kill
        assert {e for e, n in smtp.counts.items() if n > 1} == set()
        assert [e for e in sent if smtp.counts[e] != 1] == []
        print(f"\n{kills} kills: {len(sent)} sent, {len(uncertain)} uncertain")
        assert _welcomed(engine) == set(range(1, CRASH_RECIPIENTS + 1))
        engine.dispose()
