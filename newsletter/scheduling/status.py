"""An issue's delivery status, for the editors' preview: scheduled, sending, sent, failed.

``issue_status(settings, slug)`` reads the project's database (when it has one; previewing
never creates a database nor fails for want of one) and answers for an issue file's slug:
its next open schedule, else its newest real send, else a failed or missed schedule the
editor has to act on. The web layer hands it to the preview (``newsletter.web``), which
knows nothing of schedules or sends.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from pathlib import Path

import sqlalchemy as sa
from sqlalchemy.engine import Engine

from newsletter.authoring.slugs import file_slug
from newsletter.config import Settings
from newsletter.db.transactions import transaction
from newsletter.delivery import ledger

from .schedules import info_of
from .tables import OPEN, schedules


@dataclass(frozen=True)
class IssueStatus:
    """``kind`` ("scheduled", "sending", "sent", "error") and a short ``label``."""

    kind: str
    label: str


_ENGINES: dict[str, Engine] = {}
_ENGINES_LOCK = threading.Lock()


def _engine(settings: Settings) -> Engine | None:
    """An engine on the project's database, or None when there is none (yet)."""
    from sqlalchemy.engine import make_url

    from newsletter.db.engine import make_engine
    from newsletter.db.schema import ensure_schema

    url = settings.effective_database_url
    with _ENGINES_LOCK:
        if url in _ENGINES:
            return _ENGINES[url]
        parsed = make_url(url)
        if parsed.get_backend_name() == "sqlite" and not Path(parsed.database or "").is_file():
            return None  # previewing never creates a database
        engine = make_engine(url)
        try:
            ensure_schema(engine, create=False)
        except Exception:  # no schema, an old one, or no server: no status, no error
            engine.dispose()
            return None
        _ENGINES[url] = engine
        return engine


def issue_status(settings: Settings, slug: str) -> IssueStatus | None:
    """The delivery status of the issue file whose slug is ``slug``, or None."""
    engine = _engine(settings)
    if engine is None:
        return None
    try:
        with transaction(engine) as conn:
            scheduled = _open_schedule(conn, slug)
            if scheduled is not None:
                return scheduled
            sent = conn.execute(
                sa.select(ledger.sends.c.id)
                .where(ledger.sends.c.issue_slug == slug, ledger.sends.c.kind == "real")
                .order_by(ledger.sends.c.id.desc()).limit(1)
            ).scalar()
            if sent is None:
                return _problem(conn, slug)
            send = ledger.get_send(conn, sent)
    except sa.exc.SQLAlchemyError:
        return None
    if send.status == "sending":
        return IssueStatus("sending", f"sending to {send.list_name}")
    return IssueStatus("sent", f"sent to {send.counts.get('sent', 0):,} ({send.list_name})")


def _open_schedule(conn: sa.Connection, slug: str) -> IssueStatus | None:
    rows = conn.execute(
        sa.select(schedules).where(schedules.c.status.in_(OPEN)).order_by(schedules.c.due_at)
    ).all()
    for row in rows:
        if file_slug(row.issue_path) == slug:
            info = info_of(row)
            if info.status == "sending":
                return IssueStatus("sending", f"sending to {info.list_name}")
            return IssueStatus("scheduled",
                               f"scheduled {info.due_local:%Y-%m-%d %H:%M} {info.zone}")
    return None


def _problem(conn: sa.Connection, slug: str) -> IssueStatus | None:
    """A failed or missed schedule of an issue never sent: the editor has to act."""
    rows = conn.execute(
        sa.select(schedules.c.issue_path, schedules.c.status, schedules.c.id)
        .where(schedules.c.status.in_(["failed", "missed"]))
        .order_by(schedules.c.id.desc())
    ).all()
    for row in rows:
        if file_slug(row.issue_path) == slug:
            return IssueStatus("error", f"schedule {row.id} {row.status}")
    return None
