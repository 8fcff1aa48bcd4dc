"""The preview's state: the project's settings, its issue files, their cached builds
and the changes the watcher saw (``newsletter.web.preview`` serves them).

Builds are cached by the files' state, so a page is always current even without the
watcher; the watcher only wakes the open pages. The index lists issues from their front
matter alone (``Meta``, cached by the file's state), so that hundreds of issues list at
once; their builds follow in the background. Every change is logged with the issues it
concerns (``changed_since``), so an open index replaces only the rows that changed.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import datetime as dt
import hashlib
import logging
import re
import threading
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from starlette.exceptions import HTTPException
from watchfiles import Change, awatch

from newsletter.authoring.build import Build, build_file
from newsletter.authoring.model import Finding, Severity
from newsletter.authoring.parse import read_issue_fields
from newsletter.authoring.project import issue_files
from newsletter.authoring.render import Rendered
from newsletter.authoring.slugs import file_slug
from newsletter.config import CONFIG_NAME, Settings, load_settings
from newsletter.delivery.history import recent_links  # links already sent (recent-link)
from newsletter.errors import NewsletterError

log = logging.getLogger("newsletter.preview")
_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,150}")
CHANGE_LOG = 2000  # changes remembered by issue; an older page reloads whole


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


@dataclass(frozen=True)
class Meta:
    """What the index shows of an issue before it is built: its front matter's values."""

    date: dt.date | None
    subject: str
    file: str  # the path shown, relative to the project
    signature: tuple  # the file's state when read


def read_meta(path: Path, signature: tuple, file: str) -> Meta:
    try:
        fields = read_issue_fields(path.read_text(encoding="utf-8"), str(path))
    except (OSError, UnicodeDecodeError, ValueError):
        fields = None
    fields = fields or {}
    return Meta(fields.get("date"), fields.get("subject") or "", file, signature)


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
        # (version, issue names it concerns, or None: anything, e.g. a template or settings)
        self._log: collections.deque[tuple[int, frozenset[str] | None]] = collections.deque(
            maxlen=CHANGE_LOG)
        self._meta: dict[str, Meta] = {}
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
        """Issue name (the file's URL-safe slug, ``newsletter.authoring.slugs``) -> path, for the
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

    def meta(self, path: Path) -> Meta:
        """The issue's front-matter values, re-read only when the file changed."""
        signature = _stat(path)
        cached = self._meta.get(str(path))
        if cached is not None and cached.signature == signature:
            return cached
        meta = self._meta[str(path)] = read_meta(path, signature, self.display_path(path))
        return meta

    def templates_signature(self) -> tuple:
        return _folder_signature(self.settings().templates_path)

    def _signature(self, path: Path, templates: tuple, stat: tuple | None = None) -> tuple:
        stat = _stat(path) if stat is None else stat
        return (stat, self._touched.get(str(path), 0), self._config_signature, templates)

    def built(self, name: str, meta: Meta, path: Path, templates: tuple) -> Entry | None:
        """The issue's build if one is cached and current (``meta``: the file as just
        seen), without building it."""
        cached = self._entries.get(name)
        if cached is None or cached.path != path:
            return None
        current = cached.signature == self._signature(path, templates, meta.signature)
        return cached if current else None

    def entry(self, name: str, path: Path | None = None) -> Entry:
        """The (cached) build of an issue and its last good render; ``path``: the issue's
        file as ``issues()`` just listed it (saves listing them again)."""
        path = self.path_of(name) if path is None else path
        settings = self.settings()
        signature = self._signature(path, _folder_signature(settings.templates_path))
        with self._lock:
            cached = self._entries.get(name)
            if cached is not None and cached.signature == signature and cached.path == path:
                return cached
            try:
                build = build_file(path, settings, sent_links=recent_links)
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

    def changed(self, paths: list[str] | None = None, names: list[str] | None = None) -> None:
        """Record a change (files from the watcher, or issues whose build is now ready) and
        wake every waiting page."""
        for path in paths or []:
            self._touched[path] = self._touched.get(path, 0) + 1
        concerns = self._issue_names(paths) if paths is not None else None
        if names is not None:
            concerns = (concerns or frozenset()) | frozenset(names)
        self.version += 1
        self._log.append((self.version, concerns))
        woken, self._woken = self._woken, asyncio.Event()
        woken.set()

    def _issue_names(self, paths: list[str]) -> frozenset[str] | None:
        """The issues the changed files are, or None when one is anything else."""
        folder = self.settings().issues_path
        issues = (f"{folder}/", f"{folder.resolve()}/")
        names = set()
        for path in paths:
            if not (path.endswith(".md") and path.startswith(issues)):
                return None
            names.add(file_slug(Path(path)))
        return frozenset(names)

    def changed_since(self, version: int) -> list[str] | None:
        """The issues concerned by the changes after ``version``; None: reload everything."""
        if version >= self.version:
            return []
        changes = [names for number, names in self._log if number > version]
        if len(changes) < self.version - version or any(n is None for n in changes):
            return None
        return sorted(set().union(*changes))  # type: ignore[arg-type]

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
