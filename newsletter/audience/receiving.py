"""Who may receive a send to a list: the rule, defined once.

A subscriber may receive a send to list L when, in this order,

1. they exist: an erased subscriber's row is gone (reason ``erased``);
2. their global status is ``active`` (else the reason is that status: ``unsubscribed``,
   ``bounced`` or ``complained``);
3. they are not paused: ``paused_until`` (set by the preference centre) is NULL or has
   passed (``paused``); the pause ends by itself, nothing needs to resume it;
4. their address is not on the suppression list (``suppressed``: bounced, complained or
   suppressed by hand, from any source; ``audience.suppressions``);
5. their membership of L exists (``not on the list``) and is ``subscribed``
   (``unsubscribed from the list``).

``RULE`` is the definition; three forms are made from it:

- ``receives(...)``: a SQL condition on joined ``subscribers`` and ``memberships`` rows,
  for the snapshot of a send's recipients, ``sendable_batch``, the counts of
  ``lists list`` and the local-time waves;
- ``refusal(...)``: SQL giving why a recipient may not receive (NULL: they may), over any
  status expressions (columns of an outer join, or correlated sub-selects): what every
  requeue (``--retry-failed``, ``--resend-uncertain``, retries within a run, a released
  batch) asks at the moment it would make a recipient pending again;
- ``refusal_reason(...)``: the same in Python.

``effective_status`` (a member's status in one list, for listing and counting) is made
from the rule too.

The database's triggers (migrations ``0004_skip_unsendable``, ``0011_suppressions`` and
``0010_pause_and_welcome``) state the same rule in SQL (they skip pending rows when a
status leaves ``active`` / ``subscribed``, the address is suppressed, a subscriber pauses,
or a membership or subscriber is deleted); ``tests/test_receiving.py`` checks that they
agree with this
module on every combination, on SQLite and PostgreSQL.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

import sqlalchemy as sa

from ..db.tables import Stamp, memberships, subscribers, suppressions
from ..db.transactions import aware, utcnow


@dataclass(frozen=True)
class Check:
    """One condition of the rule: a status that must be ``allowed``."""

    what: str  # what the status belongs to (the argument name of the forms below)
    allowed: str
    missing: str  # the reason when the row is not there
    refused: str | None  # the reason for another status (None: the status itself)


#: the suppression "status" of an address: on the list or not
SUPPRESSED, CLEAR = "suppressed", "clear"

RULE = (
    Check("subscriber", "active", missing="erased", refused=None),
    Check("suppression", CLEAR, missing=SUPPRESSED, refused=SUPPRESSED),
    Check("membership", "subscribed", missing="not on the list",
          refused="unsubscribed from the list"),
)

Status = sa.ColumnElement[str] | sa.ScalarSelect[str] | sa.Column[str]
Moment = sa.ColumnElement | sa.ScalarSelect | sa.Column
PAUSED = "paused"  # the reason for a subscriber whose pause has not ended


def _paused(paused_until: Moment | None, now: dt.datetime | None) -> sa.ColumnElement[bool]:
    """SQL: the pause has not ended (NULL: never paused, so false)."""
    value = subscribers.c.paused_until if paused_until is None else paused_until
    return sa.and_(value.is_not(None), value > sa.literal(now or utcnow(), Stamp))


def suppression_of(subscriber_id: sa.ColumnElement[int] | None = None
                   ) -> sa.ColumnElement[str]:
    """SQL: ``suppressed`` or ``clear``, the suppression form's status: of the joined
    subscriber's address, or (correlated) of the subscriber with id ``subscriber_id``."""
    listed = sa.exists().where(suppressions.c.email_key == subscribers.c.email_key)
    if subscriber_id is not None:
        listed = listed.where(subscribers.c.id == subscriber_id)
    return sa.case((listed, sa.literal(SUPPRESSED)), else_=sa.literal(CLEAR))


def suppression_joined() -> tuple[sa.Table, sa.ColumnElement[bool], sa.ColumnElement[str]]:
    """The suppression form's status as an outer join, for a statement over many
    subscribers (the snapshot): the table to outer-join, its ON condition, and the status.

    The same status as ``suppression_of()`` (an address is on the suppression list at most
    once: ``email_key`` is its primary key), but a join the planner can merge, hash or
    look up in the index: the correlated EXISTS made PostgreSQL hash the whole
    suppression list again for every statement that evaluated it (twice per chunk of the
    snapshot: 75 ms for 50,000 suppressions), whatever the statement's own size."""
    status = sa.case((suppressions.c.email_key.is_(None), sa.literal(CLEAR)),
                     else_=sa.literal(SUPPRESSED))
    return suppressions, suppressions.c.email_key == subscribers.c.email_key, status


def _forms(subscriber: Status | None, membership: Status | None,
           suppression: Status | None) -> list[tuple[Check, Status]]:
    values = (subscribers.c.status if subscriber is None else subscriber,
              suppression_of() if suppression is None else suppression,
              memberships.c.status if membership is None else membership)
    return list(zip(RULE, values, strict=True))


def _statuses_allow(subscriber: Status | None, membership: Status | None,
                    suppression: Status | None) -> sa.ColumnElement[bool]:
    return sa.and_(*(value == check.allowed
                     for check, value in _forms(subscriber, membership, suppression)))


def receives(subscriber: Status | None = None, membership: Status | None = None,
             suppression: Status | None = None, *, paused_until: Moment | None = None,
             now: dt.datetime | None = None) -> sa.ColumnElement[bool]:
    """SQL: the subscriber may receive (defaults: the joined tables' columns, whether the
    joined subscriber's address is suppressed; ``now``: the moment a pause is compared
    with, the current time by default)."""
    return sa.and_(_statuses_allow(subscriber, membership, suppression),
                   ~_paused(paused_until, now))


def refusal(subscriber: Status | None = None, membership: Status | None = None,
            suppression: Status | None = None, *, paused_until: Moment | None = None,
            now: dt.datetime | None = None) -> sa.ColumnElement[str | None]:
    """SQL: why the subscriber may not receive, in the rule's order; NULL when they may."""
    whens: list[tuple[sa.ColumnElement[bool], sa.ColumnElement[str]]] = []
    for check, value in _forms(subscriber, membership, suppression):
        whens.append((value.is_(None), sa.literal(check.missing)))
        reason = value if check.refused is None else sa.literal(check.refused)
        whens.append((value != check.allowed, reason))  # type: ignore[arg-type]
        if check is RULE[0]:  # the pause comes right after the global status
            whens.append((_paused(paused_until, now), sa.literal(PAUSED)))
    return sa.case(*whens, else_=sa.null())


def refusal_reason(subscriber: str | None, membership: str | None,
                   suppressed: bool = False, *, paused_until: dt.datetime | None = None,
                   now: dt.datetime | None = None) -> str | None:
    """Python: why a subscriber with these statuses (None: no such row) may not receive;
    ``suppressed``: their address is on the suppression list; ``paused_until``: their
    pause, if any."""
    values = (subscriber, SUPPRESSED if suppressed else CLEAR, membership)
    for check, value in zip(RULE, values, strict=True):
        if value is None:
            return check.missing
        if value != check.allowed:
            return check.refused or value
        if check is RULE[0] and paused_until is not None and (
                aware(paused_until) > (now or utcnow())):
            return PAUSED
    return None


def may_receive(subscriber: str | None, membership: str | None,
                suppressed: bool = False, *, paused_until: dt.datetime | None = None,
                now: dt.datetime | None = None) -> bool:
    return refusal_reason(subscriber, membership, suppressed, paused_until=paused_until,
                          now=now) is None


def effective_status(subscriber: str, membership: str | None, suppressed: bool = False) -> str:
    """A member's status in one list: ``active`` when their statuses let them receive its
    sends (a pause is not a status), otherwise their global status, or ``unsubscribed``
    when only the list (or the suppression list) refuses them."""
    if may_receive(subscriber, membership, suppressed):
        return RULE[0].allowed
    return subscriber if subscriber != RULE[0].allowed else "unsubscribed"


def effective_status_sql(subscriber: Status | None = None, membership: Status | None = None,
                         suppression: Status | None = None) -> sa.ColumnElement[str]:
    """SQL form of ``effective_status``."""
    status = subscribers.c.status if subscriber is None else subscriber
    return sa.case(
        (_statuses_allow(subscriber, membership, suppression), sa.literal(RULE[0].allowed)),
        (status == RULE[0].allowed, sa.literal("unsubscribed")),
        else_=status,
    )
