"""Crash safety, for real: kill -9 a send of 10,000 recipients again and again, then resume.

Every recipient must receive exactly one message, except those the ledger reports as
uncertain (received zero or one); uncertain recipients are at most one batch per worker
per kill. Run against the real SMTP server and the SendGrid stand-in, on SQLite, and on
PostgreSQL with two processes sharing one send.
"""

from __future__ import annotations

import os
import random
import signal
import subprocess
import time
from collections import Counter
from pathlib import Path

import pytest

from newsletter import ledger
from newsletter.delivery.sendgrid import MAX_PER_REQUEST
from newsletter.delivery.smtp import SMTPBackend

from .sendgrid_standin import SendGridStandIn
from .sendtools import make_project, newsletter_cmd, pg_database, run_cli, seed
from .smtpserver import SMTPTestServer

pytestmark = pytest.mark.slow
RECIPIENTS = 10_000
KILLS = 20
WORKERS = 2
ISSUE = "issues/2026-11-24.md"


def _kill_loop(project: Path, env: dict, rng: random.Random, *, processes: int = 1) -> int:
    """Start `newsletter send` (which resumes an unfinished send), kill -9 at random moments.

    Returns how many processes were killed while still running.
    """
    killed = 0
    args = ("send", ISSUE, "--list", "daily", "--yes", "--workers", str(WORKERS))
    full_env = {**os.environ, **env}
    for _ in range(KILLS):
        procs = [
            subprocess.Popen(newsletter_cmd(project, *args), env=full_env,
                             stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                             stderr=subprocess.DEVNULL)
            for _ in range(processes)
        ]
        time.sleep(rng.uniform(0.5, 1.6))  # start-up is ~0.4 s; then it is mid-send
        for proc in procs:
            if proc.poll() is None:
                proc.send_signal(signal.SIGKILL)
                killed += 1
            proc.wait()
    return killed


def _check(engine, send_id: int, received: Counter, batch_size: int, kills: int) -> None:
    send = ledger.get_send(engine, send_id)
    assert send.status == "finished", send.counts
    assert send.total == RECIPIENTS
    assert not send.counts.get("pending") and not send.counts.get("sending")
    sent = {r.email for r in ledger.recipients(engine, send_id, ["sent"], limit=None)}
    uncertain = {r.email for r in ledger.recipients(engine, send_id, ["uncertain"], limit=None)}
    assert len(sent) + len(uncertain) == RECIPIENTS, send.counts
    duplicates = {email: n for email, n in received.items() if n > 1}
    assert duplicates == {}, f"{len(duplicates)} recipients got more than one message"
    missing = [email for email in sent if received[email] != 1]
    assert missing == [], f"{len(missing)} marked sent but not received"
    assert all(received[email] <= 1 for email in uncertain)
    print(f"\n{kills} kills: {len(sent)} sent, {len(uncertain)} uncertain "
          f"({sum(1 for e in uncertain if received[e])} of them received), counts {send.counts}")
    # at most one batch per worker per kill can be in flight when the process dies
    assert len(uncertain) <= kills * WORKERS * batch_size


def _final_run(project: Path, env: dict) -> subprocess.CompletedProcess[str]:
    result = run_cli(project, "send", ISSUE, "--list", "daily", "--yes", env=env)
    if "already sent" in result.stderr:  # the loop already finished it
        return result
    assert result.returncode in (0, 1), result.stderr
    assert "Traceback" not in result.stderr
    return result


def test_kill_9_smtp_sqlite(tmp_path: Path) -> None:
    rng = random.Random(2026)
    with SMTPTestServer(record=False) as smtp:
        project = tmp_path / "p"
        settings = make_project(project)
        engine = seed(settings, RECIPIENTS)
        env = {"NEWSLETTER_BACKEND": "smtp", "NEWSLETTER_SMTP_URL": smtp.url}
        kills = _kill_loop(project, env, rng)
        assert kills >= 10, "the sends finished before most kills: make them land mid-send"
        _final_run(project, env)
        _check(engine, 1, smtp.counts, SMTPBackend.batch_size, kills)
        engine.dispose()


def test_kill_9_sendgrid_sqlite(tmp_path: Path) -> None:
    rng = random.Random(8058)
    with SendGridStandIn(record="counts") as standin:
        standin.delay(0.15)  # a real API answers in ~100-300 ms; kills then land mid-request
        project = tmp_path / "p"
        settings = make_project(project)
        engine = seed(settings, RECIPIENTS)
        env = {"NEWSLETTER_BACKEND": "sendgrid", "NEWSLETTER_SENDGRID_API_HOST": standin.url,
               "SENDGRID_API_KEY": standin.api_key}
        kills = _kill_loop(project, env, rng)
        assert kills >= 10
        _final_run(project, env)
        _check(engine, 1, standin.counts, MAX_PER_REQUEST, kills)
        engine.dispose()


def test_kill_9_smtp_postgresql_two_processes(tmp_path: Path) -> None:
    rng = random.Random(5432)
    with pg_database() as url, SMTPTestServer(record=False) as smtp:
        project = tmp_path / "p"
        settings = make_project(project, url)
        engine = seed(settings, RECIPIENTS)
        env = {"NEWSLETTER_BACKEND": "smtp", "NEWSLETTER_SMTP_URL": smtp.url}
        kills = _kill_loop(project, env, rng, processes=2)
        assert kills >= 10
        _final_run(project, env)
        _check(engine, 1, smtp.counts, SMTPBackend.batch_size, kills)
        engine.dispose()
