"""The Amazon SES backend: SES v2 ``SendEmail`` with raw content, one call per message.

Why not ``SendBulkEmail``: it takes only a stored SES template, whose Handlebars-style
substitution would re-read our rendered HTML (any ``{{`` in an issue) and caps a call at
50 destinations; the raw message keeps our HTML, text and headers byte for byte: the
recipient's own ``List-Unsubscribe`` and ``List-Unsubscribe-Post``, ``List-Id`` and
``Message-ID``, exactly as the SMTP backend sends them. Calls run concurrently: one per
worker thread (``--workers``, default 8), over one pooled boto3 client.

Credentials come from the standard AWS chain (environment, ~/.aws, an instance or task
role: whatever boto3 finds); the region from ``ses_region`` or the chain
(``AWS_REGION``); ``ses_endpoint_url`` replaces AWS's endpoint (tests use a local
stand-in); ``ses_configuration_set`` names the configuration set whose event destination
publishes bounces and complaints. Each message carries the tags ``send_id``, ``list_id``
and ``subscriber_id``, which SES returns on every event.

Answers: 200 -> sent (``provider_id`` is SES's MessageId). Throttling
(``TooManyRequestsException``, "Maximum sending rate exceeded") and 5xx -> back off with
full jitter and try again, bounded (``max_attempts``), then temporary. "Daily message
quota exceeded" -> temporary for that message and the rest of the batch, unsent (the
quota renews over 24 hours: ``newsletter send --retry-failed`` later). ``MessageRejected``
and ``BadRequestException`` -> that message fails for good. Bad credentials, a suspended
or paused account, an unverified MAIL FROM domain or an unknown configuration set ->
``BackendUnavailable`` (the send stops; what was not sent stays pending). A timeout or a
connection lost after the call left -> uncertain. botocore's own retries are off (a
retried call that had been accepted would send twice); these are ours.
"""

from __future__ import annotations

import random
import threading
import time
from collections.abc import Callable, Sequence
from typing import Any

from ...config import Settings
from ...errors import ConfigError
from ..journal import BatchLog
from ..personalize import OutgoingMessage
from .base import BackendBase, BackendUnavailable, DeliveryResult, Status

THROTTLED = {"TooManyRequestsException", "Throttling", "ThrottlingException"}
FATAL = {
    "AccountSuspendedException": "the SES account is suspended",
    "SendingPausedException": "sending is paused for this account or configuration set",
    "MailFromDomainNotVerifiedException": "the MAIL FROM domain is not verified",
    "NotFoundException": "check ses_configuration_set",
    "UnrecognizedClientException": "check the AWS credentials",
    "InvalidSignatureException": "check the AWS credentials (secret key, clock)",
    "AccessDeniedException": "the AWS credentials may not call ses:SendEmail",
    "InvalidClientTokenId": "check the AWS credentials",
    "SignatureDoesNotMatch": "check the AWS credentials (secret key, clock)",
    "ExpiredTokenException": "the AWS session token has expired",
}
QUOTA_WORDS = "daily message quota exceeded"


def _words(text: object) -> str:
    return " ".join(str(text).split())[:500]


class SESBackend(BackendBase):
    name = "ses"
    batch_size = 100  # one call per message: the batch only sets what is at stake
    writes_mime = True
    logs_progress = True

    def __init__(self, client: Any, *, configuration_set: str | None = None,
                 workers: int | None = None, max_attempts: int = 6, backoff: float = 0.5,
                 max_wait: float = 60.0, sleep: Callable[[float], None] = time.sleep) -> None:
        self.client = client
        self.configuration_set = configuration_set
        self.concurrency = workers or 8
        self.max_attempts, self.backoff, self.max_wait = max_attempts, backoff, max_wait
        self.sleep = sleep
        self._lock = threading.Lock()
        self.requests_made = 0
        self.waits: list[tuple[str, float]] = []  # (error code, seconds) of each back-off

    @classmethod
    def from_settings(cls, settings: Settings, *, workers: int | None = None) -> SESBackend:
        return cls(make_client(settings, workers or 8),
                   configuration_set=settings.ses_configuration_set, workers=workers)

    # -- one message -----------------------------------------------------------------------

    def request_for(self, m: OutgoingMessage) -> dict[str, Any]:
        t = m.template
        tags = [{"Name": "send_id", "Value": str(t.send_id)},
                {"Name": "list_id", "Value": str(t.list_id)}]
        if m.subscriber_id is not None:
            tags.append({"Name": "subscriber_id", "Value": str(m.subscriber_id)})
        request: dict[str, Any] = {"Destination": {"ToAddresses": [m.email]},
                                   "Content": {"Raw": {"Data": m.as_bytes()}},
                                   "EmailTags": tags}
        if self.configuration_set:
            request["ConfigurationSetName"] = self.configuration_set
        return request

    def _wait(self, code: str, attempt: int) -> None:
        wait = random.uniform(0, min(self.max_wait, self.backoff * 2 ** (attempt - 1)))
        with self._lock:
            self.waits.append((code, wait))
        self.sleep(wait)

    def send_one(self, m: OutgoingMessage) -> DeliveryResult:
        """One message's call, with bounded retries; ``BackendUnavailable`` when the
        account or credentials would refuse every message."""
        from botocore.exceptions import (
            ClientError,
            ConnectionClosedError,
            ConnectTimeoutError,
            EndpointConnectionError,
            ReadTimeoutError,
        )

        request = self.request_for(m)
        for attempt in range(1, self.max_attempts + 1):
            with self._lock:
                self.requests_made += 1
            try:
                answer = self.client.send_email(**request)
            except ClientError as exc:
                error = exc.response.get("Error", {})
                code, words = str(error.get("Code", "")), _words(error.get("Message", ""))
                status = exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode", 0)
                result = self._classify(code, words, status)
                if result is not None:
                    return result
                if attempt >= self.max_attempts:
                    return DeliveryResult(Status.TEMPORARY, f"{code}: {words} (after "
                                          f"{self.max_attempts} attempts)")
                self._wait(code, attempt)
            except (ReadTimeoutError, ConnectionClosedError) as exc:
                return DeliveryResult(Status.UNCERTAIN, f"no answer from SES: {exc}")
            except (EndpointConnectionError, ConnectTimeoutError) as exc:
                if attempt >= self.max_attempts:
                    raise BackendUnavailable(f"cannot reach SES: {exc}; check ses_endpoint_url, "
                                "ses_region and the network") from None
                self._wait("connect", attempt)
            else:
                return DeliveryResult(Status.SENT, "", str(answer.get("MessageId") or "") or None)
        raise AssertionError("unreachable")  # pragma: no cover

    @staticmethod
    def _classify(code: str, words: str, status: int) -> DeliveryResult | None:
        """A ClientError's outcome; None: throttled or a server error, try again."""
        if QUOTA_WORDS in words.lower():
            return DeliveryResult(Status.TEMPORARY, f"SES daily sending quota exceeded "
                                  f"({code}: {words}); send the rest later with --retry-failed")
        if code in THROTTLED or "maximum sending rate exceeded" in words.lower():
            return None
        if code in FATAL:
            raise BackendUnavailable(f"SES refused the message: {code}: {words}: {FATAL[code]}")
        if status >= 500 or status == 0:
            return None
        return DeliveryResult(Status.PERMANENT, f"{code}: {words}")

    # -- a batch -------------------------------------------------------------------------

    def send_batch(self, messages: Sequence[OutgoingMessage], progress: BatchLog | None = None
                   ) -> list[DeliveryResult]:
        results: list[DeliveryResult] = []
        for i, message in enumerate(messages):
            if progress is not None:
                progress.handing(i)
            try:
                result = self.send_one(message)
            except BackendUnavailable as exc:
                if progress is not None:
                    progress.answered(i, False)
                if not any(r.ok for r in results):
                    raise
                rest = DeliveryResult(Status.TEMPORARY, str(exc))
                return results + [rest] * (len(messages) - i)
            if progress is not None and result.status is not Status.UNCERTAIN:
                progress.answered(i, result.ok)
            results.append(result)
            if result.reason.startswith("SES daily sending quota exceeded"):
                return results + [result] * (len(messages) - i - 1)  # unsent: quota spent
        return results


def make_client(settings: Settings, pool: int) -> Any:
    """An SES v2 client from the standard AWS chain; a one-line ConfigError if the chain
    has no credentials or no region."""
    import boto3
    from botocore.config import Config

    session = boto3.session.Session(region_name=settings.ses_region)
    if session.region_name is None:
        raise ConfigError(
            f"{settings.config_file}: no AWS region for SES: add ses_region = \"eu-west-1\" "
            "(the region of your verified identity) or export AWS_REGION")
    if session.get_credentials() is None:
        raise ConfigError(
            "no AWS credentials for SES: export AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY, "
            "set AWS_PROFILE, or run with an instance or task role (boto3's standard chain)")
    config = Config(retries={"mode": "standard", "total_max_attempts": 1},
                    max_pool_connections=max(10, pool), connect_timeout=10, read_timeout=60)
    return session.client("sesv2", endpoint_url=settings.ses_endpoint_url, config=config)
