"""The Postmark backend against the local stand-in of ``POST /email/batch``."""

from __future__ import annotations

import json
from pathlib import Path

import httpx
import pytest

from newsletter.delivery.backends import get_backend
from newsletter.delivery.backends.base import BackendUnavailable, Status
from newsletter.delivery.backends.postmark import PostmarkBackend, calls
from newsletter.delivery.personalize import MessageTemplate, Recipient
from newsletter.errors import ConfigError
from tests.delivery_helpers import UNUSUAL_ROWS, make_template, recipients, send_settings
from tests.postmark_standin import PostmarkStandIn
from tests.smtpserver import free_port

TOKEN = "pm-test-token"


@pytest.fixture
def standin():
    with PostmarkStandIn(api_key=TOKEN) as pm:
        yield pm


@pytest.fixture
def template(project: Path) -> MessageTemplate:
    return make_template(project, send_id=55, list_id=6)


def backend_for(pm: PostmarkStandIn, **kw) -> PostmarkBackend:
    kw.setdefault("backoff", 0.01)
    return PostmarkBackend(TOKEN, pm.url, **kw)


def test_500_per_call_on_the_broadcast_stream_with_each_recipients_headers(
    project: Path, standin: PostmarkStandIn, template: MessageTemplate,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("POSTMARK_SERVER_TOKEN", TOKEN)
    settings = send_settings(project, backend="postmark", postmark_api_host=standin.url)
    backend = get_backend(settings)
    assert isinstance(backend, PostmarkBackend) and backend.batch_size == 500
    people = recipients(1200)
    messages = template.messages(people, headers=False)
    with backend:
        results = backend.send_batch(messages)
    assert [r.status for r in results] == [Status.SENT] * 1200
    sizes = [(len(items), 2 + sum(len(i) + 1 for i in items))
             for _, items in calls(backend.message_items(messages))]
    assert standin.requests == len(sizes) > 3  # ~50 KB a message: 5 MB holds ~100
    assert all(n <= 500 and size <= 5_000_000 for n, size in sizes)
    assert len({r.provider_id for r in results}) == 1200
    assert dict(standin.counts) == {p.email: 1 for p in people}
    (got,) = standin.messages("user1@example.com")
    message = messages[0]
    assert got["To"] == "Reader 1 <user1@example.com>"
    assert got["MessageStream"] == "broadcast"
    assert got["HtmlBody"] == message.html and got["TextBody"] == message.text
    assert got["Subject"] == message.subject and got["ReplyTo"] == "editor@example.org"
    headers = {h["Name"]: h["Value"] for h in got["Headers"]}
    assert headers["List-Unsubscribe"] == f"<{message.unsubscribe_url}>"
    assert headers["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
    assert headers["Message-ID"] == message.message_id
    assert got["Metadata"] == {"send_id": "55", "list_id": "6", "subscriber_id": "1"}
    standin.reset()
    with backend_for(standin, call_bytes=50_000_000) as whole:  # Postmark's own limit
        assert all(r.ok for r in whole.send_batch(messages))
    assert standin.requests == 3  # 500 + 500 + 200


def test_names_are_escaped_in_html_and_json(standin: PostmarkStandIn, project: Path) -> None:
    path = project / "merge.md"
    path.write_text("---\nsubject: Hi {{name|there}} \"now\"\ndate: 2026-11-24\npreheader: p"
                    "\n---\n# Lead: For {{name|reader}}\nDear {{ name | friend }}, \\ & \"x\".\n",
                    encoding="utf-8")
    template = make_template(project, send_id=1, issue=path)
    messages = template.messages([Recipient(1, "a@example.com", "Zoë <&> \"Q\""),
                                  Recipient(2, "b@example.com", None)])
    with backend_for(standin) as backend:
        assert all(r.ok for r in backend.send_batch(messages))
    for message in messages:
        (got,) = standin.messages(message.email)
        assert (got["HtmlBody"], got["TextBody"], got["Subject"]) == (
            message.html, message.text, message.subject)
    assert standin.messages("a@example.com")[0]["Subject"] == 'Hi Zoë <&> "Q" "now"'


def test_406_inactive_recipient_fails_alone_and_for_good(
    standin: PostmarkStandIn, template: MessageTemplate,
) -> None:
    standin.inactive.add("user3@example.com")
    with backend_for(standin) as backend:
        results = backend.send_batch(template.messages(recipients(5), headers=False))
    assert [r.status for r in results] == [Status.SENT] * 2 + [Status.PERMANENT] + [
        Status.SENT] * 2
    assert results[2].reason.startswith("406 inactive recipient: You tried to send")
    assert "user3@example.com" not in standin.counts and len(standin.counts) == 4


def test_429_waits_then_sends_and_5xx_backs_off(
    standin: PostmarkStandIn, template: MessageTemplate,
) -> None:
    standin.rate_limit(1, window=0.5)
    slept: list[float] = []
    with backend_for(standin, sleep=slept.append) as backend:
        first = backend.send_batch(template.messages(recipients(2), headers=False))
        standin.fail_next(2, status=503)
        standin.rate_limit(None)
        second = backend.send_batch(template.messages(recipients(2, start=3), headers=False))
    assert all(r.ok for r in first + second)
    assert [status for status, _ in backend.api.waits] == [503, 503]
    assert len(standin.counts) == 4


def test_429_forever_is_temporary(standin: PostmarkStandIn, template: MessageTemplate) -> None:
    standin.rate_limit(0)
    slept: list[float] = []
    with backend_for(standin, sleep=slept.append, max_attempts=3) as backend:
        results = backend.send_batch(template.messages(recipients(3), headers=False))
    assert {r.status for r in results} == {Status.TEMPORARY}
    assert results[0].reason.startswith("429 ") and "after 3 attempts" in results[0].reason
    assert len(slept) == 2 and all(0.9 < s < 1.3 for s in slept)  # Retry-After: 1


def test_413_splits_the_call_until_it_fits(template: MessageTemplate) -> None:
    messages = template.messages(recipients(8), headers=False)
    one = len(json.dumps(PostmarkBackend(TOKEN).payload(messages[:1])))
    with PostmarkStandIn(api_key=TOKEN, max_bytes=3 * one) as pm, backend_for(pm) as backend:
        results = backend.send_batch(messages)
    assert all(r.ok for r in results)
    assert pm.statuses[413] >= 2 and len(pm.counts) == 8


def test_invalid_message_found_by_splitting(standin: PostmarkStandIn, template) -> None:
    standin.streams = {"broadcast"}
    with backend_for(standin, stream="nope") as backend:
        results = backend.send_batch(template.messages(recipients(2), headers=False))
    assert {r.status for r in results} == {Status.PERMANENT}
    assert "message stream 'nope' was not found" in results[0].reason


def test_bad_token_stops_the_send(standin: PostmarkStandIn, template: MessageTemplate) -> None:
    with PostmarkBackend("wrong", standin.url) as backend, pytest.raises(
            BackendUnavailable, match="POSTMARK_SERVER_TOKEN"):
        backend.send_batch(template.messages(recipients(2), headers=False))
    assert not standin.counts


def test_timeout_leaves_the_call_uncertain(standin: PostmarkStandIn, template) -> None:
    standin.delay(1.0)
    with backend_for(standin, timeout=0.2) as backend:
        results = backend.send_batch(template.messages(recipients(3), headers=False))
    assert {r.status for r in results} == {Status.UNCERTAIN}


def test_nobody_listening_stops_the_send(template: MessageTemplate) -> None:
    backend = PostmarkBackend(TOKEN, f"http://127.0.0.1:{free_port()}", backoff=0.001,
                              max_attempts=2)
    with backend, pytest.raises(BackendUnavailable, match="postmark_api_host"):
        backend.send_batch(template.messages(recipients(1), headers=False))


def test_missing_token_is_a_one_line_config_error(project: Path,
                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("POSTMARK_SERVER_TOKEN", raising=False)
    with pytest.raises(ConfigError, match="POSTMARK_SERVER_TOKEN is not set"):
        get_backend(send_settings(project, backend="postmark"))


def test_standin_contract_with_a_bare_client(standin: PostmarkStandIn) -> None:
    """The stand-in answers as Postmark documents, whoever calls it."""
    url = standin.url + "/email/batch"
    ok = {"From": "a@example.org", "To": "b@example.com", "TextBody": "x",
          "MessageStream": "broadcast"}
    bad = httpx.post(url, json=[ok], headers={"X-Postmark-Server-Token": "nope"})
    assert bad.status_code == 401 and bad.json()["ErrorCode"] == 10
    headers = {"X-Postmark-Server-Token": TOKEN}
    many = httpx.post(url, json=[ok] * 501, headers=headers)
    assert many.status_code == 422 and many.json()["ErrorCode"] == 410
    mixed = httpx.post(url, json=[ok, {**ok, "To": "nobody"}], headers=headers)
    assert mixed.status_code == 200
    assert [item["ErrorCode"] for item in mixed.json()] == [0, 300]


def test_the_row_path_sends_the_same_messages_byte_for_byte(project: Path) -> None:
    """``send_rows`` builds each message from the claimed row (values signed a batch at a
    time) and posts the very calls ``send_batch`` would; what each reader gets is the
    message's own HTML, text and subject, tracked links and merge fields filled."""
    from newsletter.delivery.backends.postmark import message_item
    from newsletter.delivery.backends.rows import row_values
    from newsletter.delivery.claims import ClaimedRow
    from tests.test_backend_mailgun import ODD, _tracked_template

    template = _tracked_template(project)
    people = [*recipients(30), *ODD]
    claimed = [ClaimedRow(*r, seq=r.subscriber_id) for r in people]
    backend = PostmarkBackend(TOKEN, "http://127.0.0.1:9")
    values = row_values(template, claimed)
    assert values is not None
    content = backend.content_for(template)
    fast = [message_item(content, template, r.subscriber_id, r.email, r.name, url, msgid,
                         prefs, template.click_urls_of(reader))
            for r, url, msgid, prefs, reader in zip(claimed, *values, strict=True)]
    messages = template.messages(people, headers=False)
    assert fast == list(backend.message_items(messages))
    received = []
    for path in ("rows", "general"):
        with PostmarkStandIn(api_key=TOKEN) as pm, backend_for(pm) as sender:
            results = (sender.send_rows(template, claimed) if path == "rows"
                       else sender.send_batch(messages))
            assert results is not None and all(r.ok for r in results)
            received.append({p.email: pm.messages(p.email) for p in people})
    assert received[0] == received[1]
    for message in messages:
        (got,) = received[0][message.email]
        assert (got["HtmlBody"], got["TextBody"], got["Subject"]) == (
            message.html, message.text, message.subject)
        assert "/c/" in got["HtmlBody"] and "/o/" in got["HtmlBody"]


@pytest.mark.parametrize("odd", UNUSUAL_ROWS)
def test_the_row_path_leaves_unusual_batches_to_the_general_path(template, odd) -> None:
    with PostmarkBackend(TOKEN, "http://127.0.0.1:9") as backend:
        assert backend.send_rows(template, recipients(3) + [odd]) is None
        assert backend.requests_made == 0
