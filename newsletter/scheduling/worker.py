"""The worker process (``newsletter worker``): its registry and its loop.

``WorkerProcess(engine, settings).run()`` registers the process in ``schedule_workers``,
then polls (every ``worker_poll_seconds``, sooner when a send is due), starts each due
send in a send thread of its own through the delivery ledger (``scheduling.due``) and, on
start, resumes sends a previous worker process left unfinished. On SQLite a second worker
process on the same database is refused, or waits as a standby (``standby=True``) until
the first one stops; on PostgreSQL any number share the schedules.

Recipients whose batch was in flight in a worker process that died (kill -9, power loss)
are ``uncertain`` in the ledger: the SMTP or HTTP call went out and no answer was
recorded, and no backend can say afterwards whether the message was delivered. They are
not resent (that could send twice); the send finishes, the log counts them and
``newsletter send --retry-failed ID`` resends them on request.
"""

from __future__ import annotations

import datetime as dt
import os
import socket
import threading
import uuid
from collections.abc import Callable
from dataclasses import dataclass

import sqlalchemy as sa
from sqlalchemy.engine import Engine

from newsletter.config import Settings
from newsletter.db.transactions import DB, aware, transaction
from newsletter.delivery import senders
from newsletter.errors import NewsletterError, WorkerRefused

from . import decisions, due
from .clock import SYSTEM_CLOCK, Clock
from .context import WorkerContext
from .log import event
from .tables import schedule_workers

# A worker process whose heartbeat is older than this is taken for dead (the ledger has
# its own lease for the per-send senders it registers: ``delivery.senders.LEASE``).
WORKER_LEASE = dt.timedelta(seconds=30)
HEARTBEAT = dt.timedelta(seconds=5)


@dataclass
class WorkerProcessInfo:
    """A registered worker process, as ``newsletter schedule list`` shows it."""

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
    if row.stopped_at is not None or _stamp(row.heartbeat_at) < now - WORKER_LEASE:
        return False
    if row.host == socket.gethostname()[:255]:
        return senders.pid_alive(row.pid)
    return True


def live_workers(db: DB, *, clock: Clock = SYSTEM_CLOCK) -> list[WorkerProcessInfo]:
    """The worker processes running now (registered, heartbeating, not stopped)."""
    now = clock.now()
    with transaction(db) as conn:
        rows = conn.execute(sa.select(schedule_workers)
                            .where(schedule_workers.c.stopped_at.is_(None))).all()
    return [WorkerProcessInfo(r.id, r.host, r.pid, r.state, r.detail, _stamp(r.started_at),
                              _stamp(r.heartbeat_at)) for r in rows if _alive(r, now)]


def _first_line(exc: BaseException) -> str:
    text = str(getattr(exc, "orig", None) or exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


class WorkerProcess:
    """Polls the schedules, starts due sends, resumes unfinished ones; see module docs.

    ``concurrency``: concurrent batches per send (``newsletter worker --workers``).
    """

    def __init__(
        self,
        engine: Engine,
        settings: Settings,
        *,
        clock: Clock = SYSTEM_CLOCK,
        stop: threading.Event | None = None,
        standby: bool = False,
        concurrency: int | None = None,
        retry_delay: float = 2.0,
        on_started: Callable[[int, int], None] | None = None,
    ) -> None:
        self.engine = engine
        self.settings = settings
        self.clock = clock
        self.stop = stop or threading.Event()
        self.standby = standby
        self.concurrency = concurrency
        self.retry_delay = retry_delay
        self.on_started = on_started  # (schedule id, send id), for tests and reports
        self.id = uuid.uuid4().hex
        self.ctx = WorkerContext(engine, settings, clock, self.id)
        self.poll = settings.worker_poll_seconds
        self.send_threads: dict[int, threading.Thread] = {}  # schedule id -> its send
        self.decided_threads: dict[int, threading.Thread] = {}  # send id -> its winner's run
        self.not_before: dict[int, dt.datetime] = {}
        self.last_beat: dt.datetime | None = None
        self.last_tick: dt.datetime | None = None
        self.registered = False
        self._lock = threading.Lock()
        self.bounces_at: dt.datetime | None = None  # the bounce mailbox's last fetch
        self.bounce_thread: threading.Thread | None = None

    # -- life cycle ---------------------------------------------------------------------

    def register(self) -> bool:
        """Record this worker process; on SQLite only when no other live one is there."""
        now = self.clock.now()
        with self.engine.begin() as conn:  # SQLite: BEGIN IMMEDIATE serialises this check
            if self.ctx.sqlite:
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
            event("worker.started", worker=self.id, pid=os.getpid(),
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
        event("worker.standby", worker=self.id, waiting_for=who)
        while not self.clock.sleep(self.poll, self.stop):
            if self.register():
                event("worker.started", worker=self.id, pid=os.getpid(),
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
                    event("worker.error", worker=self.id, error=_first_line(exc),
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
            event("worker.stopped", worker=self.id)

    def wait_idle(self, timeout: float | None = None) -> None:
        """Wait for the sends this worker process is running (tests call it after ``tick``)."""
        for thread in [*self.send_threads.values(), *self.decided_threads.values()]:
            thread.join(timeout)
        self._reap()

    def next_wait(self) -> float:
        """Seconds until the next look: the poll interval, or less when a send is due."""
        wait = self.poll
        times = [t for t in (due.next_due(self.engine), decisions.next_decision(self.ctx)) if t]
        soonest = min(times) if times else None
        if soonest is not None:
            seen = self.last_tick is not None and soonest <= self.last_tick  # left as it is
            if not seen:
                wait = min(wait, (soonest - self.clock.now()).total_seconds())
        return max(0.0, wait)

    # -- one look -----------------------------------------------------------------------

    def tick(self) -> None:
        """Heartbeat, settle finished sends, resume unfinished ones, start due ones."""
        now = self.clock.now()
        first = self.last_tick is None
        self.last_tick = now
        self._reap()
        self._heartbeat(now)
        self._bounces(now)
        if not self.stop.is_set():  # first: a schedule's send its decision released resumes
            decisions.decide_due(self.ctx, now)  # below, in this same look
        for info in due.due_schedules(self.engine, now):
            if self.stop.is_set():
                return
            if self.not_before.get(info.id, now) > now:
                continue
            try:
                if info.status == "scheduled":
                    send_id = due.start(self.ctx, info, now)
                    if send_id is not None and self.on_started is not None:
                        self.on_started(info.id, send_id)
                elif info.id not in self.send_threads:
                    send_id = due.resume(self.ctx, info, now)
                else:
                    send_id = None
                if send_id is not None:
                    self._spawn(info.id, send_id)
            except sa.exc.SQLAlchemyError:
                raise  # the database itself: the loop logs it and tries again
            except Exception as exc:  # one bad schedule must not stop the others
                self.not_before[info.id] = now + due.RETRY_AFTER
                event("schedule.error", schedule=info.id, error=f"{type(exc).__name__}: {exc}",
                      retry_in_seconds=int(due.RETRY_AFTER.total_seconds()))
        self._decisions(now, first)

    def _decisions(self, now: dt.datetime, first: bool) -> None:
        """Send each decided subject test's winner to the rest of its list (resuming those
        a worker process left unfinished); a scheduled send's goes on as its schedule's."""
        if self.stop.is_set():
            return
        for send_id in decisions.to_run(self.ctx, in_flight_too=first):
            if (send_id not in self.decided_threads and not self.stop.is_set()
                    and self.not_before.get(-send_id, now) <= now):
                thread = threading.Thread(target=self._drive_decided, args=(send_id,),
                                          name=f"subject-test-{send_id}", daemon=True)
                with self._lock:
                    self.decided_threads[send_id] = thread
                thread.start()

    def _drive_decided(self, send_id: int) -> None:
        """Run a decided send through the ledger (its winner to the rest of the list)."""
        from newsletter.delivery import sending  # only when a send runs

        try:
            result = sending.run(self.engine, self.settings, send_id, workers=self.concurrency,
                                 stop=self.stop, retry_delay=self.retry_delay)
        except Exception as exc:  # the backend is down, or the database went away
            self.not_before[-send_id] = self.clock.now() + due.RETRY_AFTER  # -: not a schedule
            event("send.stopped", send=send_id, error=f"{type(exc).__name__}: {exc}",
                  retry_in_seconds=int(due.RETRY_AFTER.total_seconds()))
            return
        event("subject_test.sent", send=send_id, status=result.status,
              sent=result.counts.get("sent", 0), uncertain=result.counts.get("uncertain", 0))

    def _bounces(self, now: dt.datetime) -> None:
        """Every ``bounce_fetch_minutes``, read the bounce mailbox in a thread of its own
        (when ``bounce_mailbox`` is set and the last fetch has finished)."""
        minutes = dt.timedelta(minutes=self.settings.bounce_fetch_minutes)
        if not self.settings.bounce_mailbox or (
                self.bounce_thread is not None and self.bounce_thread.is_alive()) or (
                self.bounces_at is not None and now - self.bounces_at < minutes):
            return
        self.bounces_at = now

        def fetch() -> None:
            from ..feedback import mailbox

            try:
                report = mailbox.fetch(self.engine, self.settings)
            except Exception as exc:  # logged; tried again next time
                event("bounces.failed", error=_first_line(exc))
                return
            if report.read:
                event("bounces.fetched", read=report.read, duplicates=report.duplicates,
                      **dict(report.applied))

        self.bounce_thread = threading.Thread(target=fetch, name="bounce-mailbox", daemon=True)
        self.bounce_thread.start()

    def _heartbeat(self, now: dt.datetime, force: bool = False) -> None:
        if not self.registered:
            return
        if not force and self.last_beat is not None and now - self.last_beat < HEARTBEAT:
            return
        with self._lock:
            busy = sorted(self.send_threads)
        detail = ("schedule " + ", ".join(str(i) for i in busy)) if busy else None
        with transaction(self.engine) as conn:
            conn.execute(schedule_workers.update().where(schedule_workers.c.id == self.id)
                         .values(heartbeat_at=now, state="sending" if busy else "idle",
                                 detail=detail))
        self.last_beat = now

    def _reap(self) -> None:
        for threads in (self.send_threads, self.decided_threads):
            for key, thread in list(threads.items()):
                if not thread.is_alive():
                    with self._lock:
                        threads.pop(key, None)

    def _spawn(self, schedule_id: int, send_id: int) -> None:
        thread = threading.Thread(target=self._drive, args=(schedule_id, send_id),
                                  name=f"schedule-{schedule_id}", daemon=True)
        with self._lock:
            self.send_threads[schedule_id] = thread
        thread.start()
        self._heartbeat(self.clock.now(), force=True)

    def _progress(self, schedule_id: int, send_id: int) -> Callable[[object], None]:
        """A ``send.progress`` log line every ``worker_progress_batches`` batches."""
        every = self.settings.worker_progress_batches
        calls = 0

        def progress(p) -> None:  # noqa: ANN001  (delivery.engine.Progress)
            nonlocal calls
            calls += 1
            if calls % every == 0:
                event("send.progress", schedule=schedule_id, send=send_id, total=p.total,
                      done=p.done, sent=p.counts.get("sent", 0),
                      failed=p.counts.get("failed", 0) + p.counts.get("temporary", 0),
                      rate=round(p.counts.get("sent", 0) / p.elapsed, 1) if p.elapsed else 0)

        return progress

    def _drive(self, schedule_id: int, send_id: int) -> None:
        """The send thread: run the send through the ledger, then settle the schedule."""
        from newsletter.delivery import sending

        try:
            sending.run(self.engine, self.settings, send_id, workers=self.concurrency,
                        on_progress=self._progress(schedule_id, send_id), stop=self.stop,
                        retry_delay=self.retry_delay)
        except Exception as exc:  # the backend is down, or the database went away
            self.not_before[schedule_id] = self.clock.now() + due.RETRY_AFTER
            error = str(exc) if isinstance(exc, NewsletterError) else (
                f"{type(exc).__name__}: {exc}")
            event("send.stopped", schedule=schedule_id, send=send_id, error=error,
                  retry_in_seconds=int(due.RETRY_AFTER.total_seconds()))
            return
        if self.stop.is_set():
            event("send.paused", schedule=schedule_id, send=send_id,
                  reason="worker stopping; the next worker resumes it")
            return
        due.settle(self.ctx, schedule_id, self.clock.now())
