"""Sending an issue to a list: ledger, skips, refusals, failures, reports (SMTP and outbox)."""

from __future__ import annotations

import threading
from pathlib import Path

import pytest
import sqlalchemy as sa

from newsletter.audience.subscribers import add_subscriber, unsubscribe
from newsletter.delivery import claims, ledger, senders, sending
from newsletter.errors import NewsletterError

from .sendtools import make_project, pg_database, run_cli, seed
from .smtpserver import SMTPTestServer

ISSUE = "issues/2026-11-24.md"


@pytest.fixture
def smtp():
    with SMTPTestServer() as server:
        yield server


def _send(settings, engine, *, list_name="daily", backend="outbox", **options):
    prepared = sending.preflight(settings, settings.project_dir / ISSUE)
    started = sending.start(engine, settings, prepared, list_name, backend=backend,
                            again=options.pop("again", False))
    return sending.run(engine, settings, started.send.id, backend=backend, retry_delay=0.01,
                       **options)


def test_outbox_send_writes_one_message_per_subscriber(tmp_path: Path) -> None:
    settings = make_project(tmp_path / "p")
    engine = seed(settings, 25)
    result = _send(settings, engine)
    assert result.status == "finished"
    assert result.counts == {"sent": 25}
    files = sorted((settings.outbox_path).glob("*.eml"))
    assert len(files) == 25
    text = files[0].read_text()
    assert "List-Unsubscribe-Post: List-Unsubscribe=One-Click" in text


@pytest.mark.parametrize("database", ["sqlite", "postgresql"])
def test_smtp_send_exactly_once_and_skips_late_unsubscribes(tmp_path: Path, smtp, database
                                                           ) -> None:
    with pg_database() if database == "postgresql" else _null() as url:
        settings = make_project(tmp_path / "p", url)
        settings = settings.model_copy(update={"smtp_url": smtp.url})
        engine = seed(settings, 300)
        prepared = sending.preflight(settings, settings.project_dir / ISSUE)
        started = sending.start(engine, settings, prepared, "daily", backend="smtp")
        assert started.send.total == 300
        # after the snapshot, before their message goes out: skipped, not sent
        unsubscribe(engine, "r7@example.com")
        unsubscribe(engine, "r8@example.com", list_name="daily")
        result = sending.run(engine, settings, started.send.id, backend="smtp", workers=3)
        assert result.counts == {"sent": 298, "skipped": 2}
        assert result.status == "finished"
        received = smtp.counts
        assert len(received) == 298 and set(received.values()) == {1}
        assert "r7@example.com" not in received and "r8@example.com" not in received
        message = smtp.parsed("r1@example.com")[0]
        assert message["List-Unsubscribe"].startswith(f"<{settings.base_url}/u/")
        assert message["To"] == "Reader 1 <r1@example.com>"
        # the same issue to the same list again: refused unless --again
        with pytest.raises(NewsletterError, match="already sent"):
            sending.start(engine, settings, prepared, "daily", backend="smtp")
        engine.dispose()


class _null:
    def __enter__(self):
        return None

    def __exit__(self, *exc):
        return False


def test_temporary_failures_retried_permanent_failures_recorded(tmp_path: Path, smtp) -> None:
    settings = make_project(tmp_path / "p").model_copy(update={"smtp_url": None})
    settings = settings.model_copy(update={"smtp_url": smtp.url})
    engine = seed(settings, 20)
    smtp.reject("r3@example.com", 451, "4.7.1 greylisted, try later", times=1)
    smtp.reject("r5@example.com", 550, "5.1.1 no such user")
    result = _send(settings, engine, backend="smtp")
    assert result.counts == {"sent": 19, "failed": 1}
    assert smtp.counts["r3@example.com"] == 1  # the retry went through
    failed = ledger.recipients(engine, result.id, ["failed"])
    assert [(r.email, "5.1.1 no such user" in (r.reason or "")) for r in failed] == [
        ("r5@example.com", True)
    ]


def test_retry_failed_sends_only_temporary_failures(tmp_path: Path, smtp) -> None:
    settings = make_project(tmp_path / "p").model_copy(update={"smtp_url": smtp.url})
    engine = seed(settings, 10)
    smtp.reject("r2@example.com", 451, "4.7.1 try later", times=5)
    smtp.reject("r4@example.com", 550, "5.1.1 no such user")
    result = _send(settings, engine, backend="smtp")
    assert result.counts == {"sent": 8, "temporary": 1, "failed": 1}
    assert result.status == "finished"  # nothing pending: finished, with failures reported
    smtp.clear_faults()
    requeued, again = sending.retry_failed(engine, settings, result.id, backend="smtp",
                                           retry_delay=0.01)
    assert requeued == (1, {})
    assert again.counts == {"sent": 9, "failed": 1}
    assert smtp.counts["r2@example.com"] == 1
    assert smtp.counts["r4@example.com"] == 0
    assert sum(smtp.counts.values()) == 9


def test_stop_event_leaves_the_rest_pending_and_resume_completes(tmp_path: Path, smtp) -> None:
    settings = make_project(tmp_path / "p").model_copy(update={"smtp_url": smtp.url})
    engine = seed(settings, 400)
    prepared = sending.preflight(settings, settings.project_dir / ISSUE)
    send = sending.start(engine, settings, prepared, "daily", backend="smtp").send
    stop = threading.Event()

    def on_progress(progress) -> None:
        if progress.counts.get("sent", 0) >= 100:
            stop.set()

    partial = sending.run(engine, settings, send.id, backend="smtp", workers=1,
                          on_progress=on_progress, stop=stop)
    assert partial.status == "sending"
    assert 100 <= partial.counts["sent"] < 400
    assert partial.counts["pending"] == 400 - partial.counts["sent"]
    # running `send` again for the same issue and list resumes it
    again = sending.start(engine, settings, prepared, "daily", backend="smtp")
    assert again.resumed and again.send.id == send.id
    done = sending.run(engine, settings, send.id, backend="smtp")
    assert done.counts == {"sent": 400}
    assert len(smtp.counts) == 400 and set(smtp.counts.values()) == {1}


def test_preflight_refusals_name_the_missing_setting(tmp_path: Path) -> None:
    settings = make_project(tmp_path / "p")
    for key in ("postal_address", "from_address", "base_url"):
        broken = settings.model_copy(update={key: None})
        with pytest.raises(NewsletterError, match=f"'{key}' is not set"):
            sending.preflight(broken, settings.project_dir / ISSUE)
    bad = settings.project_dir / "issues" / "bad.md"
    bad.write_text("---\nsubject: x\ndate: 2026-11-24\n---\n# Lead: x\n", encoding="utf-8")
    with pytest.raises(NewsletterError, match="validation error"):
        sending.preflight(settings, bad)


def test_cli_send_refuses_without_terminal_and_reports(tmp_path: Path, smtp) -> None:
    project = tmp_path / "p"
    settings = make_project(project)
    seed(settings, 5)
    refused = run_cli(project, "send", ISSUE, "--list", "daily")
    assert refused.returncode == 1
    assert "no terminal" in refused.stderr and "--yes" in refused.stderr
    env = {"NEWSLETTER_SMTP_URL": smtp.url}
    dry = run_cli(project, "send", ISSUE, "--list", "daily", "--dry-run", "--backend", "smtp",
                  env=env)
    assert dry.returncode == 0, dry.stderr
    assert "5 recipient(s)" in dry.stdout and "nothing sent" in dry.stdout
    assert sum(smtp.counts.values()) == 0
    assert (project / "out" / "2026-11-24-sample.eml").read_bytes().startswith(b"To: ")
    test = run_cli(project, "send", ISSUE, "--list", "daily", "--yes", "--backend", "smtp",
                   "--test-to", "editor@example.org, desk@example.org", env=env)
    assert test.returncode == 0, test.stderr
    assert smtp.parsed("editor@example.org")[0]["Subject"].startswith("[TEST] ")
    sent = run_cli(project, "send", ISSUE, "--list", "daily", "--yes", "--backend", "smtp",
                   env=env)
    assert sent.returncode == 0, sent.stderr
    assert "5 sent, 0 failed, 0 skipped, 0 uncertain" in sent.stdout
    assert sum(smtp.counts.values()) == 7
    twice = run_cli(project, "send", ISSUE, "--list", "daily", "--yes", "--backend", "smtp",
                    env=env)
    assert twice.returncode == 1 and "already sent" in twice.stderr
    listing = run_cli(project, "sends", "list")
    assert listing.returncode == 0
    lines = listing.stdout.splitlines()
    assert " real " in lines[1] and " test " in lines[2]  # newest first, tests apart
    show = run_cli(project, "sends", "show", "2")
    assert "sent 5" in show.stdout
    missing = run_cli(project, "sends", "show", "99")
    assert missing.returncode == 1 and "no send with id 99" in missing.stderr
    assert "Traceback" not in missing.stderr


def test_subscriber_added_after_snapshot_is_not_in_the_send(tmp_path: Path) -> None:
    settings = make_project(tmp_path / "p")
    engine = seed(settings, 3)
    prepared = sending.preflight(settings, settings.project_dir / ISSUE)
    send = sending.start(engine, settings, prepared, "daily", backend="outbox").send
    add_subscriber(engine, "late@example.com", lists=["daily"])
    result = sending.run(engine, settings, send.id, backend="outbox")
    assert result.counts == {"sent": 3}
    with engine.connect() as conn:
        emails = conn.execute(sa.select(ledger.send_recipients.c.email)).scalars().all()
    assert "late@example.com" not in emails


@pytest.mark.parametrize("database", ["sqlite", "postgresql"])
def test_claim_batch_claims_exactly_the_batch_size(tmp_path: Path, database: str) -> None:
    with pg_database() if database == "postgresql" else _null() as url:
        settings = make_project(tmp_path / "p", url)
        engine = seed(settings, 50)
        prepared = sending.preflight(settings, settings.project_dir / ISSUE)
        send = sending.start(engine, settings, prepared, "daily", backend="outbox").send
        worker = senders.register_worker(engine, send.id)
        sizes = []
        while (claimed := claims.claim_batch(engine, send, worker, 7)) is not None:
            sizes.append(len(claimed[1]))
        assert sizes == [7] * 7 + [1]
        engine.dispose()


def test_an_undeliverable_address_fails_alone(tmp_path: Path, smtp) -> None:
    settings = make_project(tmp_path / "p").model_copy(update={"smtp_url": smtp.url})
    engine = seed(settings, 5)
    from newsletter.db.tables import subscribers

    with engine.begin() as conn:  # as a hand edit of the database could leave it
        conn.execute(subscribers.update().where(subscribers.c.id == 3)
                     .values(email="not an address"))
    result = _send(settings, engine, backend="smtp")
    assert result.counts == {"sent": 4, "failed": 1}
    failed = ledger.recipients(engine, result.id, ["failed"])
    assert failed[0].email == "not an address" and "not sendable" in failed[0].reason
    assert sum(smtp.counts.values()) == 4


@pytest.mark.parametrize("database", ["sqlite", "postgresql"])
def test_two_unfinished_sends_of_one_issue_to_one_list_cannot_exist(tmp_path: Path, database
                                                                  ) -> None:
    with pg_database() if database == "postgresql" else _null() as url:
        settings = make_project(tmp_path / "p", url)
        engine = seed(settings, 3)
        prepared = sending.preflight(settings, settings.project_dir / ISSUE)
        first = sending.start(engine, settings, prepared, "daily", backend="outbox").send
        fields = dict(kind="real", issue_path=ISSUE, issue_slug=prepared.slug, subject="s",
                      list_id=first.list_id, list_name="daily", backend="outbox", html="h",
                      text="t", identity=prepared.identity)
        # what a second `newsletter send` started at the same moment would do
        with pytest.raises(ledger.SendExists):
            ledger.create_send(engine, **fields)
        sending.run(engine, settings, first.id, backend="outbox")
        again = sending.start(engine, settings, prepared, "daily", backend="outbox", again=True)
        assert again.send.id != first.id and not again.resumed
        engine.dispose()


def test_a_backend_without_its_settings_is_refused_before_any_send_is_recorded(
    tmp_path: Path,
) -> None:
    project = tmp_path / "p"
    settings = make_project(project)
    engine = seed(settings, 3)
    result = run_cli(project, "send", ISSUE, "--list", "daily", "--yes", "--backend", "smtp")
    assert result.returncode == 2
    assert "'smtp_url' is not set" in result.stderr and "Traceback" not in result.stderr
    assert ledger.list_sends(engine) == []
