"""Measuring helpers shared by the benchmarks."""

from __future__ import annotations

import multiprocessing as mp
import os
import re
import resource
from pathlib import Path


def peak_rss_mb() -> float:
    """This process's peak RSS in MB, interpreter and imports included.

    On Linux ``ru_maxrss`` is no good for a child process: it inherits its parent's
    high-water mark (the kernel keeps it across fork and exec), so the mark of the
    process's own memory, VmHWM, is read instead.
    """
    try:
        match = re.search(r"VmHWM:\s+(\d+) kB", Path("/proc/self/status").read_text())
    except OSError:
        match = None
    if match is None:
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    return int(match.group(1)) / 1024


def process_cpu(pid: int) -> float:
    """CPU seconds (user + system) another process has used so far (Linux /proc); nan
    when it cannot be read."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    except (OSError, IndexError, ValueError):
        return float("nan")


class BackendCpu:
    """CPU seconds of the PostgreSQL server backends an engine's connections used.

    The server's own work, independent of how loaded the machine is: each connection's
    backend pid is noted when it is opened, and its user+system time read from
    ``/proc/PID/stat`` (world-readable on Linux) when it is closed and at ``seconds()``.
    Only for a server on this machine; 0 elsewhere (or on SQLite).
    """

    def __init__(self, engine) -> None:
        import sqlalchemy as sa

        self._open: dict[int, int] = {}  # id(dbapi connection) -> backend pid
        self._closed = 0.0
        self._tick = float(os.sysconf("SC_CLK_TCK"))
        if engine.dialect.name != "postgresql":
            return
        sa.event.listen(engine.pool, "connect", self._connected)
        sa.event.listen(engine.pool, "close", self._closing)
        sa.event.listen(engine.pool, "detach", self._closing)
        engine.pool.dispose()  # connections opened before this are not counted: reopen them

    def _connected(self, dbapi_connection, _record) -> None:
        self._open[id(dbapi_connection)] = dbapi_connection.info.backend_pid

    def _closing(self, dbapi_connection, _record) -> None:
        pid = self._open.pop(id(dbapi_connection), None)
        if pid is not None:
            self._closed += self._cpu(pid)

    def _cpu(self, pid: int) -> float:
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            return 0.0
        return (int(fields[11]) + int(fields[12])) / self._tick  # utime, stime

    def seconds(self) -> float:
        return self._closed + sum(self._cpu(pid) for pid in self._open.values())


def phase(target, *args) -> dict:
    """Run ``target(*args, conn)`` in a fresh spawned process and return what it sends on
    ``conn`` (its own peak memory and imports stay its own); a child that dies without
    answering ends the benchmark with its exit code."""
    ctx = mp.get_context("spawn")
    parent, child = ctx.Pipe()
    process = ctx.Process(target=target, args=(*args, child))
    process.start()
    child.close()
    try:
        result = parent.recv()
    except EOFError:
        process.join()
        raise SystemExit(f"{target.__name__} failed (exit code {process.exitcode})") from None
    process.join()
    return result


def send_template(settings, send_id: int = 1, list_id: int = 1):  # noqa: ANN001, ANN201
    """The message template a send from ``settings``' project makes of its sample issue
    (init's ``issues/2026-11-24.md``, what bench_send and bench_providers send, with
    ``tests.sendtools.make_project``'s settings): its tracked links, the pixel when
    asked, the preference link, as ``delivery.runner`` prepares them. The bare clients'
    pre-built requests are made from it, so that they are the requests the send posts,
    byte for byte but for the tokens and addresses."""
    from newsletter.delivery import sending
    from newsletter.delivery.personalize import prepare

    prepared = sending.preflight(settings, Path(settings.project_dir) / "issues" / "2026-11-24.md")
    tracked = prepared.tracked(settings, "daily")
    return prepare(tracked.rendered, settings, send_id=send_id, list_id=list_id,
                   list_name="daily")
