"""``/u/{token}``: unsubscribe links (RFC 8058 one-click and the confirmation page).

- ``GET``: a small page with two buttons ("this list", "everything"). A GET changes
  nothing, so mail scanners that follow every link unsubscribe no one.
- ``POST`` with ``List-Unsubscribe=One-Click`` (what Gmail and Yahoo send, form-encoded
  or multipart, no cookies): unsubscribes from the token's list at once; 200.
- ``POST`` with ``scope=list`` or ``scope=all``: the page's buttons.

Every POST is idempotent: the same answer however often it comes. The token alone names
the subscriber and the list (``newsletter.audience.tokens``); a token that is not ours, in any
way, gets the same plain 400 page, which says nothing about anyone. The change is
committed before the answer, so a send in progress skips the subscriber from its next
batch on (the database's triggers skip their pending rows at once).
"""

from __future__ import annotations

from collections.abc import Mapping
from urllib.parse import parse_qsl, quote

import sqlalchemy as sa
from sqlalchemy.engine import Engine
from starlette.concurrency import run_in_threadpool
from starlette.datastructures import FormData
from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response
from starlette.routing import BaseRoute, Route

from newsletter.audience import status_changes, tokens
from newsletter.db.tables import lists

from .public import BodyTooLarge, PublicState, public_page, read_body, too_large

FORM_LIMIT = 16_384  # an unsubscribe form is a few bytes
ONE_CLICK = ("List-Unsubscribe", "One-Click")


def apply(engine: Engine, data: tokens.TokenData, everything: bool) -> None:
    """Unsubscribe the token's subscriber from its list, or from everything (globally).

    One statement in one transaction through ``audience.status_changes`` (the one path of every
    status change, with its rules); idempotent. A subscriber or list that no longer
    exists is already "unsubscribed": nothing to do.
    """
    with engine.begin() as conn:
        if everything:
            status_changes.change(conn, data.subscriber_id, "unsubscribed",
                          "unsubscribe link: everything")
        else:
            status_changes.change(conn, data.subscriber_id, "unsubscribed",
                          "unsubscribe link: this list", list_id=data.list_id)


def list_label(engine: Engine, list_id: int) -> str | None:
    with engine.connect() as conn:
        return conn.execute(sa.select(lists.c.name).where(lists.c.id == list_id)).scalar()


async def _form(request: Request, body: bytes) -> Mapping[str, object]:
    """The form fields of an already read body: urlencoded (what Gmail and Yahoo send,
    parsed directly) or multipart (through Starlette's parser)."""
    content_type = request.headers.get("content-type", "")
    if not content_type.lower().startswith("multipart/"):
        try:
            return dict(parse_qsl(body.decode("utf-8"), keep_blank_values=True))
        except UnicodeDecodeError:
            return {}
    return await _replayed_form(request, body)


async def _replayed_form(request: Request, body: bytes) -> FormData:
    """Parse an already read multipart body with Starlette's parser."""
    sent = False

    async def receive() -> dict[str, object]:
        nonlocal sent
        if sent:
            return {"type": "http.disconnect"}
        sent = True
        return {"type": "http.request", "body": body, "more_body": False}

    return await Request(request.scope, receive=receive).form()


def routes(state: PublicState) -> list[BaseRoute]:
    settings = state.settings

    def invalid() -> Response:
        return public_page(settings, "invalid.html", 400)

    def check(token: str) -> tokens.TokenData | None:
        try:
            return tokens.verify(token, settings)
        except tokens.InvalidToken:
            return None

    async def confirm(request: Request) -> Response:
        token = request.path_params["token"]
        data = check(token)
        if data is None:
            return invalid()
        name = await run_in_threadpool(list_label, state.engine, data.list_id)
        return public_page(settings, "unsubscribe.html", list_name=name or "newsletter",
                           action=f"/u/{quote(token, safe='')}")

    async def submit(request: Request) -> Response:
        try:
            body = await read_body(request, FORM_LIMIT)
        except BodyTooLarge:
            return too_large()
        data = check(request.path_params["token"])
        if data is None:
            return invalid()
        try:
            form = await _form(request, body)
        except Exception:  # a malformed multipart body
            return PlainTextResponse("malformed form\n", status_code=400)
        one_click = form.get(ONE_CLICK[0]) == ONE_CLICK[1]
        scope = form.get("scope")
        if not one_click and scope not in ("list", "all"):
            return PlainTextResponse(
                "send List-Unsubscribe=One-Click, scope=list or scope=all\n", status_code=400)
        everything = not one_click and scope == "all"
        await run_in_threadpool(apply, state.engine, data, everything)
        if one_click:
            return PlainTextResponse("unsubscribed\n", headers={"Cache-Control": "no-store"})
        name = await run_in_threadpool(list_label, state.engine, data.list_id)
        return public_page(settings, "unsubscribed.html", list_name=name or "newsletter",
                           everything=everything)

    return [
        Route("/u/{token}", confirm, methods=["GET", "HEAD"]),
        Route("/u/{token}", submit, methods=["POST"]),
    ]
