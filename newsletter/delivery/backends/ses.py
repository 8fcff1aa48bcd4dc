"""The Amazon SES backend: SES v2 ``SendBulkEmail``, 50 recipients a call, over a stored
template made once per send; ``SendEmail`` with raw content for what a template cannot carry.

The bulk path (the default): per send (per subject variant), one SES template
(``CreateEmailTemplate``) holds our rendered subject, text and HTML with each
per-recipient slot turned into a Handlebars variable (``sestemplate``); each
``SendBulkEmail`` call carries up to 50 entries, each with the recipient's values as
``ReplacementTemplateData``, their own ``List-Unsubscribe`` as a ``ReplacementHeaders``
entry (``List-Id`` and ``List-Unsubscribe-Post`` ride in the template call's headers)
and the tag ``subscriber_id`` (``send_id`` and ``list_id`` are the call's default
tags). The template's name is the send id and a digest of the content, so every worker
and every resume of the send finds the same one (``AlreadyExistsException``: use it);
``close()`` deletes the templates this backend used (a crashed process leaves its
template for the resume, which reuses it and deletes it at the end). A call that finds
its template gone (another process of the send deleted it when it finished) makes it
again and retries. SES writes its own Message-ID and Date; the ledger records each
entry's MessageId.

Raw messages (``SendEmail``, one call per message, our MIME byte for byte) go instead
when ``ses_send_mode = "raw"``, when the issue cannot be a stored template (over 500 KB,
a ``List-Id`` SES would refuse as a header, or SES refused the template) or for a
recipient whose ``List-Unsubscribe`` cannot be a header value; the log says why.

Calls run concurrently: one per worker thread (``--workers``, default 8), over one
pooled boto3 client. Credentials come from the standard AWS chain (environment,
~/.aws, an instance or task role: whatever boto3 finds); the region from ``ses_region``
or the chain (``AWS_REGION``); ``ses_endpoint_url`` replaces AWS's endpoint (tests use a
local stand-in); ``ses_configuration_set`` names the configuration set whose event
destination publishes bounces and complaints.

Answers: 200 -> each entry's status: ``SUCCESS`` -> sent (``provider_id`` is SES's
MessageId); ``ACCOUNT_THROTTLED``, ``TRANSIENT_FAILURE`` (and ``TEMPLATE_NOT_FOUND``,
after making the template again) -> those entries again after a back-off, bounded,
then temporary; ``ACCOUNT_DAILY_QUOTA_EXCEEDED`` -> temporary for it and the rest of the
batch, unsent (the quota renews over 24 hours: ``newsletter send --retry-failed``
later); ``MESSAGE_REJECTED``, ``INVALID_PARAMETER`` -> that recipient fails for good;
an account or configuration-set status (suspended, paused, unverified MAIL FROM, unknown
configuration set) -> the send stops (``BackendUnavailable`` when nothing of the batch
was sent, else temporary for the rest). A whole call refused: throttling
(``TooManyRequestsException``, "Maximum sending rate exceeded") and 5xx -> back off with
full jitter and try again, bounded (``max_attempts``), then temporary; "Daily message
quota exceeded" -> temporary as above; another 400 or a 413 -> the call is split until the
entry at fault stands alone (it fails for good); bad credentials, a suspended or paused
account, an unverified MAIL FROM domain or an unknown configuration set ->
``BackendUnavailable`` (the send stops; what was not sent stays pending). A timeout or a
connection lost after the call left -> uncertain. botocore's own retries are off (a
retried call that had been accepted would send twice); these are ours.
"""

from __future__ import annotations

import logging
import random
import threading
import time
from collections.abc import Callable, Sequence
from typing import Any

from ...config import Settings
from ...errors import ConfigError
from ..journal import BatchLog
from ..personalize import MessageTemplate, OutgoingMessage
from .base import BackendBase, BackendUnavailable, DeliveryResult, Status
from .sestemplate import MAX_ENTRIES, BulkContent, bulk_content

log = logging.getLogger("newsletter.ses")
_Stop = tuple[DeliveryResult, bool] | None  # why a batch stops: (the rest's result, fatal)

THROTTLED = {"TooManyRequestsException", "Throttling", "ThrottlingException"}
FATAL = {
    "AccountSuspendedException": "the SES account is suspended",
    "SendingPausedException": "sending is paused for this account or configuration set",
    "MailFromDomainNotVerifiedException": "the MAIL FROM domain is not verified",
    "NotFoundException": "check ses_configuration_set",
    "UnrecognizedClientException": "check the AWS credentials",
    "InvalidSignatureException": "check the AWS credentials (secret key, clock)",
    "AccessDeniedException": "the AWS credentials may not call ses:SendBulkEmail, "
                             "ses:SendEmail, ses:CreateEmailTemplate or ses:DeleteEmailTemplate",
    "InvalidClientTokenId": "check the AWS credentials",
    "SignatureDoesNotMatch": "check the AWS credentials (secret key, clock)",
    "ExpiredTokenException": "the AWS session token has expired",
}
QUOTA_WORDS = "daily message quota exceeded"
QUOTA = "SES daily sending quota exceeded"
# BulkEmailEntryResult statuses: tried again (bounded), failed for good, or the send stops
ENTRY_AGAIN = {"ACCOUNT_THROTTLED", "TRANSIENT_FAILURE", "TEMPLATE_NOT_FOUND"}
ENTRY_PERMANENT = {"MESSAGE_REJECTED", "INVALID_PARAMETER"}
ENTRY_FATAL = {
    "ACCOUNT_SUSPENDED": "the SES account is suspended",
    "ACCOUNT_SENDING_PAUSED": "sending is paused for this account",
    "CONFIGURATION_SET_SENDING_PAUSED": "sending is paused for the configuration set",
    "MAIL_FROM_DOMAIN_NOT_VERIFIED": "the MAIL FROM domain is not verified",
    "CONFIGURATION_SET_NOT_FOUND": "check ses_configuration_set",
    "INVALID_SENDING_POOL_NAME": "check the configuration set's dedicated IP pool",
}


def _words(text: object) -> str:
    return " ".join(str(text).split())[:500]


class SESBackend(BackendBase):
    name = "ses"
    logs_progress = True

    def __init__(self, client: Any, *, configuration_set: str | None = None,
                 workers: int | None = None, raw: bool = False, max_attempts: int = 6,
                 backoff: float = 0.5, max_wait: float = 60.0,
                 sleep: Callable[[float], None] = time.sleep) -> None:
        self.client = client
        self.configuration_set = configuration_set
        self.concurrency = workers or 8
        self.raw = raw
        # raw: one call per message, the batch only sets what is at stake; bulk: calls of 50
        self.batch_size = 100 if raw else 10 * MAX_ENTRIES
        self.writes_mime = raw  # bulk: SES writes the MIME (a raw fallback builds its own)
        self.max_attempts, self.backoff, self.max_wait = max_attempts, backoff, max_wait
        self.sleep = sleep
        self._lock = threading.Lock()
        self.requests_made = 0
        self.waits: list[tuple[str, float]] = []  # (error code, seconds) of each back-off
        self._contents: dict[int, tuple[MessageTemplate, BulkContent]] = {}
        self._stored: dict[str, str | None] = {}  # template name -> None, or why not stored
        self.fallbacks: list[str] = []  # why messages went raw (also logged)

    @classmethod
    def from_settings(cls, settings: Settings, *, workers: int | None = None) -> SESBackend:
        return cls(make_client(settings, workers or 8),
                   configuration_set=settings.ses_configuration_set, workers=workers,
                   raw=settings.ses_send_mode == "raw")

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

        try:
            request = self.request_for(m)
        except ValueError as exc:  # the recipient's headers cannot be written
            return DeliveryResult(Status.PERMANENT, f"message cannot be built: {exc}")
        for attempt in range(1, self.max_attempts + 1):
            with self._lock:
                self.requests_made += 1
            try:
                answer = self.client.send_email(**request)
            except ClientError as exc:
                code, words, status = _error(exc)
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
            return DeliveryResult(Status.TEMPORARY, f"{QUOTA} ({code}: {words}); send the "
                                  "rest later with --retry-failed")
        if code in THROTTLED or "maximum sending rate exceeded" in words.lower():
            return None
        if code in FATAL:
            raise BackendUnavailable(f"SES refused the message: {code}: {words}: {FATAL[code]}")
        if status >= 500 or status == 0:
            return None
        return DeliveryResult(Status.PERMANENT, f"{code}: {words}")

    # -- the bulk path ---------------------------------------------------------------------

    def content_for(self, template: MessageTemplate) -> BulkContent:
        with self._lock:
            entry = self._contents.get(id(template))
            if entry is None or entry[0] is not template:
                entry = (template, bulk_content(template))
                self._contents[id(template)] = entry
        return entry[1]

    def _fallback(self, why: str) -> None:
        with self._lock:
            first = why not in self.fallbacks
            if first:
                self.fallbacks.append(why)
        if first:
            log.warning("ses: sending raw messages (SendEmail) instead of SendBulkEmail: %s",
                        why)

    def _store(self, content: BulkContent, *, again: bool = False) -> str | None:
        """Make sure SES holds ``content``'s template: None, or why it cannot."""
        from botocore.exceptions import BotoCoreError, ClientError

        if content.why_not:
            return content.why_not
        name = content.name
        with self._lock:
            if name in self._stored and not again:
                return self._stored[name]
        why = None
        for attempt in range(1, self.max_attempts + 1):
            with self._lock:
                self.requests_made += 1
            try:
                self.client.create_email_template(**content.stored())
            except ClientError as exc:
                code, words, status = _error(exc)
                if code == "AlreadyExistsException":  # another worker, or the last run
                    break
                if code in FATAL:
                    raise BackendUnavailable(f"SES refused the template {name}: {code}: "
                                             f"{words}: {FATAL[code]}") from None
                if code in THROTTLED or status >= 500 or status == 0:
                    if attempt < self.max_attempts:
                        self._wait(code, attempt)
                        continue
                    raise BackendUnavailable(f"SES did not take the template {name}: {code}: "
                                             f"{words} (after {attempt} attempts)") from None
                why = f"SES refused the template {name}: {code}: {words}"
                break
            except BotoCoreError as exc:  # nothing can have been sent yet
                raise BackendUnavailable(f"cannot reach SES: {exc}; check ses_endpoint_url, "
                                         "ses_region and the network") from None
            else:
                break
        with self._lock:
            self._stored[name] = why
        return why

    def close(self) -> None:
        """Delete the templates this backend made or used: its part of the send is over
        (a resume, or another process of the send, makes its template again)."""
        from botocore.exceptions import BotoCoreError, ClientError

        with self._lock:
            names = [name for name, why in self._stored.items() if why is None]
            self._stored.clear()
            self._contents.clear()
        for name in names:
            try:
                self.client.delete_email_template(TemplateName=name)
            except ClientError as exc:
                code, words, _ = _error(exc)
                if code != "NotFoundException":  # gone already: another process's close
                    log.warning("ses: could not delete the template %s (%s: %s); delete it "
                                "with: aws sesv2 delete-email-template --template-name %s",
                                name, code, words, name)
            except BotoCoreError as exc:
                log.warning("ses: could not delete the template %s (%s)", name, exc)

    def _units(self, messages: Sequence[OutgoingMessage]
               ) -> list[tuple[BulkContent | None, list[tuple[int, Any]]]]:
        """The batch as calls: (content, up to 50 (index, entry)) for SendBulkEmail,
        (None, [(index, None), ...]) for raw messages."""
        if self.raw:
            return [(None, [(i, None) for i in range(len(messages))])]
        groups: dict[int, list[int]] = {}
        for i, m in enumerate(messages):  # a subject test: one template per variant
            groups.setdefault(id(m.template), []).append(i)
        units: list[tuple[BulkContent | None, list[tuple[int, Any]]]] = []
        for indices in groups.values():
            content = self.content_for(messages[indices[0]].template)
            why = self._store(content)
            if why is not None:
                self._fallback(why)
                units.append((None, [(i, None) for i in indices]))
                continue
            items, raw = [], []
            for i in indices:
                entry = content.entry_or_none(messages[i])
                if entry is None:
                    raw.append((i, None))
                else:
                    items.append((i, entry))
            if raw:
                self._fallback("a recipient's List-Unsubscribe is not printable ASCII of at "
                               "most 870 characters")
                units.append((None, raw))
            units += [(content, items[k:k + MAX_ENTRIES])
                      for k in range(0, len(items), MAX_ENTRIES)]
        return units

    def _bulk(self, content: BulkContent, pending: list[tuple[int, Any]],
              progress: BatchLog | None) -> tuple[dict[int, DeliveryResult], _Stop]:
        """One SendBulkEmail call for these entries, with bounded retries of the call or
        of the entries SES asks to try again; each entry's result by index, and why the
        rest of the batch must not go (None: it may)."""
        from botocore.exceptions import (
            ClientError,
            ConnectionClosedError,
            ConnectTimeoutError,
            EndpointConnectionError,
            ReadTimeoutError,
        )

        done: dict[int, DeliveryResult] = {}
        reason = "SES asked to try again (throttled or a transient failure)"
        for attempt in range(1, self.max_attempts + 1):
            indices = [i for i, _ in pending]
            request = content.request([e for _, e in pending], self.configuration_set)
            if progress is not None:
                progress.handing_group(indices)
            with self._lock:
                self.requests_made += 1
            try:
                answer = self.client.send_bulk_email(**request)
            except ClientError as exc:
                if progress is not None:
                    progress.answered_group(indices, False)
                outcome = self._refused(content, pending, progress, done, exc, attempt)
                if isinstance(outcome, str):
                    reason = outcome
                    continue
                return outcome
            except (ReadTimeoutError, ConnectionClosedError) as exc:
                lost = DeliveryResult(Status.UNCERTAIN, f"no answer from SES: {exc}")
                done.update(dict.fromkeys(indices, lost))
                return done, None
            except (EndpointConnectionError, ConnectTimeoutError) as exc:
                if progress is not None:
                    progress.answered_group(indices, False)
                if attempt >= self.max_attempts:
                    reason = (f"cannot reach SES: {exc}; check ses_endpoint_url, ses_region "
                              "and the network")
                    return done, (DeliveryResult(Status.TEMPORARY, reason), True)
                self._wait("connect", attempt)
                continue
            pending, stop = self._answered(content, answer, pending, done, progress)
            if stop is not None or not pending:
                return done, stop
            if attempt < self.max_attempts:
                self._wait("ACCOUNT_THROTTLED", attempt)
        last = DeliveryResult(Status.TEMPORARY, f"{reason} (after {self.max_attempts} "
                              "attempts)")
        done.update((i, last) for i, _ in pending if i not in done)
        return done, None

    def _refused(self, content: BulkContent, pending: list[tuple[int, Any]],
                 progress: BatchLog | None, done: dict[int, DeliveryResult], exc: Any,
                 attempt: int) -> str | tuple[dict[int, DeliveryResult], _Stop]:
        """A refused SendBulkEmail call: the reason, to try again (having waited or made
        the template again); or the entries' results and why the batch stops."""
        code, words, status = _error(exc)
        if code == "NotFoundException" and "template" in words.lower():
            self._store(content, again=True)  # deleted by a process that finished
            return f"{code}: {words}"
        try:
            result = self._classify(code, words, status)
        except BackendUnavailable as fatal:
            return done, (DeliveryResult(Status.TEMPORARY, str(fatal)), True)
        if result is None:
            if attempt < self.max_attempts:
                self._wait(code, attempt)
            return f"{code}: {words}"
        if result.status is Status.PERMANENT and len(pending) > 1:
            return self._halves(content, pending, progress, done)
        done.update((i, result) for i, _ in pending)
        return done, (result, False) if result.reason.startswith(QUOTA) else None

    def _halves(self, content: BulkContent, pending: list[tuple[int, Any]],
                progress: BatchLog | None, done: dict[int, DeliveryResult]
                ) -> tuple[dict[int, DeliveryResult], _Stop]:
        """A refused call split in two, until the entry at fault stands alone."""
        half = len(pending) // 2
        for part in (pending[:half], pending[half:]):
            more, stop = self._bulk(content, part, progress)
            done.update(more)
            if stop is not None:
                return done, stop
        return done, None

    def _answered(self, content: BulkContent, answer: dict[str, Any],
                  pending: list[tuple[int, Any]], done: dict[int, DeliveryResult],
                  progress: BatchLog | None) -> tuple[list[tuple[int, Any]], _Stop]:
        """Record each entry's result (BulkEmailEntryResults, in the entries' order);
        the entries to send again, and why the batch stops (or None)."""
        results = answer.get("BulkEmailEntryResults") or []
        again: list[tuple[int, Any]] = []
        stop: _Stop = None
        accepted: list[int] = []
        for k, (i, entry) in enumerate(pending):
            if k >= len(results):
                done[i] = DeliveryResult(Status.UNCERTAIN, "SES gave no result for this entry")
                continue
            status = str(results[k].get("Status", ""))
            error = _words(results[k].get("Error") or "")
            if status == "SUCCESS":
                accepted.append(i)
                message_id = str(results[k].get("MessageId") or "") or None
                done[i] = DeliveryResult(Status.SENT, "", message_id)
            elif status in ENTRY_AGAIN:
                again.append((i, entry))
            elif status == "ACCOUNT_DAILY_QUOTA_EXCEEDED":
                done[i] = DeliveryResult(Status.TEMPORARY, f"{QUOTA} ({status}: {error}); send "
                                         "the rest later with --retry-failed")
                stop = stop or (done[i], False)
            elif status in ENTRY_FATAL:
                done[i] = DeliveryResult(Status.TEMPORARY, f"SES refused the message: {status}: "
                                         f"{error}: {ENTRY_FATAL[status]}")
                stop = (done[i], True)
            elif status in ENTRY_PERMANENT:
                done[i] = DeliveryResult(Status.PERMANENT, f"{status}: {error}")
            else:  # FAILED, or a status newer than this code: not sent, try later
                done[i] = DeliveryResult(Status.TEMPORARY, f"{status}: {error}")
        if progress is not None:  # two journal lines a call, not one per entry
            taken = set(accepted)
            refused = [i for i, _ in pending[:len(results)] if i not in taken]
            for group, ok in ((accepted, True), (refused, False)):
                if group:
                    progress.answered_group(group, ok)
        if any(str(r.get("Status")) == "TEMPLATE_NOT_FOUND" for r in results):
            self._store(content, again=True)
        return again, stop

    # -- a batch -------------------------------------------------------------------------

    def _send_raw(self, messages: Sequence[OutgoingMessage], items: list[tuple[int, Any]],
                  progress: BatchLog | None) -> tuple[dict[int, DeliveryResult], _Stop]:
        done: dict[int, DeliveryResult] = {}
        for i, _ in items:
            if progress is not None:
                progress.handing(i)
            try:
                result = self.send_one(messages[i])
            except BackendUnavailable as exc:
                if progress is not None:
                    progress.answered(i, False)
                return done, (DeliveryResult(Status.TEMPORARY, str(exc)), True)
            if progress is not None and result.status is not Status.UNCERTAIN:
                progress.answered(i, result.ok)
            done[i] = result
            if result.reason.startswith(QUOTA):
                return done, (result, False)  # unsent: the quota is spent
        return done, None

    def send_batch(self, messages: Sequence[OutgoingMessage], progress: BatchLog | None = None
                   ) -> list[DeliveryResult]:
        results: dict[int, DeliveryResult] = {}
        stop: _Stop = None
        for content, items in self._units(messages):
            if content is None:
                done, stop = self._send_raw(messages, items, progress)
            else:
                done, stop = self._bulk(content, items, progress)
            results.update(done)
            if stop is not None:
                break
        if stop is not None and stop[1] and not any(
                r.status in (Status.SENT, Status.UNCERTAIN) for r in results.values()):
            raise BackendUnavailable(stop[0].reason)  # nothing went: the batch stays pending
        rest = stop[0] if stop is not None else DeliveryResult(Status.UNCERTAIN, "no outcome")
        return [results.get(i, rest) for i in range(len(messages))]


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


def _error(exc: Any) -> tuple[str, str, int]:
    """A botocore ClientError's code, message and HTTP status."""
    error = exc.response.get("Error", {})
    status = exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode", 0)
    return str(error.get("Code", "")), _words(error.get("Message", "")), status
