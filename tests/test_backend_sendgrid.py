"""The SendGrid backend: the real `sendgrid` client against the local v3 stand-in."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest
from sendgrid import SendGridAPIClient

from newsletter.audience import tokens
from newsletter.delivery.backends import get_backend
from newsletter.delivery.backends.base import BackendUnavailable, Status
from newsletter.delivery.backends.sendgrid import SendGridBackend, split_requests
from newsletter.delivery.claims import ClaimedRow
from newsletter.delivery.personalize import MessageTemplate, Recipient
from newsletter.errors import ConfigError
from tests.delivery_helpers import (
    REPEATED_ROW,
    UNUSUAL_ROWS,
    make_template,
    recipients,
    send_settings,
)
from tests.sendgrid_standin import SendGridStandIn, sendgrid_standin  # noqa: F401 (fixture)
from tests.smtpserver import free_port

KEY = "SG.test-key"


@pytest.fixture
def standin(sendgrid_standin: SendGridStandIn) -> SendGridStandIn:  # noqa: F811
    assert sendgrid_standin.api_key == KEY
    return sendgrid_standin


@pytest.fixture
def template(project: Path) -> MessageTemplate:
    return make_template(project, send_id=55, list_id=6)


def backend_for(sg: SendGridStandIn, **kwargs) -> SendGridBackend:
    kwargs.setdefault("backoff", 0.01)
    return SendGridBackend(KEY, sg.url, **kwargs)


def test_one_request_per_batch_and_what_each_recipient_gets(
    project: Path, standin: SendGridStandIn, template: MessageTemplate,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("SENDGRID_API_KEY", KEY)
    settings = send_settings(project, backend="sendgrid", sendgrid_api_host=standin.url)
    backend = get_backend(settings)
    assert isinstance(backend, SendGridBackend)
    people = recipients(1000)
    with backend:
        results = backend.send_batch(template.messages(people))
    assert all(r.status is Status.SENT for r in results)
    assert standin.requests == 1 and backend.requests_made == 1
    assert len({r.provider_id for r in results}) == 1 and results[0].provider_id
    assert dict(standin.counts) == {p.email: 1 for p in people}

    (named,) = standin.expand("user1@example.com")
    assert named["to"] == [{"email": "user1@example.com", "name": "Reader 1"}]
    assert named["from"] == {"email": "news@example.org", "name": "The Briefing"}
    assert named["reply_to"] == {"email": "editor@example.org"}
    assert named["subject"] == "Can the river towns rebuild before spring?"
    assert named["content_types"] == ["text/plain", "text/html"]
    headers = named["headers"]
    assert headers["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
    assert headers["List-Id"] == "Daily Briefing <daily-briefing.news.example.org>"
    url = headers["List-Unsubscribe"].strip("<>")
    assert tokens.verify(url.rsplit("/", 1)[1], settings, list_id=6).subscriber_id == 1
    assert named["custom_args"] == {"send_id": "55", "list_id": "6", "subscriber_id": "1"}
    assert f'href="{url}"' in named["html"] and f"Unsubscribe: {url}" in named["text"]
    assert "%%" not in named["html"] + named["text"]
    # the body left once per request, not once per recipient
    assert standin.bytes_received < 1000 * 10_000


def test_same_message_as_the_smtp_path(standin: SendGridStandIn, project: Path) -> None:
    path = project / "merge.md"
    path.write_text(
        "---\nsubject: Hi {{name|there}}\ndate: 2026-11-24\npreheader: p\n---\n"
        "# Lead: For {{name|reader}}\nDear {{ name | friend }}, Tom & Jerry say hi.\n",
        encoding="utf-8",
    )
    template = make_template(project, send_id=1, issue=path)
    people = [Recipient(1, "a@example.com", "Zoë <&>"), Recipient(2, "b@example.com", None)]
    messages = template.messages(people)
    with backend_for(standin) as backend:
        assert all(r.ok for r in backend.send_batch(messages))
    for message in messages:
        (got,) = standin.expand(message.email)
        assert got["html"] == message.html
        assert got["text"] == message.text
        assert got["subject"] == message.subject
    assert standin.expand("a@example.com")[0]["subject"] == "Hi Zoë <&>"
    assert "For Zoë &lt;&amp;&gt;" in standin.expand("a@example.com")[0]["html"]
    assert "Dear friend, Tom &amp; Jerry" in standin.expand("b@example.com")[0]["html"]


def expected_personalization(backend: SendGridBackend, message) -> dict:
    """What one recipient's personalization must say, written out independently of the
    backend's serializer (``personalization_json``)."""
    template = message.template
    content = backend.content_for(template)
    url, name, prefs = message.unsubscribe_url, message.name, message.preferences_url
    subs = dict(zip(content.text_keys, template.text.values(url, name, prefs), strict=True))
    subs.update(zip(content.html_keys, template.html.values(url, name, prefs), strict=True))
    to = {"email": message.email, "name": name} if name else {"email": message.email}
    item = {
        "to": [to],
        "headers": {"List-Unsubscribe": f"<{url}>", "Message-ID": message.message_id},
        "substitutions": subs,
    }
    if message.subscriber_id is not None:
        item["custom_args"] = {"subscriber_id": str(message.subscriber_id)}
    if content.personal_subject:
        item["subject"] = message.subject
    return item


def test_fast_json_equals_the_dict_payload(project: Path) -> None:
    path = project / "merge.md"
    path.write_text(
        "---\nsubject: Hi {{name|there}}\ndate: 2026-11-24\npreheader: p\n---\n"
        '# Lead: For {{name|"reader"}}\nDear {{ name | friend & co }}, hi.\n',
        encoding="utf-8",
    )
    backend = SendGridBackend(KEY, "http://127.0.0.1:9")
    for template in (make_template(project, issue=path), make_template(project)):
        people = [
            Recipient(1, "a@example.com", 'Zoë "Q" <&> \\ \u2028'),
            Recipient(2, "b@example.com", None),
            Recipient(None, "ü@example.com", "Test"),
        ]
        messages = template.messages(people + recipients(50, start=300))
        body = json.loads(backend.payload_json(messages))
        assert body == {**backend.content_for(template).base, "personalizations": [
            expected_personalization(backend, m) for m in messages]}


def test_more_than_1000_or_repeated_addresses_are_split(
    standin: SendGridStandIn, template: MessageTemplate
) -> None:
    people = recipients(2500) + [Recipient(None, "USER1@example.com"), Recipient(None, "x@y.org")]
    messages = template.messages(people)
    groups = split_requests(messages)
    assert [len(g) for g in groups] == [1000, 1000, 502]
    with backend_for(standin) as backend:
        results = backend.send_batch(messages)
    assert all(r.ok for r in results)
    assert standin.statuses == {202: 3}
    assert standin.counts["user1@example.com"] == 2  # two messages asked for: the test one too
    assert sum(standin.counts.values()) == 2502


def test_429_waits_for_the_reset_then_sends(
    standin: SendGridStandIn, template: MessageTemplate
) -> None:
    standin.rate_limit(1, window=1.0)
    backend = backend_for(standin)
    started = time.monotonic()
    results = backend.send_batch(template.messages(recipients(2000)))
    elapsed = time.monotonic() - started
    assert all(r.ok for r in results)
    assert standin.statuses[429] >= 1 and standin.statuses[202] == 2
    assert [status for status, _ in backend.waits] == [429] * len(backend.waits)
    assert elapsed >= 1.0  # it waited for the window to reset instead of hammering
    assert standin.requests == 2 + len(backend.waits)
    assert sum(standin.counts.values()) == 2000


def test_5xx_is_retried_with_backoff(standin: SendGridStandIn, template: MessageTemplate) -> None:
    standin.fail_next(2, status=503)
    backend = backend_for(standin)
    results = backend.send_batch(template.messages(recipients(10)))
    assert all(r.ok for r in results)
    assert standin.statuses == {503: 2, 202: 1}
    assert [s for s, _ in backend.waits] == [503, 503]
    assert set(standin.counts.values()) == {1}


def test_5xx_forever_is_a_temporary_failure(
    standin: SendGridStandIn, template: MessageTemplate
) -> None:
    standin.fail_next(10, status=500)
    backend = backend_for(standin, max_attempts=3)
    results = backend.send_batch(template.messages(recipients(5)))
    assert {r.status for r in results} == {Status.TEMPORARY}
    assert results[0].reason.startswith("500 ") and "after 3 attempts" in results[0].reason
    assert standin.requests == 3 and not standin.counts


def test_400_body_is_recorded_for_the_batch(
    standin: SendGridStandIn, project: Path
) -> None:
    template = make_template(project, from_address="Zoë <zoë@exämple.org>")
    results = backend_for(standin).send_batch(template.messages(recipients(3)))
    assert {r.status for r in results} == {Status.PERMANENT}
    assert results[0].reason.startswith("400 ")
    error = json.loads(results[0].reason[4:])
    assert error["errors"][0]["field"] == "from.email"
    assert standin.statuses == {400: 1}  # not retried


def test_413_splits_the_batch(template: MessageTemplate) -> None:
    with SendGridStandIn(api_key=KEY, max_bytes=300_000) as standin:
        backend = backend_for(standin)
        results = backend.send_batch(template.messages(recipients(1000)))
        assert all(r.ok for r in results)
        assert standin.statuses[413] >= 1
        assert sum(standin.counts.values()) == 1000 and set(standin.counts.values()) == {1}


def test_bad_key_is_a_clear_error(standin: SendGridStandIn, template: MessageTemplate) -> None:
    backend = SendGridBackend("SG.wrong", standin.url)
    with pytest.raises(BackendUnavailable, match="401.*check SENDGRID_API_KEY"):
        backend.send_batch(template.messages(recipients(2)))
    assert not standin.counts


def test_forbidden_key(template: MessageTemplate) -> None:
    with (
        SendGridStandIn(api_key=KEY, forbidden_keys=("SG.readonly",)) as standin,
        pytest.raises(BackendUnavailable, match="403"),
    ):
        SendGridBackend("SG.readonly", standin.url).send_batch(template.messages(recipients(1)))


def test_timeout_leaves_the_batch_uncertain(
    standin: SendGridStandIn, template: MessageTemplate
) -> None:
    standin.delay(1.5)
    backend = backend_for(standin, timeout=0.5)
    results = backend.send_batch(template.messages(recipients(4)))
    assert {r.status for r in results} == {Status.UNCERTAIN}
    assert "no answer" in results[0].reason
    assert standin.requests == 1  # not blindly resent


def test_nobody_listening_stops_the_send(template: MessageTemplate) -> None:
    backend = SendGridBackend(KEY, f"http://127.0.0.1:{free_port()}", backoff=0.01, max_attempts=2)
    with pytest.raises(BackendUnavailable, match="cannot reach"):
        backend.send_batch(template.messages(recipients(1)))


def test_missing_api_key_is_a_one_line_config_error(project: Path) -> None:
    settings = send_settings(project, backend="sendgrid")
    with pytest.raises(ConfigError, match="^SENDGRID_API_KEY is not set") as info:
        get_backend(settings)
    assert "\n" not in str(info.value)


def test_standin_contract_with_the_bare_client(standin: SendGridStandIn) -> None:
    """The stand-in itself answers as documented (the tests above rely on it)."""
    from python_http_client import exceptions as errors

    client = SendGridAPIClient(api_key=KEY, host=standin.url)
    good = {
        "personalizations": [{"to": [{"email": "a@example.com"}]}],
        "from": {"email": "n@example.org"},
        "subject": "s",
        "content": [{"type": "text/plain", "value": "t"}],
    }
    response = client.client.mail.send.post(request_body=good)
    assert response.status_code == 202 and response.headers["X-Message-Id"]
    cases = [
        ({k: v for k, v in good.items() if k != "from"}, "from.email"),
        ({k: v for k, v in good.items() if k != "subject"}, "subject"),
        ({k: v for k, v in good.items() if k != "content"}, "content"),
        ({**good, "personalizations": []}, "personalizations"),
        ({**good, "personalizations": [{"to": [{"email": f"u{i}@x.org"}]} for i in range(1001)]},
         "personalizations"),
        ({**good, "personalizations": [{"to": [{"email": "a@x.org"}]}, {"to": [{"email": "A@x.org"}]}]},
         "personalizations.1.to"),
    ]
    for body, field in cases:
        with pytest.raises(errors.BadRequestsError) as info:
            client.client.mail.send.post(request_body=body)
        error = json.loads(info.value.body)["errors"][0]
        assert error["field"] == field and error["message"]
        assert set(error) == {"message", "field", "help"}
    with pytest.raises(errors.UnauthorizedError):
        SendGridAPIClient(api_key="nope", host=standin.url).client.mail.send.post(request_body=good)
    standin.rate_limit(0)
    with pytest.raises(errors.TooManyRequestsError) as limited:
        client.client.mail.send.post(request_body=good)
    headers = limited.value.headers
    assert headers["X-RateLimit-Remaining"] == "0"
    assert int(headers["X-RateLimit-Reset"]) >= int(time.time())
    assert standin.counts == {"a@example.com": 1}


def test_the_row_fast_path_builds_the_same_request_byte_for_byte(template) -> None:
    from newsletter.delivery.backends.sendgrid import rows_json

    backend = SendGridBackend(KEY, "http://127.0.0.1:9")
    content = backend.content_for(template)
    rows = recipients(50) + [Recipient(900, "zoë@exämple.com", 'Zoë "Q" <&> \\ é'),
                             Recipient(901, "o'neil+tag@example.com", "O'Neil & Sons")]
    claimed = [ClaimedRow(*r, seq=r.subscriber_id) for r in rows]  # as the ledger hands them
    fast = rows_json(content, template, claimed)
    assert fast == backend.payload_json(template.messages(rows))
    assert json.loads(fast)["personalizations"][50]["to"][0]["name"] == 'Zoë "Q" <&> \\ é'


@pytest.mark.parametrize("odd", [*UNUSUAL_ROWS, REPEATED_ROW])
def test_the_row_fast_path_leaves_unusual_batches_to_the_general_path(template, odd) -> None:
    from newsletter.delivery.backends.sendgrid import rows_json

    content = SendGridBackend(KEY, "http://127.0.0.1:9").content_for(template)
    assert rows_json(content, template, recipients(3) + [odd]) is None
    assert rows_json(content, template, recipients(3)) is not None


def test_send_rows_posts_the_batch_and_answers_for_each_row(standin, template) -> None:
    backend = backend_for(standin)
    people = recipients(300)
    with backend:
        results = backend.send_rows(template, people)
    assert results is not None and len(results) == 300 and all(r.ok for r in results)
    assert standin.requests == 1 and dict(standin.counts) == {p.email: 1 for p in people}
