"""The bounce mailbox for SMTP sends: read over IMAP (TLS), apply each report once, move it.

``bounce_mailbox = "imaps://user:pass@host:993/INBOX?processed=Processed"`` names the
mailbox the VERP return paths (``feedback.verp``) deliver to. ``fetch(engine, settings)``
(``newsletter bounces fetch``, and the worker every ``bounce_fetch_minutes``):

1. logs in over TLS (``imaps://``; ``imap://`` only with ``starttls=true``) and lists the
   folder's messages by UID, reading them in chunks;
2. parses each (``feedback.dsn``): hard bounce, soft bounce, complaint or nothing of ours;
3. claims each report by its Message-ID in ``bounce_messages`` (``INSERT ... ON CONFLICT
   DO NOTHING``) in the transaction that applies it, so that two fetchers running at
   once apply each report once: the second waits on the first's row, then skips it;
4. applies the fresh ones through ``effects`` (as a webhook's events: hard bounces and
   complaints change the subscriber through ``audience.status_changes`` and suppress the
   address, the send's counters count them); a soft bounce is recorded in
   ``soft_bounces`` and the address bounces when it has ``soft_bounce_limit`` of them
   within ``soft_bounce_days``;
5. moves every message it read to the ``processed`` folder (created when missing).

Options after ``?``: ``processed`` (default ``Processed``), ``cafile``, ``verify=false``
(testing only), ``starttls``, ``timeout`` (seconds, default 30).
"""

from __future__ import annotations

import contextlib
import datetime as dt
import imaplib
import importlib
import re
import ssl
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from urllib.parse import parse_qs, unquote, urlsplit

import sqlalchemy as sa
from sqlalchemy.engine import Engine

from ..audience import status_changes
from ..config import Settings
from ..db.tables import bounce_messages, soft_bounces, subscribers
from ..db.transactions import utcnow
from ..errors import BackendUnavailable, ConfigError
from . import dsn, effects
from .provider_events import event
from .sendgrid import Effect, Event

SOURCE = "bounce mailbox"
CHUNK = 500


@dataclass(frozen=True)
class MailboxConfig:
    host: str
    port: int
    user: str
    password: str
    folder: str
    processed: str
    implicit_tls: bool
    cafile: str | None
    verify: bool
    timeout: float

    def context(self) -> ssl.SSLContext:
        context = ssl.create_default_context(cafile=self.cafile)
        if not self.verify:
            context.check_hostname = False
            context.verify_mode = ssl.CERT_NONE
        return context


def parse_url(url: str, where: str = "bounce_mailbox") -> MailboxConfig:
    """``imaps://user:pass@host:993/INBOX?processed=Processed``, or ``ConfigError``."""
    parts = urlsplit(url)
    options = {k: v[-1] for k, v in parse_qs(parts.query).items()}
    starttls = options.get("starttls", "").lower() in ("1", "true", "yes")
    if parts.scheme not in ("imaps", "imap") or (parts.scheme == "imap" and not starttls):
        raise ConfigError(f"{where}: use imaps://user:pass@host:993/INBOX (or imap://... "
                          "?starttls=true): the mailbox password must not travel in clear")
    if not parts.hostname or not parts.username or parts.password is None:
        raise ConfigError(f"{where}: give the user and password: imaps://user:pass@host/INBOX")
    try:
        port, timeout = parts.port, float(options.get("timeout", 30))
    except ValueError as exc:
        raise ConfigError(f"{where}: {exc}: write a port number and timeout in seconds"
                          ) from None
    return MailboxConfig(
        host=parts.hostname, port=port or (993 if parts.scheme == "imaps" else 143),
        user=unquote(parts.username), password=unquote(parts.password),
        folder=unquote(parts.path.strip("/")) or "INBOX",
        processed=options.get("processed") or "Processed", implicit_tls=parts.scheme == "imaps",
        cafile=options.get("cafile") or None,
        verify=options.get("verify", "true").lower() not in ("0", "false", "no"),
        timeout=timeout)


@dataclass
class FetchReport:
    read: int = 0
    applied: Counter[str] = field(default_factory=Counter)  # hard, soft, complaint, ignored
    duplicates: int = 0  # already applied (by another fetcher, or before)
    soft_to_hard: int = 0  # addresses that bounced for their soft bounces

    def line(self) -> str:
        a = self.applied
        return (f"read {self.read:,} message(s): {a['hard']:,} hard bounces, {a['soft']:,} soft, "
                f"{a['complaint']:,} complaints, {a['ignored']:,} not bounces; "
                f"{self.duplicates:,} already applied; {self.soft_to_hard:,} address(es) "
                "bounced after repeated soft bounces")


def connect(config: MailboxConfig) -> imaplib.IMAP4:
    try:
        if config.implicit_tls:
            conn: imaplib.IMAP4 = imaplib.IMAP4_SSL(config.host, config.port,
                                                    ssl_context=config.context(),
                                                    timeout=config.timeout)
        else:
            conn = imaplib.IMAP4(config.host, config.port, timeout=config.timeout)
            conn.starttls(config.context())
        conn.login(config.user, config.password)
    except (OSError, imaplib.IMAP4.error) as exc:
        raise BackendUnavailable(f"bounce mailbox {config.host}:{config.port}: {exc}") from None
    return conn


def _quote(name: str) -> str:
    return '"' + name.replace("\\", "\\\\").replace('"', '\\"') + '"'


def _uids(conn: imaplib.IMAP4, folder: str) -> list[bytes]:
    status, _ = conn.select(_quote(folder))
    if status != "OK":
        raise BackendUnavailable(f"bounce mailbox: cannot open folder {folder!r}")
    status, data = conn.uid("SEARCH", "ALL")
    return data[0].split() if status == "OK" and data and data[0] else []


_UID = re.compile(rb"UID (\d+)")


def _fetch(conn: imaplib.IMAP4, uids: Sequence[bytes]) -> list[tuple[bytes, bytes]]:
    status, data = conn.uid("FETCH", b",".join(uids).decode(), "(UID BODY.PEEK[])")
    found: list[tuple[bytes, bytes]] = []
    for item in data if status == "OK" else []:
        if isinstance(item, tuple):
            uid = _UID.search(item[0])
            if uid:
                found.append((uid.group(1), item[1]))
    return found


def _move(conn: imaplib.IMAP4, uids: Sequence[bytes], target: str) -> None:
    """Move to ``target`` (MOVE, else COPY + delete). UIDs another fetcher moved already
    are simply gone."""
    ids = b",".join(uids).decode()
    if "MOVE" in conn.capabilities:
        conn.uid("MOVE", ids, _quote(target))
        return
    conn.uid("COPY", ids, _quote(target))
    conn.uid("STORE", ids, "+FLAGS.SILENT", r"(\Deleted)")
    conn.expunge()


def fetch(engine: Engine, settings: Settings, *, limit: int | None = None) -> FetchReport:
    """Read, apply and move the bounce mailbox's messages (see the module docs)."""
    if not settings.bounce_mailbox:
        raise ConfigError(f"{settings.config_file}: bounce_mailbox is not set: add "
                          "bounce_mailbox = \"imaps://user:pass@host:993/INBOX\"")
    config = parse_url(settings.bounce_mailbox, f"{settings.config_file}: bounce_mailbox")
    secret = settings.secret_key or ""
    report = FetchReport()
    conn = connect(config)
    try:
        conn.create(_quote(config.processed))  # NO when it exists already: fine
        uids = _uids(conn, config.folder)[:limit]
        for start in range(0, len(uids), CHUNK):
            messages = _fetch(conn, uids[start:start + CHUNK])
            reports = [dsn.read(raw, secret) for _, raw in messages]
            apply_reports(engine, settings, reports, report)
            report.read += len(messages)
            if messages:
                _move(conn, [uid for uid, _ in messages], config.processed)
    except (OSError, imaplib.IMAP4.error) as exc:
        raise BackendUnavailable(f"bounce mailbox {config.host}: {exc}") from None
    finally:
        with contextlib.suppress(OSError, imaplib.IMAP4.error):
            conn.logout()
    return report


# -- applying ------------------------------------------------------------------------------


def _insert(conn: sa.Connection):
    # the connection's own dialect, already loaded: importing the other costs up to 35 ms
    return importlib.import_module(f"sqlalchemy.dialects.{conn.dialect.name}").insert(bounce_messages)


def apply_reports(engine: Engine, settings: Settings, reports: Sequence[dsn.Report],
                  into: FetchReport) -> None:
    """Claim and apply reports in one transaction: each Message-ID once, ever."""
    unique = {r.message_key: r for r in reports}
    now = utcnow()
    with engine.begin() as conn:
        emails = _emails_of(conn, [r.verp.subscriber_id for r in unique.values() if r.verp])
        rows = [{"message_key": key[:200], "outcome": r.kind, "processed_at": now,
                 "email_key": _email(r, emails)} for key, r in sorted(unique.items())]
        claimed = set(conn.execute(_insert(conn).on_conflict_do_nothing()
                                   .returning(bounce_messages.c.message_key), rows).scalars()
                      ) if rows else set()
        into.duplicates += len(reports) - len(claimed)
        fresh = [unique[k] for k in sorted(claimed)]
        into.applied.update(r.kind for r in fresh)
        events = [e for r in fresh if (e := _event(r, _email(r, emails))) is not None]
        if events:
            effects.apply_in(conn, events, SOURCE)
        soft = [(r, _email(r, emails)) for r in fresh if r.kind == "soft"]
        into.soft_to_hard += _soft(conn, settings, soft, now)


def _emails_of(conn: sa.Connection, ids: list[int]) -> dict[int, str]:
    found: dict[int, str] = {}
    for start in range(0, len(ids), 1000):
        found.update(conn.execute(sa.select(subscribers.c.id, subscribers.c.email_key)
                                  .where(subscribers.c.id.in_(ids[start:start + 1000]))).all())
    return found


def _email(report: dsn.Report, emails: dict[int, str]) -> str | None:
    """Whom a report is about: the VERP's subscriber (the address we sent to), else the
    address the report names."""
    if report.verp is not None and report.verp.subscriber_id in emails:
        return emails[report.verp.subscriber_id]
    return report.recipient


_KINDS = {"hard": ("bounce", Effect.BOUNCED), "complaint": ("spamreport", Effect.COMPLAINED),
          "soft": ("deferred", Effect.NONE)}


def _event(report: dsn.Report, email: str | None) -> Event | None:
    if report.kind not in _KINDS or not email:
        return None
    kind, effect = _KINDS[report.kind]
    ids = {"send_id": report.verp.send_id, "subscriber_id": report.verp.subscriber_id} \
        if report.verp else {}
    why = " ".join(x for x in (report.status, report.detail) if x) or report.kind
    return event("mailbox", report.message_key, kind, email, effect, why, ids=ids)


def _soft(conn: sa.Connection, settings: Settings, soft: list[tuple[dsn.Report, str | None]],
          now: dt.datetime) -> int:
    """Record soft bounces; addresses with ``soft_bounce_limit`` of them within
    ``soft_bounce_days`` bounce. Returns how many did."""
    rows = [{"email_key": email, "send_id": r.verp.send_id if r.verp else None,
             "status": r.status, "bounced_at": now} for r, email in soft if email]
    if not rows:
        return 0
    conn.execute(soft_bounces.insert(), rows)
    since = now - dt.timedelta(days=settings.soft_bounce_days)
    keys = sorted({row["email_key"] for row in rows})
    over = conn.execute(
        sa.select(soft_bounces.c.email_key)
        .where(soft_bounces.c.email_key.in_(keys), soft_bounces.c.bounced_at >= since)
        .group_by(soft_bounces.c.email_key)
        .having(sa.func.count() >= settings.soft_bounce_limit)).scalars().all()
    why = (f"{SOURCE}: {settings.soft_bounce_limit} soft bounces within "
           f"{settings.soft_bounce_days} days")
    return status_changes.set_global(conn, "bounced", [(k, why) for k in over],
                                     by="email_key", now=now, source=SOURCE)
