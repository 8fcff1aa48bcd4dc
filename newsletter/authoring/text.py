"""The plain-text part, built from the model (not scraped from the HTML).

Headlines are underlined (wrapped at 72 columns, the underline as long as the longest
line), figures stand on their own line, paragraphs are wrapped at 72 columns and links
become numbered references listed at the end.

A paragraph or headline with a ``{{name}}`` field is wrapped after the name is filled in,
so its lines are as long as the others whatever the name. The generic copy fills in the
fallback before wrapping; the personal copy (``personal=True``) leaves such a block
unwrapped between ``REWRAP_START`` and ``REWRAP_END`` (control characters an issue file
cannot contain), and ``rewrap(block, name)`` wraps it per recipient when sending.
"""

from __future__ import annotations

import textwrap
from contextvars import ContextVar
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
REWRAP_START, REWRAP_END, _SEP = "\x02", "\x03", "\x1f"
REWRAP_BLOCK = f"{REWRAP_START}[^{REWRAP_END}]*{REWRAP_END}"  # a regex for one such block


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


def _has_name(text: str) -> bool:
    from .render import NAME_FIELD

    return "{{" in text and NAME_FIELD.search(text) is not None


def _fill_name(text: str, name: str | None) -> str:
    from .render import fill_name

    return fill_name(text, name)


# whether the text being built is the personal copy (names filled in when sending); a
# context variable, so renders in other threads or tasks never see another's value
_PERSONAL: ContextVar[bool] = ContextVar("newsletter_personal_text", default=False)


def _deferred(kind: str, text: str, first: str = "", indent: str = "") -> str | None:
    """``text`` as a block to wrap per recipient, or None when it has no name field."""
    if not _has_name(text):
        return None
    if _PERSONAL.get():
        return f"{REWRAP_START}{kind}{_SEP}{first}{_SEP}{indent}{_SEP}{text}{REWRAP_END}"
    return _finish(kind, _fill_name(text, None), first, indent)


def rewrap(block: str, name: str | None, *, fill: bool = True) -> str:
    """A ``REWRAP_START``...``REWRAP_END`` block with ``name`` (or the fallbacks) filled
    in, wrapped as the rest of the text part; ``fill=False``: wrapped with its name fields
    as they are (for a backend that can only substitute names)."""
    kind, first, indent, text = block.strip(REWRAP_START + REWRAP_END).split(_SEP, 3)
    return _finish(kind, _fill_name(text, name) if fill else text, first, indent)


def _finish(kind: str, text: str, first: str, indent: str) -> str:
    if kind == "p":
        return _wrap_now(text, indent, first)
    return _underline(text, kind)


def _wrap(text: str, indent: str = "", first: str | None = None) -> str:
    first = indent if first is None else first
    deferred = _deferred("p", text, first, indent)
    return deferred if deferred is not None else _wrap_now(text, indent, first)


def _wrap_now(text: str, indent: str = "", first: str | None = None) -> str:
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
    deferred = _deferred(char, text)
    return deferred if deferred is not None else _underline(text, char)


def _underline(text: str, char: str) -> str:
    """``text`` wrapped at 72 columns over a line of ``char`` as long as its longest line."""
    lines = _wrap_now(text).split("\n")
    return "\n".join([*lines, char * max(len(line) for line in lines)])


def render_text(issue: Issue, settings: Settings, *, personal: bool = False) -> str:
    token = _PERSONAL.set(personal)
    try:
        return _render_text(issue, settings, personal=personal)
    finally:
        _PERSONAL.reset(token)


def _render_text(issue: Issue, settings: Settings, *, personal: bool) -> str:
    from .render import PREFERENCES_MARK, UNSUBSCRIBE_MARK, format_date

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
        footer.append(f"Your preferences: {PREFERENCES_MARK}")
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
