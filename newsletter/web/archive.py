"""``/archive``: the web copies of sent issues, newest first, and their Atom feed.

The pages show what ``newsletter.delivery.archive`` stored when each issue's send started: the
generic render, with no personal link. ``archive = false`` in newsletter.toml leaves
these routes out (404).
"""

from __future__ import annotations

import datetime as dt
import re
import xml.etree.ElementTree as ET

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import HTMLResponse, RedirectResponse, Response
from starlette.routing import BaseRoute, Route

from newsletter.delivery import archive

from . import error_page
from .public import PublicState, public_page
from .security import email_csp

ATOM = "http://www.w3.org/2005/Atom"
FEED_SIZE = 50
_BODY = re.compile(r"<body\b[^>]*>", re.IGNORECASE)
ISSUE_CSP = email_csp()


def _stamp(value: dt.datetime) -> str:
    return value.astimezone(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def feed_xml(entries: list[archive.Entry], *, name: str, base: str) -> bytes:
    """An Atom 1.0 feed (RFC 4287) of archive entries."""
    ET.register_namespace("", ATOM)

    def sub(parent: ET.Element, tag: str, text: str | None = None, **attrs: str) -> ET.Element:
        element = ET.SubElement(parent, f"{{{ATOM}}}{tag}", attrs)
        if text is not None:
            element.text = text
        return element

    feed = ET.Element(f"{{{ATOM}}}feed")
    sub(feed, "id", f"{base}/archive")
    sub(feed, "title", name)
    updated = max((e.updated_at for e in entries), default=dt.datetime(2000, 1, 1, tzinfo=dt.UTC))
    sub(feed, "updated", _stamp(updated))
    sub(feed, "link", rel="self", type="application/atom+xml", href=f"{base}/archive/feed.xml")
    sub(feed, "link", rel="alternate", type="text/html", href=f"{base}/archive")
    author = sub(feed, "author")
    sub(author, "name", name)
    for entry in entries:
        item = sub(feed, "entry")
        sub(item, "id", f"{base}/archive/{entry.slug}")
        sub(item, "title", entry.subject)
        sub(item, "link", rel="alternate", type="text/html", href=f"{base}/archive/{entry.slug}")
        sub(item, "published", _stamp(entry.published_at))
        sub(item, "updated", _stamp(entry.updated_at))
        sub(item, "summary", f"{entry.date_text}. {entry.preheader or entry.subject}")
    return ET.tostring(feed, encoding="utf-8", xml_declaration=True)


def _with_back_link(html: str) -> str:
    link = ('<div style="font:14px/1.4 system-ui,sans-serif;padding:8px 12px;text-align:center">'
            '<a href="/archive">All issues</a></div>')
    match = _BODY.search(html)
    return html[:match.end()] + link + html[match.end():] if match else link + html


def routes(state: PublicState) -> list[BaseRoute]:
    settings = state.settings

    def listed(limit: int | None = None) -> list[archive.Entry]:
        archive.backfill(state.engine, settings)
        return archive.entries(state.engine, limit=limit)

    async def index(request: Request) -> Response:
        entries = await run_in_threadpool(listed)
        response = public_page(settings, "archive.html", entries=entries,
                               feed_url="/archive/feed.xml")
        response.headers["Cache-Control"] = "public, max-age=300"
        return response

    async def feed(request: Request) -> Response:
        entries = await run_in_threadpool(listed, FEED_SIZE)
        # every absolute URL from base_url (required by the public part), never from Host
        body = feed_xml(entries, name=settings.name, base=str(settings.base_url).rstrip("/"))
        return Response(body, media_type="application/atom+xml; charset=utf-8",
                        headers={"Cache-Control": "public, max-age=300"})

    async def issue(request: Request) -> Response:
        slug = request.path_params["slug"]
        found = await run_in_threadpool(archive.get_entry, state.engine, slug)
        if found is None:
            # another name of an archived issue (a renamed copy's link, an old slug)
            canonical = await run_in_threadpool(archive.resolve, state.engine, slug)
            if canonical is not None and canonical != slug:
                return RedirectResponse(f"/archive/{canonical}", status_code=301)
            return error_page(404, "Not found", "There is no such issue in the archive.")
        return HTMLResponse(_with_back_link(found[1]), headers={
            "Content-Security-Policy": ISSUE_CSP, "Cache-Control": "public, max-age=300"})

    return [
        Route("/archive", index, methods=["GET", "HEAD"]),
        Route("/archive/feed.xml", feed, methods=["GET", "HEAD"]),
        Route("/archive/{slug}", issue, methods=["GET", "HEAD"]),
    ]
