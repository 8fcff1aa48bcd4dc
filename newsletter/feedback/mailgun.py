"""Mailgun webhooks: HMAC-SHA256 signature, timestamp window, and parsing.

Body: ``{"signature": {"timestamp", "token", "signature"}, "event-data": {...}}``. The
signature is the hex HMAC-SHA256 of ``timestamp + token`` keyed with the domain's
webhook signing key (``mailgun_webhook_signing_key``); the timestamp must be within
``webhook_max_age`` seconds, and a token seen before is a replay (the web route stores
each token through ``effects.apply_events``' request key). Without a key every request is
refused.

``event-data``: ``failed`` with ``severity`` permanent marks the subscriber ``bounced``
(temporary: counted as deferred), ``complained``, ``unsubscribed``; ``delivered``,
``opened``, ``clicked`` are counted. Our ids come back in ``user-variables``.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import time
from typing import Any

from ..errors import WebhookMalformed, WebhookRejected
from .provider_events import event
from .sendgrid import Effect, Event

_SIMPLE = {"delivered": "delivered", "opened": "open", "clicked": "click",
           "accepted": "processed"}


def read(body: bytes) -> tuple[dict[str, Any], dict[str, Any]]:
    """(signature, event-data) of a webhook body, or ``WebhookMalformed``."""
    try:
        data = json.loads(body)
    except (ValueError, UnicodeDecodeError, RecursionError):
        raise WebhookMalformed("body is not JSON") from None
    if not isinstance(data, dict):
        raise WebhookMalformed("not a Mailgun webhook")
    signature, payload = data.get("signature"), data.get("event-data")
    if not isinstance(signature, dict) or not isinstance(payload, dict):
        raise WebhookRejected("unsigned request")
    return signature, payload


def verify(signature: dict[str, Any], key: str | None, max_age: int,
           now: float | None = None) -> str:
    """Check the signature and its age; returns the token (for the replay check)."""
    if not key:
        raise WebhookRejected("no Mailgun webhook signing key configured")
    stamp, token, given = (signature.get(k) for k in ("timestamp", "token", "signature"))
    if not all(isinstance(v, str) and v for v in (stamp, token, given)):
        raise WebhookRejected("unsigned request")
    assert isinstance(stamp, str) and isinstance(token, str) and isinstance(given, str)
    try:
        sent_at = int(stamp)
    except ValueError:
        raise WebhookRejected("bad timestamp") from None
    if abs((time.time() if now is None else now) - sent_at) > max_age:
        raise WebhookRejected("stale request")
    expected = hmac.new(key.encode(), (stamp + token).encode(), hashlib.sha256).hexdigest()
    if not hmac.compare_digest(expected, given.lower()):
        raise WebhookRejected("bad signature")
    return token


def replay_key(token: str) -> str:
    return hashlib.sha256(b"mailgun\0" + token.encode()).hexdigest()


def events(payload: dict[str, Any]) -> list[Event]:
    kind = payload.get("event")
    email = payload.get("recipient")
    event_id = payload.get("id")
    if not isinstance(kind, str) or not isinstance(email, str) or not isinstance(event_id, str):
        return []
    ids = payload.get("user-variables")
    ids = ids if isinstance(ids, dict) else {}
    stamp = payload.get("timestamp")
    status = payload.get("delivery-status")
    detail = (status.get("description") or status.get("message")) if isinstance(status, dict) \
        else None
    if kind == "failed":
        hard = payload.get("severity") == "permanent"
        return [event("mailgun", event_id, "bounce" if hard else "deferred", email,
                      Effect.BOUNCED if hard else Effect.NONE,
                      detail or payload.get("reason") or "failed", ids=ids, timestamp=stamp)]
    if kind == "complained":
        return [event("mailgun", event_id, "spamreport", email, Effect.COMPLAINED,
                      "spam complaint", ids=ids, timestamp=stamp)]
    if kind == "unsubscribed":
        return [event("mailgun", event_id, "unsubscribe", email, Effect.UNSUBSCRIBED,
                      "Mailgun unsubscribe", ids=ids, timestamp=stamp)]
    if kind in _SIMPLE:
        return [event("mailgun", event_id, _SIMPLE[kind], email, Effect.NONE, ids=ids,
                      timestamp=stamp)]
    return []
