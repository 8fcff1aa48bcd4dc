"""Connection limits of the web servers, over real loopback sockets: idle and half-sent
connections are closed in time, and a server whose open-file limit is used up by idle
connections still answers /healthz, with a small log."""

from __future__ import annotations

import contextlib
import re
import resource
import socket
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from newsletter.web import create_app, limits
from newsletter.web.server import BackgroundServer

from .sendtools import make_project, newsletter_cmd, seed

IDLE_CONNECTIONS = 1_100
FD_LIMIT = 1_024


def _closed_within(sock: socket.socket, seconds: float) -> bool:
    """True when the server closes ``sock`` within ``seconds`` (reads EOF or a reset)."""
    sock.settimeout(seconds)
    try:
        while sock.recv(4096):
            pass
    except TimeoutError:
        return False
    except ConnectionResetError:
        pass
    return True


@pytest.fixture
def quick_timeouts(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(limits, "HEADER_TIMEOUT", 0.5)
    monkeypatch.setattr(limits, "KEEP_ALIVE", 1)


def test_idle_and_half_sent_connections_are_closed(tmp_path: Path, quick_timeouts) -> None:
    settings = make_project(tmp_path / "p")
    server = BackgroundServer(create_app(settings, preview=False, public=True)).start()
    host, port = server.sock.getsockname()[:2]
    sockets: list[socket.socket] = []
    try:
        silent = socket.create_connection((host, port), timeout=5)
        half = socket.create_connection((host, port), timeout=5)
        half.sendall(b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n")  # never finished
        slow = socket.create_connection((host, port), timeout=5)
        sockets += [silent, half, slow]
        started = time.monotonic()
        for _ in range(4):  # a byte every 0.2 s: still no complete head after 0.5 s
            slow.sendall(b"G")
            time.sleep(0.2)
        for sock in (silent, half, slow):
            assert _closed_within(sock, 3), "an unfinished connection was left open"
        assert time.monotonic() - started < 4
        # a complete request is answered, and its keep-alive connection closed after it
        kept = socket.create_connection((host, port), timeout=5)
        sockets.append(kept)
        kept.sendall(b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
        assert kept.recv(4096).startswith(b"HTTP/1.1 200")
        assert _closed_within(kept, 3)
        # a head larger than the limit is refused, not buffered
        big = socket.create_connection((host, port), timeout=5)
        sockets.append(big)
        big.sendall(b"GET /healthz HTTP/1.1\r\nX-Big: " + b"a" * (limits.MAX_HEAD_BYTES + 10))
        assert big.recv(4096).startswith(b"HTTP/1.1 400")
    finally:
        for sock in sockets:
            sock.close()
        server.stop()


def _raise_own_limit(wanted: int) -> None:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft != resource.RLIM_INFINITY and soft < wanted:
        if hard != resource.RLIM_INFINITY and hard < wanted:
            pytest.skip(f"this test holds {wanted} sockets; the open-file limit is {hard}")
        resource.setrlimit(resource.RLIMIT_NOFILE, (wanted, hard))


def _limit_fds() -> None:  # runs in the server's process before it starts
    resource.setrlimit(resource.RLIMIT_NOFILE, (FD_LIMIT, FD_LIMIT))


# ``newsletter serve`` believing it may hold more connections than it has descriptors for,
# as when something else in the process (a big database pool, say) has taken them
NO_RESERVE = ("import sys; import newsletter.web.limits as limits; limits.FD_RESERVE = -500; "
              "from newsletter.cli import main; sys.argv[0] = 'newsletter'; main()")


@contextlib.contextmanager
def _serve(project: Path, log: Path, reserve: bool) -> Iterator[str]:
    command = newsletter_cmd(project, "serve", "--port", "0")
    if not reserve:
        command[1:3] = ["-c", NO_RESERVE]
    with log.open("wb") as errors:
        process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=errors, text=True,
                                   preexec_fn=_limit_fds)
        try:
            line = process.stdout.readline()
            match = re.search(r"http://127\.0\.0\.1:\d+", line)
            assert match, line + log.read_text()
            yield match.group(0)
        finally:
            process.kill()
            process.wait(10)
            process.stdout.close()


def _open_idle(port: int, count: int, deadline: float) -> list[socket.socket]:
    """``count`` connections to the server that never send a request (some half a head)."""
    held: list[socket.socket] = []
    for n in range(count):
        if time.monotonic() > deadline:
            break
        sock = socket.socket()
        sock.settimeout(2)
        held.append(sock)
        try:
            sock.connect(("127.0.0.1", port))
            if n % 10 == 0:
                sock.sendall(b"GET /healthz HTTP/1.1\r\n")
        except OSError:
            pass  # the server's queue is full: the connection waits or is refused
    return held


@pytest.mark.parametrize("reserve", [True, False], ids=["limit", "out-of-descriptors"])
def test_healthz_answers_while_idle_connections_use_up_the_file_limit(
        tmp_path: Path, reserve: bool) -> None:
    _raise_own_limit(IDLE_CONNECTIONS + 200)
    settings = make_project(tmp_path / "p")
    seed(settings, 2).dispose()
    log = tmp_path / "serve.log"
    held: list[socket.socket] = []
    with _serve(settings.project_dir, log, reserve) as url:
        assert httpx.get(f"{url}/healthz", timeout=5).text == "ok\n"
        port = int(url.rsplit(":", 1)[1])
        try:
            held = _open_idle(port, IDLE_CONNECTIONS, time.monotonic() + 15)
            assert len(held) == IDLE_CONNECTIONS
            time.sleep(0.5)  # the server has accepted what it can
            answers = []
            for _ in range(3):
                try:
                    answers.append(httpx.get(f"{url}/healthz", timeout=3).text)
                except httpx.TransportError as exc:
                    answers.append(type(exc).__name__)
            assert answers == ["ok\n"] * 3
        finally:
            for sock in held:
                sock.close()
    size = log.stat().st_size
    assert size < 4_000, f"{size} bytes of log: {log.read_text()[:2000]}"
    text = log.read_text()
    assert "Traceback" not in text
    expected = "(the limit)" if reserve else "cannot accept a connection (Too many open files)"
    logged = text.count(expected)
    assert logged > 0, text  # the refusal is said
    assert logged <= 8, text  # at most once a second, not once per refused connection
