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
from newsletter.delivery.smtp import SMTPBackend

from .sendgrid_standin import SendGridStandIn
from .sendtools import make_project, newsletter_cmd, pg_database, run_cli, seed
from .smtpserver import SMTPTestServer

pytestmark = pytest.mark.slow
RECIPIENTS = 10_000
KILLS = 20
WORKERS = 2
ISSUE = "issues/2026-11-24.md"
SG_BATCH = 50  # NEWSLETTER_SEND_BATCH_SIZE for SendGrid: 20 kills must land mid-send


def _kill_loop(project: Path, env: dict, rng: random.Random, received: Counter, *,
               processes: int = 1, window: float = 0.3) -> int:
    """Start `newsletter send` (which resumes an unfinished send) and kill -9 it mid-send.

    Each round waits until the server has received something new from this round's
    process(es), then kills at a random moment up to ``window`` seconds later. Returns how many
    processes were killed while still running.
    """
    killed = 0
    args = ("send", ISSUE, "--list", "daily", "--yes", "--workers", str(WORKERS))
    full_env = {**os.environ, **env}
    for _ in range(KILLS):
        before = sum(received.values())
        procs = [
            subprocess.Popen(newsletter_cmd(project, *args), env=full_env,
                             stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                             stderr=subprocess.DEVNULL)
            for _ in range(processes)
        ]
        deadline = time.monotonic() + 10
        while (sum(received.values()) == before and time.monotonic() < deadline
               and any(p.poll() is None for p in procs)):
            time.sleep(0.01)
        time.sleep(rng.uniform(0.0, window))
        for proc in procs:
            if proc.poll() is None:
                proc.send_signal(signal.SIGKILL)
                killed += 1
            proc.wait()
    return killed


def _check(engine, received: Counter, batch_size: int, kills: int) -> None:
    real = [s for s in ledger.list_sends(engine) if s.kind == "real"]
    assert len(real) == 1, f"{len(real)} sends of one issue to one list"  # never two at once
    send_id = real[0].id
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
        kills = _kill_loop(project, env, rng, smtp.counts)
        assert kills == KILLS, "a send finished before the kills: make it longer"
        _final_run(project, env)
        _check(engine, smtp.counts, SMTPBackend.batch_size, kills)
        engine.dispose()


def test_kill_9_sendgrid_sqlite(tmp_path: Path) -> None:
    rng = random.Random(8058)
    with SendGridStandIn(record="counts") as standin:
        standin.delay(0.15)  # a real API answers in ~100-300 ms; kills then land mid-request
        project = tmp_path / "p"
        settings = make_project(project)
        engine = seed(settings, RECIPIENTS)
        env = {"NEWSLETTER_BACKEND": "sendgrid", "NEWSLETTER_SENDGRID_API_HOST": standin.url,
               "NEWSLETTER_SEND_BATCH_SIZE": str(SG_BATCH),
               "SENDGRID_API_KEY": standin.api_key}
        kills = _kill_loop(project, env, rng, standin.counts, window=0.2)
        assert kills == KILLS
        _final_run(project, env)
        _check(engine, standin.counts, SG_BATCH, kills)
        engine.dispose()


def test_kill_9_smtp_postgresql_two_processes(tmp_path: Path) -> None:
    rng = random.Random(5432)
    with pg_database() as url, SMTPTestServer(record=False) as smtp:
        project = tmp_path / "p"
        settings = make_project(project, url)
        engine = seed(settings, RECIPIENTS)
        env = {"NEWSLETTER_BACKEND": "smtp", "NEWSLETTER_SMTP_URL": smtp.url}
        kills = _kill_loop(project, env, rng, smtp.counts, processes=2)
        assert kills >= KILLS  # two processes a round: each killed mid-send
        _final_run(project, env)
        _check(engine, smtp.counts, SMTPBackend.batch_size, kills)
        engine.dispose()


def test_kill_9_during_retry_failed_never_reaches_who_unsubscribed(tmp_path: Path) -> None:
    """Half the list fails for now; a fifth of those unsubscribe, bounce or are erased;
    `--retry-failed` is killed mid-send, then resumed (killed again) to the end: none
    of them receives anything, everyone else at most once."""
    from newsletter import sending
    from newsletter.store import remove_subscriber, set_status, unsubscribe

    rng = random.Random(1984)
    total, rounds = 6000, 4
    with SMTPTestServer(record=False) as smtp:
        project = tmp_path / "p"
        settings = make_project(project).model_copy(
            update={"smtp_url": smtp.url, "send_batch_size": 20})
        engine = seed(settings, total)
        failing = [f"r{n}@example.com" for n in range(2, total + 1, 2)]
        for email in failing:
            smtp.reject(email, 451, "4.7.1 try later", times=None)
        prepared = sending.preflight(settings, project / ISSUE)
        send_id = sending.start(engine, settings, prepared, "daily", backend="smtp").send.id
        first = sending.run(engine, settings, send_id, backend="smtp", retry_delay=0.01)
        assert first.counts == {"sent": total // 2, "temporary": total // 2}
        gone = failing[::5]
        for n, email in enumerate(gone):  # a third each: unsubscribed, bounced, erased
            if n % 3 == 0:
                unsubscribe(engine, email)
            elif n % 3 == 1:
                set_status(engine, email, "bounced")
            else:
                remove_subscriber(engine, email, key=settings.secret_key)
        smtp.clear_faults()
        smtp.reset()
        env = {**os.environ, "NEWSLETTER_BACKEND": "smtp", "NEWSLETTER_SMTP_URL": smtp.url,
               "NEWSLETTER_SEND_BATCH_SIZE": "20"}
        killed = 0
        for round_ in range(rounds):
            what = ("--retry-failed" if round_ == 0 else "--resume", str(send_id))
            proc = subprocess.Popen(newsletter_cmd(project, "send", *what, "--workers", "2"),
                                    env=env, stdin=subprocess.DEVNULL,
                                    stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            before, deadline = smtp.total, time.monotonic() + 10
            while smtp.total == before and proc.poll() is None and time.monotonic() < deadline:
                time.sleep(0.01)
            time.sleep(rng.uniform(0.0, 0.2))
            if proc.poll() is None:
                proc.send_signal(signal.SIGKILL)
                killed += 1
            proc.wait()
        assert killed >= 2, "the retry finished before the kills: make it longer"
        final = run_cli(project, "send", "--resume", str(send_id), env=env)
        assert final.returncode in (0, 1) and "Traceback" not in final.stderr, final.stderr

        assert [email for email in gone if smtp.counts[email]] == []
        send = ledger.get_send(engine, send_id)
        assert not send.counts.get("pending") and not send.counts.get("sending"), send.counts
        skipped = ledger.recipients(engine, send_id, ["skipped"], limit=None)
        assert len(skipped) == len(gone)
        assert {r.reason for r in skipped} == {"unsubscribed", "bounced", "erased"}
        assert max(smtp.counts.values()) == 1  # nobody twice
        sent = {r.email for r in ledger.recipients(engine, send_id, ["sent"], limit=None)}
        assert all(smtp.counts[email] == 1 for email in sent & set(failing))
        print(f"\n{killed} kills during --retry-failed: counts {send.counts}")
        engine.dispose()
