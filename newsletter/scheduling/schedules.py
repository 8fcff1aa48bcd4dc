"""Schedules: creating, reading, listing, moving and cancelling them.

``schedule_issue(engine, settings, issue, list_name, at=...)`` checks the issue and the
configuration now (``delivery.sending.preflight``), turns ``--at`` (or the issue's ``send_at``)
into a UTC instant in the given time zone (``newsletter.scheduling.sendtimes``) and stores a
``schedules`` row; a running ``newsletter worker`` (``scheduling.worker``) sends it.
``cancel`` ends a schedule and asks the ledger to stop its send if it started; ``move``
gives one that has not started a new time.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import sqlalchemy as sa
from sqlalchemy.engine import Engine

from newsletter.audience.lists import get_list
from newsletter.config import Settings
from newsletter.db.transactions import DB, aware, transaction
from newsletter.delivery import ledger
from newsletter.errors import NewsletterError, ScheduleNotFound, UsageError
from newsletter.scheduling.sendtimes import When, parse_at, wave_at, zone_info, zone_waves

from .clock import SYSTEM_CLOCK, Clock

if TYPE_CHECKING:  # the send machinery loads only to schedule: `schedule list` starts fast
    from newsletter.delivery import sending, variants
from .tables import OPEN, schedules


def no_waves() -> dict[str, list[str]]:
    """The wave record of a local-time schedule before any wave went out."""
    return {"done": [], "missed": []}


@dataclass
class ScheduleInfo:
    id: int
    issue_path: str
    list_name: str
    backend: str | None
    zone: str
    wall: str
    due_at: dt.datetime
    local_time: bool
    again: bool
    source: str
    status: str
    send_id: int | None
    worker_id: str | None
    waves: dict[str, list[str]] | None
    note: str | None
    created_at: dt.datetime
    started_at: dt.datetime | None
    finished_at: dt.datetime | None
    send: ledger.SendInfo | None = None
    subject_test: dict | None = None  # the test's options (delivery.variants.stored_options)

    @property
    def due_local(self) -> dt.datetime:
        return self.due_at.astimezone(zone_info(self.zone))

    @property
    def wall_time(self) -> dt.datetime:
        """The wall-clock time asked for, naive, in ``zone`` (or each subscriber's)."""
        return dt.datetime.strptime(self.wall, "%Y-%m-%d %H:%M:%S")


def info_of(row: sa.Row) -> ScheduleInfo:
    return ScheduleInfo(
        id=row.id, issue_path=row.issue_path, list_name=row.list_name, backend=row.backend,
        zone=row.zone, wall=row.wall, due_at=aware(row.due_at),  # type: ignore[arg-type]
        local_time=bool(row.local_time), again=bool(row.again), source=row.source,
        status=row.status, send_id=row.send_id, worker_id=row.worker_id,
        waves=row.waves, note=row.note, created_at=aware(row.created_at),  # type: ignore[arg-type]
        started_at=aware(row.started_at), finished_at=aware(row.finished_at),
        subject_test=row.subject_test,
    )


def get_schedule(db: DB, schedule_id: int) -> ScheduleInfo:
    with transaction(db) as conn:
        row = conn.execute(sa.select(schedules).where(schedules.c.id == schedule_id)).first()
    if row is None:
        raise ScheduleNotFound(
            f"no schedule with id {schedule_id}; `newsletter schedule list` shows them"
        )
    info = info_of(row)
    if info.send_id is not None:
        info.send = ledger.get_send(db, info.send_id)
    return info


def list_schedules(db: DB, *, limit: int = 50) -> list[ScheduleInfo]:
    """Open schedules (soonest first), then the most recent others."""
    with transaction(db) as conn:
        upcoming = conn.execute(
            sa.select(schedules).where(schedules.c.status.in_(OPEN))
            .order_by(schedules.c.due_at, schedules.c.id)
        ).all()
        recent = conn.execute(
            sa.select(schedules).where(schedules.c.status.notin_(OPEN))
            .order_by(schedules.c.id.desc()).limit(limit)
        ).all()
        infos = [info_of(r) for r in [*upcoming, *recent]]
        for info in infos:
            if info.send_id is not None:
                info.send = ledger.get_send(conn, info.send_id)
    return infos


def transition(conn: sa.Connection, info: ScheduleInfo, status: str, **values: object
               ) -> bool:
    """Move the schedule from the status ``info`` saw to ``status``; False when it
    changed meanwhile (another worker process, or ``cancel``, got there first)."""
    return bool(conn.execute(
        schedules.update().where(schedules.c.id == info.id,
                                 schedules.c.status == info.status)
        .values(status=status, **values)
    ).rowcount)


def _relative(settings: Settings, path: Path) -> str:
    resolved = path.resolve()
    try:
        return str(resolved.relative_to(settings.project_dir.resolve()))
    except ValueError:
        return str(resolved)


def issue_file(settings: Settings, stored: str) -> Path:
    path = Path(stored)
    return path if path.is_absolute() else settings.project_dir / path


def _front_matter_send_at(settings: Settings, path: Path) -> str | None:
    from newsletter.authoring.build import build_file

    issue = build_file(path, settings, render_html=False).issue
    return None if issue is None else issue.send_at


@dataclass
class Planned:
    schedule: ScheduleInfo
    when: When
    source: str  # which one won: "--at" or "send_at"
    other: str | None  # the one that lost, when both were given
    waves: list[tuple[dt.datetime, int]] = field(default_factory=list)  # (UTC, zones)
    warnings: int = 0
    subject_test: variants.Plan | None = None  # the subject test the worker will run


def wave_plan(db: DB, list_id: int, wall: dt.datetime, zone: str
              ) -> list[tuple[dt.datetime, int]]:
    """The local-time waves of a list: (UTC instant, how many zones), soonest first."""
    counts: dict[dt.datetime, int] = {}
    for at in zone_waves(db, list_id, wall, zone).values():
        counts[at] = counts.get(at, 0) + 1
    if not counts:
        counts[wave_at(wall, zone_info(zone))] = 1
    return sorted(counts.items())


def resolve_time(settings: Settings, issue_path: Path, at: str | None, tz: str | None
                 ) -> tuple[When, str, str | None]:
    """The send time from ``--at`` or the issue's ``send_at`` (``--at`` wins)."""
    zone = tz or settings.timezone
    zone_info(zone)
    send_at = _front_matter_send_at(settings, issue_path)
    if at is None and send_at is None:
        raise UsageError(
            f"{issue_path}: no send time: give --at 'YYYY-MM-DD HH:MM' or add "
            "'send_at: YYYY-MM-DD HH:MM' to its front matter"
        )
    if at is not None:
        return parse_at(at, zone, what="--at"), "--at", send_at
    assert send_at is not None
    return parse_at(send_at, zone, what=f"{issue_path}: send_at"), "send_at", None


def _check_future(first: dt.datetime, now: dt.datetime, when: When, source: str,
                  local_time: bool) -> None:
    if first > now:
        return
    if local_time:
        raise UsageError(
            f"{source} {when.wall:%Y-%m-%d %H:%M} local time has already passed in some "
            f"subscribers' zones (the first wave is {first:%Y-%m-%d %H:%M} UTC; it is now "
            f"{now:%Y-%m-%d %H:%M} UTC): pick a later date"
        )
    raise UsageError(
        f"{source} {when.wall:%Y-%m-%d %H:%M} {when.zone} is in the past "
        f"({first:%Y-%m-%d %H:%M} UTC; it is now {now:%Y-%m-%d %H:%M} UTC): pick a later "
        "time, or send now with `newsletter send`"
    )


def schedule_issue(
    engine: Engine,
    settings: Settings,
    issue_path: Path | str,
    list_name: str,
    *,
    at: str | None = None,
    tz: str | None = None,
    backend: str | None = None,
    local_time: bool = False,
    again: bool = False,
    clock: Clock = SYSTEM_CLOCK,
    subjects: Sequence[str] = (),
    test_share: str | None = None,
    decide_after: str | None = None,
) -> Planned:
    """Check the issue and configuration now and store the schedule. A subject test
    (``subjects``, else the issue's ``subject_variants``; ``test_share``, ``decide_after``
    as ``newsletter send`` takes them) is kept with it; the worker runs it when due."""
    from newsletter.delivery import sending, variants
    from newsletter.delivery.backends import get_backend

    path = Path(issue_path)
    prepared = sending.preflight(settings, path, backend=backend)
    plan = variants.plan_for(prepared.subject_variants, subjects, test_share, decide_after)
    mailing_list = get_list(engine, list_name)
    get_backend(settings, backend)  # the backend's own settings (URL, key) are checked now
    when, source, other = resolve_time(settings, path, at, tz)
    if local_time:
        _local_time_allowed(path, plan, when)
    now = clock.now()
    waves = wave_plan(engine, mailing_list.id, when.wall, when.zone) if local_time else []
    first = waves[0][0] if waves else when.due_at
    _check_future(first, now, when, source, local_time)
    stored = _relative(settings, path)
    latest = ledger.find_latest(engine, prepared.slug, mailing_list.id, prepared.identity)
    if latest is not None and not again:
        raise UsageError(
            f"{sending.already_sent(latest, prepared, list_name)}; add --again to schedule "
            "it once more"
        )
    with transaction(engine) as conn:
        clash = _scheduled_same(conn, settings, mailing_list.name, stored, prepared)
        if clash is not None:
            raise UsageError(
                f"{path}: already scheduled for list {list_name!r} by schedule {clash[0]} "
                f"({clash[1]}); `newsletter schedule move {clash[0]} --at ...` changes its time"
            )
        schedule_id = conn.execute(
            schedules.insert().values(
                issue_path=stored, list_name=mailing_list.name, backend=backend,
                zone=when.zone, wall=f"{when.wall:%Y-%m-%d %H:%M:%S}", due_at=first,
                local_time=local_time, again=again, source=source, status="scheduled",
                waves=no_waves() if local_time else None, note=when.note, created_at=now,
                subject_test=None if plan is None else variants.stored_options(
                    plan, from_issue=not subjects),
            ).returning(schedules.c.id)
        ).scalar_one()
    return Planned(get_schedule(engine, schedule_id), when, source, other, waves,
                   prepared.warnings, plan)


def _local_time_allowed(path: Path, plan: variants.Plan | None, when: When) -> None:
    """A --local-time schedule needs a wall-clock time and no subject test."""
    if when.fixed:
        raise UsageError(
            "--local-time needs a wall-clock time such as '2026-12-01 06:00', not one with "
            "an offset: it is sent at that time in each subscriber's own zone"
        )
    if plan is not None:
        raise UsageError(
            f"{path}: a subject test sends the winner to the whole rest of the list at once; "
            "--local-time sends in waves through the day: schedule it at one time, or "
            "remove subject_variants (or --subject) to send it in local time")


def _scheduled_same(conn: sa.Connection, settings: Settings, list_name: str, stored: str,
                    prepared: sending.Prepared) -> tuple[int, str] | None:
    """An open schedule of the same issue (this file, or a copy of it) to the list."""
    from newsletter.authoring.build import build_file
    from newsletter.authoring.identity import of_issue

    rows = conn.execute(
        sa.select(schedules.c.id, schedules.c.issue_path).where(
            schedules.c.list_name == list_name, schedules.c.status.in_(OPEN))
    ).all()
    mine = prepared.identity
    for row in rows:
        if row.issue_path == stored:
            return row.id, "this file"
        try:
            issue = build_file(issue_file(settings, row.issue_path), settings,
                               render_html=False).issue
        except NewsletterError:  # its file is gone: the worker will say so
            continue
        if issue is None:
            continue
        theirs = of_issue(issue)
        if mine.issue_key == theirs.issue_key or mine.content_hash == theirs.content_hash:
            return row.id, row.issue_path
    return None


def cancel(db: DB, schedule_id: int, *, clock: Clock = SYSTEM_CLOCK) -> ScheduleInfo:
    """Cancel a schedule that has not started; a started one's send is stopped by the
    ledger (``delivery.ledger.cancel_send``): its batches in flight finish, the rest is skipped."""
    info = get_schedule(db, schedule_id)
    if info.status not in OPEN:
        raise UsageError(f"schedule {schedule_id} is {info.status}: only scheduled or "
                         "sending ones can be cancelled")
    with transaction(db) as conn:
        changed = conn.execute(
            schedules.update().where(schedules.c.id == schedule_id,
                                     schedules.c.status == info.status)
            .values(status="cancelled", finished_at=clock.now(),
                    note="cancelled by `newsletter schedule cancel`")
        ).rowcount
        if changed and info.send_id is not None:
            ledger.cancel_send(conn, info.send_id, reason="the schedule was cancelled")
    if not changed:
        raise UsageError(f"schedule {schedule_id} changed meanwhile; run `newsletter schedule "
                         "list` and try again")
    return get_schedule(db, schedule_id)


def _movable(info: ScheduleInfo) -> None:
    if info.status not in ("scheduled", "missed", "failed"):
        raise UsageError(
            f"schedule {info.id} is {info.status}: only scheduled, missed or failed "
            "schedules can be moved"
        )
    if info.status == "failed" and info.send_id is not None:
        raise UsageError(f"schedule {info.id} started send {info.send_id}: use "
                         f"`newsletter send --resume {info.send_id}`")


def move(db: DB, schedule_id: int, at: str, *, tz: str | None = None,
         clock: Clock = SYSTEM_CLOCK) -> tuple[ScheduleInfo, When]:
    """A new time for a scheduled (or missed / failed) schedule that has not started."""
    info = get_schedule(db, schedule_id)
    _movable(info)
    when = parse_at(at, tz or info.zone)
    if info.local_time and when.fixed:
        raise UsageError("a --local-time schedule needs a wall-clock time, not an offset")
    now = clock.now()
    due = when.due_at
    if info.local_time:
        mailing_list = get_list(db, info.list_name)
        due = wave_plan(db, mailing_list.id, when.wall, when.zone)[0][0]
    if due <= now:
        raise UsageError(f"--at {when.wall:%Y-%m-%d %H:%M} {when.zone} is in the past "
                         f"({due:%Y-%m-%d %H:%M} UTC; now {now:%Y-%m-%d %H:%M} UTC)")
    with transaction(db) as conn:
        changed = conn.execute(
            schedules.update().where(schedules.c.id == schedule_id,
                                     schedules.c.status == info.status)
            .values(status="scheduled", due_at=due, zone=when.zone,
                    wall=f"{when.wall:%Y-%m-%d %H:%M:%S}", source="--at", note=when.note,
                    waves=no_waves() if info.local_time else None,
                    worker_id=None, started_at=None, finished_at=None)
        ).rowcount
    if not changed:
        raise UsageError(f"schedule {schedule_id} started meanwhile; it can no longer move")
    return get_schedule(db, schedule_id), when
