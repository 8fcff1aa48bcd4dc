"""``/c/{token}`` and ``/o/{token}``: tracked links and the open pixel (public part).

``GET /c/READER.N`` (link N of the recipient whose reader token is READER; a link's own
``TOKEN`` in mail sent before reader tokens, ``delivery.tracking.ClickSigner.verify``)
answers a 302 to the link's original URL at once; ``HEAD`` answers the
same (scanners check links with HEAD: recorded, flagged by ``feedback.clicks``). The
click is appended to the process's click journal (``feedback.click_journal``: one
``os.write``) and queued before the answer, and written after it by one writer thread,
in batches (what came in ``LINGER`` seconds: one ``COPY`` on PostgreSQL), so a burst of
clicks costs the database one statement per batch; the queue is written out when the
server stops, and what a killed server left in its journal is stored by the next one's
start-up (``Writer.start``). Each link's 302 headers are built once per send. A token
that is not ours in any way (forged, altered, cut short, or of a send whose links are
unknown) gets a plain 400 page that names nothing and nobody, and nothing is recorded.
Subscriber 0 (a test address) is redirected and not recorded.

``GET /o/READER`` (or an open token of earlier mail): a 1x1 transparent GIF
(``track_opens``), recorded as an open.
"""

from __future__ import annotations

import base64
import logging
import queue
import re
import threading
import time
from collections import Counter
from urllib.parse import quote

import sqlalchemy as sa
from sqlalchemy.engine import Engine
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Route

from newsletter.db.tables import opens, send_links
from newsletter.db.transactions import transaction
from newsletter.delivery.tracking import ClickSigner
from newsletter.feedback import click_journal, clicks
from newsletter.feedback.click_journal import Journal, Segment

from .public import PublicState, public_page

log = logging.getLogger("newsletter.web")
PIXEL = base64.b64decode("R0lGODlhAQABAIAAAAAAAP///yH5BAEAAAAALAAAAAABAAEAAAIBRAA7")
BATCH = 2000  # clicks written per statement at most
# seconds the writer waits after a first click for more (each is in the journal): a
# batch a twentieth of a second long, not a statement per click, and the writer thread
# away from the event loop's GIL in between
LINGER = 0.05
Item = tuple[str, dict, Segment | None]  # kind ("click", "open"), row, its journal file
_NO_STORE = {"Cache-Control": "no-store, private", "Referrer-Policy": "no-referrer"}
_REDIRECT = [(name.lower().encode(), value.encode()) for name, value in _NO_STORE.items()
             ] + [(b"content-length", b"0")]
_UNSAFE = re.compile(r"[^\x21-\x7e]+")


class Writer:
    """Clicks and opens queued by the endpoints, written by one thread in batches; each
    journaled first (``feedback.click_journal``), so that a crash loses none."""

    def __init__(self, engine: Engine, journal: Journal | None = None) -> None:
        self.engine = engine
        self.journal = journal
        self._left = False  # the start-up could not store what dead servers left
        self._queue: queue.SimpleQueue[Item | None] = queue.SimpleQueue()
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()
        self._idle = threading.Event()
        self._idle.set()

    def start(self) -> int:
        """At start-up: store what servers that died left in the journal (rows stored)."""
        if self.journal is None:
            return 0
        try:
            stored = click_journal.replay(self.engine, self.journal.folder)
        except (sa.exc.SQLAlchemyError, OSError) as exc:  # tried again after a write
            log.warning("could not store the clicks left in %s: %s", self.journal.folder,
                        str(exc).splitlines()[0])
            self._left = True
            return 0
        self._left = False
        return stored

    def put(self, kind: str, row: dict) -> None:
        segment = self.journal.append(kind, row) if self.journal is not None else None
        self._idle.clear()
        self._queue.put((kind, row, segment))
        if self._thread is None:
            with self._lock:
                if self._thread is None:
                    self._thread = threading.Thread(target=self._run, daemon=True,
                                                    name="click-writer")
                    self._thread.start()

    def _drain(self, first: Item) -> tuple[dict[str, list[dict]], Counter, bool]:
        got: dict[str, list[dict]] = {"click": [], "open": []}
        segments: Counter = Counter()
        item: Item | None = first
        stop = False
        count = 0
        while item is not None:
            got[item[0]].append(item[1])
            if item[2] is not None:
                segments[item[2]] += 1
            count += 1
            if count >= BATCH:
                break
            try:
                item = self._queue.get_nowait()
            except queue.Empty:
                break
            stop = item is None
        return got, segments, stop

    def _write(self, got: dict[str, list[dict]], segments: Counter) -> None:
        try:
            clicks.record_many(self.engine, got["click"])
            if got["open"]:
                with self.engine.begin() as conn:
                    conn.execute(opens.insert(), got["open"])
        except Exception:  # the database went away: logged, kept in the journal; the
            # server keeps redirecting
            log.exception("could not record %d click(s)", len(got["click"]) + len(got["open"]))
            if self.journal is not None:
                self.journal.kept(segments.items())
            return
        if self.journal is not None:
            self.journal.written(segments.items())
            if self._left:  # the database is back: what dead servers left, now
                self.start()

    def _run(self) -> None:
        while True:
            item = self._queue.get()
            if item is None:
                break
            time.sleep(LINGER)
            got, segments, stop = self._drain(item)
            self._write(got, segments)
            if self._queue.empty():
                self._idle.set()
            if stop:
                break
        self._idle.set()

    def flush(self, timeout: float = 30.0) -> bool:
        """Wait until every queued click is written (tests, benchmarks, shutdown)."""
        return self._idle.wait(timeout)

    def close(self) -> None:
        if self._thread is not None:
            self._queue.put(None)
            self._thread.join(timeout=30)
            self._thread = None
        if self.journal is not None:
            self.journal.close()


RawHeaders = list[tuple[bytes, bytes]]


def location(url: str) -> bytes:
    """A link's URL as a ``Location`` value: anything but printable ASCII (spaces,
    accented letters, control characters) percent-encoded as UTF-8, as browsers do."""
    return _UNSAFE.sub(lambda m: quote(m.group(), safe=""), url).encode("ascii")


class Redirect(Response):
    """A 302 with headers made once per link (``Links.redirect``), shared by its
    answers (the security headers are added to a copy)."""

    def __init__(self, raw_headers: RawHeaders) -> None:  # no super(): nothing to build
        self.status_code = 302
        self.body = b""
        self.background = None
        self.raw_headers = raw_headers


class Links:
    """Each send's original URLs by link index, read once per send and kept, with the
    headers of their redirects."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self._known: dict[int, dict[int, RawHeaders]] = {}

    def redirect(self, send_id: int, idx: int) -> RawHeaders | None:
        """The raw headers of link ``idx``'s 302; None for a link not known."""
        headers = self._known.get(send_id)
        if headers is None:
            with transaction(self.engine, read=True) as conn:  # never waits for a writer
                rows = conn.execute(sa.select(send_links.c.idx, send_links.c.url)
                                    .where(send_links.c.send_id == send_id)).all()
            headers = {row.idx: [(b"location", location(row.url)), *_REDIRECT]
                       for row in rows}
            if headers:  # a send not known yet may be created in a moment: asked again then
                self._known[send_id] = headers
        return headers.get(idx)


def routes(state: PublicState) -> tuple[list[BaseRoute], Writer]:
    settings = state.settings
    signer, pixel_signer = ClickSigner(settings), ClickSigner(settings, opens=True)
    writer = Writer(state.engine, Journal.open(settings.project_dir))
    links = Links(state.engine)
    state.click_writer = writer  # type: ignore[attr-defined]

    def invalid() -> Response:
        return public_page(settings, "link-invalid.html", 400)

    async def click(request: Request) -> Response:
        found = signer.verify(request.path_params["token"])
        if found is None:
            return invalid()
        send_id, subscriber_id, idx = found
        headers = links.redirect(send_id, idx)
        if headers is None:
            return invalid()
        if subscriber_id:
            writer.put("click", {"send_id": send_id, "subscriber_id": subscriber_id,
                                 "link_idx": idx, "method": request.method,
                                 "clicked_at": clicks.now()})
        return Redirect(headers)

    async def pixel(request: Request) -> Response:
        found = pixel_signer.verify(request.path_params["token"])
        if found is None:
            return invalid()
        send_id, subscriber_id, _ = found
        if subscriber_id and request.method == "GET":
            writer.put("open", {"send_id": send_id, "subscriber_id": subscriber_id,
                                "opened_at": clicks.now()})
        return Response(PIXEL, media_type="image/gif", headers=_NO_STORE)

    return [
        Route("/c/{token}", click, methods=["GET", "HEAD"]),
        Route("/o/{token}", pixel, methods=["GET", "HEAD"]),
    ], writer


