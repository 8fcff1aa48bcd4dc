"""HTTP backends keep ``--workers`` requests out at once, never more, while more threads
build the next ones (``BackendBase.request_slot``, ``prepares_ahead``): a real send
through the real clients to the SendGrid and Mailgun stand-ins, each request held 50 ms
by the stand-in as a provider's latency would."""

from __future__ import annotations

from pathlib import Path

import pytest
import sqlalchemy as sa

from newsletter.db.tables import send_workers
from newsletter.delivery import sending
from tests.mailgun_standin import MailgunStandIn
from tests.sendgrid_standin import SendGridStandIn

from .sendtools import make_project, seed

READERS, BATCH, LATENCY = 120, 10, 0.05


@pytest.mark.parametrize("provider", ["sendgrid", "mailgun"])
@pytest.mark.parametrize("workers", [1, 2, 4])
def test_workers_requests_out_at_once_never_more_each_reader_once(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, provider: str, workers: int) -> None:
    settings = make_project(tmp_path / "p")
    engine = seed(settings, READERS)
    if provider == "sendgrid":
        standin = SendGridStandIn(record="counts")
        monkeypatch.setenv("SENDGRID_API_KEY", standin.api_key)
        host = {"sendgrid_api_host": lambda: standin.url}
    else:
        standin = MailgunStandIn(api_key="key-slots", domain="mg.sendtest.news",
                                 record="counts")
        monkeypatch.setenv("MAILGUN_API_KEY", "key-slots")
        host = {"mailgun_api_host": lambda: standin.url, "mailgun_domain": lambda: standin.domain}
    with standin:
        standin.delay(LATENCY)
        settings = settings.model_copy(update={"send_batch_size": BATCH,
                                               **{k: f() for k, f in host.items()}})
        prepared = sending.preflight(settings, settings.project_dir / "issues/2026-11-24.md")
        send = sending.start(engine, settings, prepared, "daily", backend=provider).send
        result = sending.run(engine, settings, send.id, backend=provider, workers=workers)
        stats = standin.stats()
        most = standin.most_in_flight
    assert dict(result.counts) == {"sent": READERS}
    assert stats["recipients"] == stats["distinct"] == READERS and not stats["duplicates"]
    assert stats["requests"] == READERS // BATCH
    assert most == workers  # every slot used, and never one more
    with engine.connect() as conn:
        threads = conn.execute(sa.select(sa.func.count()).select_from(send_workers)
                               .where(send_workers.c.send_id == send.id)).scalar()
    assert threads == workers + max(1, workers // 2)  # the workers and those building ahead
