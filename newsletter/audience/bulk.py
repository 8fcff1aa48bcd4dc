"""Bulk statements for the CSV importer, one implementation per database.

The importer works in chunks of a few thousand rows, one transaction each. Per chunk
it asks: which of these addresses has this import already seen (a temporary table
``import_seen`` on the import's own connection, so memory stays constant however long
the file), which exist and with what status, then inserts the new subscribers and
memberships. Both databases get each chunk as one JSON parameter per statement
(SQLite ``json_each``, PostgreSQL ``json_array_elements``) with
``INSERT ... SELECT ... ON CONFLICT DO NOTHING``: one statement (one round trip, one
release of the GIL) per chunk, however many rows. Changes to existing subscribers
(statuses, joining or leaving the list) are not here: the importer makes them through
``status_changes``, set-based the same way.
"""

from __future__ import annotations

import bisect
import datetime as dt
import json
from abc import ABC, abstractmethod
from array import array
from collections.abc import Sequence
from typing import Any

import sqlalchemy as sa

from ..db.tables import subscribers
from ..delivery.headersafe import clean_text, is_clean
from .status_changes import json_at as _at

# line, email, key, name, attributes (JSON), status, status reason, list status
NewSubscriber = tuple[int, str, str, str | None, str, str, str, str]


def header_safe(rows: Sequence[NewSubscriber]) -> Sequence[NewSubscriber]:
    """``rows`` with each name made safe for email headers (``delivery.headersafe.clean_text``):
    the same rows, unchanged, in the usual case that every name is already."""
    if all(row[3] is None or is_clean(row[3]) for row in rows):
        return rows
    return [(*row[:3], clean_text(row[3]), *row[4:]) for row in rows]  # type: ignore[misc]


class Bulk(ABC):
    """Chunk operations on one connection (which must stay the same for the import).

    ``insert_first``: insert a chunk's rows straight away (ON CONFLICT DO NOTHING) and
    look up only those that were not inserted, rather than look up every row first.

    Addresses this import inserted are recognised by their ids: a chunk's new rows
    normally take a contiguous range of ids, so a list of (first id, file lines) ranges,
    four bytes a row, says which line added an id. Only addresses that existed before
    the import go to the ``import_seen`` table, which keeps memory constant on a re-import.
    """

    insert_first = False

    def __init__(self, conn: sa.Connection) -> None:
        self.conn = conn
        stamp = subscribers.c.created_at.type.dialect_impl(conn.dialect)
        self._stamp = stamp.bind_processor(conn.dialect) or (lambda value: value)
        self._starts: list[int] = []  # first id of each chunk's inserted range
        self._lines: list[array[int]] = []  # the file line of each id of that range
        self._other: dict[int, int] = {}  # ids outside a range (concurrent writers)

    def _remember(self, rows: Sequence[NewSubscriber], ids: dict[str, int]) -> None:
        """Record which line inserted which id (``ids``: {key: id} of the rows inserted).
        A range may have gaps (PostgreSQL burns sequence values on conflicts): line 0."""
        if not ids:
            return
        line_of = {row[2]: row[0] for row in rows}
        first, last = min(ids.values()), max(ids.values())
        if last - first < 2 * len(ids) and (not self._starts or first > self._starts[-1]):
            lines = array("I", [0]) * (last - first + 1)
            for key, sid in ids.items():
                lines[sid - first] = line_of[key]
            self._starts.append(first)
            self._lines.append(lines)
        else:
            self._other.update({sid: line_of[key] for key, sid in ids.items()})

    def _line_of(self, sid: int) -> int | None:
        """The line that inserted subscriber ``sid`` in this import, or None."""
        at = bisect.bisect_right(self._starts, sid) - 1
        if at >= 0:
            offset = sid - self._starts[at]
            if offset < len(self._lines[at]) and self._lines[at][offset]:
                return self._lines[at][offset]
        return self._other.get(sid)

    @staticmethod
    def for_connection(conn: sa.Connection) -> Bulk:
        if conn.dialect.name == "postgresql":
            return PostgresBulk(conn)
        return SqliteBulk(conn)

    def stamp(self, value: dt.datetime) -> Any:
        return self._stamp(value)

    def _run(self, sql: str, params: Any = None) -> sa.CursorResult:
        if params is None:
            return self.conn.exec_driver_sql(sql)
        return self.conn.exec_driver_sql(sql, params)

    def lookup(
        self, items: Sequence[tuple[str, int]]
    ) -> tuple[dict[str, int], dict[str, tuple[int, str]]]:
        """For (key, line) pairs unique within the chunk: ``({key: line}`` of the keys this
        import saw in an earlier chunk, ``{key: (id, status)}`` of the other keys that
        exist). Records the keys as seen."""
        existing = self.find([key for key, _ in items])
        seen: dict[str, int] = {}
        before: dict[int, str] = {}  # id: key of those that existed before this import
        for key, (sid, _) in existing.items():
            line = self._line_of(sid)
            if line is None:
                before[sid] = key
            else:
                seen[key] = line
        if before:
            line_of = dict(items)
            earlier = self.seen_before([(sid, line_of[key]) for sid, key in before.items()])
            seen.update({before[sid]: line for sid, line in earlier.items()})
        for key in seen:
            del existing[key]
        return seen, existing

    # The interface; each database implements these.
    @abstractmethod
    def begin_chunk(self) -> None:
        """Called first in each chunk's transaction."""

    @abstractmethod
    def prepare(self) -> None:
        """Create the import's temporary table of addresses seen."""

    @abstractmethod
    def seen_before(self, items: Sequence[tuple[int, int]]) -> dict[int, int]:
        """For (subscriber id, line) pairs of subscribers that existed before the import:
        ``{id: line}`` of those this import saw in an earlier chunk. Records the others."""

    @abstractmethod
    def find(self, keys: Sequence[str]) -> dict[str, tuple[int, str]]:
        """``{key: (id, status)}`` of the existing subscribers among ``keys``."""

    @abstractmethod
    def insert_subscribers(
        self,
        rows: Sequence[NewSubscriber],
        now: dt.datetime,
        source: str | None,
        list_id: int | None,
        reason: str,
    ) -> dict[str, int]:
        """Insert new subscribers (ON CONFLICT DO NOTHING), in file order, and with
        ``list_id`` their memberships of that list; ``{key: id}`` of the rows inserted.
        Names are stored made safe for email headers (``header_safe``)."""

    @abstractmethod
    def memberships(self, list_id: int, ids: Sequence[int]) -> dict[int, str]:
        """``{subscriber id: membership status}`` in list ``list_id``."""

    @abstractmethod
    def insert_memberships(
        self, list_id: int, rows: Sequence[tuple[int, str]], now: dt.datetime, reason: str
    ) -> None:
        """Insert (subscriber id, status) memberships of list ``list_id``."""

    @abstractmethod
    def finish(self) -> None:
        """Drop the temporary table."""


class SqliteBulk(Bulk):
    """Raw sqlite3 cursor on the import's connection (in SQLAlchemy's transaction): lists
    of keys or ids travel as one JSON parameter (``json_each``), joined with CROSS JOIN so
    that SQLite probes the unique indexes once per value."""

    def __init__(self, conn: sa.Connection) -> None:
        super().__init__(conn)
        self.cursor = conn.connection.driver_connection.cursor()

    def prepare(self) -> None:
        # A bigger page cache for the import (random inserts into the email index);
        # finish() puts the default back.
        self.cursor.execute("PRAGMA cache_size = -32768")
        self.cursor.execute("PRAGMA temp.cache_size = -16384")  # import_seen, on re-imports
        # Chunks commit without waiting for the disk (a crash loses at most the last
        # chunks, which a re-run adds); finish() syncs before the import reports.
        self.cursor.execute("PRAGMA synchronous = NORMAL")
        # Checkpoint (and sync) every 40 MB of WAL rather than every 4 MB.
        self.cursor.execute("PRAGMA wal_autocheckpoint = 10000")
        self.cursor.execute("DROP TABLE IF EXISTS temp.import_seen")
        self.cursor.execute(
            "CREATE TEMP TABLE import_seen (id INTEGER PRIMARY KEY, line INTEGER NOT NULL)"
        )

    def finish(self) -> None:
        self.cursor.execute("DROP TABLE IF EXISTS temp.import_seen")
        self.cursor.execute("PRAGMA cache_size = -2000")
        self.cursor.execute("PRAGMA synchronous = FULL")
        self.cursor.execute("PRAGMA wal_autocheckpoint = 1000")
        self.cursor.execute("PRAGMA wal_checkpoint(PASSIVE)")  # syncs the WAL first

    def begin_chunk(self) -> None:
        # Nothing per chunk: prepare() set synchronous=NORMAL for the whole import.
        return None

    def _one(self, sql: str, *params: Any) -> Any:
        """A query whose answer is one JSON value (json_group_array): one step of SQLite,
        so one release of the GIL, however many rows it covers."""
        row = self.cursor.execute(sql, params).fetchone()
        return json.loads(row[0]) if row and row[0] is not None else []

    def seen_before(self, items: Sequence[tuple[int, int]]) -> dict[int, int]:
        found = dict(
            self._one(
                "SELECT json_group_array(json_array(t.id, t.line)) FROM json_each(?) j "
                "CROSS JOIN temp.import_seen t ON t.id = j.value",
                json.dumps([sid for sid, _ in items]),
            )
        )
        fresh = [item for item in items if item[0] not in found] if found else items
        if fresh:
            self.cursor.execute(
                f"INSERT INTO temp.import_seen (id, line) SELECT {_at(0)}, {_at(1)} "
                "FROM json_each(?) j",
                (json.dumps(fresh),),
            )
        return found

    def find(self, keys: Sequence[str]) -> dict[str, tuple[int, str]]:
        rows = self._one(
            "SELECT json_group_array(json_array(s.email_key, s.id, s.status)) "
            "FROM json_each(?) j CROSS JOIN subscribers s ON s.email_key = j.value",
            json.dumps(list(keys)),
        )
        return {key: (sid, status) for key, sid, status in rows}

    def _sequence(self) -> int:
        row = self.cursor.execute(
            "SELECT seq FROM sqlite_sequence WHERE name = 'subscribers'"
        ).fetchone()
        return int(row[0]) if row else 0

    def insert_subscribers(
        self,
        rows: Sequence[NewSubscriber],
        now: dt.datetime,
        source: str | None,
        list_id: int | None,
        reason: str,
    ) -> dict[str, int]:
        rows = header_safe(rows)
        stamp = self.stamp(now)
        first = self._sequence() + 1
        values = ", ".join(_at(n) for n in range(6))
        # One statement for the chunk (rows as one JSON array, in file order): SQLite
        # inserts them all in one step, without the GIL, while the reader thread parses.
        self.cursor.execute(
            "INSERT INTO subscribers (email, email_key, name, attributes, status, "
            "status_reason, status_changed_at, created_at, source) "
            f"SELECT {values}, ?, ?, ? FROM json_each(?) j WHERE true "
            "ON CONFLICT (email_key) DO NOTHING",
            (stamp, stamp, source, json.dumps([row[1:7] for row in rows])),
        )
        # AUTOINCREMENT hands out ids above every id ever used, in insertion order: if
        # all n rows went in and took exactly the next n ids, row k has id first + k.
        if self.cursor.rowcount == len(rows) and self._sequence() == first + len(rows) - 1:
            ids = {row[2]: first + n for n, row in enumerate(rows)}
        else:  # someone else inserted one of these addresses: read the ids back
            found = self.find([row[2] for row in rows])
            ids = {key: sid for key, (sid, _) in found.items() if sid >= first}
        self._remember(rows, ids)
        if list_id is not None and ids:
            members = [(ids[row[2]], row[7]) for row in rows if row[2] in ids]
            self.insert_memberships(list_id, members, now, reason)
        return ids

    def memberships(self, list_id: int, ids: Sequence[int]) -> dict[int, str]:
        rows = self._one(
            "SELECT json_group_array(json_array(m.subscriber_id, m.status)) "
            "FROM json_each(?) j CROSS JOIN memberships m "
            "ON m.list_id = ? AND m.subscriber_id = j.value",
            json.dumps(list(ids)),
            list_id,
        )
        return {sid: status for sid, status in rows}

    def insert_memberships(
        self, list_id: int, rows: Sequence[tuple[int, str]], now: dt.datetime, reason: str
    ) -> None:
        stamp = self.stamp(now)
        self.cursor.execute(
            "INSERT INTO memberships (list_id, subscriber_id, status, created_at, "
            f"status_changed_at, status_reason) SELECT ?, {_at(0)}, {_at(1)}, ?, ?, ? "
            "FROM json_each(?) j WHERE true ON CONFLICT (list_id, subscriber_id) DO NOTHING",
            (list_id, stamp, stamp, reason, json.dumps(rows)),
        )


class PostgresBulk(Bulk):
    """Each chunk travels as one JSON text parameter per statement, unpacked by the server
    (``json_array_elements``): json.dumps is C, where psycopg's text[] adapter escapes
    every element in Python (it was half the client's time). Rows are inserted first and
    only the conflicting ones looked up: a round trip and an index probe per row fewer
    on a first import."""

    insert_first = True

    def prepare(self) -> None:
        self._run("DROP TABLE IF EXISTS pg_temp.import_seen")
        self._run("CREATE TEMP TABLE import_seen (id BIGINT PRIMARY KEY, line INTEGER NOT NULL)")

    def finish(self) -> None:
        self._run("DROP TABLE IF EXISTS pg_temp.import_seen")

    def begin_chunk(self) -> None:
        # The chunk's commit does not wait for its WAL flush: a server crash may lose
        # the last chunks, which a re-run adds again; finish() commits synchronously,
        # so the import's end is durable before it reports.
        self._run("SET LOCAL synchronous_commit TO OFF")

    def seen_before(self, items: Sequence[tuple[int, int]]) -> dict[int, int]:
        # One statement: the SELECT sees the table as it was before the INSERT in its
        # WITH clause, so it returns exactly the ids seen in earlier chunks.
        rows = self._run(
            "WITH input AS (SELECT (v->>0)::bigint AS id, (v->>1)::int AS line "
            "FROM json_array_elements(%s::json) v), "
            "fresh AS (INSERT INTO import_seen (id, line) SELECT id, line FROM input "
            "ON CONFLICT (id) DO NOTHING) "
            "SELECT t.id, t.line FROM input JOIN import_seen t ON t.id = input.id",
            (json.dumps(items),),
        )
        return dict(rows.all())

    def find(self, keys: Sequence[str]) -> dict[str, tuple[int, str]]:
        rows = self._run(
            "SELECT s.email_key, s.id, s.status FROM json_array_elements_text(%s::json) k "
            "JOIN subscribers s ON s.email_key = k",
            (json.dumps(list(keys)),),
        )
        return {key: (sid, status) for key, sid, status in rows}

    def insert_subscribers(
        self,
        rows: Sequence[NewSubscriber],
        now: dt.datetime,
        source: str | None,
        list_id: int | None,
        reason: str,
    ) -> dict[str, int]:
        rows = header_safe(rows)
        # One statement, one round trip: the subscribers, then (in the same statement)
        # the memberships of those that went in.
        members = (
            ", mem AS (INSERT INTO memberships (list_id, subscriber_id, status, created_at, "
            "status_changed_at, status_reason) "
            "SELECT %(list)s, ins.id, input.ls, %(now)s, %(now)s, %(reason)s "
            "FROM ins JOIN input ON input.k = ins.email_key "
            "ON CONFLICT (list_id, subscriber_id) DO NOTHING)"
            if list_id is not None
            else ""
        )
        result = self._run(
            "WITH input AS (SELECT v->>0 AS e, v->>1 AS k, v->>2 AS n, v->>3 AS a, "
            "v->>4 AS s, v->>5 AS r, v->>6 AS ls FROM json_array_elements(%(rows)s::json) v), "
            "ins AS (INSERT INTO subscribers (email, email_key, name, attributes, status, "
            "status_reason, status_changed_at, created_at, source) "
            "SELECT e, k, n, a::jsonb, s, r, %(now)s, %(now)s, %(source)s FROM input "
            "ON CONFLICT (email_key) DO NOTHING RETURNING email_key, id)"
            f"{members} SELECT email_key, id FROM ins",
            {
                "rows": json.dumps([row[1:] for row in rows]),
                "now": now,
                "source": source,
                "list": list_id,
                "reason": reason,
            },
        )
        inserted = dict(result.all())  # rows that conflicted are not there
        self._remember(rows, inserted)
        return inserted

    def memberships(self, list_id: int, ids: Sequence[int]) -> dict[int, str]:
        rows = self._run(
            "SELECT m.subscriber_id, m.status FROM json_array_elements_text(%s::json) i "
            "JOIN memberships m ON m.list_id = %s AND m.subscriber_id = i::bigint",
            (json.dumps(list(ids)), list_id),
        )
        return dict(rows.all())

    def insert_memberships(
        self, list_id: int, rows: Sequence[tuple[int, str]], now: dt.datetime, reason: str
    ) -> None:
        self._run(
            "INSERT INTO memberships (list_id, subscriber_id, status, created_at, "
            "status_changed_at, status_reason) "
            "SELECT %s, (v->>0)::bigint, v->>1, %s, %s, %s FROM json_array_elements(%s::json) v "
            "ON CONFLICT (list_id, subscriber_id) DO NOTHING",
            (list_id, now, now, reason, json.dumps(rows)),
        )
