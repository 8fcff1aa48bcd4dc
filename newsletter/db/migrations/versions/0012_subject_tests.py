"""Subject tests: a variant per recipient, and each test's decision.

- ``send_recipients.variant``: "A".."D" for the recipients of a subject test's test
  share, "winner" for the rest of the list, who are held back (status ``held``, which no
  batch claims) until the decision; NULL for sends without a subject test.
- ``subject_tests``: one row per send with a subject test: the subjects, the test share,
  the assignment's seed, when to decide, and the decision (winner, when, why).

Nothing existing is rewritten: the new column is NULL on every old row.

Revision ID: 0012_subject_tests
Revises: 0011_suppressions
Create Date: 2026-12-01
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects.postgresql import JSONB

revision = "0012_subject_tests"
down_revision = "0011_suppressions"
branch_labels = None
depends_on = None

ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
Stamp = sa.DateTime(timezone=True)
JSONType = sa.JSON().with_variant(JSONB(), "postgresql")


def upgrade() -> None:
    op.add_column("send_recipients", sa.Column("variant", sa.String(8), nullable=True))
    op.create_table(
        "subject_tests",
        sa.Column("send_id", ID, nullable=False),
        sa.Column("subjects", JSONType, nullable=False),
        sa.Column("test_share", sa.Float(), nullable=False),
        sa.Column("seed", sa.String(64), nullable=False),
        sa.Column("decide_at", Stamp, nullable=False),
        sa.Column("status", sa.String(10), nullable=False),
        sa.Column("winner", sa.String(8), nullable=True),
        sa.Column("decided_at", Stamp, nullable=True),
        sa.Column("note", sa.Text(), nullable=True),
        sa.ForeignKeyConstraint(["send_id"], ["sends.id"], ondelete="CASCADE",
                                name="fk_subject_tests_send_id_sends"),
        sa.PrimaryKeyConstraint("send_id", name="pk_subject_tests"),
        sa.CheckConstraint("status IN ('testing', 'decided')", name=op.f("ck_subject_tests_status")),
    )
    op.create_index("ix_subject_tests_status_decide_at", "subject_tests", ["status", "decide_at"])


def downgrade() -> None:
    op.drop_index("ix_subject_tests_status_decide_at", table_name="subject_tests")
    op.drop_table("subject_tests")
    # a plain DROP COLUMN (SQLite 3.35+): rebuilding the table would break the triggers
    # of revisions 0004 and 0010 that name it
    op.execute("ALTER TABLE send_recipients DROP COLUMN variant")
