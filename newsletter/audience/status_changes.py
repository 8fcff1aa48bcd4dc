"""Subscriber status changes: the one place that writes them, and the rules they follow.

Every change of a subscriber's global status (``subscribers.status``: active,
unsubscribed, bounced, complained) or of a list membership's status
(``memberships.status``: subscribed, unsubscribed) goes through this module: the CLI
and library calls (``subscribers``), the web unsubscribe link
(``web.unsubscribe``), the SendGrid webhook (``events``), the CSV import
(``importer``), erasure (``erasure``) and the preference centre (``preferences``: lists,
and ``pause``, which sets ``paused_until`` rather than a status). Creating a subscriber or a membership with its
first status is not a change and stays with the code that creates it.

The rules (``may_change``, ``may_change_membership``):

- Statuses are ordered by strength: active < unsubscribed < bounced < complained. A
  status only ever becomes a stronger one (a bounce after an unsubscribe is recorded; an
  unsubscribe after a complaint is not).
- Only an explicit resubscribe (``resubscribe=True``: ``subscribers add --resubscribe``,
  ``subscribers import --resubscribe``) makes an unsubscribed, bounced or complained
  address active again. A ``status`` column in an import can therefore only unsubscribe.
- A membership becomes ``unsubscribed`` from anything else, and is recorded even for
  someone not on the list (so that a later import does not subscribe them). It becomes
  ``subscribed`` only for an active address: joining a list, or coming back to a list
  they left by an explicit resubscribe.

Every change writes the status, when (``status_changed_at``) and why
(``status_reason``, one line of at most ``WHY_MAX`` characters) in one statement. A change
the rules refuse writes nothing: the status, its time and its reason stay as they were,
and the change counts as not made (``change`` returns False, the set-based calls do not
count it), whichever entry point asked.

A change to ``bounced`` or ``complained`` also puts the address on the one suppression
list (``audience.suppressions``), whatever reported it (also an address no subscriber
has, for the set-based call by email key); an explicit resubscribe takes it off again.

Two shapes of call, one statement each: ``change`` for one subscriber, and the set-based
``set_global`` / ``set_membership`` for many (the webhook's thousands of events, the
import's 5,000-row chunks), whose rows travel as one JSON parameter (SQLite
``json_each``, PostgreSQL ``json_array_elements``) so that a chunk is one statement and
one round trip however long it is. The refusals are in the statements themselves (a
``WHERE`` on the current status), so a change made meanwhile by another process is
never overridden.
"""

from __future__ import annotations

import datetime as dt
import json
import sqlite3
from collections.abc import Sequence

import sqlalchemy as sa

from ..db.tables import MEMBERSHIP_STATUSES, STATUSES, Stamp, memberships, subscribers
from ..db.transactions import utcnow
from ..errors import UnknownStatus
from . import suppressions

#: strength of each global status: a status only ever becomes a stronger one
STRENGTH = {status: rank for rank, status in enumerate(STATUSES)}
WHY_MAX = 500
Item = tuple[int | str, str | None]  # (subscriber id or email key, why)


def may_change(current: str, target: str, *, resubscribe: bool = False) -> bool:
    """Whether a subscriber whose global status is ``current`` may become ``target``."""
    return current in allowed_from(target, resubscribe=resubscribe)


def allowed_from(target: str, *, resubscribe: bool = False) -> tuple[str, ...]:
    """The global statuses that may become ``target``."""
    if target not in STRENGTH:
        raise UnknownStatus(f"unknown status {target!r}: use one of {', '.join(STATUSES)}")
    if target == "active":
        return tuple(s for s in STATUSES if s != "active") if resubscribe else ()
    return tuple(s for s in STATUSES if STRENGTH[s] < STRENGTH[target])


def may_change_membership(
    current: str | None, target: str, *, active: bool, resubscribe: bool = False
) -> bool:
    """Whether a membership whose status is ``current`` (None: not on the list) may
    become ``target``; ``active``: the subscriber's global status is active."""
    return current in membership_allowed_from(target, resubscribe=resubscribe) and (
        active or target == "unsubscribed"
    )


def membership_allowed_from(target: str, *, resubscribe: bool = False) -> tuple[str | None, ...]:
    """The membership statuses (None: no membership) that may become ``target``."""
    if target not in MEMBERSHIP_STATUSES:
        raise UnknownStatus(f"unknown list status {target!r}: use subscribed or unsubscribed")
    if target == "unsubscribed":
        return (None, "subscribed")
    return (None, "unsubscribed") if resubscribe else (None,)


def why(reason: str | None) -> str | None:
    """A reason as it is stored: one line, spaces collapsed, at most ``WHY_MAX`` characters."""
    if reason is None:
        return None
    return " ".join(str(reason).split())[:WHY_MAX] or None


# -- the statements --------------------------------------------------------------------


def json_at(index: int) -> str:
    """SQLite: element ``index`` of ``json_each``'s current array (alias ``j``), as a value."""
    if sqlite3.sqlite_version_info >= (3, 38, 0):
        return f"j.value ->> {index}"
    return f"json_extract(j.value, '$[{index}]')"


def _rows_source(dialect: str, by_id: bool) -> str:
    """The rows parameter as a table ``src (k, why)``."""
    if dialect == "postgresql":
        key = "(v ->> 0)::bigint" if by_id else "v ->> 0"
        return (f"(SELECT {key} AS k, v ->> 1 AS why "
                "FROM json_array_elements(CAST(:rows AS json)) AS v) AS src")
    return f"(SELECT {json_at(0)} AS k, {json_at(1)} AS why FROM json_each(:rows) AS j) AS src"


def _listed(values: Sequence[str | None]) -> str:
    """Constants (statuses, never user input) as an SQL list."""
    return ", ".join(f"'{value}'" for value in values if value is not None)


def _global_sql(dialect: str, target: str, allowed: Sequence[str], by_id: bool) -> sa.TextClause:
    column = "id" if by_id else "email_key"
    return sa.text(
        f"UPDATE subscribers SET status = '{target}', status_changed_at = :now, "
        f"status_reason = src.why FROM {_rows_source(dialect, by_id)} "
        f"WHERE subscribers.{column} = src.k AND subscribers.status IN ({_listed(allowed)})"
    ).bindparams(sa.bindparam("now", type_=Stamp))


def _membership_sql(dialect: str, target: str, allowed: Sequence[str | None]) -> sa.TextClause:
    """An upsert: a missing membership is inserted with ``target`` (subscribing needs an
    active address), an existing one changed where ``allowed``. A subscriber or list that
    no longer exists inserts nothing."""
    active = " AND s.status = 'active'" if target == "subscribed" else ""
    existing = _listed(allowed)
    on_conflict = (
        "DO UPDATE SET status = excluded.status, status_changed_at = excluded.status_changed_at, "
        f"status_reason = excluded.status_reason WHERE memberships.status IN ({existing})"
        if existing else "DO NOTHING"
    )
    return sa.text(
        "INSERT INTO memberships (list_id, subscriber_id, status, created_at, "
        f"status_changed_at, status_reason) SELECT :list, s.id, '{target}', :now, :now, src.why "
        f"FROM {_rows_source(dialect, True)} JOIN subscribers s ON s.id = src.k "
        f"WHERE EXISTS (SELECT 1 FROM lists WHERE lists.id = :list){active} "
        f"ON CONFLICT (list_id, subscriber_id) {on_conflict}"
    ).bindparams(sa.bindparam("now", type_=Stamp))


_CACHE: dict[tuple, sa.TextClause] = {}


def _statement(kind: str, dialect: str, target: str, resubscribe: bool, by_id: bool
               ) -> sa.TextClause | None:
    key = (kind, dialect, target, resubscribe, by_id)
    statement = _CACHE.get(key)
    if statement is None:
        if kind == "global":
            allowed = allowed_from(target, resubscribe=resubscribe)
            if not allowed:
                return None
            statement = _global_sql(dialect, target, allowed, by_id)
        else:
            statement = _membership_sql(
                dialect, target, membership_allowed_from(target, resubscribe=resubscribe))
        _CACHE[key] = statement
    return statement


def _payload(items: Sequence[Item]) -> str:
    return json.dumps([(key, why(reason)) for key, reason in items], ensure_ascii=False)


# -- the calls -------------------------------------------------------------------------


#: statuses that put the address on the suppression list
SUPPRESSING = ("bounced", "complained")


def set_global(
    conn: sa.Connection, target: str, items: Sequence[Item], *, by: str = "id",
    resubscribe: bool = False, now: dt.datetime | None = None, source: str = "status",
) -> int:
    """Make the subscribers of ``items`` (id or, ``by="email_key"``, email key; why)
    ``target`` where the rules allow, in one statement; returns how many changed.
    The keys must be distinct. ``source`` names who reported a bounce or complaint on
    the suppression list."""
    if by not in ("id", "email_key"):
        raise ValueError(f"by must be 'id' or 'email_key', not {by!r}")
    statement = _statement("global", conn.dialect.name, target, resubscribe, by == "id")
    if not items:
        return 0
    changed = 0
    if statement is not None:
        result = conn.execute(statement, {"rows": _payload(items), "now": now or utcnow()})
        changed = max(result.rowcount, 0)
    _suppression(conn, target, items, by == "id", resubscribe, source, now)
    return changed


def _suppression(conn: sa.Connection, target: str, items: Sequence[Item], by_id: bool,
                 resubscribe: bool, source: str, now: dt.datetime | None) -> None:
    if target in SUPPRESSING:
        if by_id:
            suppressions.add_subscribers(conn, target, [(int(k), w) for k, w in items],
                                         source=source, now=now)
        else:
            suppressions.add_many(conn, target, [(str(k), w) for k, w in items],
                                  source=source, now=now)
    elif target == "active" and resubscribe:
        if by_id:
            suppressions.lift_subscribers(conn, [int(k) for k, _ in items])
        else:
            suppressions.lift(conn, [str(k) for k, _ in items])


def set_membership(
    conn: sa.Connection, list_id: int, target: str, items: Sequence[Item], *,
    resubscribe: bool = False, now: dt.datetime | None = None,
) -> int:
    """Make the memberships of list ``list_id`` of the subscribers of ``items`` (id, why)
    ``target`` where the rules allow, in one statement; returns how many changed."""
    statement = _statement("membership", conn.dialect.name, target, resubscribe, True)
    if statement is None or not items:
        return 0
    params = {"rows": _payload(items), "now": now or utcnow(), "list": list_id}
    return max(conn.execute(statement, params).rowcount, 0)


def change(
    conn: sa.Connection, subscriber_id: int, target: str, reason: str | None, *,
    list_id: int | None = None, resubscribe: bool = False, now: dt.datetime | None = None,
) -> bool:
    """One subscriber's global status (or, with ``list_id``, membership of that list)
    becomes ``target``, if the rules allow; False when nothing changed."""
    items = [(subscriber_id, reason)]
    if list_id is None:
        return set_global(conn, target, items, resubscribe=resubscribe, now=now) > 0
    return set_membership(conn, list_id, target, items, resubscribe=resubscribe, now=now) > 0


def erase(conn: sa.Connection, subscriber_id: int) -> bool:
    """The last change of all: the subscriber and its memberships are deleted (erasure;
    ``newsletter.audience.erasure.erase`` scrubs the delivery records first). The database's
    triggers skip their pending deliveries. False when there was no such subscriber."""
    conn.execute(sa.delete(memberships).where(memberships.c.subscriber_id == subscriber_id))
    result = conn.execute(sa.delete(subscribers).where(subscribers.c.id == subscriber_id))
    return result.rowcount > 0


def pause(conn: sa.Connection, subscriber_id: int, until: dt.datetime | None) -> bool:
    """The subscriber receives nothing before ``until`` (None: the pause ends now). Their
    global status and memberships stay as they are; the rule of ``receiving`` refuses
    them (reason ``paused``) until the moment passes, and the database's trigger
    (migration 0009) skips their pending deliveries now. False when there is no such
    subscriber."""
    result = conn.execute(sa.update(subscribers).where(subscribers.c.id == subscriber_id)
                          .values(paused_until=until))
    return result.rowcount > 0
