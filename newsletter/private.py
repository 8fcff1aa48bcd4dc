"""Private files and folders: the one place that creates what holds a secret or personal data.

``newsletter.toml`` (the secret key), the SQLite database, the import's rejects file, an
export, the dry run's sample message, the outbox's messages and the send workers' progress
journals are readable by their owner only: files 0600, folders made for them 0700, whatever the umask. A file that already
exists is made 0600 when it is rewritten; a folder that already exists keeps its mode
(someone chose it). SQLite creates a database's ``-wal``, ``-shm`` and ``-journal`` files
with the database file's own mode, so creating the database file 0600 covers them.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import IO, Any

FILE_MODE = 0o600
FOLDER_MODE = 0o700


def private_folder(path: Path | str) -> Path:
    """Make ``path`` (and missing parents) if missing; the folder made for it is 0700."""
    path = Path(path)
    if path.is_dir():
        return path
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        path.mkdir(mode=FOLDER_MODE)
    except FileExistsError:
        if not path.is_dir():
            raise
        return path  # made a moment ago by someone else: their mode stands
    os.chmod(path, FOLDER_MODE)  # mkdir's mode passes through the umask
    return path


def open_private(path: Path | str, mode: str = "w", **kwargs: Any) -> IO[Any]:
    """``open(path, mode)`` for writing (``"w"``, ``"wb"``, ``"x"``, ``"xb"``), the file
    created, or truncated and made, 0600."""
    if mode.rstrip("bt") not in ("w", "x"):
        raise ValueError(f"open_private writes new files only, not mode {mode!r}")
    flags = os.O_WRONLY | os.O_CREAT | getattr(os, "O_CLOEXEC", 0)
    flags |= os.O_EXCL if mode.startswith("x") else os.O_TRUNC
    fd = os.open(path, flags, FILE_MODE)
    try:
        if hasattr(os, "fchmod"):
            os.fchmod(fd, FILE_MODE)  # an existing file keeps its mode; the umask may cut
        return os.fdopen(fd, mode.replace("x", "w"), **kwargs)
    except BaseException:
        os.close(fd)
        raise


def write_private(path: Path | str, data: str | bytes, *, exclusive: bool = False) -> None:
    """Write ``data`` (text as UTF-8) to a 0600 file; ``exclusive``: fail if it exists."""
    binary = isinstance(data, bytes)
    mode = ("x" if exclusive else "w") + ("b" if binary else "")
    with open_private(path, mode, **({} if binary else {"encoding": "utf-8"})) as handle:
        handle.write(data)


def create_private(path: Path | str) -> bool:
    """Create ``path`` empty and 0600 unless it exists (an SQLite database before SQLite
    opens it: an empty file is an empty database). True when it was created."""
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, FILE_MODE)
    except FileExistsError:
        return False
    try:
        if hasattr(os, "fchmod"):
            os.fchmod(fd, FILE_MODE)
    finally:
        os.close(fd)
    return True


def append_private(path: Path | str) -> int:
    """A new 0600 file (it must not exist) opened for appending; returns its descriptor."""
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_APPEND | getattr(os, "O_CLOEXEC", 0)
    fd = os.open(path, flags, FILE_MODE)
    try:
        if hasattr(os, "fchmod"):
            os.fchmod(fd, FILE_MODE)
    except BaseException:
        os.close(fd)
        raise
    return fd
