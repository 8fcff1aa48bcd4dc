"""The click journal: clicks answered but not yet in the database survive a crash.

The redirect answers before its click is written (``web.clicks.Writer`` writes them in
batches, after the answer). So that a ``kill -9``, a crash or the OOM killer does not
lose the clicks still queued, each one is first appended to a journal file, one
``os.write`` of one short line, without fsync (the kernel keeps it whatever happens to
the process; a power cut may lose it)::

    c SEND SUBSCRIBER LINK METHOD MICROSECONDS     a click (GET or HEAD), its time in
    o SEND SUBSCRIBER MICROSECONDS                 microseconds since 1970 UTC; an open

Each server process keeps its own files, ``.newsletter/clicks/*.clicks`` in the project
(0600), each under an exclusive ``flock`` for as long as the process has it open: the
kernel releases the lock when the process dies, however it dies. A file is emptied once
every click in it is in the database; one that has had ``ROTATE`` lines makes way for a
new one, and is removed once its clicks are written. A file whose clicks could not be
written (the database was down) is kept until the process ends.

``replay(db, folder)`` (each server's start-up) writes the clicks of the files nobody
holds into the database and removes them. It writes each click once, however often it
runs: a process may die after its batch was committed and before the file was emptied,
so a click already stored, the same send, subscriber, link, method and time to the
microsecond, is not stored again. Needs ``flock`` (POSIX); elsewhere no journal is kept.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import logging
import os
import secrets
import threading
from collections import Counter
from collections.abc import Iterable
from pathlib import Path

import sqlalchemy as sa

from ..db.tables import clicks, opens
from ..db.transactions import DB, transaction
from ..private import append_private, private_folder

try:
    import fcntl
except ImportError:  # pragma: no cover - Windows: no journal
    fcntl = None  # type: ignore[assignment]

log = logging.getLogger("newsletter.web")
FOLDER = Path(".newsletter") / "clicks"  # in the project folder
SUFFIX = ".clicks"
ROTATE = 20_000  # lines a file takes before the next click starts a new one
EPOCH = dt.datetime(1970, 1, 1, tzinfo=dt.UTC)
MICROSECOND = dt.timedelta(microseconds=1)
_CHUNK = 500  # (send, subscriber) pairs per look-up when replaying


def folder_for(project_dir: Path) -> Path:
    return (project_dir / FOLDER).resolve()


def _micros(at: dt.datetime) -> int:
    return (at - EPOCH) // MICROSECOND


def _utc(at: dt.datetime) -> dt.datetime:
    return at.replace(tzinfo=dt.UTC) if at.tzinfo is None else at.astimezone(dt.UTC)


def encode(kind: str, row: dict) -> bytes:
    """One journal line for a queued row (``kind`` "click" or "open")."""
    if kind == "click":
        return b"c %d %d %d %s %d\n" % (row["send_id"], row["subscriber_id"], row["link_idx"],
                                        row["method"].encode("ascii"),
                                        _micros(row["clicked_at"]))
    return b"o %d %d %d\n" % (row["send_id"], row["subscriber_id"], _micros(row["opened_at"]))


def decode(line: bytes) -> tuple[str, dict] | None:
    """The row of a journal line; None for a line cut short or not ours."""
    fields = line.split()
    try:
        if fields[0] == b"c" and len(fields) == 6 and fields[4] in (b"GET", b"HEAD"):
            return "click", {"send_id": int(fields[1]), "subscriber_id": int(fields[2]),
                             "link_idx": int(fields[3]), "method": fields[4].decode(),
                             "clicked_at": EPOCH + int(fields[5]) * MICROSECOND}
        if fields[0] == b"o" and len(fields) == 4:
            return "open", {"send_id": int(fields[1]), "subscriber_id": int(fields[2]),
                            "opened_at": EPOCH + int(fields[3]) * MICROSECOND}
    except (IndexError, ValueError, OverflowError):
        return None
    return None


class Segment:
    """One journal file, open and locked: its lines, and how many are not yet written."""

    __slots__ = ("fd", "lines", "path", "pending")

    def __init__(self, path: Path, fd: int) -> None:
        self.path, self.fd, self.lines, self.pending = path, fd, 0, 0

    def close(self, remove: bool) -> None:
        if remove:  # removed before the lock goes: nobody replays it
            with contextlib.suppress(OSError):
                self.path.unlink()
        with contextlib.suppress(OSError):
            os.close(self.fd)


class Journal:
    """One server process's journal files (thread-safe: the event loop appends, the
    writer thread says what was written)."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self._lock = threading.Lock()
        self._name = f"{os.getpid()}-{secrets.token_hex(4)}"
        self._count = 0
        self._older: list[Segment] = []  # rotated or kept, still holding unwritten lines
        self._current: Segment | None = None  # made at the first click
        self._broken = False  # a file could not be made or written: none kept any more

    @classmethod
    def open(cls, project_dir: Path) -> Journal | None:
        """The journal of this process in a project (its first file is made at the first
        click); None where none can be kept (no ``flock``)."""
        return None if fcntl is None else cls(folder_for(project_dir))

    def _segment(self) -> Segment:
        private_folder(self.folder.parent)
        private_folder(self.folder)
        self._count += 1
        path = self.folder / f"{self._name}-{self._count}{SUFFIX}"
        fd = append_private(path)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            os.close(fd)
            raise
        return Segment(path, fd)

    def append(self, kind: str, row: dict) -> Segment | None:
        """Journal one row before it is answered; the file it went to (None: not kept)."""
        line = encode(kind, row)
        with self._lock:
            if self._current is None and not self._broken:
                self._rotate()
            segment = self._current
            if segment is None:
                return None
            try:
                os.write(segment.fd, line)
            except OSError as exc:  # a full disk: go on without, say so once
                self._give_up(exc)
                return None
            segment.lines += 1
            segment.pending += 1
            return segment

    def written(self, done: Iterable[tuple[Segment, int]]) -> None:
        """These rows are in the database: empty, rotate or remove their files."""
        with self._lock:
            for segment, count in done:
                segment.pending -= count
            current = self._current
            if current is not None and current.pending == 0 and current.lines:
                try:
                    os.ftruncate(current.fd, 0)  # appends go on from the start
                    current.lines = 0
                except OSError:
                    self._rotate()
            elif current is not None and current.lines >= ROTATE:
                self._rotate()
            for segment in [s for s in self._older if s.pending == 0]:
                self._older.remove(segment)
                segment.close(remove=True)

    def kept(self, failed: Iterable[tuple[Segment, int]]) -> None:
        """These rows could not be written: their files stay for the next start-up."""
        with self._lock:
            for segment, _ in failed:
                segment.pending = -1  # never 0 again: not removed by this process
            if self._current is not None and self._current.pending < 0:
                self._rotate()

    def _rotate(self) -> None:
        if self._current is not None:
            self._older.append(self._current)
            self._current = None
        try:
            self._current = self._segment()
        except OSError as exc:  # a read-only project: clicks are still redirected
            self._give_up(exc)

    def _give_up(self, exc: OSError) -> None:
        log.warning("click journal in %s: %s; going on without it: a crash loses the "
                    "clicks not yet written", self.folder, exc)
        if self._current is not None:
            self._older.append(self._current)
        self._current, self._broken = None, True

    def close(self) -> None:
        """At shutdown, every row written: files removed (those kept stay, unlocked)."""
        with self._lock:
            for segment in [*self._older, *([self._current] if self._current else [])]:
                segment.close(remove=segment.pending == 0)
            self._older, self._current = [], None


def _claim(path: Path) -> int | None:
    """A descriptor of a journal file nobody holds, locked; None if held or gone."""
    try:
        fd = os.open(path, os.O_RDWR | getattr(os, "O_CLOEXEC", 0))
    except OSError:
        return None
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        if os.fstat(fd).st_ino != os.stat(path).st_ino:
            raise OSError("replaced")  # removed (and maybe made anew) since we opened it
    except OSError:
        os.close(fd)
        return None
    return fd


def _missing(conn: sa.Connection, table: sa.Table, rows: list[dict], at: str) -> list[dict]:
    """The rows not stored yet (the same values, the time to the microsecond)."""
    names = [c for c in rows[0] if c != at]
    key = lambda r: (*(r[c] for c in names), _utc(r[at]))  # noqa: E731
    pairs = sorted({(r["send_id"], r["subscriber_id"]) for r in rows})
    stored: Counter = Counter()
    columns = [table.c[c] for c in names] + [table.c[at]]
    for n in range(0, len(pairs), _CHUNK):
        found = conn.execute(sa.select(*columns).where(
            sa.tuple_(table.c.send_id, table.c.subscriber_id).in_(pairs[n:n + _CHUNK])))
        stored.update(key(dict(zip([*names, at], row, strict=True))) for row in found)
    out = []
    for row in rows:
        if stored[key(row)]:
            stored[key(row)] -= 1
        else:
            out.append(row)
    return out


def replay(db: DB, folder: Path) -> int:
    """Store the clicks and opens of the journal files no process holds, each once, and
    remove the files; returns the rows stored."""
    if fcntl is None or not folder.is_dir():
        return 0
    total = 0
    for path in sorted(folder.glob(f"*{SUFFIX}")):
        fd = _claim(path)
        if fd is None:
            continue
        try:
            with os.fdopen(os.dup(fd), "rb") as handle:
                data = handle.read()
            got: dict[str, list[dict]] = {"click": [], "open": []}
            for line in data.split(b"\n")[:-1]:  # the last is cut short, or empty
                found = decode(line)
                if found is not None:
                    got[found[0]].append(found[1])
            with transaction(db) as conn:
                for kind, table, at in (("click", clicks, "clicked_at"),
                                        ("open", opens, "opened_at")):
                    rows = _missing(conn, table, got[kind], at) if got[kind] else []
                    if rows:
                        conn.execute(table.insert(), rows)
                    total += len(rows)
            path.unlink()
        finally:
            os.close(fd)
    if total:
        log.warning("stored %d click(s) and open(s) left in the journal of a server that "
                    "stopped before writing them", total)
    return total
