"""Postmark webhooks: basic auth on our URL, and parsing.

Postmark signs nothing; its documented protection is HTTP basic auth in the webhook's
URL (``https://USER:PASSWORD@news.example.org/webhooks/postmark``), checked here against
``postmark_webhook_user`` / ``postmark_webhook_password`` in constant time. Without
credentials configured every request is refused.

One JSON object per request, by ``RecordType``: ``Bounce`` (a hard type, or ``Inactive``:
Postmark deactivated the address, marks the subscriber ``bounced``; soft types are counted
as deferred), ``SpamComplaint`` (``complained``), ``SubscriptionChange`` (``SuppressSending``:
``unsubscribed``, or by its reason bounced / complained), ``Delivery``, ``Open``, ``Click``.
Our ids come back in ``Metadata``.
"""

from __future__ import annotations

import base64
import binascii
import hmac
import json
from typing import Any

from ..errors import WebhookMalformed, WebhookRejected
from .provider_events import event
from .sendgrid import Effect, Event

HARD = {"HardBounce", "BadEmailAddress", "ManuallyDeactivated", "Unknown"}
_SUPPRESSION = {"HardBounce": Effect.BOUNCED, "SpamComplaint": Effect.COMPLAINED,
                "ManualSuppression": Effect.UNSUBSCRIBED}


def check_auth(header: str | None, user: str | None, password: str | None) -> None:
    """``WebhookRejected`` unless ``header`` is basic auth with these credentials."""
    if not user or not password:
        raise WebhookRejected("no Postmark webhook credentials configured")
    scheme, _, value = (header or "").partition(" ")
    if scheme.lower() != "basic":
        raise WebhookRejected("no basic auth")
    try:
        given = base64.b64decode(value.strip(), validate=True)
    except (binascii.Error, ValueError):
        raise WebhookRejected("bad basic auth") from None
    expected = f"{user}:{password}".encode()
    if not hmac.compare_digest(given, expected):
        raise WebhookRejected("wrong credentials")


def _text(data: dict[str, Any], key: str) -> str:
    value = data.get(key)
    return value if isinstance(value, str) else ""


def events(body: bytes) -> list[Event]:
    try:
        data = json.loads(body)
    except (ValueError, UnicodeDecodeError, RecursionError):
        raise WebhookMalformed("body is not JSON") from None
    if not isinstance(data, dict) or not isinstance(data.get("RecordType"), str):
        raise WebhookMalformed("not a Postmark webhook record")
    ids = data.get("Metadata") if isinstance(data.get("Metadata"), dict) else {}
    record = data["RecordType"]
    message = _text(data, "MessageID")
    if record == "Bounce":
        email = _text(data, "Email")
        hard = _text(data, "Type") in HARD or data.get("Inactive") is True
        why = _text(data, "Description") or _text(data, "Type")
        return [event("postmark", f"bounce:{data.get('ID') or message}:{email}",
                      "bounce" if hard else "deferred", email,
                      Effect.BOUNCED if hard else Effect.NONE, why, ids=ids,
                      timestamp=data.get("BouncedAt"))] if email else []
    if record == "SpamComplaint":
        email = _text(data, "Email")
        return [event("postmark", f"complaint:{data.get('ID') or message}:{email}",
                      "spamreport", email, Effect.COMPLAINED, "spam complaint", ids=ids,
                      timestamp=data.get("BouncedAt"))] if email else []
    if record == "SubscriptionChange":
        email = _text(data, "Recipient")
        if not email or data.get("SuppressSending") is not True:
            return []
        reason = _text(data, "SuppressionReason")
        effect = _SUPPRESSION.get(reason, Effect.UNSUBSCRIBED)
        kind = {Effect.BOUNCED: "bounce", Effect.COMPLAINED: "spamreport"}.get(effect,
                                                                              "unsubscribe")
        return [event("postmark", f"subscription:{message}:{email}:{data.get('ChangedAt')}",
                      kind, email, effect, reason or "suppressed sending", ids=ids,
                      timestamp=data.get("ChangedAt"))]
    simple = {"Delivery": ("delivered", "DeliveredAt"), "Open": ("open", "ReceivedAt"),
              "Click": ("click", "ReceivedAt")}
    if record in simple:
        kind, stamp = simple[record]
        email = _text(data, "Recipient")
        return [event("postmark", f"{kind}:{message}:{email}:{data.get(stamp)}", kind, email,
                      Effect.NONE, ids=ids, timestamp=data.get(stamp))] if email else []
    return []
