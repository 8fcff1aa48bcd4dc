"""The preview's "Check links" button and its local images.

- ``POST /issues/<name>/links`` runs ``newsletter check`` on the issue (``authoring.linkcheck``,
  the same answers and cache), then sends the browser back to the issue's page (303), which
  shows the results beside the findings; asked for JSON (``Accept: application/json``) it
  answers the findings as JSON. A post from another site (its ``Origin`` is not the
  preview's) is refused with 403.
- ``link_view(...)``: what the issue page shows: the findings the cache holds for the
  issue's links and images, how many are not checked yet, and when they were checked;
  it never fetches anything.
- ``/media/<file>``: the issue's local images; one not written under out/media/ yet is
  written on first request (the preview renders without writing files).
- ``local_media(html, settings)``: the email's image URLs under ``base_url/media/``
  pointed at the preview's own ``/media/``.
"""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from urllib.parse import urlsplit

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, RedirectResponse, Response
from starlette.routing import Route

from newsletter.authoring.linkcheck import CheckOptions, Report, check_sections
from newsletter.authoring.media import MEDIA_PATH, local_images, media_url, plan, publish_one
from newsletter.config import Settings
from newsletter.errors import MediaError

from .media import media_route
from .preview_state import Entry, PreviewState


def _check(state: PreviewState, entry: Entry, options: CheckOptions) -> Report | None:
    parsed = entry.build.parsed
    if parsed is None:
        return None
    try:
        lines = entry.path.read_text(encoding="utf-8").replace("\r\n", "\n").split("\n")
    except (OSError, UnicodeDecodeError):
        return None
    return check_sections(state.settings(), str(entry.path), parsed.sections, lines, options)


def link_view(state: PreviewState, entry: Entry) -> dict | None:
    """The issue page's "Links and images" box, from the cache only."""
    report = _check(state, entry, CheckOptions(offline=True))
    if report is None:
        return None
    when = None
    if report.checked_at is not None:
        when = dt.datetime.fromtimestamp(report.checked_at).strftime("%Y-%m-%d %H:%M")
    return {"report": report, "checked_at": when}


def _same_site(request: Request) -> bool:
    origin = request.headers.get("origin")
    if not origin or origin == "null":
        return origin is None
    return urlsplit(origin).netloc == request.headers.get("host", "")


def routes(state: PreviewState) -> list[Route]:
    async def check_links(request: Request) -> Response:
        if not _same_site(request):
            return PlainTextResponse("refused: post from another site\n", status_code=403)
        name = request.path_params["name"]
        entry = await run_in_threadpool(state.entry, name)
        report = await run_in_threadpool(_check, state, entry, CheckOptions())
        if "application/json" in request.headers.get("accept", ""):
            findings = [f.model_dump(mode="json") for f in (report.findings if report else [])]
            return JSONResponse({"checked": report.checked if report else 0,
                                 "findings": findings}, headers={"Cache-Control": "no-store"})
        return RedirectResponse(f"/issues/{name}#links", status_code=303)

    def unpublished(name: str) -> Path | None:
        settings = state.settings()
        for issue_name in state.issues():
            issue = state.entry(issue_name).build.issue
            for _, src in local_images(issue) if issue is not None else ():
                try:
                    media = plan(settings, src)
                    if media.name == name:
                        return publish_one(settings, media)
                except MediaError:
                    continue
        return None

    return [Route("/issues/{name}/links", check_links, methods=["POST"], name="preview-links"),
            media_route(state.settings, unpublished)]


def local_media(html: str, settings: Settings) -> str:
    """Point the email's local images at the preview's ``/media/``."""
    prefix = media_url(settings, "")
    return html.replace(f'src="{prefix}', f'src="/{MEDIA_PATH}/')
