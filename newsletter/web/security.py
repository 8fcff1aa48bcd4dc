"""Headers every response of a web app carries, and redirects that never trust ``Host``.

``SecurityHeaders`` wraps the whole app (outside Starlette's error handling, so 404,
405, 500, redirects, feeds and JSON are all covered): ``X-Content-Type-Options:
nosniff`` and ``Referrer-Policy: no-referrer`` on every response, and a
``Content-Security-Policy`` unless the route set a policy of its own (the archived
email and the preview's email frames allow what an email needs): the app's page policy
for HTML, ``NOTHING_CSP`` for everything else.

``slash_redirect`` answers ``/archive/`` with a redirect to ``/archive`` built from
``base_url`` (or a path, for the local preview), never from the request's ``Host``.
"""

from __future__ import annotations

import base64
import hashlib
import re
from collections.abc import Iterable
from pathlib import Path
from urllib.parse import quote

from starlette.requests import Request
from starlette.responses import RedirectResponse, Response
from starlette.routing import Match, Router
from starlette.types import ASGIApp, Message, Receive, Scope, Send

# -- the policies, each "default-src 'none'" plus what its pages need ------------------------

# what a response that is not a page needs: nothing (JSON, text, feeds, redirects)
NOTHING_CSP = "default-src 'none'; frame-ancestors 'none'; base-uri 'none'; form-action 'none'"
# the public pages run no script; their one form posts back to the same site
PAGE_CSP = ("default-src 'none'; style-src 'unsafe-inline'; img-src https: data:; "
            "form-action 'self'; frame-ancestors 'none'; base-uri 'none'")


def email_csp(frame_ancestors: str = "'none'", images: str = "https: data:") -> str:
    """An email shown as a web page: it may style itself and show remote images; it runs
    no script and posts no form. The preview's frames are framed by the preview itself
    (and show the project's local images from the preview: ``images="'self' https: data:"``)."""
    return (f"default-src 'none'; img-src {images}; style-src 'unsafe-inline'; "
            f"font-src https: data:; frame-ancestors {frame_ancestors}; base-uri 'none'; "
            "form-action 'none'")


def _script_hashes(template: Path) -> str:
    """CSP sources allowing exactly the inline scripts of one of our page templates."""
    scripts = re.findall(r"<script>(.*?)</script>", template.read_text("utf-8"), re.DOTALL)
    return " ".join(
        "'sha256-" + base64.b64encode(hashlib.sha256(code.encode()).digest()).decode() + "'"
        for code in scripts)


def preview_csp(templates: Path) -> str:
    """The preview's pages: their own live-reload script, fetches, email frames and the
    "Check links" form, which posts to the preview itself."""
    return (f"default-src 'none'; script-src {_script_hashes(templates / 'base.html')}; "
            "style-src 'unsafe-inline'; img-src 'self' data:; connect-src 'self'; "
            "frame-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'")


_NOSNIFF = (b"x-content-type-options", b"nosniff")
_NO_REFERRER = (b"referrer-policy", b"no-referrer")
_NOTHING_CSP = NOTHING_CSP.encode("latin-1")


def _secured(raw: Iterable[tuple[bytes, bytes]], page_csp: bytes) -> list[tuple[bytes, bytes]]:
    """A response's raw headers (names lower-case, as ASGI has them) with the security
    headers: ``nosniff`` replacing any other value, the referrer policy and the CSP
    unless the response set its own (the page policy for HTML, else ``NOTHING_CSP``).
    One pass over the headers: the redirects of tracked links are answered thousands of
    times a second."""
    headers = [item for item in raw if item[0] != b"x-content-type-options"]
    names = {name for name, _ in headers}
    headers.append(_NOSNIFF)
    if b"referrer-policy" not in names:
        headers.append(_NO_REFERRER)
    if b"content-security-policy" not in names:
        kind = next((value for name, value in headers if name == b"content-type"), b"")
        html = kind.startswith(b"text/html")
        headers.append((b"content-security-policy", page_csp if html else _NOTHING_CSP))
    return headers


class SecurityHeaders:
    """ASGI middleware: the security headers of one app (see the module docs)."""

    def __init__(self, app: ASGIApp, csp: str) -> None:
        self.app = app
        self.csp = csp
        self.csp_raw = csp.encode("latin-1")

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                message["headers"] = _secured(message.get("headers", ()), self.csp_raw)
            await send(message)

        await self.app(scope, receive, send_with_headers)


def slash_redirect(request: Request, router: Router, base: str) -> Response | None:
    """A redirect to the same path with its trailing slash added or removed, when that
    path exists (GET and HEAD only), to ``base`` + path; else None."""
    if request.method not in ("GET", "HEAD"):
        return None
    path = request.scope["path"]  # as decoded, control characters included: quoted below
    other = path.rstrip("/") if path.endswith("/") else path + "/"
    if not other.startswith("/") or other.startswith("//"):
        return None  # "/" itself, or what a browser would read as another host
    scope = {**request.scope, "path": other}
    if not any(route.matches(scope)[0] != Match.NONE for route in router.routes):
        return None
    query = request.scope["query_string"].decode("latin-1")  # h11 admits no controls in it
    location = base.rstrip("/") + quote(other, safe="/") + (f"?{query}" if query else "")
    return RedirectResponse(location, status_code=308)
