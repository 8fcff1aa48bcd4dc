"""Clicks on tracked links: record them, tell people from link scanners, count them.

``record(conn, send_id, subscriber_id, link_idx, method)`` is one INSERT (the redirect
answers first). Nothing is decided when a click is stored: ``classify`` applies the one
rule to a message's clicks when they are counted, so a later canary hit or burst also
flags the clicks that came before it. A click is flagged (recorded, never counted as a
person's) when it is

- ``head``: a HEAD request (scanners check links; browsers GET them);
- ``canary``: the invisible link no person can click (link 0, first in the body), or any
  click of the same message within ``CANARY_SECONDS`` of a canary hit;
- ``burst``: one of ``BURST_LINKS`` or more distinct links of one message requested
  within ``BURST_SECONDS`` (people read between clicks; scanners follow every link).

Opens (``track_opens``) are counted apart and labelled "may include machine opens":
Apple Mail Privacy Protection and mail gateways load the pixel for everyone, so no
decision (a subject test's winner) ever uses them.
"""

from __future__ import annotations

import datetime as dt
from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

import sqlalchemy as sa

from ..db.tables import clicks, opens, send_links
from ..db.transactions import DB, transaction

CANARY = 0  # the canary's link index
CANARY_SECONDS = 60.0
BURST_LINKS = 3
BURST_SECONDS = 2.0
HUMAN = ""  # the flag of a person's click
OPENS_LABEL = "may include machine opens"


@dataclass(frozen=True)
class Click:
    subscriber_id: int
    link_idx: int
    method: str
    at: dt.datetime
    flag: str = HUMAN  # "", "head", "canary" or "burst"

    @property
    def human(self) -> bool:
        return self.flag == HUMAN


def now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


def record(conn: sa.Connection, send_id: int, subscriber_id: int, link_idx: int,
           method: str, at: dt.datetime | None = None) -> None:
    """Store one request of a tracked link (one statement, in the caller's transaction)."""
    conn.execute(clicks.insert().values(send_id=send_id, subscriber_id=subscriber_id,
                                        link_idx=link_idx, method=method,
                                        clicked_at=at or now()))


_COLUMNS = ("send_id", "subscriber_id", "link_idx", "method", "clicked_at")
_COPY = f"COPY clicks ({', '.join(_COLUMNS)}) FROM STDIN"


def record_many(db: DB, rows: Sequence[dict]) -> None:
    """Store many clicks at once (the redirect endpoint's writer); rows as ``record``.

    On PostgreSQL one ``COPY``: a fifth of the CPU per row of an INSERT of many rows,
    in the server process whose event loop answers the redirects."""
    if not rows:
        return
    with transaction(db) as conn:
        if conn.dialect.name != "postgresql":
            conn.execute(clicks.insert(), list(rows))
            return
        cursor = conn.connection.driver_connection.cursor()  # type: ignore[union-attr]
        with cursor.copy(_COPY) as copy:
            for row in rows:
                copy.write_row([row[name] for name in _COLUMNS])


def record_open(conn: sa.Connection, send_id: int, subscriber_id: int,
                at: dt.datetime | None = None) -> None:
    conn.execute(opens.insert().values(send_id=send_id, subscriber_id=subscriber_id,
                                       opened_at=at or now()))


def _seconds(a: dt.datetime, b: dt.datetime) -> float:
    return abs((a - b).total_seconds())


def _bursts(gets: list[Click]) -> set[int]:
    """Positions (in ``gets``, sorted by time) of the clicks inside a burst."""
    flagged: set[int] = set()
    start = 0
    for end, click in enumerate(gets):
        while _seconds(click.at, gets[start].at) > BURST_SECONDS:
            start += 1
        if len({c.link_idx for c in gets[start:end + 1]}) >= BURST_LINKS:
            flagged.update(range(start, end + 1))
    return flagged


def classify_message(rows: Iterable[Click]) -> list[Click]:
    """One message's clicks (one send, one subscriber), each with its flag: the rule."""
    ordered = sorted(rows, key=lambda c: c.at)
    canaries = [c.at for c in ordered if c.link_idx == CANARY]
    gets = [c for c in ordered if c.method != "HEAD" and c.link_idx != CANARY]
    in_burst = {id(gets[i]) for i in _bursts(gets)}
    out: list[Click] = []
    for c in ordered:
        if c.method == "HEAD":
            flag = "head"
        elif c.link_idx == CANARY or any(_seconds(c.at, t) <= CANARY_SECONDS
                                         for t in canaries):
            flag = "canary"
        elif id(c) in in_burst:
            flag = "burst"
        else:
            flag = HUMAN
        out.append(Click(c.subscriber_id, c.link_idx, c.method, c.at, flag))
    return out


def classified(db: DB, send_id: int) -> list[Click]:
    """Every click of a send, flagged, by subscriber then time."""
    c = clicks.c
    with transaction(db) as conn:
        rows = conn.execute(
            sa.select(c.subscriber_id, c.link_idx, c.method, c.clicked_at)
            .where(c.send_id == send_id).order_by(c.subscriber_id, c.clicked_at, c.id)
        ).all()
    per: dict[int, list[Click]] = defaultdict(list)
    for row in rows:
        at = row.clicked_at if row.clicked_at.tzinfo else row.clicked_at.replace(tzinfo=dt.UTC)
        per[row.subscriber_id].append(Click(row.subscriber_id, row.link_idx, row.method, at))
    return [click for sub in per for click in classify_message(per[sub])]


def unique_human_clickers(db: DB, send_id: int) -> int:
    """Subscribers with at least one person's click on a link of this send: the number a
    subject test decides by (opens never count)."""
    return len({c.subscriber_id for c in classified(db, send_id) if c.human})


@dataclass(frozen=True)
class Link:
    idx: int
    url: str
    section_kind: str
    section_title: str | None
    item_title: str | None

    @property
    def section(self) -> str:
        """How a report names the link's section: "Hard Numbers: 41% / Rents"."""
        words = [self.section_kind]
        if self.section_title and self.section_title != self.section_kind:
            words.append(self.section_title)
        label = ": ".join(words)
        return f"{label} / {self.item_title}" if self.item_title else label


def links(db: DB, send_id: int) -> list[Link]:
    s = send_links.c
    with transaction(db) as conn:
        rows = conn.execute(
            sa.select(s.idx, s.url, s.section_kind, s.section_title, s.item_title)
            .where(s.send_id == send_id).order_by(s.idx)
        ).all()
    return [Link(*row) for row in rows]


@dataclass
class Opens:
    opens: int = 0
    openers: int = 0
    label: str = OPENS_LABEL


def open_counts(db: DB, send_id: int) -> Opens:
    o = opens.c
    with transaction(db) as conn:
        row = conn.execute(
            sa.select(sa.func.count(), sa.func.count(sa.distinct(o.subscriber_id)))
            .where(o.send_id == send_id)
        ).one()
    return Opens(int(row[0]), int(row[1]))


def forget(conn: sa.Connection, subscriber_id: int) -> int:
    """Delete every click and open of a subscriber (erasure); returns the rows deleted."""
    deleted = conn.execute(clicks.delete().where(clicks.c.subscriber_id == subscriber_id))
    gone = conn.execute(opens.delete().where(opens.c.subscriber_id == subscriber_id))
    return int(deleted.rowcount or 0) + int(gone.rowcount or 0)


@dataclass
class Tally:
    """Clicks of one link or one section."""

    human: int = 0
    flagged: int = 0
    clickers: set[int] = field(default_factory=set)  # subscribers with a person's click

    def add(self, click: Click) -> None:
        if click.human:
            self.human += 1
            self.clickers.add(click.subscriber_id)
        else:
            self.flagged += 1
