"""The web app: one factory, assembled from parts that each own their routes.

``create_app(settings)`` returns a Starlette app. Each part (the editors' preview,
later the public pages: unsubscribe, webhooks, archive) lives in its own module and
exposes a function ``part(settings, **options) -> Part``; ``PARTS`` names them,
imported only when used. The preview's one option, ``status_of``, is how the web layer
gives it each issue's delivery status (``delivery_badge``, from scheduling). The factory adds what every part shares: HTML error pages that never
show a traceback, an optional list of allowed ``Host`` names, the security headers of
``newsletter.web.security`` on every response (the first part's ``csp`` by default),
and trailing-slash redirects built from ``base_url`` (public) or as a path (preview),
never from the request's ``Host``.
"""

from __future__ import annotations

import contextlib
import importlib
from collections.abc import AsyncIterator, Callable, Sequence
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import jinja2
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.middleware import Middleware
from starlette.middleware.trustedhost import TrustedHostMiddleware
from starlette.requests import Request
from starlette.responses import HTMLResponse, Response
from starlette.routing import BaseRoute

from newsletter.config import Settings

from .security import NOTHING_CSP, SecurityHeaders, slash_redirect

if TYPE_CHECKING:
    from .preview import Badge, StatusOf

PAGES = Path(__file__).parent / "templates"

PARTS: dict[str, list[str]] = {
    # part name: the "module:function" entries that build it, each (settings) -> Part
    "preview": ["newsletter.web.preview:part", "newsletter.web.reports:part"],
    "public": ["newsletter.web.public:part"],  # unsubscribe, webhooks, archive, healthz
}


@dataclass
class Part:
    """Routes of one part of the site, and what must run while the app runs."""

    routes: list[BaseRoute]
    lifespan: Callable[[], AbstractAsyncContextManager[None]] | None = None
    state: object | None = None  # the part's own state, for its tests and helpers
    # Called from any thread when the server starts to stop: ends long-lived requests.
    stopping: Callable[[], None] | None = None
    # The Content-Security-Policy of the part's responses that do not set their own.
    csp: str = NOTHING_CSP


_pages = jinja2.Environment(
    loader=jinja2.FileSystemLoader(str(PAGES)),
    autoescape=True,
    undefined=jinja2.StrictUndefined,
    trim_blocks=True,
    lstrip_blocks=True,
)


def page(template: str, status_code: int = 200, **context: object) -> HTMLResponse:
    """Render one of the web app's own pages (not an email template); never cached."""
    html = _pages.get_template(template).render(**context)
    return HTMLResponse(html, status_code=status_code, headers={"Cache-Control": "no-store"})


def error_page(status_code: int, title: str, message: str) -> HTMLResponse:
    return page("error.html", status_code, title=title, message=message, code=status_code)


async def _http_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, HTTPException)
    if exc.status_code == 404:
        app = request.app
        redirect = slash_redirect(request, app.router, app.state.redirect_base)
        if redirect is not None:
            return redirect
        return error_page(404, "Not found", exc.detail if exc.detail != "Not Found" else
                          "There is no such page in this newsletter project.")
    if exc.status_code == 405:
        return error_page(405, "Method not allowed", "This page can only be read.")
    return error_page(exc.status_code, "Error", str(exc.detail))


async def _server_error(request: Request, exc: Exception) -> Response:
    return error_page(
        500,
        "Internal error",
        f"{type(exc).__name__}: the server could not build this page; "
        "the terminal running `newsletter preview` shows the details.",
    )


def _load_part(target: str, settings: Settings, **options: object) -> Part:
    module_name, attr = target.split(":")
    factory = getattr(importlib.import_module(module_name), attr)
    return factory(settings, **options)


def delivery_badge(settings: Settings, name: str) -> Badge | None:
    """An issue's delivery status from scheduling (scheduled, sending, sent, failed), as
    the preview's badge: the preview itself depends on nothing below authoring."""
    from newsletter.scheduling.status import issue_status

    from .preview import Badge

    status = issue_status(settings, name)
    return None if status is None else Badge(status.kind, status.label)


def stopping(app: Starlette) -> None:
    """Tell every part that the server is stopping (safe from signal handlers, any thread)."""
    for part_ in getattr(app.state, "parts", []):
        if part_.stopping is not None:
            part_.stopping()


class _App(Starlette):
    """Starlette with ``SecurityHeaders`` outermost, so its own 500 pages get them too."""

    def build_middleware_stack(self):  # -> ASGIApp
        return SecurityHeaders(super().build_middleware_stack(), self.state.csp)


def create_app(
    settings: Settings,
    *,
    preview: bool = True,
    public: bool = False,
    allowed_hosts: Sequence[str] | None = None,
    status_of: StatusOf | None = delivery_badge,
) -> Starlette:
    """The web app for a project: the editors' preview and/or the public pages.

    ``allowed_hosts`` (for example the loopback names) rejects requests whose ``Host``
    header names another host, which stops DNS-rebinding pages from reading drafts.
    ``status_of(settings, issue name)`` gives the preview each issue's delivery badge
    (default: from the project's schedules and sends; None: no delivery badges).
    """
    options: dict[str, dict[str, object]] = {"preview": {"status_of": status_of}, "public": {}}
    parts: list[Part] = []
    for name, wanted in (("preview", preview), ("public", public)):
        if wanted:
            parts.extend(_load_part(target, settings, **options[name]) for target in PARTS[name])

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        async with contextlib.AsyncExitStack() as stack:
            for part_ in parts:
                if part_.lifespan is not None:
                    await stack.enter_async_context(part_.lifespan())
            yield

    middleware = []
    if allowed_hosts:
        middleware.append(Middleware(TrustedHostMiddleware, allowed_hosts=list(allowed_hosts),
                                     www_redirect=False))
    app = _App(
        routes=[route for part_ in parts for route in part_.routes],
        middleware=middleware,
        exception_handlers={HTTPException: _http_error, Exception: _server_error},
        lifespan=lifespan,
    )
    app.router.redirect_slashes = False  # Starlette's would redirect to the Host header
    app.state.parts = parts
    app.state.csp = parts[0].csp if parts else NOTHING_CSP
    app.state.redirect_base = (settings.base_url or "") if public else ""
    return app
