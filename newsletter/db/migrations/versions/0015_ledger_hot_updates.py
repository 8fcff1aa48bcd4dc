"""PostgreSQL ledger: recording an answer is a HOT update.

A recipient's row is updated twice by a send: claimed (``pending`` -> ``sending``, with
its batch id) and answered (``sending`` -> ``sent``). PostgreSQL can update a row in place
(a HOT update: no new index entry, the old version pruned with the page) only when no
indexed column changes, and a partial index's predicate counts. With the claim index
``WHERE status = 'pending'`` both updates changed an indexed column, so each wrote a new
row version elsewhere in the table plus a new primary-key entry.

On PostgreSQL the claim index now says ``WHERE batch_id IS NULL`` (a row is claimable
while it is in no batch; a row made pending again has its batch id cleared by
``requeue.reopen``). The claim, which sets the batch id, still leaves that index; the
answer changes no indexed column. ``fillfactor = 50`` leaves half of each page of the
snapshot free, so both new versions of a row stay on its page (and the answer's is HOT).
SQLite keeps ``WHERE status = 'pending'`` (it has no HOT updates to win).

Pending rows that kept the id of an earlier batch (requeued before this revision) are
cleared first, so that they stay claimable.

Revision ID: 0015_ledger_hot_updates
Revises: 0014_send_rates
Create Date: 2026-11-30
"""

from __future__ import annotations

from alembic import op

revision = "0015_ledger_hot_updates"
down_revision = "0014_send_rates"
branch_labels = None
depends_on = None

FILLFACTOR = 50


def upgrade() -> None:
    op.execute("UPDATE send_recipients SET batch_id = NULL "
               "WHERE status = 'pending' AND batch_id IS NOT NULL")
    if op.get_bind().dialect.name != "postgresql":
        return
    op.drop_index("ix_send_recipients_pending", "send_recipients")
    op.execute("CREATE INDEX ix_send_recipients_pending ON send_recipients (send_id, seq) "
               "WHERE batch_id IS NULL")
    op.execute(f"ALTER TABLE send_recipients SET (fillfactor = {FILLFACTOR})")


def downgrade() -> None:
    if op.get_bind().dialect.name != "postgresql":
        return
    op.execute("ALTER TABLE send_recipients RESET (fillfactor)")
    op.drop_index("ix_send_recipients_pending", "send_recipients")
    op.execute("CREATE INDEX ix_send_recipients_pending ON send_recipients (send_id, seq) "
               "WHERE status = 'pending'")
