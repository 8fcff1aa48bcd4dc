"""Send times: ``--at`` and ``send_at`` parsing, time zones, daylight saving, local-time waves.

- ``parse_at(text, zone)`` reads ``YYYY-MM-DD HH:MM[:SS]`` (a wall-clock time in ``zone``)
  or ISO 8601 with an offset (one instant) into a ``When``.
- ``localize(wall, zone)``: a wall-clock time resolved for its own date, so 06:00 local is
  06:00 local on both sides of a daylight-saving change. A time in the hour skipped in
  spring moves forward by the gap (01:30 -> 02:30 in Europe/London); a time in the repeated
  autumn hour means its first occurrence; both come with a note to show the user.
- ``--local-time`` waves: ``wave_at`` puts a zone on a whole-hour UTC grid (a fractional
  offset joins the next wave, at most 45 minutes late); ``zone_waves`` maps each
  ``timezone`` attribute among a list's recipients to its wave; ``advance_waves`` decides
  which waves are due, missed (beyond the grace period) or still to come.
"""

from __future__ import annotations

import datetime as dt
import math
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import sqlalchemy as sa

from ..audience.receiving import receives
from ..authoring.when import AT_HELP, When, localize, parse_at, zone_info  # noqa: F401  (re-exported)
from ..db.tables import memberships, subscribers
from ..db.transactions import DB, transaction


def wave_at(wall: dt.datetime, zone: ZoneInfo) -> dt.datetime:
    """The UTC time of the wave that reaches ``zone`` at ``wall`` (whole-hour grid)."""
    instant, _ = localize(wall, zone)
    base = wall.replace(tzinfo=dt.UTC)
    hours = math.ceil((instant - base) / dt.timedelta(hours=1))
    return base + dt.timedelta(hours=hours)


def iso(value: dt.datetime) -> str:
    return value.astimezone(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


_TZ = subscribers.c.attributes["timezone"].as_string()


def zone_waves(db: DB, list_id: int, wall: dt.datetime, default_zone: str
               ) -> dict[str | None, dt.datetime]:
    """Each ``timezone`` attribute value among the list's recipients -> its wave (UTC)."""
    with transaction(db) as conn:
        values = conn.execute(
            sa.select(_TZ).distinct()
            .select_from(subscribers.join(memberships,
                                          memberships.c.subscriber_id == subscribers.c.id))
            .where(memberships.c.list_id == list_id, receives())
        ).scalars().all()
    fallback = zone_info(default_zone)
    waves: dict[str | None, dt.datetime] = {}
    for value in values:
        try:
            zone = ZoneInfo(value) if value else fallback
        except (ZoneInfoNotFoundError, ValueError):
            zone = fallback  # a typo in a subscriber's attribute: the newsletter's zone
        waves[value] = wave_at(wall, zone)
    return waves


def zone_condition(values: list[str | None]) -> sa.ColumnElement[bool]:
    named = [v for v in values if v is not None]
    parts: list[sa.ColumnElement[bool]] = []
    if named:
        parts.append(_TZ.in_(named))
    if None in values:
        parts.append(_TZ.is_(None))
    return sa.or_(*parts) if parts else sa.false()


def advance_waves(
    waves: dict[str, list[str]] | None,
    zones: dict[str | None, dt.datetime],
    now: dt.datetime,
    grace: dt.timedelta,
) -> tuple[dict[str, list[str]], list[str | None], list[dt.datetime]]:
    """Mark due waves done (or missed, beyond the grace period).

    Returns the new wave record, the zone values whose wave is released now, and the
    instants of the waves still to come. A subscriber's wave is fixed by their zone when
    it goes out: one who moves into a zone whose wave has gone waits for no other wave.
    """
    before_done = set((waves or {}).get("done", []))
    before_missed = set((waves or {}).get("missed", []))
    done, missed = set(before_done), set(before_missed)
    released: list[str | None] = []
    pending: set[dt.datetime] = set()
    for value, at in zones.items():
        key = iso(at)
        if key in before_done or key in before_missed:
            continue
        if at > now:
            pending.add(at)
        elif now - at > grace:
            missed.add(key)
        else:
            done.add(key)
            released.append(value)
    return {"done": sorted(done), "missed": sorted(missed)}, released, sorted(pending)
