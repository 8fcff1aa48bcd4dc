"""Leftovers that must not reach readers: placeholder words, example domains, broken merge
fields and an empty "Read more", each an error at its line and column.

Words come from ``placeholder_words`` (default TK, TODO, XXX, lorem ipsum) and match as
whole words; a word written in capitals there (TK, XXX) matches only in capitals, so
"tk" or "xxx" in ordinary text is left alone. Text is read as the editor typed it: the
subject and preheader lines and the body, with link and image addresses masked (a URL
may hold anything). Reserved example domains are those ``delivery.placeholders`` refuses
for settings (example.org/.com/.net and their subdomains, .test, .example, ...).
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from functools import lru_cache
from typing import TYPE_CHECKING
from urllib.parse import urlsplit

from . import mergefields
from .model import Finding, block_texts, links_in
from .sourcemap import locate

if TYPE_CHECKING:
    from .validate import _Ctx

_DESTINATION = re.compile(r"\]\([^)\n]*\)?")  # a link's or image's (URL "title")


@lru_cache(maxsize=8)
def _word_pattern(words: tuple[str, ...]) -> re.Pattern[str] | None:
    parts = []
    for word in words:
        body = r"\s+".join(re.escape(w) for w in word.split())
        case = "" if word.upper() == word and any(c.isalpha() for c in word) else "(?i:"
        parts.append(rf"{case}{body}{')' if case else ''}")
    return re.compile(rf"(?<!\w)(?:{'|'.join(parts)})(?!\w)") if parts else None


def text_lines(ctx: _Ctx) -> Iterator[tuple[int, str]]:
    """(line, text) of what readers read: the subject and preheader lines, then the body,
    with link and image destinations blanked out (same length, so columns hold)."""
    for key in ("subject", "preheader"):
        number = ctx.key_line(key)
        if ctx.lines[number - 1 : number] and ctx.lines[number - 1].startswith(key):
            yield number, ctx.lines[number - 1]
    for number in range(ctx.result.body_line, len(ctx.lines) + 1):
        line = ctx.lines[number - 1]
        if "](" in line:
            line = _DESTINATION.sub(lambda m: " " * len(m.group()), line)
        yield number, line


def leftover_rules(ctx: _Ctx) -> Iterator[Finding]:
    words = _word_pattern(tuple(ctx.settings.placeholder_words))
    for number, line in text_lines(ctx):
        for column, rule, message in mergefields.problems(line):
            yield ctx.finding(number, rule, message, column=column + 1)
        if words is None:
            continue
        for match in words.finditer(line):
            yield ctx.finding(
                number,
                "placeholder-word",
                f"{match.group()!r} is a placeholder left in the text: write what it stands "
                "for, or remove it (placeholder_words in newsletter.toml)",
                column=match.start() + 1,
            )
    yield from _example_domains(ctx)
    for section in ctx.result.sections:
        more = section.read_more
        if more is not None and not more.label.strip():
            line, col = locate(ctx.lines, "[", more.line, more.line)
            yield ctx.finding(
                line,
                "read-more-empty",
                "this Read more link has no text, so readers see nothing to click: write its "
                "label between the brackets, [Read more](https://...)",
                column=col,
            )


def _example_domains(ctx: _Ctx) -> Iterator[Finding]:
    from .domains import reserved_domain
    from .draft_placeholders import builtin_placeholders

    marks = builtin_placeholders()
    for section in ctx.result.sections:
        urls = [(line, link.href) for line, inl in block_texts(section.all_blocks())
                for link in links_in(inl)]
        if section.read_more is not None:
            urls.append((section.read_more.line, section.read_more.href))
        image = section.image
        if image is not None and "URL" not in marks.image_parts(image):
            urls.append((image.line, image.src))
        for line, url in urls:
            try:
                host = urlsplit(url).hostname or ""
            except ValueError:
                continue
            domain = reserved_domain(host) if host else None
            if domain is None or marks.link(url):
                continue  # placeholder-link already names the template's own links
            found, col = locate(ctx.lines, url, line, line + 50)
            yield ctx.finding(
                found,
                "example-domain",
                f"{url[:60]!r} is on {domain}, a domain reserved for examples, so it leads "
                "nowhere: link to the real page",
                column=col,
            )
