"""CSV import and export of subscribers.

``import_csv(engine, path, list_name=...)`` streams the file (constant memory, a
million rows are fine) and commits it in chunks of a few thousand rows. Each chunk
is one transaction and idempotent, so an import killed half way leaves the database
consistent, and running it again completes it. Rules:

- UTF-8 with or without BOM, UTF-16, windows-1252 and other encodings (detected, or
  ``encoding=``); comma, semicolon or tab delimiters (detected from the header line);
  quoted fields; Windows line endings. Reading is ``newsletter.audience.csvread``'s: binary files
  are refused, and rows with a NUL, undecodable bytes, a line over 1 MB, a field over
  64 KB or a quote that is never closed are rejected (the rows after them are read).
- Header names in any case and spelling: ``Email``, ``E-mail Address``,
  ``email_address``; ``Name`` or ``First Name`` + ``Last Name``; ``status`` and
  ``list_status`` (as written by export); every other column becomes an attribute.
- Invalid addresses, empty rows and duplicates inside the file are skipped, counted
  and written with their line number and reason to ``<file>.rejects.csv`` beside it.
- An existing subscriber keeps its name and attributes. One that unsubscribed, bounced
  or complained (globally, or from the list) is never made active again, unless
  ``resubscribe=True``; the report counts those separately. A ``status`` or
  ``list_status`` column can only ever unsubscribe someone, never the reverse.

``export_csv`` writes a CSV that ``import_csv`` reads back to the same state
(addresses, names, attributes, statuses and the list's membership statuses).
"""

from __future__ import annotations

import csv
import datetime as dt
import json
import queue
import sys
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NamedTuple, TextIO, TypeVar

from sqlalchemy.engine import Engine

from ..db.tables import MEMBERSHIP_STATUSES, STATUSES
from ..db.transactions import utcnow
from ..errors import NewsletterError, UsageError
from ..private import open_private
from . import csvsafe
from .bulk import Bulk, NewSubscriber
from .csvcolumns import Columns, columns_of, delimiter_of, row_test
from .csvread import RowReader, open_csv, read_header
from .emails import InvalidEmail, normalize_email
from .importplan import ChunkPlan
from .lists import get_list
from .subscribers import attribute_keys, iter_subscribers

CHUNK_ROWS = 5000
# While the reader thread parses, the database side must get the GIL back quickly after
# each statement: a short switch interval bounds that wait (Python's default is 5 ms).
SWITCH_INTERVAL = 0.0005
INACTIVE = frozenset(STATUSES) - {"active"}


T = TypeVar("T")
ImportProgress = Callable[[int, int, int], None]  # bytes read, file size, rows read


@dataclass
class ImportReport:
    """What an import did. Every data row is counted in exactly one of the counters."""

    path: Path
    list_name: str | None
    rows: int = 0  # data rows read (the header excluded)
    added: int = 0  # new subscribers
    joined: int = 0  # existing active subscribers newly subscribed to the list
    unchanged: int = 0  # already there as the file says
    kept_unsubscribed: int = 0  # unsubscribed/bounced/complained: left so (not reactivated)
    resubscribed: int = 0  # made active again (only with resubscribe=True)
    status_applied: int = 0  # unsubscribed by the file's status or list_status column
    invalid: int = 0
    empty: int = 0
    duplicates: int = 0
    rejects_path: Path | None = None
    seconds: float = 0.0
    encoding: str = ""  # as read: "UTF-8", "windows-1252 (detected)"
    reasons: dict[str, int] = field(default_factory=dict)

    @property
    def rejected(self) -> int:
        return self.invalid + self.empty + self.duplicates

    @property
    def rate(self) -> float:
        return self.rows / self.seconds if self.seconds > 0 else 0.0

    def as_dict(self) -> dict[str, Any]:
        return {
            "file": str(self.path),
            "list": self.list_name,
            "rows": self.rows,
            "added": self.added,
            "joined": self.joined,
            "unchanged": self.unchanged,
            "kept_unsubscribed": self.kept_unsubscribed,
            "resubscribed": self.resubscribed,
            "status_applied": self.status_applied,
            "invalid": self.invalid,
            "empty": self.empty,
            "duplicates": self.duplicates,
            "rejects": str(self.rejects_path) if self.rejects_path else None,
            "encoding": self.encoding,
            "seconds": round(self.seconds, 3),
        }

    def lines(self) -> list[str]:
        target = f" into list {self.list_name!r}" if self.list_name else ""
        out = [
            f"imported {self.path}{target}: {self.rows:,} rows in {self.seconds:.1f} s "
            f"({self.rate:,.0f} rows/s)",
            f"  read as {self.encoding}",
            f"  added {self.added:,} new, subscribed {self.joined:,} existing to the list, "
            f"{self.unchanged:,} unchanged",
            f"  not reactivated (unsubscribed, bounced or complained): {self.kept_unsubscribed:,}",
        ]
        if self.resubscribed:
            out.append(f"  resubscribed (--resubscribe): {self.resubscribed:,}")
        if self.status_applied:
            out.append(f"  unsubscribed by the file's status columns: {self.status_applied:,}")
        out.append(
            f"  skipped: {self.invalid:,} invalid, {self.empty:,} empty, "
            f"{self.duplicates:,} duplicates"
            + (f" (see {self.rejects_path})" if self.rejects_path else "")
        )
        return out


class _Row(NamedTuple):
    line: int
    email: str
    key: str
    name: str | None
    attributes: str  # JSON
    status: str | None  # from the file: None, or an inactive status
    list_status: str | None  # from the file: None, "subscribed" or "unsubscribed"
    cells: list[str]  # as read, for the rejects file


def rejects_path_for(path: Path) -> Path:
    return path.with_name(f"{path.stem}.rejects.csv")


class _Rejects:
    """The rejects CSV, opened on the first rejected row."""

    def __init__(self, path: Path, header: list[str]) -> None:
        self.path = path
        self.header = header
        self._file: TextIO | None = None
        self._writer: Any = None
        # The reader thread and the database side both reject rows (and count them).
        self.lock = threading.Lock()

    def write(self, line: int, reason: str, cells: list[str]) -> None:
        with self.lock:
            try:
                if self._writer is None:  # 0600: the rows hold addresses
                    self._file = open_private(self.path, "w", encoding="utf-8", newline="")
                    self._writer = csvsafe.writer(self._file)
                    self._writer.writerow(["line", "reason", *self.header])
                self._writer.writerow([line, reason, *cells])
            except OSError as exc:
                raise UsageError(
                    f"{self.path}: cannot write the rejected rows: {exc.strerror or exc}; "
                    "free some space or check the folder's permissions, then import again "
                    "(the rows before this one were imported)"
                ) from None

    @property
    def used(self) -> bool:
        return self._writer is not None

    def close(self) -> None:
        if self._file is not None:
            self._file.close()
        elif self.path.exists():
            self.path.unlink()  # a stale one from an earlier run of the same file


# long: it starts the reader thread, opens the rejects file and runs the database loop,
# and must close all three on every path; each step is a call of its own.
def import_csv(
    engine: Engine,
    path: Path | str,
    *,
    list_name: str | None = None,
    resubscribe: bool = False,
    source: str | None = None,
    chunk_rows: int = CHUNK_ROWS,
    progress: ImportProgress | None = None,
    encoding: str | None = None,
) -> ImportReport:
    """Import subscribers from a CSV file (see the module docs for the rules);
    ``encoding`` (a Python codec name) overrides the detected encoding."""
    path = Path(path)
    started = time.perf_counter()
    report = ImportReport(path=path, list_name=list_name)
    source = source or f"import:{path.name}"[:200]
    reason = f"import of {path.name}"
    source_file = open_csv(path, encoding)
    report.encoding = source_file.label
    raw = source_file.raw
    size = path.stat().st_size
    try:
        first_line = read_header(path, source_file)
        delimiter = delimiter_of(first_line)
        header = csvsafe.restore_row(next(csv.reader([first_line], delimiter=delimiter)))
        columns = columns_of(path, header)
        rejects = _Rejects(rejects_path_for(path), header)

        def reject(line: int, why: str, cells: list[str]) -> None:
            report.rows += 1  # the reader thread's, like the rows of _chunks
            report.invalid += 1
            rejects.write(line, why, cells)

        reader = RowReader(
            source_file.text,
            delimiter,
            encoding=source_file.encoding,
            is_row=row_test(columns),
            reject=reject,
        )
        with engine.connect() as conn:
            list_id = get_list(conn, list_name).id if list_name else None
            conn.commit()
            bulk = Bulk.for_connection(conn)
            bulk.prepare()  # outside a chunk's transaction (SQLite pragmas need that)
            if conn.in_transaction():
                conn.commit()
            chunks = _in_background(
                lambda: _chunks(reader, columns, report, rejects, chunk_rows, raw.tell)
            )
            switch = sys.getswitchinterval()
            sys.setswitchinterval(min(switch, SWITCH_INTERVAL))
            try:
                for position, rows_read, chunk in chunks:
                    with conn.begin():
                        _flush(bulk, chunk, list_id, resubscribe, source, reason, report, rejects)
                    if progress is not None:
                        progress(position, size, rows_read)
            finally:
                chunks.close()  # stops the reader thread
                sys.setswitchinterval(switch)
                if not conn.closed and not conn.invalidated:
                    bulk.finish()
                    if conn.in_transaction():
                        conn.commit()
        rejects.close()
        report.rejects_path = rejects.path if rejects.used else None
    finally:
        source_file.close()
    report.seconds = time.perf_counter() - started
    return report


def _in_background(make: Callable[[], Iterator[T]], depth: int = 2) -> Iterator[T]:
    """Run the generator ``make()`` in a thread, ``depth`` items ahead of the consumer.

    Parsing (Python) then overlaps the database's work, which runs without the GIL:
    SQLite statements that each do a whole chunk, or the PostgreSQL server. Exceptions
    of the generator reach the consumer; closing this generator stops the thread.
    """
    items: queue.Queue[tuple[str, Any]] = queue.Queue(maxsize=depth)
    stop = threading.Event()

    def put(item: tuple[str, Any]) -> bool:
        while not stop.is_set():
            try:
                items.put(item, timeout=0.1)
                return True
            except queue.Full:
                continue
        return False

    def work() -> None:
        try:
            for value in make():
                if not put(("item", value)):
                    return
            put(("done", None))
        except BaseException as exc:  # handed to the consumer, raised there
            put(("error", exc))

    thread = threading.Thread(target=work, name="newsletter-import-reader", daemon=True)
    thread.start()
    try:
        while True:
            kind, value = items.get()
            if kind == "item":
                yield value
            elif kind == "done":
                return
            else:
                raise value
    finally:
        stop.set()
        thread.join()


# long: the per-row loop of every import: one function keeps its locals local (a call
# per row would cost a tenth of the import's speed), as bench_import.py shows.
def _chunks(
    reader: Iterator[tuple[int, list[str]]],
    columns: Columns,
    report: ImportReport,
    rejects: _Rejects,
    chunk_rows: int,
    position: Callable[[], int],
) -> Iterator[tuple[int, int, list[_Row]]]:
    """Parse rows into chunks of distinct addresses; rejects what is wrong on its own.
    Yields (bytes read, rows read, chunk).

    This loop runs once per row of a file of millions: it keeps to local names and does
    the common case (a plain address, no status columns) with the fewest operations.
    """
    width = len(columns.header)
    email_at, name_at, first_at, last_at = columns.email, columns.name, columns.first, columns.last
    status_at, list_status_at = columns.status, columns.list_status
    has_status = status_at is not None or list_status_at is not None
    # Attribute values are strings: the JSON object is built from pre-encoded names,
    # four times faster than json.dumps per row and byte-for-byte the same.
    encode = json.encoder.encode_basestring_ascii  # type: ignore[attr-defined]
    attribute_cols = [(i, encode(k) + ": ") for i, k in columns.attributes]
    write_reject = rejects.write
    restore_cells = csvsafe.restore_row
    make_row = _Row._make
    chunk: dict[str, _Row] = {}
    rows = 0
    for line, cells in reader:
        restore_cells(cells)  # undo the export's formula quoting
        rows += 1
        if len(cells) != width:
            if not "".join(cells).strip():
                report.empty += 1
                write_reject(line, "empty row", cells)
                continue
            if len(cells) > width and "".join(cells[width:]).strip():
                report.invalid += 1
                write_reject(
                    line,
                    f"{len(cells)} fields but the header has {width}: check the quotes",
                    cells,
                )
                continue
            cells = (cells + [""] * width)[:width]
        raw = cells[email_at]
        try:
            email, key = normalize_email(raw)
        except InvalidEmail as exc:
            if not "".join(cells).strip():
                report.empty += 1
                write_reject(line, "empty row", cells)
            else:
                report.invalid += 1
                write_reject(line, f"invalid email address {raw.strip()!r}: {exc}", cells)
            continue
        status = list_status = None
        if has_status:
            status, list_status, problem = _statuses(cells, status_at, list_status_at)
            if problem:
                report.invalid += 1
                write_reject(line, problem, cells)
                continue
        earlier = chunk.get(key)
        if earlier is not None:
            with rejects.lock:
                report.duplicates += 1
            write_reject(line, f"duplicate of line {earlier.line}", cells)
            continue
        if name_at is not None:
            name = cells[name_at].strip() or None
        else:
            first = cells[first_at].strip() if first_at is not None else ""
            last = cells[last_at].strip() if last_at is not None else ""
            name = f"{first} {last}".strip() or None
        if attribute_cols:
            attributes = ", ".join([k + encode(cells[i]) for i, k in attribute_cols if cells[i]])
            attributes = "{" + attributes + "}"
        else:
            attributes = "{}"
        chunk[key] = make_row((line, email, key, name, attributes, status, list_status, cells))
        if len(chunk) >= chunk_rows:
            report.rows += rows
            rows = 0
            yield position(), report.rows, list(chunk.values())
            chunk = {}
    report.rows += rows
    if chunk:
        yield position(), report.rows, list(chunk.values())


def _statuses(
    cells: list[str], status_at: int | None, list_status_at: int | None
) -> tuple[str | None, str | None, str | None]:
    """(inactive status or None, list status or None, problem or None) from a row."""
    status = cells[status_at].strip().lower() if status_at is not None else ""
    if status and status not in STATUSES:
        return None, None, f"unknown status {status!r}: use {', '.join(STATUSES)}"
    list_status = cells[list_status_at].strip().lower() if list_status_at is not None else ""
    if list_status and list_status not in MEMBERSHIP_STATUSES:
        return None, None, f"unknown list_status {list_status!r}: use subscribed or unsubscribed"
    return (status if status in INACTIVE else None), (list_status or None), None


def _new(row: _Row, reason: str) -> NewSubscriber:
    why = reason if row.status is None else f"{row.status} in {reason}"
    status = row.status or "active"
    list_status = row.list_status or "subscribed"
    return (row.line, row.email, row.key, row.name, row.attributes, status, why, list_status)


def _flush(
    bulk: Bulk,
    rows: list[_Row],
    list_id: int | None,
    resubscribe: bool,
    source: str,
    reason: str,
    report: ImportReport,
    rejects: _Rejects,
) -> None:
    """Apply one chunk of distinct addresses, in the caller's transaction: insert the new
    ones, then change the existing ones through ``status_changes`` (its rules decide, and
    its set-based calls write), a few statements per chunk."""
    now = utcnow()
    bulk.begin_chunk()
    added, rows = _insert_new(bulk, rows, list_id, source, reason, now, insert=bulk.insert_first)
    rows, existing = _drop_seen(bulk, rows, report, rejects)
    plan = ChunkPlan(reason, resubscribe)
    absent = [row for row in rows if row.key not in existing]
    for row in rows:
        if row.key in existing:
            plan.global_change(row, *existing[row.key], list_id is not None, report)
    if absent:
        more, missing = _insert_new(bulk, absent, list_id, source, reason, now, insert=True)
        if missing:
            raise NewsletterError(
                "subscribers changed while importing (added or removed by another process); "
                "run the same import again: it continues where it stopped"
            )
        added += more
    report.added += added  # their memberships went in with them
    if list_id is not None and plan.to_check:
        current = bulk.memberships(list_id, [sid for _, sid, _ in plan.to_check])
        for row, sid, counted in plan.to_check:
            plan.list_change(row, sid, current.get(sid), counted, report)
    plan.apply(bulk.conn, list_id, now)


def _insert_new(
    bulk: Bulk, rows: list[_Row], list_id: int | None, source: str, reason: str,
    now: dt.datetime, *, insert: bool,
) -> tuple[int, list[_Row]]:
    """Insert ``rows`` as new subscribers (ON CONFLICT DO NOTHING) when ``insert``, with
    their memberships of ``list_id``: (how many went in, the rows that did not)."""
    if not insert or not rows:
        return 0, rows
    ids = bulk.insert_subscribers([_new(row, reason) for row in rows], now, source, list_id,
                                  reason)
    if not ids:
        return 0, rows
    return len(ids), [row for row in rows if row.key not in ids]


def _drop_seen(
    bulk: Bulk, rows: list[_Row], report: ImportReport, rejects: _Rejects
) -> tuple[list[_Row], dict[str, tuple[int, str]]]:
    """The rows not seen earlier in this import (the others are duplicates, rejected),
    and ``{key: (id, status)}`` of those that exist."""
    if not rows:
        return rows, {}
    seen, existing = bulk.lookup([(row.key, row.line) for row in rows])
    if not seen:
        return rows, existing
    for row in rows:
        if row.key in seen:
            with rejects.lock:
                report.duplicates += 1
            rejects.write(row.line, f"duplicate of line {seen[row.key]}", row.cells)
    return [row for row in rows if row.key not in seen], existing


# -- export ----------------------------------------------------------------------------

EXPORT_FIELDS = ("email", "name", "status")


def export_csv(
    engine: Engine,
    out: TextIO,
    *,
    list_name: str | None = None,
    status: str | None = None,
    consent: bool = False,
) -> int:
    """Write matching subscribers as CSV (``email, name, status[, list_status][, consent],
    attributes``); returns the number of rows. ``import_csv`` reads it back to the same
    state (a ``consent`` column, the sign-up consent records as JSON, is not imported)."""
    keys = attribute_keys(engine, list_name=list_name, status=status)
    header = [*EXPORT_FIELDS, *(["list_status"] if list_name else []),
              *(["consent"] if consent else []), *keys]
    records = _consent_records(engine) if consent else {}
    writer = csvsafe.writer(out)
    writer.writerow(header)
    count = 0
    for sub in iter_subscribers(engine, list_name=list_name, status=status, batch_size=2000):
        values = [sub.email, sub.name or "", sub.status]
        if list_name:
            values.append(sub.list_status or "")
        if consent:
            found = records.get(sub.email.lower())
            values.append(json.dumps(found, ensure_ascii=False) if found else "")
        for key in keys:
            value = sub.attributes.get(key)
            if value is None:
                values.append("")
            elif isinstance(value, str):
                values.append(value)
            else:
                values.append(json.dumps(value, ensure_ascii=False))
        writer.writerow(values)
        count += 1
    return count


def _consent_records(engine: Engine) -> dict[str, list[dict]]:
    from .signup import consents_by_key

    return consents_by_key(engine)


# -- demo ------------------------------------------------------------------------------

DEMO_LIST = "demo"
DEMO_CSV = """\
Email;First Name;Last Name;City
ada@example.org;Ada;Lovelace;London
grace@example.org;Grace;Hopper;New York
alan@example.org;Alan;Turing;Manchester
katherine@example.org;Katherine;Johnson;Hampton
edsger@example.org;Edsger;Dijkstra;Nuenen
not-an-address;Broken;Row;Nowhere
ADA@example.org;Ada;Again;London
"""


def import_demo_subscribers(settings: Any, echo: Callable[[str], None] = print) -> ImportReport:
    """The demo's subscribers: list ``demo`` and ``subscribers.csv`` (written once into the
    project, with one invalid row and one duplicate to show the rejects file), imported;
    running it again changes nothing."""
    from ..db.connect import open_store
    from .lists import create_list, list_lists

    engine = open_store(settings)
    try:
        if DEMO_LIST not in {m.name for m in list_lists(engine)}:
            create_list(engine, DEMO_LIST, "Subscribers of the demo")
            echo(f"created list {DEMO_LIST!r}")
        path = settings.project_dir / "subscribers.csv"
        if not path.exists():
            path.write_text(DEMO_CSV, encoding="utf-8", newline="")
        report = import_csv(engine, path, list_name=DEMO_LIST)
    finally:
        engine.dispose()
    for line in report.lines():
        echo(line)
    return report
