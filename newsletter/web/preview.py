"""The editors' preview: every issue of the project, rendered live in the browser.

Routes (all read-only):

- ``/``: the issues, newest first, with date, subject and status;
- ``/issues/<name>``: one issue: inbox line, HTML size, findings with line numbers,
  the email at desktop and phone widths (``?theme=dark``, ``?part=text``);
- ``/issues/<name>.html`` and ``/issues/<name>.txt``: the raw rendered parts;
- ``/issues/<name>/frame``: the email as shown inside the page's frames;
- ``/_changes?v=N``: a long poll that answers as soon as a watched file changes.

Only issue files listed by ``project.issue_files`` whose real path lies inside the
project (or its issues folder) are served: a name from a URL is looked up in that
listing and never joined to a path. Builds are cached by the files' state, so a page
is always current even without the watcher; the watcher only wakes the open pages.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import hashlib
import logging
import re
import threading
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlencode

from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, PlainTextResponse, Response
from starlette.routing import Route
from watchfiles import Change, awatch

from newsletter.build import Build, build_file
from newsletter.config import CONFIG_NAME, Settings, load_settings
from newsletter.errors import NewsletterError
from newsletter.model import Finding, Severity
from newsletter.project import issue_files
from newsletter.render import Rendered
from newsletter.slugs import file_slug
from newsletter.validate import GMAIL_CLIP_BYTES, PREHEADER_SHOWN, SUBJECT_PHONE

from . import PAGES, Part, error_page, page
from .security import email_csp, preview_csp

log = logging.getLogger("newsletter.preview")
NO_STORE = {"Cache-Control": "no-store"}
_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,150}")
_RAW = {".html": "html", ".txt": "text"}
THEMES = ("light", "dark")
PARTS = ("html", "text")
DEVICES = {"desktop": 640, "phone": 375}
LONG_POLL_SECONDS = 25.0
FRAME_CSP = email_csp(frame_ancestors="'self'")  # the email, inside the preview's frames
RAW_CSP = email_csp()  # the rendered email, opened on its own


# -- status of an issue in the index ------------------------------------------------------


@dataclass(frozen=True)
class Status:
    """One badge of an issue in the index: ``kind`` is its CSS class."""

    kind: str  # "valid", "error", "warning"; delivery adds e.g. "scheduled", "sent"
    label: str


StatusHook = Callable[[Settings, str], "Status | None"]
# Later capabilities (scheduling, sending) append a function (settings, issue name) ->
# Status | None that reads their own store, e.g. Status("sent", "sent to 1,204").
STATUS_HOOKS: list[StatusHook] = []


def delivery_status(settings: Settings, name: str) -> Status | None:
    """Scheduled / sending / sent, from the project's database (if it has one)."""
    from newsletter.scheduler import issue_badge

    badge = issue_badge(settings, name)
    return None if badge is None else Status(*badge)


STATUS_HOOKS.append(delivery_status)


def _plural(count: int, word: str) -> str:
    return f"{count} {word}{'' if count == 1 else 's'}"


def issue_status(settings: Settings, name: str, build: Build) -> list[Status]:
    """The badges shown for an issue: validity first, then those of ``STATUS_HOOKS``."""
    badges: list[Status] = []
    if build.errors:
        badges.append(Status("error", _plural(len(build.errors), "error")))
    if build.warnings:
        badges.append(Status("warning", _plural(len(build.warnings), "warning")))
    if not badges:
        badges.append(Status("valid", "valid"))
    for hook in STATUS_HOOKS:
        extra = hook(settings, name)
        if extra is not None:
            badges.append(extra)
    return badges


# -- builds, cached by the state of the files they depend on ------------------------------


@dataclass(frozen=True)
class Good:
    """The last render of an issue that had no errors."""

    rendered: Rendered
    at: dt.datetime
    key: str  # a short hash of the HTML, used in the frames' URLs

    @property
    def size(self) -> int:
        return self.rendered.size


@dataclass(frozen=True)
class Entry:
    name: str
    path: Path
    build: Build
    good: Good | None  # the current render when the build is valid, else the last good one
    signature: tuple

    @property
    def stale(self) -> bool:
        """True when the page shows an older render than the file's current text."""
        return self.build.rendered is None and self.good is not None


def _stat(path: Path) -> tuple:
    try:
        st = path.stat()
    except OSError:
        return ()
    return (st.st_ino, st.st_mtime_ns, st.st_size)


def _folder_signature(folder: Path | None) -> tuple:
    if folder is None or not folder.is_dir():
        return ()
    return tuple(sorted((str(p), *_stat(p)) for p in folder.rglob("*") if p.is_file()))


def _unreadable(path: Path, exc: NewsletterError) -> Build:
    message = str(exc)
    match = re.match(rf"{re.escape(str(path))}:(\d+): (.*)", message)
    line, text = (int(match.group(1)), match.group(2)) if match else (1, message)
    text = text.removeprefix(f"{path}: ")
    finding = Finding(path=str(path), line=line, severity=Severity.ERROR, message=text,
                      rule="unreadable")
    return Build(path=str(path), findings=[finding])


class PreviewState:
    """What the preview knows about the project: settings, issues, builds, changes."""

    def __init__(self, settings: Settings) -> None:
        self.project_dir = settings.project_dir.resolve()
        self._settings = settings
        self._config_signature = _stat(settings.config_file)
        self.config_error: str | None = None
        self.version = 0
        self._woken = asyncio.Event()
        self._loop: asyncio.AbstractEventLoop | None = None
        self.closing = False
        self._touched: dict[str, int] = {}  # issue path -> changes seen by the watcher
        self._entries: dict[str, Entry] = {}
        self._good: dict[str, Good] = {}
        self._lock = threading.RLock()

    # settings are re-read when newsletter.toml changes; a broken file keeps the old ones
    def settings(self) -> Settings:
        with self._lock:
            signature = _stat(self._settings.config_file)
            if signature != self._config_signature:
                self._config_signature = signature
                try:
                    self._settings = load_settings(self.project_dir)
                    self.config_error = None
                except NewsletterError as exc:
                    self.config_error = str(exc)
            return self._settings

    def _roots(self, settings: Settings) -> list[Path]:
        return [self.project_dir, settings.issues_path.resolve()]

    def issues(self) -> dict[str, Path]:
        """Issue name (the file's URL-safe slug, ``newsletter.slugs``) -> path, for the
        project's own issue files only."""
        settings = self.settings()
        roots = self._roots(settings)
        found: dict[str, Path] = {}
        for path in issue_files(settings):
            real = path.resolve()
            if real.is_file() and any(real.is_relative_to(root) for root in roots):
                found.setdefault(file_slug(path), path)
        return found

    def path_of(self, name: str) -> Path:
        """The issue file called ``name``, or a 404."""
        if not _NAME.fullmatch(name) or ".." in name:
            raise HTTPException(404, f"There is no issue called {name!r} in this project.")
        path = self.issues().get(name)
        if path is None:
            raise HTTPException(
                404, f"There is no issue called {name!r} in this project's issues folder."
            )
        return path

    def entry(self, name: str) -> Entry:
        """The (cached) build of an issue and its last good render."""
        path = self.path_of(name)
        settings = self.settings()
        signature = (
            _stat(path),
            self._touched.get(str(path), 0),
            self._config_signature,
            _folder_signature(settings.templates_path),
        )
        with self._lock:
            cached = self._entries.get(name)
            if cached is not None and cached.signature == signature and cached.path == path:
                return cached
            try:
                build = build_file(path, settings)
            except NewsletterError as exc:
                build = _unreadable(path, exc)
            if build.rendered is not None:
                digest = hashlib.sha1(build.rendered.html.encode("utf-8")).hexdigest()[:12]
                self._good[name] = Good(build.rendered, dt.datetime.now(), digest)
            entry = Entry(name, path, build, self._good.get(name), signature)
            self._entries[name] = entry
            return entry

    def display_path(self, path: Path | str) -> str:
        path = Path(path)
        with contextlib.suppress(ValueError):
            return str(path.resolve().relative_to(self.project_dir))
        return str(path)

    # -- change notification -------------------------------------------------------------

    def changed(self, paths: list[str] | None = None) -> None:
        """Record a change (from the watcher) and wake every waiting page."""
        for path in paths or []:
            self._touched[path] = self._touched.get(path, 0) + 1
        self.version += 1
        woken, self._woken = self._woken, asyncio.Event()
        woken.set()

    async def wait(self, version: int, timeout: float) -> int:
        """Wait until the version differs from ``version`` (or ``timeout`` seconds)."""
        loop = asyncio.get_running_loop()
        if loop is not self._loop:  # an asyncio.Event belongs to one event loop
            self._loop, self._woken = loop, asyncio.Event()
        if self.version == version and not self.closing:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._woken.wait(), timeout)
        return self.version

    def close(self) -> None:
        """Answer every waiting page now, and later ones at once: the server is stopping."""
        def close() -> None:
            self.closing = True
            self._woken.set()

        if self._loop is not None and not self._loop.is_closed():
            self._loop.call_soon_threadsafe(close)
        else:
            close()

    def watched(self) -> tuple[list[Path], Path]:
        """Folders watched recursively (issues, templates) and the project folder."""
        settings = self.settings()
        folders = [settings.issues_path]
        if settings.templates_path is not None:
            folders.append(settings.templates_path)
        return [f for f in folders if f.is_dir()], self.project_dir

    async def watch(self, stop: asyncio.Event | None = None) -> None:
        """Watch issue files, templates and newsletter.toml until ``stop`` is set."""
        import anyio

        stop_event = anyio.Event()
        folders, project = self.watched()

        def editor_noise(name: str) -> bool:
            return name.startswith((".#", ".~")) or name.endswith(("~", ".swp", ".swx"))

        def content(change: Change, path: str) -> bool:
            name = Path(path).name
            if editor_noise(name) or name == "4913":
                return False
            issues = str(self.settings().issues_path)
            return not path.startswith(issues + "/") or name.endswith(".md")

        def config(change: Change, path: str) -> bool:
            return Path(path).name == CONFIG_NAME

        async def loop(paths: list[Path], filt: Callable[[Change, str], bool], rec: bool) -> None:
            polling = False
            while not stop_event.is_set():
                try:
                    async for changes in awatch(
                        *paths, watch_filter=filt, debounce=400, step=20, recursive=rec,
                        stop_event=stop_event, rust_timeout=1000, force_polling=polling,
                        poll_delay_ms=150,
                    ):
                        self.changed([path for _change, path in changes])
                except Exception as exc:  # e.g. the OS limit on watched files is reached
                    if polling:
                        log.warning("live reload is off: cannot watch %s: %s", paths[0], exc)
                        return
                    log.warning("cannot watch %s (%s): polling for changes instead", paths[0], exc)
                    polling = True

        tasks = [asyncio.create_task(loop([project], config, False))]
        if folders:
            tasks.append(asyncio.create_task(loop(folders, content, True)))
        try:
            if stop is None:
                await asyncio.gather(*tasks)
            else:
                await stop.wait()
        finally:
            stop_event.set()
            for task in tasks:
                task.cancel()
            for task in tasks:
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await task


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


def _index_rows(state: PreviewState) -> list[dict]:
    settings = state.settings()
    rows = []
    for name in state.issues():
        try:
            entry = state.entry(name)
        except HTTPException:  # removed since the listing
            continue
        issue = entry.build.issue
        date = issue.date.isoformat() if issue else ""
        rows.append({
            "name": name,
            "date": date,
            "subject": issue.subject if issue else "",
            "file": state.display_path(entry.path),
            "statuses": issue_status(settings, name, entry.build),
            "sort": (date or name, name),
        })
    rows.sort(key=lambda row: row["sort"], reverse=True)
    return rows


async def _disconnected(request: Request) -> None:
    """Return when the client closes the connection."""
    while (await request.receive())["type"] != "http.disconnect":
        pass


def part(settings: Settings) -> Part:
    """The preview part of the web app (see ``newsletter.web.create_app``)."""
    state = PreviewState(settings)

    def common(request: Request) -> dict:
        current = state.settings()
        return {
            "newsletter": current.name,
            "version": state.version,
            "config_error": state.config_error,
        }

    async def index(request: Request) -> Response:
        rows = await run_in_threadpool(_index_rows, state)
        current = state.settings()
        return page(
            "index.html",
            rows=rows,
            issues_dir=state.display_path(current.issues_path),
            **common(request),
        )

    async def issue(request: Request) -> Response:
        name = request.path_params["name"]
        issues = await run_in_threadpool(state.issues)
        if name not in issues:
            for suffix, what in _RAW.items():
                if name.endswith(suffix) and name.removesuffix(suffix) in issues:
                    return await raw(request, name.removesuffix(suffix), what)
        entry = await run_in_threadpool(state.entry, name)
        return await run_in_threadpool(_issue_page, request, entry)

    def _issue_page(request: Request, entry: Entry) -> Response:
        theme = _choice(request, "theme", THEMES)
        shown = _choice(request, "part", PARTS)
        build, good = entry.build, entry.good
        current = state.settings()
        issue = build.issue
        try:
            lines = entry.path.read_text(encoding="utf-8").splitlines()
        except (OSError, UnicodeDecodeError):
            lines = []
        base = f"/issues/{entry.name}"
        rendered = build.rendered or (good.rendered if good else None)
        subject = issue.subject if issue else (rendered.subject if rendered else "")
        preheader = issue.preheader if issue else (rendered.preheader if rendered else None)
        size = rendered.size if rendered else None
        frames = []
        if good is not None:
            for device, width in DEVICES.items():
                src = _url(f"{base}/frame", theme=theme, device=device, r=good.key)
                frames.append({"device": device, "width": width, "src": src})
        return page(
            "issue.html",
            name=entry.name,
            file=state.display_path(entry.path),
            subject=subject,
            preheader=preheader,
            preheader_shown=PREHEADER_SHOWN,
            subject_phone=SUBJECT_PHONE,
            sender=_sender(current),
            date=issue.date.isoformat() if issue else "",
            findings=[_finding_view(state, f, lines) for f in build.findings],
            errors=len(build.errors),
            warnings=len(build.warnings),
            statuses=issue_status(current, entry.name, build),
            stale=entry.stale,
            good_at=good.at.strftime("%H:%M:%S") if good else None,
            size=size,
            size_kb=f"{size / 1024:.1f}" if size is not None else None,
            limit=GMAIL_CLIP_BYTES,
            limit_kb=GMAIL_CLIP_BYTES // 1024,
            percent=round(100 * size / GMAIL_CLIP_BYTES) if size is not None else None,
            theme=theme,
            shown=shown,
            frames=frames,
            text=rendered.text if rendered else None,
            links={
                "light": _url(base, theme="light", part=shown),
                "dark": _url(base, theme="dark", part=shown),
                "html": _url(base, theme=theme, part="html"),
                "text": _url(base, theme=theme, part="text"),
                "raw_html": f"{base}.html",
                "raw_text": f"{base}.txt",
            },
            **common(request),
        )

    async def raw(request: Request, name: str, what: str) -> Response:
        entry = await run_in_threadpool(state.entry, name)
        rendered = entry.build.rendered
        if rendered is None:
            errors = entry.build.errors
            first = errors[0] if errors else None
            detail = (
                f"{state.display_path(entry.path)} has {_plural(len(errors), 'error')}"
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

    async def frame(request: Request) -> Response:
        name = request.path_params["name"]
        entry = await run_in_threadpool(state.entry, name)
        theme = _choice(request, "theme", THEMES)
        device = _choice(request, "device", tuple(DEVICES))
        if entry.good is None:
            response: Response = page("frame-empty.html", name=name)
        else:
            html = frame_html(entry.good.rendered.html, theme, device)
            response = HTMLResponse(html, headers=NO_STORE)
        response.headers["Content-Security-Policy"] = FRAME_CSP
        return response

    async def changes(request: Request) -> Response:
        try:
            seen = int(request.query_params.get("v", "-1"))
        except ValueError:
            seen = -1
        try:
            timeout = float(request.query_params.get("timeout", LONG_POLL_SECONDS))
        except ValueError:
            timeout = LONG_POLL_SECONDS
        timeout = min(max(timeout, 0.0), 60.0)
        waiting = asyncio.create_task(state.wait(seen, timeout))
        gone = asyncio.create_task(_disconnected(request))
        await asyncio.wait({waiting, gone}, return_when=asyncio.FIRST_COMPLETED)
        gone.cancel()
        if not waiting.done():  # the page went away: nobody to answer
            waiting.cancel()
            return Response(status_code=204)
        return JSONResponse({"version": waiting.result()}, headers=NO_STORE)

    @contextlib.asynccontextmanager
    async def lifespan() -> AsyncIterator[None]:
        stop = asyncio.Event()
        task = asyncio.create_task(state.watch(stop))
        try:
            yield
        finally:
            stop.set()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await asyncio.wait_for(task, timeout=3.0)

    routes = [
        Route("/", index, name="preview-index"),
        Route("/_changes", changes, name="preview-changes"),
        Route("/issues/{name}/frame", frame, name="preview-frame"),
        Route("/issues/{name}", issue, name="preview-issue"),
    ]
    return Part(routes=routes, lifespan=lifespan, state=state, stopping=state.close,
                csp=preview_csp(PAGES))
