"""Scheduled subject tests: the options ``newsletter schedule`` was given, kept with the
schedule for the worker.

- ``schedules.subject_test``: JSON ``{"subjects": [...] or null, "share": 0.2,
  "after_seconds": 1200}``; ``subjects`` null means the issue's ``subject_variants`` as
  the file says when the send is due (the issue is read again then). NULL on a schedule
  without options: the worker still tests the issue's ``subject_variants`` if it has
  them, with the defaults, as ``newsletter send`` would.

Nothing existing is rewritten: the new column is NULL on every old row.

Revision ID: 0016_schedule_subject_tests
Revises: 0015_ledger_hot_updates
Create Date: 2026-11-30
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects.postgresql import JSONB

revision = "0016_schedule_subject_tests"
down_revision = "0015_ledger_hot_updates"
branch_labels = None
depends_on = None

JSONType = sa.JSON().with_variant(JSONB(), "postgresql")


def upgrade() -> None:
    op.add_column("schedules", sa.Column("subject_test", JSONType, nullable=True))


def downgrade() -> None:
    op.execute("ALTER TABLE schedules DROP COLUMN subject_test")
