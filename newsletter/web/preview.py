"""The editors' preview: every issue of the project, rendered live in the browser.

Routes (all read-only):

- ``/``: the issues, newest first, with date, subject and status: listed from their front
  matter at once, their builds (the status) following in the background, newest first;
- ``/_rows?name=N``: those rows of the index alone, for an open index to swap in;
- ``/issues/<name>``: one issue: inbox line, HTML size, findings with line numbers,
  the email at desktop and phone widths (``?theme=dark``, ``?part=text``);
- ``/issues/<name>.html`` and ``/issues/<name>.txt``: the raw rendered parts;
- ``/issues/<name>/frame``: the email as shown inside the page's frames;
- ``/_changes?v=N``: a long poll that answers as soon as a watched file changes (or an
  issue's build is ready), with the issues concerned (``null``: anything may have changed);
- ``POST /issues/<name>/links`` (the "Check links" button) and ``/media/<file>`` (local
  images): ``preview_links``.

Only issue files listed by ``authoring.project.issue_files`` whose real path lies inside the
project (or its issues folder) are served: a name from a URL is looked up in that
listing and never joined to a path (``preview_state``, which also caches the builds).

The preview is authoring: it knows nothing of schedules or sends. An issue's delivery
status (scheduled, sent ...) comes from a ``status_of(settings, name)`` callable that
the web layer passes in (``newsletter.web.create_app``).
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import re
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlencode

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, PlainTextResponse, Response
from starlette.routing import Route

from newsletter.authoring.build import Build
from newsletter.authoring.model import Finding
from newsletter.authoring.validate import GMAIL_CLIP_BYTES, PREHEADER_SHOWN, SUBJECT_PHONE
from newsletter.config import Settings

from . import PAGES, Part, error_page, page, preview_links
from .preview_state import Entry, Meta, PreviewState
from .security import email_csp, preview_csp

NO_STORE = {"Cache-Control": "no-store"}
_RAW = {".html": "html", ".txt": "text"}
THEMES = ("light", "dark")
PARTS = ("html", "text")
DEVICES = {"desktop": 640, "phone": 375}
LONG_POLL_SECONDS = 25.0
# a few issues not built yet are built before the index answers (within this time), so a
# small project's index shows every status at once; more are listed at once and built after
INDEX_BUILD_AT_ONCE = 20
INDEX_BUILD_SECONDS = 0.25
ANNOUNCE_SECONDS = 0.25  # background builds are announced together, at most this often
MAX_ROWS = 200  # rows asked for at once by an open index
# the email, inside the preview's frames: its local images come from the preview
FRAME_CSP = email_csp(frame_ancestors="'self'", images="'self' https: data:")
RAW_CSP = email_csp()  # the rendered email, opened on its own


# -- badges of an issue in the index --------------------------------------------------------


@dataclass(frozen=True)
class Badge:
    """One badge of an issue in the index: ``kind`` is its CSS class."""

    kind: str  # "valid", "error", "warning"; delivery adds e.g. "scheduled", "sent"
    label: str


CHECKING = Badge("checking", "checking…")  # not built yet: the build follows

# (settings, issue name) -> its delivery badge, e.g. Badge("sent", "sent to 1,204"), or None
StatusOf = Callable[[Settings, str], "Badge | None"]


def _plural(count: int, word: str) -> str:
    return f"{count} {word}{'' if count == 1 else 's'}"


def issue_badges(build: Build, delivery: Badge | None = None) -> list[Badge]:
    """The badges shown for an issue: validity first, then its delivery status."""
    badges: list[Badge] = []
    if build.errors:
        badges.append(Badge("error", _plural(len(build.errors), "error")))
    if build.warnings:
        badges.append(Badge("warning", _plural(len(build.warnings), "warning")))
    if not badges:
        badges.append(Badge("valid", "valid"))
    if delivery is not None:
        badges.append(delivery)
    return badges


# -- the email inside the frames --------------------------------------------------------

_DARK = re.compile(r"\(\s*prefers-color-scheme\s*:\s*dark\s*\)", re.IGNORECASE)
_LIGHT = re.compile(r"\(\s*prefers-color-scheme\s*:\s*light\s*\)", re.IGNORECASE)
_SCHEME = re.compile(r"color-scheme\s*:\s*light\s+dark", re.IGNORECASE)
_ALWAYS, _NEVER = "(min-width: 0px)", "(min-width: 100000px)"


def force_theme(html: str, theme: str) -> str:
    """The email as a light- or dark-mode mail client shows it, whatever the OS says."""
    dark = theme == "dark"
    html = _DARK.sub(_ALWAYS if dark else _NEVER, html)
    html = _LIGHT.sub(_NEVER if dark else _ALWAYS, html)
    return _SCHEME.sub(f"color-scheme: {theme}", html)


def frame_html(html: str, theme: str, device: str) -> str:
    """The email for a preview frame: links open outside the frame; phones hide scrollbars."""
    extra = '<base target="_blank">'
    if device == "phone":  # phones overlay their scrollbars instead of narrowing the page
        extra += (
            "<style>html{scrollbar-width:none}"
            "html::-webkit-scrollbar{display:none}</style>"
        )
    html = force_theme(html, theme)
    match = re.search(r"<head[^>]*>", html, re.IGNORECASE)
    if match:
        return html[: match.end()] + extra + html[match.end():]
    return extra + html


def _shown_date(path: Path, meta: Meta) -> str:
    special = path.name.startswith("_")  # the welcome email (_welcome.md): no date
    return meta.date.isoformat() if meta.date and not special else ""


def _order(name: str, path: Path, meta: Meta) -> tuple[bool, str, str]:
    """The index's order, newest first when reversed; the welcome email last."""
    return (not path.name.startswith("_"), _shown_date(path, meta) or name, name)


# -- routes -----------------------------------------------------------------------------


def _choice(request: Request, key: str, allowed: tuple[str, ...]) -> str:
    value = request.query_params.get(key, allowed[0])
    return value if value in allowed else allowed[0]


def _url(base: str, **params: str) -> str:
    query = {k: v for k, v in params.items() if v and v not in ("light", "html")}
    return base + ("?" + urlencode(query) if query else "")


def _finding_view(state: PreviewState, finding: Finding, lines: list[str]) -> dict:
    source = lines[finding.line - 1] if 0 < finding.line <= len(lines) else ""
    return {
        "line": finding.line,
        "column": finding.column,
        "severity": finding.severity.value,
        "message": finding.message,
        "rule": finding.rule,
        "where": f"{state.display_path(finding.path)}:{finding.line}:{finding.column}",
        "source": source,
    }


def _sender(settings: Settings) -> str:
    if settings.from_address:
        match = re.match(r"\s*\"?([^\"<]+?)\"?\s*<", settings.from_address)
        if match:
            return match.group(1)
    return settings.name


async def _disconnected(request: Request) -> None:
    """Return when the client closes the connection."""
    while (await request.receive())["type"] != "http.disconnect":
        pass


def _query_number(request: Request, key: str, default: float) -> float:
    """A finite number from the query string, or ``default``."""
    try:
        value = float(request.query_params.get(key, default))
    except ValueError:
        return default
    return value if math.isfinite(value) else default


class PreviewPages:
    """The preview's route handlers, over one ``PreviewState``."""

    def __init__(self, state: PreviewState, status_of: StatusOf | None = None) -> None:
        self.state = state
        self.status_of = status_of
        self._waiting: dict[str, Path] = {}  # issues to build in the background, in order
        self._builder: asyncio.Task[None] | None = None

    def badges(self, settings: Settings, name: str, build: Build) -> list[Badge]:
        delivery = self.status_of(settings, name) if self.status_of is not None else None
        return issue_badges(build, delivery)

    def common(self) -> dict:
        return {
            "newsletter": self.state.settings().name,
            "version": self.state.version,
            "config_error": self.state.config_error,
        }

    def index_rows(self, only: set[str] | None = None, budget: float = math.inf) -> list[dict]:
        """The index's rows (``only`` those issues), newest first, from the front matter and
        any current build; missing builds are made first while ``budget`` seconds last."""
        state = self.state
        settings = state.settings()
        templates = state.templates_signature()
        issues = state.issues()
        if only is not None:
            issues = {name: path for name, path in issues.items() if name in only}
        deadline = time.monotonic() + budget
        rows = []
        listed = [(name, path, state.meta(path)) for name, path in issues.items()]
        listed.sort(key=lambda item: _order(*item), reverse=True)
        if budget < math.inf:
            missing = sum(state.built(n, m, p, templates) is None for n, p, m in listed)
            budget = budget if missing <= INDEX_BUILD_AT_ONCE else 0.0
        for name, path, meta in listed:
            date = _shown_date(path, meta)
            entry = state.built(name, meta, path, templates)
            if entry is None and time.monotonic() < deadline:
                entry = state.entry(name, path)
            delivery = self.status_of(settings, name) if self.status_of is not None else None
            statuses = issue_badges(entry.build, delivery) if entry else [CHECKING]
            rows.append({
                "name": name,
                "date": date,
                "subject": meta.subject,
                "file": meta.file,
                "statuses": statuses + ([delivery] if delivery and not entry else []),
                "pending": entry is None,
                "path": path,
            })
        return rows


    async def index(self, request: Request) -> Response:
        rows = await run_in_threadpool(self.index_rows, None, INDEX_BUILD_SECONDS)
        self.build_later([(row["name"], row["path"]) for row in rows if row["pending"]])
        issues_dir = self.state.display_path(self.state.settings().issues_path)
        return page("index.html", rows=rows, issues_dir=issues_dir, **self.common())

    async def rows(self, request: Request) -> Response:
        names = set(request.query_params.getlist("name")[:MAX_ROWS])
        rows = await run_in_threadpool(self.index_rows, names)
        return page("index-rows.html", rows=rows)

    def build_later(self, issues: list[tuple[str, Path]]) -> None:
        """Build these issues (name, file) in the background, in this order; each ready row
        is announced over the live channel (``/_changes``) so that open indexes swap it in."""
        for name, path in issues:
            self._waiting.setdefault(name, path)
        if issues and (self._builder is None or self._builder.done()):
            self._builder = asyncio.create_task(self._build_waiting())

    async def _build_waiting(self) -> None:
        ready: list[str] = []
        announced = asyncio.get_running_loop().time()
        while self._waiting and not self.state.closing:
            name = next(iter(self._waiting))
            path = self._waiting.pop(name)
            if path.is_file():  # else removed meanwhile: the watcher reloads the index
                await run_in_threadpool(self.state.entry, name, path)
                ready.append(name)
            now = asyncio.get_running_loop().time()
            if ready and (now - announced >= ANNOUNCE_SECONDS or not self._waiting):
                self.state.changed(names=ready)
                ready, announced = [], now

    async def issue(self, request: Request) -> Response:
        name = request.path_params["name"]
        issues = await run_in_threadpool(self.state.issues)
        if name not in issues:
            for suffix, what in _RAW.items():
                if name.endswith(suffix) and name.removesuffix(suffix) in issues:
                    return await self.raw(request, name.removesuffix(suffix), what)
        entry = await run_in_threadpool(self.state.entry, name)
        return await run_in_threadpool(self.issue_page, request, entry)

    def _frames(self, entry: Entry, theme: str) -> list[dict]:
        if entry.good is None:
            return []
        base = f"/issues/{entry.name}"
        return [{"device": device, "width": width,
                 "src": _url(f"{base}/frame", theme=theme, device=device, r=entry.good.key)}
                for device, width in DEVICES.items()]

    @staticmethod
    def _links(base: str, theme: str, shown: str) -> dict:
        return {
            "light": _url(base, theme="light", part=shown),
            "dark": _url(base, theme="dark", part=shown),
            "html": _url(base, theme=theme, part="html"),
            "text": _url(base, theme=theme, part="text"),
            "raw_html": f"{base}.html",
            "raw_text": f"{base}.txt",
        }

    @staticmethod
    def _size(size: int | None) -> dict:
        return {
            "size": size,
            "size_kb": f"{size / 1024:.1f}" if size is not None else None,
            "limit": GMAIL_CLIP_BYTES,
            "limit_kb": GMAIL_CLIP_BYTES // 1024,
            "percent": round(100 * size / GMAIL_CLIP_BYTES) if size is not None else None,
        }

    def issue_page(self, request: Request, entry: Entry) -> Response:
        theme = _choice(request, "theme", THEMES)
        shown = _choice(request, "part", PARTS)
        build, good = entry.build, entry.good
        current = self.state.settings()
        issue = build.issue
        try:
            lines = entry.path.read_text(encoding="utf-8").splitlines()
        except (OSError, UnicodeDecodeError):
            lines = []
        rendered = build.rendered or (good.rendered if good else None)
        subject = issue.subject if issue else (rendered.subject if rendered else "")
        preheader = issue.preheader if issue else (rendered.preheader if rendered else None)
        return page(
            "issue.html",
            issue_page=True,  # its live reload skips changes of other issues
            name=entry.name,
            file=self.state.display_path(entry.path),
            subject=subject,
            preheader=preheader,
            preheader_shown=PREHEADER_SHOWN,
            subject_phone=SUBJECT_PHONE,
            sender=_sender(current),
            date=issue.date.isoformat() if issue else "",
            findings=[_finding_view(self.state, f, lines) for f in build.findings],
            errors=len(build.errors),
            warnings=len(build.warnings),
            statuses=self.badges(current, entry.name, build),
            stale=entry.stale,
            good_at=good.at.strftime("%H:%M:%S") if good else None,
            **self._size(rendered.size if rendered else None),
            theme=theme,
            shown=shown,
            frames=self._frames(entry, theme),
            text=rendered.text if rendered else None,
            links=self._links(f"/issues/{entry.name}", theme, shown),
            link_check=preview_links.link_view(self.state, entry),
            **self.common(),
        )

    async def raw(self, request: Request, name: str, what: str) -> Response:
        entry = await run_in_threadpool(self.state.entry, name)
        rendered = entry.build.rendered
        if rendered is None:
            errors = entry.build.errors
            first = errors[0] if errors else None
            detail = (
                f"{self.state.display_path(entry.path)} has {_plural(len(errors), 'error')}"
                + (f"; the first, on line {first.line}: {first.message}" if first else "")
                + f". Fix it and reload; /issues/{name} lists every finding."
            )
            return error_page(422, "Not rendered: the issue has errors", detail)
        headers = dict(NO_STORE)
        filename = f"{name}{'.html' if what == 'html' else '.txt'}"
        disposition = "attachment" if request.query_params.get("download") else "inline"
        headers["Content-Disposition"] = f'{disposition}; filename="{filename}"'
        if what == "html":
            return HTMLResponse(rendered.html, headers={**headers, "Content-Security-Policy": RAW_CSP})
        return PlainTextResponse(rendered.text, headers=headers)

    async def frame(self, request: Request) -> Response:
        name = request.path_params["name"]
        entry = await run_in_threadpool(self.state.entry, name)
        theme = _choice(request, "theme", THEMES)
        device = _choice(request, "device", tuple(DEVICES))
        if entry.good is None:
            response: Response = page("frame-empty.html", name=name)
        else:
            html = frame_html(preview_links.local_media(entry.good.rendered.html,
                                                        self.state.settings()), theme, device)
            response = HTMLResponse(html, headers=NO_STORE)
        response.headers["Content-Security-Policy"] = FRAME_CSP
        return response

    async def changes(self, request: Request) -> Response:
        seen = int(_query_number(request, "v", -1))
        timeout = min(max(_query_number(request, "timeout", LONG_POLL_SECONDS), 0.0), 60.0)
        waiting = asyncio.create_task(self.state.wait(seen, timeout))
        gone = asyncio.create_task(_disconnected(request))
        await asyncio.wait({waiting, gone}, return_when=asyncio.FIRST_COMPLETED)
        gone.cancel()
        if not waiting.done():  # the page went away: nobody to answer
            waiting.cancel()
            return Response(status_code=204)
        version = waiting.result()
        # a page from before a restart (a higher version) reloads whole
        issues = self.state.changed_since(seen) if 0 <= seen <= version else None
        return JSONResponse({"version": version, "issues": issues}, headers=NO_STORE)

    @contextlib.asynccontextmanager
    async def lifespan(self) -> AsyncIterator[None]:
        stop = asyncio.Event()
        task = asyncio.create_task(self.state.watch(stop))
        try:
            yield
        finally:
            stop.set()
            if self._builder is not None:
                self._builder.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await asyncio.wait_for(task, timeout=3.0)


def part(settings: Settings, *, status_of: StatusOf | None = None) -> Part:
    """The preview part of the web app (see ``newsletter.web.create_app``).

    ``status_of(settings, name)``: an issue's delivery badge, shown after its validity.
    """
    state = PreviewState(settings)
    pages = PreviewPages(state, status_of)
    routes = [
        Route("/", pages.index, name="preview-index"),
        Route("/_changes", pages.changes, name="preview-changes"),
        Route("/_rows", pages.rows, name="preview-rows"),
        Route("/issues/{name}/frame", pages.frame, name="preview-frame"),
        Route("/issues/{name}", pages.issue, name="preview-issue"),
        *preview_links.routes(state),  # "Check links", /media/
    ]
    return Part(routes=routes, lifespan=pages.lifespan, state=state, stopping=state.close,
                csp=preview_csp(PAGES))
