"""PostgreSQL ledger: claims by seq range from a per-send cursor; one write per recipient.

Until now each recipient's row was written twice by a send: claimed (``pending`` ->
``sending`` plus its batch id, which left the claim index: a non-HOT update) and
answered. On PostgreSQL a claim now moves the send's cursor (``send_cursors``, one small
row) past the next pending rows, in seq order, and stores their seqs with the batch
(``send_batches.seqs``); the rows themselves stay ``pending`` until the answer, the only
write per recipient, which changes no indexed column (a HOT update on the row's page).
A row in flight is a pending (or, if the subscriber left meanwhile, skipped) row whose seq
is in an open batch's ``seqs``: the answer, ``recovery`` and the counts read it so.

Rows made pending again behind the cursor (retries, a released batch, recovery, a subject
test's release, a later wave) are flagged ``requeued``; the second claim path takes them
through the partial index ``ix_send_recipients_pending``, which on PostgreSQL now holds only
those (``WHERE requeued``; the snapshot's rows are not in it) and marks them ``sending`` as
before. SQLite keeps its claim (``WHERE status = 'pending'``) and does not use the cursor,
the seqs or the flag.

Revision ID: 0017_claim_cursor
Revises: 0016_schedule_subject_tests
Create Date: 2026-11-30
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0017_claim_cursor"
down_revision = "0016_schedule_subject_tests"
branch_labels = None
depends_on = None

ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    op.create_table(
        "send_cursors",
        sa.Column("send_id", ID, nullable=False),
        sa.Column("claimed_through", ID, nullable=False),
        sa.PrimaryKeyConstraint("send_id", name="pk_send_cursors"),
        sa.ForeignKeyConstraint(["send_id"], ["sends.id"], ondelete="CASCADE",
                                name="fk_send_cursors_send_id_sends"),
    )
    # plain ADD COLUMN (no table rebuild, which SQLite's triggers on the table forbid)
    op.add_column("send_recipients", sa.Column("requeued", sa.Boolean(), nullable=False,
                                               server_default=sa.false()))
    op.add_column("send_batches", sa.Column("seqs", sa.ARRAY(sa.BigInteger()).with_variant(
        sa.Text(), "sqlite"), nullable=True))
    if op.get_bind().dialect.name != "postgresql":
        return
    op.drop_index("ix_send_recipients_pending", "send_recipients")
    op.execute("CREATE INDEX ix_send_recipients_pending ON send_recipients (send_id, seq) "
               "WHERE requeued")


def downgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.drop_index("ix_send_recipients_pending", "send_recipients")
        op.execute("CREATE INDEX ix_send_recipients_pending ON send_recipients (send_id, seq) "
                   "WHERE batch_id IS NULL")
    op.drop_column("send_batches", "seqs")
    op.drop_column("send_recipients", "requeued")
    op.drop_table("send_cursors")
