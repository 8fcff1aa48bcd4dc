"""The Markdown body of an issue: markdown-it block tokens -> sections, items and blocks.

Sections start at '# Kind: Headline', items at '##'; what email cannot show safely (raw
HTML, code, tables, quotes, rules, '###' headings, nested lists, text before the first
section, misplaced images) is a finding at its line. Inline content is read by
``inline.InlineReader``. The walk over tokens is a loop, never recursion.
"""

from __future__ import annotations

import difflib
import re
from typing import Any

from markdown_it.token import Token

from .inline import InlineReader, merge_text
from .model import (
    BulletList,
    Image,
    Inline,
    Item,
    LineBreak,
    Link,
    Paragraph,
    ReadMore,
    SectionKind,
    plain,
)
from .sourcemap import Locator, Reporter

_TEXT = ("text", "text_special")  # text_special: an escaped character or an entity
KIND_NAMES = {
    "lead": SectionKind.LEAD,
    "story": SectionKind.STORY,
    "hard numbers": SectionKind.HARD_NUMBERS,
    "what we're watching": SectionKind.WATCHING,
    "what we're ignoring": SectionKind.IGNORING,
    "quote": SectionKind.QUOTE,
    "sponsor": SectionKind.SPONSOR,
}
KICKER_PREFIX = "kicker:"
# a Quote's attribution: a last paragraph starting with a dash ('— Name', '-- Name')
ATTRIBUTION_DASHES = ("\u2014", "\u2013", "\u2015", "--")


def kind_key(raw: str) -> str:
    """A heading's kind as KIND_NAMES spells it: any case, straight or curly apostrophe."""
    return " ".join(raw.replace("\u2019", "'").replace("\u2018", "'").split()).lower()


# '#' marks with no space after them ('#Story: ...'), or a non-breaking space: Markdown
# reads the line as text, so the section would vanish into the one before it
_HEADING_NO_SPACE = re.compile(r"^( {0,3})(#{1,6})(?:\u00a0|\u202f|(?=[^\s#]))", re.MULTILINE)


def heading_marks(body: str, rep: Reporter, offset: int) -> str:
    """Report '#Kind: ...' headings with no space (or a non-breaking one) after the '#',
    and return the body with the space put in, so the rest reads as the editor meant
    (no follow-on findings). '#Word' lines that are not a section heading ('#1 seed',
    a hashtag) are reported but left as they are."""
    if "#" not in body:
        return body

    def fix(match: re.Match[str]) -> str:
        marks = match.group(2)
        start = match.end()
        line = body.count("\n", 0, match.start()) + offset
        what = "a non-breaking space" if match.group() != match.group(1) + marks else "no space"
        rep.add(
            line,
            "heading-space",
            f"'{marks}' has {what} after it, so this line would show as text: add a space "
            f"after {marks} (or write \\# for a literal #)",
            column=len(match.group(1)) + len(marks),
        )
        rest = body[start : body.find("\n", start) if "\n" in body[start:] else len(body)]
        if len(marks) == 1 and kind_key(rest.partition(":")[0]) not in KIND_NAMES:
            return match.group()
        return f"{match.group(1)}{marks} "

    return _HEADING_NO_SPACE.sub(fix, body)


class BodyParser:
    """Walks markdown-it block tokens and builds sections."""

    def __init__(self, rep: Reporter, offset: int) -> None:
        self.rep = rep
        self.inline = InlineReader(rep)
        self.offset = offset  # add to a token's 0-based map line to get the file's line
        self.sections: list[dict[str, Any]] = []
        self.section: dict[str, Any] | None = None
        self.item: dict[str, Any] | None = None
        self.skipping = False  # inside a section whose heading was rejected
        self.reported_orphan = False

    def line(self, token: Token) -> int:
        return (token.map[0] if token.map else 0) + self.offset

    def end_line(self, token: Token) -> int:
        return (token.map[1] if token.map else 0) + self.offset - 1

    # -- blocks -----------------------------------------------------------------------

    def orphan(self, line: int, what: str) -> None:
        if self.skipping:
            return
        if not self.reported_orphan:
            self.rep.add(
                line,
                "text-before-section",
                f"{what} before the first section: start the body with a heading such as "
                "'# Lead: Your headline'",
            )
            self.reported_orphan = True

    def add_block(self, block: Any, line: int) -> None:
        if self.section is None:
            self.orphan(line, "text")
            return
        target = self.item if self.item is not None else self.section
        target["blocks"].append(block)

    def open_section(self, token: Token, inline: Token) -> None:
        self.close_section()
        line = self.line(token)
        text = inline.content
        raw_kind, colon, headline = text.partition(":")
        self.item = None
        if not colon:
            self.rep.add(
                line,
                "section-heading-format",
                f"section heading {text[:40]!r} must read '# Kind: Headline' with a kind "
                "Lead, Story, Hard Numbers, What We're Watching, What We're Ignoring, Quote "
                "or Sponsor",
            )
            self.skipping = True
            return
        raw_kind, headline = raw_kind.strip(), headline.strip()
        key = kind_key(raw_kind)
        kind = KIND_NAMES.get(key)
        if kind is None:
            names = [k.value for k in SectionKind]
            close = difflib.get_close_matches(
                key, list(KIND_NAMES), n=1, cutoff=0.5
            )
            hint = (
                f"did you mean '{KIND_NAMES[close[0]].value}'?"
                if close
                else "use one of " + ", ".join(names)
            )
            self.rep.add(
                line, "section-kind-unknown", f"unknown section kind {raw_kind[:40]!r}: {hint}"
            )
            self.skipping = True
            return
        self.skipping = False
        self.section = {
            "line": line,
            "kind": kind,
            "headline": headline,
            "image": None,
            "blocks": [],
            "items": [],
            "read_more": None,
            "kicker": None,
            "attribution": None,
            "_first_block": True,
        }

    def close_item(self) -> None:
        if self.item is not None and self.section is not None:
            self.section["items"].append(Item.model_construct(**self.item))
        self.item = None

    def close_section(self) -> None:
        self.close_item()
        section = self.section
        if section is None:
            return
        self.section = None
        if section["kind"].is_story and section["blocks"]:
            _split_read_more(section)
        if section["kind"] is SectionKind.QUOTE and section["blocks"]:
            _split_attribution(section)
        section.pop("_first_block", None)
        self.sections.append(section)

    def kicker_line(self, children: list[Token], first: int) -> list[Token] | None:
        """Take a 'kicker: Words' first line of a section as its kicker; the tokens after
        that line (an image on the next line, say), or None when it is no kicker line."""
        section = self.section
        if section is None or not section["_first_block"] or self.item is not None:
            return None
        head = children[0] if children else None
        if head is None or head.type != "text" or not head.content.lower().startswith(
            KICKER_PREFIX
        ):
            return None
        end = next((n for n, c in enumerate(children) if c.type in ("softbreak", "hardbreak")),
                   len(children))
        words = children[:end]
        if any(c.type not in _TEXT for c in words):
            self.rep.add(first, "kicker-format",
                         "the kicker is plain text: remove the formatting or links from it")
        text = "".join(c.content for c in words if c.type in _TEXT)[len(KICKER_PREFIX):]
        section["kicker"] = " ".join(text.split())
        return children[end + 1 :]

    def paragraph(self, inline: Token, first: int, last: int) -> None:
        children = list(inline.children or [])
        rest = self.kicker_line(children, first)
        if rest is not None:
            if not rest:
                return
            first += 1
            children = rest
            if any(c.type != "image" and c.content.strip() for c in children):
                self.rep.add(first, "kicker-format",
                             "the kicker stands on its own line: leave a blank line after it")
                self.section["_first_block"] = False  # type: ignore[index]
                return
        children = [c for c in children if c.type != "softbreak"]
        images = [c for c in children if c.type == "image"]
        only_images = bool(images) and all(
            c.type == "image" or (c.type in _TEXT and not c.content.strip()) for c in children
        )
        if only_images:
            section = self.section
            if section is None:
                self.orphan(first, "an image")
                return
            extra = images
            if section["_first_block"] and self.item is None:
                image = images[0]
                alt = "".join(
                    c.content for c in image.children or () if c.type in (*_TEXT, "code_inline")
                )
                credit = image.attrs.get("title")
                section["image"] = Image.model_construct(
                    line=first,
                    src=str(image.attrs.get("src", "")),
                    alt=alt.strip(),
                    credit=str(credit).strip() if credit else None,
                )
                section["_first_block"] = False
                extra = images[1:]
            where = Locator(self.rep.lines, first, last)
            for _ in range(len(images) - len(extra)):
                where.next("![")  # the section's own image
            for _ in extra:
                line, col = where.next("![")
                self.rep.add(
                    line,
                    "image-position",
                    "an image may only stand on the line right after a '# Kind: Headline' "
                    "heading, one per section; move it there or remove it",
                    column=col,
                )
            return
        inlines = self.inline.read(inline, first, last)
        if self.section is not None:
            self.section["_first_block"] = False
        if inlines:
            self.add_block(Paragraph.model_construct(line=first, inlines=inlines), first)

    # long: one dispatch loop over markdown-it's block tokens; the branches move the same
    # index forward, so they stay together (each branch calls a method for its block).
    def parse(self, tokens: list[Token]) -> list[dict[str, Any]]:
        index = 0
        n = len(tokens)
        while index < n:
            token = tokens[index]
            kind = token.type
            if kind == "heading_open":
                inline = tokens[index + 1]
                level = int(token.tag[1:])
                line = self.line(token)
                if level == 1:
                    self.open_section(token, inline)
                elif level == 2:
                    self.subheading(inline, line)
                else:
                    self.rep.add(
                        line,
                        "heading-level",
                        f"'{token.markup} ' headings are not used: '#' starts a section and "
                        "'##' an item; use **bold** text for anything else",
                    )
                index += 3
                continue
            if kind == "paragraph_open":
                inline = tokens[index + 1]
                self.paragraph(inline, self.line(token), self.end_line(token))
                index += 3
                continue
            if kind in ("bullet_list_open", "ordered_list_open"):
                index = self.list_block(tokens, index)
                continue
            if kind == "html_block":
                self.reject(token, "raw-html", "raw HTML is not allowed in email: use Markdown")
            elif kind in ("code_block", "fence"):
                self.reject(token, "code-block", self._code_message(token))
            elif kind == "table_open":
                self.reject(
                    token,
                    "table",
                    "tables do not display safely in email on phones: use a bullet list or a "
                    "Hard Numbers section",
                )
                index = _skip_to(tokens, index, "table_close")
            elif kind == "blockquote_open":
                self.reject(
                    token,
                    "blockquote",
                    "block quotes ('>') are not supported: write the quote as a paragraph in "
                    "quotation marks",
                )
                index = _skip_to(tokens, index, "blockquote_close")
            elif kind == "hr":
                self.reject(
                    token,
                    "horizontal-rule",
                    "horizontal rules ('---') are not used: sections are separated by their "
                    "'# Kind: Headline' headings",
                )
            index += 1
        self.close_section()
        return self.sections

    def _code_message(self, token: Token) -> str:
        line = self.rep.lines[self.line(token) - 1] if self.line(token) <= len(self.rep.lines) else ""
        if token.type == "code_block" and "\t" in line[: len(line) - len(line.lstrip())]:
            return (
                "this line starts with a tab, which makes it a code block (shown as typed, "
                "in a fixed-width font): remove the tab, or indent a list item with spaces"
            )
        return (
            "code blocks do not display safely in email: make it a paragraph "
            "(indent less than four spaces)"
        )

    def reject(self, token: Token, rule: str, message: str) -> None:
        line = self.line(token)
        if self.section is None and not self.skipping and not self.reported_orphan:
            self.orphan(line, "text")
        if self.section is not None:
            self.section["_first_block"] = False
        self.rep.add(line, rule, message)

    def subheading(self, inline: Token, line: int) -> None:
        if self.skipping:
            return
        if self.section is None:
            self.orphan(line, "a '##' heading")
            return
        self.section["_first_block"] = False
        if not self.section["kind"].has_items:
            self.rep.add(
                line,
                "subheading-in-story",
                f"'##' headings only start items in Hard Numbers and What We're Watching; in a "
                f"{self.section['kind'].value} use **bold** text instead",
            )
            return
        self.close_item()
        self.item = {"line": line, "title": inline.content.strip(), "blocks": []}

    def list_block(self, tokens: list[Token], index: int) -> int:
        opener = tokens[index]
        close_type = opener.type.replace("_open", "_close")
        ordered = opener.type == "ordered_list_open"
        first = self.line(opener)
        items: list[list[Inline]] = []
        depth = 0
        current: list[Inline] | None = None
        nested_reported = False
        index += 1
        while index < len(tokens):
            token = tokens[index]
            if token.type == close_type and token.level == opener.level:
                break
            if token.type in ("bullet_list_open", "ordered_list_open"):
                depth += 1
                if not nested_reported:
                    self.rep.add(
                        self.line(token),
                        "list-nested",
                        "nested lists do not display reliably in email: keep one level",
                    )
                    nested_reported = True
            elif token.type in ("bullet_list_close", "ordered_list_close"):
                depth -= 1
            elif token.type == "list_item_open" and depth == 0:
                current = []
                items.append(current)
            elif token.type == "inline" and current is not None:
                line = self.line(tokens[index - 1]) if index else first
                content = self.inline.read(token, line, line + token.content.count("\n"))
                if current:
                    current.append(LineBreak.model_construct())
                current.extend(content)
            elif token.type in ("code_block", "fence", "html_block", "table_open"):
                self.rep.add(
                    self.line(token),
                    "list-content",
                    "a list item may hold text only: no code, HTML or tables",
                )
            index += 1
        items = [merge_text(i) for i in items if i]
        if self.section is not None:
            self.section["_first_block"] = False
        if items:
            block = BulletList.model_construct(line=first, ordered=ordered, items=items)
            self.add_block(block, first)
        elif self.section is None:
            self.orphan(first, "a list")
        return index + 1


def _skip_to(tokens: list[Token], index: int, close: str) -> int:
    level = tokens[index].level
    while index < len(tokens) and not (tokens[index].type == close and tokens[index].level == level):
        index += 1
    return index


def _split_read_more(section: dict[str, Any]) -> None:
    """Take a final line that is a single link out of the body as the Read more link."""
    last = section["blocks"][-1]
    if not isinstance(last, Paragraph):
        return
    inlines = last.inlines
    if len(inlines) == 1 and isinstance(inlines[0], Link):
        link = inlines[0]
        section["read_more"] = ReadMore.model_construct(
            line=last.line, href=link.href, label=plain(link.children)
        )
        section["blocks"].pop()




def _split_attribution(section: dict[str, Any]) -> None:
    """Take a Quote's last paragraph that starts with a dash out of the body as its
    attribution: '— Name, role'."""
    last = section["blocks"][-1]
    if not isinstance(last, Paragraph):
        return
    text = plain(last.inlines).strip()
    for dash in ATTRIBUTION_DASHES:
        if text.startswith(dash):
            section["attribution"] = text[len(dash):].strip()
            section["blocks"].pop()
            return
