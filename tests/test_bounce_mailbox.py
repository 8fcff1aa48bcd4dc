"""The bounce mailbox against a real IMAP server (dovecot): real-format DSN and ARF
samples (Gmail, Microsoft, Yahoo), VERP, hard/soft/complaint, each applied once, moved."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from newsletter.audience import suppressions
from newsletter.audience.subscribers import get_subscriber
from newsletter.config import Settings
from newsletter.delivery.backends.smtp import SMTPBackend
from newsletter.feedback import mailbox, verp
from newsletter.feedback.effects import engagement

from .imapserver import DovecotServer
from .sendtools import make_project, run_cli, seed

SAMPLES = Path(__file__).parent / "fixtures" / "bounces"


@pytest.fixture(scope="module")
def imap() -> Iterator[DovecotServer]:
    with DovecotServer() as server:
        yield server


@pytest.fixture
def project(tmp_path: Path, imap: DovecotServer) -> Iterator[tuple[Settings, object]]:
    settings = make_project(tmp_path / "p")
    folder = f"T{tmp_path.name[-8:].replace('-', '')}"
    conn = imap.client()
    conn.create(folder)
    conn.logout()
    url = imap.url.replace("/INBOX?", f"/{folder}?") + f"&processed={folder}.done"
    settings = settings.model_copy(update={"bounce_mailbox": url,
                                           "bounce_domain": "bounce.sendtest.news"})
    config = settings.config_file
    config.write_text(f'bounce_mailbox = "{url}"\n' + config.read_text())
    engine = seed(settings, 10)
    yield settings, engine
    engine.dispose()


def sample(name: str, settings: Settings, subscriber: int, *, send_id: int = 1,
           rcpt: str | None = None, mid: str | None = None) -> bytes:
    address = verp.address(settings.secret_key, "bounce.sendtest.news", send_id, subscriber)
    text = (SAMPLES / name).read_text()
    return (text.replace("{VERP}", address).replace("{RCPT}", rcpt or f"r{subscriber}@example.com")
            .replace("{ID}", mid or f"{name}-{subscriber}").encode())


def _folder(settings: Settings) -> str:
    return mailbox.parse_url(settings.bounce_mailbox).folder


def test_reports_apply_through_verp_and_move(project, imap: DovecotServer) -> None:
    settings, engine = project
    folder = _folder(settings)
    imap.deliver([
        sample("gmail-hard.eml", settings, 1),
        sample("microsoft-hard.eml", settings, 2, rcpt="rewritten@forwarder.example"),
        sample("yahoo-arf.eml", settings, 3),
        sample("microsoft-arf.eml", settings, 4),
        sample("yahoo-soft.eml", settings, 5),
        sample("delayed.eml", settings, 6),
        sample("autoreply.eml", settings, 7),
    ], folder)
    done = run_cli(settings.project_dir, "bounces", "fetch")
    assert done.returncode == 0, done.stderr
    assert "read 7 message(s): 2 hard bounces, 1 soft, 2 complaints, 2 not bounces" in done.stdout
    status = {n: get_subscriber(engine, f"r{n}@example.com").status for n in range(1, 8)}
    assert status == {1: "bounced", 2: "bounced", 3: "complained", 4: "complained",
                      5: "active", 6: "active", 7: "active"}
    # the VERP names the subscriber even when the report names a forwarding address
    assert suppressions.is_suppressed(engine, "r2@example.com").source == "bounce mailbox"
    assert suppressions.is_suppressed(engine, "rewritten@forwarder.example") is None
    assert imap.count(folder) == 0 and imap.count(f"{folder}.done") == 7
    # the same reports again (re-delivered): nothing applied twice
    imap.deliver([sample("gmail-hard.eml", settings, 1)], folder)
    again = mailbox.fetch(engine, settings)
    assert again.read == 1 and again.duplicates == 1 and sum(again.applied.values()) == 0
    counts = engagement(engine, 1)  # no send 1 exists: counters only for real sends
    assert counts.recipients["bounced"] == 0


def test_soft_bounces_count_to_the_limit(project, imap: DovecotServer) -> None:
    settings, engine = project
    settings = settings.model_copy(update={"soft_bounce_limit": 3, "soft_bounce_days": 7})
    imap.deliver([sample("yahoo-soft.eml", settings, 8, mid=f"soft-{n}") for n in range(2)],
                 _folder(settings))
    mailbox.fetch(engine, settings)
    assert get_subscriber(engine, "r8@example.com").status == "active"
    imap.deliver([sample("yahoo-soft.eml", settings, 8, mid="soft-3")], _folder(settings))
    report = mailbox.fetch(engine, settings)
    assert report.soft_to_hard == 1
    subscriber = get_subscriber(engine, "r8@example.com")
    assert subscriber.status == "bounced" and "3 soft bounces" in subscriber.status_reason


def test_two_fetchers_at_once_apply_each_report_once(project, imap: DovecotServer) -> None:
    settings, engine = project
    count = 300
    imap.deliver([sample("gmail-hard.eml", settings, 1 + n % 10, mid=f"dup-{n}")
                  for n in range(count)], _folder(settings))
    reports: list[mailbox.FetchReport] = []
    barrier = threading.Barrier(2)

    def run() -> None:
        barrier.wait()
        reports.append(mailbox.fetch(engine, settings))

    threads = [threading.Thread(target=run) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    assert sum(r.applied["hard"] for r in reports) == count  # each once, whoever read it
    assert sum(r.read for r in reports) == sum(r.applied["hard"] + r.duplicates
                                               for r in reports)
    assert imap.count(_folder(settings)) == 0


def test_smtp_envelope_sender_is_the_verp_address(project) -> None:
    settings, _ = project
    backend = SMTPBackend.from_settings(settings.model_copy(
        update={"smtp_url": "smtp://127.0.0.1:2525"}))
    assert backend.verp == (settings.secret_key, "bounce.sendtest.news")
    address = verp.address(settings.secret_key, "bounce.sendtest.news", 12, 34)
    assert verp.decode(settings.secret_key, f"To: <{address}>") == (12, 34)
    forged = address.replace("-34-", "-35-")
    assert verp.decode(settings.secret_key, forged) is None


def test_bad_mailbox_settings_are_one_line_errors(project) -> None:
    settings, _ = project
    for url, words in (("imap://u:p@host/INBOX", "must not travel in clear"),
                       ("imaps://host/INBOX", "give the user and password")):
        with pytest.raises(Exception, match=words):
            mailbox.parse_url(url)
    wrong = settings.bounce_mailbox.replace("bounce-secret", "wrong")
    config = settings.config_file
    config.write_text(config.read_text().replace(settings.bounce_mailbox, wrong))
    failed = run_cli(settings.project_dir, "bounces", "fetch")
    assert failed.returncode == 1 and "Traceback" not in failed.stderr
    assert "bounce mailbox 127.0.0.1" in failed.stderr


def test_the_worker_reads_the_mailbox_every_few_minutes(project, imap: DovecotServer) -> None:
    import datetime as dt

    from newsletter.scheduling.worker import WorkerProcess

    settings, engine = project
    imap.deliver([sample("gmail-hard.eml", settings, 9)], _folder(settings))
    worker = WorkerProcess(engine, settings)
    now = dt.datetime.now(dt.UTC)
    worker._bounces(now)
    assert worker.bounce_thread is not None
    worker.bounce_thread.join(30)
    assert get_subscriber(engine, "r9@example.com").status == "bounced"
    first = worker.bounce_thread
    worker._bounces(now + dt.timedelta(minutes=1))  # too soon: no second fetch
    assert worker.bounce_thread is first
