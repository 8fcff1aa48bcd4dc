"""The one suppression list: addresses refused for every list and every backend.

An address is suppressed because it bounced hard, complained, unsubscribed at a provider
(an imported export) or was suppressed by hand (``manual``). The may-receive rule
(``audience.receiving``) refuses it with the reason ``suppressed``; a new suppression
skips the address's pending rows in unfinished sends at once (a trigger, migration
0009), like an unsubscribe. Hard bounces and complaints reach this list through
``audience.status_changes`` (whatever reported them: SendGrid, SES, Postmark, Mailgun,
the bounce mailbox); ``newsletter suppressions`` adds, removes, lists and imports.

An address is stored once: the first reason stays (``add`` reports it as already there),
except that a complaint replaces a weaker reason.

``import_csv`` reads the suppression exports of SendGrid, Amazon SES, Postmark and
Mailgun, recognising each by its header line (``detect_format``).
"""

from __future__ import annotations

import csv
import datetime as dt
import importlib
import io
import re
from collections import Counter
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import sqlalchemy as sa

from ..db.tables import SUPPRESSION_REASONS, suppressions
from ..db.transactions import DB, transaction, utcnow
from ..errors import InvalidEmail, UsageError
from .emails import normalize_email

_CHUNK = 1000
DETAIL_MAX = 500


@dataclass(frozen=True)
class Suppression:
    email: str
    reason: str
    source: str
    detail: str | None
    created_at: dt.datetime


def _insert(conn: sa.Connection):  # -> dialect Insert with on_conflict_*
    # the connection's own dialect, already loaded: importing the other costs up to 35 ms
    return importlib.import_module(f"sqlalchemy.dialects.{conn.dialect.name}").insert(suppressions)


def _detail(text: str | None) -> str | None:
    return " ".join(str(text).split())[:DETAIL_MAX] or None if text else None


def add_many(conn: sa.Connection, reason: str, items: Sequence[tuple[str, str | None]], *,
             source: str, now: dt.datetime | None = None) -> int:
    """Suppress the address keys of ``items`` ((email key, detail)) for ``reason``, inside
    the caller's transaction; returns how many were new. A complaint replaces a weaker
    reason; anything else already listed stays as it was."""
    if reason not in SUPPRESSION_REASONS:
        raise ValueError(f"unknown suppression reason {reason!r}")
    now = now or utcnow()
    rows = sorted({key: {"email_key": key, "reason": reason, "source": source[:40],
                         "detail": _detail(detail), "created_at": now}
                   for key, detail in items if key}.values(), key=lambda r: r["email_key"])
    added = 0
    for start in range(0, len(rows), _CHUNK):
        insert = _insert(conn)
        if reason == "complained":
            insert = insert.on_conflict_do_update(
                index_elements=["email_key"],
                set_={"reason": insert.excluded.reason, "source": insert.excluded.source,
                      "detail": insert.excluded.detail},
                where=suppressions.c.reason != "complained")
        else:
            insert = insert.on_conflict_do_nothing()
        chunk = rows[start:start + _CHUNK]
        before = conn.execute(sa.select(sa.func.count()).select_from(suppressions)
                              .where(suppressions.c.email_key.in_([r["email_key"] for r in chunk]))
                              ).scalar_one()
        conn.execute(insert, chunk)
        added += len(chunk) - before
    return added


def add_subscribers(conn: sa.Connection, reason: str, items: Sequence[tuple[int, str | None]],
                    *, source: str, now: dt.datetime | None = None) -> int:
    """``add_many`` for subscribers given by id ((id, detail))."""
    from ..db.tables import subscribers

    details = dict(items)
    keys = conn.execute(sa.select(subscribers.c.id, subscribers.c.email_key)
                        .where(subscribers.c.id.in_(list(details)))).all()
    return add_many(conn, reason, [(key, details[i]) for i, key in keys], source=source, now=now)


def lift(conn: sa.Connection, keys: Iterable[str]) -> int:
    """Remove address keys from the list (an explicit resubscribe, ``remove``)."""
    keys = sorted(set(keys))
    removed = 0
    for start in range(0, len(keys), _CHUNK):
        removed += conn.execute(suppressions.delete().where(
            suppressions.c.email_key.in_(keys[start:start + _CHUNK]))).rowcount
    return removed


def lift_subscribers(conn: sa.Connection, ids: Iterable[int]) -> int:
    """``lift`` for subscribers given by id."""
    from ..db.tables import subscribers

    keys = conn.execute(sa.select(subscribers.c.email_key)
                        .where(subscribers.c.id.in_(list(ids)))).scalars().all()
    return lift(conn, keys)


def _key(email: str) -> str:
    return normalize_email(email.strip())[1]


def add(db: DB, emails: Sequence[str], *, reason: str = "manual", source: str = "cli",
        detail: str | None = None) -> int:
    """Suppress addresses (``InvalidEmail`` for one that is not an address)."""
    keys = [_key(e) for e in emails]
    with transaction(db) as conn:
        return add_many(conn, reason, [(k, detail) for k in keys], source=source)


def remove(db: DB, emails: Sequence[str]) -> int:
    keys = [_key(e) for e in emails]
    with transaction(db) as conn:
        return lift(conn, keys)


def is_suppressed(db: DB, email: str) -> Suppression | None:
    found = listing(db, emails=[email])
    return found[0] if found else None


def listing(db: DB, *, reason: str | None = None, emails: Sequence[str] = (),
            limit: int | None = None) -> list[Suppression]:
    """Suppressions, newest first (optionally of one reason, or of given addresses)."""
    query = sa.select(suppressions).order_by(suppressions.c.created_at.desc(),
                                             suppressions.c.email_key)
    if reason is not None:
        query = query.where(suppressions.c.reason == reason)
    if emails:
        query = query.where(suppressions.c.email_key.in_([_key(e) for e in emails]))
    with transaction(db, read=True) as conn:
        rows = conn.execute(query.limit(limit)).all()
    return [Suppression(r.email_key, r.reason, r.source, r.detail, r.created_at) for r in rows]


def counts(db: DB) -> dict[str, int]:
    with transaction(db, read=True) as conn:
        found = dict(conn.execute(sa.select(suppressions.c.reason, sa.func.count())
                                  .group_by(suppressions.c.reason)).all())
    return {reason: int(found.get(reason, 0)) for reason in SUPPRESSION_REASONS}


# -- provider exports --------------------------------------------------------------------

FORMATS = ("sendgrid", "ses", "postmark", "mailgun")


def _norm(name: str) -> str:
    return re.sub(r"[^a-z0-9]", "", name.lower())


@dataclass(frozen=True)
class ExportFormat:
    name: str
    address: str  # the normalised header of the address column
    reason_column: str | None  # a per-row reason column, mapped by ``reasons``
    reasons: dict[str, str]
    default_reason: str  # when the row says nothing (the kind of export the file is)


def detect_format(header: Sequence[str], where: str) -> ExportFormat:
    """The provider whose suppression export has this header line, or ``UsageError``.

    - Postmark (suppressions dump): EmailAddress, SuppressionReason (HardBounce,
      SpamComplaint, ManualSuppression), Origin, CreatedAt
    - Amazon SES (ListSuppressedDestinations): EmailAddress, Reason (BOUNCE, COMPLAINT),
      LastUpdateTime
    - Mailgun: address + code/error (bounces), tags/tag (unsubscribes), or only
      created_at (complaints)
    - SendGrid: email + created, with status/reason (bounces, blocks, invalid emails),
      ip (spam reports) or nothing else (unsubscribes)
    """
    names = {_norm(h) for h in header}
    if {"emailaddress", "suppressionreason"} <= names:
        return ExportFormat("postmark", "emailaddress", "suppressionreason",
                            {"hardbounce": "bounced", "spamcomplaint": "complained",
                             "manualsuppression": "unsubscribed"}, "bounced")
    if {"emailaddress", "reason"} <= names:
        return ExportFormat("ses", "emailaddress", "reason",
                            {"bounce": "bounced", "complaint": "complained"}, "bounced")
    if "address" in names:
        kind = ("bounced" if names & {"code", "error"} else
                "unsubscribed" if names & {"tag", "tags"} else "complained")
        return ExportFormat("mailgun", "address", None, {}, kind)
    if "email" in names:
        kind = ("bounced" if names & {"status", "reason"} else
                "complained" if "ip" in names else "unsubscribed")
        return ExportFormat("sendgrid", "email", None, {}, kind)
    raise UsageError(
        f"{where}:1: error: not a suppression export of SendGrid, Amazon SES, Postmark or "
        f"Mailgun (header: {', '.join(header)[:200]}): export the suppression list from the "
        "provider, or give a CSV with an email column")


@dataclass
class ImportReport:
    format: str
    rows: int = 0
    added: Counter[str] = field(default_factory=Counter)  # new suppressions per reason
    already: int = 0
    invalid: list[int] = field(default_factory=list)  # line numbers of bad addresses


def _rows(handle: io.TextIOBase, where: str) -> tuple[ExportFormat, dict[str, int], Iterator]:
    reader = csv.reader(handle)
    try:
        header = next(reader)
    except StopIteration:
        raise UsageError(f"{where}: error: the file is empty: give a suppression export"
                         ) from None
    fmt = detect_format(header, where)
    index = {_norm(h): i for i, h in enumerate(header)}
    return fmt, index, reader


def import_csv(db: DB, path: Path) -> ImportReport:
    """Add every address of a provider's suppression export (see ``detect_format``)."""
    where = str(path)
    try:
        handle = open(path, encoding="utf-8-sig", newline="")  # noqa: SIM115
    except OSError as exc:
        raise UsageError(f"{where}: error: cannot read it ({exc.strerror}): check the path"
                         ) from None
    with handle:
        fmt, index, reader = _rows(handle, where)
        report = ImportReport(fmt.name)
        pending: dict[str, list[tuple[str, str | None]]] = {}
        try:
            for row in reader:
                _read_row(row, reader.line_num, fmt, index, report, pending)
                if sum(map(len, pending.values())) >= _CHUNK:
                    _flush(db, pending, report, fmt.name)
        except (csv.Error, UnicodeDecodeError) as exc:
            raise UsageError(f"{where}:{reader.line_num}: error: {exc}: save the export as "
                             "UTF-8 CSV; the rows before this line were imported") from None
        _flush(db, pending, report, fmt.name)
    return report


def _read_row(row: list[str], line: int, fmt: ExportFormat, index: dict[str, int],
              report: ImportReport, pending: dict[str, list[tuple[str, str | None]]]) -> None:
    if not any(cell.strip() for cell in row):
        return
    report.rows += 1
    at = index[fmt.address]
    try:
        key = _key(row[at] if at < len(row) else "")
    except InvalidEmail:
        report.invalid.append(line)
        return
    reason = fmt.default_reason
    if fmt.reason_column is not None:
        col = index[fmt.reason_column]
        value = _norm(row[col]) if col < len(row) else ""
        reason = fmt.reasons.get(value, fmt.default_reason)
    pending.setdefault(reason, []).append((key, f"imported from {fmt.name}"))


def _flush(db: DB, pending: dict[str, list[tuple[str, str | None]]], report: ImportReport,
           name: str) -> None:
    if not pending:
        return
    with transaction(db) as conn:
        for reason, items in pending.items():
            added = add_many(conn, reason, items, source=f"import:{name}")
            report.added[reason] += added
            report.already += len({k for k, _ in items}) - added
    pending.clear()
