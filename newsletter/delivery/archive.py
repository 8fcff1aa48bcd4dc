"""The web archive: the generic web copy of every issue sent, stored when its send starts.

``publish(db, settings, issue_path)`` renders the issue without personal links
(``render(..., personal=False)``: no unsubscribe link, ``{{name}}`` at its fallback) and
stores it under its slug in ``archive_issues``, so the archive shows what was sent even
after the issue file changes or is removed. Sending the same issue again (to another
list, or with ``--again``, also from a copied or renamed file: ``newsletter.authoring.identity``)
replaces the stored copy by the newer one, under its first slug, and keeps the date it
was first published: the archive lists each issue once. ``publish_send`` makes a send's
"Read in your browser" links point at the slug its issue is archived under; ``resolve``
leads other slugs (from before slugs were URL-safe) to their entry. Test sends
(``--test-to``) publish nothing.

``backfill(db, settings)`` publishes the issues of real sends that have no archive copy
yet (sends made before the archive existed, or by code that creates sends without
``sending.start``), from their issue files as they are now; the web archive calls it
before listing.
"""

from __future__ import annotations

import datetime as dt
import logging
import re
from dataclasses import dataclass
from pathlib import Path

import sqlalchemy as sa

from ..authoring.build import build_file
from ..authoring.identity import of_issue
from ..authoring.slugs import file_slug
from ..config import Settings
from ..db.tables import archive_issues, sends
from ..db.transactions import DB, aware, transaction, utcnow
from ..errors import NewsletterError

log = logging.getLogger("newsletter.archive")

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
    """Render the generic web copy of an issue and store it in the archive.

    The entry of the same issue (``newsletter.authoring.identity``: same date and subject, or same
    content), under whatever file name it was published, is replaced; a new issue gets
    its file's slug, or ``SLUG-2``, ``SLUG-3`` ... when another issue has that slug (a
    reused file name).
    """
    result = build_file(issue_path, settings, personal=False)
    if result.errors or result.rendered is None or result.issue is None:
        raise NewsletterError(f"{issue_path}: cannot be archived: it does not render")
    issue, rendered = result.issue, result.rendered
    identity = of_issue(issue)
    now = utcnow()
    values = {"issue_date": issue.date, "subject": rendered.subject,
              "preheader": rendered.preheader, "html": rendered.html, "text": rendered.text,
              "updated_at": now, "issue_key": identity.issue_key,
              "content_hash": identity.content_hash}
    with transaction(db) as conn:
        slug = conn.execute(
            sa.select(archive_issues.c.slug)
            .where(sa.or_(archive_issues.c.issue_key == identity.issue_key,
                          archive_issues.c.content_hash == identity.content_hash))
            .order_by(archive_issues.c.published_at).limit(1)
        ).scalar()
        if slug is not None:
            conn.execute(archive_issues.update().where(archive_issues.c.slug == slug)
                         .values(**values))
        else:
            slug = _free_slug(conn, issue.slug)
            conn.execute(archive_issues.insert().values(slug=slug, published_at=now,
                                                        **values))
    found = get_entry(db, slug)
    assert found is not None
    return found[0]


def _free_slug(conn: sa.Connection, slug: str) -> str:
    taken = set(conn.execute(
        sa.select(archive_issues.c.slug).where(archive_issues.c.slug.like(f"{slug}%"))
    ).scalars())
    candidate, n = slug, 1
    while candidate in taken:
        n += 1
        candidate = f"{slug}-{n}"
    return candidate


def publish_send(db: DB, settings: Settings, issue_path: Path | str, send_id: int,
                 slug: str) -> Entry:
    """``publish`` for a send just created, whose messages link to ``/archive/SLUG``.

    When the issue is archived under another slug (a copy of an issue already archived,
    or a reused file name), the send's stored messages are made to link there.
    """
    entry = publish(db, settings, issue_path)
    if entry.slug != slug and settings.base_url:
        old = re.compile(re.escape(f"{settings.base_url}/archive/{slug}") + r"(?![\w-])")
        new = f"{settings.base_url}/archive/{entry.slug}"
        with transaction(db) as conn:
            row = conn.execute(sa.select(sends.c.html, sends.c.text)
                               .where(sends.c.id == send_id)).one()
            conn.execute(sends.update().where(sends.c.id == send_id).values(
                html=old.sub(new, row.html), text=old.sub(new, row.text)))
    return entry


def resolve(db: DB, slug: str) -> str | None:
    """The archive slug to show for ``slug``: itself, or the entry of the same issue.

    A slug from before slugs were URL-safe (``2026-12-01 copy``) leads to its new form;
    the slug of a send's file archived under another slug (a renamed copy, sent before
    the archive knew issues' identities) leads to that entry.
    """
    with transaction(db) as conn:
        for candidate in dict.fromkeys([slug, file_slug(f"{slug}.md")]):
            if conn.execute(sa.select(archive_issues.c.slug)
                            .where(archive_issues.c.slug == candidate)).first() is not None:
                return candidate
        sent = conn.execute(
            sa.select(sends.c.issue_key, sends.c.content_hash)
            .where(sends.c.issue_slug == slug, sends.c.kind == "real",
                   sends.c.issue_key.is_not(None)).order_by(sends.c.id.desc()).limit(1)
        ).first()
        if sent is None:
            return None
        return conn.execute(
            sa.select(archive_issues.c.slug)
            .where(sa.or_(archive_issues.c.issue_key == sent.issue_key,
                          archive_issues.c.content_hash == sent.content_hash))
            .order_by(archive_issues.c.published_at).limit(1)
        ).scalar()


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
