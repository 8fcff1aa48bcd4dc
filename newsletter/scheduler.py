"""Scheduled sends and the worker that starts them on time, once, across restarts.

- ``schedule_issue(engine, settings, issue, list_name, at=...)`` checks the issue and
  the configuration now (``sending.preflight``), turns ``--at`` (or the issue's
  ``send_at``) into a UTC instant in the given time zone and stores a ``schedules`` row.
- ``Worker(engine, settings).run()`` polls the table (every ``worker_poll_seconds``),
  starts each due send in a thread of its own through the delivery ledger and, on
  start, resumes sends a previous worker left unfinished. The issue is read, validated
  and rendered again when it is due (late typo fixes go out); if it no longer validates
  the schedule is ``failed`` with its findings. A schedule more than
  ``schedule_grace_hours`` late when a worker sees it is ``missed``.

Starting a send is one transaction: the schedule row goes ``scheduled -> sending`` by a
conditional UPDATE, the ledger snapshots the recipients and the send id is stored on the
row. Whichever worker's UPDATE matches starts it; every other worker (PostgreSQL, any
machine) finds the row ``sending`` and joins the send, sharing its batches through the
ledger (``FOR UPDATE SKIP LOCKED``). On SQLite a second worker on the same database is
refused, or waits as a standby (``standby=True``) until the first one stops.

Recipients whose batch was in flight in a worker that died (kill -9, power loss) are
``uncertain`` in the ledger: the SMTP or HTTP call went out and no answer was recorded,
and no backend can say afterwards whether the message was delivered. The worker does not
resend them (that could send twice); it finishes the send, logs how many are uncertain
and ``newsletter send --retry-failed ID`` resends them on request.

Times (``--at``, ``send_at``, daylight saving) and ``--local-time`` waves are computed in
``newsletter.sendtimes``. A ``local_time`` schedule sends at the wall-clock time in each
subscriber's own zone (attribute ``timezone``, else the schedule's zone), one wave per
whole-hour UTC offset; every wave adds its subscribers to the one ledger send
(``ledger.add_recipients``), whose primary key keeps each recipient once.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import os
import socket
import threading
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import sqlalchemy as sa
from sqlalchemy.engine import Engine

from . import ledger, sending
from .config import Settings
from .errors import NewsletterError, ScheduleNotFound, UsageError, WorkerRefused
from .sendtimes import (
    When,
    advance_waves,
    iso,
    parse_at,
    wave_at,
    zone_condition,
    zone_info,
    zone_waves,
)
from .slugs import file_slug
from .store import get_list
from .store._db import DB, aware, transaction, utcnow
from .store.tables import schedule_workers, schedules

STATES = ("scheduled", "sending", "sent", "failed", "missed", "cancelled")
OPEN = ("scheduled", "sending")
LEASE = dt.timedelta(seconds=30)
HEARTBEAT = dt.timedelta(seconds=5)
RETRY_AFTER = dt.timedelta(seconds=30)  # a send stopped by an unavailable backend
log = logging.getLogger("newsletter.worker")

# -- clocks ------------------------------------------------------------------------------


class Clock(Protocol):
    def now(self) -> dt.datetime: ...

    def sleep(self, seconds: float, stop: threading.Event) -> bool:
        """Wait up to ``seconds``; True when ``stop`` was set."""
        ...


class SystemClock:
    def now(self) -> dt.datetime:
        return utcnow()

    def sleep(self, seconds: float, stop: threading.Event) -> bool:
        return stop.wait(max(0.0, seconds))


SYSTEM_CLOCK = SystemClock()


# -- schedules ---------------------------------------------------------------------------


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

    @property
    def due_local(self) -> dt.datetime:
        return self.due_at.astimezone(zone_info(self.zone))


def _info(row: sa.Row) -> ScheduleInfo:
    return ScheduleInfo(
        id=row.id, issue_path=row.issue_path, list_name=row.list_name, backend=row.backend,
        zone=row.zone, wall=row.wall, due_at=aware(row.due_at),  # type: ignore[arg-type]
        local_time=bool(row.local_time), again=bool(row.again), source=row.source,
        status=row.status, send_id=row.send_id, worker_id=row.worker_id,
        waves=row.waves, note=row.note, created_at=aware(row.created_at),  # type: ignore[arg-type]
        started_at=aware(row.started_at), finished_at=aware(row.finished_at),
    )


def get_schedule(db: DB, schedule_id: int) -> ScheduleInfo:
    with transaction(db) as conn:
        row = conn.execute(sa.select(schedules).where(schedules.c.id == schedule_id)).first()
    if row is None:
        raise ScheduleNotFound(
            f"no schedule with id {schedule_id}; `newsletter schedule list` shows them"
        )
    info = _info(row)
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
        infos = [_info(r) for r in [*upcoming, *recent]]
        for info in infos:
            if info.send_id is not None:
                info.send = ledger.get_send(conn, info.send_id)
    return infos


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
    from .build import build_file

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


def _wave_plan(db: DB, list_id: int, wall: dt.datetime, zone: str
               ) -> list[tuple[dt.datetime, int]]:
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
) -> Planned:
    """Check the issue and configuration now and store the schedule."""
    from .delivery import get_backend

    path = Path(issue_path)
    prepared = sending.preflight(settings, path, backend=backend)
    mailing_list = get_list(engine, list_name)
    get_backend(settings, backend)  # the backend's own settings (URL, key) are checked now
    when, source, other = resolve_time(settings, path, at, tz)
    if local_time and when.fixed:
        raise UsageError(
            "--local-time needs a wall-clock time such as '2026-12-01 06:00', not one with "
            "an offset: it is sent at that time in each subscriber's own zone"
        )
    now = clock.now()
    waves = _wave_plan(engine, mailing_list.id, when.wall, when.zone) if local_time else []
    first = waves[0][0] if waves else when.due_at
    if first <= now and local_time:
        raise UsageError(
            f"{source} {when.wall:%Y-%m-%d %H:%M} local time has already passed in some "
            f"subscribers' zones (the first wave is {first:%Y-%m-%d %H:%M} UTC; it is now "
            f"{now:%Y-%m-%d %H:%M} UTC): pick a later date"
        )
    if first <= now:
        raise UsageError(
            f"{source} {when.wall:%Y-%m-%d %H:%M} {when.zone} is in the past "
            f"({first:%Y-%m-%d %H:%M} UTC; it is now {now:%Y-%m-%d %H:%M} UTC): pick a later "
            "time, or send now with `newsletter send`"
        )
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
                waves={"done": [], "missed": []} if local_time else None,
                note=when.note, created_at=now,
            ).returning(schedules.c.id)
        ).scalar_one()
    return Planned(get_schedule(engine, schedule_id), when, source, other, waves,
                   prepared.warnings)


def _scheduled_same(conn: sa.Connection, settings: Settings, list_name: str, stored: str,
                    prepared: sending.Prepared) -> tuple[int, str] | None:
    """An open schedule of the same issue (this file, or a copy of it) to the list."""
    from .build import build_file
    from .identity import of_issue

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
    """Cancel a schedule that has not started; a started one is stopped in the ledger."""
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
            # recipients not yet claimed are never sent; batches in flight finish
            conn.execute(
                ledger.send_recipients.update()
                .where(ledger.send_recipients.c.send_id == info.send_id,
                       ledger.send_recipients.c.status == "pending")
                .values(status="skipped", reason="the schedule was cancelled")
            )
            conn.execute(ledger.sends.update().where(ledger.sends.c.id == info.send_id)
                         .values(status="cancelled", finished_at=clock.now()))
    if not changed:
        raise UsageError(f"schedule {schedule_id} changed meanwhile; run `newsletter schedule "
                         "list` and try again")
    return get_schedule(db, schedule_id)


def move(db: DB, schedule_id: int, at: str, *, tz: str | None = None,
         clock: Clock = SYSTEM_CLOCK) -> tuple[ScheduleInfo, When]:
    """A new time for a scheduled (or missed / failed) schedule that has not started."""
    info = get_schedule(db, schedule_id)
    if info.status not in ("scheduled", "missed", "failed"):
        raise UsageError(
            f"schedule {schedule_id} is {info.status}: only scheduled, missed or failed "
            "schedules can be moved"
        )
    if info.status == "failed" and info.send_id is not None:
        raise UsageError(f"schedule {schedule_id} started send {info.send_id}: use "
                         f"`newsletter send --resume {info.send_id}`")
    when = parse_at(at, tz or info.zone)
    if info.local_time and when.fixed:
        raise UsageError("a --local-time schedule needs a wall-clock time, not an offset")
    now = clock.now()
    due = when.due_at
    if info.local_time:
        mailing_list = get_list(db, info.list_name)
        due = _wave_plan(db, mailing_list.id, when.wall, when.zone)[0][0]
    if due <= now:
        raise UsageError(f"--at {when.wall:%Y-%m-%d %H:%M} {when.zone} is in the past "
                         f"({due:%Y-%m-%d %H:%M} UTC; now {now:%Y-%m-%d %H:%M} UTC)")
    with transaction(db) as conn:
        changed = conn.execute(
            schedules.update().where(schedules.c.id == schedule_id,
                                     schedules.c.status == info.status)
            .values(status="scheduled", due_at=due, zone=when.zone,
                    wall=f"{when.wall:%Y-%m-%d %H:%M:%S}", source="--at", note=when.note,
                    waves={"done": [], "missed": []} if info.local_time else None,
                    worker_id=None, started_at=None, finished_at=None)
        ).rowcount
    if not changed:
        raise UsageError(f"schedule {schedule_id} started meanwhile; it can no longer move")
    return get_schedule(db, schedule_id), when


# -- workers -----------------------------------------------------------------------------


@dataclass
class WorkerInfo:
    id: str
    host: str
    pid: int
    state: str
    detail: str | None
    started_at: dt.datetime
    heartbeat_at: dt.datetime


def _stamp(value: dt.datetime) -> dt.datetime:
    stamp = aware(value)
    assert stamp is not None
    return stamp


def _alive(row: sa.Row, now: dt.datetime) -> bool:
    beat = _stamp(row.heartbeat_at)
    if row.stopped_at is not None or beat < now - LEASE:
        return False
    if row.host == socket.gethostname()[:255]:
        return ledger._pid_alive(row.pid)
    return True


def live_workers(db: DB, *, clock: Clock = SYSTEM_CLOCK) -> list[WorkerInfo]:
    now = clock.now()
    with transaction(db) as conn:
        rows = conn.execute(sa.select(schedule_workers)
                            .where(schedule_workers.c.stopped_at.is_(None))).all()
    return [WorkerInfo(r.id, r.host, r.pid, r.state, r.detail, _stamp(r.started_at),
                       _stamp(r.heartbeat_at)) for r in rows if _alive(r, now)]


def _event(event: str, **fields: Any) -> None:
    """One structured line per event: JSON with the time, the event and its fields."""
    level = logging.ERROR if event.endswith(("failed", "missed")) else logging.INFO
    line = {"ts": iso(utcnow()), "level": logging.getLevelName(level).lower(),
            "event": event, **fields}
    log.log(level, json.dumps(line, default=str))


class Worker:
    """Polls the schedules, starts due sends, resumes unfinished ones; see module docs."""

    def __init__(
        self,
        engine: Engine,
        settings: Settings,
        *,
        clock: Clock = SYSTEM_CLOCK,
        stop: threading.Event | None = None,
        standby: bool = False,
        workers: int | None = None,
        retry_delay: float = 2.0,
        on_started: Callable[[int, int], None] | None = None,
    ) -> None:
        self.engine = engine
        self.settings = settings
        self.clock = clock
        self.stop = stop or threading.Event()
        self.standby = standby
        self.workers = workers
        self.retry_delay = retry_delay
        self.on_started = on_started  # (schedule id, send id), for tests and reports
        self.sqlite = engine.dialect.name == "sqlite"
        self.id = uuid.uuid4().hex
        self.poll = settings.worker_poll_seconds
        self.grace = dt.timedelta(hours=settings.schedule_grace_hours)
        self.running: dict[int, threading.Thread] = {}
        self.not_before: dict[int, dt.datetime] = {}
        self.last_beat: dt.datetime | None = None
        self.last_tick: dt.datetime | None = None
        self.registered = False
        self._lock = threading.Lock()

    # -- life cycle ---------------------------------------------------------------------

    def register(self) -> bool:
        """Record this worker; on SQLite only when no other live worker is there."""
        now = self.clock.now()
        with self.engine.begin() as conn:  # SQLite: BEGIN IMMEDIATE serialises this check
            if self.sqlite:
                others = [r for r in conn.execute(
                    sa.select(schedule_workers).where(schedule_workers.c.stopped_at.is_(None))
                ) if _alive(r, now)]
                if others:
                    return False
            conn.execute(schedule_workers.insert().values(
                id=self.id, host=socket.gethostname()[:255], pid=os.getpid(), state="idle",
                started_at=now, heartbeat_at=now))
        self.registered = True
        self.last_beat = now
        return True

    def start(self) -> None:
        """Register, or refuse / wait as a standby when another worker has the SQLite file."""
        if self.register():
            _event("worker.started", worker=self.id, pid=os.getpid(),
                   database=self.engine.dialect.name, poll_seconds=self.poll)
            return
        other = live_workers(self.engine, clock=self.clock)
        who = (f"worker {other[0].id[:8]} (pid {other[0].pid} on {other[0].host})"
               if other else "another worker")
        if not self.standby:
            raise WorkerRefused(
                f"{who} is already running on this SQLite database; one worker per SQLite "
                "file: stop it first, or start this one with --standby to take over when it "
                "stops (PostgreSQL allows several workers)"
            )
        _event("worker.standby", worker=self.id, waiting_for=who)
        while not self.clock.sleep(self.poll, self.stop):
            if self.register():
                _event("worker.started", worker=self.id, pid=os.getpid(),
                       database=self.engine.dialect.name, took_over=True)
                return

    def run(self) -> None:
        """Run until ``stop`` is set; then let the batches in flight finish and exit."""
        self.start()
        if not self.registered:
            return
        try:
            while not self.stop.is_set():
                try:
                    self.tick()
                    wait = self.next_wait()
                except sa.exc.SQLAlchemyError as exc:  # the database restarts: try again
                    _event("worker.error", worker=self.id, error=_first_line(exc),
                           retry_in_seconds=self.poll)
                    wait = self.poll
                if self.clock.sleep(wait, self.stop):
                    break
        finally:
            self.shutdown()

    def shutdown(self) -> None:
        self.stop.set()
        self.wait_idle()
        if self.registered:
            now = self.clock.now()
            with transaction(self.engine) as conn:
                conn.execute(schedule_workers.update().where(schedule_workers.c.id == self.id)
                             .values(stopped_at=now, heartbeat_at=now, state="stopped",
                                     detail=None))
            self.registered = False
            _event("worker.stopped", worker=self.id)

    def wait_idle(self, timeout: float | None = None) -> None:
        """Wait for the sends this worker is running (tests call it after ``tick``)."""
        for thread in list(self.running.values()):
            thread.join(timeout)
        self._reap()

    def next_wait(self) -> float:
        """Seconds until the next look: the poll interval, or less when a send is due."""
        with transaction(self.engine) as conn:
            due = conn.execute(sa.select(sa.func.min(schedules.c.due_at))
                               .where(schedules.c.status == "scheduled")).scalar()
        wait = self.poll
        if due is not None:
            due = _stamp(due)
            seen = self.last_tick is not None and due <= self.last_tick  # and left as it is
            if not seen:
                wait = min(wait, (due - self.clock.now()).total_seconds())
        return max(0.0, wait)

    # -- one look -----------------------------------------------------------------------

    def tick(self) -> None:
        """Heartbeat, settle finished sends, resume unfinished ones, start due ones."""
        now = self.clock.now()
        self.last_tick = now
        self._reap()
        self._heartbeat(now)
        with transaction(self.engine) as conn:
            rows = conn.execute(
                sa.select(schedules).where(
                    sa.or_(schedules.c.status == "sending",
                           sa.and_(schedules.c.status == "scheduled",
                                   schedules.c.due_at <= now)))
                .order_by(schedules.c.due_at, schedules.c.id)
            ).all()
        for row in rows:
            if self.stop.is_set():
                return
            info = _info(row)
            if self.not_before.get(info.id, now) > now:
                continue
            try:
                if info.status == "scheduled":
                    self._start(info, now)
                elif info.id not in self.running:
                    self._continue(info, now)
            except sa.exc.SQLAlchemyError:
                raise  # the database itself: the loop logs it and tries again
            except Exception as exc:  # one bad schedule must not stop the others
                self.not_before[info.id] = now + RETRY_AFTER
                _event("schedule.error", schedule=info.id, error=f"{type(exc).__name__}: {exc}",
                       retry_in_seconds=int(RETRY_AFTER.total_seconds()))

    def _heartbeat(self, now: dt.datetime, force: bool = False) -> None:
        if not self.registered:
            return
        if not force and self.last_beat is not None and now - self.last_beat < HEARTBEAT:
            return
        with self._lock:
            busy = sorted(self.running)
        detail = ("schedule " + ", ".join(str(i) for i in busy)) if busy else None
        with transaction(self.engine) as conn:
            conn.execute(schedule_workers.update().where(schedule_workers.c.id == self.id)
                         .values(heartbeat_at=now, state="sending" if busy else "idle",
                                 detail=detail))
        self.last_beat = now

    def _reap(self) -> None:
        for schedule_id, thread in list(self.running.items()):
            if not thread.is_alive():
                with self._lock:
                    self.running.pop(schedule_id, None)

    def _set(self, conn: sa.Connection, info: ScheduleInfo, status: str, **values: Any
             ) -> bool:
        return bool(conn.execute(
            schedules.update().where(schedules.c.id == info.id,
                                     schedules.c.status == info.status)
            .values(status=status, **values)
        ).rowcount)

    def _start(self, info: ScheduleInfo, now: dt.datetime) -> None:
        late = now - info.due_at
        if late > self.grace and not info.local_time:
            with transaction(self.engine) as conn:
                won = self._set(conn, info, "missed", finished_at=now, note=(
                    f"due {info.due_at:%Y-%m-%d %H:%M} UTC, no worker ran until "
                    f"{now:%Y-%m-%d %H:%M} UTC ({_hours(late)} late, grace "
                    f"{_hours(self.grace)}): `newsletter schedule move {info.id} --at ...` or "
                    "`newsletter send`"))
            if won:
                _event("schedule.missed", schedule=info.id, issue=info.issue_path,
                       due_at=iso(info.due_at), late_seconds=int(late.total_seconds()))
            return
        path = issue_file(self.settings, info.issue_path)
        try:
            prepared = sending.preflight(self.settings, path, backend=info.backend)
            from .delivery import get_backend

            get_backend(self.settings, info.backend)
            mailing_list = get_list(self.engine, info.list_name)
        except NewsletterError as exc:
            findings = _findings(self.settings, path)
            with transaction(self.engine) as conn:
                won = self._set(conn, info, "failed", finished_at=now,
                                note="\n".join([str(exc), *findings]))
            if won:
                _event("schedule.failed", schedule=info.id, issue=info.issue_path,
                       error=str(exc), findings=findings)
            return
        waves: dict[str, list[str]] | None = None
        recipient_filter = None
        next_due = info.due_at
        if info.local_time:
            zones = zone_waves(self.engine, mailing_list.id, _wall(info), info.zone)
            waves, due_zones, pending = advance_waves(info.waves, zones, now, self.grace)
            next_due = pending[0] if pending else info.due_at
            if not due_zones:
                with transaction(self.engine) as conn:
                    if pending:  # nobody's wave is due yet (zones changed): wait for it
                        self._set(conn, info, "scheduled", due_at=pending[0], waves=waves)
                    else:
                        won = self._set(conn, info, "missed", finished_at=now, waves=waves,
                                        note="every wave was more than the grace period late")
                        if won:
                            _event("schedule.missed", schedule=info.id, issue=info.issue_path,
                                   due_at=iso(info.due_at))
                return
            recipient_filter = zone_condition(due_zones)
        with transaction(self.engine) as conn:
            if not self._set(conn, info, "sending", worker_id=self.id, started_at=now,
                             waves=waves, due_at=next_due):
                return  # another worker started it first
            latest = ledger.find_latest(conn, prepared.slug, mailing_list.id,
                                        prepared.identity)
            if latest is not None and (not info.again or latest.created_at >= info.created_at):
                message = (f"{sending.already_sent(latest, prepared, info.list_name)}, "
                           "not by this schedule")
                conn.execute(schedules.update().where(schedules.c.id == info.id)
                             .values(status="failed", finished_at=now, note=message))
                _event("schedule.failed", schedule=info.id, issue=info.issue_path,
                       error=message, findings=[])
                return
            send_id = ledger.create_send(
                conn, kind="real", issue_path=str(path), issue_slug=prepared.slug,
                subject=prepared.rendered.subject, list_id=mailing_list.id,
                list_name=mailing_list.name, backend=info.backend or self.settings.backend,
                html=prepared.rendered.html, text=prepared.rendered.text,
                recipient_filter=recipient_filter, identity=prepared.identity,
            )
            conn.execute(schedules.update().where(schedules.c.id == info.id)
                         .values(send_id=send_id))
        self._publish(info, path, send_id, prepared.slug)
        send = ledger.get_send(self.engine, send_id)
        _event("send.started", schedule=info.id, send=send_id, issue=info.issue_path,
               list=info.list_name, recipients=send.total, backend=send.backend,
               due_at=iso(info.due_at),
               late_seconds=round((self.clock.now() - info.due_at).total_seconds(), 3),
               warnings=prepared.warnings)
        if self.on_started is not None:
            self.on_started(info.id, send_id)
        self._spawn(info.id, send_id)

    def _publish(self, info: ScheduleInfo, path: Path, send_id: int, slug: str) -> None:
        """The web archive's generic copy, as sent (what `newsletter send` stores too)."""
        from .archive import publish_send

        try:
            publish_send(self.engine, self.settings, path, send_id, slug)
        except NewsletterError as exc:  # the send goes on; the archive can be backfilled
            _event("archive.failed", schedule=info.id, error=str(exc))

    def _continue(self, info: ScheduleInfo, now: dt.datetime) -> None:
        """A schedule already sending: release due waves, join its send, or settle it."""
        if info.send_id is None:
            return
        if info.local_time:
            self._release_waves(info, now)
        ledger.reconcile(self.engine, info.send_id)  # dead peers' batches -> uncertain
        send = ledger.get_send(self.engine, info.send_id)
        if send.status == "cancelled":
            return
        if send.counts.get("pending", 0):
            _event("send.resumed", schedule=info.id, send=send.id,
                   pending=send.counts.get("pending", 0))
            self._spawn(info.id, send.id)
            return
        self._settle(info.id, now)

    def _settle(self, schedule_id: int, now: dt.datetime) -> None:
        """Mark the schedule sent once its send is finished and no wave is to come."""
        info = get_schedule(self.engine, schedule_id)
        if info.status != "sending" or info.send_id is None:
            return
        if not ledger.finish_if_done(self.engine, info.send_id):
            return  # a live peer still has batches in flight, or recipients are pending
        if info.local_time and self._pending_waves(info):
            return
        with transaction(self.engine) as conn:
            won = self._set(conn, info, "sent", finished_at=now)
        if won:
            _finished(info, ledger.get_send(self.engine, info.send_id))

    def _pending_waves(self, info: ScheduleInfo) -> list[dt.datetime]:
        mailing_list = get_list(self.engine, info.list_name)
        zones = zone_waves(self.engine, mailing_list.id, _wall(info), info.zone)
        seen = {*(info.waves or {}).get("done", []), *(info.waves or {}).get("missed", [])}
        return sorted({at for at in zones.values() if iso(at) not in seen})

    def _release_waves(self, info: ScheduleInfo, now: dt.datetime) -> None:
        mailing_list = get_list(self.engine, info.list_name)
        zones = zone_waves(self.engine, mailing_list.id, _wall(info), info.zone)
        with transaction(self.engine) as conn:
            locked = sa.select(schedules.c.waves, schedules.c.status).where(
                schedules.c.id == info.id)
            if not self.sqlite:
                locked = locked.with_for_update()
            row = conn.execute(locked).one()
            if row.status != "sending":
                return
            waves, due_zones, pending = advance_waves(row.waves, zones, now, self.grace)
            if waves == row.waves:
                return
            added = 0
            if due_zones and info.send_id is not None:
                added = ledger.add_recipients(conn, info.send_id, zone_condition(due_zones))
            conn.execute(schedules.update().where(schedules.c.id == info.id)
                         .values(waves=waves, due_at=pending[0] if pending else info.due_at))
        _event("wave.released", schedule=info.id, send=info.send_id, recipients=added,
               zones=sorted(str(z) for z in due_zones), missed_waves=len(waves["missed"]),
               waves_left=len(pending))

    def _spawn(self, schedule_id: int, send_id: int) -> None:
        thread = threading.Thread(target=self._drive, args=(schedule_id, send_id),
                                  name=f"schedule-{schedule_id}", daemon=True)
        with self._lock:
            self.running[schedule_id] = thread
        thread.start()
        self._heartbeat(self.clock.now(), force=True)

    def _drive(self, schedule_id: int, send_id: int) -> None:
        every = self.settings.worker_progress_batches
        calls = 0

        def progress(p) -> None:  # noqa: ANN001
            nonlocal calls
            calls += 1
            if calls % every == 0:
                _event("send.progress", schedule=schedule_id, send=send_id, total=p.total,
                       done=p.done, sent=p.counts.get("sent", 0),
                       failed=p.counts.get("failed", 0) + p.counts.get("temporary", 0),
                       rate=round(p.counts.get("sent", 0) / p.elapsed, 1) if p.elapsed else 0)

        try:
            sending.run(self.engine, self.settings, send_id, workers=self.workers,
                        on_progress=progress, stop=self.stop, retry_delay=self.retry_delay)
        except NewsletterError as exc:
            self.not_before[schedule_id] = self.clock.now() + RETRY_AFTER
            _event("send.stopped", schedule=schedule_id, send=send_id, error=str(exc),
                   retry_in_seconds=int(RETRY_AFTER.total_seconds()))
            return
        except Exception as exc:  # the database went away: the next worker resumes it
            self.not_before[schedule_id] = self.clock.now() + RETRY_AFTER
            _event("send.stopped", schedule=schedule_id, send=send_id,
                   error=f"{type(exc).__name__}: {exc}")
            return
        if self.stop.is_set():
            _event("send.paused", schedule=schedule_id, send=send_id,
                   reason="worker stopping; the next worker resumes it")
            return
        self._settle(schedule_id, self.clock.now())


def _finished(info: ScheduleInfo, send: ledger.SendInfo) -> None:
    c = send.counts
    fields: dict[str, Any] = dict(
        schedule=info.id, send=send.id, status=send.status, sent=c.get("sent", 0),
        failed=c.get("failed", 0) + c.get("temporary", 0), skipped=c.get("skipped", 0),
        uncertain=c.get("uncertain", 0))
    if c.get("uncertain", 0) or c.get("temporary", 0):
        fields["hint"] = (f"`newsletter sends show {send.id}` lists them; `newsletter send "
                          f"--retry-failed {send.id}` resends them")
    _event("send.finished", **fields)


def _wall(info: ScheduleInfo) -> dt.datetime:
    return dt.datetime.strptime(info.wall, "%Y-%m-%d %H:%M:%S")


def _first_line(exc: BaseException) -> str:
    text = str(getattr(exc, "orig", None) or exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


def _hours(delta: dt.timedelta) -> str:
    hours = delta.total_seconds() / 3600
    return f"{hours:.1f} h"


def _findings(settings: Settings, path: Path) -> list[str]:
    """Every error of the issue as 'file:line: message' (validation only, no render)."""
    from .build import build_file

    try:
        result = build_file(path, settings, render_html=False)
    except NewsletterError as exc:
        return [str(exc)]
    return [f"{f.path}:{f.line}: {f.message}" for f in result.errors]


# -- the preview index ----------------------------------------------------------------------


_BADGE_ENGINES: dict[str, Engine] = {}


def _badge_engine(settings: Settings) -> Engine | None:
    """An engine on the project's database for the preview, or None when there is none."""
    from sqlalchemy.engine import make_url

    from .store import ensure_schema, make_engine

    url = settings.effective_database_url
    if url in _BADGE_ENGINES:
        return _BADGE_ENGINES[url]
    parsed = make_url(url)
    if parsed.get_backend_name() == "sqlite" and not Path(parsed.database or "").is_file():
        return None  # previewing never creates a database
    engine = make_engine(url)
    try:
        ensure_schema(engine, create=False)
    except Exception:  # no schema, an old one, or no server: no badge, no error
        engine.dispose()
        return None
    _BADGE_ENGINES[url] = engine
    return engine


def issue_badge(settings: Settings, name: str) -> tuple[str, str] | None:
    """(kind, label) for the preview's index: the next schedule or newest send of ``name``
    (an issue file's slug)."""
    engine = _badge_engine(settings)
    if engine is None:
        return None
    try:
        with transaction(engine) as conn:
            rows = conn.execute(
                sa.select(schedules).where(schedules.c.status.in_(OPEN))
                .order_by(schedules.c.due_at)
            ).all()
            for row in rows:
                if file_slug(row.issue_path) == name:
                    info = _info(row)
                    if info.status == "sending":
                        return "sending", f"sending to {info.list_name}"
                    return "scheduled", (f"scheduled {info.due_local:%Y-%m-%d %H:%M} "
                                         f"{info.zone}")
            sent = conn.execute(
                sa.select(ledger.sends.c.id)
                .where(ledger.sends.c.issue_slug == name, ledger.sends.c.kind == "real")
                .order_by(ledger.sends.c.id.desc()).limit(1)
            ).scalar()
            if sent is None:
                return _problem_badge(conn, name)
            send = ledger.get_send(conn, sent)
    except sa.exc.SQLAlchemyError:
        return None
    if send.status == "sending":
        return "sending", f"sending to {send.list_name}"
    return "sent", f"sent to {send.counts.get('sent', 0):,} ({send.list_name})"


def _problem_badge(conn: sa.Connection, name: str) -> tuple[str, str] | None:
    """A failed or missed schedule of an issue never sent: the editor has to act."""
    rows = conn.execute(
        sa.select(schedules.c.issue_path, schedules.c.status, schedules.c.id)
        .where(schedules.c.status.in_(["failed", "missed"]))
        .order_by(schedules.c.id.desc())
    ).all()
    for row in rows:
        if file_slug(row.issue_path) == name:
            return "error", f"schedule {row.id} {row.status}"
    return None
