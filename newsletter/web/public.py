"""The public part of the web app: what subscribers, SendGrid and load balancers reach.

``part(settings)`` opens the store once and assembles the routes of

- ``newsletter.web.unsubscribe``: ``GET/POST /u/{token}`` (RFC 8058 one-click),
- ``newsletter.web.preferences``: ``GET/POST /p/{token}`` (the preference centre),
- ``newsletter.web.webhook``: ``POST /webhooks/sendgrid`` (Signed Event Webhook), and
  ``newsletter.web.provider_webhooks``: SES (SNS), Postmark and Mailgun,
- ``newsletter.web.archive``: ``GET /archive``, ``/archive/feed.xml``, ``/archive/{slug}``
  (unless ``archive = false``),
- ``newsletter.web.media``: ``GET /media/{file}``, issues' local images (out/media/),
- ``newsletter.web.signup``: ``GET/POST /subscribe``, ``POST /api/subscribe``,
  ``GET/POST /confirm/{token}`` (double opt-in),
- ``GET /healthz``: 200 ``ok`` when the database answers, 503 otherwise.

Database work is synchronous (SQLAlchemy) and runs in Starlette's thread pool; the
connection pool is sized to that pool, so no request waits for a connection long.
Request bodies are read up to ``max_body_bytes`` (413 past it), before anything else.
"""

from __future__ import annotations

import contextlib
import functools
import logging
import re
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass

import sqlalchemy as sa
from markupsafe import Markup
from sqlalchemy.engine import Engine
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response
from starlette.routing import BaseRoute, Route

from newsletter.config import Settings, require
from newsletter.db.connect import open_store
from newsletter.db.engine import make_engine
from newsletter.errors import ConfigError
from newsletter.feedback.sendgrid import Verifier

from ..errors import BodyTooLarge
from . import Part, page
from .media import media_route
from .security import PAGE_CSP

log = logging.getLogger("newsletter.web")
Endpoint = Callable[[Request], Awaitable[Response]]
POOL_SIZE = 20  # connections: about half of AnyIO's 40 worker threads


@dataclass
class PublicState:
    settings: Settings
    engine: Engine
    verifier: Verifier | None  # None: no webhook key configured, every webhook call is 403


async def read_body(request: Request, limit: int) -> bytes:
    """The request body, or ``BodyTooLarge`` as soon as it passes ``limit`` bytes."""
    declared = request.headers.get("content-length")
    if declared is not None and declared.strip().isdigit() and int(declared) > limit:
        raise BodyTooLarge
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise BodyTooLarge
        chunks.append(chunk)
    return b"".join(chunks)


def too_large() -> Response:
    return PlainTextResponse("request body too large\n", status_code=413,
                             headers={"Connection": "close"})


_CSS_UNSAFE = re.compile(r"[<>{};\\]")


def page_context(settings: Settings) -> dict[str, object]:
    """What every public page shows: the newsletter's name and brand."""
    brand = settings.brand.model_copy(update={
        "font_family": Markup(_CSS_UNSAFE.sub("", settings.brand.font_family)),
        "heading_font_family": Markup(_CSS_UNSAFE.sub("", settings.brand.heading_font_family)),
    })
    return {"name": settings.name, "brand": brand, "lang": settings.lang}


def public_page(settings: Settings, template: str, status_code: int = 200,
                **context: object) -> Response:
    response = page(f"public/{template}", status_code, **page_context(settings), **context)
    response.headers["X-Frame-Options"] = "DENY"  # for browsers without frame-ancestors
    return response  # Content-Security-Policy: PAGE_CSP, the part's, added to every answer


def open_engine(settings: Settings) -> Engine:
    """The store, with a connection pool sized for the thread pool serving requests."""
    url = settings.effective_database_url
    open_store(url).dispose()  # checks (or creates) the schema, one line on error
    return make_engine(url, pool_size=POOL_SIZE, max_overflow=10)


def _verifier(settings: Settings) -> Verifier | None:
    key = settings.sendgrid_webhook_public_key
    if not key:
        return None
    try:
        return Verifier(key, max_age=settings.webhook_max_age)
    except ValueError as exc:
        raise ConfigError(
            f"{settings.config_file}: 'sendgrid_webhook_public_key' is not usable ({exc}); "
            "paste the verification key shown in SendGrid's Mail Settings > Event Webhook"
        ) from None


def _ping(engine: Engine) -> None:
    with engine.connect() as conn:
        conn.execute(sa.text("SELECT 1"))


def _health_route(state: PublicState) -> Route:
    async def healthz(request: Request) -> Response:
        try:
            await run_in_threadpool(_ping, state.engine)
        except sa.exc.SQLAlchemyError:  # no server, refused, pool exhausted: not healthy
            return PlainTextResponse("database unavailable\n", status_code=503,
                                     headers={"Cache-Control": "no-store"})
        return PlainTextResponse("ok\n", headers={"Cache-Control": "no-store"})

    return Route("/healthz", healthz, methods=["GET", "HEAD"])


def guarded(endpoint: Endpoint) -> Endpoint:
    """An endpoint whose unexpected failures (a database that went away, say) are logged
    with their traceback on the server and answered 503 with a plain line, nothing more."""

    @functools.wraps(endpoint)
    async def wrapper(request: Request) -> Response:
        try:
            return await endpoint(request)
        except HTTPException:
            raise
        except Exception:  # the endpoint's last line of defence: logged here, 503 there
            log.exception("%s %s failed", request.method, request.url.path)
            return PlainTextResponse("temporarily unavailable, retry later\n", status_code=503,
                                     headers={"Cache-Control": "no-store", "Retry-After": "30"})

    return wrapper


def part(settings: Settings) -> Part:
    from . import archive, clicks, preferences, provider_webhooks, signup, unsubscribe, webhook

    require(settings, "secret_key", purpose="checking unsubscribe links")
    require(settings, "base_url", purpose="the archive feed's links and the site's redirects")
    state = PublicState(settings=settings, engine=open_engine(settings),
                        verifier=_verifier(settings))
    click_routes, click_writer = clicks.routes(state)  # tracked links: /c/, /o/
    routes: list[BaseRoute] = [
        *click_routes,
        *unsubscribe.routes(state),
        *preferences.routes(state),
        *webhook.routes(state),
        *signup.routes(state),
        *provider_webhooks.routes(state),
        _health_route(state),
        media_route(lambda: settings),  # local images of issues: out/media/
    ]
    if settings.archive:
        routes.extend(archive.routes(state))
    routes = [Route(r.path, guarded(r.endpoint), methods=r.methods, name=r.name)
              if isinstance(r, Route) else r for r in routes]

    @contextlib.asynccontextmanager
    async def lifespan() -> AsyncIterator[None]:
        click_writer.start()  # clicks a server that died left in the journal
        try:
            yield
        finally:
            click_writer.close()  # every queued click is written before the pool goes
            mailer = getattr(state, "signup_mailer", None)
            if mailer is not None:
                mailer.close()
            state.engine.dispose()

    return Part(routes=routes, lifespan=lifespan, state=state, csp=PAGE_CSP)


PROJECT_VARIABLE = "NEWSLETTER_PROJECT"


def app_from_environment():  # -> Starlette; uvicorn's factory in each worker process
    """The public app of the project named by ``NEWSLETTER_PROJECT`` (``serve --workers``)."""
    import os

    from newsletter.config import load_settings

    from . import create_app

    return create_app(load_settings(os.environ.get(PROJECT_VARIABLE)), preview=False,
                      public=True)
