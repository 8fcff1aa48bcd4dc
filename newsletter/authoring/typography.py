"""Typography for readers: curly quotes and apostrophes, en and em dashes, ellipses.

Editors type straight quotes, ``--`` and ``...``; ``typeset(issue, lang)`` turns them into
typographic characters with markdown-it-py's own typographer (its ``replace_rare`` and
``smartquotes`` rules, run over the model's inline content as tokens, so quotes pair
across bold and italics). Quote characters follow the email's ``lang`` (en "…", de „…",
fr « … »). Nothing changes inside link and image URLs (they are not text), code spans and
escaped characters (``Text.verbatim``), bare URLs typed as text, or ``{{name|...}}``
merge fields. ``render`` applies it once, so the HTML and the plain-text part agree.
"""

from __future__ import annotations

import re
from types import SimpleNamespace
from typing import Any

from markdown_it.rules_core.replacements import replace_rare
from markdown_it.rules_core.smartquotes import process_inlines
from markdown_it.token import Token

from .model import (
    BulletList,
    Emphasis,
    Image,
    Inline,
    Issue,
    Item,
    LineBreak,
    Link,
    Paragraph,
    ReadMore,
    Section,
    Strong,
    Text,
)

# double open, double close, single open, single close
QUOTES = {
    "en": "\u201c\u201d\u2018\u2019",
    "de": "\u201e\u201c\u201a\u2018",
    "nl": "\u201e\u201d\u201a\u2019",
    "pl": "\u201e\u201d\u201a\u2019",
    "cs": "\u201e\u201c\u201a\u2018",
    "da": "\u00bb\u00ab\u203a\u2039",
    "sv": "\u201d\u201d\u2019\u2019",
    "fi": "\u201d\u201d\u2019\u2019",
    "es": "\u00ab\u00bb\u201c\u201d",
    "it": "\u00ab\u00bb\u201c\u201d",
    "pt": "\u00ab\u00bb\u201c\u201d",
    "ru": "\u00ab\u00bb\u201e\u201c",
    "fr": ["\u00ab\u00a0", "\u00a0\u00bb", "\u2039\u00a0", "\u00a0\u203a"],
}
# merge fields and URLs typed as text: kept as typed
_KEEP = re.compile(r"\{\{[^{}\n]*\}\}|\bhttps?://\S+|\bwww\.\S+|\S+@\S+\.\w+")
_SUSPECT = re.compile(r"['\"]|--|\.\.|\+-")


def quotes_for(lang: str) -> Any:
    return QUOTES.get(lang.split("-")[0].lower(), QUOTES["en"])


def _tokens(nodes: list[Inline], level: int, out: list[tuple[Token, Any]]) -> None:
    """Flatten nodes to markdown-it inline tokens; each text token keeps its node."""
    for node in nodes:
        if isinstance(node, Text):
            if node.verbatim:
                _add(out, "code_inline", node.text, level, node)
                continue
            pos = 0
            for match in _KEEP.finditer(node.text):
                _add(out, "text", node.text[pos : match.start()], level, None)
                _add(out, "code_inline", match.group(), level, None)
                pos = match.end()
            _add(out, "text", node.text[pos:], level, None)
        elif isinstance(node, LineBreak):
            _add(out, "hardbreak", "", level, node)
        else:
            kind = {Strong: "strong", Emphasis: "em", Link: "link"}[type(node)]
            _add(out, f"{kind}_open", "", level, node)
            _tokens(node.children, level + 1, out)
            _add(out, f"{kind}_close", "", level, node)


def _add(out: list[tuple[Token, Any]], kind: str, content: str, level: int, node: Any) -> None:
    token = Token(kind, "", 0)
    token.content, token.level = content, level
    out.append((token, node))


def _rebuild(pairs: list[tuple[Token, Any]], start: int, end: int) -> list[Inline]:
    nodes: list[Any] = []
    index = start
    while index < end:
        token, node = pairs[index]
        if token.type.endswith("_open"):
            depth, close = 1, index + 1
            while depth:
                kind = pairs[close][0].type
                depth += 1 if kind.endswith("_open") else -1 if kind.endswith("_close") else 0
                close += 1
            children = _rebuild(pairs, index + 1, close - 1)
            nodes.append(node.model_copy(update={"children": children}))
            index = close
            continue
        if token.type == "hardbreak" or node is not None:
            nodes.append(node)
        elif token.content:
            if nodes and isinstance(nodes[-1], Text) and not nodes[-1].verbatim:
                nodes[-1] = Text.model_construct(text=nodes[-1].text + token.content)
            else:
                nodes.append(Text.model_construct(text=token.content))
        index += 1
    return nodes


def typeset_inlines(nodes: list[Inline], quotes: Any) -> list[Inline]:
    if not any(isinstance(n, Text) and _SUSPECT.search(n.text) for n in nodes) and all(
        isinstance(n, (Text, LineBreak)) for n in nodes
    ):
        return nodes
    pairs: list[tuple[Token, Any]] = []
    _tokens(nodes, 0, pairs)
    tokens = [token for token, _ in pairs]
    replace_rare(tokens)
    state = SimpleNamespace(md=SimpleNamespace(options=SimpleNamespace(quotes=quotes)))
    process_inlines(tokens, state)  # type: ignore[arg-type]
    return _rebuild(pairs, 0, len(pairs))


def typeset_text(text: str, quotes: Any) -> str:
    out = typeset_inlines([Text.model_construct(text=text)], quotes)
    return "".join(n.text for n in out if isinstance(n, Text))


def _blocks(blocks: list, quotes: Any) -> list:
    out = []
    for block in blocks:
        if isinstance(block, Paragraph):
            block = block.model_copy(update={"inlines": typeset_inlines(block.inlines, quotes)})
        elif isinstance(block, BulletList):
            items = [typeset_inlines(item, quotes) for item in block.items]
            block = block.model_copy(update={"items": items})
        out.append(block)
    return out


def _section(section: Section, quotes: Any) -> Section:
    update: dict[str, Any] = {
        "headline": typeset_text(section.headline, quotes),
        "blocks": _blocks(section.blocks, quotes),
        "items": [
            Item.model_construct(line=i.line, title=typeset_text(i.title, quotes),
                                 blocks=_blocks(i.blocks, quotes))
            for i in section.items
        ],
    }
    image: Image | None = section.image
    if image is not None:
        update["image"] = image.model_copy(update={
            "alt": typeset_text(image.alt, quotes),
            "credit": typeset_text(image.credit, quotes) if image.credit else image.credit,
        })
    more: ReadMore | None = section.read_more
    if more is not None:
        update["read_more"] = more.model_copy(update={"label": typeset_text(more.label, quotes)})
    for key in ("kicker", "attribution"):  # a Lead's or Story's kicker, a Quote's speaker
        if getattr(section, key):
            update[key] = typeset_text(getattr(section, key), quotes)
    return section.model_copy(update=update)


def typeset(issue: Issue, lang: str) -> Issue:
    """The issue with typographic quotes, dashes and ellipses in everything readers read
    in the body (the subject and preheader stay as typed: they are headers)."""
    quotes = quotes_for(lang)
    return issue.model_copy(update={"sections": [_section(s, quotes) for s in issue.sections]})
