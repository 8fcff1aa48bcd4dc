"""PostgreSQL: no foreign key from ``send_recipients.send_id`` to ``sends``.

The snapshot copies a list's members into ``send_recipients`` (``ledger._snapshot``, an
``INSERT ... SELECT`` per chunk of 20,000). PostgreSQL checks a foreign key with a
trigger per inserted row (one ``SELECT 1 FROM sends WHERE id = $1 FOR KEY SHARE`` each):
measured on 100,000 members, the chunks' statements took 14.2 s of backend CPU per
million with the key and 7.1 s without it, half of the snapshot's database work.

The key guarded nothing the code can do: every row is inserted with the id of a send
that exists in the same transaction (``ledger.create_send`` inserts the send first;
``continue_snapshot`` and ``add_recipients`` read the send's row first), and sends are
never deleted (the only ``DELETE FROM sends``, revision 0010's downgrade, runs after this
revision's downgrade has put the key, and its cascade, back). The other tables keep their
keys to ``sends``: none is written per recipient by a send.

SQLite keeps the key: its check is a rowid lookup (0.45 s per million in the snapshot),
and its table cannot drop a constraint without a rebuild, which its triggers forbid.

Revision ID: 0018_snapshot_without_fk
Revises: 0017_claim_cursor
Create Date: 2026-11-30
"""

from __future__ import annotations

from alembic import op

revision = "0018_snapshot_without_fk"
down_revision = "0017_claim_cursor"
branch_labels = None
depends_on = None

FK = "fk_send_recipients_send_id_sends"


def upgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.drop_constraint(FK, "send_recipients", type_="foreignkey")


def downgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.create_foreign_key(FK, "send_recipients", "sends", ["send_id"], ["id"],
                              ondelete="CASCADE")
