"""The SES backend's raw path (``SendEmail``, ``ses_send_mode = "raw"``, and the fallback):
the real boto3 ``sesv2`` client against the local SES v2 stand-in. The bulk path:
test_backend_ses_bulk.py."""

from __future__ import annotations

from pathlib import Path

import boto3
import pytest
from botocore.config import Config

from newsletter.delivery.backends import get_backend
from newsletter.delivery.backends.base import BackendUnavailable, Status
from newsletter.delivery.backends.ses import SESBackend
from newsletter.delivery.personalize import MessageTemplate
from newsletter.errors import ConfigError
from tests.delivery_helpers import make_template, recipients, send_settings
from tests.ses_standin import KEY_ID, SECRET, SESStandIn


@pytest.fixture
def standin():
    with SESStandIn() as ses:
        yield ses


@pytest.fixture
def aws(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("AWS_PROFILE", "AWS_SESSION_TOKEN", "AWS_DEFAULT_REGION"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", KEY_ID)
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", SECRET)
    monkeypatch.setenv("AWS_CONFIG_FILE", "/nonexistent")
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", "/nonexistent")
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")


@pytest.fixture
def template(project: Path) -> MessageTemplate:
    return make_template(project, send_id=55, list_id=6)


def backend_for(ses: SESStandIn, secret: str = SECRET, **kw) -> SESBackend:
    """A backend on the stand-in: the raw path unless ``raw=False``."""
    kw.setdefault("raw", True)
    client = boto3.client("sesv2", endpoint_url=ses.url, region_name="eu-west-1",
                          aws_access_key_id=KEY_ID, aws_secret_access_key=secret,
                          config=Config(retries={"mode": "standard", "total_max_attempts": 1},
                                        read_timeout=kw.pop("timeout", 60)))
    kw.setdefault("backoff", 0.01)
    return SESBackend(client, **kw)


def test_raw_message_per_recipient_with_its_own_headers_and_tags(
    project: Path, standin: SESStandIn, template: MessageTemplate, aws: None,
) -> None:
    settings = send_settings(project, backend="ses", ses_region="eu-west-1",
                             ses_endpoint_url=standin.url, ses_configuration_set="newsletter",
                             ses_send_mode="raw")
    backend = get_backend(settings, workers=3)
    assert isinstance(backend, SESBackend) and backend.concurrency == 3 and backend.raw
    people = recipients(5)
    messages = template.messages(people)
    with backend:
        results = backend.send_batch(messages)
    assert [r.status for r in results] == [Status.SENT] * 5
    assert len({r.provider_id for r in results}) == 5 and results[0].provider_id
    assert dict(standin.counts) == {p.email: 1 for p in people}
    for message in messages:
        (got,) = standin.messages(message.email)
        assert got.as_bytes() == message.as_email().as_bytes()  # our MIME, unchanged
        assert got["List-Unsubscribe"] == f"<{message.unsubscribe_url}>"
    (_, body), = standin.accepted["user2@example.com"]
    assert body["ConfigurationSetName"] == "newsletter"
    assert {t["Name"]: t["Value"] for t in body["EmailTags"]} == {
        "send_id": "55", "list_id": "6", "subscriber_id": "2"}


def test_throttling_backs_off_then_sends(standin: SESStandIn, template) -> None:
    standin.rate_limit(1, window=60)
    lifted: list[float] = []

    def wait(seconds: float) -> None:  # the rate limit lifts while the backend waits
        lifted.append(seconds)
        standin.rate_limit(None)

    with backend_for(standin, sleep=wait) as backend:
        results = backend.send_batch(template.messages(recipients(3)))
    assert len(lifted) == 1 and standin.statuses[429] == 1
    assert all(r.ok for r in results) and len(standin.counts) == 3
    assert {code for code, _ in backend.waits} == {"TooManyRequestsException"}


def test_throttled_for_good_is_temporary(standin: SESStandIn, template) -> None:
    standin.rate_limit(0)
    slept: list[float] = []
    with backend_for(standin, sleep=slept.append, max_attempts=3) as backend:
        results = backend.send_batch(template.messages(recipients(2)))
    assert {r.status for r in results} == {Status.TEMPORARY}
    assert "Maximum sending rate exceeded" in results[0].reason and len(slept) == 4


def test_daily_quota_leaves_the_rest_unsent_and_temporary(standin, template) -> None:
    standin.quota(2)
    with backend_for(standin) as backend:
        results = backend.send_batch(template.messages(recipients(5)))
    assert [r.status for r in results] == [Status.SENT] * 2 + [Status.TEMPORARY] * 3
    assert "daily sending quota exceeded" in results[2].reason
    assert standin.requests == 3 and len(standin.counts) == 2


def test_rejected_address_fails_alone(standin: SESStandIn, template) -> None:
    standin.rejected.add("user2@example.com")
    with backend_for(standin) as backend:
        results = backend.send_batch(template.messages(recipients(3)))
    assert [r.status for r in results] == [Status.SENT, Status.PERMANENT, Status.SENT]
    assert results[1].reason.startswith("MessageRejected: Email address is not verified")


def test_oversized_message_is_refused_for_good(template) -> None:
    with SESStandIn(max_bytes=10_000) as ses, backend_for(ses) as backend:
        results = backend.send_batch(template.messages(recipients(1)))
    assert results[0].status is Status.PERMANENT and "413" in results[0].reason


def test_5xx_is_retried(standin: SESStandIn, template) -> None:
    standin.fail_next(2, status=503)
    with backend_for(standin) as backend:
        assert all(r.ok for r in backend.send_batch(template.messages(recipients(2))))
    assert [code for code, _ in backend.waits] == ["InternalFailure", "InternalFailure"]


def test_bad_credentials_and_unknown_configuration_set_stop_the_send(standin, template
                                                                     ) -> None:
    messages = template.messages(recipients(2))
    with backend_for(standin, secret="wrong") as backend, pytest.raises(
            BackendUnavailable, match="InvalidSignatureException"):
        backend.send_batch(messages)
    with backend_for(standin, configuration_set="nope") as backend, pytest.raises(
            BackendUnavailable, match="check ses_configuration_set"):
        backend.send_batch(messages)
    assert not standin.counts


def test_timeout_is_uncertain(standin: SESStandIn, template) -> None:
    standin.delay(1.0)
    with backend_for(standin, timeout=0.2) as backend:
        results = backend.send_batch(template.messages(recipients(1)))
    assert results[0].status is Status.UNCERTAIN


def test_missing_region_or_credentials_is_a_one_line_config_error(
        project: Path, aws: None, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("AWS_REGION", raising=False)
    with pytest.raises(ConfigError, match="no AWS region for SES"):
        get_backend(send_settings(project, backend="ses"))
    monkeypatch.delenv("AWS_ACCESS_KEY_ID")
    monkeypatch.delenv("AWS_SECRET_ACCESS_KEY")
    with pytest.raises(ConfigError, match="no AWS credentials for SES"):
        get_backend(send_settings(project, backend="ses", ses_region="eu-west-1"))
