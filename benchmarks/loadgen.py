"""What the web benchmarks share: a `newsletter serve` process, a scratch PostgreSQL
database, percentiles, and a lean HTTP/1.1 load generator.

The load generator is one asyncio loop on raw streams (no HTTP library: httpx's pool
costs about ten times the server's CPU per request, and the client shares the cores with
the server and the database). Each connection is keep-alive and sends one request at a
time; a response is read as its head (up to the blank line) and ``Content-Length``
bytes of body.

- ``closed_loop``: every connection sends its next request as soon as the previous one
  is answered, until the requests run out. It measures throughput (saturation). Its
  latencies are not what a reader sees: at saturation ``clients`` requests are always
  waiting, so the mean latency is ``clients / throughput`` (Little's law) whatever the
  server does.
- ``open_loop``: the requests are spread over ``connections`` at a fixed offered
  ``rate``: request i is due at ``i / rate`` seconds, on connection ``i % connections``.
  Each latency is counted from the request's *scheduled* start, so a request held back
  because its connection was still busy counts its wait too (no coordinated omission).
  Below saturation this is the latency a reader sees at that load.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import sqlalchemy as sa

REPO = Path(__file__).resolve().parent.parent
PG_ADMIN = os.environ.get("BENCH_PG_ADMIN",
                          "postgresql+psycopg://postgres@127.0.0.1:5432/postgres")
TIMEOUT = 30.0  # seconds for one response
_LENGTH = re.compile(rb"\r\ncontent-length:[ \t]*(\d+)", re.IGNORECASE)


def percentile(values: Sequence[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(q * (len(ordered) - 1))))]


@contextlib.contextmanager
def scratch_database(prefix: str) -> Iterator[str]:
    """A fresh PostgreSQL database (its URL), dropped afterwards whatever happens."""
    admin = sa.create_engine(PG_ADMIN, isolation_level="AUTOCOMMIT")
    name = f"{prefix}_{uuid.uuid4().hex[:8]}"
    with admin.connect() as conn:
        conn.execute(sa.text(f'CREATE DATABASE "{name}"'))
    try:
        yield admin.url.set(database=name).render_as_string(hide_password=False)
    finally:
        with admin.connect() as conn:
            conn.execute(sa.text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


class Server:
    """A web server process of this tree's code (``command`` prints its URL,
    ``http://127.0.0.1:PORT``, on its first line and answers ``/healthz``), until
    ``stop``; ``Server.serve`` is `newsletter serve --port 0` of a project."""

    def __init__(self, command: Sequence[str], tree: Path = REPO) -> None:
        self.process = subprocess.Popen(
            [sys.executable, *command], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
            text=True, env={**os.environ, "PYTHONUNBUFFERED": "1", "PYTHONPATH": str(tree)})
        assert self.process.stdout is not None
        line = self.process.stdout.readline()
        match = re.search(r"http://127\.0\.0\.1:(\d+)", line)
        if not match:
            self.process.kill()
            raise SystemExit(f"server did not start: {line}{self.process.stderr.read()}")
        self.port = int(match.group(1))
        self.url = f"http://127.0.0.1:{self.port}"
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            try:
                if httpx.get(f"{self.url}/healthz", timeout=2).status_code == 200:
                    return
            except httpx.HTTPError:
                time.sleep(0.1)
        raise SystemExit("server did not answer /healthz")

    @classmethod
    def serve(cls, project: Path, workers: int = 1, tree: Path = REPO) -> Server:
        """`newsletter serve` of ``project``, the code of ``tree`` (default: this one)."""
        return cls(["-m", "newsletter", "--project", str(project), "serve", "--port", "0",
                    "--workers", str(workers)], tree)

    @property
    def cpu(self) -> float:
        """CPU seconds used so far by the server (and its worker processes)."""
        return cpu_seconds(self.process.pid)

    def stop(self) -> None:
        self.process.terminate()
        try:
            self.process.wait(15)
        except subprocess.TimeoutExpired:
            self.process.kill()


def get(path: str, host: str = "127.0.0.1") -> bytes:
    """The bytes of a minimal keep-alive ``GET path``."""
    return f"GET {path} HTTP/1.1\r\nHost: {host}\r\n\r\n".encode()


@dataclass
class Result:
    requests: int = 0
    seconds: float = 0.0
    latencies: list[float] = field(default_factory=list)  # seconds
    statuses: dict[int, int] = field(default_factory=dict)

    @property
    def rate(self) -> float:
        """Answers per second."""
        return len(self.latencies) / self.seconds if self.seconds else 0.0

    def ms(self, q: float) -> float:
        return percentile(self.latencies, q) * 1000 if self.latencies else float("nan")

    @property
    def answered(self) -> int:
        return len(self.latencies)


async def _exchange(reader: asyncio.StreamReader, writer: asyncio.StreamWriter,
                    request: bytes) -> int:
    """Send one request, read its whole response; its status code."""
    writer.write(request)
    head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), TIMEOUT)
    found = _LENGTH.search(head)
    if found and int(found.group(1)):
        await asyncio.wait_for(reader.readexactly(int(found.group(1))), TIMEOUT)
    return int(head[9:12])


async def _closed(port: int, pending: list[bytes], result: Result) -> None:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    clock, latencies, statuses = time.perf_counter, result.latencies, result.statuses
    try:
        while pending:
            request = pending.pop()
            started = clock()
            code = await _exchange(reader, writer, request)
            latencies.append(clock() - started)
            statuses[code] = statuses.get(code, 0) + 1
    finally:
        writer.close()


async def _closed_loop(port: int, requests: Sequence[bytes], clients: int) -> Result:
    result = Result(len(requests))
    pending = list(reversed(requests))
    started = time.perf_counter()
    await asyncio.gather(*(_closed(port, pending, result) for _ in range(clients)))
    result.seconds = time.perf_counter() - started
    return result


def closed_loop(port: int, requests: Sequence[bytes], clients: int) -> Result:
    """``requests`` sent by ``clients`` connections, each as fast as it is answered."""
    return asyncio.run(_closed_loop(port, requests, clients))


async def _open(reader: asyncio.StreamReader, writer: asyncio.StreamWriter,
                mine: Sequence[tuple[float, bytes]], result: Result) -> None:
    clock, latencies, statuses = time.perf_counter, result.latencies, result.statuses
    try:
        for due, request in mine:
            wait = due - clock()
            if wait > 0:
                await asyncio.sleep(wait)
            code = await _exchange(reader, writer, request)
            latencies.append(clock() - due)  # from the scheduled start, not the send
            statuses[code] = statuses.get(code, 0) + 1
    finally:
        writer.close()


async def _open_loop(port: int, requests: Sequence[bytes], connections: int,
                     rate: float) -> Result:
    result = Result(len(requests))
    opened = await asyncio.gather(*(asyncio.open_connection("127.0.0.1", port)
                                    for _ in range(connections)))
    start = time.perf_counter() + 0.1  # connected first: the schedule is not the handshakes'
    plan = [(start + i / rate, request) for i, request in enumerate(requests)]
    await asyncio.gather(*(_open(reader, writer, plan[c::connections], result)
                           for c, (reader, writer) in enumerate(opened)))
    result.seconds = time.perf_counter() - start
    return result


def open_loop(port: int, requests: Sequence[bytes], connections: int, rate: float) -> Result:
    """``requests`` offered at ``rate`` a second in all over ``connections`` connections;
    latency from each request's scheduled start."""
    return asyncio.run(_open_loop(port, requests, connections, rate))


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process and its children that are alive (Linux
    ``/proc``; uvicorn's worker processes are children of ``serve``); 0 elsewhere."""
    tick = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100
    total = 0
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rpartition(")")[2].split()
        except OSError:
            continue
        if stat.parent.name == str(pid) or fields[1] == str(pid):  # itself, or a child
            total += int(fields[11]) + int(fields[12])
    return total / tick
