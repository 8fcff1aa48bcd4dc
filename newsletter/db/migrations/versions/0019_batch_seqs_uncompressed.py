"""PostgreSQL: a batch's seqs stored without compression.

A claim by the send's cursor (revision 0017) stores the seqs it picked in its batch row,
``send_batches.seqs``: an array of up to 1,000 bigints, 8 KB, over the size at which
PostgreSQL tries to compress a value (``pglz``) before it moves it out of line. The seqs
compress to about half, and the attempt cost every claim more than the out-of-line write
saves: measured on the machine's PostgreSQL 15, 1,000 batch rows of 1,000 seqs took 600-660
ms compressed and 260-270 ms stored as they are (``EXTERNAL``), reads 72-93 ms either way;
in a 1,000,000-recipient send's profile (perf) the compression was 1% of all CPU. The
price is 4.3 MB more of disk per million recipients, beside a ledger of 365 MB.

SQLite stores the seqs as text and has no such setting: nothing changes there.

Revision ID: 0019_batch_seqs_uncompressed
Revises: 0018_snapshot_without_fk
Create Date: 2026-11-30
"""

from __future__ import annotations

from alembic import op

revision = "0019_batch_seqs_uncompressed"
down_revision = "0018_snapshot_without_fk"
branch_labels = None
depends_on = None


def upgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.execute("ALTER TABLE send_batches ALTER COLUMN seqs SET STORAGE EXTERNAL")


def downgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.execute("ALTER TABLE send_batches ALTER COLUMN seqs SET STORAGE EXTENDED")
