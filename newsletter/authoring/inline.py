"""Inline Markdown (one paragraph's or list item's tokens) -> model nodes, with findings.

markdown-it gives a flat list of tokens (``strong_open`` ... ``strong_close``); they become
``Text``, ``Strong``, ``Emphasis``, ``Link`` and ``LineBreak`` nodes with an explicit stack,
never by recursion. Bold, italics and links nest at most ``MAX_NESTING`` deep in the model:
deeper formatting (``***...***`` thousands of stars deep) is a finding and its text is kept
plain, so every later step (rules, HTML, plain text) walks a shallow tree. Raw HTML, stray
images and link syntax that did not make a link (an unclosed ``[text](https://...``) are
findings at their line and column.
"""

from __future__ import annotations

import re
from html.entities import html5
from typing import Any

from markdown_it.rules_core import StateCore
from markdown_it.token import Token

from .model import Emphasis, Inline, LineBreak, Link, Strong, Text
from .sourcemap import Locator, Reporter

MAX_NESTING = 10  # bold in italics in a link is 3; ten leaves room for any real sentence
# Text read as inline Markdown per file. Gmail clips an email at 102 KB of HTML, so no
# sendable issue comes near; past it, text is kept plain (and is an error): runs of
# punctuation cost markdown-it up to 10 us a character, so this bounds a file's time.
MAX_INLINE_CHARS = 100_000
_DELIMS = re.compile(r"\*+|_+")
_ENTITY = re.compile(r"&(#[0-9]{1,8}|#[xX][0-9a-fA-F]{1,8}|[A-Za-z][A-Za-z0-9]{0,31})(;?)")
_OPENERS = ("strong_open", "em_open", "link_open")
_CLOSERS = ("strong_close", "em_close", "link_close")


def merge_text(nodes: list[Any], *, trim: bool = True) -> list[Any]:
    """Runs of strings and Text nodes joined into one Text each; with ``trim`` the white
    space at both ends is removed (a paragraph's or list item's outer edges)."""
    parts: list[Any] = []  # str runs (as lists) and nodes
    for node in nodes:
        piece = node.text if isinstance(node, Text) and not node.verbatim else node
        if isinstance(piece, str):
            if parts and isinstance(parts[-1], list):
                parts[-1].append(piece)
            else:
                parts.append([piece])
        else:
            parts.append(piece)
    out: list[Any] = []
    last = len(parts) - 1
    for index, part in enumerate(parts):
        if not isinstance(part, list):
            out.append(part)
            continue
        text = "".join(part)
        if trim and index == 0:
            text = text.lstrip()
        if trim and index == last:
            text = text.rstrip()
        if text:
            out.append(Text.model_construct(text=text))
    return out


def inline_within_budget(state: StateCore) -> None:
    """markdown-it's core 'inline' rule, reading at most MAX_INLINE_CHARS of text: later
    blocks keep their text as one plain token, marked ``meta['unparsed']``."""
    budget = MAX_INLINE_CHARS
    for token in state.tokens:
        if token.type != "inline":
            continue
        if token.children is None:
            token.children = []
        if len(token.content) <= budget:
            budget -= len(token.content)
            state.md.inline.parse(token.content, state.md, state.env, token.children)
            continue
        budget = 0  # everything from here on, so findings stop at one place
        text = Token("text", "", 0)
        text.content = token.content
        token.children.append(text)
        token.meta = {**(token.meta or {}), "unparsed": True}


def _flanking(text: str, start: int, end: int) -> tuple[bool, bool]:
    """(left-flanking, right-flanking) of the delimiter run text[start:end] (CommonMark)."""
    before = text[start - 1] if start else " "
    after = text[end] if end < len(text) else " "
    space_b, space_a = before.isspace(), after.isspace()
    punct_b = not before.isalnum() and not space_b
    punct_a = not after.isalnum() and not space_a
    left = not space_a and (not punct_a or space_b or punct_b)
    right = not space_b and (not punct_b or space_a or punct_a)
    return left, right


def stray_marks(text: str) -> list[tuple[int, str, str]]:
    """(offset, rule, message) of what markdown-it left as literal Markdown in a text
    token: '*' or '_' runs that could open or close formatting but did not pair (they
    would show as typed), and '&...' entities that did not decode."""
    found: list[tuple[int, str, str]] = []
    if "*" in text or "_" in text:
        for match in _DELIMS.finditer(text):
            left, right = _flanking(text, match.start(), match.end())
            run = match.group()
            if run[0] == "_" and left and right:
                continue  # inside a word (snake_case): never formatting
            if left or right:
                found.append((match.start(), "emphasis-unpaired", (
                    f"'{run[:3]}' is not closed, so it would show as typed: close it "
                    f"(**bold**, *italics*) or write \\{run[0]} for a literal {run[0]}")))
    if "&" in text:
        for match in _ENTITY.finditer(text):
            name, semi = match.groups()
            if semi and not name.startswith("#"):
                found.append((match.start(), "html-entity", (
                    f"'&{name};' is not an HTML entity, so it would show as typed: type the "
                    "character itself")))
            elif not semi and f"{name};" in html5 and len(name) > 1:
                found.append((match.start(), "html-entity", (
                    f"'&{name}' has no ';', so it would show as typed: write '&{name};' or "
                    "type the character itself")))
    return found


def _node(opened: str, attrs: dict[str, str], children: list[Any]) -> Inline:
    children = merge_text(children, trim=False)
    if opened == "strong_open":
        return Strong.model_construct(children=children)
    if opened == "em_open":
        return Emphasis.model_construct(children=children)
    return Link.model_construct(href=attrs["href"], children=children)


class _BrokenLinks:
    """Spots link and image syntax that markdown-it left as text: a '[' and, later in the
    same run of text, '](' (``[text](https://...`` with no ')', or a space in the URL).
    Real links and images end a run; bold and italics do not."""

    def __init__(self) -> None:
        self.bracket: bool | None = None  # a '[' is open: True when it was '!['

    def reset(self) -> None:
        self.bracket = None

    def scan(self, text: str) -> list[tuple[int, bool]]:
        """(offset in ``text`` where each broken link starts, is an image): the offset of
        its '[' (or '![') when that is in ``text``, else of its '](' ."""
        found = []
        pos = 0
        while True:
            close = text.find("](", pos)
            if close < 0:
                break
            start = close
            opening = text.rfind("[", pos, close)
            if opening >= 0:
                self.bracket = opening > 0 and text[opening - 1] == "!"
                start = opening - 1 if self.bracket else opening
            if self.bracket is not None:
                found.append((start, self.bracket))
                self.bracket = None
            pos = close + 2
        opening = text.rfind("[", pos)
        if opening >= 0:
            self.bracket = opening > 0 and text[opening - 1] == "!"
        return found


class InlineReader:
    """Turns one inline token's children into nodes, reporting what cannot be shown."""

    def __init__(self, rep: Reporter) -> None:
        self.rep = rep
        self.over_budget = False  # reported that text past MAX_INLINE_CHARS is unread

    def read(self, token: Token, first: int, last: int) -> list[Inline]:
        """The nodes of an inline token whose text spans file lines ``first``..``last``."""
        if (token.meta or {}).get("unparsed"):
            return self._unparsed(token, first)
        where = Locator(self.rep.lines, first, last)
        broken = _BrokenLinks()
        root: list[Any] = []
        stack: list[tuple[str, dict[str, str], list[Any]]] = []
        current = root
        excess = deepest = 0  # openers beyond MAX_NESTING, not in the model
        for child in token.children or []:
            kind = child.type
            if kind == "text":
                current.append(child.content)  # plain strings become Text nodes at the end
                self._text(child.content, broken, where)
            elif kind in ("text_special", "code_inline"):
                current.append(Text.model_construct(text=child.content, verbatim=True))
            elif kind == "softbreak":
                current.append(" ")
            elif kind == "hardbreak":
                current.append(LineBreak.model_construct())
            elif kind in _OPENERS:
                if kind == "link_open":
                    broken.reset()
                if len(stack) >= MAX_NESTING:
                    excess += 1
                    deepest = max(deepest, len(stack) + excess)
                    continue
                attrs = {"href": str(child.attrs.get("href", ""))} if kind == "link_open" else {}
                stack.append((kind, attrs, current))
                current = []
            elif kind in _CLOSERS:
                if kind == "link_close":
                    broken.reset()
                if excess:
                    excess -= 1
                elif stack:
                    opened, attrs, parent = stack.pop()
                    parent.append(_node(opened, attrs, current))
                    current = parent
            else:
                self._other(child, where, broken)
        root = _close_unbalanced(stack, current) if stack else root
        if deepest:
            self._too_deep(token, deepest, first, last)
        return merge_text(root)

    def _unparsed(self, token: Token, first: int) -> list[Inline]:
        if not self.over_budget:
            self.over_budget = True
            self.rep.add(
                first,
                "text-too-long",
                f"the issue has more than {MAX_INLINE_CHARS:,} characters of text by here, far "
                "more than an email can hold (Gmail clips at 102 KB): cut it down; the text "
                "from here on is not checked",
            )
        return merge_text([child.content for child in token.children or []])

    def _other(self, child: Token, where: Locator, broken: _BrokenLinks) -> None:
        if child.type == "html_inline":
            line, col = where.next(child.content)
            self.rep.add(
                line,
                "raw-html",
                f"raw HTML {child.content[:30]!r} is not allowed in email: use Markdown "
                "(**bold**, *italics*, [text](https://...))",
                column=col,
            )
        elif child.type == "image":
            broken.reset()
            line, col = where.next("![")
            self.rep.add(
                line,
                "image-position",
                "an image may only stand on the line right after a '# Kind: Headline' "
                "heading; move it there or remove it",
                column=col,
            )

    def _text(self, text: str, broken: _BrokenLinks, where: Locator) -> None:
        found = [
            (offset, *_broken_message(image)) for offset, image in broken.scan(text)
        ] + stray_marks(text)
        if not found:
            return
        # a text token is a verbatim piece of one line: find it, then count within it
        line, col = where.next(text)
        for offset, rule, message in sorted(found):
            self.rep.add(line, rule, message, column=col + offset)

    def _too_deep(self, token: Token, depth: int, first: int, last: int) -> None:
        markers = [c.markup for c in token.children or [] if c.type in ("strong_open", "em_open")]
        line, col = Locator(self.rep.lines, first, last).next(markers[0] if markers else "[")
        self.rep.add(
            line,
            "formatting-too-deep",
            f"bold, italics and links are nested {depth} deep here, more than {MAX_NESTING}: "
            "remove the extra '*', '_' or brackets",
            column=col,
        )


def _broken_message(image: bool) -> tuple[str, str]:
    if image:
        rule, what = "image-syntax", '![alt text](https://... "Photo: credit")'
    else:
        rule, what = "link-syntax", "[text](https://...)"
    return rule, (
        f"this {'image' if image else 'link'} is not closed or its address has a space, so "
        f"it would show as typed: write {what}, with the closing ')' and no spaces in the URL"
    )


def _close_unbalanced(stack: list[tuple[str, dict[str, str], list[Any]]], current: list[Any]) -> list[Any]:
    """The root list once the openers left on ``stack`` are dropped, their text kept
    (cannot happen with markdown-it, but never lose text)."""
    while stack:
        _, _, parent = stack.pop()
        parent.extend(current)
        current = parent
    return current
