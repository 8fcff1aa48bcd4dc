"""House-style warnings (each with its own rule id, set in newsletter.toml's [rules]).

- ``duplicate-link``: the same link twice in one issue;
- ``recent-link``: a link already sent in one of the last ``recent_link_issues`` issues
  sent to a list, read from the ledger's sends (their HTML). Only when the project has a
  database (``database_url``, or its newsletter.db exists) that answers; otherwise skipped
  silently, without loading SQLAlchemy, so ``validate`` stays fast without one;
- ``duplicate-read-more``: two "Read more" links with the same label;
- ``headline-long``: a headline over ``headline_max`` characters;
- ``hard-numbers-source``: a Hard Numbers figure with no link, when
  ``hard_numbers_need_source = true``.
"""

from __future__ import annotations

import html
import re
import time
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit, urlunsplit

from .model import Finding, SectionKind, block_texts, links_in
from .sourcemap import locate

if TYPE_CHECKING:
    from ..config import Settings
    from .validate import _Ctx

_HREF = re.compile(r'href="([^"]+)"')
_CACHE: dict[tuple[Any, ...], tuple[float, dict[str, str]]] = {}
_CACHE_SECONDS = 30.0  # the preview rebuilds on every keystroke: ask once in a while


def link_key(url: str) -> str:
    """A link as compared: host in lower case, no fragment, no trailing '/'."""
    try:
        parts = urlsplit(url.strip())
    except ValueError:
        return url.strip()
    return urlunsplit((parts.scheme.lower(), parts.netloc.lower(), parts.path.rstrip("/"),
                       parts.query, ""))


def _links(ctx: _Ctx) -> list[tuple[int, str]]:
    """(line, href) of every link in the issue, Read more links too, in file order."""
    out: list[tuple[int, str]] = []
    for section in ctx.result.sections:
        for line, inlines in block_texts(section.all_blocks()):
            out.extend((line, link.href) for link in links_in(inlines))
        if section.read_more is not None:
            out.append((section.read_more.line, section.read_more.href))
    return sorted(out, key=lambda pair: pair[0])


def house_style_rules(ctx: _Ctx) -> Iterator[Finding]:
    from .draft_placeholders import builtin_placeholders

    marks = builtin_placeholders()  # the template's own links are errors already
    links = [(line, href) for line, href in _links(ctx)
             if href.startswith("https:") and not marks.link(href)]
    seen: dict[str, int] = {}
    for line, href in links:
        key = link_key(href)
        if key in seen:
            found, col = locate(ctx.lines, href, line, line + 50)
            yield ctx.finding(
                found, "duplicate-link",
                f"this link is already on line {seen[key]}: link each page once",
                column=col, warning=True,
            )
        seen.setdefault(key, line)
    sent = recent_links(ctx.settings, ctx.result.issue.slug if ctx.result.issue else "")
    for line, href in links:
        where = sent.get(link_key(href))
        if where:
            found, col = locate(ctx.lines, href, line, line + 50)
            yield ctx.finding(
                found, "recent-link",
                f"this link was already sent in {where}: link something new, or say it is "
                "an update", column=col, warning=True,
            )
    yield from _sections(ctx)


def _sections(ctx: _Ctx) -> Iterator[Finding]:
    labels: dict[str, int] = {}
    limit = ctx.settings.headline_max
    for section in ctx.result.sections:
        if len(section.headline) > limit:
            yield ctx.finding(
                section.line, "headline-long",
                f"the headline has {len(section.headline)} characters, over {limit}: "
                "shorten it (headline_max in newsletter.toml)", warning=True,
            )
        more = section.read_more
        if more is not None and more.label.strip():
            key = " ".join(more.label.split()).casefold()
            if key in labels:
                yield ctx.finding(
                    more.line, "duplicate-read-more",
                    f"the Read more link on line {labels[key]} has the same label "
                    f"{more.label!r}: give each its own, such as 'Read more about ...', so "
                    "screen readers can tell them apart", warning=True,
                )
            labels.setdefault(key, more.line)
        if section.kind is SectionKind.HARD_NUMBERS and ctx.settings.hard_numbers_need_source:
            for item in section.items:
                if not any(links_in(inl) for _, inl in block_texts(item.blocks)):
                    yield ctx.finding(
                        item.line, "hard-numbers-source",
                        f"Hard Numbers item {item.title[:40]!r} has no source: link the "
                        "figure's source in its text", warning=True,
                    )


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
