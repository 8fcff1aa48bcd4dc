"""Table definitions (SQLAlchemy Core): subscribers, lists and list memberships.

The migrations in ``migrations/versions`` create exactly these tables; a test checks
that the migrated schema and this metadata agree. Later migrations add their own tables
on top (the delivery ledger) and define them next to their code.
"""

from __future__ import annotations

import sqlalchemy as sa
from sqlalchemy.dialects.postgresql import JSONB

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
JSONType = sa.JSON().with_variant(JSONB(), "postgresql")
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
