"""What was already sent: the links of the last issues sent to each list, read from the
ledger's stored HTML, for the ``recent-link`` house-style rule (``authoring.housestyle``;
``newsletter validate`` and the preview pass ``recent_links`` in as ``sent_links``).

Only when the project has a database (``database_url``, or its newsletter.db exists) that
answers; otherwise nothing, without loading SQLAlchemy, so ``validate`` stays fast
without one. Answers are kept for 30 s: the preview rebuilds on every keystroke.
"""

from __future__ import annotations

import html
import re
import time
from typing import Any

from ..authoring.housestyle import link_key
from ..config import Settings

_HREF = re.compile(r'href="([^"]+)"')
_CACHE: dict[tuple[Any, ...], tuple[float, dict[str, str]]] = {}
_CACHE_SECONDS = 30.0


def recent_links(settings: Settings, slug: str) -> dict[str, str]:
    """link key -> "'subject' (date, list NAME)" for the links of the last
    ``recent_link_issues`` issues sent to each list (not this one); {} without a database."""
    count = settings.recent_link_issues
    if count <= 0:
        return {}
    if settings.database_url is None and not (settings.project_dir / "newsletter.db").is_file():
        return {}
    key = (settings.effective_database_url, count, slug)
    cached = _CACHE.get(key)
    if cached and time.monotonic() - cached[0] < _CACHE_SECONDS:
        return cached[1]
    try:
        found = _read_sends(settings, count, slug)
    except Exception:  # unreachable, locked, an older schema: the check is a courtesy
        found = {}
    _CACHE[key] = (time.monotonic(), found)
    return found


def _read_sends(settings: Settings, count: int, slug: str) -> dict[str, str]:
    import sqlalchemy as sa

    from ..db.engine import make_engine
    from ..db.tables import sends

    engine = make_engine(settings.effective_database_url)
    try:
        with engine.connect() as conn:
            rows = conn.execute(
                sa.select(sends.c.id, sends.c.list_name, sends.c.issue_slug)
                .where(sends.c.kind == "real", sends.c.issue_slug != slug)
                .order_by(sends.c.id.desc()).limit(count * 20)
            ).all()
            wanted: dict[str, list[str]] = {}
            ids = []
            for send_id, list_name, issue_slug in rows:
                slugs = wanted.setdefault(list_name, [])
                if issue_slug not in slugs and len(slugs) < count:
                    slugs.append(issue_slug)
                    ids.append(send_id)
            found: dict[str, str] = {}
            for subject, date, list_name, page in conn.execute(
                sa.select(sends.c.subject, sends.c.issue_date, sends.c.list_name, sends.c.html)
                .where(sends.c.id.in_(ids)).order_by(sends.c.id.desc())
            ):
                where = f"{subject[:50]!r} ({date}, list {list_name})"
                for href in _HREF.findall(page):
                    found.setdefault(link_key(html.unescape(href)), where)
    finally:
        engine.dispose()
    return found
