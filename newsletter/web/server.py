"""Running the web app under uvicorn: a loopback socket, Ctrl+C, a server in a thread.

The socket is bound here (not by uvicorn) so that a busy port is a one-line error,
``--port 0`` can pick a free port, and the socket is created with ``IPPROTO_TCP``:
asyncio only sets ``TCP_NODELAY`` on such sockets, and without it every small
response waits ~40 ms for the client's delayed ACK (Nagle).
"""

from __future__ import annotations

import errno
import socket
import threading
import time

import uvicorn
from starlette.applications import Starlette

from newsletter.errors import UsageError

from . import limits, stopping

BACKLOG = 1024  # connections the kernel queues before we accept them


def listening_socket(host: str, port: int) -> socket.socket:
    """A TCP socket bound to host:port and listening, or a UsageError saying why not."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
    except OSError as exc:
        sock.close()
        reason = (
            "is in use"
            if exc.errno == errno.EADDRINUSE
            else f"cannot be opened ({exc.strerror or exc})"
        )
        raise UsageError(
            f"{host}:{port} {reason}: stop the other server or pick another port with --port"
        ) from None
    sock.listen(BACKLOG)
    return sock


class _Server(uvicorn.Server):
    def __init__(self, app: Starlette, config: uvicorn.Config) -> None:
        super().__init__(config)
        self.app = app

    def handle_exit(self, sig: int, frame: object) -> None:
        stopping(self.app)  # answer the pages' open long polls, so shutdown is immediate
        super().handle_exit(sig, frame)


def server_config(app: Starlette | str, **options: object) -> uvicorn.Config:
    """uvicorn's settings for every server of ours: quiet, and within the connection
    limits of ``newsletter.web.limits`` (its event loop, protocol and timeouts)."""
    return uvicorn.Config(
        app, log_level="warning", access_log=False, lifespan="on", timeout_graceful_shutdown=1,
        loop=limits.LOOP, http=limits.PROTOCOL, timeout_keep_alive=limits.KEEP_ALIVE,
        h11_max_incomplete_event_size=limits.MAX_HEAD_BYTES, backlog=BACKLOG,
        **options,  # type: ignore[arg-type]
    )


def serve(app: Starlette, sock: socket.socket) -> None:
    """Serve until Ctrl+C (or SIGTERM); returns after a clean shutdown."""
    try:
        _Server(app, server_config(app)).run(sockets=[sock])
    except KeyboardInterrupt:  # uvicorn re-raises Ctrl+C after shutting down cleanly
        pass
    finally:
        sock.close()


class BackgroundServer:
    """The app served in a thread on a free loopback port (tests, benchmarks)."""

    def __init__(self, app: Starlette, host: str = "127.0.0.1") -> None:
        self.app = app
        self.sock = listening_socket(host, 0)
        self.url = f"http://{host}:{self.sock.getsockname()[1]}"
        self.server = _Server(app, server_config(app))
        self.thread = threading.Thread(
            target=self.server.run, kwargs={"sockets": [self.sock]}, daemon=True
        )

    def start(self, timeout: float = 10.0) -> BackgroundServer:
        self.thread.start()
        deadline = time.monotonic() + timeout
        while not self.server.started:
            if time.monotonic() > deadline or not self.thread.is_alive():
                raise RuntimeError("the web server did not start")
            time.sleep(0.01)
        return self

    def stop(self) -> None:
        stopping(self.app)
        self.server.should_exit = True
        self.thread.join(10)
        self.sock.close()
