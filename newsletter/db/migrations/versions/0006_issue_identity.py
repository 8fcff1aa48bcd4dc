"""Sends remember their issue's identity, not just its file name; URL-safe slugs.

``sends.issue_date``, ``sends.issue_key`` (date + subject) and ``sends.content_hash``
(the sections as rendered) let a copied or renamed issue file be recognised as an
issue already sent (``newsletter.identity``). The one-unfinished-send-per-issue-and-list
index moves from the file's slug to ``issue_key``.

Existing sends are backfilled as well as can be: from their issue file when it can still
be read (its path as stored, absolute, relative to the current folder or to the SQLite
database's folder), else the date from a slug starting ``YYYY-MM-DD`` with the send's
subject (no content hash). Sends with neither keep matching by slug, as before.

``archive_issues`` gets the same ``issue_key`` (from its date and subject) and
``content_hash`` (NULL for existing entries), so that a copy replaces its issue's entry.

Slugs that are not URL-safe (a file called ``2026-12-01 copy.md``) are rewritten to the
slug ``newsletter.slugs.file_slug`` gives the same name, in ``sends`` and in
``archive_issues``; the web archive redirects the old form to the new.

Revision ID: 0006_issue_identity
Revises: 0005_snapshot_in_chunks
Create Date: 2026-11-26
"""

from __future__ import annotations

import datetime as dt
import re
from pathlib import Path

import sqlalchemy as sa
from alembic import op

revision = "0006_issue_identity"
down_revision = "0005_snapshot_in_chunks"
branch_labels = None
depends_on = None

UNFINISHED = "kind = 'real' AND status = 'sending'"
_DATE = re.compile(r"^(\d{4})-(\d{2})-(\d{2})")


def upgrade() -> None:
    op.add_column("sends", sa.Column("issue_date", sa.Date(), nullable=True))
    op.add_column("sends", sa.Column("issue_key", sa.String(64), nullable=True))
    op.add_column("sends", sa.Column("content_hash", sa.String(64), nullable=True))
    op.add_column("archive_issues", sa.Column("issue_key", sa.String(64), nullable=True))
    op.add_column("archive_issues", sa.Column("content_hash", sa.String(64), nullable=True))
    _backfill(op.get_bind())
    op.drop_index("uq_sends_unfinished", "sends")
    op.create_index("uq_sends_unfinished", "sends", ["issue_key", "list_id"], unique=True,
                    sqlite_where=sa.text(UNFINISHED), postgresql_where=sa.text(UNFINISHED))
    op.create_index("ix_sends_list_id_issue_key", "sends", ["list_id", "issue_key"])
    op.create_index("ix_sends_list_id_content_hash", "sends", ["list_id", "content_hash"])


def downgrade() -> None:
    op.drop_index("ix_sends_list_id_content_hash", "sends")
    op.drop_index("ix_sends_list_id_issue_key", "sends")
    op.drop_index("uq_sends_unfinished", "sends")
    op.create_index("uq_sends_unfinished", "sends", ["issue_slug", "list_id"], unique=True,
                    sqlite_where=sa.text(UNFINISHED), postgresql_where=sa.text(UNFINISHED))
    with op.batch_alter_table("archive_issues") as batch:
        batch.drop_column("content_hash")
        batch.drop_column("issue_key")
    with op.batch_alter_table("sends") as batch:
        batch.drop_column("content_hash")
        batch.drop_column("issue_key")
        batch.drop_column("issue_date")


def _folders(conn: sa.Connection) -> list[Path]:
    folders = [Path.cwd()]
    if conn.dialect.name == "sqlite" and conn.engine.url.database not in (None, "", ":memory:"):
        folders.append(Path(conn.engine.url.database).resolve().parent)
    return folders


def _from_file(stored: str, folders: list[Path]):
    """The issue as parsed from its file, or None."""
    from newsletter.authoring.parse import parse_text

    path = Path(stored)
    for candidate in [path] if path.is_absolute() else [f / path for f in folders]:
        try:
            text = candidate.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError):
            continue
        issue = parse_text(text, str(candidate)).issue
        if issue is not None:
            return issue
    return None


def _identity(row: sa.Row, folders: list[Path]) -> dict:
    from newsletter.authoring import identity

    issue = _from_file(row.issue_path, folders)
    if issue is not None:
        found = identity.of_issue(issue)
        return {"issue_date": found.issue_date, "issue_key": found.issue_key,
                "content_hash": found.content_hash}
    match = _DATE.match(row.issue_slug)
    try:
        day = dt.date(*(int(part) for part in match.groups())) if match else None
    except ValueError:
        day = None
    if day is None:
        return {}
    return {"issue_date": day, "issue_key": identity.issue_key(day, row.subject)}


def _backfill(conn: sa.Connection) -> None:
    from newsletter.authoring.slugs import file_slug

    sends = sa.table("sends", sa.column("id"), sa.column("issue_path"),
                     sa.column("issue_slug"), sa.column("subject"), sa.column("issue_date"),
                     sa.column("issue_key"), sa.column("content_hash"), sa.column("list_id"),
                     sa.column("kind"), sa.column("status"))
    archive = sa.table("archive_issues", sa.column("slug"), sa.column("issue_date"),
                       sa.column("subject"), sa.column("issue_key"))
    folders = _folders(conn)
    rows = conn.execute(sa.select(sends.c.id, sends.c.issue_path, sends.c.issue_slug,
                                  sends.c.subject, sends.c.list_id, sends.c.kind,
                                  sends.c.status).order_by(sends.c.id.desc())).all()
    unfinished: set[tuple] = set()  # the unique index allows one per issue and list
    for row in rows:
        values = _identity(row, folders)
        if row.kind == "real" and row.status == "sending" and "issue_key" in values:
            if (values["issue_key"], row.list_id) in unfinished:
                values.pop("issue_key")
            unfinished.add((values.get("issue_key"), row.list_id))
        safe = file_slug(f"{row.issue_slug}.md")
        if safe != row.issue_slug:
            values["issue_slug"] = safe
        if values:
            conn.execute(sends.update().where(sends.c.id == row.id).values(**values))
    from newsletter.authoring.identity import issue_key

    for slug, day, subject in conn.execute(
            sa.select(archive.c.slug, archive.c.issue_date, archive.c.subject)).all():
        if isinstance(day, str):  # SQLite, read through a lightweight table()
            day = dt.date.fromisoformat(day)
        conn.execute(archive.update().where(archive.c.slug == slug).values(
            slug=file_slug(f"{slug}.md"), issue_key=issue_key(day, subject)))
