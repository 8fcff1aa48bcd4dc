"""``/media/<file>``: the local images of issues, resized under ``out/media/``.

A name from a URL is matched against the shape of the names ``authoring.media`` writes
(``photo-0123456789ab.jpg``) and only looked up in that one folder, never joined to a
path as given. The files' names carry a hash of their content, so they are cached by
browsers and proxies for a year, ``immutable``.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import FileResponse, PlainTextResponse, Response
from starlette.routing import Route

from newsletter.authoring.media import MEDIA_PATH, media_file
from newsletter.config import Settings

LONG_CACHE = "public, max-age=31536000, immutable"
TYPES = {".jpg": "image/jpeg", ".png": "image/png", ".gif": "image/gif"}


def media_route(settings: Callable[[], Settings],
                fallback: Callable[[str], Path | None] | None = None) -> Route:
    """The route; ``fallback(name)`` may publish a file not written yet (the preview)."""

    async def media(request: Request) -> Response:
        name = request.path_params["name"]
        path = await run_in_threadpool(media_file, settings(), name)
        if path is None and fallback is not None:
            path = await run_in_threadpool(fallback, name)
        if path is None:
            return PlainTextResponse("not found\n", status_code=404,
                                     headers={"Cache-Control": "no-store"})
        return FileResponse(path, media_type=TYPES[path.suffix],
                            headers={"Cache-Control": LONG_CACHE})

    return Route(f"/{MEDIA_PATH}/{{name}}", media, methods=["GET", "HEAD"], name="media")
