"""The one rule that tells people's clicks from link scanners' (feedback.clicks)."""

from __future__ import annotations

import datetime as dt

import sqlalchemy as sa
from sqlalchemy.engine import Engine

from newsletter.feedback import clicks

T0 = dt.datetime(2026, 11, 30, 6, 0, tzinfo=dt.UTC)


def _at(seconds: float) -> dt.datetime:
    return T0 + dt.timedelta(seconds=seconds)


def _flags(rows: list[tuple[int, str, float]]) -> list[str]:
    found = clicks.classify_message(
        clicks.Click(1, idx, method, _at(s)) for idx, method, s in rows)
    return [c.flag or "human" for c in found]


def test_a_person_clicking_two_links_minutes_apart_is_human() -> None:
    assert _flags([(1, "GET", 0), (2, "GET", 240), (1, "GET", 600)]) == ["human"] * 3


def test_head_requests_are_flagged_and_do_not_flag_the_get_after_them() -> None:
    assert _flags([(1, "HEAD", 0), (1, "GET", 30)]) == ["head", "human"]


def test_three_distinct_links_within_two_seconds_are_a_burst() -> None:
    assert _flags([(1, "GET", 0), (2, "GET", 0.5), (3, "GET", 1.5), (4, "GET", 100)]) == [
        "burst", "burst", "burst", "human"]
    # the same link three times quickly is a person double-clicking, not a scanner
    assert _flags([(1, "GET", 0), (1, "GET", 0.3), (1, "GET", 0.6)]) == ["human"] * 3


def test_a_canary_hit_flags_the_message_clicks_around_it() -> None:
    assert _flags([(2, "GET", 0), (0, "GET", 10), (3, "GET", 50), (4, "GET", 500)]) == [
        "canary", "canary", "canary", "human"]


def test_unique_human_clickers_counts_people_only(store: Engine) -> None:
    with store.begin() as conn:
        clicks.record(conn, 7, 1, 2, "GET", _at(0))  # a person
        clicks.record(conn, 7, 1, 3, "GET", _at(300))  # the same person again
        clicks.record(conn, 7, 2, 2, "HEAD", _at(0))  # a scanner checking
        clicks.record(conn, 7, 3, 0, "GET", _at(0))  # the canary
        clicks.record(conn, 7, 3, 2, "GET", _at(1))
        clicks.record(conn, 7, 4, 2, "GET", _at(5))  # another person
        clicks.record(conn, 8, 5, 2, "GET", _at(5))  # another send
    assert clicks.unique_human_clickers(store, 7) == 2
    assert clicks.unique_human_clickers(store, 8) == 1
    assert clicks.unique_human_clickers(store, 9) == 0


def test_erasing_a_subscriber_deletes_their_clicks_and_opens(store: Engine) -> None:
    from newsletter.audience.lists import create_list
    from newsletter.audience.subscribers import add_subscriber, remove_subscriber
    from newsletter.db.tables import clicks as clicks_table
    from newsletter.db.tables import opens

    create_list(store, "daily")
    ann = add_subscriber(store, "ann@example.org", lists=["daily"]).subscriber
    bob = add_subscriber(store, "bob@example.org", lists=["daily"]).subscriber
    with store.begin() as conn:
        for who in (ann.id, bob.id):
            clicks.record(conn, 3, who, 1, "GET", _at(0))
            clicks.record_open(conn, 3, who, _at(0))
    remove_subscriber(store, "ann@example.org", key="k" * 40)
    with store.connect() as conn:
        for table in (clicks_table, opens):
            left = conn.execute(sa.select(table.c.subscriber_id)).scalars().all()
            assert left == [bob.id]
    assert clicks.unique_human_clickers(store, 3) == 1
