"""The subscriber store: SQLite by default, PostgreSQL for production.

Open it with ``open_store(settings)`` (or ``open_store(url)``): an SQLAlchemy ``Engine``
whose schema has been checked. An empty database is created at the newest schema on
first use; an older schema raises ``SchemaError`` saying "run `newsletter db upgrade`".
Every function below takes that Engine (each call is its own transaction) or a
``Connection`` already in a transaction (the call joins it), so calls compose::

    engine = open_store(settings)
    create_list(engine, "daily")
    add_subscriber(engine, "Ann@Example.org", name="Ann", lists=["daily"])
    with engine.begin() as conn:                 # one transaction for several calls
        unsubscribe(conn, "ann@example.org", list_name="daily")

Modules and what they own:

- ``engine``: ``make_engine(url)``; SQLite in WAL mode, foreign keys on, busy timeout
  30 s, ``BEGIN IMMEDIATE`` transactions; PostgreSQL through ``postgresql+psycopg``.
- ``schema``: Alembic migrations shipped in ``migrations/`` (configured in code):
  ``ensure_schema``, ``upgrade``, ``schema_state``. A later feature adds its tables with a
  new revision in ``migrations/versions`` whose ``down_revision`` is the current head.
- ``tables``: the tables (SQLAlchemy Core).
    * ``subscribers``: id, email (normalised), email_key (lower-cased, unique: the
      identity), name, attributes (JSON object), status (active | unsubscribed | bounced
      | complained), status_changed_at, status_reason, created_at, source.
    * ``lists``: id, name (unique), description, created_at.
    * ``memberships``: (list_id, subscriber_id) primary key, status (subscribed |
      unsubscribed), created_at, status_changed_at, status_reason. The primary key
      serves "members of list L in subscriber id order" as a range scan (on SQLite the
      table is stored in that order: WITHOUT ROWID); an index on (subscriber_id) serves
      a subscriber's lists. Deleting a list or subscriber cascades.
- ``emails``: ``normalize_email(text) -> (email, key)``: email-validator's syntax rules
  (no DNS) with a fast path for plain ASCII addresses giving identical results.
- ``lists``: ``create_list``, ``get_list`` (raises ``ListNotFound``), ``list_lists``
  (with active/inactive counts), ``delete_list``.
- ``subscribers``: ``add_subscriber`` (never reactivates without ``resubscribe=True``),
  ``get_subscriber`` (by address in any case, or id), ``subscriber_lists``,
  ``remove_subscriber`` (erasure: the ledger keeps its rows, scrubbed by
  ``newsletter.erasure``), ``unsubscribe`` (globally or ``list_name=``),
  ``set_status``, ``list_subscribers`` / ``count_subscribers`` / ``count_by_status`` /
  ``iter_subscribers`` (filters ``list_name=`` and ``status=``; with a list, the status is
  the effective one: active but unsubscribed from the list counts as unsubscribed),
  ``attribute_keys``.
- ``status``: every change of a subscriber's status or list membership, with when and
  why: the rules (stronger only; active again only by an explicit resubscribe) and the one
  writer, ``change`` for one subscriber, ``set_global`` / ``set_membership`` set-based.
- ``receiving``: the one definition of who may receive a send to a list (exists,
  globally active, subscribed to the list), as SQL (``receives``, ``refusal``) and Python
  (``refusal_reason``); the snapshot, every requeue, the counts and the dry run ask it.
- For delivery: ``sendable_batch(db, list_id, after_id=, limit=)`` returns the next
  subscribers who may receive a send to the list in id order (keyset paging, an index
  range scan).

- ``bulk``: the CSV importer's chunk statements (``newsletter.importer`` uses them): a
  chunk of thousands of rows is one JSON parameter per statement on either database.
  The importer follows the same rules as ``add_subscriber``.
"""

from __future__ import annotations

from sqlalchemy.engine import Engine

from ..config import Settings
from .emails import InvalidEmail, normalize_email
from .engine import make_engine
from .lists import ListNotFound, MailingList, create_list, delete_list, get_list, list_lists
from .schema import SchemaError, SchemaState, ensure_schema, schema_state, upgrade
from .subscribers import (
    AddResult,
    Membership,
    Subscriber,
    SubscriberNotFound,
    add_subscriber,
    attribute_keys,
    count_by_status,
    count_subscribers,
    get_subscriber,
    iter_subscribers,
    list_subscribers,
    remove_subscriber,
    sendable_batch,
    set_status,
    subscriber_lists,
    unsubscribe,
)
from .tables import MEMBERSHIP_STATUSES, STATUSES


def database_url(settings_or_url: Settings | str) -> str:
    if isinstance(settings_or_url, str):
        return settings_or_url
    return settings_or_url.effective_database_url


def open_store(settings_or_url: Settings | str, *, create: bool = True) -> Engine:
    """An Engine on the project's database with a checked schema (see module docs)."""
    engine = make_engine(database_url(settings_or_url))
    try:
        ensure_schema(engine, create=create)
    except BaseException:
        engine.dispose()
        raise
    return engine


__all__ = [
    "MEMBERSHIP_STATUSES",
    "STATUSES",
    "AddResult",
    "InvalidEmail",
    "ListNotFound",
    "MailingList",
    "Membership",
    "SchemaError",
    "SchemaState",
    "Subscriber",
    "SubscriberNotFound",
    "add_subscriber",
    "attribute_keys",
    "count_by_status",
    "count_subscribers",
    "create_list",
    "database_url",
    "delete_list",
    "ensure_schema",
    "get_list",
    "get_subscriber",
    "iter_subscribers",
    "list_lists",
    "list_subscribers",
    "make_engine",
    "normalize_email",
    "open_store",
    "remove_subscriber",
    "schema_state",
    "sendable_batch",
    "set_status",
    "subscriber_lists",
    "unsubscribe",
    "upgrade",
]
