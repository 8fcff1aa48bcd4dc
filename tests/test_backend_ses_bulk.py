"""The SES backend's bulk path: ``SendBulkEmail`` over a stored template, against the
local SES v2 stand-in (which renders templates as SES does), with the real boto3 client.

What a recipient receives through the bulk path must be what the raw path sends them:
the headers that matter, the text and HTML parts, their own values."""

from __future__ import annotations

import logging
from dataclasses import replace
from pathlib import Path

import pytest

from newsletter.authoring.render import PREFERENCES_MARK, UNSUBSCRIBE_MARK
from newsletter.delivery.backends import get_backend, sestemplate
from newsletter.delivery.backends.base import BackendUnavailable, Status
from newsletter.delivery.backends.ses import SESBackend
from newsletter.delivery.parts import Part
from newsletter.delivery.personalize import MessageTemplate, Recipient
from newsletter.delivery.tracking import CLICK_MARK, OPEN_MARK
from tests.delivery_helpers import make_template, recipients, send_settings
from tests.ses_standin import SESStandIn, render
from tests.test_backend_ses import aws as _aws
from tests.test_backend_ses import backend_for
from tests.test_backend_ses import standin as _standin

aws, standin = _aws, _standin  # the raw path's fixtures: AWS variables, a stand-in

TRICKY = ("{{ not a field }} {{{triple}}} {{{{raw}}}} {{! comment }} \\{{escaped}} "
          "two \\\\{{ back {{#if x}}y{{/if}} {{> partial}} }} { single { ")


def _source(part: Part) -> str:
    """The part with its merge marks put back (what ``Part.split`` was given)."""
    marks = [slot.fallback if slot.kind == "rewrap"
             else UNSUBSCRIBE_MARK if slot.kind == "unsubscribe"
             else PREFERENCES_MARK if slot.kind == "preferences"
             else CLICK_MARK.format(slot.fallback) if slot.kind == "click"
             else OPEN_MARK if slot.kind == "open"
             else f"{{{{name|{slot.fallback}}}}}" if slot.fallback else "{{name}}"
             for slot in part.slots]
    return part.fill(marks)


def _tricky(template: MessageTemplate) -> MessageTemplate:
    """The template with Handlebars syntax in its literal text: at the start of each
    body, a ``{`` and a ``\\`` right before slots, and in a subject with a name field."""
    def spiked(part: Part) -> Part:
        source = TRICKY + "Dear {{name|reader}}, " + _source(part)
        source = source.replace(UNSUBSCRIBE_MARK, "{" + UNSUBSCRIBE_MARK, 1)
        source = source.replace(PREFERENCES_MARK, "\\" + PREFERENCES_MARK, 1)
        return Part.split(source, html=part.html)

    spiked_template = replace(template, html=spiked(template.html), text=spiked(template.text))
    return spiked_template.with_variants({"A": "Hi {{name|reader}}: {{ x }} \\{{y}} {"}, {},
                                         "A")


def _seen(message) -> dict:
    """What a recipient sees of a message (a part's final line break is not seen: the
    stand-in's MIME writer adds one)."""
    to = message["To"].addresses[0]
    return {
        "From": str(message["From"]), "Reply-To": str(message["Reply-To"]),
        "To": (to.display_name, to.addr_spec), "Subject": str(message["Subject"]),
        "List-Id": str(message["List-Id"]),
        "List-Unsubscribe": str(message["List-Unsubscribe"]),
        "List-Unsubscribe-Post": str(message["List-Unsubscribe-Post"]),
        "text": message.get_body(("plain",)).get_content().replace("\r\n", "\n").rstrip("\n"),
        "html": message.get_body(("html",)).get_content().replace("\r\n", "\n").rstrip("\n"),
    }


PEOPLE = [*recipients(4), Recipient(5, "quote@example.com", 'Ann "the {{name}}" O\'Neil, Jr.'),
          Recipient(6, "ume@example.com", "Zoë Ünal {{{x}}}"), Recipient(None, "t@example.com")]


def test_bulk_message_is_what_the_raw_path_sends(project: Path, standin: SESStandIn,
                                                 aws: None) -> None:
    template = _tricky(make_template(project, send_id=55, list_id=6, track_clicks=True))
    messages = template.messages(PEOPLE)
    with backend_for(standin, raw=False) as bulk:
        results = bulk.send_batch(template.messages(PEOPLE, headers=False))
        assert not bulk.fallbacks
    assert [r.status for r in results] == [Status.SENT] * len(PEOPLE)
    assert standin.rendering_failures == []
    assert standin.calls == {"POST templates": 1, "POST outbound-bulk-emails": 1,
                             "DELETE templates": 1}
    got = {p.email: standin.messages(p.email) for p in PEOPLE}
    standin.reset()
    with backend_for(standin, raw=True) as raw:
        assert all(r.ok for r in raw.send_batch(messages))
    for message in messages:
        (bulk_message,), (raw_message,) = got[message.email], standin.messages(message.email)
        seen = _seen(bulk_message)
        assert seen == _seen(raw_message)
        assert message.unsubscribe_url in seen["html"] and TRICKY in seen["text"]
        assert seen["List-Unsubscribe"] == f"<{message.unsubscribe_url}>"
    assert "Zoë Ünal {{{x}}}" in _seen(got["ume@example.com"][0])["html"]


def test_calls_of_50_over_one_template_deleted_at_close(project: Path, standin: SESStandIn,
                                                        aws: None) -> None:
    settings = send_settings(project, backend="ses", ses_region="eu-west-1",
                             ses_endpoint_url=standin.url, ses_configuration_set="newsletter")
    backend = get_backend(settings, workers=2)
    assert isinstance(backend, SESBackend) and not backend.raw and backend.batch_size == 500
    template = make_template(project, send_id=55, list_id=6)
    people = recipients(120)
    with backend:
        results = backend.send_batch(template.messages(people, headers=False))
        assert len(standin.templates) == 1
    assert standin.templates == {}  # deleted at close
    assert all(r.ok for r in results) and len({r.provider_id for r in results}) == 120
    assert standin.calls["POST outbound-bulk-emails"] == 3 and dict(standin.counts) == {
        p.email: 1 for p in people}
    (_, body), = standin.accepted["user2@example.com"]
    assert body["ConfigurationSetName"] == "newsletter"
    assert [len(b) for b in [body["BulkEmailEntries"]]] == [50]
    tags = [*body["DefaultEmailTags"], *body["entry"]["ReplacementTags"]]
    assert {t["Name"]: t["Value"] for t in tags} == {
        "send_id": "55", "list_id": "6", "subscriber_id": "2"}


def test_template_survives_a_crash_and_is_made_again_when_gone(
        standin: SESStandIn, aws: None) -> None:
    template = make_template(send_id=56)
    crashed = backend_for(standin, raw=False)
    assert all(r.ok for r in crashed.send_batch(template.messages(recipients(2))))
    (name,) = standin.templates  # never closed: the template stays for the resume
    with backend_for(standin, raw=False) as resumed:
        assert all(r.ok for r in resumed.send_batch(template.messages(recipients(2, 3))))
        assert list(standin.templates) == [name]  # the same one, used again
        standin.templates.clear()  # another process of the send finished and deleted it
        assert all(r.ok for r in resumed.send_batch(template.messages(recipients(2, 5))))
    assert standin.templates == {} and standin.calls["POST templates"] == 2
    assert len(standin.counts) == 6


def test_entry_statuses(standin: SESStandIn, aws: None) -> None:
    standin.rejected.add("user2@example.com")
    standin.entry_status["user3@example.com"] = ["ACCOUNT_THROTTLED", "TRANSIENT_FAILURE"]
    standin.entry_status["user4@example.com"] = ["TRANSIENT_FAILURE"] * 9
    standin.entry_status["user5@example.com"] = ["FAILED"]
    with backend_for(standin, raw=False, max_attempts=4) as backend:
        results = backend.send_batch(make_template().messages(recipients(6)))
    assert [r.status for r in results] == [
        Status.SENT, Status.PERMANENT, Status.SENT, Status.TEMPORARY, Status.TEMPORARY,
        Status.SENT]
    assert results[1].reason.startswith("MESSAGE_REJECTED: Email address is not verified")
    assert "after 4 attempts" in results[3].reason
    assert standin.calls["POST outbound-bulk-emails"] == 4  # all, then 3+4, 3+4, 4
    assert [code for code, _ in backend.waits] == ["ACCOUNT_THROTTLED"] * 3


def test_daily_quota_leaves_the_rest_unsent_and_temporary(standin: SESStandIn,
                                                          aws: None) -> None:
    standin.quota(2)
    with backend_for(standin, raw=False) as backend:
        results = backend.send_batch(make_template().messages(recipients(120)))
    assert [r.status for r in results[:3]] == [Status.SENT] * 2 + [Status.TEMPORARY]
    assert {r.status for r in results[2:]} == {Status.TEMPORARY}
    assert "daily sending quota exceeded" in results[100].reason
    assert standin.calls["POST outbound-bulk-emails"] == 1 and len(standin.counts) == 2


def test_throttled_call_backs_off_then_sends_or_stays_temporary(
        standin: SESStandIn, aws: None) -> None:
    standin.rate_limit(1, window=60)  # the template is made, then the call is throttled
    lifted: list[float] = []

    def wait(seconds: float) -> None:
        lifted.append(seconds)
        standin.rate_limit(None)

    with backend_for(standin, raw=False, sleep=wait) as backend:
        assert all(r.ok for r in backend.send_batch(make_template().messages(recipients(3))))
    assert len(lifted) == 1 and standin.statuses[429] == 1
    slept: list[float] = []
    with backend_for(standin, raw=False, sleep=slept.append, max_attempts=3) as backend:
        template = make_template(send_id=9)
        backend._store(backend.content_for(template))
        standin.rate_limit(0)
        results = backend.send_batch(template.messages(recipients(2)))
        standin.rate_limit(None)
    assert {r.status for r in results} == {Status.TEMPORARY} and len(slept) == 2
    assert "Maximum sending rate exceeded" in results[0].reason


def test_a_refused_call_is_split_until_the_entry_at_fault_stands_alone(
        standin: SESStandIn, aws: None) -> None:
    people = [*recipients(4), Recipient(9, "jürgen@example.com", None), *recipients(3, 10)]
    with backend_for(standin, raw=False) as backend:
        results = backend.send_batch(make_template().messages(people))
    assert [r.status for r in results].count(Status.SENT) == 7
    assert results[4].status is Status.PERMANENT and "BadRequestException" in results[4].reason
    assert standin.counts["jürgen@example.com"] == 0 and len(standin.counts) == 7


def test_bad_credentials_or_configuration_set_stop_the_send(standin: SESStandIn,
                                                            aws: None) -> None:
    messages = make_template().messages(recipients(2))
    with backend_for(standin, secret="wrong", raw=False) as backend, pytest.raises(
            BackendUnavailable, match="InvalidSignatureException"):
        backend.send_batch(messages)
    with backend_for(standin, configuration_set="nope", raw=False) as backend, pytest.raises(
            BackendUnavailable, match="check ses_configuration_set"):
        backend.send_batch(messages)
    assert not standin.counts


def test_timeout_is_uncertain(standin: SESStandIn, aws: None) -> None:
    template = make_template()
    with backend_for(standin, raw=False, timeout=0.3) as backend:
        assert backend.send_batch(template.messages(recipients(1)))[0].ok
        standin.delay(1.0)
        results = backend.send_batch(template.messages(recipients(2, 2)))
        standin.delay(0)
    assert {r.status for r in results} == {Status.UNCERTAIN}


def test_what_a_template_cannot_carry_goes_raw_and_the_log_says_why(
        standin: SESStandIn, aws: None, monkeypatch: pytest.MonkeyPatch,
        caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING, "newsletter.ses")
    template = make_template()
    monkeypatch.setattr(sestemplate, "MAX_TEMPLATE", 1000)
    with backend_for(standin, raw=False) as backend:
        results = backend.send_batch(template.messages(recipients(3), headers=False))
    assert all(r.ok for r in results) and "over SES's 1,000 for a stored template" in caplog.text
    assert standin.calls == {"POST outbound-emails": 3}
    (message,) = standin.messages("user1@example.com")
    assert message["Message-ID"] == template.messages(recipients(1))[0].message_id
    monkeypatch.undo()
    caplog.clear()
    standin.reset()
    standin.max_templates = 0  # CreateEmailTemplate: LimitExceededException
    long_url = replace(template, base_url="https://news.example.org/" + "x" * 900)
    with backend_for(standin, raw=False) as backend:
        assert all(r.ok for r in backend.send_batch(template.messages(recipients(2))))
    standin.max_templates = 10
    with backend_for(standin, raw=False) as backend:
        assert backend.send_batch(long_url.messages(recipients(1)))[0].ok
    assert "LimitExceededException" in caplog.text and "List-Unsubscribe" in caplog.text
    assert standin.calls["POST outbound-emails"] == 3


def test_the_renderer_reads_handlebars_as_ses_does() -> None:
    data = {"a": "<b>", "lb": "{"}
    assert render("x {{a}} {{{a}}} {{ a }}", data) == "x <b> <b> <b>"  # SES escapes nothing
    assert render("\\{{a}} {{a}}", data) == "{{a}} <b>"
    assert render("\\\\{{a}}", data) == "\\<b>"
    for bad in ("{{#if a}}x{{/if}}", "{{missing}}", "{{{{raw}}}}", "{{a"):
        with pytest.raises(ValueError):
            render(bad, data)
    for text in (TRICKY, "{", "\\", "a{{", "{{{{", "\\{{x}}"):
        part = Part.split(text + UNSUBSCRIBE_MARK + text, html=False)
        body, special = sestemplate.handlebars(part, "t")
        values = {"t0": "U", "lb": "{", "bs": "\\"}
        assert render(body, values) == text + "U" + text, text


def test_an_oversized_call_is_split(standin: SESStandIn, aws: None) -> None:
    template = make_template()
    with backend_for(standin, raw=False) as backend:
        backend._store(backend.content_for(template))
        standin.max_bytes = 2500  # 413 for a call of 5 entries; one or two fit
        results = backend.send_batch(template.messages(recipients(5)))
    assert all(r.ok for r in results) and standin.statuses[413] >= 1
    assert len(standin.counts) == 5 and max(standin.counts.values()) == 1
