"""Every table of the schema (SQLAlchemy Core), in one metadata.

The migrations in ``migrations/versions`` create exactly these tables and
``tests/test_schema.py`` compares a freshly migrated SQLite and PostgreSQL database with
this metadata (alembic's autogenerate comparison, plus the CHECK constraints and
partial-index predicates it does not compare): a change here needs a migration, and a
migration a change here. Importing this module is enough to see the whole schema; the
modules that own the data import their tables from here (``from ..db.tables import
sends`` in ``ledger``).

- subscribers, lists, memberships: the subscriber store (``newsletter.audience``)
- sends, send_recipients, send_batches, send_workers, send_cursors: the delivery ledger
  (``ledger``, ``claims``);
  subject_tests: a send's subject test (``delivery.variants``)
- schedules, schedule_workers: scheduled sends and their worker processes (``scheduling``)
- webhook_events, webhook_requests, send_event_counts, send_recipient_events: SendGrid
  webhook events and engagement counters (``events``)
- archive_issues: the public web archive (``archive``)
- signups, rate_limits: sign-ups awaiting confirmation with their consent records, and the
  sign-up rate limits' counters (``audience.signup``, ``audience.ratelimit``)
- send_links, clicks, opens: tracked links per send, and the requests of them
  (``delivery.tracking``, ``feedback.clicks``)
- suppressions, bounce_messages, soft_bounces: the one suppression list and the bounce
  mailbox's claims and soft bounces (``audience.suppressions``, ``feedback.mailbox``)
- send_rates: each backend's shared send rate, ``max_rate`` (``delivery.ratelimit``)

A constraint only some databases have says so with ``ddl_if`` (the comparison honours it).
Objects the migrations create with raw SQL (revisions 0004's and 0009's triggers and functions) are
not in the metadata; ``tests/test_schema.py`` names them in its allow-list.
"""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa
from sqlalchemy import util as sa_util


class _JSONB(sa.types.TypeDecorator[Any]):
    """PostgreSQL's JSONB, its dialect imported only when a PostgreSQL connection uses it
    (importing ``sqlalchemy.dialects.postgresql`` loads every PostgreSQL driver's module:
    about 35 ms of CPU that a SQLite command never needs)."""

    impl = sa.JSON
    cache_ok = True

    def load_dialect_impl(self, dialect: sa.Dialect) -> sa.types.TypeEngine[Any]:
        from sqlalchemy.dialects.postgresql import JSONB

        return dialect.type_descriptor(JSONB())


class _LateOptions(sa_util.PopulateDict):  # type: ignore[type-arg]
    """An index's dialect options, some dialects' given only when first looked at.

    SQLAlchemy validates ``postgresql_where`` at construction by loading the PostgreSQL
    dialect, even on SQLite. Here the option is given (and validated, as at construction)
    when that dialect's options are first read: DDL, the schema comparison, a copy.
    """

    def __init__(self, index: sa.Index, late: dict[str, Any]) -> None:
        super().__init__(index.dialect_options.creator)
        self.update(index.dialect_options)
        self._index = index
        self._late = late  # {"postgresql_where": ...}

    def __missing__(self, dialect: str) -> Any:
        options = super().__missing__(dialect)
        late = {k: self._late.pop(k) for k in list(self._late) if k.startswith(dialect + "_")}
        self._index._validate_dialect_kwargs(late)
        return options

    def _fill(self) -> None:
        for key in list(self._late):
            self[key.partition("_")[0]]


def _filling(name: str) -> Any:
    method = getattr(dict, name)

    def filled(self: _LateOptions, *args: Any) -> Any:
        self._fill()  # every dialect's options exist before they are listed or counted
        return method(self, *args)
    return filled


for _name in ("__iter__", "__contains__", "__len__", "keys", "items", "values", "get"):
    setattr(_LateOptions, _name, _filling(_name))


def _late(index: sa.Index, **options: Any) -> sa.Index:
    """``index`` with dialect options (``postgresql_where=...``) given as it is first read."""
    index.__dict__["dialect_options"] = _LateOptions(index, options)
    return index


metadata = sa.MetaData(
    naming_convention={
        "ix": "ix_%(table_name)s_%(column_0_N_name)s",
        "uq": "uq_%(table_name)s_%(column_0_N_name)s",
        "ck": "ck_%(table_name)s_%(constraint_name)s",
        "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
        "pk": "pk_%(table_name)s",
    }
)

#: Global statuses of a subscriber. Only ``active`` ones receive anything.
STATUSES = ("active", "unsubscribed", "bounced", "complained")
#: Statuses of a subscriber's membership of one list.
MEMBERSHIP_STATUSES = ("subscribed", "unsubscribed")

ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")  # SQLite: the rowid itself
JSONType = sa.JSON().with_variant(_JSONB(), "postgresql")
Stamp = sa.DateTime(timezone=True)
# Byte order on PostgreSQL: the key is lower-cased already, and the unique index is
# faster to maintain without the database's locale rules (SQLite compares bytes anyway).
EmailKey = sa.String(320).with_variant(sa.String(320, collation="C"), "postgresql")

subscribers = sa.Table(
    "subscribers",
    metadata,
    sa.Column("id", ID, primary_key=True, autoincrement=True),
    sa.Column("email", sa.String(320), nullable=False),  # normalised, as displayed
    sa.Column("email_key", EmailKey, nullable=False),  # lower-cased: the identity
    sa.Column("name", sa.Text(), nullable=True),
    sa.Column("attributes", JSONType, nullable=False),
    sa.Column("status", sa.String(16), nullable=False),
    sa.Column("status_changed_at", Stamp, nullable=False),
    sa.Column("status_reason", sa.Text(), nullable=True),
    sa.Column("created_at", Stamp, nullable=False),
    sa.Column("source", sa.String(200), nullable=True),
    # the preference centre's pause: no send reaches them before this moment (receiving)
    sa.Column("paused_until", Stamp, nullable=True),
    # when their welcome email was put in the ledger (audience.welcome): at most once
    sa.Column("welcomed_at", Stamp, nullable=True),
    sa.UniqueConstraint("email_key"),
    sa.CheckConstraint(
        "status IN ('active', 'unsubscribed', 'bounced', 'complained')", name="status"
    ),
    sqlite_autoincrement=True,  # ids are never reused, even after a removal
)

lists = sa.Table(
    "lists",
    metadata,
    sa.Column("id", ID, primary_key=True, autoincrement=True),
    sa.Column("name", sa.String(100), nullable=False),
    sa.Column("description", sa.Text(), nullable=True),
    sa.Column("created_at", Stamp, nullable=False),
    sa.UniqueConstraint("name"),
    sqlite_autoincrement=True,
)

memberships = sa.Table(
    "memberships",
    metadata,
    sa.Column("list_id", ID, sa.ForeignKey("lists.id", ondelete="CASCADE"), primary_key=True),
    sa.Column(
        "subscriber_id",
        ID,
        sa.ForeignKey("subscribers.id", ondelete="CASCADE"),
        primary_key=True,
    ),
    sa.Column("status", sa.String(16), nullable=False),
    sa.Column("created_at", Stamp, nullable=False),
    sa.Column("status_changed_at", Stamp, nullable=False),
    sa.Column("status_reason", sa.Text(), nullable=True),
    sa.CheckConstraint("status IN ('subscribed', 'unsubscribed')", name="status"),
    sa.Index(None, "subscriber_id"),
    # The primary key (list_id, subscriber_id) serves "members of list L in subscriber id
    # order" as a range scan; on SQLite the table is that index itself (no rowid).
    sqlite_with_rowid=False,
)


# -- the delivery ledger (newsletter.delivery.ledger) ---------------------------------------------

sends = sa.Table(
    "sends",
    metadata,
    sa.Column("id", ID, primary_key=True, autoincrement=True),
    sa.Column("kind", sa.String(8), nullable=False),  # real | test | welcome
    sa.Column("issue_path", sa.Text(), nullable=False),
    sa.Column("issue_slug", sa.String(200), nullable=False),
    sa.Column("subject", sa.Text(), nullable=False),
    sa.Column("list_id", ID, sa.ForeignKey("lists.id", ondelete="SET NULL"), nullable=True),
    sa.Column("list_name", sa.String(100), nullable=False),
    sa.Column("backend", sa.String(20), nullable=False),
    sa.Column("status", sa.String(12), nullable=False),
    sa.Column("html", sa.Text(), nullable=False),  # the personal render, sent as it was
    sa.Column("text", sa.Text(), nullable=False),
    sa.Column("total", sa.Integer(), nullable=False),
    sa.Column("created_at", Stamp, nullable=False),
    sa.Column("finished_at", Stamp, nullable=True),
    # while the recipients are still being snapshotted (in chunks, as the first batches
    # go out): the highest subscriber id copied so far; NULL once all are in. Only
    # subscribers up to snapshot_until (the highest id when the send was created) count.
    sa.Column("snapshot_after", ID, nullable=True),
    sa.Column("snapshot_until", ID, nullable=True),  # the highest subscriber id at creation
    # the issue's identity (newsletter.authoring.identity), whatever its file is called; NULL on
    # sends older than migration 0006 whose issue file could not be read then
    sa.Column("issue_date", sa.Date(), nullable=True),
    sa.Column("issue_key", sa.String(64), nullable=True),  # date + subject
    sa.Column("content_hash", sa.String(64), nullable=True),  # the sections as rendered
    sa.CheckConstraint("kind IN ('real', 'test', 'welcome')", name="kind"),
    sa.CheckConstraint("status IN ('sending', 'finished', 'cancelled')", name="status"),
    sa.Index(None, "issue_slug", "list_id", "kind"),
    sa.Index(None, "list_id", "issue_key"),
    sa.Index(None, "list_id", "content_hash"),
    # at most one unfinished real send of an issue to a list: two `newsletter send`
    # started at once (of the same file, or of a copy) must share one send, not make two
    _late(
        sa.Index(
            "uq_sends_unfinished",
            "issue_key",
            "list_id",
            unique=True,
            sqlite_where=sa.text("kind = 'real' AND status = 'sending'"),
        ),
        postgresql_where=sa.text("kind = 'real' AND status = 'sending'"),
    ),
    sqlite_autoincrement=True,
)

send_recipients = sa.Table(
    "send_recipients",
    metadata,
    sa.Column("send_id", ID, primary_key=True),
    sa.Column("seq", ID, primary_key=True),  # the subscriber id (real sends) or 1..n (tests)
    sa.Column("subscriber_id", ID, nullable=True),
    sa.Column("email", sa.String(320), nullable=False),
    sa.Column("name", sa.Text(), nullable=True),
    sa.Column("status", sa.String(10), nullable=False),
    sa.Column("batch_id", ID, nullable=True),
    sa.Column("attempts", sa.Integer(), nullable=False, server_default="0"),
    sa.Column("reason", sa.Text(), nullable=True),
    sa.Column("provider_id", sa.String(200), nullable=True),
    sa.Column("updated_at", Stamp, nullable=True),
    # a subject test's variant (delivery.variants): "A".."D" for the test share, "winner"
    # for the rest (status ``held`` until the decision); NULL without a subject test
    sa.Column("variant", sa.String(8), nullable=True),
    # PostgreSQL: pending again behind the send's claim cursor (retried, released, a later
    # wave), so claimed by the second path (``claims``); SQLite does not use it
    sa.Column("requeued", sa.Boolean(), nullable=False, server_default=sa.false()),
    # The claimable rows. SQLite: every pending row; a row leaves the index once, when it
    # is claimed (``sending``). PostgreSQL claims by seq range from a cursor
    # (``send_cursors``) on the primary key and leaves the rows pending until the answer, so
    # that the answer is the only write of a row and changes no indexed column (a HOT
    # update, with the table's fillfactor of 35, revision 0020); this index holds only the
    # rows made pending again behind the cursor (migration 0017_claim_cursor).
    _late(
        sa.Index(
            "ix_send_recipients_pending",
            "send_id",
            "seq",
            sqlite_where=sa.text("status = 'pending'"),
        ),
        postgresql_where=sa.text("requeued"),
    ),
    # SQLite only: PostgreSQL checked it with a trigger per snapshotted row, half of the
    # snapshot's database CPU, guarding nothing (sends are never deleted; every row is
    # inserted with its send's id in hand); migration 0018_snapshot_without_fk dropped it
    sa.ForeignKeyConstraint(["send_id"], ["sends.id"], ondelete="CASCADE").ddl_if("sqlite"),
)

#: a subject test's states: testing (the rest held back), decided (the rest released)
SUBJECT_TEST_STATUSES = ("testing", "decided")

subject_tests = sa.Table(
    "subject_tests",
    metadata,
    sa.Column("send_id", ID, sa.ForeignKey("sends.id", ondelete="CASCADE"), primary_key=True),
    sa.Column("subjects", JSONType, nullable=False),  # ["subject A", "subject B", ...]
    sa.Column("test_share", sa.Float(), nullable=False),  # 0 < share < 1
    sa.Column("seed", sa.String(64), nullable=False),  # the assignment's random seed
    sa.Column("decide_at", Stamp, nullable=False),
    sa.Column("status", sa.String(10), nullable=False),
    sa.Column("winner", sa.String(8), nullable=True),
    sa.Column("decided_at", Stamp, nullable=True),
    sa.Column("note", sa.Text(), nullable=True),  # why this winner, in one line
    sa.CheckConstraint("status IN ('testing', 'decided')", name="status"),
    sa.Index(None, "status", "decide_at"),
)

send_batches = sa.Table(
    "send_batches",
    metadata,
    sa.Column("id", ID, primary_key=True, autoincrement=True),
    sa.Column("send_id", ID, sa.ForeignKey("sends.id", ondelete="CASCADE"), nullable=False),
    sa.Column("worker_id", sa.String(40), nullable=False),
    sa.Column("status", sa.String(10), nullable=False),  # sending | done | uncertain
    sa.Column("size", sa.Integer(), nullable=False),
    sa.Column("claimed_at", Stamp, nullable=False),
    sa.Column("finished_at", Stamp, nullable=True),
    # PostgreSQL: the seqs the claim picked, in order (the rows stay pending until the
    # answer); NULL for a batch of rows marked ``sending`` (SQLite, requeued rows)
    sa.Column("seqs", sa.ARRAY(sa.BigInteger()).with_variant(sa.Text(), "sqlite"),
              nullable=True),
    # PostgreSQL: the provider's message id of a cursor batch accepted as a whole, whose
    # rows stay pending and are sent (``delivery.outcomes``, revision 0021)
    sa.Column("provider_id", sa.String(200), nullable=True),
    sa.Index(None, "send_id", "status"),
    sqlite_autoincrement=True,
)

# PostgreSQL: each send's claim cursor, the highest seq claimed by the cursor path so far
# (``claims``); its row lock orders the claims of all workers of a send
send_cursors = sa.Table(
    "send_cursors",
    metadata,
    sa.Column("send_id", ID, sa.ForeignKey("sends.id", ondelete="CASCADE"), primary_key=True),
    sa.Column("claimed_through", ID, nullable=False),
)

send_workers = sa.Table(
    "send_workers",
    metadata,
    sa.Column("id", sa.String(40), primary_key=True),
    sa.Column("send_id", ID, sa.ForeignKey("sends.id", ondelete="CASCADE"), nullable=False),
    sa.Column("host", sa.String(255), nullable=False),
    sa.Column("pid", sa.Integer(), nullable=False),
    sa.Column("started_at", Stamp, nullable=False),
    sa.Column("heartbeat_at", Stamp, nullable=False),
    sa.Column("stopped_at", Stamp, nullable=True),
    # the folder of the worker's progress journal (delivery.journal), on its host
    sa.Column("journal_dir", sa.Text(), nullable=True),
)


# the shared pace of each backend (delivery.ratelimit): one row per backend, moved
# forward by one statement per batch by every worker of every process and machine
send_rates = sa.Table(
    "send_rates",
    metadata,
    sa.Column("name", sa.String(40), primary_key=True),
    # seconds since the epoch (the database's clock) at which the next message may go
    sa.Column("next_at", sa.Float(), nullable=False),
)

# -- scheduled sends (newsletter.scheduling) ----------------------------------------------

schedules = sa.Table(
    "schedules",
    metadata,
    sa.Column("id", ID, primary_key=True, autoincrement=True),
    sa.Column("issue_path", sa.Text(), nullable=False),  # relative to the project if inside
    sa.Column("list_name", sa.String(100), nullable=False),
    sa.Column("backend", sa.String(20), nullable=True),  # None: the configured one
    sa.Column("zone", sa.String(64), nullable=False),
    sa.Column("wall", sa.String(19), nullable=False),  # YYYY-MM-DD HH:MM:SS in ``zone``
    sa.Column("due_at", Stamp, nullable=False),  # UTC; local-time: the next wave
    sa.Column("local_time", sa.Boolean(), nullable=False),
    sa.Column("again", sa.Boolean(), nullable=False),
    sa.Column("source", sa.String(10), nullable=False),  # --at | send_at
    sa.Column("status", sa.String(12), nullable=False),
    sa.Column("send_id", ID, sa.ForeignKey("sends.id", ondelete="SET NULL"), nullable=True),
    sa.Column("worker_id", sa.String(40), nullable=True),  # the worker process that started it
    sa.Column("waves", JSONType, nullable=True),  # local-time: {"done": [...], "missed": [...]}
    # the subject test's options ({"subjects", "share", "after_seconds"}; variants.Options)
    sa.Column("subject_test", JSONType, nullable=True),
    sa.Column("note", sa.Text(), nullable=True),
    sa.Column("created_at", Stamp, nullable=False),
    sa.Column("started_at", Stamp, nullable=True),
    sa.Column("finished_at", Stamp, nullable=True),
    sa.CheckConstraint(
        "status IN ('scheduled', 'sending', 'sent', 'failed', 'missed', 'cancelled')",
        name="status",
    ),
    sa.Index(None, "status", "due_at"),
    sqlite_autoincrement=True,
)

schedule_workers = sa.Table(
    "schedule_workers",
    metadata,
    sa.Column("id", sa.String(40), primary_key=True),
    sa.Column("host", sa.String(255), nullable=False),
    sa.Column("pid", sa.Integer(), nullable=False),
    sa.Column("state", sa.String(20), nullable=False),  # idle | sending | standby | stopped
    sa.Column("detail", sa.Text(), nullable=True),
    sa.Column("started_at", Stamp, nullable=False),
    sa.Column("heartbeat_at", Stamp, nullable=False),
    sa.Column("stopped_at", Stamp, nullable=True),
)


# -- webhook events and engagement counters (newsletter.feedback.effects) --------------------------

webhook_events = sa.Table(
    "webhook_events",
    metadata,
    sa.Column("sg_event_id", sa.String(200), primary_key=True),
    sa.Column("kind", sa.String(40), nullable=False),
    sa.Column("send_id", ID, nullable=True),
    sa.Column("subscriber_id", ID, nullable=True),
    sa.Column("email", sa.String(320), nullable=False),
    sa.Column("effect", sa.String(16), nullable=False),
    sa.Column("reason", sa.Text(), nullable=True),
    sa.Column("url", sa.Text(), nullable=True),
    sa.Column("occurred_at", Stamp, nullable=True),
    sa.Column("received_at", Stamp, nullable=False),
)

webhook_requests = sa.Table(
    "webhook_requests",
    metadata,
    sa.Column("digest", sa.String(64), primary_key=True),  # sha256(timestamp + body), hex
    sa.Column("received_at", Stamp, nullable=False),
    sa.Index(None, "received_at"),
)

send_event_counts = sa.Table(
    "send_event_counts",
    metadata,
    sa.Column("send_id", ID, sa.ForeignKey("sends.id", ondelete="CASCADE"), primary_key=True),
    sa.Column("kind", sa.String(40), primary_key=True),
    sa.Column("events", sa.Integer(), nullable=False),
)

#: per-recipient counter columns (``events`` maps event kinds and effects to them)
RECIPIENT_COUNTERS = ("delivered", "opens", "clicks", "deferred", "dropped", "bounced",
                      "complained", "unsubscribed")

send_recipient_events = sa.Table(
    "send_recipient_events",
    metadata,
    sa.Column("send_id", ID, sa.ForeignKey("sends.id", ondelete="CASCADE"), primary_key=True),
    sa.Column("email", sa.String(320), primary_key=True),
    sa.Column("subscriber_id", ID, nullable=True),
    *(sa.Column(name, sa.Integer(), nullable=False, server_default="0")
      for name in RECIPIENT_COUNTERS),
    sa.Column("last_event_at", Stamp, nullable=True),
)


# -- the web archive (newsletter.delivery.archive) ------------------------------------------------

archive_issues = sa.Table(
    "archive_issues",
    metadata,
    sa.Column("slug", sa.String(200), primary_key=True),
    sa.Column("issue_date", sa.Date(), nullable=False),
    sa.Column("subject", sa.Text(), nullable=False),
    sa.Column("preheader", sa.Text(), nullable=True),
    sa.Column("html", sa.Text(), nullable=False),
    sa.Column("text", sa.Text(), nullable=False),
    sa.Column("published_at", Stamp, nullable=False),
    sa.Column("updated_at", Stamp, nullable=False),
    # the issue's identity (newsletter.authoring.identity): a copy replaces its entry; NULL content
    # hash on entries older than migration 0006
    sa.Column("issue_key", sa.String(64), nullable=True),
    sa.Column("content_hash", sa.String(64), nullable=True),
    sa.Index(None, "issue_date"),
)


# -- sign-ups: pending subscriptions and their consent records (newsletter.audience.signup) ----

#: a sign-up is pending until its confirmation link is pressed; cancelled by "not me"
SIGNUP_STATUSES = ("pending", "confirmed", "cancelled")

signups = sa.Table(
    "signups",
    metadata,
    sa.Column("id", ID, primary_key=True, autoincrement=True),
    sa.Column("email", sa.String(320), nullable=False),
    sa.Column("email_key", EmailKey, nullable=False),
    sa.Column("name", sa.Text(), nullable=True),
    sa.Column("list_id", ID, sa.ForeignKey("lists.id", ondelete="CASCADE"), nullable=False),
    sa.Column("status", sa.String(10), nullable=False),
    sa.Column("round", sa.Integer(), nullable=False),  # +1 each time it becomes pending anew
    # the consent record: how (form or api), what the person was told (text and version),
    # from where (HMAC-SHA256 of the IP address with secret_key, hex), when, confirmed when
    sa.Column("source", sa.String(10), nullable=False),
    sa.Column("consent_text", sa.Text(), nullable=False),
    sa.Column("consent_version", sa.String(40), nullable=False),
    sa.Column("ip_hash", sa.String(64), nullable=True),
    sa.Column("requested_at", Stamp, nullable=False),
    sa.Column("confirmed_at", Stamp, nullable=True),
    sa.Column("mailed_at", Stamp, nullable=True),  # the last confirmation email sent
    sa.UniqueConstraint("email_key", "list_id"),
    sa.CheckConstraint("status IN ('pending', 'confirmed', 'cancelled')", name="status"),
    sa.CheckConstraint("source IN ('form', 'api')", name="source"),
    sqlite_autoincrement=True,
)

#: counters of the sign-up rate limits, shared by every server process: hits per key
#: (an HMAC of an IP address or email address, with what it limits) per time window
rate_limits = sa.Table(
    "rate_limits",
    metadata,
    sa.Column("key", sa.String(80), primary_key=True),
    sa.Column("window", sa.BigInteger(), primary_key=True),  # the window's start, Unix s
    sa.Column("hits", sa.Integer(), nullable=False),
    sa.Index(None, "window"),
)
# -- the suppression list and the bounce mailbox (audience.suppressions, feedback.mailbox) --

#: why an address is suppressed
SUPPRESSION_REASONS = ("bounced", "complained", "unsubscribed", "manual")

suppressions = sa.Table(
    "suppressions",
    metadata,
    sa.Column("email_key", EmailKey, primary_key=True),  # lower-cased, as subscribers'
    sa.Column("reason", sa.String(16), nullable=False),
    sa.Column("source", sa.String(40), nullable=False),  # cli, sendgrid, ses, mailbox, import:ses
    sa.Column("detail", sa.Text(), nullable=True),
    sa.Column("created_at", Stamp, nullable=False),
    sa.CheckConstraint(
        "reason IN ('bounced', 'complained', 'unsubscribed', 'manual')", name="reason"
    ),
)

bounce_messages = sa.Table(
    "bounce_messages",
    metadata,
    # the report's Message-ID (or a digest of it when it has none): applied once
    sa.Column("message_key", sa.String(200), primary_key=True),
    sa.Column("outcome", sa.String(16), nullable=False),  # hard | soft | complaint | ignored
    sa.Column("email_key", EmailKey, nullable=True),
    sa.Column("processed_at", Stamp, nullable=False),
)

soft_bounces = sa.Table(
    "soft_bounces",
    metadata,
    sa.Column("id", ID, primary_key=True, autoincrement=True),
    sa.Column("email_key", EmailKey, nullable=False),
    sa.Column("send_id", ID, nullable=True),
    sa.Column("status", sa.String(16), nullable=True),  # the DSN's status code, e.g. 4.2.2
    sa.Column("bounced_at", Stamp, nullable=False),
    sa.Index(None, "email_key", "bounced_at"),
    sqlite_autoincrement=True,
)


# -- click tracking (newsletter.delivery.tracking, newsletter.feedback.clicks) -------------

send_links = sa.Table(
    "send_links",
    metadata,
    # each tracked link of a send: its index in the tracked URLs (0 is the canary), the
    # original URL and the section it stands in, so clicks are counted per section
    sa.Column("send_id", ID, sa.ForeignKey("sends.id", ondelete="CASCADE"), primary_key=True),
    sa.Column("idx", sa.Integer(), primary_key=True),
    sa.Column("url", sa.Text(), nullable=False),
    sa.Column("section_kind", sa.String(40), nullable=False),
    sa.Column("section_title", sa.Text(), nullable=True),
    sa.Column("item_title", sa.Text(), nullable=True),
)

clicks = sa.Table(
    "clicks",
    metadata,
    # one row per request of a tracked link (GET or HEAD), flagged at report time
    # (feedback.clicks.classify); no foreign key: one cheap insert per click
    sa.Column("id", ID, primary_key=True, autoincrement=True),
    sa.Column("send_id", ID, nullable=False),
    sa.Column("subscriber_id", ID, nullable=False),
    sa.Column("link_idx", sa.Integer(), nullable=False),
    sa.Column("method", sa.String(8), nullable=False),
    sa.Column("clicked_at", Stamp, nullable=False),
    sa.Index(None, "send_id", "subscriber_id"),
    sa.Index(None, "subscriber_id"),
    sqlite_autoincrement=True,
)

opens = sa.Table(
    "opens",
    metadata,
    # the 1x1 pixel's requests (track_opens): may include machine opens, never decide
    sa.Column("id", ID, primary_key=True, autoincrement=True),
    sa.Column("send_id", ID, nullable=False),
    sa.Column("subscriber_id", ID, nullable=False),
    sa.Column("opened_at", Stamp, nullable=False),
    sa.Index(None, "send_id", "subscriber_id"),
    sa.Index(None, "subscriber_id"),
    sqlite_autoincrement=True,
)
