"""Amazon SES feedback through SNS HTTPS notifications: signature check and parsing.

SNS posts JSON (``Content-Type: text/plain``) with ``x-amz-sns-message-type``
``SubscriptionConfirmation``, ``Notification`` or ``UnsubscribeConfirmation``. Every message
is signed: the string to sign is ``key\\nvalue\\n`` for Message, MessageId, Subject (if
present), SubscribeURL, Timestamp, Token, TopicArn, Type in that order (of those the
message has), signed SHA1withRSA (``SignatureVersion`` 1) or SHA256withRSA (2) with the
certificate at ``SigningCertURL``, which must be an ``https`` URL of a ``.pem`` file on
``sns.<region>.amazonaws.com`` (as AWS's own validators check). Only topics listed in
``ses_topic_arns`` are accepted. A subscription is confirmed by fetching ``SubscribeURL``,
only when it is on ``sns.<region>.amazonaws.com`` too.

``sns_test_host`` (tests only, off by default) also trusts ``http://HOST/`` URLs, so the
tests serve a generated certificate locally.

The SES notification in ``Message`` (``notificationType`` or ``eventType``: Bounce,
Complaint, Delivery) becomes one event per recipient: a Permanent bounce marks the
subscriber ``bounced`` (a Transient one is counted as deferred), a complaint
``complained``, a delivery is counted.
"""

from __future__ import annotations

import base64
import binascii
import json
import re
import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import padding, rsa

from ..errors import WebhookMalformed, WebhookRejected
from .provider_events import event
from .sendgrid import Effect, Event

SNS_HOST = re.compile(r"^sns\.[a-zA-Z0-9\-]{3,}\.amazonaws\.com(\.cn)?$")
_SIGNED = ("Message", "MessageId", "Subject", "SubscribeURL", "Timestamp", "Token",
           "TopicArn", "Type")
_NOTIFICATION_SIGNED = ("Message", "MessageId", "Subject", "Timestamp", "TopicArn", "Type")
TYPES = ("SubscriptionConfirmation", "Notification", "UnsubscribeConfirmation")


@dataclass(frozen=True)
class SNSMessage:
    type: str
    message_id: str
    topic_arn: str
    message: str
    subscribe_url: str | None
    fields: dict[str, Any]


def trusted_url(url: str, test_host: str | None = None) -> bool:
    """An SNS URL we may fetch: https on sns.<region>.amazonaws.com (or the test host)."""
    try:
        parts = urlsplit(url)
    except ValueError:
        return False
    if parts.scheme == "https" and parts.hostname and SNS_HOST.match(parts.hostname) \
            and parts.port in (None, 443) and not parts.username:
        return True
    return bool(test_host) and parts.scheme == "http" and parts.netloc == test_host


def string_to_sign(fields: dict[str, Any]) -> bytes:
    keys = _NOTIFICATION_SIGNED if fields.get("Type") == "Notification" else _SIGNED
    return "".join(f"{k}\n{fields[k]}\n" for k in keys if k in fields
                   and fields[k] is not None).encode("utf-8")


def parse(body: bytes) -> SNSMessage:
    try:
        fields = json.loads(body)
    except (ValueError, UnicodeDecodeError, RecursionError):
        raise WebhookMalformed("body is not JSON") from None
    if not isinstance(fields, dict) or fields.get("Type") not in TYPES:
        raise WebhookMalformed("not an SNS message")
    for key in ("MessageId", "TopicArn", "Message", "Signature", "SigningCertURL", "Timestamp"):
        if not isinstance(fields.get(key), str):
            raise WebhookMalformed(f"SNS message without {key}")
    return SNSMessage(fields["Type"], fields["MessageId"], fields["TopicArn"],
                      fields["Message"], fields.get("SubscribeURL"), fields)


class Verifier:
    """Checks SNS messages; certificates are fetched once per URL (``fetch(url) -> bytes``)."""

    def __init__(self, topics: list[str], fetch: Callable[[str], bytes],
                 test_host: str | None = None) -> None:
        self.topics = set(topics)
        self.fetch = fetch
        self.test_host = test_host
        self._certs: dict[str, rsa.RSAPublicKey] = {}
        self._lock = threading.Lock()

    def _key(self, url: str) -> rsa.RSAPublicKey:
        with self._lock:
            key = self._certs.get(url)
        if key is None:
            try:
                cert = x509.load_pem_x509_certificate(self.fetch(url))
            except Exception:  # unreachable, not a certificate: not verifiable
                raise WebhookRejected("signing certificate unavailable") from None
            public = cert.public_key()
            if not isinstance(public, rsa.RSAPublicKey):
                raise WebhookRejected("signing certificate is not RSA")
            with self._lock:
                self._certs[url] = key = public
        return key

    def verify(self, message: SNSMessage) -> None:
        fields = message.fields
        if message.topic_arn not in self.topics:
            raise WebhookRejected("unexpected topic")
        url = fields["SigningCertURL"]
        if not trusted_url(url, self.test_host) or not urlsplit(url).path.endswith(".pem"):
            raise WebhookRejected("signing certificate URL not on amazonaws.com")
        version = str(fields.get("SignatureVersion", "1"))
        algorithm = {"1": hashes.SHA1(), "2": hashes.SHA256()}.get(version)
        if algorithm is None:
            raise WebhookRejected("unknown signature version")
        try:
            signature = base64.b64decode(fields["Signature"], validate=True)
        except (binascii.Error, ValueError):
            raise WebhookRejected("bad signature encoding") from None
        try:
            self._key(url).verify(signature, string_to_sign(fields), padding.PKCS1v15(),
                                  algorithm)
        except InvalidSignature:
            raise WebhookRejected("bad signature") from None


def _recipients(note: dict[str, Any], part: str, key: str) -> list[dict[str, Any]]:
    found = (note.get(part) or {}).get(key) or []
    return [r for r in found if isinstance(r, dict) and isinstance(r.get("emailAddress"), str)]


def events(message: SNSMessage) -> list[Event]:
    """The SES notification in a Notification's ``Message``, one event per recipient."""
    try:
        note = json.loads(message.message)
    except (ValueError, RecursionError):
        raise WebhookMalformed("Message is not an SES notification") from None
    if not isinstance(note, dict):
        raise WebhookMalformed("Message is not an SES notification")
    kind = note.get("notificationType") or note.get("eventType")
    mail = note.get("mail") if isinstance(note.get("mail"), dict) else {}
    ids = mail.get("tags") if isinstance(mail.get("tags"), dict) else {}
    base = str(mail.get("messageId") or message.message_id)
    found: list[Event] = []
    if kind == "Bounce":
        bounce = note.get("bounce") or {}
        hard = bounce.get("bounceType") == "Permanent"
        for r in _recipients(note, "bounce", "bouncedRecipients"):
            why = r.get("diagnosticCode") or f"{bounce.get('bounceType')} " \
                f"{bounce.get('bounceSubType')}"
            found.append(event("ses", f"{base}:bounce:{r['emailAddress']}",
                               "bounce" if hard else "deferred", r["emailAddress"],
                               Effect.BOUNCED if hard else Effect.NONE, why, ids=ids,
                               timestamp=bounce.get("timestamp")))
    elif kind == "Complaint":
        complaint = note.get("complaint") or {}
        for r in _recipients(note, "complaint", "complainedRecipients"):
            found.append(event("ses", f"{base}:complaint:{r['emailAddress']}", "spamreport",
                               r["emailAddress"], Effect.COMPLAINED,
                               complaint.get("complaintFeedbackType") or "complaint",
                               ids=ids, timestamp=complaint.get("timestamp")))
    elif kind == "Delivery":
        delivery = note.get("delivery") or {}
        for address in delivery.get("recipients") or []:
            if isinstance(address, str):
                found.append(event("ses", f"{base}:delivery:{address}", "delivered", address,
                                   Effect.NONE, ids=ids, timestamp=delivery.get("timestamp")))
    return found
