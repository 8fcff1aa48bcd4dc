"""Reading a send time (``--at``, an issue's ``send_at``): the one parser both use.

Authoring owns it (no database here), so ``newsletter validate`` checks ``send_at`` with exactly the code
``newsletter schedule`` runs, without loading SQLAlchemy. ``sendtimes`` re-exports it.
"""

from __future__ import annotations

import datetime as dt
import re
from dataclasses import dataclass
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from ..errors import UsageError

_WALL = re.compile(r"^\d{4}-\d{2}-\d{2}[ T]\d{2}:\d{2}(:\d{2})?$")
AT_HELP = ("write YYYY-MM-DD HH:MM[:SS] (in --tz) or ISO 8601 with an offset, "
           "e.g. 2026-12-01T06:00:00+01:00")


@dataclass(frozen=True)
class When:
    due_at: dt.datetime  # UTC
    wall: dt.datetime  # naive: the wall-clock time in ``zone``
    zone: str
    fixed: bool  # given with an offset: one instant, whatever the zone
    note: str | None = None  # a daylight-saving remark


def zone_info(name: str) -> ZoneInfo:
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        raise UsageError(
            f"unknown time zone {name!r}: use an IANA name such as Europe/London"
        ) from None


def localize(wall: dt.datetime, zone: ZoneInfo) -> tuple[dt.datetime, str | None]:
    """The UTC instant of a wall-clock time in ``zone``, and a note on DST oddities."""
    first = wall.replace(tzinfo=zone, fold=0).astimezone(dt.UTC)
    back = first.astimezone(zone).replace(tzinfo=None)
    if back != wall:  # in the gap: clocks went forward over it
        return first, (
            f"{wall:%H:%M} does not exist on {wall:%Y-%m-%d} in {zone.key} (clocks go "
            f"forward); it goes out at {back:%H:%M} local, {first:%H:%M} UTC"
        )
    second = wall.replace(tzinfo=zone, fold=1).astimezone(dt.UTC)
    if second != first:
        return first, (
            f"{wall:%H:%M} happens twice on {wall:%Y-%m-%d} in {zone.key} (clocks go back); "
            f"it goes out at the first, {first:%H:%M} UTC"
        )
    return first, None


def parse_at(text: str, zone_name: str, *, what: str = "--at") -> When:
    """``YYYY-MM-DD HH:MM[:SS]`` in ``zone_name``, or ISO 8601 (with or without offset)."""
    zone = zone_info(zone_name)
    raw = str(text).strip()
    try:
        parsed = dt.datetime.fromisoformat(raw[:-1] + "+00:00" if raw.endswith("Z") else raw)
    except ValueError:
        raise UsageError(f"{what} {raw!r} is not a date and time: {AT_HELP}") from None
    if parsed.tzinfo is None:
        if not _WALL.match(raw) and "T" not in raw:
            raise UsageError(f"{what} {raw!r} has no time of day: {AT_HELP}")
        due, note = localize(parsed, zone)
        return When(due, parsed, zone_name, fixed=False, note=note)
    due = parsed.astimezone(dt.UTC)
    return When(due, due.astimezone(zone).replace(tzinfo=None), zone_name, fixed=True)


