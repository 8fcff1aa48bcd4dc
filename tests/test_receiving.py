"""The rule of who may receive a send (audience/receiving.py), and everything that states it.

For every combination of global status and membership (including no membership and no
subscriber at all), on SQLite and PostgreSQL: the Python form, the SQL forms, the
snapshot of a send, the database's triggers (migrations 0004 and 0009) and every requeue
agree; each combination also with the address on the suppression list, and with a pause
before, after or without one.
"""

from __future__ import annotations

import datetime as dt

import pytest
import sqlalchemy as sa
from sqlalchemy.engine import Engine

from newsletter.audience.lists import create_list
from newsletter.audience.receiving import (
    effective_status,
    effective_status_sql,
    may_receive,
    receives,
    refusal,
    refusal_reason,
)
from newsletter.db.tables import (
    MEMBERSHIP_STATUSES,
    STATUSES,
    Stamp,
    memberships,
    subscribers,
    suppressions,
)
from newsletter.delivery import claims, ledger, senders

# None: no such row (membership removed, subscriber erased); the third: suppressed
COMBINATIONS = [(s, m, x) for s in STATUSES for m in (*MEMBERSHIP_STATUSES, None)
                for x in (False, True)]
COMBINATIONS.append((None, None, False))


def test_the_python_form_gives_the_reasons_in_order() -> None:
    assert refusal_reason("active", "subscribed") is None
    assert refusal_reason(None, None) == "erased"
    assert refusal_reason("bounced", "unsubscribed") == "bounced"  # global status first
    assert refusal_reason("complained", "subscribed") == "complained"
    assert refusal_reason("active", "unsubscribed") == "unsubscribed from the list"
    assert refusal_reason("active", None) == "not on the list"
    assert effective_status("active", "unsubscribed") == "unsubscribed"
    assert effective_status("bounced", "subscribed") == "bounced"
    assert effective_status("active", "subscribed") == "active"
    assert refusal_reason("active", "subscribed", True) == "suppressed"
    assert refusal_reason("active", None, True) == "suppressed"  # before the list
    assert refusal_reason("bounced", "subscribed", True) == "bounced"  # after the status
    assert effective_status("active", "subscribed", True) == "unsubscribed"


def test_sql_forms_agree_with_the_python_form(store: Engine) -> None:
    def lit(value: str | None) -> sa.ColumnElement:
        return sa.cast(sa.null(), sa.String) if value is None else sa.literal(value)

    with store.connect() as conn:
        for subscriber, membership, suppressed in COMBINATIONS:
            s, m = lit(subscriber), lit(membership)
            x = lit("suppressed" if suppressed else "clear")
            p = sa.cast(sa.null(), Stamp)  # no pause
            combo = (subscriber, membership, suppressed)
            why, ok = conn.execute(sa.select(
                refusal(s, m, x, paused_until=p),
                sa.case((receives(s, m, x, paused_until=p), 1), else_=0))).one()
            assert why == refusal_reason(*combo), combo
            assert bool(ok) == may_receive(*combo), combo
            if subscriber is not None and membership is not None:
                effective = conn.execute(sa.select(effective_status_sql(s, m, x))).scalar()
                assert effective == effective_status(*combo)


def _people(store: Engine, count: int) -> tuple[int, list[int]]:
    """A list 'daily' with ``count`` active, subscribed members; (list id, their ids)."""
    daily = create_list(store, "daily")
    now = dt.datetime.now(dt.UTC)
    with store.begin() as conn:
        ids = [conn.execute(subscribers.insert().values(
            email=f"p{n}@example.org", email_key=f"p{n}@example.org", name=f"P {n}",
            attributes={}, status="active", status_changed_at=now, created_at=now,
        ).returning(subscribers.c.id)).scalar_one() for n in range(count)]
        conn.execute(memberships.insert(), [
            {"list_id": daily.id, "subscriber_id": i, "status": "subscribed",
             "created_at": now, "status_changed_at": now} for i in ids])
    return daily.id, ids


def _apply(conn: sa.Connection, subscriber_id: int, subscriber: str | None,
           membership: str | None, suppressed: bool = False) -> None:
    """Make the subscriber's state the combination, as any hand edit would."""
    if suppressed:
        conn.execute(suppressions.insert().from_select(
            ["email_key", "reason", "source", "created_at"],
            sa.select(subscribers.c.email_key, sa.literal("manual"), sa.literal("test"),
                      subscribers.c.created_at).where(subscribers.c.id == subscriber_id)))
    if subscriber is None:
        conn.execute(subscribers.delete().where(subscribers.c.id == subscriber_id))
        return
    if membership is None:
        conn.execute(memberships.delete().where(memberships.c.subscriber_id == subscriber_id))
    elif membership != "subscribed":
        conn.execute(memberships.update().where(memberships.c.subscriber_id == subscriber_id)
                     .values(status=membership))
    if subscriber != "active":
        conn.execute(subscribers.update().where(subscribers.c.id == subscriber_id)
                     .values(status=subscriber))


def _send(store: Engine, list_id: int) -> int:
    return ledger.create_send(store, kind="real", issue_path="i.md", issue_slug="i",
                              subject="S", list_id=list_id, list_name="daily",
                              backend="outbox", html="", text="")


def _rows(store: Engine, send_id: int) -> dict[int, tuple[str, str | None]]:
    r = ledger.send_recipients.c
    with store.connect() as conn:
        return {seq: (status, reason) for seq, status, reason in conn.execute(
            sa.select(r.seq, r.status, r.reason).where(r.send_id == send_id))}


def test_the_triggers_state_the_same_rule(store: Engine) -> None:
    """A pending row stays pending exactly when the rule says the subscriber may receive."""
    list_id, ids = _people(store, len(COMBINATIONS))
    send_id = _send(store, list_id)
    with store.begin() as conn:
        for subscriber_id, combo in zip(ids, COMBINATIONS, strict=True):
            _apply(conn, subscriber_id, *combo)
    rows = _rows(store, send_id)
    for subscriber_id, combo in zip(ids, COMBINATIONS, strict=True):
        expected = "pending" if may_receive(*combo) else "skipped"
        assert rows[subscriber_id][0] == expected, combo
    # a suppression alone says so; the status changes of the same transaction came first
    assert rows[ids[COMBINATIONS.index(("active", "subscribed", True))]] == (
        "skipped", "suppressed")


def test_the_snapshot_takes_exactly_who_may_receive(store: Engine) -> None:
    list_id, ids = _people(store, len(COMBINATIONS))
    with store.begin() as conn:
        for subscriber_id, combo in zip(ids, COMBINATIONS, strict=True):
            _apply(conn, subscriber_id, *combo)
    rows = _rows(store, _send(store, list_id))
    wanted = {i for i, combo in zip(ids, COMBINATIONS, strict=True) if may_receive(*combo)}
    assert {i for i, (status, _) in rows.items() if status == "pending"} == wanted
    assert len(wanted) == 1
    # refused only for the suppression: in the send as skipped, so the report counts it
    only_suppressed = ids[COMBINATIONS.index(("active", "subscribed", True))]
    assert {i: row for i, row in rows.items() if i not in wanted} == {
        only_suppressed: ("skipped", "suppressed")}


@pytest.mark.parametrize("status", ["temporary", "uncertain"])
def test_a_requeue_skips_with_the_rules_reason(store: Engine, status: str) -> None:
    list_id, ids = _people(store, len(COMBINATIONS) + 1)
    send_id = _send(store, list_id)
    r = ledger.send_recipients.c
    with store.begin() as conn:  # the first attempt went out; then the people changed
        conn.execute(ledger.send_recipients.update().where(r.send_id == send_id)
                     .values(status=status, reason="451 try later", attempts=1))
        for subscriber_id, combo in zip(ids, COMBINATIONS, strict=False):  # not the last
            _apply(conn, subscriber_id, *combo)
    done = ledger.requeue_counted(store, send_id, ["temporary", "uncertain"])
    rows = _rows(store, send_id)
    for subscriber_id, combo in zip(ids, COMBINATIONS, strict=False):
        why = refusal_reason(*combo)
        assert rows[subscriber_id] == (("pending", "451 try later") if why is None
                                       else ("skipped", why)), combo
    assert rows[ids[-1]][0] == "pending"  # the extra one, unchanged
    assert done.pending == 2 and done.skipped_total == len(COMBINATIONS) - 1
    assert done.skipped == {"erased": 1, "not on the list": 1, "unsubscribed from the list": 1,
                            "suppressed": 3, "unsubscribed": 6, "bounced": 6, "complained": 6}


def test_a_released_batch_skips_who_left_while_it_was_claimed(store: Engine) -> None:
    list_id, ids = _people(store, 4)
    send_id = _send(store, list_id)
    send = ledger.get_send(store, send_id)
    worker = senders.register_worker(store, send_id)
    batch_id, claimed = claims.claim_batch(store, send, worker, 3)
    assert len(claimed) == 3
    with store.begin() as conn:  # while the batch is with the backend: too late for triggers
        _apply(conn, ids[0], "bounced", "subscribed")
        _apply(conn, ids[1], "active", "unsubscribed")
    # the three are in flight (on PostgreSQL a trigger may mark a row of a batch in flight
    # skipped meanwhile: what it becomes is decided when the batch is answered or released)
    assert ledger.get_send(store, send_id).counts == {"sending": 3, "pending": 1}
    claims.release_batch(store, send_id, batch_id)  # the backend was unavailable
    rows = _rows(store, send_id)
    assert rows[ids[0]] == ("skipped", "bounced")
    assert rows[ids[1]] == ("skipped", "unsubscribed from the list")
    assert rows[ids[2]][0] == rows[ids[3]][0] == "pending"


def test_test_sends_are_requeued_as_they_are(store: Engine) -> None:
    list_id, _ = _people(store, 1)
    send_id = ledger.create_send(store, kind="test", issue_path="i.md", issue_slug="i",
                                 subject="S", list_id=list_id, list_name="daily",
                                 backend="outbox", html="", text="",
                                 test_to=["editor@example.org"])
    r = ledger.send_recipients.c
    with store.begin() as conn:
        conn.execute(ledger.send_recipients.update().where(r.send_id == send_id)
                     .values(status="uncertain"))
    assert ledger.requeue_counted(store, send_id, ["uncertain"]) == (1, {})


# -- the pause (preference centre): the third condition of the rule ------------------------

NOW = dt.datetime(2026, 12, 1, 12, 0, tzinfo=dt.UTC)
PAUSES = [None, NOW - dt.timedelta(seconds=1), NOW + dt.timedelta(days=7)]


def test_a_pause_refuses_until_it_ends_in_python() -> None:
    later = NOW + dt.timedelta(days=7)
    assert refusal_reason("active", "subscribed", paused_until=later, now=NOW) == "paused"
    assert refusal_reason("active", "subscribed", paused_until=later, now=later) is None  # it has ended
    assert refusal_reason("bounced", "subscribed", paused_until=later, now=NOW) == "bounced"  # status first
    assert refusal_reason("active", "unsubscribed", paused_until=later, now=NOW) == "paused"  # before list
    assert refusal_reason("active", "subscribed", paused_until=NOW - dt.timedelta(days=1),
                          now=NOW) is None
    assert effective_status("active", "subscribed") == "active"  # a pause is not a status


def test_sql_forms_agree_with_the_python_form_with_pauses(store: Engine) -> None:
    def lit(value: str | None) -> sa.ColumnElement:
        return sa.cast(sa.null(), sa.String) if value is None else sa.literal(value)

    with store.connect() as conn:
        for subscriber, membership, suppressed in COMBINATIONS:
            for pause in PAUSES:
                s, m = lit(subscriber), lit(membership)
                x = lit("suppressed" if suppressed else "clear")
                p = sa.cast(sa.null(), Stamp) if pause is None else sa.literal(pause, Stamp)
                why, ok = conn.execute(sa.select(
                    refusal(s, m, x, paused_until=p, now=NOW),
                    sa.case((receives(s, m, x, paused_until=p, now=NOW), 1), else_=0))).one()
                combo = (subscriber, membership, suppressed, pause)
                assert why == refusal_reason(subscriber, membership, suppressed,
                                             paused_until=pause, now=NOW), combo
                assert bool(ok) == may_receive(subscriber, membership, suppressed,
                                               paused_until=pause, now=NOW), combo


def _pause(conn: sa.Connection, subscriber_id: int, until: dt.datetime | None) -> None:
    from newsletter.audience import status_changes

    status_changes.pause(conn, subscriber_id, until)


def test_pausing_skips_pending_rows_and_a_past_pause_does_not(store: Engine) -> None:
    """The trigger of migration 0009 agrees with the rule: a pause still to come skips the
    subscriber's pending rows (reason ``paused``); one already over does not."""
    now = dt.datetime.now(dt.UTC)
    list_id, ids = _people(store, 3)
    send_id = _send(store, list_id)
    with store.begin() as conn:
        _pause(conn, ids[0], now + dt.timedelta(days=14))
        _pause(conn, ids[1], now - dt.timedelta(minutes=1))
    rows = _rows(store, send_id)
    assert rows[ids[0]] == ("skipped", "paused")
    assert rows[ids[1]] == rows[ids[2]] == ("pending", None)
    assert may_receive("active", "subscribed", paused_until=now + dt.timedelta(days=14)) is False


def test_the_snapshot_and_a_requeue_leave_out_who_is_paused(store: Engine) -> None:
    now = dt.datetime.now(dt.UTC)
    list_id, ids = _people(store, 3)
    with store.begin() as conn:
        _pause(conn, ids[0], now + dt.timedelta(days=7))
        _pause(conn, ids[1], now - dt.timedelta(seconds=1))  # over: receives again
    send_id = _send(store, list_id)
    assert set(_rows(store, send_id)) == {ids[1], ids[2]}
    r = ledger.send_recipients.c
    with store.begin() as conn:
        conn.execute(ledger.send_recipients.update().where(r.send_id == send_id)
                     .values(status="uncertain"))
        _pause(conn, ids[2], now + dt.timedelta(days=28))
    done = ledger.requeue_counted(store, send_id, ["uncertain"])
    assert done.skipped == {"paused": 1} and done.pending == 1
