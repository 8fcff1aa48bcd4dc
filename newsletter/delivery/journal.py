"""The progress journal: what a running worker handed to the backend, message by message.

A ledger batch is marked ``sending`` before the backend is called and recorded after it
answers. When the process dies in between (``kill -9``, a crash, the OOM killer), the
ledger alone cannot tell who in the batch got the message. So each ledger worker keeps an
append-only journal, ``.newsletter/journal/WORKER.journal`` in the project, one short line
per step::

    newsletter-journal 1 boot=BOOT-ID worker=WORKER-ID     the header
    B 17          batch 17 begins (the ledger has claimed it)
    D 1234        recipient seq 1234: its message is being handed over (written before
                  the SMTP end of data, the API request, the outbox file's rename)
    A 1234        ... accepted (SMTP 250, API 2xx, the file in place)
    R 1234        ... answered, not accepted (refused, to retry): nothing was delivered
    D *           the same for every recipient of the batch (one API request)
    D 5,6,7       the same for a group of them (one request of a batch split in several)

Each step is one ``os.write``, without fsync: a system call of a microsecond or two,
which the kernel keeps whatever happens to the process, but which a power cut may lose.
Once the batch's answer is in the ledger, the journal is truncated back to its header;
a worker that stops cleanly removes it.

``read`` gives ``ledger.reconcile`` a dead worker's marks per batch: A -> sent, a D with
no answer after it -> uncertain (at most one per connection or request in flight), no
mark or R -> never handed over, pending again. A journal is believed only when

- it is on this machine (the worker's host), for that worker, with an intact header;
- it was written since this machine last booted (the header's boot id is this boot's):
  a power cut, which loses what the kernel had not yet written to disk, means a reboot;
- no process holds it: the writer keeps an exclusive ``flock`` on it for its whole life,
  which the kernel releases when the process dies, however it dies.

Otherwise ``read`` returns None and the whole batch is uncertain, as without a journal.
Needs Linux (``flock`` and a boot id); elsewhere no journal is kept.
"""

from __future__ import annotations

import contextlib
import os
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from ..private import append_private, private_folder

try:
    import fcntl
except ImportError:  # pragma: no cover - Windows: no journal
    fcntl = None  # type: ignore[assignment]

MAGIC = b"newsletter-journal 1"
SUFFIX = ".journal"
FOLDER = Path(".newsletter") / "journal"  # in the project folder
HANDED, ACCEPTED, REFUSED = "D", "A", "R"
_BOOT_ID = Path("/proc/sys/kernel/random/boot_id")
_WORKER = re.compile(r"[0-9a-f]{32}")
_boot: list[str | None] = []


def folder_for(project_dir: Path) -> Path:
    """Where the journals of a project's workers are kept."""
    return (project_dir / FOLDER).resolve()


def boot_id() -> str | None:
    """This boot of this machine (Linux); None where there is no such thing."""
    if not _boot:
        try:
            _boot.append(_BOOT_ID.read_text("ascii").strip() or None)
        except OSError:
            _boot.append(None)
    return _boot[0]


def _path(folder: Path, worker_id: str) -> Path | None:
    """The journal of ``worker_id``; None for a name no worker of ours has."""
    return folder / f"{worker_id}{SUFFIX}" if _WORKER.fullmatch(worker_id) else None


def _header(worker_id: str, boot: str) -> bytes:
    return MAGIC + f" boot={boot} worker={worker_id}\n".encode("ascii")


# -- writing ------------------------------------------------------------------------------


class Journal:
    """One worker's journal, open for the worker's life (``create`` ... ``close``)."""

    def __init__(self, path: Path, fd: int, header_size: int) -> None:
        self.path = path
        self._fd = fd
        self._header_size = header_size
        self._open_batch = False

    @classmethod
    def create(cls, folder: Path, worker_id: str) -> Journal | None:
        """A new journal for ``worker_id``, locked; None when none can be kept here."""
        boot, path = boot_id(), _path(folder, worker_id)
        if fcntl is None or boot is None or path is None:
            return None
        try:
            private_folder(folder.parent)  # .newsletter/
            private_folder(folder)
            fd = append_private(path)
        except OSError:
            return None  # a read-only project: the send goes on without a journal
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            header = _header(worker_id, boot)
            if os.write(fd, header) != len(header):
                raise OSError("short write")
        except OSError:
            os.close(fd)
            with contextlib.suppress(OSError):
                path.unlink()
            return None
        return cls(path, fd, len(header))

    @property
    def active(self) -> bool:
        return self._fd >= 0

    def begin(self, batch_id: int) -> None:
        """Batch ``batch_id`` (claimed in the ledger) is about to go to the backend."""
        self._open_batch = True
        self._write(b"B %d\n" % batch_id)

    def log(self, rows: Sequence[Sequence], seq_index: int, *, whole: bool = True) -> BatchLog:
        """The log the backend writes to, for messages made from ``rows`` (in order; a
        row's seq at ``seq_index``); ``whole``: they are all of the batch's recipients."""
        return BatchLog(self, rows, seq_index, whole)

    def recorded(self) -> None:
        """The batch's answer is in the ledger: its lines are no longer needed."""
        self._open_batch = False
        if self._fd >= 0:
            try:
                os.ftruncate(self._fd, self._header_size)
            except OSError:
                self._abandon()

    def close(self) -> None:
        """Stop writing: the file is removed, unless a batch is still unrecorded (the
        ledger could not record it): then ``reconcile`` reads it, the lock released."""
        if self._fd < 0:
            return
        if not self._open_batch:
            with contextlib.suppress(OSError):
                self.path.unlink()
        os.close(self._fd)
        self._fd = -1

    def _write(self, data: bytes) -> None:
        if self._fd < 0:
            return
        try:
            if os.write(self._fd, data) == len(data):
                return
        except OSError:
            pass
        self._abandon()

    def _abandon(self) -> None:
        """A line could not be written (a full disk): make the journal unusable, so that
        nobody believes a journal with a line missing, and go on without one."""
        fd, self._fd = self._fd, -1
        gone = False
        with contextlib.suppress(OSError):
            os.ftruncate(fd, 0)  # no header: never believed
            gone = True
        with contextlib.suppress(OSError):
            self.path.unlink()  # no journal: never believed
            gone = True
        os.close(fd)
        if not gone:  # the backend's caller then records the batch as uncertain
            raise OSError(f"{self.path}: cannot write the progress journal, nor remove it")


class BatchLog:
    """What the backend tells the journal about one batch; ``index`` is the message's
    position in the batch (in ``send_batch``'s list, or the claimed rows)."""

    __slots__ = ("_journal", "_rows", "_seq", "_whole")

    def __init__(self, journal: Journal, rows: Sequence[Sequence], seq_index: int,
                 whole: bool = True) -> None:
        self._journal, self._rows, self._seq, self._whole = journal, rows, seq_index, whole

    def handing(self, index: int) -> None:
        """Message ``index`` is about to leave (its end of data, its file)."""
        self._journal._write(b"D %d\n" % self._rows[index][self._seq])

    def answered(self, index: int, accepted: bool) -> None:
        """Message ``index`` was answered: accepted, or refused (nothing delivered)."""
        mark = b"A %d\n" if accepted else b"R %d\n"
        self._journal._write(mark % self._rows[index][self._seq])

    def handing_group(self, indices: Sequence[int] | None = None) -> None:
        """Messages ``indices`` (None: the whole batch) leave in one request."""
        self._journal._write(b"D " + self._group(indices) + b"\n")

    def answered_group(self, indices: Sequence[int] | None, accepted: bool) -> None:
        self._journal._write((b"A " if accepted else b"R ") + self._group(indices) + b"\n")

    def _group(self, indices: Sequence[int] | None) -> bytes:
        if self._whole and (indices is None or len(indices) == len(self._rows)):
            return b"*"
        seq, rows = self._seq, self._rows
        chosen = range(len(rows)) if indices is None else indices
        return b",".join(b"%d" % rows[i][seq] for i in chosen)


# -- reading back ---------------------------------------------------------------------------


@dataclass
class Marks:
    """One batch's marks: ``each`` per seq, ``rest`` for every recipient not in ``each``
    (None: never handed over)."""

    rest: str | None = None
    each: dict[int, str] = field(default_factory=dict)

    def mark(self, kind: str, target: bytes) -> None:
        if target == b"*":
            self.rest = kind
            self.each.clear()
        else:
            for seq in target.split(b","):
                self.each[int(seq)] = kind


def read(folder: Path, worker_id: str) -> dict[int, Marks] | None:
    """A dead worker's marks per batch (a batch without any: nothing handed over), or
    None when its journal is missing, unreadable, from another boot or still held."""
    path, boot = _path(folder, worker_id), boot_id()
    if path is None or boot is None or fcntl is None:
        return None
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return None
    try:
        fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)  # fails while the writer lives
        with os.fdopen(os.dup(fd), "rb") as handle:
            data = handle.read()
    except OSError:
        return None
    finally:
        os.close(fd)
    return _parse(data, _header(worker_id, boot))


def _parse(data: bytes, header: bytes) -> dict[int, Marks] | None:
    if not data.startswith(header):
        return None
    batches: dict[int, Marks] = {}
    current: Marks | None = None
    lines = data[len(header):].split(b"\n")
    if lines.pop() != b"":  # every line ends with a newline
        return None
    try:
        for line in lines:
            kind, _, target = line.partition(b" ")
            if kind == b"B":
                current = batches.setdefault(int(target), Marks())
            elif kind in (b"D", b"A", b"R") and current is not None and target:
                current.mark(kind.decode(), target)
            else:
                return None
    except ValueError:
        return None
    return batches


def remove(folder: Path, worker_id: str) -> None:
    """Delete a dead worker's journal once its batches are settled (not while held)."""
    path = _path(folder, worker_id)
    if path is None or fcntl is None:
        return
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        path.unlink()
    except OSError:
        pass
    finally:
        os.close(fd)
