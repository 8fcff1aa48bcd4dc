"""Commands: schedule ISSUE, schedule list|cancel|move, worker."""

from __future__ import annotations

import json
import logging
import signal
import sys
import threading
from pathlib import Path

import click

from ..config import BACKENDS
from . import get_settings
from .send import subject_test_options

SUBCOMMANDS = ("list", "cancel", "move", "create")


class _ScheduleGroup(click.Group):
    """``newsletter schedule ISSUE ...`` is ``schedule create ISSUE ...``."""

    def parse_args(self, ctx: click.Context, args: list[str]) -> list[str]:
        if args and args[0] not in SUBCOMMANDS and args[0] not in ("-h", "--help"):
            args = ["create", *args]
        return super().parse_args(ctx, args)


def _engine(ctx: click.Context):
    from newsletter.db.connect import open_store

    return open_store(get_settings(ctx))


@click.group("schedule", cls=_ScheduleGroup)
def schedule_group() -> None:
    """Schedule an issue for later; list, cancel or move schedules.

    \b
    Examples:
      newsletter schedule issues/2026-12-01.md --list daily --at "2026-12-01 06:00"
      newsletter schedule issues/2026-12-01.md --list daily --at 2026-12-01T06:00:00+01:00
      newsletter schedule issues/2026-12-01.md --list daily --at "2026-12-01 06:00" --local-time
      newsletter schedule list
      newsletter schedule cancel 3
      newsletter schedule move 3 --at "2026-12-02 06:00"

    `newsletter schedule ISSUE --help` lists the options of scheduling an issue:
    --list, --at, --tz, --backend, --local-time, --again, and a subject test's --subject,
    --test-share, --decide-after.
    """


@schedule_group.command("create", hidden=True)
@click.argument("issue", type=click.Path(dir_okay=False, path_type=Path))
@click.option("--list", "list_name", required=True, help="The list to send to.")
@click.option("--at", "at", default=None,
              help="YYYY-MM-DD HH:MM[:SS] in --tz, or ISO 8601 with an offset "
                   "(default: send_at in the issue's front matter).")
@click.option("--tz", default=None, help="IANA time zone of --at (default: `timezone` in "
              "newsletter.toml).")
@click.option("--backend", type=click.Choice(BACKENDS), default=None,
              help="Delivery backend (default: `backend` in newsletter.toml).")
@click.option("--local-time", is_flag=True,
              help="Send at that wall-clock time in each subscriber's own time zone.")
@click.option("--again", is_flag=True, help="Schedule an issue already sent to this list.")
@subject_test_options
@click.pass_context
def create_cmd(ctx: click.Context, issue: Path, list_name: str, at: str | None, tz: str | None,
               backend: str | None, local_time: bool, again: bool, subjects: tuple[str, ...],
               test_share: str | None, decide_after: str | None) -> None:
    """Schedule ISSUE to go out to --list at --at (checked now, rendered again then).

    An issue with subject_variants (or --subject options) is sent as `newsletter send`
    sends it: the worker tries the subjects on --test-share of the list, waits
    --decide-after and sends the subject people clicked most to the rest."""
    from newsletter.scheduling.schedules import schedule_issue
    from newsletter.scheduling.sendtimes import zone_info

    settings = get_settings(ctx)
    planned = schedule_issue(
        _engine(ctx), settings, issue, list_name, at=at, tz=tz, backend=backend,
        local_time=local_time, again=again, subjects=subjects, test_share=test_share,
        decide_after=decide_after)
    s, when = planned.schedule, planned.when
    if planned.other is not None:
        click.echo(f"--at {at} wins over send_at {planned.other} in {issue}'s front matter")
    elif planned.source == "send_at":
        click.echo(f"time from send_at in {issue}'s front matter")
    if when.note:
        click.echo(f"note: {when.note}")
    local = when.due_at.astimezone(zone_info(when.zone))
    if planned.waves:
        first, last = planned.waves[0][0], planned.waves[-1][0]
        click.echo(
            f"schedule {s.id}: {issue} to list {s.list_name!r} at {when.wall:%Y-%m-%d %H:%M} "
            f"local time of each subscriber: {len(planned.waves)} wave(s) from "
            f"{first:%Y-%m-%d %H:%M} to {last:%Y-%m-%d %H:%M} UTC (subscribers without a "
            f"timezone: {when.zone})")
    else:
        click.echo(
            f"schedule {s.id}: {issue} to list {s.list_name!r} at "
            f"{when.due_at:%Y-%m-%d %H:%M:%S} UTC = {local:%Y-%m-%d %H:%M:%S %Z} ({when.zone})"
            f" via {s.backend or settings.backend}")
    test = planned.subject_test
    if test is not None:
        click.echo(f"  subject test: {len(test.subjects)} subjects to {test.share:.0%} of the "
                   f"list, the winner to the rest {_duration(test.after)} later "
                   f"({'--subject' if subjects else 'subject_variants'})")
    if planned.warnings:
        click.echo(f"  the issue has {planned.warnings} warning(s): `newsletter validate "
                   f"{issue}` lists them")
    click.echo("  a running `newsletter worker` sends it; `newsletter schedule list` shows it")


def _duration(delta) -> str:  # noqa: ANN001  (datetime.timedelta)
    minutes = int(delta.total_seconds()) // 60
    return f"{minutes // 60}h{minutes % 60:02d}m" if minutes >= 60 else f"{minutes}m"


def _counts(info) -> str:
    if info.send is None:
        return ""
    c = info.send.counts
    text = f"send {info.send.id}: {c.get('sent', 0):,}/{info.send.total:,} sent"
    for key in ("failed", "uncertain", "skipped", "pending", "held"):
        if c.get(key, 0):
            text += f", {c[key]:,} {key}"
    return text


@schedule_group.command("list")
@click.option("--limit", type=click.IntRange(1, 10000), default=20, show_default=True,
              help="How many past schedules to show (every upcoming one is shown).")
@click.option("--format", "fmt", type=click.Choice(["table", "json"]), default="table")
@click.pass_context
def list_cmd(ctx: click.Context, limit: int, fmt: str) -> None:
    """Upcoming and recent schedules with their status, and the running workers.

    Example: newsletter schedule list
    """
    from newsletter.scheduling.schedules import list_schedules
    from newsletter.scheduling.worker import live_workers

    engine = _engine(ctx)
    rows = list_schedules(engine, limit=limit)
    workers = live_workers(engine)
    if fmt == "json":
        click.echo(json.dumps({
            "schedules": [{
                "id": s.id, "issue": s.issue_path, "list": s.list_name, "status": s.status,
                "due_at": s.due_at.isoformat(), "zone": s.zone, "wall": s.wall,
                "local_time": s.local_time, "send_id": s.send_id, "note": s.note,
                "counts": s.send.counts if s.send else None, "subject_test": s.subject_test,
            } for s in rows],
            "workers": [{"id": w.id, "host": w.host, "pid": w.pid, "state": w.state,
                         "detail": w.detail, "heartbeat_at": w.heartbeat_at.isoformat()}
                        for w in workers],
        }, indent=2))
        return
    if not rows:
        click.echo("no schedules yet: `newsletter schedule ISSUE --list NAME --at ...`")
    else:
        click.echo(f"{'id':>4}  {'due (UTC)':16}  {'local':32}  {'status':9}  {'list':10}  "
                   "issue")
    for s in rows:
        local = f"{s.due_local:%Y-%m-%d %H:%M} {s.zone}"
        if s.local_time:
            local = f"{s.wall[:16]} per subscriber"
        click.echo(f"{s.id:>4}  {s.due_at:%Y-%m-%d %H:%M}  {local[:32]:32}  {s.status:9}  "
                   f"{s.list_name[:10]:10}  {s.issue_path}")
        details = _counts(s)
        missed = len((s.waves or {}).get("missed", []))
        if missed:
            details += f"{'; ' if details else ''}{missed} wave(s) missed (over the grace period)"
        if details:
            click.echo(f"      {details}")
        if s.note and s.status in ("failed", "missed", "scheduled"):
            for line in s.note.splitlines()[:10]:
                click.echo(f"      {line}")
    if workers:
        for w in workers:
            click.echo(f"worker {w.id[:8]} pid {w.pid} on {w.host}: {w.state}"
                       + (f" ({w.detail})" if w.detail else "")
                       + f", last seen {w.heartbeat_at:%H:%M:%S} UTC")
    else:
        click.echo("no worker is running: start one with `newsletter worker`")


@schedule_group.command("cancel")
@click.argument("schedule_id", type=int)
@click.pass_context
def cancel_cmd(ctx: click.Context, schedule_id: int) -> None:
    """Cancel a schedule (a started one stops after the batches in flight).

    Example: newsletter schedule cancel 3
    """
    from newsletter.scheduling.schedules import cancel

    info = cancel(_engine(ctx), schedule_id)
    extra = f"; send {info.send_id} stopped: {_counts(info)}" if info.send_id else ""
    click.echo(f"schedule {info.id} cancelled{extra}")


@schedule_group.command("move")
@click.argument("schedule_id", type=int)
@click.option("--at", "at", required=True, help="The new time, as for `schedule`.")
@click.option("--tz", default=None, help="Time zone of --at (default: the schedule's).")
@click.pass_context
def move_cmd(ctx: click.Context, schedule_id: int, at: str, tz: str | None) -> None:
    """Give a scheduled, missed or failed schedule a new time.

    Example: newsletter schedule move 3 --at "2026-12-02 06:00"
    """
    from newsletter.scheduling.schedules import move

    info, when = move(_engine(ctx), schedule_id, at, tz=tz)
    if when.note:
        click.echo(f"note: {when.note}")
    click.echo(f"schedule {info.id} moved to {info.due_at:%Y-%m-%d %H:%M:%S} UTC = "
               f"{info.due_local:%Y-%m-%d %H:%M:%S %Z} ({info.zone})")


class _Lines(logging.Handler):
    def emit(self, record: logging.LogRecord) -> None:
        try:
            sys.stderr.write(record.getMessage() + "\n")
            sys.stderr.flush()
        except Exception:  # a closed stderr must not stop the worker
            self.handleError(record)


@click.command("worker")
@click.option("--standby", is_flag=True,
              help="On SQLite, wait for the running worker to stop instead of refusing.")
@click.option("--workers", type=click.IntRange(1, 64), default=None,
              help="Concurrent batches per send (SMTP connections / SendGrid requests).")
@click.pass_context
def worker_cmd(ctx: click.Context, standby: bool, workers: int | None) -> None:
    """Send scheduled issues when they are due; run until stopped (SIGTERM, Ctrl-C).

    Logs one JSON line per event on stderr. Example: newsletter worker
    """
    from newsletter.scheduling.worker import WorkerProcess

    settings = get_settings(ctx)
    engine = _engine(ctx)
    logger = logging.getLogger("newsletter.worker")
    if not any(isinstance(h, _Lines) for h in logger.handlers):
        logger.addHandler(_Lines())
    logger.setLevel(logging.INFO)
    logger.propagate = False
    stop = threading.Event()

    def handler(signum, frame) -> None:  # noqa: ARG001, ANN001
        if stop.is_set():
            raise KeyboardInterrupt
        stop.set()

    signal.signal(signal.SIGINT, handler)
    signal.signal(signal.SIGTERM, handler)
    process = WorkerProcess(engine, settings, stop=stop, standby=standby, concurrency=workers)
    process.run()
