"""Finding due schedules and claiming them: starting, continuing and settling sends.

Starting a send is one transaction: the schedule row goes ``scheduled -> sending`` by a
conditional UPDATE (``schedules.transition``), the ledger snapshots the recipients and
the send id is stored on the row. Whichever worker process's UPDATE matches starts it;
every other one (PostgreSQL, any machine) finds the row ``sending`` and joins the send,
sharing its batches through the ledger (``FOR UPDATE SKIP LOCKED``).

The issue is read, validated and rendered again when it is due (late typo fixes go out);
if it no longer validates the schedule is ``failed`` with its findings. A schedule more
than ``schedule_grace_hours`` late when a worker process sees it is ``missed``.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import sqlalchemy as sa

from newsletter.audience.lists import get_list
from newsletter.db.transactions import DB, aware, transaction
from newsletter.delivery import ledger
from newsletter.errors import NewsletterError
from newsletter.scheduling.sendtimes import iso

from .context import WorkerContext
from .log import event
from .schedules import ScheduleInfo, get_schedule, info_of, issue_file, transition
from .tables import schedules
from .waves import FirstWave, first_wave, pending_waves, release_waves

if TYPE_CHECKING:  # the send machinery loads when a send is due, not for `schedule list`
    from newsletter.delivery import sending

RETRY_AFTER = dt.timedelta(seconds=30)  # a send stopped by an unavailable backend


def due_schedules(db: DB, now: dt.datetime) -> list[ScheduleInfo]:
    """Schedules to look at now: those sending, and those scheduled and due."""
    with transaction(db) as conn:
        rows = conn.execute(
            sa.select(schedules).where(
                sa.or_(schedules.c.status == "sending",
                       sa.and_(schedules.c.status == "scheduled",
                               schedules.c.due_at <= now)))
            .order_by(schedules.c.due_at, schedules.c.id)
        ).all()
    return [info_of(row) for row in rows]


def next_due(db: DB) -> dt.datetime | None:
    """When the soonest scheduled send is due."""
    with transaction(db) as conn:
        due = conn.execute(sa.select(sa.func.min(schedules.c.due_at))
                           .where(schedules.c.status == "scheduled")).scalar()
    return aware(due)


def _hours(delta: dt.timedelta) -> str:
    return f"{delta.total_seconds() / 3600:.1f} h"


def _missed(ctx: WorkerContext, info: ScheduleInfo, now: dt.datetime) -> bool:
    """Mark a fixed-time schedule beyond the grace period ``missed``; True when it is."""
    late = now - info.due_at
    if late <= ctx.grace or info.local_time:
        return False
    with transaction(ctx.engine) as conn:
        won = transition(conn, info, "missed", finished_at=now, note=(
            f"due {info.due_at:%Y-%m-%d %H:%M} UTC, no worker ran until "
            f"{now:%Y-%m-%d %H:%M} UTC ({_hours(late)} late, grace "
            f"{_hours(ctx.grace)}): `newsletter schedule move {info.id} --at ...` or "
            "`newsletter send`"))
    if won:
        event("schedule.missed", schedule=info.id, issue=info.issue_path,
              due_at=iso(info.due_at), late_seconds=int(late.total_seconds()))
    return True


def _findings(ctx: WorkerContext, path: Path) -> list[str]:
    """Every error of the issue as 'file:line: message' (validation only, no render)."""
    from newsletter.authoring.build import build_file

    try:
        result = build_file(path, ctx.settings, render_html=False)
    except NewsletterError as exc:
        return [str(exc)]
    return [f"{f.path}:{f.line}: {f.message}" for f in result.errors]


@dataclass
class Ready:
    """A due schedule whose issue, list and backend passed the checks again."""

    path: Path
    prepared: sending.Prepared
    list_id: int
    list_name: str


def _ready(ctx: WorkerContext, info: ScheduleInfo, now: dt.datetime) -> Ready | None:
    """Check the issue, list and backend again; a schedule that fails is ``failed``."""
    from newsletter.delivery import sending
    from newsletter.delivery.backends import get_backend

    path = issue_file(ctx.settings, info.issue_path)
    try:
        prepared = sending.preflight(ctx.settings, path, backend=info.backend)
        get_backend(ctx.settings, info.backend)
        mailing_list = get_list(ctx.engine, info.list_name)
    except NewsletterError as exc:
        findings = _findings(ctx, path)
        with transaction(ctx.engine) as conn:
            won = transition(conn, info, "failed", finished_at=now,
                             note="\n".join([str(exc), *findings]))
        if won:
            event("schedule.failed", schedule=info.id, issue=info.issue_path,
                  error=str(exc), findings=findings)
        return None
    return Ready(path, prepared, mailing_list.id, mailing_list.name)


def _create_send(ctx: WorkerContext, info: ScheduleInfo, ready: Ready, wave: FirstWave,
                 now: dt.datetime) -> int | None:
    """Claim the schedule and create its send in one transaction; None when another
    worker process claimed it first, or the issue went out meanwhile (``failed``)."""
    prepared = ready.prepared
    with transaction(ctx.engine) as conn:
        if not transition(conn, info, "sending", worker_id=ctx.worker_id, started_at=now,
                          waves=wave.waves, due_at=wave.next_due):
            return None
        latest = ledger.find_latest(conn, prepared.slug, ready.list_id, prepared.identity)
        if latest is not None and (not info.again or latest.created_at >= info.created_at):
            from newsletter.delivery import sending

            message = (f"{sending.already_sent(latest, prepared, info.list_name)}, "
                       "not by this schedule")
            conn.execute(schedules.update().where(schedules.c.id == info.id)
                         .values(status="failed", finished_at=now, note=message))
            event("schedule.failed", schedule=info.id, issue=info.issue_path,
                  error=message, findings=[])
            return None
        tracked = prepared.tracked(ctx.settings, ready.list_name)  # click tracking
        send_id = ledger.create_send(
            conn, kind="real", issue_path=str(ready.path), issue_slug=prepared.slug,
            subject=prepared.rendered.subject, list_id=ready.list_id,
            list_name=ready.list_name, backend=info.backend or ctx.settings.backend,
            html=tracked.rendered.html, text=tracked.rendered.text,
            recipient_filter=wave.recipient_filter, identity=prepared.identity,
        )
        from newsletter.delivery import tracking, variants  # only when a send starts

        tracking.store(conn, send_id, tracked.links)
        plan = None if info.local_time else variants.plan_of_stored(
            info.subject_test, prepared.subject_variants)
        if plan is not None:  # in the transaction that snapshotted the recipients
            counts = variants.start_test(conn, send_id, plan.subjects, plan.share,
                                         now + plan.after, plan.seed)
            event("subject_test.started", schedule=info.id, send=send_id,
                  decide_at=iso(now + plan.after), **counts)
        conn.execute(schedules.update().where(schedules.c.id == info.id)
                     .values(send_id=send_id))
    return send_id


def _publish(ctx: WorkerContext, info: ScheduleInfo, ready: Ready, send_id: int) -> None:
    """The web archive's generic copy, as sent (what `newsletter send` stores too)."""
    from newsletter.delivery.archive import publish_send

    try:
        publish_send(ctx.engine, ctx.settings, ready.path, send_id, ready.prepared.slug)
    except NewsletterError as exc:  # the send goes on; the archive can be backfilled
        event("archive.failed", schedule=info.id, error=str(exc))


def start(ctx: WorkerContext, info: ScheduleInfo, now: dt.datetime) -> int | None:
    """A schedule due now: ``missed``, ``failed``, waiting for its first wave, or its send
    created by this worker process (its id returned: the caller runs it)."""
    if _missed(ctx, info, now):
        return None
    ready = _ready(ctx, info, now)
    if ready is None:
        return None
    wave = first_wave(ctx, info, ready.list_id, now)
    if wave is None:
        return None
    send_id = _create_send(ctx, info, ready, wave, now)
    if send_id is None:
        return None
    _publish(ctx, info, ready, send_id)
    send = ledger.get_send(ctx.engine, send_id)
    event("send.started", schedule=info.id, send=send_id, issue=info.issue_path,
          list=info.list_name, recipients=send.total, backend=send.backend,
          due_at=iso(info.due_at),
          late_seconds=round((ctx.clock.now() - info.due_at).total_seconds(), 3),
          warnings=ready.prepared.warnings)
    return send_id


def resume(ctx: WorkerContext, info: ScheduleInfo, now: dt.datetime) -> int | None:
    """A schedule already sending: release due waves, then the id of its send when
    recipients are pending (the caller joins it), else settle it."""
    if info.send_id is None:
        return None
    if info.local_time:
        release_waves(ctx, info, now)
    ledger.reconcile(ctx.engine, info.send_id)  # dead peers' batches, from journals
    send = ledger.get_send(ctx.engine, info.send_id)
    if send.status == "cancelled":
        return None
    if send.counts.get("pending", 0):
        event("send.resumed", schedule=info.id, send=send.id,
              pending=send.counts.get("pending", 0))
        return send.id
    settle(ctx, info.id, now)
    return None


def settle(ctx: WorkerContext, schedule_id: int, now: dt.datetime) -> None:
    """Mark the schedule sent once its send is finished and no wave is to come."""
    info = get_schedule(ctx.engine, schedule_id)
    if info.status != "sending" or info.send_id is None:
        return
    if not ledger.finish_if_done(ctx.engine, info.send_id):
        return  # a live peer still has batches in flight, or recipients are pending
    if info.local_time and pending_waves(ctx, info):
        return
    with transaction(ctx.engine) as conn:
        won = transition(conn, info, "sent", finished_at=now)
    if won:
        _finished(info, ledger.get_send(ctx.engine, info.send_id))


def _finished(info: ScheduleInfo, send: ledger.SendInfo) -> None:
    c = send.counts
    fields: dict[str, Any] = dict(
        schedule=info.id, send=send.id, status=send.status, sent=c.get("sent", 0),
        failed=c.get("failed", 0) + c.get("temporary", 0), skipped=c.get("skipped", 0),
        uncertain=c.get("uncertain", 0))
    if c.get("uncertain", 0) or c.get("temporary", 0):
        fields["hint"] = (f"`newsletter sends show {send.id}` lists them; `newsletter send "
                          f"--retry-failed {send.id}` resends them")
    event("send.finished", **fields)
