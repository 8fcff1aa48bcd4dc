"""House-style warnings (each with its own rule id, set in newsletter.toml's [rules]).

- ``duplicate-link``: the same link twice in one issue;
- ``recent-link``: a link already sent in one of the last ``recent_link_issues`` issues
  sent to a list. Authoring reads no database: the caller (``newsletter validate``, the
  preview) passes ``sent_links`` (``delivery.history.recent_links``, which reads the
  ledger's sends); without it the rule is skipped;
- ``duplicate-read-more``: two "Read more" links with the same label;
- ``headline-long``: a headline over ``headline_max`` characters;
- ``hard-numbers-source``: a Hard Numbers figure with no link, when
  ``hard_numbers_need_source = true``.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING
from urllib.parse import urlsplit, urlunsplit

from .model import Finding, SectionKind, block_texts, links_in
from .sourcemap import locate

if TYPE_CHECKING:
    from ..config import Settings
    from .validate import _Ctx

#: where the links already sent come from (``delivery.history.recent_links``, given by the
#: caller: authoring reads no database): (settings, this issue's slug) -> link key -> where
SentLinks = Callable[["Settings", str], dict[str, str]]


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
    sent = ctx.sent_links(ctx.settings, ctx.result.issue.slug if ctx.result.issue else "") \
        if ctx.sent_links is not None else {}
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
