"""Crash safety, for real: kill -9 a send of 10,000 recipients again and again, then resume.

After each kill the dead process's batches are reconciled (from its workers' progress
journals) and the new uncertain recipients counted: at most one per SMTP connection (or
outbox worker), at most the requests in flight for SendGrid. Nobody gets a message twice
while the kills go on; recipients marked sent received exactly one; and after
``newsletter send --resume ID --resend-uncertain`` nobody is missing (only the uncertain
may then hold two). Run against the real SMTP server, the SendGrid stand-in and the
outbox, on SQLite, and on PostgreSQL (with two processes sharing one send, and a retry).
"""

from __future__ import annotations

import contextlib
import os
import random
import signal
import subprocess
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path

import pytest

from newsletter.delivery import ledger

from .sendgrid_standin import SendGridStandIn
from .sendtools import make_project, newsletter_cmd, pg_database, run_cli, seed
from .smtpserver import SMTPTestServer

pytestmark = pytest.mark.slow
RECIPIENTS = 10_000
KILLS = 20
WORKERS = 4  # SMTP connections / requests in flight / outbox writers per process
ISSUE = "issues/2026-11-24.md"
SG_BATCH = 50  # NEWSLETTER_SEND_BATCH_SIZE for SendGrid: 20 kills must land mid-send


def _send_id(engine) -> int | None:
    real = [s for s in ledger.list_sends(engine) if s.kind == "real"]
    return real[0].id if real else None


def _uncertain_now(engine) -> int:
    """Reconcile what dead processes left (as a resume does), then count the uncertain."""
    send_id = _send_id(engine)
    if send_id is None:
        return 0
    ledger.reconcile(engine, send_id)
    return ledger.get_send(engine, send_id).counts.get("uncertain", 0)


def _start(project: Path, env: dict) -> subprocess.Popen:
    args = ("send", ISSUE, "--list", "daily", "--yes", "--workers", str(WORKERS))
    return subprocess.Popen(newsletter_cmd(project, *args), env={**os.environ, **env},
                            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)


def _kill_loop(project: Path, env: dict, rng: random.Random, received: Counter, *,
               processes: int = 1, window: float = 0.3, engine=None,
               per_kill: list[tuple[int, int]] | None = None, kill_some: bool = False,
               kills: int = KILLS) -> int:
    """Start `newsletter send` (which resumes an unfinished send) and kill -9 it mid-send.

    Each round waits until the server has received something new, then kills at a random
    moment up to ``window`` seconds later. ``processes`` run at once; with ``kill_some``
    each round kills one or all of them at random and the survivors go on (new ones join
    next round). With ``engine``, each round then reconciles and appends (new uncertain
    recipients, processes killed) to ``per_kill``. Returns how many processes were
    killed while still running.
    """
    killed = 0
    running: list[subprocess.Popen] = []
    uncertain = _uncertain_now(engine) if engine is not None else 0
    for _ in range(kills):
        before = sum(received.values())
        running += [_start(project, env) for _ in range(processes - len(running))]
        deadline = time.monotonic() + 10
        while (sum(received.values()) == before and time.monotonic() < deadline
               and any(p.poll() is None for p in running)):
            time.sleep(0.01)
        time.sleep(rng.uniform(0.0, window))
        victims = rng.sample(running, rng.randint(1, len(running))) if kill_some else running
        now = 0
        for proc in victims:
            if proc.poll() is None:
                proc.send_signal(signal.SIGKILL)
                now += 1
            proc.wait()
        running = [p for p in running if p not in victims and p.poll() is None]
        killed += now
        if engine is not None and per_kill is not None:
            count = _uncertain_now(engine)
            per_kill.append((count - uncertain, now))
            uncertain = count
    for proc in running:  # the last survivors finish (the final run resumes the rest)
        proc.wait(timeout=300)
    return killed


def _check(engine, received: Counter, per_worker: int, kills: int) -> set[str]:
    """Every recipient sent (received exactly once) or uncertain (received at most once),
    at most ``per_worker`` uncertain per worker per kill; returns the uncertain."""
    send_id = _send_id(engine)
    assert len([s for s in ledger.list_sends(engine) if s.kind == "real"]) == 1
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
    print(f"\n{kills} kills: {len(sent)} sent, {len(uncertain)} uncertain "
          f"({sum(1 for e in uncertain if received[e])} of them received), counts {send.counts}")
    assert len(uncertain) <= kills * WORKERS * per_worker
    return uncertain


def _final_run(project: Path, env: dict) -> subprocess.CompletedProcess[str]:
    result = run_cli(project, "send", ISSUE, "--list", "daily", "--yes", env=env)
    if "already sent" in result.stderr:  # the loop already finished it
        return result
    assert result.returncode in (0, 1), result.stderr
    assert "Traceback" not in result.stderr
    return result


def _resend_uncertain(project: Path, env: dict, engine, received: Counter,
                      uncertain: set[str]) -> None:
    """`send --resume ID --resend-uncertain`: then everyone has the message, and only
    the uncertain can have two."""
    send_id = _send_id(engine)
    result = run_cli(project, "send", "--resume", str(send_id), "--resend-uncertain", "--yes",
                     env=env)
    assert result.returncode == 0, result.stderr
    assert "Traceback" not in result.stderr
    assert ledger.get_send(engine, send_id).counts == {"sent": RECIPIENTS}
    everyone = {f"r{n}@example.com" for n in range(1, RECIPIENTS + 1)}
    assert [e for e in everyone if not received[e]] == [], "recipients never received it"
    twice = {email for email, n in received.items() if n > 1}
    assert twice <= uncertain and max(received.values()) <= 2


def _nobody_twice(engine, received: Counter) -> None:
    """Mid-send, after the kills: nobody received two, those recorded sent received one,
    and nobody put back to pending (never handed over) received any."""
    send_id = _send_id(engine)
    assert {email for email, n in received.items() if n > 1} == set()
    sent = ledger.recipients(engine, send_id, ["sent"], limit=None)
    assert [r.email for r in sent if received[r.email] != 1] == []
    pending = ledger.recipients(engine, send_id, ["pending"], limit=None)
    assert [r.email for r in pending if received[r.email]] == []


def _assert_per_kill(per_kill: list[tuple[int, int]], per_worker: int) -> None:
    print(f"new uncertain per round (processes killed): {per_kill}")
    too_many = [(new, n) for new, n in per_kill if new > n * WORKERS * per_worker]
    assert too_many == [], f"more uncertain than {per_worker} per worker per kill"


def _smtp_scenario(tmp_path: Path, database_url: str | None, seed_value: int,
                   **loop: object) -> None:
    rng = random.Random(seed_value)
    with SMTPTestServer(record=False) as smtp:
        project = tmp_path / "p"
        engine = seed(make_project(project, database_url), RECIPIENTS)
        env = {"NEWSLETTER_BACKEND": "smtp", "NEWSLETTER_SMTP_URL": smtp.url}
        per_kill: list[tuple[int, int]] = []
        kills = _kill_loop(project, env, rng, smtp.counts, engine=engine, per_kill=per_kill,
                           **loop)  # type: ignore[arg-type]
        assert kills >= KILLS, "a send finished before the kills: make it longer"
        _assert_per_kill(per_kill, 1)
        _nobody_twice(engine, smtp.counts)
        _final_run(project, env)
        uncertain = _check(engine, smtp.counts, 1, kills)
        _resend_uncertain(project, env, engine, smtp.counts, uncertain)
        engine.dispose()


def test_kill_9_smtp_sqlite(tmp_path: Path) -> None:
    _smtp_scenario(tmp_path, None, 2026)


# 31 kills of two processes: about 100 s alone, near 300 s (the suite's limit) at load 28
@pytest.mark.timeout(900)
def test_kill_9_smtp_postgresql_two_processes(tmp_path: Path) -> None:
    with pg_database() as url:  # two processes share the send; each round kills one or both
        _smtp_scenario(tmp_path, url, 5432, processes=2, kill_some=True)


def _sendgrid_scenario(tmp_path: Path, database_url: str | None, seed_value: int,
                       batch: int = SG_BATCH, **loop: object) -> None:
    rng = random.Random(seed_value)
    with SendGridStandIn(record="counts") as standin:
        standin.delay(0.15)  # a real API answers in ~100-300 ms; kills then land mid-request
        project = tmp_path / "p"
        engine = seed(make_project(project, database_url), RECIPIENTS)
        env = {"NEWSLETTER_BACKEND": "sendgrid", "NEWSLETTER_SENDGRID_API_HOST": standin.url,
               "NEWSLETTER_SEND_BATCH_SIZE": str(batch),
               "SENDGRID_API_KEY": standin.api_key}
        per_kill: list[tuple[int, int]] = []
        kills = _kill_loop(project, env, rng, standin.counts, window=0.2, engine=engine,
                           per_kill=per_kill, **loop)  # type: ignore[arg-type]
        assert kills >= KILLS
        _assert_per_kill(per_kill, batch)  # one request per worker in flight
        _nobody_twice(engine, standin.counts)
        _final_run(project, env)
        _check(engine, standin.counts, batch, kills)
        engine.dispose()


def test_kill_9_sendgrid_sqlite(tmp_path: Path) -> None:
    _sendgrid_scenario(tmp_path, None, 8058)


def test_kill_9_sendgrid_postgresql_two_processes(tmp_path: Path) -> None:
    """PostgreSQL's claims by seq range (the rows stay pending while in flight): two
    processes share the send, each round kills one or both. Batches of 25: two processes
    with their requests out and their next ones built leave up to 8 batches uncertain per
    round, and 20 rounds of 50 came within a few hundred recipients of ending the send."""
    with pg_database() as url:
        _sendgrid_scenario(tmp_path, url, 1916, batch=25, processes=2, kill_some=True)


def _kill_when(proc: subprocess.Popen, ready: Callable[[], bool], *, after: float = 0.0,
               timeout: float = 60) -> None:
    """kill -9 ``proc`` ``after`` seconds after ``ready()`` turns true."""
    deadline = time.monotonic() + timeout
    while not ready():
        assert proc.poll() is None, "the send ended before the kill"
        assert time.monotonic() < deadline, "the send made no progress"
        time.sleep(0.005)
    time.sleep(after)
    assert proc.poll() is None, "the send ended before the kill"
    proc.send_signal(signal.SIGKILL)
    proc.wait()


@pytest.mark.parametrize("database", ["sqlite", pytest.param("postgresql",
                                                             marks=pytest.mark.postgres)])
def test_kill_9_sendgrid_split_batch_leaves_only_the_request_in_flight(
        tmp_path: Path, database: str) -> None:
    """A batch of 5,000 goes out as five requests of 1,000, one after the other: killed
    during the third, the first two are sent, the third uncertain, the rest pending."""
    with (pg_database() if database == "postgresql" else contextlib.nullcontext()) as url, \
            SendGridStandIn(record="counts") as standin:
        standin.delay(0.3)
        project = tmp_path / "p"
        engine = seed(make_project(project, url), 5000)
        env = {"NEWSLETTER_BACKEND": "sendgrid", "NEWSLETTER_SENDGRID_API_HOST": standin.url,
               "NEWSLETTER_SEND_BATCH_SIZE": "5000", "SENDGRID_API_KEY": standin.api_key}
        proc = subprocess.Popen(
            newsletter_cmd(project, "send", ISSUE, "--list", "daily", "--yes", "--workers", "1"),
            env={**os.environ, **env}, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL)
        # two requests accepted; the kill lands while the third waits for its answer
        _kill_when(proc, lambda: sum(standin.counts.values()) >= 2000, after=0.15)
        received = set(standin.counts)
        send_id = _send_id(engine)
        ledger.reconcile(engine, send_id)
        counts = ledger.get_send(engine, send_id).counts
        sent = {r.email for r in ledger.recipients(engine, send_id, ["sent"], limit=None)}
        pending = {r.email for r in ledger.recipients(engine, send_id, ["pending"], limit=None)}
        assert len(sent) >= 2000 and sent <= received
        assert 0 < counts.get("uncertain", 0) <= 1000, counts  # was 5,000 without the journal
        assert not pending & received and counts.get("sending", 0) == 0
        engine.dispose()


def test_kill_9_outbox_leaves_at_most_one_uncertain_per_worker(tmp_path: Path) -> None:
    rng = random.Random(25)
    project = tmp_path / "p"
    total = 4000  # the outbox is quick: five kills land within the first few thousand
    engine = seed(make_project(project), total)
    outbox = project / "outbox"
    env = {"NEWSLETTER_BACKEND": "outbox"}

    def files() -> int:
        return sum(1 for _ in os.scandir(outbox)) if outbox.is_dir() else 0

    per_kill = []
    uncertain = 0
    for _ in range(5):
        proc = _start(project, env)
        target = files() + rng.randint(1, 600)  # kill after that many more files
        _kill_when(proc, lambda target=target: files() >= target)
        count = _uncertain_now(engine)
        per_kill.append((count - uncertain, 1))
        uncertain = count
    _assert_per_kill(per_kill, 1)
    send_id = _send_id(engine)
    result = run_cli(project, "send", "--resume", str(send_id), "--resend-uncertain", "--yes",
                     env=env)
    assert result.returncode == 0, result.stderr
    assert ledger.get_send(engine, send_id).counts == {"sent": total}
    names = {p.name for p in outbox.iterdir() if not p.name.startswith(".tmp-")}
    assert names == {f"{send_id}-{n}.eml" for n in range(1, total + 1)}
    engine.dispose()


@pytest.mark.parametrize("database", ["sqlite", pytest.param("postgresql",
                                                             marks=pytest.mark.postgres)])
def test_kill_9_during_retry_failed_never_reaches_who_unsubscribed(
        tmp_path: Path, database: str) -> None:
    """Half the list fails for now; a fifth of those unsubscribe, bounce or are erased;
    `--retry-failed` is killed mid-send, then resumed (killed again) to the end: none
    of them receives anything, everyone else at most once. (On PostgreSQL the retried
    rows are behind the claim cursor: the second claim path takes them.)"""
    from newsletter.audience.subscribers import remove_subscriber, set_status, unsubscribe
    from newsletter.delivery import sending

    rng = random.Random(1984)
    total, rounds = 6000, 4
    with (pg_database() if database == "postgresql" else contextlib.nullcontext()) as url, \
            SMTPTestServer(record=False) as smtp:
        project = tmp_path / "p"
        settings = make_project(project, url).model_copy(
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
