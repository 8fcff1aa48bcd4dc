"""The web archive: the generic web copy of every issue sent, stored when its send starts.

``publish(db, settings, issue_path)`` renders the issue without personal links
(``render(..., personal=False)``: no unsubscribe link, ``{{name}}`` at its fallback) and
stores it under its slug in ``archive_issues``, so the archive shows what was sent even
after the issue file changes or is removed. Sending the same issue again (to another
list, or with ``--again``, also from a copied or renamed file: ``newsletter.identity``)
replaces the stored copy by the newer one, under its first slug, and keeps the date it
was first published: the archive lists each issue once. ``resolve`` leads the other
slugs of an issue (a copy's "Read in your browser" link, a slug from before they were
made URL-safe) to that entry. Test sends (``--test-to``) publish nothing.

``backfill(db, settings)`` publishes the issues of real sends that have no archive copy
yet (sends made before the archive existed, or by code that creates sends without
``sending.start``), from their issue files as they are now; the web archive calls it
before listing.
"""

from __future__ import annotations

import datetime as dt
import logging
from dataclasses import dataclass
from pathlib import Path

import sqlalchemy as sa

from .build import build_file
from .config import Settings
from .errors import NewsletterError
from .identity import of_issue
from .slugs import file_slug
from .store._db import DB, aware, transaction, utcnow
from .store.tables import Stamp, metadata

log = logging.getLogger("newsletter.archive")

archive_issues = sa.Table(
    "archive_issues",
    metadata,
    sa.Column("slug", sa.String(200), primary_key=True),
    sa.Column("issue_date", sa.Date(), nullable=False),
    sa.Column("subject", sa.Text(), nullable=False),
    sa.Column("preheader", sa.Text(), nullable=True),
    sa.Column("html", sa.Text(), nullable=False),
    sa.Column("text", sa.Text(), nullable=False),
    sa.Column("published_at", Stamp, nullable=False),
    sa.Column("updated_at", Stamp, nullable=False),
    sa.Index(None, "issue_date"),
)


@dataclass(frozen=True)
class Entry:
    slug: str
    issue_date: dt.date
    subject: str
    preheader: str | None
    published_at: dt.datetime
    updated_at: dt.datetime

    @property
    def date_text(self) -> str:
        d = self.issue_date
        return f"{d:%A}, {d.day} {d:%B %Y}"


def publish(db: DB, settings: Settings, issue_path: Path | str) -> Entry:
    """Render the generic web copy of an issue and store it in the archive."""
    result = build_file(issue_path, settings, personal=False)
    if result.errors or result.rendered is None or result.issue is None:
        raise NewsletterError(f"{issue_path}: cannot be archived: it does not render")
    issue, rendered = result.issue, result.rendered
    identity = of_issue(issue)
    now = utcnow()
    values = {"issue_date": issue.date, "subject": rendered.subject,
              "preheader": rendered.preheader, "html": rendered.html, "text": rendered.text,
              "updated_at": now}
    with transaction(db) as conn:
        slug = _published_as(conn, _same_issue(identity.issue_key, identity.content_hash),
                             prefer=issue.slug) or issue.slug
        updated = conn.execute(
            archive_issues.update().where(archive_issues.c.slug == slug).values(**values)
        ).rowcount
        if not updated:
            conn.execute(archive_issues.insert().values(slug=slug, published_at=now,
                                                        **values))
    found = get_entry(db, slug)
    assert found is not None
    return found[0]


def _same_issue(issue_key: str | None, content_hash: str | None) -> sa.ColumnElement[bool]:
    """Real sends of the issue with this identity (``newsletter.identity``)."""
    from .ledger import sends

    return sa.and_(sends.c.kind == "real", sa.or_(sends.c.issue_key == issue_key,
                                                  sends.c.content_hash == content_hash))


def _published_as(conn: sa.Connection, same: sa.ColumnElement[bool], prefer: str
                  ) -> str | None:
    """The archive slug of the issue the sends matching ``same`` sent, if published."""
    from .ledger import sends

    slugs = conn.execute(
        sa.select(archive_issues.c.slug)
        .where(archive_issues.c.slug.in_(sa.select(sends.c.issue_slug).where(same)))
        .order_by(archive_issues.c.published_at)
    ).scalars().all()
    return prefer if prefer in slugs else (slugs[0] if slugs else None)


def resolve(db: DB, slug: str) -> str | None:
    """The archive slug to show for ``slug``: itself, or the entry of the same issue.

    A renamed copy sent with ``--again`` is published under the issue's first slug; its
    own link leads there. A slug from before slugs were URL-safe (``2026-12-01 copy``)
    leads to its new form.
    """
    from .ledger import sends

    with transaction(db) as conn:
        if conn.execute(sa.select(archive_issues.c.slug)
                        .where(archive_issues.c.slug == slug)).first() is not None:
            return slug
        safe = file_slug(f"{slug}.md")
        if safe != slug and conn.execute(sa.select(archive_issues.c.slug).where(
                archive_issues.c.slug == safe)).first() is not None:
            return safe
        sent = conn.execute(
            sa.select(sends.c.issue_key, sends.c.content_hash)
            .where(sends.c.issue_slug == slug, sends.c.kind == "real", sends.c.issue_key
                   .is_not(None)).order_by(sends.c.id.desc()).limit(1)
        ).first()
        if sent is None:
            return None
        return _published_as(conn, _same_issue(sent.issue_key, sent.content_hash), slug)


_ENTRY_COLUMNS = [c for c in archive_issues.c if c.name not in ("html", "text")]


def _entry(row: sa.Row) -> Entry:
    published, updated = aware(row.published_at), aware(row.updated_at)
    assert published is not None and updated is not None
    return Entry(slug=row.slug, issue_date=row.issue_date, subject=row.subject,
                 preheader=row.preheader, published_at=published, updated_at=updated)


def entries(db: DB, *, limit: int | None = None) -> list[Entry]:
    """Archived issues, newest first (by issue date, then by publication)."""
    query = sa.select(*_ENTRY_COLUMNS).order_by(
        archive_issues.c.issue_date.desc(), archive_issues.c.published_at.desc(),
        archive_issues.c.slug.desc())
    if limit is not None:
        query = query.limit(limit)
    with transaction(db) as conn:
        return [_entry(r) for r in conn.execute(query)]


def get_entry(db: DB, slug: str) -> tuple[Entry, str] | None:
    """An archived issue and its web HTML, or None."""
    with transaction(db) as conn:
        row = conn.execute(sa.select(archive_issues).where(archive_issues.c.slug == slug)).first()
    return None if row is None else (_entry(row), row.html)


def backfill(db: DB, settings: Settings) -> list[str]:
    """Publish the issues of real sends missing from the archive; returns their slugs."""
    from .ledger import sends

    with transaction(db) as conn:
        missing = conn.execute(
            sa.select(sends.c.issue_slug, sa.func.max(sends.c.issue_path))
            .where(sends.c.kind == "real",
                   ~sa.exists().where(archive_issues.c.slug == sends.c.issue_slug))
            .group_by(sends.c.issue_slug)
        ).all()
    published = []
    for slug, issue_path in missing:
        if resolve(db, slug) is not None:  # a copy of an issue published under its slug
            continue
        path = Path(issue_path)
        if not path.is_absolute():
            path = settings.project_dir / path
        if not path.is_file():
            continue
        try:
            entry = publish(db, settings, path)
        except NewsletterError as exc:
            log.warning("archive: issue %s (%s) not published: %s", slug, path, exc)
            continue
        published.append(entry.slug)
    return published
