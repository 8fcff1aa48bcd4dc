"""Scheduled sends and the worker, with a controllable clock instead of real sleeps.

The worker process's loop (``WorkerProcess.run``/``tick``) takes a clock: ``FakeClock.sleep`` moves time
forward at once and runs hooks, so "due in 10 minutes" or "6 hours late" cost nothing.
Sends run for real (outbox backend, SQLite; PostgreSQL where marked), in the worker's
threads; tests wait for them with ``wait_idle``.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import json
import logging
import os
import re
import signal
import subprocess
import threading
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path

import httpx
import pytest
import sqlalchemy as sa

from newsletter.db.tables import subscribers
from newsletter.delivery import archive, ledger
from newsletter.delivery.backends.outbox import OutboxBackend
from newsletter.errors import UsageError
from newsletter.scheduling import schedules
from newsletter.scheduling.status import issue_status
from newsletter.scheduling.worker import WorkerProcess, WorkerRefused
from newsletter.web import create_app

from .sendtools import make_project, newsletter_cmd, pg_database, run_cli, seed

ISSUE = "issues/2026-11-24.md"
LONDON = "Europe/London"


class FakeClock:
    """Time that moves only when told to (or when the worker sleeps)."""

    def __init__(self, start: dt.datetime) -> None:
        self.t = start
        self.sleeps: list[float] = []
        self.hooks: list[Callable[[FakeClock], None]] = []

    def now(self) -> dt.datetime:
        return self.t

    def sleep(self, seconds: float, stop: threading.Event) -> bool:
        self.sleeps.append(seconds)
        self.t += dt.timedelta(seconds=seconds)
        for hook in list(self.hooks):
            hook(self)
        return stop.is_set()

    def advance(self, **delta: float) -> None:
        self.t += dt.timedelta(**delta)


def _now() -> dt.datetime:
    return dt.datetime.now(dt.UTC).replace(microsecond=0)


def _fmt(value: dt.datetime) -> str:
    return value.astimezone(dt.UTC).strftime("%Y-%m-%dT%H:%M:%S+00:00")


@pytest.fixture
def project(tmp_path: Path):
    settings = make_project(tmp_path / "p")
    settings = settings.model_copy(update={"worker_poll_seconds": 1.0})
    engine = seed(settings, 12)
    yield settings, engine
    engine.dispose()


@pytest.fixture(params=["sqlite", "postgresql"])
def project_db(request, tmp_path: Path):
    """The same project on SQLite and on a fresh PostgreSQL database."""
    with pg_database() if request.param == "postgresql" else contextlib.nullcontext() as url:
        settings = make_project(tmp_path / "p", url)
        engine = seed(settings, 12)
        yield settings, engine
        engine.dispose()


def _worker(settings, engine, clock, **kw) -> WorkerProcess:
    return WorkerProcess(engine, settings, clock=clock, retry_delay=0.01, **kw)


def _outbox(settings) -> Counter:
    """Messages in the outbox per subscriber id (file names are SEND-SUBSCRIBER.eml)."""
    return Counter(p.stem.split("-")[1] for p in settings.outbox_path.glob("*.eml"))


def _tick(worker: WorkerProcess, times: int = 1) -> None:
    for _ in range(times):
        worker.tick()
        worker.wait_idle(timeout=60)


# -- the loop: on time --------------------------------------------------------------------


def test_worker_starts_a_due_send_within_two_seconds_even_if_added_while_it_sleeps(
    project,
) -> None:
    settings, engine = project
    clock = FakeClock(_now())
    started: list[tuple[int, dt.datetime]] = []
    worker = _worker(settings, engine, clock,
                     on_started=lambda sid, send: started.append((sid, clock.now())))
    due: list[dt.datetime] = []

    def add_schedule_later(c: FakeClock) -> None:
        # another machine schedules a send 0.4 s ahead while this worker is asleep
        if len(c.sleeps) == 5 and not due:
            planned = schedules.schedule_issue(
                engine, settings, settings.project_dir / ISSUE, "daily",
                at=_fmt(c.now() + dt.timedelta(seconds=1)), clock=c)
            due.append(planned.schedule.due_at)
        if started and schedules.get_schedule(engine, started[0][0]).status == "sent":
            worker.stop.set()
        if time.monotonic() > deadline:
            raise AssertionError("the worker never started (or finished) the send")

    deadline = time.monotonic() + 60
    clock.hooks.append(add_schedule_later)
    worker.run()
    assert due and started, "nothing started"
    late = (started[0][1] - due[0]).total_seconds()
    assert 0 <= late < 2, late
    # it never slept more than the poll interval, so a new schedule is seen within 1 s
    assert max(clock.sleeps) <= settings.worker_poll_seconds
    assert schedules.get_schedule(engine, started[0][0]).status == "sent"
    assert sum(_outbox(settings).values()) == 12


def test_a_send_is_not_started_before_its_time(project) -> None:
    settings, engine = project
    clock = FakeClock(_now())
    at = clock.now() + dt.timedelta(minutes=10)
    planned = schedules.schedule_issue(engine, settings, settings.project_dir / ISSUE, "daily",
                                       at=_fmt(at), clock=clock)
    worker = _worker(settings, engine, clock)
    assert worker.register()
    clock.advance(minutes=9, seconds=59)
    _tick(worker)
    assert schedules.get_schedule(engine, planned.schedule.id).status == "scheduled"
    assert worker.next_wait() == pytest.approx(1.0)
    clock.advance(seconds=1)
    _tick(worker)
    info = schedules.get_schedule(engine, planned.schedule.id)
    assert info.status == "sent" and info.send is not None
    assert info.send.counts == {"sent": 12}
    worker.shutdown()


# -- grace period and missed ----------------------------------------------------------------


@pytest.mark.parametrize(("late_minutes", "expected"), [(5 * 60 + 59, "sent"), (6 * 60 + 1, "missed")])
def test_a_send_late_within_the_grace_period_goes_out_beyond_it_is_missed(
    project, late_minutes: int, expected: str, caplog
) -> None:
    settings, engine = project
    clock = FakeClock(_now())
    planned = schedules.schedule_issue(
        engine, settings, settings.project_dir / ISSUE, "daily",
        at=_fmt(clock.now() + dt.timedelta(hours=1)), clock=clock)
    clock.advance(hours=1, minutes=late_minutes)  # no worker ran meanwhile
    worker = _worker(settings, engine, clock)
    assert worker.register()
    with caplog.at_level(logging.INFO, logger="newsletter.worker"):
        _tick(worker)
    info = schedules.get_schedule(engine, planned.schedule.id)
    assert info.status == expected
    if expected == "missed":
        assert info.send_id is None and not _outbox(settings)
        assert f"newsletter schedule move {info.id}" in (info.note or "")
        events = [json.loads(r.getMessage()) for r in caplog.records]
        assert any(e["event"] == "schedule.missed" and e["schedule"] == info.id for e in events)
        # moving it brings it back: the next worker sends it
        moved, _ = schedules.move(engine, info.id, _fmt(clock.now() + dt.timedelta(minutes=1)),
                                  clock=clock)
        assert moved.status == "scheduled"
        clock.advance(minutes=1)
        _tick(worker)
        assert schedules.get_schedule(engine, info.id).status == "sent"
    assert sum(_outbox(settings).values()) == 12
    worker.shutdown()


# -- times: formats, DST, the past ----------------------------------------------------------


def test_worker_sends_at_six_local_after_the_clocks_go_back(project) -> None:
    settings, engine = project
    clock = FakeClock(dt.datetime(2027, 10, 30, 12, 0, tzinfo=dt.UTC))  # BST (UTC+1)
    planned = schedules.schedule_issue(engine, settings, settings.project_dir / ISSUE, "daily",
                                       at="2027-10-31 06:00", tz=LONDON, clock=clock)
    worker = _worker(settings, engine, clock)
    assert worker.register()
    clock.t = dt.datetime(2027, 10, 31, 5, 0, tzinfo=dt.UTC)  # 06:00 BST, but it is GMT now
    _tick(worker)
    assert schedules.get_schedule(engine, planned.schedule.id).status == "scheduled"
    clock.t = dt.datetime(2027, 10, 31, 6, 0, tzinfo=dt.UTC)  # 06:00 GMT
    _tick(worker)
    assert schedules.get_schedule(engine, planned.schedule.id).status == "sent"
    worker.shutdown()


def test_past_time_is_refused(project) -> None:
    settings, engine = project
    with pytest.raises(UsageError, match="is in the past"):
        schedules.schedule_issue(engine, settings, settings.project_dir / ISSUE, "daily",
                                 at="2020-01-01 06:00")
    result = run_cli(settings.project_dir, "schedule", str(settings.project_dir / ISSUE), "--list", "daily",
                     "--at", "2020-01-01 06:00")
    assert result.returncode == 2
    assert result.stderr.count("\n") == 1 and "in the past" in result.stderr
    assert "Traceback" not in result.stderr
    assert schedules.list_schedules(engine) == []


def test_cli_prints_utc_and_zone_and_dst_note(project) -> None:
    settings, _ = project
    result = run_cli(settings.project_dir, "schedule", str(settings.project_dir / ISSUE), "--list", "daily",
                     "--at", "2027-03-28 01:30", "--tz", LONDON)
    assert result.returncode == 0, result.stderr
    assert "2027-03-28 01:30:00 UTC = 2027-03-28 02:30:00 BST (Europe/London)" in result.stdout
    assert "does not exist" in result.stdout
    listing = run_cli(settings.project_dir, "schedule", "list")
    assert "scheduled" in listing.stdout and "2027-03-28 01:30" in listing.stdout
    assert "no worker is running" in listing.stdout


# -- send_at in the front matter --------------------------------------------------------------


def _with_send_at(settings, value: str) -> Path:
    path = settings.project_dir / ISSUE
    text = path.read_text("utf-8").replace("date: 2026-11-24\n",
                                           f"date: 2026-11-24\nsend_at: {value}\n", 1)
    path.write_text(text, "utf-8")
    return path


def test_send_at_in_front_matter_is_used_and_at_wins_when_both(project) -> None:
    settings, engine = project
    path = _with_send_at(settings, "2027-01-15 07:00")
    planned = schedules.schedule_issue(engine, settings, path, "daily", tz=LONDON)
    assert planned.source == "send_at" and planned.other is None
    assert planned.schedule.due_at == dt.datetime(2027, 1, 15, 7, 0, tzinfo=dt.UTC)
    schedules.cancel(engine, planned.schedule.id)
    result = run_cli(settings.project_dir, "schedule", str(settings.project_dir / ISSUE), "--list", "daily",
                     "--at", "2027-01-15 06:00", "--tz", LONDON)
    assert result.returncode == 0, result.stderr
    assert "--at 2027-01-15 06:00 wins over send_at 2027-01-15 07:00" in result.stdout
    assert "2027-01-15 06:00:00 UTC" in result.stdout


def test_no_time_at_all_says_how_to_give_one(project) -> None:
    settings, engine = project
    with pytest.raises(UsageError, match="give --at .* or add 'send_at"):
        schedules.schedule_issue(engine, settings, settings.project_dir / ISSUE, "daily")


# -- cancel, move ----------------------------------------------------------------------------


def test_cancel_and_move(project) -> None:
    settings, engine = project
    clock = FakeClock(_now())
    planned = schedules.schedule_issue(engine, settings, settings.project_dir / ISSUE, "daily",
                                       at=_fmt(clock.now() + dt.timedelta(hours=2)), clock=clock)
    sid = planned.schedule.id
    with pytest.raises(UsageError, match="already scheduled"):
        schedules.schedule_issue(engine, settings, settings.project_dir / ISSUE, "daily",
                                 at=_fmt(clock.now() + dt.timedelta(hours=3)), clock=clock)
    moved, _ = schedules.move(engine, sid, _fmt(clock.now() + dt.timedelta(hours=1)), clock=clock)
    assert moved.due_at == clock.now() + dt.timedelta(hours=1)
    with pytest.raises(UsageError, match="in the past"):
        schedules.move(engine, sid, _fmt(clock.now() - dt.timedelta(minutes=1)), clock=clock)
    assert schedules.cancel(engine, sid, clock=clock).status == "cancelled"
    worker = _worker(settings, engine, clock)
    assert worker.register()
    clock.advance(hours=3)
    _tick(worker)
    assert schedules.get_schedule(engine, sid).status == "cancelled"
    assert not _outbox(settings)
    with pytest.raises(UsageError, match="only scheduled, missed or failed"):
        schedules.move(engine, sid, _fmt(clock.now() + dt.timedelta(hours=1)), clock=clock)
    with pytest.raises(schedules.ScheduleNotFound):
        schedules.cancel(engine, 999)
    worker.shutdown()


def test_cli_cancel_and_move_subcommands(project) -> None:
    settings, _ = project
    assert run_cli(settings.project_dir, "schedule", str(settings.project_dir / ISSUE), "--list", "daily",
                   "--at", "2027-01-15 06:00").returncode == 0
    moved = run_cli(settings.project_dir, "schedule", "move", "1", "--at", "2027-01-16 06:30")
    assert moved.returncode == 0, moved.stderr
    assert "2027-01-16 06:30:00 UTC" in moved.stdout
    cancelled = run_cli(settings.project_dir, "schedule", "cancel", "1")
    assert cancelled.returncode == 0 and "cancelled" in cancelled.stdout
    again = run_cli(settings.project_dir, "schedule", "cancel", "1")
    assert again.returncode == 2 and "only scheduled or sending" in again.stderr


# -- the issue is read again at send time ------------------------------------------------------


def test_late_typo_fix_goes_out(project) -> None:
    settings, engine = project
    clock = FakeClock(_now())
    path = settings.project_dir / ISSUE
    schedules.schedule_issue(engine, settings, path, "daily",
                             at=_fmt(clock.now() + dt.timedelta(minutes=30)), clock=clock)
    text = path.read_text("utf-8")
    assert "Roughly **4,200 homes**" in text
    path.write_text(text.replace("Roughly **4,200 homes**", "Roughly **4,300 homes**"), "utf-8")
    worker = _worker(settings, engine, clock)
    assert worker.register()
    clock.advance(minutes=30)
    _tick(worker)
    messages = list(settings.outbox_path.glob("*.eml"))
    assert len(messages) == 12
    body = messages[0].read_bytes()
    assert b"4,300 homes" in body and b"4,200 homes" not in body
    # the web archive keeps the copy as sent, as for `newsletter send`
    entry = archive.get_entry(engine, "2026-11-24")
    assert entry is not None and "4,300 homes" in entry[1]
    worker.shutdown()


def test_issue_that_no_longer_validates_fails_with_its_findings(project, caplog) -> None:
    settings, engine = project
    clock = FakeClock(_now())
    path = settings.project_dir / ISSUE
    planned = schedules.schedule_issue(engine, settings, path, "daily",
                                       at=_fmt(clock.now() + dt.timedelta(minutes=5)), clock=clock)
    text = path.read_text("utf-8")
    path.write_text(text.replace("subject: Can the river towns rebuild before spring?\n", ""),
                    "utf-8")
    worker = _worker(settings, engine, clock)
    assert worker.register()
    clock.advance(minutes=5)
    with caplog.at_level(logging.INFO, logger="newsletter.worker"):
        _tick(worker)
    info = schedules.get_schedule(engine, planned.schedule.id)
    assert info.status == "failed" and info.send_id is None
    assert f"{path}:2: the subject is missing" in (info.note or "")
    status = issue_status(settings, "2026-11-24")
    assert status is not None and (status.kind, status.label) == (
        "error", f"schedule {info.id} failed")
    failed = [json.loads(r.getMessage()) for r in caplog.records
              if json.loads(r.getMessage())["event"] == "schedule.failed"]
    assert len(failed) == 1 and failed[0]["level"] == "error"
    assert any("the subject is missing" in f for f in failed[0]["findings"])
    assert not _outbox(settings) and ledger.list_sends(engine) == []
    listing = run_cli(settings.project_dir, "schedule", "list")
    assert "failed" in listing.stdout and "the subject is missing" in listing.stdout
    worker.shutdown()


# -- stopping: the batch in flight finishes ------------------------------------------------------


def _hold_first_batch(tmp_path: Path, monkeypatch):  # noqa: ANN202
    """A schedule of 1,200 (three outbox batches) whose first batch is held in flight.

    Returns (settings, engine, clock, planned, worker, release, real send_batch); set
    ``release`` to let the held batch go.
    """
    settings = make_project(tmp_path / "p")
    engine = seed(settings, 1200)  # the outbox takes 500 per batch: three batches
    clock = FakeClock(_now())
    planned = schedules.schedule_issue(engine, settings, settings.project_dir / ISSUE, "daily",
                                       at=_fmt(clock.now() + dt.timedelta(seconds=1)),
                                       clock=clock)
    in_flight, release = threading.Event(), threading.Event()
    real = OutboxBackend.send_batch

    def slow(self, messages, **progress):  # noqa: ANN001, ANN003
        in_flight.set()
        assert release.wait(30)
        return real(self, messages, **progress)

    monkeypatch.setattr(OutboxBackend, "send_batch", slow)
    worker = _worker(settings, engine, clock)
    assert worker.register()
    clock.advance(seconds=1)
    worker.tick()
    assert in_flight.wait(30)
    return settings, engine, clock, planned, worker, release, real


def test_stop_finishes_the_batch_in_flight_and_the_next_worker_resumes(
    tmp_path: Path, monkeypatch
) -> None:
    settings, engine, clock, planned, worker, release, real = _hold_first_batch(
        tmp_path, monkeypatch)
    worker.stop.set()  # what SIGTERM / Ctrl-C do
    release.set()
    worker.shutdown()
    info = schedules.get_schedule(engine, planned.schedule.id)
    assert info.status == "sending" and info.send is not None
    assert info.send.counts == {"sent": 500, "pending": 700}  # recorded; nothing in doubt
    monkeypatch.setattr(OutboxBackend, "send_batch", real)
    second = _worker(settings, engine, clock)
    assert second.register()  # the first one stopped cleanly: no refusal on SQLite
    _tick(second)
    info = schedules.get_schedule(engine, planned.schedule.id)
    assert info.status == "sent" and info.send is not None and info.send.counts == {"sent": 1200}
    counts = _outbox(settings)
    assert len(counts) == 1200 and set(counts.values()) == {1}
    second.shutdown()
    engine.dispose()


def test_cancel_while_sending_stops_after_the_batch_in_flight(tmp_path: Path, monkeypatch
                                                             ) -> None:
    settings, engine, clock, planned, worker, release, real = _hold_first_batch(
        tmp_path, monkeypatch)
    info = schedules.cancel(engine, planned.schedule.id, clock=clock)
    assert info.status == "cancelled"
    release.set()
    worker.wait_idle(60)
    _tick(worker)
    info = schedules.get_schedule(engine, planned.schedule.id)
    assert info.status == "cancelled" and info.send is not None
    assert info.send.status == "cancelled"
    assert info.send.counts == {"sent": 500, "skipped": 700}
    assert sum(_outbox(settings).values()) == 500
    worker.shutdown()
    engine.dispose()


def test_sigterm_stops_the_worker_process_cleanly(project) -> None:
    settings, _ = project
    proc = subprocess.Popen(newsletter_cmd(settings.project_dir, "worker"),
                            stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    try:
        assert proc.stderr is not None
        first = proc.stderr.readline()  # the handler is installed before the loop starts
        proc.send_signal(signal.SIGTERM)
        _, rest = proc.communicate(timeout=20)
    finally:
        if proc.poll() is None:
            proc.kill()
    err = first + rest
    assert proc.returncode == 0, err
    events = [json.loads(line)["event"] for line in err.splitlines()]
    assert events[0] == "worker.started" and events[-1] == "worker.stopped"


# -- SQLite: one worker per file ------------------------------------------------------------------


def test_sqlite_second_worker_is_refused_or_waits_as_standby(project, caplog) -> None:
    settings, engine = project
    settings = settings.model_copy(update={"worker_poll_seconds": 0.05})
    first = WorkerProcess(engine, settings)
    first.start()
    with pytest.raises(WorkerRefused, match="already running on this SQLite"):
        WorkerProcess(engine, settings).start()
    refused = run_cli(settings.project_dir, "worker")
    assert refused.returncode == 1
    assert "already running on this SQLite database" in refused.stderr
    assert refused.stderr.count("\n") == 1 and "--standby" in refused.stderr
    standby = WorkerProcess(engine, settings, standby=True)
    with caplog.at_level(logging.INFO, logger="newsletter.worker"):
        thread = threading.Thread(target=standby.start)
        thread.start()
        time.sleep(0.3)
        assert not standby.registered and thread.is_alive()
        first.shutdown()
        thread.join(10)
    assert standby.registered
    events = [json.loads(r.getMessage())["event"] for r in caplog.records]
    assert "worker.standby" in events
    standby.shutdown()


# -- several workers on PostgreSQL --------------------------------------------------------------


def test_postgres_workers_never_start_the_same_schedule_twice(tmp_path: Path) -> None:
    with pg_database() as url:
        settings = make_project(tmp_path / "p", url)
        engine = seed(settings, 600)
        clock = FakeClock(_now())
        for n in range(3):  # three issues (a copy of one issue is the same issue)
            (settings.project_dir / f"issues/2026-11-2{5 + n}.md").write_text(
                (settings.project_dir / ISSUE).read_text("utf-8")
                .replace("rebuild before spring", f"rebuild by day {n}"), "utf-8")
            schedules.schedule_issue(engine, settings,
                                     settings.project_dir / f"issues/2026-11-2{5 + n}.md",
                                     "daily", at=_fmt(clock.now() + dt.timedelta(seconds=5)),
                                     clock=clock)
        workers = [_worker(settings, engine, clock) for _ in range(4)]
        for w in workers:
            assert w.register()  # PostgreSQL takes any number
        clock.advance(seconds=5)
        barrier = threading.Barrier(len(workers))

        def go(w: WorkerProcess) -> None:
            barrier.wait()
            _tick(w, 2)

        threads = [threading.Thread(target=go, args=(w,)) for w in workers]
        for t in threads:
            t.start()
        for t in threads:
            t.join(120)
        sends = ledger.list_sends(engine)
        assert len(sends) == 3  # one send per schedule, whichever worker won
        assert all(s.counts == {"sent": 600} for s in sends)
        assert {s.status for s in schedules.list_schedules(engine)} == {"sent"}
        counts = _outbox(settings)
        assert len(counts) == 600 and set(counts.values()) == {3}
        for w in workers:
            w.shutdown()
        engine.dispose()


def test_worker_survives_its_database_connections_dropping(tmp_path: Path, caplog) -> None:
    """PostgreSQL restarts (here: every connection of the worker's database is terminated):
    the worker logs it, reconnects on its next look and still sends on time."""
    from .sendtools import pg_admin_engine

    with pg_database() as url:
        settings = make_project(tmp_path / "p", url)
        settings = settings.model_copy(update={"worker_poll_seconds": 0.05})
        engine = seed(settings, 30)
        worker = WorkerProcess(engine, settings, retry_delay=0.01)
        thread = threading.Thread(target=worker.run)
        with caplog.at_level(logging.INFO, logger="newsletter.worker"):
            thread.start()
            time.sleep(0.5)
            admin = pg_admin_engine()
            assert admin is not None
            with admin.connect() as conn:
                conn.execute(sa.text(
                    "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                    "WHERE datname = :name AND pid <> pg_backend_pid()"),
                    {"name": engine.url.database})
            admin.dispose()
            time.sleep(0.5)
            due = _now() + dt.timedelta(seconds=2)
            planned = schedules.schedule_issue(
                engine, settings, settings.project_dir / ISSUE, "daily", at=_fmt(due))
            deadline = time.monotonic() + 30
            while schedules.get_schedule(engine, planned.schedule.id).status != "sent":
                assert time.monotonic() < deadline and thread.is_alive()
                time.sleep(0.05)
            worker.stop.set()
            thread.join(30)
        events = [json.loads(r.getMessage()) for r in caplog.records]
        assert any(e["event"] == "worker.error" for e in events)
        started = next(e for e in events if e["event"] == "send.started")
        assert started["late_seconds"] < 2
        engine.dispose()


# -- --local-time waves ----------------------------------------------------------------------


def test_local_time_waves_reach_each_recipient_once_at_six_in_their_zone(project_db, caplog
                                                                        ) -> None:
    settings, engine = project_db  # 12 subscribers, ids 1..12
    zones = {1: "Asia/Kolkata", 2: "Asia/Kolkata", 3: "America/New_York", 4: "Europe/Berlin",
             5: "Not/AZone", 6: "Asia/Kathmandu"}  # 7..12: none -> the schedule's zone
    with engine.begin() as conn:
        for sid, zone in zones.items():
            conn.execute(subscribers.update().where(subscribers.c.id == sid)
                         .values(attributes={"timezone": zone}))
    clock = FakeClock(dt.datetime(2027, 1, 14, 12, 0, tzinfo=dt.UTC))
    planned = schedules.schedule_issue(engine, settings, settings.project_dir / ISSUE, "daily",
                                       at="2027-01-15 06:00", tz=LONDON, local_time=True,
                                       clock=clock)
    # Kolkata 00:30Z and Kathmandu 00:15Z -> the 01:00Z wave; Berlin 05:00Z; London 06:00Z;
    # New York 11:00Z
    assert [at.hour for at, _ in planned.waves] == [1, 5, 6, 11]
    worker = _worker(settings, engine, clock)
    assert worker.register()
    got: dict[int, set[str]] = {}
    with caplog.at_level(logging.INFO, logger="newsletter.worker"):
        for hour in range(0, 13):
            clock.t = dt.datetime(2027, 1, 15, hour, 0, 30, tzinfo=dt.UTC)
            _tick(worker, 2)
            got[hour] = set(_outbox(settings))
    assert got[0] == set()
    assert got[1] == {"1", "2", "6"}
    assert got[4] == got[1]
    assert got[5] == {"1", "2", "6", "4"}
    assert got[6] == got[5] | {"5", "7", "8", "9", "10", "11", "12"}
    assert got[10] == got[6]
    assert got[11] == {str(n) for n in range(1, 13)}
    counts = _outbox(settings)
    assert set(counts.values()) == {1}  # each recipient once
    info = schedules.get_schedule(engine, planned.schedule.id)
    assert info.status == "sent" and info.send is not None
    assert info.send.total == 12 and info.send.counts == {"sent": 12}
    waves = [json.loads(r.getMessage()) for r in caplog.records]
    assert sum(1 for e in waves if e["event"] == "wave.released") == 3  # + the first at start
    worker.shutdown()


def test_local_time_wave_beyond_the_grace_period_is_missed_the_others_go(project) -> None:
    settings, engine = project
    with engine.begin() as conn:
        conn.execute(subscribers.update().where(subscribers.c.id == 1)
                     .values(attributes={"timezone": "Asia/Kolkata"}))
    clock = FakeClock(dt.datetime(2027, 1, 14, 12, 0, tzinfo=dt.UTC))
    planned = schedules.schedule_issue(engine, settings, settings.project_dir / ISSUE, "daily",
                                       at="2027-01-15 06:00", tz=LONDON, local_time=True,
                                       clock=clock)
    worker = _worker(settings, engine, clock)
    assert worker.register()
    clock.t = dt.datetime(2027, 1, 15, 8, 0, tzinfo=dt.UTC)  # no worker ran until now
    _tick(worker, 2)
    info = schedules.get_schedule(engine, planned.schedule.id)
    assert info.status == "sent" and info.send is not None
    assert info.waves == {"done": ["2027-01-15T06:00:00Z"], "missed": ["2027-01-15T01:00:00Z"]}
    assert info.send.total == 11 and "1" not in _outbox(settings)  # Kolkata's wave: missed
    listing = run_cli(settings.project_dir, "schedule", "list")
    assert "send 1: 11/11 sent; 1 wave(s) missed" in listing.stdout
    worker.shutdown()


def test_local_time_refuses_an_offset(project) -> None:
    settings, engine = project
    with pytest.raises(UsageError, match="--local-time needs a wall-clock time"):
        schedules.schedule_issue(engine, settings, settings.project_dir / ISSUE, "daily",
                                 at="2027-01-15T06:00:00+01:00", local_time=True)


# -- logs, listing, preview status, schema --------------------------------------------------------


def test_structured_log_lines_for_start_progress_and_finish(tmp_path: Path, caplog) -> None:
    settings = make_project(tmp_path / "p")
    settings = settings.model_copy(update={"worker_progress_batches": 1})
    engine = seed(settings, 1100)
    clock = FakeClock(_now())
    schedules.schedule_issue(engine, settings, settings.project_dir / ISSUE, "daily",
                             at=_fmt(clock.now() + dt.timedelta(seconds=1)), clock=clock)
    worker = _worker(settings, engine, clock)
    with caplog.at_level(logging.INFO, logger="newsletter.worker"):
        worker.start()
        clock.advance(seconds=1)
        _tick(worker)
        worker.shutdown()
    events = [json.loads(r.getMessage()) for r in caplog.records]
    names = [e["event"] for e in events]
    assert names[0] == "worker.started" and names[-1] == "worker.stopped"
    assert names.count("send.started") == 1 and names.count("send.finished") == 1
    assert names.count("send.progress") >= 2
    started = next(e for e in events if e["event"] == "send.started")
    assert started["recipients"] == 1100 and started["late_seconds"] == 0
    finished = next(e for e in events if e["event"] == "send.finished")
    assert finished["sent"] == 1100 and finished["uncertain"] == 0
    assert all(set(e) >= {"ts", "level", "event"} for e in events)
    engine.dispose()


def test_list_shows_worker_state(project) -> None:
    settings, engine = project
    worker = WorkerProcess(engine, settings)
    worker.start()
    listing = run_cli(settings.project_dir, "schedule", "list")
    assert f"worker {worker.id[:8]} pid {os.getpid()}" in listing.stdout
    assert ": idle" in listing.stdout
    data = json.loads(run_cli(settings.project_dir, "schedule", "list", "--format", "json").stdout)
    assert data["workers"][0]["id"] == worker.id
    worker.shutdown()
    assert "no worker is running" in run_cli(settings.project_dir, "schedule", "list").stdout


def _preview_badges(settings, name: str) -> list[str]:
    """The badges of an issue's row in the preview's index, as the editor sees them (the
    row as an open index fetches it once the issue is built)."""
    page = asyncio.run(_fetch(create_app(settings), f"/_rows?name={name}"))
    row = next(r for r in re.findall(r"<tr[^>]*>(.*?)</tr>", page, re.S)
               if f"/issues/{name}\"" in r)
    return re.findall(r'class="badge ([a-z]+)">([^<]*)<', row)


async def _fetch(app, url: str) -> str:
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://127.0.0.1") as client:
        return (await client.get(url)).text


def test_preview_index_status_scheduled_then_sent(project) -> None:
    settings, engine = project
    clock = FakeClock(_now())
    path = settings.project_dir / ISSUE
    assert issue_status(settings, "2026-11-24") is None
    assert _preview_badges(settings, "2026-11-24") == [("valid", "valid")]
    planned = schedules.schedule_issue(engine, settings, path, "daily",
                                       at="2027-01-15 06:00", tz=LONDON, clock=clock)
    assert _preview_badges(settings, "2026-11-24") == [
        ("valid", "valid"), ("scheduled", "scheduled 2027-01-15 06:00 Europe/London")]
    schedules.move(engine, planned.schedule.id, _fmt(clock.now() + dt.timedelta(seconds=1)),
                   clock=clock)
    worker = _worker(settings, engine, clock)
    assert worker.register()
    clock.advance(seconds=1)
    _tick(worker)
    assert _preview_badges(settings, "2026-11-24") == [
        ("valid", "valid"), ("sent", "sent to 12 (daily)")]
    status = issue_status(settings, "2026-11-24")
    assert status is not None and (status.kind, status.label) == ("sent", "sent to 12 (daily)")
    assert issue_status(settings, "2026-11-23") is None
    assert _preview_badges(settings, "2026-11-25") == [("valid", "valid")]  # another issue
    worker.shutdown()


