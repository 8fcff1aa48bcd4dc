"""Retries and resends never reach someone who may no longer receive.

``--retry-failed``, ``--resend-uncertain`` (by send id, or for the latest send of an
issue and list) and the retries of temporary failures within a run ask the rule of
``audience.receiving`` at the moment they would make a recipient pending again: who
unsubscribed, bounced, complained, left the list or was erased after the first attempt
is skipped with that reason and receives nothing. Against the real SMTP server, on
SQLite and PostgreSQL.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import sqlalchemy as sa

from newsletter.audience.subscribers import remove_subscriber, set_status, unsubscribe
from newsletter.db.tables import subscribers
from newsletter.delivery import ledger, sending

from .sendtools import make_project, run_cli, seed
from .smtpserver import SMTPTestServer

ISSUE = "issues/2026-11-24.md"


@pytest.fixture
def smtp():
    with SMTPTestServer() as server:
        yield server


@pytest.fixture
def project(tmp_path: Path, store_url: str, smtp: SMTPTestServer):
    """Ten subscribers r1..r10 on 'daily', sending through the SMTP server."""
    settings = make_project(tmp_path / "p", store_url)
    settings = settings.model_copy(update={"smtp_url": smtp.url, "backend": "smtp"})
    engine = seed(settings, 10)
    yield settings, engine
    engine.dispose()


def _states(engine, send_id: int) -> dict[str, tuple[str, str | None]]:
    rows = ledger.recipients(engine, send_id, ledger.STATUSES, limit=None)
    return {r.seq: (r.status, r.reason) for r in rows}


def _first_send(settings, engine, **options) -> ledger.SendInfo:
    prepared = sending.preflight(settings, settings.project_dir / ISSUE)
    send = sending.start(engine, settings, prepared, "daily").send
    return sending.run(engine, settings, send.id, retry_delay=0.01, **options)


def test_retry_failed_skips_who_unsubscribed_bounced_or_was_erased(project, smtp) -> None:
    settings, engine = project
    for n in (2, 3, 4, 5):  # refused for now, at every attempt of the run
        smtp.reject(f"r{n}@example.com", 451, "4.7.1 try later", times=None)
    for n in (6, 7, 8):  # the connection drops after DATA: uncertain
        smtp.drop_after_data(f"r{n}@example.com")
    first = _first_send(settings, engine)
    assert first.counts == {"sent": 3, "temporary": 4, "uncertain": 3}
    unsubscribe(engine, "r2@example.com")
    set_status(engine, "r3@example.com", "bounced", "webhook")
    remove_subscriber(engine, "r4@example.com", key=settings.secret_key)
    unsubscribe(engine, "r5@example.com", list_name="daily")
    remove_subscriber(engine, "r6@example.com", key=settings.secret_key)
    set_status(engine, "r7@example.com", "complained", "webhook")
    smtp.clear_faults()
    smtp.reset()

    requeued, result = sending.retry_failed(engine, settings, first.id, retry_delay=0.01)

    assert dict(smtp.counts) == {"r8@example.com": 1}  # the only one who may still receive
    assert requeued.pending == 1
    assert requeued.skipped == {"unsubscribed": 1, "bounced": 1, "complained": 1,
                                "unsubscribed from the list": 1}
    states = _states(engine, first.id)
    assert {n: states[n] for n in range(2, 8)} == {
        2: ("skipped", "unsubscribed"), 3: ("skipped", "bounced"), 4: ("skipped", "erased"),
        5: ("skipped", "unsubscribed from the list"), 6: ("skipped", "erased"),
        7: ("skipped", "complained"),
    }
    assert result.ok and result.counts == {"sent": 4, "skipped": 6}


def test_resend_uncertain_of_a_send_skips_a_hand_deleted_subscriber(project, smtp) -> None:
    settings, engine = project
    for n in (1, 2, 3):
        smtp.drop_after_data(f"r{n}@example.com")
    first = _first_send(settings, engine)
    assert first.counts == {"sent": 7, "uncertain": 3}
    with engine.begin() as conn:  # erased by hand, not through `subscribers remove`
        conn.execute(subscribers.delete().where(subscribers.c.email == "r1@example.com"))
    unsubscribe(engine, "r2@example.com")
    smtp.reset()
    requeued = sending.requeue(engine, first.id, sending.UNCERTAIN)
    result = sending.run(engine, settings, first.id)
    assert requeued == (1, {"erased": 1, "unsubscribed": 1})
    assert dict(smtp.counts) == {"r3@example.com": 1}
    assert result.counts == {"sent": 8, "skipped": 2}


def test_a_retry_within_the_run_skips_who_unsubscribed_meanwhile(project, smtp) -> None:
    settings, engine = project
    smtp.reject("r3@example.com", 451, "4.7.1 try later", times=1)
    smtp.reject("r4@example.com", 451, "4.7.1 try later", times=1)
    left: list[str] = []

    def on_progress(progress) -> None:  # after the first attempt, before the retry
        if progress.counts.get("temporary") and not left:
            left.append("r3@example.com")
            unsubscribe(engine, "r3@example.com", reason="asked by email")

    result = _first_send(settings, engine, on_progress=on_progress)
    assert left and result.counts == {"sent": 9, "skipped": 1}
    assert smtp.counts["r3@example.com"] == 0 and smtp.counts["r4@example.com"] == 1
    assert _states(engine, result.id)[3] == ("skipped", "unsubscribed")


def _cli(settings, smtp, *args: str):
    env = {"NEWSLETTER_BACKEND": "smtp", "NEWSLETTER_SMTP_URL": smtp.url}
    result = run_cli(settings.project_dir, *args, env=env)
    assert "Traceback" not in result.stderr, result.stderr
    return result


def test_send_issue_list_resend_uncertain_resends_the_latest_send(project, smtp) -> None:
    settings, engine = project
    missing = _cli(settings, smtp, "send", ISSUE, "--list", "daily", "--resend-uncertain")
    assert missing.returncode == 1
    assert "has not been sent to list 'daily'" in missing.stderr
    for n in (2, 3, 4):
        smtp.drop_after_data(f"r{n}@example.com")
    first = _cli(settings, smtp, "send", ISSUE, "--list", "daily", "--yes")
    assert first.returncode == 1 and "3 uncertain" in first.stdout
    again = _cli(settings, smtp, "send", ISSUE, "--list", "daily", "--yes")
    assert again.returncode == 1 and "already sent" in again.stderr
    assert _cli(settings, smtp, "subscribers", "unsubscribe", "r3@example.com").returncode == 0
    assert _cli(settings, smtp, "subscribers", "remove", "r4@example.com", "--yes"
                ).returncode == 0
    smtp.reset()

    resent = _cli(settings, smtp, "send", ISSUE, "--list", "daily", "--resend-uncertain",
                  "--yes")

    assert resent.returncode == 0, resent.stdout + resent.stderr
    assert ("resending 1 uncertain recipient(s) of send 1; 1 skipped, no longer receiving "
            "(1 unsubscribed)") in resent.stdout
    assert "8 sent, 0 failed, 2 skipped, 0 uncertain" in resent.stdout
    assert dict(smtp.counts) == {"r2@example.com": 1}
    twice = _cli(settings, smtp, "send", ISSUE, "--list", "daily", "--resend-uncertain",
                 "--yes")
    assert twice.returncode == 0 and "resending 0 uncertain" in twice.stdout
    assert dict(smtp.counts) == {"r2@example.com": 1}  # nothing more
    with engine.connect() as conn:
        assert conn.execute(sa.select(sa.func.count()).select_from(ledger.sends)
                            ).scalar() == 1  # the same send, no new one


def test_resume_resend_uncertain_keeps_working(project, smtp) -> None:
    settings, engine = project
    smtp.drop_after_data("r5@example.com")
    smtp.drop_after_data("r6@example.com")
    first = _first_send(settings, engine)
    set_status(engine, "r6@example.com", "bounced", "webhook")
    smtp.reset()
    resumed = _cli(settings, smtp, "send", "--resume", str(first.id), "--resend-uncertain")
    assert resumed.returncode == 0, resumed.stdout + resumed.stderr
    assert "resending 1 uncertain recipient(s) of send 1; 1 skipped" in resumed.stdout
    assert dict(smtp.counts) == {"r5@example.com": 1}


def test_resend_uncertain_refuses_what_it_cannot_mean(project, smtp) -> None:
    settings, _ = project
    for extra in (["--again"], ["--test-to", "me@example.org"], ["--dry-run"]):
        result = _cli(settings, smtp, "send", ISSUE, "--list", "daily", "--resend-uncertain",
                      *extra)
        assert result.returncode == 2 and "--resend-uncertain" in result.stderr
        assert len(result.stderr.strip().splitlines()) == 1
