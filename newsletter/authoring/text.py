"""The plain-text part, built from the model (not scraped from the HTML).

Headlines are underlined, figures stand on their own line, paragraphs are wrapped
at 72 columns and links become numbered references listed at the end.
"""

from __future__ import annotations

import textwrap
from typing import TYPE_CHECKING

from .model import (
    BulletList,
    Emphasis,
    Inline,
    Issue,
    LineBreak,
    Link,
    Paragraph,
    SectionKind,
    Strong,
    Text,
)

if TYPE_CHECKING:
    from ..config import Settings

WIDTH = 72


class _Refs:
    def __init__(self) -> None:
        self.urls: list[str] = []

    def number(self, url: str) -> int:
        if url not in self.urls:
            self.urls.append(url)
        return self.urls.index(url) + 1


def _inline(nodes: list[Inline], refs: _Refs) -> str:
    out: list[str] = []
    for node in nodes:
        if isinstance(node, Text):
            out.append(node.text)
        elif isinstance(node, LineBreak):
            out.append("\n")
        elif isinstance(node, Strong):
            out.append(f"*{_inline(node.children, refs)}*")
        elif isinstance(node, Emphasis):
            out.append(f"_{_inline(node.children, refs)}_")
        elif isinstance(node, Link):
            label = _inline(node.children, refs)
            if node.href.startswith("mailto:") and label == node.href[7:]:
                out.append(label)
            else:
                out.append(f"{label} [{refs.number(node.href)}]")
    return "".join(out)


def fill(text: str, width: int = WIDTH, initial: str = "", subsequent: str = "") -> str:
    """``textwrap.fill(text, width, initial_indent=initial, subsequent_indent=subsequent,
    break_long_words=False, break_on_hyphens=False)``, several times faster for the usual
    paragraph (words between single spaces): each line is cut at the last space that fits.
    Anything else goes to textwrap itself, so the result is always textwrap's."""
    # the usual case is words between single plain spaces: then every white space
    # character (str.split knows them all) is a space, and there is one word more than spaces
    words = text.split()
    spaces = text.count(" ")
    if len(words) != spaces + 1 or len("".join(words)) != len(text) - spaces:
        return textwrap.fill(
            text,
            width=width,
            initial_indent=initial,
            subsequent_indent=subsequent,
            break_long_words=False,
            break_on_hyphens=False,
        )
    lines: list[str] = []
    pos, end = 0, len(text)
    indent = initial
    while pos < end:
        room = width - len(indent)
        if end - pos <= room:
            cut = end
        else:
            cut = text.rfind(" ", pos, pos + room + 1)
            if cut < 0:  # a word longer than the line stands alone on it
                cut = text.find(" ", pos)
                cut = end if cut < 0 else cut
        lines.append(indent + text[pos:cut])
        pos = cut + 1
        indent = subsequent
    return "\n".join(lines)


def _wrap(text: str, indent: str = "", first: str | None = None) -> str:
    return "\n".join(
        fill(part, WIDTH, first if first is not None and number == 0 else indent, indent)
        for number, part in enumerate(text.split("\n"))
    )


def _blocks(blocks: list, refs: _Refs, indent: str = "") -> list[str]:
    out: list[str] = []
    for block in blocks:
        if isinstance(block, Paragraph):
            out.append(_wrap(_inline(block.inlines, refs), indent))
        elif isinstance(block, BulletList):
            items = []
            for number, item in enumerate(block.items, start=1):
                marker = f"{number}. " if block.ordered else "- "
                items.append(
                    _wrap(_inline(item, refs), indent + " " * len(marker), indent + marker)
                )
            out.append("\n".join(items))
    return out


def _heading(text: str, char: str) -> str:
    return f"{text}\n{char * min(len(text), WIDTH)}"


def render_text(issue: Issue, settings: Settings, *, personal: bool = False) -> str:
    from .render import UNSUBSCRIBE_MARK, format_date

    refs = _Refs()
    parts: list[str] = [_heading(settings.name.upper(), "="), format_date(issue)]
    for section in issue.sections:
        # the label readers see in the HTML too: the kind's, the editor's kicker, or none
        label = f"{section.label.upper()}: " if section.label else ""
        parts.append(_heading(f"{label}{section.headline}", "-"))
        if section.image is not None:
            caption = section.image.alt
            if section.image.credit:
                caption += f" ({section.image.credit})"
            parts.append(_wrap(f"[Image: {caption}]"))
        parts.extend(_blocks(section.blocks, refs))
        for item in section.items:
            if section.kind is SectionKind.HARD_NUMBERS:
                body = _blocks(item.blocks, refs, indent="  ")
                parts.append("\n".join([item.title, *body]))
            else:
                body = _blocks(item.blocks, refs)
                parts.append("\n\n".join([f"* {item.title}", *body]))
        if section.attribution:
            parts.append(_wrap(f"\u2014 {section.attribution}"))
        if section.read_more is not None:
            parts.append(f"{section.read_more.label} [{refs.number(section.read_more.href)}]")
    footer: list[str] = ["-- ", _wrap(settings.footer_text)]
    if personal:
        footer.append(f"Unsubscribe: {UNSUBSCRIBE_MARK}")
    if settings.base_url:
        footer.append(f"Read in your browser: {settings.base_url}/archive/{issue.slug}")
    if settings.postal_address:
        footer.append(_wrap(f"{settings.name}, {settings.postal_address}"))
    parts.append("\n".join(footer))
    if refs.urls:
        parts.append(
            "Links:\n" + "\n".join(f"[{n}] {url}" for n, url in enumerate(refs.urls, start=1))
        )
    return "\n\n".join(parts) + "\n"
