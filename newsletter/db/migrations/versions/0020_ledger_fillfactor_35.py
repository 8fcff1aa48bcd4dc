"""PostgreSQL ledger: ``fillfactor = 35``, so that every answer is a HOT update.

Revision 0015 set ``fillfactor = 50`` on ``send_recipients`` for two updates per row
(claim and answer) that changed nothing in the row's size. Since revision 0017 the answer
is the only write of a row, but it makes the row longer (the provider's message id, the
time): the new versions of a half-full page need more than the other half, and those
that do not fit are written on another page with a new primary-key entry. Measured on a
200,000-recipient SendGrid send (``bench_send.py --pg-cluster``, the 2-core machine,
PostgreSQL 15): with 50, 153,561 of the 200,000 answers were HOT (index 12 MB, table
57 MB); with 40 or 35, all of them (index 6.2 MB; table 54 and 63 MB); the server's CPU
per million fell from 6.2 s to 5.7 and 5.3 s.

A page at fillfactor F holds F * 8192 / s rows of s bytes; their answers, each g bytes
longer, fit in the rest when F <= s / (2s + g). A short row (s = 106 bytes with its
header) answered with SendGrid's 22-character id (g = 30) allows 0.44; with Mailgun's or
SES's ids of 50-60 characters (g = 60-70), 0.38. 35 keeps every provider's answers HOT
(``tests/test_schema.py``: 2,000 rows answered with a 50-character id, 1,350 HOT at 50,
all at 35), for about a tenth more disk than 40. It applies to pages written from now on.

Revision ID: 0020_ledger_fillfactor_35
Revises: 0019_batch_seqs_uncompressed
Create Date: 2026-11-30
"""

from __future__ import annotations

from alembic import op

revision = "0020_ledger_fillfactor_35"
down_revision = "0019_batch_seqs_uncompressed"
branch_labels = None
depends_on = None

FILLFACTOR = 35
BEFORE = 50  # revision 0015's


def upgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.execute(f"ALTER TABLE send_recipients SET (fillfactor = {FILLFACTOR})")


def downgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.execute(f"ALTER TABLE send_recipients SET (fillfactor = {BEFORE})")
