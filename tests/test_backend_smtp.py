"""The SMTP backend against a real aiosmtpd server on 127.0.0.1."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import pytest

from newsletter.audience import tokens
from newsletter.delivery.backends import get_backend
from newsletter.delivery.backends.base import BackendUnavailable, Status
from newsletter.delivery.backends.smtp import SMTPBackend, parse_smtp_url
from newsletter.delivery.personalize import MessageTemplate
from newsletter.errors import ConfigError
from tests.delivery_helpers import make_template, recipients, send_settings
from tests.smtpserver import SMTPTestServer, smtp_server  # noqa: F401 (a fixture)


@pytest.fixture
def server(smtp_server: SMTPTestServer) -> SMTPTestServer:  # noqa: F811
    return smtp_server


@pytest.fixture
def template(project: Path) -> MessageTemplate:
    return make_template(project, send_id=31, list_id=2)


def backend_for(url: str, workers: int = 1) -> SMTPBackend:
    return SMTPBackend(parse_smtp_url(url), workers=workers)


def test_each_recipient_gets_exactly_one_message_with_its_headers(
    project: Path, server: SMTPTestServer, template: MessageTemplate
) -> None:
    settings = send_settings(project, backend="smtp", smtp_url=server.url)
    backend = get_backend(settings, workers=2)
    assert isinstance(backend, SMTPBackend)
    people = recipients(40)
    with backend:
        results = backend.send_batch(template.messages(people))
    assert [r.status for r in results] == [Status.SENT] * 40
    assert all(r.provider_id and r.provider_id.startswith("250") for r in results)
    assert dict(server.counts) == {p.email: 1 for p in people}
    assert server.envelopes[0] == ("news@example.org", "user1@example.com")
    for person in people[:5]:
        (received,) = server.parsed(person.email)
        assert received["To"].endswith(f"<{person.email}>") or received["To"] == person.email
        assert received["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
        url = received["List-Unsubscribe"].strip("<>")
        assert tokens.verify(url.rsplit("/", 1)[1], settings, list_id=2).subscriber_id == (
            person.subscriber_id
        )
        html = received.get_body(("html",)).get_content()
        assert f'href="{url}"' in html
    # the whole batch went over one connection
    assert backend.connections_made == 1


def test_pool_of_n_connections_under_concurrent_batches(
    server: SMTPTestServer, template: MessageTemplate
) -> None:
    backend = backend_for(server.url, workers=4)
    people = recipients(200)
    batches = [people[i : i + 25] for i in range(0, 200, 25)]
    outcomes: list = []
    backend.open()
    barrier = threading.Barrier(4)

    def worker(part: list) -> None:
        barrier.wait()
        for batch in part:
            outcomes.extend(backend.send_batch(template.messages(batch)))

    threads = [threading.Thread(target=worker, args=(batches[i::4],)) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    backend.close()
    assert len(outcomes) == 200 and all(r.ok for r in outcomes)
    assert sum(server.counts.values()) == 200 and set(server.counts.values()) == {1}
    assert 2 <= backend.connections_made <= 4


def test_5xx_is_permanent_4xx_temporary_with_the_reply(
    server: SMTPTestServer, template: MessageTemplate
) -> None:
    people = recipients(4)
    server.reject(people[1].email, 550, "5.1.1 <user2@example.com>: mailbox unavailable")
    server.reject(people[2].email, 451, "4.7.1 greylisted, try later")
    server.reject(people[3].email, 552, "5.3.4 message too big", stage="data")
    with backend_for(server.url) as backend:
        results = backend.send_batch(template.messages(people))
    assert [r.status for r in results] == [
        Status.SENT, Status.PERMANENT, Status.TEMPORARY, Status.PERMANENT,
    ]
    assert results[1].reason == "550 5.1.1 <user2@example.com>: mailbox unavailable"
    assert results[2].reason == "451 4.7.1 greylisted, try later"
    assert results[3].reason.startswith("552 5.3.4")
    assert dict(server.counts) == {people[0].email: 1}


def test_421_reconnects_and_delivers_once(server: SMTPTestServer, template: MessageTemplate) -> None:
    people = recipients(6)
    server.reject(people[2].email, 421, "4.3.2 too many messages on this connection", times=2)
    server.reject(people[4].email, 421, "4.3.2 shutting down", times=1, stage="data")
    with backend_for(server.url) as backend:
        results = backend.send_batch(template.messages(people))
        assert all(r.ok for r in results), results
        assert backend.connections_made == 4
    assert dict(server.counts) == {p.email: 1 for p in people}


def test_421_forever_becomes_a_temporary_failure(
    server: SMTPTestServer, template: MessageTemplate
) -> None:
    people = recipients(3)
    server.reject(people[0].email, 421, "4.3.2 go away")
    with backend_for(server.url) as backend:
        results = backend.send_batch(template.messages(people))
    assert results[0].status is Status.TEMPORARY and "421 4.3.2 go away" in results[0].reason
    assert [r.status for r in results[1:]] == [Status.SENT, Status.SENT]


def test_dropped_connection_before_data_is_retried(
    server: SMTPTestServer, template: MessageTemplate
) -> None:
    people = recipients(3)
    server.drop_at_rcpt(people[1].email, times=1)
    with backend_for(server.url) as backend:
        results = backend.send_batch(template.messages(people))
    assert all(r.ok for r in results)
    assert dict(server.counts) == {p.email: 1 for p in people}


def test_connection_lost_after_data_is_uncertain_not_resent(
    server: SMTPTestServer, template: MessageTemplate
) -> None:
    people = recipients(3)
    server.drop_after_data(people[1].email, times=1)
    with backend_for(server.url) as backend:
        results = backend.send_batch(template.messages(people))
    assert [r.status for r in results] == [Status.SENT, Status.UNCERTAIN, Status.SENT]
    assert "after sending" in results[1].reason
    # the server did get it: resending automatically would have doubled it
    assert dict(server.counts) == {p.email: 1 for p in people}


def test_a_stale_pooled_connection_is_replaced(template: MessageTemplate) -> None:
    with SMTPTestServer() as first:
        backend = backend_for(first.url)
        backend.open()
        assert backend.send_batch(template.messages(recipients(1)))[0].ok
        port = first.port
    with SMTPTestServer(port=port) as second:  # server restarted: the pooled socket is dead
        results = backend.send_batch(template.messages(recipients(2, start=10)))
        assert all(r.ok for r in results)
        assert sum(second.counts.values()) == 2
    backend.close()


def test_starttls_and_auth(template: MessageTemplate) -> None:
    with SMTPTestServer(auth=("mailer", "p@ss w:rd"), tls="starttls") as server:
        assert "starttls=true" in server.url and "p%40ss%20w%3Ard" in server.url
        with backend_for(server.url) as backend:
            assert all(r.ok for r in backend.send_batch(template.messages(recipients(3))))
        assert server.logins == ["mailer"]
        assert sum(server.counts.values()) == 3


def test_implicit_tls_and_auth(template: MessageTemplate) -> None:
    with SMTPTestServer(auth=("u", "p"), tls="implicit") as server:
        assert server.url.startswith("smtps://")
        with backend_for(server.url) as backend:
            assert all(r.ok for r in backend.send_batch(template.messages(recipients(2))))
        assert sum(server.counts.values()) == 2


def test_wrong_password_is_a_clear_error(template: MessageTemplate) -> None:
    with SMTPTestServer(auth=("u", "right"), tls="starttls") as server:
        url = server.url.replace(":right@", ":wrong@")
        with pytest.raises(BackendUnavailable, match="refused the login .*535.*check the user"):
            backend_for(url).open()
        assert server.total == 0


def test_untrusted_certificate_is_refused(template: MessageTemplate) -> None:
    with SMTPTestServer(tls="starttls") as server:
        url = server.url.split("&cafile")[0]
        with pytest.raises(BackendUnavailable, match="TLS failed"):
            backend_for(url).open()


def test_nothing_listening_is_backend_unavailable(template: MessageTemplate) -> None:
    from tests.smtpserver import free_port

    backend = backend_for(f"smtp://127.0.0.1:{free_port()}?timeout=2")
    with pytest.raises(BackendUnavailable, match="cannot connect to smtp://127.0.0.1"):
        backend.send_batch(template.messages(recipients(1)))


@pytest.mark.parametrize(
    ("url", "message"),
    [
        (None, "'smtp_url' is not set"),
        ("http://host", "must start with smtp:// or smtps://"),
        ("smtp://", "no host name"),
        ("smtp://host:notaport", "not a valid URL"),
        ("smtp://host/path", "must not have a path"),
        ("smtp://host?startls=true", "option 'startls' is unknown"),
        ("smtp://host?starttls=maybe", "must be true or false"),
        ("smtps://host?starttls=true", "choose one"),
        ("smtp://user@host", "no password"),
        ("smtp://host?pool=0", "pool"),
    ],
)
def test_bad_urls_are_one_line_config_errors(url: str | None, message: str) -> None:
    with pytest.raises(ConfigError, match=message) as info:
        parse_smtp_url(url)
    assert "\n" not in str(info.value)


def test_url_defaults_and_decoding() -> None:
    cfg = parse_smtp_url("smtp://apikey:S%2FG%40key@smtp.sendgrid.net?starttls=true")
    assert (cfg.host, cfg.port, cfg.username, cfg.password, cfg.starttls) == (
        "smtp.sendgrid.net", 587, "apikey", "S/G@key", True,
    )
    assert parse_smtp_url("smtps://h").port == 465
    assert parse_smtp_url("smtp://h").port == 25
    assert parse_smtp_url("smtp://h:2525?pool=8&timeout=5").pool == 8


def test_probe_checks_login_without_sending() -> None:
    from newsletter.delivery.backends.smtp import probe

    with SMTPTestServer(auth=("u", "p"), tls="starttls") as server:
        assert "ready (TLS)" in probe(parse_smtp_url(server.url))
        assert server.logins == ["u"] and server.total == 0


def test_missing_smtp_url_names_the_config_file(project: Path) -> None:
    with pytest.raises(ConfigError, match=r"newsletter.toml: 'smtp_url' is not set"):
        get_backend(send_settings(project), "smtp")


def test_server_gone_mid_batch_leaves_the_rest_temporary(template: MessageTemplate) -> None:
    server = SMTPTestServer().start()
    people = recipients(30)
    server.drop_after_data(people[9].email)  # message 10 uncertain, connection gone
    backend = backend_for(server.url + "?timeout=2")
    server_stop = threading.Timer(0, server.stop)
    original = backend._transaction

    def transaction(conn, sender, message, *progress):
        outcome = original(conn, sender, message, *progress)
        if message.email == people[9].email:
            server_stop.run()  # the server goes away for good
        return outcome

    backend._transaction = transaction  # type: ignore[method-assign]
    started = time.monotonic()
    results = backend.send_batch(template.messages(people))
    assert [r.status for r in results[:9]] == [Status.SENT] * 9
    assert results[9].status is Status.UNCERTAIN
    assert {r.status for r in results[10:]} == {Status.TEMPORARY}
    assert "cannot connect" in results[10].reason
    assert time.monotonic() - started < 10  # gave up once, not once per message


def test_internationalized_addresses_need_smtputf8(template: MessageTemplate) -> None:
    from newsletter.delivery.personalize import Recipient

    people = [Recipient(1, "zoë@exämple.com", "Zoë"), Recipient(2, "plain@example.com", None)]
    with SMTPTestServer() as server, backend_for(server.url) as backend:
        results = backend.send_batch(template.messages(people))
        assert [r.status for r in results] == [Status.SENT, Status.SENT]
        (received,) = server.parsed("zoë@exämple.com")
        assert received["To"] == "zoë@exämple.com"
    with SMTPTestServer(smtputf8=False) as server, backend_for(server.url) as backend:
        results = backend.send_batch(template.messages(people))
        assert results[0].status is Status.PERMANENT and "SMTPUTF8" in results[0].reason
        assert results[1].status is Status.SENT
