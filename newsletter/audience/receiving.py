"""Who may receive a send to a list: the rule, defined once.

A subscriber may receive a send to list L when, in this order,

1. they exist: an erased subscriber's row is gone (reason ``erased``);
2. their global status is ``active`` (else the reason is that status: ``unsubscribed``,
   ``bounced`` or ``complained``);
3. their membership of L exists (``not on the list``) and is ``subscribed``
   (``unsubscribed from the list``).

A suppression list joins here later as one more ``Check`` in ``RULE`` (a fourth
argument of the three forms below, defaulting to its table), and every caller follows.

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

The database's triggers (migration ``0004_skip_unsendable``) state the same rule in SQL
(they skip pending rows when a status leaves ``active`` / ``subscribed`` or a membership
or subscriber is deleted); ``tests/test_receiving.py`` checks that they agree with this
module on every combination, on SQLite and PostgreSQL.
"""

from __future__ import annotations

from dataclasses import dataclass

import sqlalchemy as sa

from ..db.tables import memberships, subscribers


@dataclass(frozen=True)
class Check:
    """One condition of the rule: a status that must be ``allowed``."""

    what: str  # what the status belongs to (the argument name of the forms below)
    allowed: str
    missing: str  # the reason when the row is not there
    refused: str | None  # the reason for another status (None: the status itself)


RULE = (
    Check("subscriber", "active", missing="erased", refused=None),
    Check("membership", "subscribed", missing="not on the list",
          refused="unsubscribed from the list"),
    # a suppression list: Check("suppression", ...) here
)

Status = sa.ColumnElement[str] | sa.ScalarSelect[str] | sa.Column[str]


def _forms(subscriber: Status | None, membership: Status | None) -> list[tuple[Check, Status]]:
    values = (subscribers.c.status if subscriber is None else subscriber,
              memberships.c.status if membership is None else membership)
    return list(zip(RULE, values, strict=True))


def receives(subscriber: Status | None = None, membership: Status | None = None
             ) -> sa.ColumnElement[bool]:
    """SQL: the subscriber may receive (defaults: the joined tables' status columns)."""
    return sa.and_(*(value == check.allowed for check, value in _forms(subscriber, membership)))


def refusal(subscriber: Status | None = None, membership: Status | None = None
            ) -> sa.ColumnElement[str | None]:
    """SQL: why the subscriber may not receive, in ``RULE`` order; NULL when they may."""
    whens: list[tuple[sa.ColumnElement[bool], sa.ColumnElement[str]]] = []
    for check, value in _forms(subscriber, membership):
        whens.append((value.is_(None), sa.literal(check.missing)))
        reason = value if check.refused is None else sa.literal(check.refused)
        whens.append((value != check.allowed, reason))  # type: ignore[arg-type]
    return sa.case(*whens, else_=sa.null())


def refusal_reason(subscriber: str | None, membership: str | None) -> str | None:
    """Python: why a subscriber with these statuses (None: no such row) may not receive."""
    for check, value in zip(RULE, (subscriber, membership), strict=True):
        if value is None:
            return check.missing
        if value != check.allowed:
            return check.refused or value
    return None


def may_receive(subscriber: str | None, membership: str | None) -> bool:
    return refusal_reason(subscriber, membership) is None


def effective_status(subscriber: str, membership: str | None) -> str:
    """A member's status in one list: ``active`` when they receive its sends, otherwise
    their global status, or ``unsubscribed`` when only the list refuses them."""
    if may_receive(subscriber, membership):
        return RULE[0].allowed
    return subscriber if subscriber != RULE[0].allowed else "unsubscribed"


def effective_status_sql(subscriber: Status | None = None, membership: Status | None = None
                         ) -> sa.ColumnElement[str]:
    """SQL form of ``effective_status``."""
    status = subscribers.c.status if subscriber is None else subscriber
    return sa.case(
        (receives(subscriber, membership), sa.literal(RULE[0].allowed)),
        (status == RULE[0].allowed, sa.literal("unsubscribed")),
        else_=status,
    )
