"""The sign-up form, its JSON API and the confirmation link (``audience.signup``).

- ``GET /subscribe?list=NAME``: the form (email, name, the public lists as checkboxes when
  there are several, the configured consent sentence), with a honeypot field and a signed
  timestamp (``ts``) for the minimum fill time.
- ``POST /subscribe``: the form. ``POST /api/subscribe``: JSON, with CORS for
  ``signup_cors_origins``. Every accepted sign-up, whatever the address's state (new,
  pending, active, unsubscribed), gets the same answer; a filled honeypot gets it too,
  and nothing is done.
- ``GET/HEAD /confirm/{token}``: a page with one button; only its ``POST`` confirms, so
  link scanners that follow every link confirm no one. A cancel token (the email's
  "This was not me" and ``List-Unsubscribe``) only ever cancels.
"""

from __future__ import annotations

import json
import time
from urllib.parse import quote

from starlette.background import BackgroundTask
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute, Route

from newsletter.audience import signup, tokens
from newsletter.audience.signup_mail import Mailer
from newsletter.errors import SignupRateLimited, SignupRefused

from .public import BodyTooLarge, PublicState, public_page, read_body, too_large
from .unsubscribe import _form

FORM_LIMIT = 16_384
FORM = "signup-form"  # the purpose of the form's signed timestamp
FORM_MAX_AGE_DAYS = 1
SNIPPET = "signup-snippet"  # the timestamp of a `newsletter form` snippet pasted elsewhere
SNIPPET_MAX_AGE_DAYS = 366
SENT = {"ok": True, "message": "Check your inbox: if the address can receive this newsletter, "
        "an email is on its way with a button to confirm."}


def mailing(response: Response, state: PublicState, plan: signup.Planned | None,
            mailer: Mailer) -> Response:
    """The answer, with the planned email sent after it: every accepted sign-up is
    answered alike, in about the same time, whether an email goes out or not."""
    if plan is not None:
        response.background = BackgroundTask(signup.deliver, state.engine, state.settings,
                                             plan, mailer)
    return response


def _client_ip(request: Request) -> str | None:
    # uvicorn's proxy headers: behind a proxy on the loopback, the client's own address
    return request.client.host if request.client else None


def _fill_time_ok(settings, ts: object) -> bool:
    if not settings.signup_min_seconds:
        return True
    try:
        data = tokens.verify(FORM, str(ts or ""), settings, count=1, max_age_days=FORM_MAX_AGE_DAYS)
    except tokens.InvalidToken:
        return _snippet_ok(settings, ts)
    return time.time() - data.values[0] >= settings.signup_min_seconds


def _snippet_ok(settings, ts: object) -> bool:
    """A `newsletter form` snippet's stamp: signed when the snippet was made (no fill
    time can be measured on a static page), valid for a year."""
    try:
        tokens.verify(SNIPPET, str(ts or ""), settings, count=1, max_age_days=SNIPPET_MAX_AGE_DAYS)
    except tokens.InvalidToken:
        return False
    return True


def _lists_of(form) -> tuple[str, ...]:
    values = form.getlist("list") if hasattr(form, "getlist") else [form.get("list")]
    return tuple(str(v) for v in values if v)


def routes(state: PublicState) -> list[BaseRoute]:
    settings = state.settings
    mailer = Mailer(settings)
    state.signup_mailer = mailer  # type: ignore[attr-defined]  # closed with the app

    def refused(message: str, status: int = 400) -> Response:
        return public_page(settings, "signup-refused.html", status, message=message)

    async def form_page(request: Request) -> Response:
        offered = await run_in_threadpool(signup.public_lists, state.engine, settings)
        selected = request.query_params.get("list")
        ts = tokens.sign(FORM, settings, int(time.time()))
        return public_page(settings, "subscribe.html",
                           offered=[{"name": n, "description": d} for _, n, d in offered],
                           selected=selected, consent_text=settings.signup_consent_text, ts=ts)

    async def take(req: signup.SignupRequest) -> Response:
        try:
            plan = await run_in_threadpool(signup.record, state.engine, settings, req)
        except SignupRateLimited as exc:
            return refused(str(exc), 429)
        except SignupRefused as exc:
            return refused(str(exc))
        return mailing(public_page(settings, "signup-sent.html"), state, plan, mailer)

    async def submit(request: Request) -> Response:
        try:
            body = await read_body(request, FORM_LIMIT)
        except BodyTooLarge:
            return too_large()
        form = await _parsed_form(request, body)
        if settings.signup_honeypot and form.get("website"):
            return public_page(settings, "signup-sent.html")  # a bot: the same answer
        if not _fill_time_ok(settings, form.get("ts")):
            return refused("The form was sent too quickly, or it is too old: reload the "
                           "page, fill it in and send it again.")
        if form.get("consent") != "yes":
            return refused("Tick the box to agree to receive the newsletter.")
        req = signup.SignupRequest(email=str(form.get("email") or ""),
                                   name=str(form.get("name") or "") or None,
                                   lists=_lists_of(form), source="form", ip=_client_ip(request))
        return await take(req)

    return [
        Route("/subscribe", form_page, methods=["GET", "HEAD"]),
        Route("/subscribe", submit, methods=["POST"]),
        *api_routes(state, mailer),
        *confirm_routes(state),
    ]


def _cors(settings, request: Request) -> dict[str, str] | None:
    """CORS headers for the request's origin ({} without one), None for a stranger."""
    origin = request.headers.get("origin")
    if origin is None:
        return {}
    if origin not in settings.signup_cors_origins:
        return None
    return {"Access-Control-Allow-Origin": origin, "Vary": "Origin",
            "Access-Control-Allow-Methods": "POST", "Access-Control-Max-Age": "600",
            "Access-Control-Allow-Headers": "Content-Type"}


def _api_request(data: object, request: Request) -> signup.SignupRequest | str:
    """The sign-up a JSON body asks for, or what is wrong with it."""
    if not isinstance(data, dict):
        return "send a JSON object"
    if data.get("consent") is not True:
        return "consent must be true: show the consent sentence and send what the reader ticked"
    names = data.get("lists", [data["list"]] if isinstance(data.get("list"), str) else [])
    if not isinstance(names, list) or not all(isinstance(n, str) for n in names):
        return "lists must be a list of names"
    return signup.SignupRequest(email=str(data.get("email") or ""),
                                name=str(data.get("name") or "") or None, lists=tuple(names),
                                source="api", ip=_client_ip(request))


def api_routes(state: PublicState, mailer: Mailer) -> list[BaseRoute]:
    settings = state.settings

    async def api_options(request: Request) -> Response:
        headers = _cors(settings, request)
        if not headers:
            return Response(status_code=403)
        return Response(status_code=204, headers=headers)

    async def api(request: Request) -> Response:
        headers = _cors(settings, request)
        if headers is None:
            return JSONResponse({"ok": False, "error": "origin not allowed"}, 403)
        try:
            data = json.loads(await read_body(request, FORM_LIMIT))
        except BodyTooLarge:
            return too_large()
        except ValueError:
            data = None
        if settings.signup_honeypot and isinstance(data, dict) and data.get("website"):
            return JSONResponse(SENT, 202, headers=headers)
        req = _api_request(data, request)
        if isinstance(req, str):
            return JSONResponse({"ok": False, "error": req}, 400, headers=headers)
        try:
            plan = await run_in_threadpool(signup.record, state.engine, settings, req)
        except SignupRateLimited as exc:
            return JSONResponse({"ok": False, "error": str(exc)}, 429, headers=headers)
        except SignupRefused as exc:
            return JSONResponse({"ok": False, "error": str(exc)}, 400, headers=headers)
        return mailing(JSONResponse(SENT, 202, headers=headers), state, plan, mailer)

    return [Route("/api/subscribe", api, methods=["POST"]),
            Route("/api/subscribe", api_options, methods=["OPTIONS"])]


async def _parsed_form(request: Request, body: bytes):
    from starlette.datastructures import FormData

    try:
        form = await _form(request, body)
    except Exception:  # a malformed multipart body: treated as an empty form
        return FormData()
    if isinstance(form, dict):  # urlencoded, parsed as pairs: keep repeated "list" fields
        from urllib.parse import parse_qsl

        try:
            return FormData(parse_qsl(body.decode("utf-8"), keep_blank_values=True))
        except UnicodeDecodeError:
            return FormData()
    return form


def confirm_routes(state: PublicState) -> list[BaseRoute]:
    settings = state.settings

    def invalid() -> Response:
        return public_page(settings, "invalid.html", 400)

    def check(token: str) -> tuple[str, list[tuple[int, int]]] | None:
        try:
            return signup.check(settings, token)
        except tokens.InvalidToken:
            return None

    async def show(request: Request) -> Response:
        token = request.path_params["token"]
        found = check(token)
        if found is None:
            return invalid()
        names, pending = await run_in_threadpool(signup.pending_lists, state.engine, found[1])
        return public_page(settings, "confirm.html", purpose=found[0], pending=pending,
                           lists=names, action=f"/confirm/{quote(token, safe='')}")

    async def act(request: Request) -> Response:
        try:
            body = await read_body(request, FORM_LIMIT)
        except BodyTooLarge:
            return too_large()
        found = check(request.path_params["token"])
        if found is None:
            return invalid()
        purpose, pairs = found
        form = await _parsed_form(request, body)
        if purpose == signup.CONFIRM and form.get("action") == "confirm":
            confirmed, subscriber_id = await run_in_threadpool(
                signup.confirm_subscriber, state.engine, pairs)
            if not confirmed:  # pressed twice: still subscribed; else nothing to confirm
                confirmed = await run_in_threadpool(signup.confirmed_lists, state.engine, pairs)
            if not confirmed:
                return public_page(settings, "confirm.html", purpose=purpose, pending=False,
                                   lists=[], action="")
            page = public_page(settings, "confirmed.html", confirmed=True, lists=confirmed)
            if subscriber_id is not None:  # just confirmed: the welcome email, once
                page.background = BackgroundTask(signup.welcome_confirmed, state.engine,
                                                 settings, subscriber_id)
            return page
        await run_in_threadpool(signup.cancel, state.engine, pairs)
        return public_page(settings, "confirmed.html", confirmed=False, lists=[])

    return [
        Route("/confirm/{token}", show, methods=["GET", "HEAD"]),
        Route("/confirm/{token}", act, methods=["POST"]),
    ]
