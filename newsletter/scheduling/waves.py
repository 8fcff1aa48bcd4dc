"""``--local-time`` schedules at run time: which waves are due, released or missed.

A local-time schedule sends at its wall-clock time in each subscriber's own zone, one
wave per whole-hour UTC offset (``newsletter.scheduling.sendtimes``). The first due wave creates the
send (``scheduling.due``); each later one adds its subscribers to that one ledger send
(``delivery.ledger.add_recipients``), whose primary key keeps each recipient once.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

import sqlalchemy as sa

from newsletter.audience.lists import get_list
from newsletter.db.transactions import transaction
from newsletter.delivery import ledger
from newsletter.scheduling.sendtimes import advance_waves, iso, zone_condition, zone_waves

from .context import WorkerContext
from .log import event
from .schedules import ScheduleInfo, transition
from .tables import schedules


@dataclass
class FirstWave:
    """What the send of a schedule starts with."""

    recipient_filter: sa.ColumnElement[bool] | None  # None: the whole list
    waves: dict[str, list[str]] | None  # the wave record after this one
    next_due: dt.datetime  # the schedule's due_at afterwards


def _zones(ctx: WorkerContext, info: ScheduleInfo, list_id: int) -> dict[str | None, dt.datetime]:
    return zone_waves(ctx.engine, list_id, info.wall_time, info.zone)


def first_wave(ctx: WorkerContext, info: ScheduleInfo, list_id: int, now: dt.datetime
               ) -> FirstWave | None:
    """The waves due now for a schedule not started yet, or None when none is: then the
    schedule waits for its next wave, or is ``missed`` when every wave is too late."""
    if not info.local_time:
        return FirstWave(None, None, info.due_at)
    waves, due_zones, pending = advance_waves(info.waves, _zones(ctx, info, list_id), now,
                                              ctx.grace)
    if due_zones:
        return FirstWave(zone_condition(due_zones), waves,
                         pending[0] if pending else info.due_at)
    with transaction(ctx.engine) as conn:
        if pending:  # nobody's wave is due yet (zones changed): wait for it
            transition(conn, info, "scheduled", due_at=pending[0], waves=waves)
            return None
        won = transition(conn, info, "missed", finished_at=now, waves=waves,
                         note="every wave was more than the grace period late")
    if won:
        event("schedule.missed", schedule=info.id, issue=info.issue_path,
              due_at=iso(info.due_at))
    return None


def pending_waves(ctx: WorkerContext, info: ScheduleInfo) -> list[dt.datetime]:
    """The waves of a local-time schedule neither released nor missed yet."""
    mailing_list = get_list(ctx.engine, info.list_name)
    seen = {*(info.waves or {}).get("done", []), *(info.waves or {}).get("missed", [])}
    return sorted({at for at in _zones(ctx, info, mailing_list.id).values()
                   if iso(at) not in seen})


def release_waves(ctx: WorkerContext, info: ScheduleInfo, now: dt.datetime) -> None:
    """Add the subscribers of the waves due now to the schedule's send."""
    mailing_list = get_list(ctx.engine, info.list_name)
    zones = _zones(ctx, info, mailing_list.id)
    with transaction(ctx.engine) as conn:
        locked = sa.select(schedules.c.waves, schedules.c.status).where(
            schedules.c.id == info.id)
        if not ctx.sqlite:
            locked = locked.with_for_update()
        row = conn.execute(locked).one()
        if row.status != "sending":
            return
        waves, due_zones, pending = advance_waves(row.waves, zones, now, ctx.grace)
        if waves == row.waves:
            return
        added = 0
        if due_zones and info.send_id is not None:
            added = ledger.add_recipients(conn, info.send_id, zone_condition(due_zones))
        conn.execute(schedules.update().where(schedules.c.id == info.id)
                     .values(waves=waves, due_at=pending[0] if pending else info.due_at))
    event("wave.released", schedule=info.id, send=info.send_id, recipients=added,
          zones=sorted(str(z) for z in due_zones), missed_waves=len(waves["missed"]),
          waves_left=len(pending))
