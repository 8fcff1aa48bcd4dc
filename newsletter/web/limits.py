"""Connection limits for the web servers (``newsletter serve`` and ``newsletter preview``).

uvicorn keeps a connection open for as long as the client likes until a first request
arrives, and asyncio's accept loop, out of file descriptors, logs a traceback for every
retry (hundreds of thousands a minute) while no new client, a load balancer's health
check included, gets in. Here:

- ``GuardedLoop``: the event loop uvicorn runs (``Config(loop=LOOP)``). Its
  ``create_server`` on a listening socket accepts connections itself (with the public
  ``connect_accepted_socket``), holding at most ``max_connections()`` at once: the
  process's open-file limit less ``FD_RESERVE`` for the database, logs and files. At the
  limit it closes the connections that have been idle longest (no request in progress)
  to make room; with none idle it leaves newcomers waiting in the kernel's queue for a
  moment. An accept that fails for want of descriptors closes idle connections, waits
  a moment and is logged at most once a second, without a traceback.
- ``GuardedH11Protocol``: the HTTP protocol (``Config(http=PROTOCOL)``). A connection
  must send a complete request head within ``HEADER_TIMEOUT`` seconds of connecting or
  of its previous response, or it is closed; uvicorn's own ``timeout_keep_alive``
  closes one that sends nothing after a response. Request heads are limited to
  ``MAX_HEAD_BYTES`` (h11 answers 400 past it).
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import logging
import socket
import time
from collections.abc import Callable
from typing import Any

import h11
from uvicorn.protocols.http.h11_impl import H11Protocol

log = logging.getLogger("newsletter.web")

LOOP = "newsletter.web.limits:GuardedLoop"
PROTOCOL = "newsletter.web.limits:GuardedH11Protocol"
HEADER_TIMEOUT = 10.0  # seconds for a request head to arrive
KEEP_ALIVE = 5  # seconds an idle connection stays open after a response
MAX_HEAD_BYTES = 16_384  # request line and headers
FD_RESERVE = 200  # descriptors kept for the database pool, SQLite's WAL files, logs, ...
MAX_CONNECTIONS = 10_000  # per process, whatever the open-file limit
ACCEPT_BATCH = 64  # connections accepted per event-loop turn
PAUSE = 0.05  # seconds accepting waits when every held connection is busy
_OUT_OF_RESOURCES = (errno.EMFILE, errno.ENFILE, errno.ENOBUFS, errno.ENOMEM)


def max_connections() -> int:
    """Connections one server process holds at once, from its open-file limit."""
    try:
        import resource
    except ImportError:  # not a POSIX system
        return MAX_CONNECTIONS
    soft, _ = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft == resource.RLIM_INFINITY:
        return MAX_CONNECTIONS
    return max(16, min(MAX_CONNECTIONS, soft - FD_RESERVE))


class Throttled:
    """A warning logged at most once per ``every`` seconds, with how many were held back."""

    def __init__(self, every: float = 1.0) -> None:
        self.every = every
        self.last = -every
        self.held = 0

    def warning(self, message: str, *args: object) -> None:
        now = time.monotonic()
        if now - self.last < self.every:
            self.held += 1
            return
        more = f" ({self.held} more like it since the last report)" if self.held else ""
        log.warning(message + more, *args)
        self.last, self.held = now, 0


class Guard:
    """The connections of one event loop: how many are open, which are idle since when."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.pending = 0  # accepted, protocol not yet connected
        self.connected: set[GuardedH11Protocol] = set()
        self.idle: dict[GuardedH11Protocol, None] = {}  # oldest first
        self.warn = Throttled()

    @property
    def open(self) -> int:
        return self.pending + len(self.connected)

    def full(self) -> bool:
        return self.open >= self.limit

    def set_idle(self, protocol: GuardedH11Protocol) -> None:
        self.idle.pop(protocol, None)
        self.idle[protocol] = None

    def set_busy(self, protocol: GuardedH11Protocol) -> None:
        self.idle.pop(protocol, None)

    def evict(self, count: int) -> int:
        """Close up to ``count`` of the longest-idle connections; how many were closed."""
        closed = 0
        for protocol in list(self.idle):
            if closed >= count:
                break
            self.idle.pop(protocol, None)
            if protocol.close_idle():
                closed += 1
        return closed


class Acceptor:
    """Accepts on a listening socket within the guard's limit (in place of asyncio's
    ``Server``: uvicorn only calls ``close`` and ``wait_closed`` on it)."""

    def __init__(self, loop: GuardedLoop, factory: Callable[[], asyncio.Protocol],
                 sock: socket.socket) -> None:
        self.loop, self.factory, self.sock = loop, factory, sock
        self.guard = loop.guard
        self.serving = False
        self.resume: asyncio.TimerHandle | None = None
        self.sockets = [sock]

    def start(self) -> Acceptor:
        self.sock.setblocking(False)
        self.serving = True
        self.loop.add_reader(self.sock.fileno(), self.accept)
        return self

    def pause(self, seconds: float) -> None:
        self.loop.remove_reader(self.sock.fileno())
        self.resume = self.loop.call_later(seconds, self.unpause)

    def unpause(self) -> None:
        self.resume = None
        if self.serving and self.sock.fileno() >= 0:
            self.loop.add_reader(self.sock.fileno(), self.accept)

    def accept(self) -> None:
        for _ in range(ACCEPT_BATCH):
            if self.guard.full():
                self.make_room()
                return
            try:
                conn, _ = self.sock.accept()
            except (BlockingIOError, InterruptedError, ConnectionAbortedError):
                return
            except OSError as exc:
                self.failed(exc)
                return
            self.guard.pending += 1
            self.loop.create_task(self.connect(conn))

    def make_room(self) -> None:
        self.guard.warn.warning(
            "web server: %d connections open (the limit): closing the longest idle",
            self.guard.open)
        if not self.guard.evict(ACCEPT_BATCH):
            self.pause(PAUSE)  # every connection is busy: newcomers wait in the queue

    def failed(self, exc: OSError) -> None:
        if exc.errno in _OUT_OF_RESOURCES:
            self.guard.warn.warning(
                "web server: cannot accept a connection (%s) with %d open: closing idle "
                "connections; raise the open-file limit (ulimit -n, systemd LimitNOFILE=)",
                exc.strerror or exc, self.guard.open)
            self.guard.evict(ACCEPT_BATCH)
        else:
            self.guard.warn.warning("web server: accept failed: %s", exc)
        self.pause(PAUSE * 2)

    async def connect(self, conn: socket.socket) -> None:
        try:
            await self.loop.connect_accepted_socket(self.factory, conn)
        except Exception:  # the client went away before the transport was ready
            conn.close()
        finally:
            self.guard.pending -= 1

    def close(self) -> None:
        if self.serving:
            self.serving = False
            if self.resume is not None:
                self.resume.cancel()
            if self.sock.fileno() >= 0:
                self.loop.remove_reader(self.sock.fileno())

    async def wait_closed(self) -> None:
        return None

    def is_serving(self) -> bool:
        return self.serving


class GuardedLoop(asyncio.SelectorEventLoop):
    """An asyncio loop whose servers on a given socket accept through an ``Acceptor``."""

    def __init__(self) -> None:
        super().__init__()
        self.guard = Guard(max_connections())

    async def create_server(self, protocol_factory: Any, host: Any = None, port: Any = None,
                            *, sock: socket.socket | None = None, ssl: Any = None,
                            **kwargs: Any) -> Any:
        if sock is None or ssl is not None:
            return await super().create_server(protocol_factory, host, port, sock=sock,
                                               ssl=ssl, **kwargs)
        return Acceptor(self, protocol_factory, sock).start()


class GuardedH11Protocol(H11Protocol):
    """uvicorn's h11 protocol, with a deadline for request heads and idle tracking."""

    head_timer: asyncio.TimerHandle | None = None

    @property
    def guard(self) -> Guard | None:
        return getattr(self.loop, "guard", None)

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        if self.guard is not None:
            self.guard.connected.add(self)
        self.waiting_for_head()

    def connection_lost(self, exc: Exception | None) -> None:
        self.stop_head_timer()
        guard = self.guard
        if guard is not None:
            guard.set_busy(self)
            guard.connected.discard(self)
        super().connection_lost(exc)

    def handle_events(self) -> None:
        before = self.cycle
        super().handle_events()
        if self.cycle is not before:  # a request head arrived: the app has it now
            self.stop_head_timer()
            if self.guard is not None:
                self.guard.set_busy(self)

    def on_response_complete(self) -> None:
        if not self.transport.is_closing():
            self.waiting_for_head()
        super().on_response_complete()  # may start a pipelined request: busy again

    def waiting_for_head(self) -> None:
        self.stop_head_timer()
        self.head_timer = self.loop.call_later(HEADER_TIMEOUT, self.close_idle)
        if self.guard is not None:
            self.guard.set_idle(self)

    def stop_head_timer(self) -> None:
        if self.head_timer is not None:
            self.head_timer.cancel()
            self.head_timer = None

    def close_idle(self) -> bool:
        """Close this connection unless a request is in progress; True if it was closed."""
        self.stop_head_timer()
        if self.transport.is_closing():
            return False
        if self.cycle is not None and not self.cycle.response_complete:
            return False
        with contextlib.suppress(h11.LocalProtocolError):
            self.conn.send(h11.ConnectionClosed())
        self.transport.close()
        return True
