"""``POST /webhooks/sendgrid``: SendGrid's Signed Event Webhook.

In order: the body is read up to ``max_body_bytes`` (413); the signature over
``timestamp + raw body`` is checked with the configured key and the timestamp must be
within ``webhook_max_age`` seconds (403 for unsigned, invalid or stale requests, and
for every request while no key is configured); the body must be a JSON array of
events (400); the exact same signed request seen before is a replay (403). Each event
is checked on its own (``newsletter.feedback.sendgrid.read_event``): one that is not an object,
lacks its id or kind, carries an id out of range (``send_id``, ``list_id``,
``subscriber_id``: 1..2^63-1) or text no database stores is skipped, counted and logged,
so it cannot hold back the good events of its batch. The rest are applied in one
transaction (``newsletter.feedback.effects.apply_events``), each ``sg_event_id`` once, and the
answer is 200 with the counts. SendGrid retries anything but a 2xx, so a database
failure answers 503 and the events come again.
"""

from __future__ import annotations

import hashlib
import logging

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, Response
from starlette.routing import BaseRoute, Route

from newsletter.feedback.effects import Replayed, apply_events
from newsletter.feedback.sendgrid import (
    SIGNATURE_HEADER,
    TIMESTAMP_HEADER,
    WebhookMalformed,
    WebhookRejected,
    read_events,
)

from .public import BodyTooLarge, PublicState, read_body, too_large

log = logging.getLogger("newsletter.webhook")


def _plain(text: str, status_code: int) -> Response:
    return PlainTextResponse(text + "\n", status_code=status_code,
                             headers={"Cache-Control": "no-store"})


def request_key(timestamp: str, body: bytes) -> str:
    """What identifies one signed request (a re-encoded signature does not change it)."""
    return hashlib.sha256(timestamp.strip().encode("ascii", "replace") + b"\0" + body).hexdigest()


def routes(state: PublicState) -> list[BaseRoute]:
    limit = state.settings.max_body_bytes
    # a request is remembered a little longer than it can be accepted
    remember = state.settings.webhook_max_age * 2 + 60

    async def sendgrid(request: Request) -> Response:
        try:
            body = await read_body(request, limit)
        except BodyTooLarge:
            return too_large()
        signature = request.headers.get(SIGNATURE_HEADER)
        timestamp = request.headers.get(TIMESTAMP_HEADER)
        if state.verifier is None:
            return _plain("forbidden", 403)
        try:
            state.verifier.verify(body, signature, timestamp)
        except WebhookRejected:
            return _plain("forbidden", 403)
        try:
            batch = read_events(body)
        except WebhookMalformed as exc:
            return _plain(f"bad request: {exc}", 400)
        events = batch.events
        if batch.skipped:
            log.warning("webhook: skipped %d malformed event(s) of %d (first: %s)",
                        batch.skipped, batch.skipped + len(events), batch.first_problem)
        assert timestamp is not None
        try:
            applied = await run_in_threadpool(
                apply_events, state.engine, events,
                request_key=request_key(timestamp, body), forget_requests_after=remember)
        except Replayed:
            return _plain("forbidden", 403)
        except Exception:  # whatever it was, 503 makes SendGrid retry; logged with its cause
            log.exception("webhook: applying %d events failed", len(events))
            return _plain("temporarily unavailable, retry later", 503)
        return JSONResponse({"received": applied.received + batch.skipped,
                             "applied": applied.applied, "duplicates": applied.duplicates,
                             "skipped": batch.skipped})

    return [Route("/webhooks/sendgrid", sendgrid, methods=["POST"])]
