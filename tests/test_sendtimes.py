"""Send times: ``--at`` / ``send_at`` parsing, daylight saving, local-time waves.

Pure time arithmetic (``parse_at``, ``localize``, ``wave_at``, ``advance_waves``) is
tested on its own; ``zone_waves`` reads the list's subscribers, on SQLite and PostgreSQL.
"""

from __future__ import annotations

import datetime as dt
from zoneinfo import ZoneInfo

import pytest
from sqlalchemy.engine import Engine

from newsletter.audience.lists import create_list
from newsletter.audience.subscribers import add_subscriber, set_status, unsubscribe
from newsletter.errors import UsageError
from newsletter.scheduling.sendtimes import (
    advance_waves,
    iso,
    localize,
    parse_at,
    wave_at,
    zone_waves,
)

LONDON = "Europe/London"
UTC = dt.UTC


def _utc(text: str) -> dt.datetime:
    return dt.datetime.fromisoformat(text).replace(tzinfo=UTC)


# -- parsing and daylight saving -----------------------------------------------------------


@pytest.mark.parametrize(("text", "utc"), [
    ("2027-01-15 06:00", "2027-01-15T06:00:00"),
    ("2027-01-15 06:00:30", "2027-01-15T06:00:30"),
    ("2027-01-15T06:00", "2027-01-15T06:00:00"),
    ("2027-07-15 06:00", "2027-07-15T05:00:00"),  # BST
    ("2027-07-15T06:00:00+02:00", "2027-07-15T04:00:00"),  # an offset is one instant
    ("2027-07-15T04:00:00Z", "2027-07-15T04:00:00"),
])
def test_at_formats(text: str, utc: str) -> None:
    when = parse_at(text, LONDON)
    assert when.due_at == dt.datetime.fromisoformat(utc).replace(tzinfo=dt.UTC)


@pytest.mark.parametrize("text", ["tomorrow 6am", "2027-01-15", "2027-13-01 06:00", "06:00"])
def test_bad_at_is_one_clear_line(text: str) -> None:
    with pytest.raises(UsageError) as err:
        parse_at(text, LONDON)
    assert "YYYY-MM-DD HH:MM" in str(err.value) and "\n" not in str(err.value)


def test_six_local_is_six_local_on_both_sides_of_each_change() -> None:
    utc = {day: parse_at(f"{day} 06:00", LONDON).due_at.hour
           for day in ("2027-03-27", "2027-03-28", "2027-10-30", "2027-10-31")}
    assert utc == {"2027-03-27": 6, "2027-03-28": 5, "2027-10-30": 5, "2027-10-31": 6}


def test_skipped_hour_moves_forward_and_repeated_hour_takes_the_first() -> None:
    skipped = parse_at("2027-03-28 01:30", LONDON)  # 01:00 -> 02:00 BST
    assert skipped.due_at == dt.datetime(2027, 3, 28, 1, 30, tzinfo=dt.UTC)  # 02:30 BST
    assert "does not exist" in (skipped.note or "") and "02:30 local" in (skipped.note or "")
    repeated = parse_at("2027-10-31 01:30", LONDON)  # 01:30 BST, then 01:30 GMT
    assert repeated.due_at == dt.datetime(2027, 10, 31, 0, 30, tzinfo=dt.UTC)
    assert "happens twice" in (repeated.note or "")


def test_an_unknown_zone_is_one_line_naming_it() -> None:
    with pytest.raises(UsageError) as err:
        parse_at("2027-01-15 06:00", "Europe/Lundon")
    assert "'Europe/Lundon'" in str(err.value) and "IANA" in str(err.value)
    assert "\n" not in str(err.value)


def test_the_error_names_what_was_read() -> None:
    with pytest.raises(UsageError, match=r"^issues/a\.md: send_at 'soon' is not a date"):
        parse_at("soon", LONDON, what="issues/a.md: send_at")


def test_a_half_hour_gap_moves_forward_by_half_an_hour() -> None:
    # Lord Howe Island puts its clocks forward by 30 minutes, at 02:00 local
    zone = ZoneInfo("Australia/Lord_Howe")
    due, note = localize(dt.datetime(2027, 10, 3, 2, 15), zone)
    assert due.astimezone(zone).strftime("%H:%M") == "02:45"
    assert note is not None and "does not exist" in note and "02:45 local" in note


def test_an_ordinary_time_has_no_note() -> None:
    due, note = localize(dt.datetime(2027, 6, 1, 6, 0), ZoneInfo(LONDON))
    assert due == _utc("2027-06-01T05:00:00") and note is None


def test_a_time_with_an_offset_is_fixed_and_shown_in_the_zone() -> None:
    when = parse_at("2027-07-15T06:00:00+02:00", LONDON)
    assert when.fixed and when.wall == dt.datetime(2027, 7, 15, 5, 0)  # 05:00 BST


def test_iso_round_trips() -> None:
    instant = _utc("2027-03-28T01:30:00")
    assert iso(instant) == "2027-03-28T01:30:00Z" and dt.datetime.fromisoformat(iso(instant)) == instant


# -- local-time waves -------------------------------------------------------------------------


@pytest.mark.parametrize(("zone", "wave"), [
    ("Europe/London", "2027-01-15T06:00:00"),
    ("Europe/Berlin", "2027-01-15T05:00:00"),
    ("America/New_York", "2027-01-15T11:00:00"),
    ("Asia/Kolkata", "2027-01-15T01:00:00"),  # 00:30Z: joins the next whole hour, 30 min late
    ("Asia/Kathmandu", "2027-01-15T01:00:00"),  # 00:15Z: 45 minutes late
    ("Pacific/Chatham", "2027-01-14T17:00:00"),  # +13:45 in January
])
def test_each_zone_joins_a_whole_hour_wave_never_early(zone: str, wave: str) -> None:
    wall = dt.datetime(2027, 1, 15, 6, 0)
    at = wave_at(wall, ZoneInfo(zone))
    assert at == _utc(wave)
    exact, _ = localize(wall, ZoneInfo(zone))
    assert dt.timedelta(0) <= at - exact < dt.timedelta(hours=1)


def test_waves_follow_daylight_saving_of_their_own_date() -> None:
    london = ZoneInfo(LONDON)
    assert wave_at(dt.datetime(2027, 3, 27, 6, 0), london) == _utc("2027-03-27T06:00:00")
    assert wave_at(dt.datetime(2027, 3, 28, 6, 0), london) == _utc("2027-03-28T05:00:00")


def test_advance_waves_releases_due_misses_late_and_keeps_the_rest() -> None:
    zones = {"Asia/Kolkata": _utc("2027-01-15T01:00:00"), None: _utc("2027-01-15T06:00:00"),
             "America/New_York": _utc("2027-01-15T11:00:00")}
    grace = dt.timedelta(hours=6)
    waves, released, pending = advance_waves(None, zones, _utc("2027-01-15T06:00:30"), grace)
    assert released == ["Asia/Kolkata", None]
    assert waves == {"done": ["2027-01-15T01:00:00Z", "2027-01-15T06:00:00Z"], "missed": []}
    assert pending == [_utc("2027-01-15T11:00:00")]
    # the next look releases nothing twice; beyond the grace period a wave is missed
    again, released, pending = advance_waves(waves, zones, _utc("2027-01-15T17:30:00"), grace)
    assert released == [] and pending == []
    assert again == {"done": waves["done"], "missed": ["2027-01-15T11:00:00Z"]}


def test_zone_waves_reads_the_lists_receiving_subscribers(store: Engine) -> None:
    daily = create_list(store, "daily")
    create_list(store, "weekly")
    people = {"a@example.com": "Asia/Kolkata", "b@example.com": "Not/AZone",
              "c@example.com": None, "d@example.com": "America/New_York",
              "e@example.com": "Europe/Berlin", "f@example.com": "Asia/Tokyo"}
    for email, zone in people.items():
        add_subscriber(store, email, lists=["weekly" if email == "f@example.com" else "daily"],
                       attributes={"timezone": zone} if zone else None)
    set_status(store, "d@example.com", "bounced", "test")  # no longer receives
    unsubscribe(store, "e@example.com", list_name="daily")  # left the list
    waves = zone_waves(store, daily.id, dt.datetime(2027, 1, 15, 6, 0), LONDON)
    assert waves == {
        "Asia/Kolkata": _utc("2027-01-15T01:00:00"),
        "Not/AZone": _utc("2027-01-15T06:00:00"),  # a typo: the newsletter's zone
        None: _utc("2027-01-15T06:00:00"),
    }
