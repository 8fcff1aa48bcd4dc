"""Where each send worker keeps its progress journal.

``send_workers.journal_dir``: the folder (on the worker's host) of the worker's progress
journal (``newsletter.delivery.journal``), from which ``ledger.reconcile`` settles a dead
worker's batch message by message; NULL when the worker keeps none (then its batches in
flight become uncertain as a whole, as before).

Revision ID: 0008_worker_journal
Revises: 0007_check_constraint_names
Create Date: 2026-11-26
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0008_worker_journal"
down_revision = "0007_check_constraint_names"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("send_workers", sa.Column("journal_dir", sa.Text(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("send_workers") as batch:
        batch.drop_column("journal_dir")
