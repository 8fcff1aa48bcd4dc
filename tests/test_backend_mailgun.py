"""The Mailgun backend against the local stand-in of ``POST /v3/{domain}/messages``."""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest

from newsletter.delivery.backends import get_backend
from newsletter.delivery.backends.base import BackendUnavailable, Status
from newsletter.delivery.backends.mailgun import MailgunBackend
from newsletter.delivery.personalize import MessageTemplate, Recipient
from newsletter.errors import ConfigError
from tests.delivery_helpers import (
    REPEATED_ROW,
    UNUSUAL_ROWS,
    make_template,
    recipients,
    send_settings,
)
from tests.mailgun_standin import MailgunStandIn

KEY, DOMAIN = "key-test", "mg.example.org"


@pytest.fixture
def standin():
    with MailgunStandIn(api_key=KEY, domain=DOMAIN) as mg:
        yield mg


@pytest.fixture
def template(project: Path) -> MessageTemplate:
    return make_template(project, send_id=55, list_id=6)


def backend_for(mg: MailgunStandIn, **kw) -> MailgunBackend:
    kw.setdefault("backoff", 0.01)
    return MailgunBackend(KEY, DOMAIN, mg.url, **kw)


def test_1000_per_call_with_recipient_variables_and_personal_headers(
    project: Path, standin: MailgunStandIn, template: MessageTemplate,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("MAILGUN_API_KEY", KEY)
    settings = send_settings(project, backend="mailgun", mailgun_domain=DOMAIN,
                             mailgun_api_host=standin.url)
    backend = get_backend(settings)
    assert isinstance(backend, MailgunBackend) and backend.batch_size == 1000
    people = recipients(1500)
    messages = template.messages(people, headers=False)
    with backend:
        results = backend.send_batch(messages)
    assert [r.status for r in results] == [Status.SENT] * 1500
    assert standin.requests == 2 and results[0].provider_id.endswith(f"@{DOMAIN}>")
    assert dict(standin.counts) == {p.email: 1 for p in people}
    for message in (messages[0], messages[2]):  # with and without a name
        (got,) = standin.expand(message.email)
        assert (got["html"], got["text"], got["subject"]) == (
            message.html, message.text, message.subject)
        assert got["headers"]["List-Unsubscribe"] == f"<{message.unsubscribe_url}>"
        assert got["headers"]["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
        assert got["headers"]["Message-Id"] == message.message_id
        assert got["variables"] == {"send_id": "55", "list_id": "6",
                                    "subscriber_id": str(message.subscriber_id)}
    assert standin.expand("user1@example.com")[0]["to"] == ["Reader 1 <user1@example.com>"]


def test_merge_fields_escaped_per_part(standin: MailgunStandIn, project: Path) -> None:
    path = project / "merge.md"
    path.write_text("---\nsubject: Hi {{name|there}}\ndate: 2026-11-24\npreheader: p\n---\n"
                    "# Lead: For {{name|reader}}\nDear {{ name | friend }}, Tom & Jerry.\n",
                    encoding="utf-8")
    template = make_template(project, send_id=1, issue=path)
    messages = template.messages([Recipient(1, "a@example.com", "Zoë <&>"),
                                  Recipient(2, "b@example.com", None)], headers=False)
    with backend_for(standin) as backend:
        assert all(r.ok for r in backend.send_batch(messages))
    for message in messages:
        (got,) = standin.expand(message.email)
        assert (got["html"], got["text"], got["subject"]) == (
            message.html, message.text, message.subject)
    assert "For Zoë &lt;&amp;&gt;" in standin.expand("a@example.com")[0]["html"]


def test_a_repeated_address_goes_in_another_call(standin, template) -> None:
    people = [*recipients(3), Recipient(9, "USER1@example.com", None)]
    with backend_for(standin) as backend:
        results = backend.send_batch(template.messages(people, headers=False))
    assert all(r.ok for r in results) and standin.requests == 2
    assert standin.counts["user1@example.com"] == 2


def test_400_isolates_the_bad_recipient(standin: MailgunStandIn, template) -> None:
    people = recipients(8)
    messages = template.messages(people, headers=False)
    # an address Mailgun refuses though we let it through
    messages[5] = messages[5]._replace(email="user6@localhost")
    with backend_for(standin) as backend:
        results = backend.send_batch(messages)
    assert [r.status for r in results].count(Status.PERMANENT) == 1
    assert results[5].status is Status.PERMANENT
    assert "'to' parameter is not a valid address" in results[5].reason
    assert len(standin.counts) == 7


def test_413_splits(template: MessageTemplate) -> None:
    with MailgunStandIn(api_key=KEY, domain=DOMAIN, max_bytes=200_000) as mg:
        body_size = len(template.html.literals[0])
        assert body_size < 200_000
        with backend_for(mg) as backend:
            results = backend.send_batch(template.messages(recipients(1000), headers=False))
    assert all(r.ok for r in results) and mg.statuses[413] >= 1 and len(mg.counts) == 1000


def test_429_waits_and_5xx_backs_off_then_temporary(standin, template) -> None:
    standin.rate_limit(0)
    slept: list[float] = []
    with backend_for(standin, sleep=slept.append, max_attempts=3) as backend:
        results = backend.send_batch(template.messages(recipients(2), headers=False))
        assert {r.status for r in results} == {Status.TEMPORARY}
        assert all(0.9 < s < 1.3 for s in slept)  # Retry-After: 1
        standin.rate_limit(None)
        standin.fail_next(2, status=502)
        assert all(r.ok for r in backend.send_batch(template.messages(recipients(2),
                                                                      headers=False)))


def test_bad_key_and_unknown_domain_stop_the_send(standin, template) -> None:
    messages = template.messages(recipients(1), headers=False)
    with MailgunBackend("wrong", DOMAIN, standin.url) as backend, pytest.raises(
            BackendUnavailable, match="MAILGUN_API_KEY"):
        backend.send_batch(messages)
    with MailgunBackend(KEY, "other.org", standin.url) as backend, pytest.raises(
            BackendUnavailable, match="check mailgun_domain"):
        backend.send_batch(messages)
    assert not standin.counts


def test_timeout_is_uncertain(standin: MailgunStandIn, template) -> None:
    standin.delay(1.0)
    with backend_for(standin, timeout=0.2) as backend:
        results = backend.send_batch(template.messages(recipients(2), headers=False))
    assert {r.status for r in results} == {Status.UNCERTAIN}


def test_settings_region_and_missing_pieces(project: Path, monkeypatch) -> None:
    monkeypatch.setenv("MAILGUN_API_KEY", KEY)
    eu = get_backend(send_settings(project, backend="mailgun", mailgun_domain=DOMAIN,
                                   mailgun_region="eu"))
    assert eu.api.base_url == "https://api.eu.mailgun.net"
    with pytest.raises(ConfigError, match="'mailgun_domain' is not set"):
        get_backend(send_settings(project, backend="mailgun"))
    monkeypatch.delenv("MAILGUN_API_KEY")
    with pytest.raises(ConfigError, match="MAILGUN_API_KEY is not set"):
        get_backend(send_settings(project, backend="mailgun", mailgun_domain=DOMAIN))


def test_standin_contract_with_a_bare_client(standin: MailgunStandIn) -> None:
    url = f"{standin.url}/v3/{DOMAIN}/messages"
    form = {"from": "a@example.org", "to": "b@example.com", "subject": "s", "text": "t"}
    assert httpx.post(url, data=form, auth=("api", "no")).status_code == 401
    ok = httpx.post(url, data=form, auth=("api", KEY))
    assert ok.status_code == 200 and ok.json()["message"] == "Queued. Thank you."
    many = httpx.post(url, data={**form, "to": [f"r{i}@example.com" for i in range(1001)]},
                      auth=("api", KEY))
    assert many.status_code == 400 and "1000" in many.json()["message"]


def test_newsletter_send_backend_mailgun(tmp_path: Path, standin: MailgunStandIn) -> None:
    from tests.sendtools import make_project, run_cli, seed

    project = tmp_path / "p"
    seed(make_project(project), 30).dispose()
    env = {"MAILGUN_API_KEY": KEY, "NEWSLETTER_MAILGUN_DOMAIN": DOMAIN,
           "NEWSLETTER_MAILGUN_API_HOST": standin.url}
    result = run_cli(project, "send", "issues/2026-11-24.md", "--list", "daily", "--yes",
                     "--backend", "mailgun", env=env)
    assert result.returncode == 0, result.stderr
    assert "via mailgun" in result.stdout + result.stderr
    assert sorted(standin.counts) == sorted(f"r{n}@example.com" for n in range(1, 31))
    assert standin.requests == 1
    missing = run_cli(project, "send", "issues/2026-11-24.md", "--list", "daily", "--yes",
                      "--again", "--backend", "mailgun", env={**env, "MAILGUN_API_KEY": ""})
    assert missing.returncode != 0 and "Traceback" not in missing.stderr
    assert "MAILGUN_API_KEY is not set" in missing.stderr


def _tracked_template(project: Path) -> MessageTemplate:
    """An issue with merge fields in the subject, the text and the HTML, tracked links and
    the open pixel: every kind of per-recipient value."""
    from newsletter.authoring.build import build_file
    from newsletter.delivery.personalize import prepare
    from newsletter.delivery.tracking import for_send

    path = project / "tracked.md"
    path.write_text(
        "---\nsubject: Hi {{name|there}}\ndate: 2026-11-24\npreheader: p\n---\n"
        "# Lead: For {{name|reader}}\nDear {{ name | friend }}, Tom & Jerry read "
        "[the report](https://news.publisher.org/r?a=1&b=2) and "
        "[the data](https://data.publisher.org/d) "
        "this morning, and this paragraph is long enough to be wrapped again once a "
        "reader's name is in it.\n", encoding="utf-8")
    settings = send_settings(project, track_opens=True)
    build = build_file(path, settings, personal=True)
    assert build.rendered is not None and build.issue is not None, build.findings
    return prepare(for_send(settings, build.issue, build.rendered, "daily").rendered,
                   settings, send_id=77, list_id=3, list_name="daily")


ODD = [Recipient(900, "zoë@exämple.com", 'Zoë "Q" <&> \\ é'),
       Recipient(901, "o'neil+tag@example.com", "O'Neil & Sons"),
       Recipient(902, "plain@example.com", None)]


def test_the_row_path_builds_the_same_call_byte_for_byte(project: Path) -> None:
    from newsletter.delivery.backends.mailgun import request_body, rows_body
    from newsletter.delivery.claims import ClaimedRow

    template = _tracked_template(project)
    assert template.links >= 2 and template.has_open and template.subject.personal
    content = backend_for_url().content_for(template)
    people = recipients(40) + ODD
    claimed = [ClaimedRow(*r, seq=r.subscriber_id) for r in people]  # as the ledger has them
    fast = rows_body(content, template, claimed)
    assert fast is not None
    assert fast == request_body(content, template.messages(people, headers=False))


@pytest.mark.parametrize("odd", [*UNUSUAL_ROWS, REPEATED_ROW])
def test_the_row_path_leaves_unusual_batches_to_the_general_path(template, odd) -> None:
    from newsletter.delivery.backends.mailgun import rows_body

    content = backend_for_url().content_for(template)
    assert rows_body(content, template, recipients(3) + [odd]) is None
    assert rows_body(content, template, recipients(3)) is not None
    with backend_for_url() as backend:  # declined before anything is posted
        assert backend.send_rows(template, recipients(3) + [odd]) is None
        assert backend.requests_made == 0


def test_a_reader_gets_the_same_message_from_the_row_path_and_the_general_path(
        project: Path) -> None:
    template = _tracked_template(project)
    people = [*recipients(5), *ODD]
    received = []
    for path in ("rows", "general"):
        with MailgunStandIn(api_key=KEY, domain=DOMAIN) as mg, backend_for(mg) as backend:
            if path == "rows":
                results = backend.send_rows(template, people)
            else:
                results = backend.send_batch(template.messages(people, headers=False))
            assert results is not None and all(r.ok for r in results) and mg.requests == 1
            received.append({p.email: mg.expand(p.email) for p in people})
    by_rows, by_messages = received
    assert by_rows == by_messages
    for message in template.messages(people, headers=False):
        (got,) = by_rows[message.email]
        assert (got["html"], got["text"], got["subject"]) == (
            message.html, message.text, message.subject)
        assert "%recipient." not in got["html"] + got["text"] + got["subject"]
        assert got["headers"]["List-Unsubscribe"] == f"<{message.unsubscribe_url}>"
        assert "/c/" in got["html"] and "/o/" in got["html"]


def backend_for_url() -> MailgunBackend:
    return MailgunBackend(KEY, DOMAIN, "http://127.0.0.1:9")
