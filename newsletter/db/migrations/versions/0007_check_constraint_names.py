"""CHECK constraints get the names the tables declare (``ck_sends_status``, ...).

Revisions 0001-0003 named their CHECK constraints in full (``ck_sends_status``) while the
metadata's naming convention (``ck_%(table_name)s_%(constraint_name)s``) also applies to
the tables alembic creates, so the databases got ``ck_sends_ck_sends_status``. Nothing
noticed: alembic's autogenerate does not compare CHECK constraints. A later migration
dropping or replacing ``ck_sends_status`` (to allow a new status, say) would fail on
every existing database; ``tests/test_schema.py`` now compares the names too.

PostgreSQL renames them in place. SQLite keeps a constraint's name only in the table's
``CREATE TABLE`` text and cannot rename it, and rebuilding ``subscribers`` or
``memberships`` would copy every row and drop their triggers (revision 0004); so the
name is changed in that text, the documented way for changes that leave the stored
rows as they are (https://sqlite.org/lang_altertable.html#otheralter: writable_schema,
then a new schema_version so every connection reads the schema again). A database
whose constraints have the right names already is left as it is.

Revision ID: 0007_check_constraint_names
Revises: 0006_issue_identity
Create Date: 2026-11-26
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0007_check_constraint_names"
down_revision = "0006_issue_identity"
branch_labels = None
depends_on = None

#: (table, name the table declares) of every CHECK constraint created before this revision
CHECKS = (
    ("subscribers", "ck_subscribers_status"),
    ("memberships", "ck_memberships_status"),
    ("sends", "ck_sends_kind"),
    ("sends", "ck_sends_status"),
    ("schedules", "ck_schedules_status"),
)


def _doubled(table: str, name: str) -> str:
    return f"ck_{table}_{name}"


def upgrade() -> None:
    for table, name in CHECKS:
        _rename(op.get_bind(), table, _doubled(table, name), name)


def downgrade() -> None:
    for table, name in CHECKS:
        _rename(op.get_bind(), table, name, _doubled(table, name))


def _rename(conn: sa.Connection, table: str, old: str, new: str) -> None:
    if conn.dialect.name == "postgresql":
        exists = conn.execute(
            sa.text("SELECT 1 FROM pg_constraint WHERE conrelid = CAST(:t AS regclass) "
                    "AND conname = :n"), {"t": table, "n": old}).first()
        if exists:
            conn.exec_driver_sql(f'ALTER TABLE "{table}" RENAME CONSTRAINT "{old}" TO "{new}"')
        return
    sql = conn.execute(sa.text("SELECT sql FROM sqlite_master WHERE type = 'table' "
                               "AND name = :t"), {"t": table}).scalar()
    before, after = f"CONSTRAINT {old} CHECK", f"CONSTRAINT {new} CHECK"
    if sql is None or before not in sql:
        return
    version = conn.exec_driver_sql("PRAGMA schema_version").scalar()
    conn.exec_driver_sql("PRAGMA writable_schema = ON")
    try:
        conn.execute(sa.text("UPDATE sqlite_master SET sql = :sql WHERE type = 'table' "
                             "AND name = :t"), {"sql": sql.replace(before, after), "t": table})
        conn.exec_driver_sql(f"PRAGMA schema_version = {int(version) + 1}")
    finally:
        conn.exec_driver_sql("PRAGMA writable_schema = OFF")
