"""The welcome email: sent once to each newly confirmed subscriber, through the ledger.

The email is ``issues/_welcome.md``: an issue file in the same format, checked by the same
validator, without a date (``authoring.build.WELCOME_FILE``). ``newsletter init`` writes
a sample one.

``send_welcome(engine, settings, subscriber_ids)`` (what the sign-up's confirmation calls,
and ``newsletter welcome send``) puts the welcome in the ledger as a send of kind
``welcome`` (one per list: the unsubscribe link of a welcome is for the list the
subscriber joined, their lowest-numbered list when several) and runs it:

- Exactly once per subscriber: in one transaction, ``subscribers.welcomed_at`` is set
  for those not welcomed before and the send snapshots exactly them. Whoever asks again,
  at once or later, finds them welcomed; two processes asking at the same moment are
  ordered by the rows' locks (PostgreSQL) or the write lock (SQLite).
- The one may-receive rule (``receiving``) decides who gets one: an unsubscribed, paused
  or erased subscriber does not (and stays not welcomed, so a later call can welcome
  them when they may receive again).
- Across a crash (``kill -9`` mid-send) the ledger and the workers' progress journals
  make it exactly once, as for an issue: ``resume_welcomes`` (called first by every
  ``send_welcome``, and by ``newsletter welcome resume``) finishes unfinished welcome
  sends; a message whose answer never came back is ``uncertain`` and is resent only on
  request (``resend_uncertain``).
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

import sqlalchemy as sa
from sqlalchemy.engine import Engine

from ..authoring.build import WELCOME_FILE, build_file
from ..authoring.render import Rendered
from ..config import Settings
from ..db.tables import lists, memberships, sends, subscribers
from ..db.transactions import transaction, utcnow
from ..errors import NewsletterError
from .receiving import receives

KIND = "welcome"
SLUG = "welcome"


@dataclass
class Welcomed:
    """What ``send_welcome`` did."""

    send_ids: list[int] = field(default_factory=list)
    queued: int = 0  # subscribers put in a welcome send by this call
    sent: int = 0  # messages accepted by the backend (this call's sends and resumed ones)
    uncertain: int = 0
    failed: int = 0
    not_sent: int = 0  # asked for but welcomed before, or may not receive


def welcome_path(settings: Settings) -> Path:
    return settings.issues_path / WELCOME_FILE


def build_welcome(settings: Settings, *, personal: bool = True) -> Rendered | None:
    """The welcome email rendered (with merge marks when ``personal``); None when the
    project has no welcome file. Errors in it are a one-line ``NewsletterError``."""
    path = welcome_path(settings)
    if not path.is_file():
        return None
    result = build_file(path, settings, personal=personal)
    if result.errors:
        first = result.errors[0]
        raise NewsletterError(
            f"{path}:{first.line}: {first.message}; the welcome email has "
            f"{len(result.errors)} error(s) and is not sent (run `newsletter validate {path}`)")
    assert result.rendered is not None
    return result.rendered


def _by_list(conn: sa.Connection, subscriber_ids: list[int]) -> dict[int, list[int]]:
    """Subscribers not welcomed yet who may receive, by the lowest list they may receive."""
    rows = conn.execute(
        sa.select(subscribers.c.id, sa.func.min(memberships.c.list_id))
        .join(memberships, memberships.c.subscriber_id == subscribers.c.id)
        .where(subscribers.c.id.in_(subscriber_ids), subscribers.c.welcomed_at.is_(None),
               receives())
        .group_by(subscribers.c.id)).all()
    groups: dict[int, list[int]] = defaultdict(list)
    for subscriber_id, list_id in rows:
        groups[list_id].append(subscriber_id)
    return groups


def _queue(engine: Engine, settings: Settings, rendered: Rendered, list_id: int,
           candidates: list[int], backend: str) -> tuple[int, int] | None:
    """One transaction: mark the candidates who still qualify as welcomed and create the
    send of exactly them. Returns (send id, recipients) or None when nobody qualified."""
    from ..delivery import ledger

    member = sa.exists().where(memberships.c.list_id == list_id,
                               memberships.c.subscriber_id == subscribers.c.id, receives())
    with transaction(engine) as conn:
        claimed = conn.execute(
            sa.update(subscribers)
            .where(subscribers.c.id.in_(candidates), subscribers.c.welcomed_at.is_(None),
                   member)
            .values(welcomed_at=utcnow()).returning(subscribers.c.id)).scalars().all()
        if not claimed:
            return None
        name = conn.execute(sa.select(lists.c.name).where(lists.c.id == list_id)).scalar_one()
        send_id = ledger.create_send(
            conn, kind=KIND, issue_path=str(welcome_path(settings)), issue_slug=SLUG,
            subject=rendered.subject, list_id=list_id, list_name=name, backend=backend,
            html=rendered.html, text=rendered.text,
            recipient_filter=subscribers.c.id.in_(claimed))
        total = conn.execute(sa.select(sends.c.total).where(sends.c.id == send_id)).scalar_one()
    return send_id, total


def unfinished(engine: Engine) -> list[int]:
    """Welcome sends not finished (a crash, a backend that was down), oldest first."""
    with engine.connect() as conn:
        return list(conn.execute(
            sa.select(sends.c.id).where(sends.c.kind == KIND, sends.c.status == "sending")
            .order_by(sends.c.id)).scalars())


def _run(engine: Engine, settings: Settings, send_id: int, result: Welcomed, **options
         ) -> None:
    from ..delivery import sending

    info = sending.run(engine, settings, send_id, **options)
    result.sent += info.counts.get("sent", 0)
    result.uncertain += info.counts.get("uncertain", 0)
    result.failed += info.counts.get("failed", 0) + info.counts.get("temporary", 0)


def resume_welcomes(engine: Engine, settings: Settings, *, backend: str | None = None,
                    workers: int | None = None, resend_uncertain: bool = False) -> Welcomed:
    """Finish every unfinished welcome send (after a crash)."""
    result = Welcomed()
    for send_id in unfinished(engine):
        result.send_ids.append(send_id)
        _run(engine, settings, send_id, result, backend=backend, workers=workers,
             resend_uncertain=resend_uncertain)
    return result


def send_welcome(engine: Engine, settings: Settings, subscriber_ids: Iterable[int], *,
                 backend: str | None = None, workers: int | None = None) -> Welcomed:
    """Welcome these subscribers (those not welcomed yet who may receive), exactly once
    each; first finish any welcome send a crash left unfinished. Without a welcome file
    nothing is sent (and nobody is marked welcomed)."""
    from ..delivery import sending

    ids = sorted({int(i) for i in subscriber_ids})
    result = resume_welcomes(engine, settings, backend=backend, workers=workers)
    if not welcome_path(settings).is_file():
        result.not_sent += len(ids)
        return result
    # the same checks as an issue's send: no errors, sender, postal address, secret ...
    rendered = sending.preflight(settings, welcome_path(settings), backend=backend).rendered
    chosen = backend or settings.backend
    with engine.connect() as conn:
        groups = _by_list(conn, ids)
    for list_id, candidates in sorted(groups.items()):
        queued = _queue(engine, settings, rendered, list_id, candidates, chosen)
        if queued is None:
            continue
        send_id, total = queued
        result.send_ids.append(send_id)
        result.queued += total
        _run(engine, settings, send_id, result, backend=backend, workers=workers)
    result.not_sent += len(ids) - result.queued
    return result
