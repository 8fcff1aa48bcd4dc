"""Click tracking: each send's tracked links, the clicks on them and the pixel's opens.

``send_links``: per send, each tracked link's index (0 is the invisible canary), its
original URL and the section it stands in. ``clicks``: one row per request of a tracked
link (GET or HEAD), classified human or flagged when reported (``feedback.clicks``).
``opens``: the 1x1 pixel's requests when ``track_opens`` is on.

Revision ID: 0013_click_tracking
Revises: 0012_subject_tests
Create Date: 2026-11-30
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0013_click_tracking"
down_revision = "0012_subject_tests"
branch_labels = None
depends_on = None

ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
Stamp = sa.DateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "send_links",
        sa.Column("send_id", ID, nullable=False),
        sa.Column("idx", sa.Integer(), nullable=False),
        sa.Column("url", sa.Text(), nullable=False),
        sa.Column("section_kind", sa.String(40), nullable=False),
        sa.Column("section_title", sa.Text(), nullable=True),
        sa.Column("item_title", sa.Text(), nullable=True),
        sa.ForeignKeyConstraint(["send_id"], ["sends.id"], ondelete="CASCADE",
                                name="fk_send_links_send_id_sends"),
        sa.PrimaryKeyConstraint("send_id", "idx", name="pk_send_links"),
    )
    for table, stamp in (("clicks", "clicked_at"), ("opens", "opened_at")):
        extra = ([sa.Column("link_idx", sa.Integer(), nullable=False),
                  sa.Column("method", sa.String(8), nullable=False)]
                 if table == "clicks" else [])
        op.create_table(
            table,
            sa.Column("id", ID, autoincrement=True, nullable=False),
            sa.Column("send_id", ID, nullable=False),
            sa.Column("subscriber_id", ID, nullable=False),
            *extra,
            sa.Column(stamp, Stamp, nullable=False),
            sa.PrimaryKeyConstraint("id", name=f"pk_{table}"),
            sqlite_autoincrement=True,
        )
        op.create_index(f"ix_{table}_send_id_subscriber_id", table,
                        ["send_id", "subscriber_id"])
        op.create_index(f"ix_{table}_subscriber_id", table, ["subscriber_id"])


def downgrade() -> None:
    for table in ("opens", "clicks"):
        op.drop_index(f"ix_{table}_subscriber_id", table_name=table)
        op.drop_index(f"ix_{table}_send_id_subscriber_id", table_name=table)
        op.drop_table(table)
    op.drop_table("send_links")
