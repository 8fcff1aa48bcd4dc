"""A send's recipients can be snapshotted in chunks while its first batches go out.

``sends.snapshot_after``: NULL once every recipient is in ``send_recipients``; while the
snapshot is still being written, the highest subscriber id copied so far.
``sends.snapshot_until``: the highest subscriber id when the send was created; people
who sign up later are not added to it.

Revision ID: 0005_snapshot_in_chunks
Revises: 0004_skip_unsendable
Create Date: 2026-11-25
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0005_snapshot_in_chunks"
down_revision = "0004_skip_unsendable"
branch_labels = None
depends_on = None

ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    op.add_column("sends", sa.Column("snapshot_after", ID, nullable=True))
    op.add_column("sends", sa.Column("snapshot_until", ID, nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("sends") as batch:
        batch.drop_column("snapshot_until")
        batch.drop_column("snapshot_after")
