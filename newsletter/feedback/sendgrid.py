"""SendGrid's Event Webhook: signature check and event parsing, no I/O.

SendGrid signs ``timestamp + raw body`` with ECDSA P-256 / SHA-256; the base64 DER
signature comes in ``X-Twilio-Email-Event-Webhook-Signature`` and the time in
``X-Twilio-Email-Event-Webhook-Timestamp``; the public key (base64
SubjectPublicKeyInfo) is shown in SendGrid's Mail Settings. This is the same check
as ``sendgrid.helpers.eventwebhook.EventWebhook.verify_signature`` but over the
untouched bytes, with a replay window SendGrid does not document, and with every
malformed input turned into a ``WebhookRejected`` instead of an exception.
"""

from __future__ import annotations

import base64
import binascii
import json
import re
import time
from dataclasses import dataclass
from enum import StrEnum
from typing import TYPE_CHECKING, Any

from ..errors import MalformedEvent, WebhookMalformed, WebhookRejected

SIGNATURE_HEADER = "X-Twilio-Email-Event-Webhook-Signature"
TIMESTAMP_HEADER = "X-Twilio-Email-Event-Webhook-Timestamp"
DEFAULT_MAX_AGE = 300  # seconds a signed request stays acceptable (replay window)

if TYPE_CHECKING:  # cryptography is imported where a signature is checked: `sends show`
    from cryptography.hazmat.primitives.asymmetric import ec  # needs the events, not it


def load_public_key(value: str) -> ec.EllipticCurvePublicKey:
    """The verification key as SendGrid shows it (base64 DER), or a PEM block."""
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.hazmat.primitives.serialization import load_der_public_key

    text = value.strip()
    if "BEGIN PUBLIC KEY" in text:
        text = "".join(line for line in text.splitlines() if "-----" not in line)
    try:
        key = load_der_public_key(base64.b64decode(text, validate=False))
    except (ValueError, binascii.Error) as exc:
        raise ValueError(f"not an ECDSA public key: {exc}") from None
    if not isinstance(key, ec.EllipticCurvePublicKey):
        raise ValueError("not an ECDSA public key")
    return key


class Verifier:
    def __init__(self, public_key: str, max_age: int = DEFAULT_MAX_AGE) -> None:
        self.key = load_public_key(public_key)
        self.max_age = max_age

    def verify(
        self, body: bytes, signature: str | None, timestamp: str | None, now: float | None = None
    ) -> None:
        """Raise ``WebhookRejected`` unless the request is signed, fresh and intact."""
        if not signature or not timestamp:
            raise WebhookRejected("unsigned request")
        try:
            sent_at = int(timestamp.strip())
        except ValueError:
            raise WebhookRejected("bad timestamp") from None
        now = time.time() if now is None else now
        if abs(now - sent_at) > self.max_age:
            raise WebhookRejected("stale request")
        try:
            der = base64.b64decode(signature.strip(), validate=True)
        except (binascii.Error, ValueError):
            raise WebhookRejected("bad signature encoding") from None
        from cryptography.exceptions import InvalidSignature
        from cryptography.hazmat.primitives import hashes
        from cryptography.hazmat.primitives.asymmetric import ec

        try:
            self.key.verify(der, timestamp.encode("ascii", "replace") + body,
                            ec.ECDSA(hashes.SHA256()))
        except (InvalidSignature, ValueError):
            raise WebhookRejected("bad signature") from None


class Effect(StrEnum):
    """What an event does to a subscriber (besides being counted)."""

    NONE = "none"
    BOUNCED = "bounced"
    COMPLAINED = "complained"
    UNSUBSCRIBED = "unsubscribed"


COUNTED = ("processed", "delivered", "open", "click", "deferred", "bounce", "dropped",
           "spamreport", "unsubscribe", "group_unsubscribe")
_DROP_BOUNCE_REASONS = ("bounced address", "invalid", "unsubscribed address", "spam reporting")


@dataclass(frozen=True)
class Event:
    event_id: str
    kind: str
    email: str
    timestamp: int
    send_id: int | None
    subscriber_id: int | None
    effect: Effect
    reason: str | None
    url: str | None = None


ID_MAX = 2**63 - 1  # the largest id a BIGINT column holds
CUSTOM_IDS = ("send_id", "list_id", "subscriber_id")  # the custom_args our sends carry
_DIGITS = re.compile(r"[0-9]{1,19}")


def _int(value: Any) -> int | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, str) and _DIGITS.fullmatch(value.strip()):
        return int(value.strip())
    return None


def _id(raw: dict[str, Any], key: str) -> int | None:
    """One of our custom_args: absent is None; else a whole number 1..2^63-1 (as a JSON
    number or a decimal string, as SendGrid returns custom_args), or ``MalformedEvent``."""
    if key not in raw:
        return None
    value = _int(raw[key])
    if value is None or not 1 <= value <= ID_MAX:
        raise MalformedEvent(f"{key} is not an id")
    return value


def _clean(value: str) -> str:
    """Text any database stores: no NUL, no lone surrogate (from a JSON ``\\ud800``)."""
    return value.replace("\0", "").encode("utf-8", "replace").decode("utf-8")


def _key(raw: dict[str, Any], key: str, limit: int, *, required: bool = True) -> str:
    """An identifying text field (event id, kind, address), refused unless clean."""
    value = raw.get(key)
    if value is None and not required:
        return ""
    if not isinstance(value, str) or not value.strip() or _clean(value) != value:
        raise MalformedEvent(f"{key} is missing or not clean text")
    return value[:limit]


def effect_of(raw: dict[str, Any]) -> tuple[Effect, str | None]:
    kind = raw.get("event")
    if kind == "bounce":
        # "blocked" is a soft, temporary refusal; only real bounces stop sends
        if str(raw.get("type", "bounce")).lower() == "blocked":
            return Effect.NONE, str(raw.get("reason") or "blocked")[:500]
        return Effect.BOUNCED, str(raw.get("reason") or "bounce")[:500]
    if kind == "dropped":
        reason = str(raw.get("reason") or "")
        if "smtpapi" in reason.lower():  # our own malformed header, not the address
            return Effect.NONE, reason[:500]
        if any(word in reason.lower() for word in _DROP_BOUNCE_REASONS):
            if "spam" in reason.lower():
                return Effect.COMPLAINED, reason[:500]
            if "unsubscribed" in reason.lower():
                return Effect.UNSUBSCRIBED, reason[:500]
            return Effect.BOUNCED, reason[:500]
        return Effect.NONE, reason[:500] or None
    if kind == "spamreport":
        return Effect.COMPLAINED, "spam report"
    if kind in ("unsubscribe", "group_unsubscribe"):
        return Effect.UNSUBSCRIBED, f"SendGrid {kind}"
    return Effect.NONE, None


@dataclass(frozen=True)
class Batch:
    """The events of one request that can be applied, and how many were skipped."""

    events: list[Event]
    skipped: int  # malformed events: not objects, no id, bad ids, unclean text
    first_problem: str | None = None  # why the first skipped one was (no personal data)


def read_event(raw: Any) -> Event:
    """One event, or ``MalformedEvent`` saying which field is wrong."""
    if not isinstance(raw, dict):
        raise MalformedEvent("an event is not a JSON object")
    event_id = _key(raw, "sg_event_id", 200)
    kind = _key(raw, "event", 40)
    email = _key(raw, "email", 320, required=False).strip().lower()
    send_id, _, subscriber_id = (_id(raw, key) for key in CUSTOM_IDS)
    effect, reason = effect_of(raw)
    url = raw.get("url")
    return Event(
        event_id=event_id, kind=kind, email=email,
        timestamp=_int(raw.get("timestamp")) or 0,
        send_id=send_id, subscriber_id=subscriber_id, effect=effect,
        reason=None if reason is None else _clean(reason),
        url=_clean(url[:2000]) if isinstance(url, str) else None,
    )


def read_events(body: bytes, max_events: int = 10_000) -> Batch:
    """The events of a webhook body: ``WebhookMalformed`` for a body that is not a JSON
    array; each malformed event in it is skipped and counted, the others kept."""
    try:
        data = json.loads(body)
    except (ValueError, UnicodeDecodeError, RecursionError):
        raise WebhookMalformed("body is not JSON") from None
    if not isinstance(data, list):
        raise WebhookMalformed("body is not a JSON array of events")
    if len(data) > max_events:
        raise WebhookMalformed(f"more than {max_events} events in one request")
    events: list[Event] = []
    skipped, first_problem = 0, None
    for raw in data:
        try:
            events.append(read_event(raw))
        except MalformedEvent as exc:
            skipped += 1
            first_problem = first_problem or str(exc)
    return Batch(events, skipped, first_problem)


def parse_events(body: bytes, max_events: int = 10_000) -> list[Event]:
    """The well-formed events of a webhook body (``read_events`` also counts the rest)."""
    return read_events(body, max_events).events
