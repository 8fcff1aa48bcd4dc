"""``POST /webhooks/ses``, ``/webhooks/postmark``, ``/webhooks/mailgun``: provider feedback.

Each request is authenticated as its provider documents (``newsletter.feedback.ses``,
``.postmark``, ``.mailgun``), then its events are applied as the SendGrid webhook's are
(``newsletter.feedback.effects.apply_events``: each event once, bounces and complaints
through ``audience.status_changes`` onto the suppression list). Answers: 403 for anything
not authenticated (and while the provider is not configured), 400 for a body that is not
the provider's JSON, 413 past ``max_body_bytes``, 503 when the database fails (the
provider retries), else 200 with the counts. Pages say nothing about anyone.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable

import httpx
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute, Route

from newsletter.errors import Replayed, WebhookMalformed, WebhookRejected
from newsletter.feedback import mailgun, postmark, ses
from newsletter.feedback.effects import apply_events
from newsletter.feedback.sendgrid import Event

from .public import BodyTooLarge, PublicState, read_body, too_large
from .webhook import _plain

log = logging.getLogger("newsletter.webhook")


def _fetch(url: str) -> bytes:
    response = httpx.get(url, timeout=10.0, follow_redirects=False)
    response.raise_for_status()
    return response.content


async def _apply(state: PublicState, events: list[Event], source: str,
                 request_key: str | None = None) -> Response:
    remember = state.settings.webhook_max_age * 2 + 60
    try:
        applied = await run_in_threadpool(apply_events, state.engine, events,
                                          request_key=request_key, source=source,
                                          forget_requests_after=remember)
    except Replayed:
        return _plain("forbidden", 403)
    except Exception:  # 503: the provider retries; logged with its cause
        log.exception("%s webhook: applying %d events failed", source, len(events))
        return _plain("temporarily unavailable, retry later", 503)
    return JSONResponse({"received": applied.received, "applied": applied.applied,
                         "duplicates": applied.duplicates})


Handler = Callable[[Request, bytes], Awaitable[Response]]


def _guarded(limit: int, handler: Handler) -> Callable[[Request], Awaitable[Response]]:
    """Read the body (413 past ``limit``); 403 / 400 for what the handler refuses."""
    async def endpoint(request: Request) -> Response:
        try:
            body = await read_body(request, limit)
        except BodyTooLarge:
            return too_large()
        try:
            return await handler(request, body)
        except WebhookRejected:
            return _plain("forbidden", 403)
        except WebhookMalformed as exc:
            return _plain(f"bad request: {exc}", 400)
    return endpoint


def routes(state: PublicState) -> list[BaseRoute]:
    settings = state.settings
    verifier = ses.Verifier(settings.ses_topic_arns, _fetch, settings.sns_test_host)

    async def ses_route(request: Request, body: bytes) -> Response:
        message = ses.parse(body)
        await run_in_threadpool(verifier.verify, message)
        if message.type == "SubscriptionConfirmation":
            return await _confirm(message, settings.sns_test_host)
        if message.type != "Notification":
            return _plain("ok", 200)
        return await _apply(state, ses.events(message), "SES")

    async def postmark_route(request: Request, body: bytes) -> Response:
        postmark.check_auth(request.headers.get("authorization"),
                            settings.postmark_webhook_user, settings.postmark_webhook_password)
        return await _apply(state, postmark.events(body), "Postmark")

    async def mailgun_route(request: Request, body: bytes) -> Response:
        signature, payload = mailgun.read(body)
        token = mailgun.verify(signature, settings.mailgun_webhook_signing_key,
                               settings.webhook_max_age)
        return await _apply(state, mailgun.events(payload), "Mailgun",
                            request_key=mailgun.replay_key(token))

    limit = settings.max_body_bytes
    return [Route(f"/webhooks/{name}", _guarded(limit, handler), methods=["POST"])
            for name, handler in (("ses", ses_route), ("postmark", postmark_route),
                                  ("mailgun", mailgun_route))]


async def _confirm(message: ses.SNSMessage, test_host: str | None) -> Response:
    """Confirm an SNS subscription by fetching its SubscribeURL, only on sns.*.amazonaws.com."""
    url = message.subscribe_url
    if not url or not ses.trusted_url(url, test_host):
        return _plain("forbidden", 403)
    try:
        await run_in_threadpool(_fetch, url)
    except httpx.HTTPError:
        log.warning("SES: confirming the SNS subscription of %s failed", message.topic_arn)
        return _plain("temporarily unavailable, retry later", 503)
    log.info("SES: confirmed the SNS subscription of %s", message.topic_arn)
    return _plain("subscription confirmed", 200)
