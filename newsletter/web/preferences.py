"""``/p/{token}``: the preference centre, linked from the footer of every issue.

- ``GET`` (and ``HEAD``) shows the subscriber's page: the lists offered, a pause of 1, 2
  or 4 weeks, the name used in greetings, "Download my data" and "Erase me". A GET
  changes nothing, so link scanners that open every link change nobody's preferences.
- ``POST`` with ``action``: ``lists`` (the ticked ``list`` ids), ``pause`` (``weeks``),
  ``resume``, ``name``, ``download`` (a JSON file), ``erase`` (a page that asks once
  more) and ``erase-confirmed`` (erases, as ``newsletter subscribers remove`` does).

The token (``audience.tokens.verify_preferences``: its own purpose, or in an issue its own
half of the signature it shares with the unsubscribe link, so an unsubscribe or sign-up
token never opens this page; it expires after ``preferences_link_days``) is
the only credential; a token that is not ours, in any way, or names nobody (erased) gets
the same plain 400 page as a bad unsubscribe link. Cross-site request forgery: the page
uses no cookie or session, so a forged request carries no ambient authority; to change
anything a request must carry the secret token in its path, and every POST must also
carry ``nonce``, an HMAC of the token and the day that only a page served by us holds
(valid the day it was served and the next). ``Referrer-Policy: no-referrer`` keeps the
token out of other sites' logs, and ``form-action 'self'`` / ``frame-ancestors 'none'``
keep the page from being framed or its forms redirected.
"""

from __future__ import annotations

import json
from urllib.parse import parse_qs, quote

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response
from starlette.routing import BaseRoute, Route

from newsletter.audience import preferences, tokens

from .public import BodyTooLarge, PublicState, public_page, read_body, too_large

FORM_LIMIT = 16_384
NO_STORE = {"Cache-Control": "no-store"}
nonce, nonce_ok = tokens.form_nonce, tokens.form_nonce_ok  # the page's form nonce


def _form(body: bytes) -> dict[str, list[str]]:
    try:
        return parse_qs(body.decode("utf-8"), keep_blank_values=True, max_num_fields=200)
    except (UnicodeDecodeError, ValueError):
        return {}


def _weeks(form: dict[str, list[str]]) -> int | None:
    value = (form.get("weeks") or [""])[0]
    return int(value) if value.isdigit() and int(value) in preferences.PAUSE_WEEKS else None


class Centre:
    """The endpoints, sharing the settings and the store."""

    def __init__(self, state: PublicState) -> None:
        self.settings, self.engine = state.settings, state.engine
        assert self.settings.secret_key is not None
        self.secret: str = self.settings.secret_key

    def invalid(self) -> Response:
        return self.page("invalid.html", 400)

    def page(self, template: str, status_code: int = 200, **context: object) -> Response:
        response = public_page(self.settings, template, status_code, **context)
        response.headers.update(NO_STORE)
        return response

    def check(self, token: str) -> int | None:
        try:
            return tokens.verify_preferences(token, self.settings)
        except tokens.InvalidToken:
            return None

    async def show(self, token: str, subscriber_id: int, notice: str | None = None
                   ) -> Response:
        view = await run_in_threadpool(preferences.overview, self.engine, subscriber_id,
                                       public=self.settings.public_lists)
        if view is None:
            return self.invalid()
        return self.page("preferences.html", view=view, notice=notice,
                         weeks=preferences.PAUSE_WEEKS, action=f"/p/{quote(token, safe='')}",
                         nonce=nonce(self.secret, token, tokens.today()))

    async def get(self, request: Request) -> Response:
        token = request.path_params["token"]
        subscriber_id = self.check(token)
        if subscriber_id is None:
            return self.invalid()
        return await self.show(token, subscriber_id)

    async def post(self, request: Request) -> Response:
        try:
            body = await read_body(request, FORM_LIMIT)
        except BodyTooLarge:
            return too_large()
        token = request.path_params["token"]
        subscriber_id = self.check(token)
        if subscriber_id is None:
            return self.invalid()
        form = _form(body)
        if not nonce_ok(self.secret, token, (form.get("nonce") or [""])[0]):
            return PlainTextResponse("this form is out of date: open the page again and "
                                     "resubmit\n", status_code=400, headers=NO_STORE)
        if await run_in_threadpool(preferences.overview, self.engine, subscriber_id) is None:
            return self.invalid()  # erased meanwhile: as if the link named nobody
        return await self.act(token, subscriber_id, form)

    async def act(self, token: str, subscriber_id: int, form: dict[str, list[str]]
                  ) -> Response:
        action, engine = (form.get("action") or [""])[0], self.engine
        if action == "lists":
            wanted = {int(v) for v in form.get("list", []) if v.isdigit()}
            await run_in_threadpool(preferences.choose_lists, engine, subscriber_id, wanted,
                                    self.settings.public_lists)
            return await self.show(token, subscriber_id, "Your lists are saved.")
        if action == "pause" and (weeks := _weeks(form)) is not None:
            until = await run_in_threadpool(preferences.pause, engine, subscriber_id, weeks)
            return await self.show(token, subscriber_id,
                                   f"Paused until {until:%A %-d %B %Y}. Nothing is sent "
                                   "before then.")
        if action == "resume":
            await run_in_threadpool(preferences.resume, engine, subscriber_id)
            return await self.show(token, subscriber_id, "Your pause has ended.")
        if action == "name":
            name = (form.get("name") or [""])[0]
            await run_in_threadpool(preferences.rename, engine, subscriber_id, name)
            return await self.show(token, subscriber_id, "Your name is saved.")
        if action == "download":
            data = await run_in_threadpool(preferences.download, engine, subscriber_id)
            return Response(json.dumps(data, ensure_ascii=False, indent=2) + "\n",
                            media_type="application/json", headers={
                                **NO_STORE, "Content-Disposition":
                                    'attachment; filename="my-newsletter-data.json"'})
        if action == "erase":  # asks once more
            return self.page("preferences-erase.html", action=f"/p/{quote(token, safe='')}",
                             nonce=(form.get("nonce") or [""])[0])
        if action == "erase-confirmed":
            await run_in_threadpool(preferences.erase, engine, self.settings, subscriber_id)
            return self.page("erased.html")
        return PlainTextResponse("unknown action: use the page's buttons\n", status_code=400,
                                 headers=NO_STORE)


def routes(state: PublicState) -> list[BaseRoute]:
    centre = Centre(state)
    return [
        Route("/p/{token}", centre.get, methods=["GET", "HEAD"]),
        Route("/p/{token}", centre.post, methods=["POST"]),
    ]
