"""The issue model: what an issue file means, with no I/O.

Every node keeps the 1-based line of the file it came from, so that findings and
the preview can point at it.
"""

from __future__ import annotations

import datetime as dt
from enum import StrEnum
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field


class Severity(StrEnum):
    ERROR = "error"
    WARNING = "warning"


class Finding(BaseModel):
    """One validator finding, printed compiler-style."""

    model_config = ConfigDict(frozen=True, defer_build=True)

    path: str
    line: int
    column: int = 1
    severity: Severity
    message: str
    rule: str
    fix: str = ""  # what to do about it (the message's part after its first ': ')

    def format(self) -> str:
        """One line, always: a line break in a message (from a template error, say) or in
        a file name becomes a space."""
        line = (
            f"{self.path}:{self.line}:{self.column}: {self.severity.value}: "
            f"{self.message} [{self.rule}]"
        )
        return line.replace("\r\n", " ").replace("\n", " ").replace("\r", " ")


def fix_of(message: str) -> str:
    """The fix a message names: findings read "what is wrong: what to do"."""
    return message.partition(": ")[2]


class SectionKind(StrEnum):
    LEAD = "Lead"
    STORY = "Story"
    HARD_NUMBERS = "Hard Numbers"
    WATCHING = "What We're Watching"
    IGNORING = "What We're Ignoring"
    QUOTE = "Quote"
    SPONSOR = "Sponsor"

    @property
    def has_items(self) -> bool:
        return self in _ITEM_KINDS

    @property
    def is_story(self) -> bool:
        """A story-like section: paragraphs, a Read more link, and the editor's kicker."""
        return self in (SectionKind.LEAD, SectionKind.STORY, SectionKind.SPONSOR)

    @property
    def label(self) -> str | None:
        """What readers see above the headline (None: the editor's kicker, if any)."""
        return _LABELS.get(self)


_ITEM_KINDS = frozenset({SectionKind.HARD_NUMBERS, SectionKind.WATCHING, SectionKind.IGNORING})
# Readers never see the internal words Lead or Story; a Sponsor is always marked as such.
_LABELS = {
    SectionKind.HARD_NUMBERS: "Hard Numbers",
    SectionKind.WATCHING: "What We're Watching",
    SectionKind.IGNORING: "What We're Ignoring",
    SectionKind.QUOTE: "Quote",
    SectionKind.SPONSOR: "Sponsored",
}


# -- inline content -------------------------------------------------------------------


class _Node(BaseModel):
    # the schema is built on first validation or dump, not at import: the parser builds
    # nodes with model_construct, so ``newsletter validate`` never needs it
    model_config = ConfigDict(frozen=True, defer_build=True)


class Text(_Node):
    type: Literal["text"] = "text"
    text: str
    # `code` or an escaped character as typed: the typographer leaves it alone (not part of
    # the content's identity, so it is left out of dumps)
    verbatim: bool = Field(default=False, exclude=True)


class LineBreak(_Node):
    type: Literal["br"] = "br"


class Strong(_Node):
    type: Literal["strong"] = "strong"
    children: list[Inline]


class Emphasis(_Node):
    type: Literal["em"] = "em"
    children: list[Inline]


class Link(_Node):
    type: Literal["link"] = "link"
    href: str
    children: list[Inline]


Inline = Annotated[Text | LineBreak | Strong | Emphasis | Link, Field(discriminator="type")]
# Strong, Emphasis and Link refer to ``Inline`` before it exists: their deferred schemas
# resolve it from this module when first needed.


def plain(inlines: list[Inline]) -> str:
    """The text of inline content without any markup."""
    out: list[str] = []
    for node in inlines:
        if isinstance(node, Text):
            out.append(node.text)
        elif isinstance(node, LineBreak):
            out.append(" ")
        else:
            out.append(plain(node.children))
    return "".join(out)


# -- blocks ---------------------------------------------------------------------------


class Paragraph(_Node):
    type: Literal["paragraph"] = "paragraph"
    line: int
    inlines: list[Inline]


class BulletList(_Node):
    type: Literal["list"] = "list"
    line: int
    ordered: bool = False
    items: list[list[Inline]]


Block = Annotated[Paragraph | BulletList, Field(discriminator="type")]


def links_in(inlines: list[Inline]) -> list[Link]:
    """Every link in inline content, nested ones too, in reading order (no recursion)."""
    found: list[Link] = []
    pending = list(reversed(inlines))
    while pending:
        node = pending.pop()
        if isinstance(node, Link):
            found.append(node)
        if isinstance(node, (Link, Strong, Emphasis)):
            pending.extend(reversed(node.children))
    return found


def block_texts(blocks: list) -> list[tuple[int, list[Inline]]]:
    """(line, inline content) of each paragraph and list item of some blocks."""
    out: list[tuple[int, list[Inline]]] = []
    for block in blocks:
        if isinstance(block, Paragraph):
            out.append((block.line, block.inlines))
        elif isinstance(block, BulletList):
            out.extend((block.line, item) for item in block.items)
    return out


class Image(_Node):
    line: int
    src: str
    alt: str
    credit: str | None = None


class ReadMore(_Node):
    line: int
    href: str
    label: str


class Item(_Node):
    """A Hard Numbers figure or a What We're Watching title with its text."""

    line: int
    title: str
    blocks: list[Block] = Field(default_factory=list)


class Section(_Node):
    line: int
    kind: SectionKind
    headline: str
    image: Image | None = None
    blocks: list[Block] = Field(default_factory=list)  # body, or intro before items
    items: list[Item] = Field(default_factory=list)
    read_more: ReadMore | None = None
    kicker: str | None = None  # the editor's own 'kicker:' line (Lead and Story)
    attribution: str | None = None  # a Quote's closing '— Name, role' line

    @property
    def label(self) -> str | None:
        """The label above the headline: the kind's for most kinds, the kicker for stories."""
        return self.kind.label or self.kicker

    @property
    def anchor(self) -> str:
        return f"section-{self.line}"

    def all_blocks(self) -> list[Block]:
        """The section's own blocks, then each item's, in file order."""
        blocks = list(self.blocks)
        for item in self.items:
            blocks.extend(item.blocks)
        return blocks


class Issue(BaseModel):
    """A whole issue: front matter and sections."""

    model_config = ConfigDict(frozen=True, defer_build=True)

    path: str
    subject: str
    preheader: str | None = None
    date: dt.date
    send_at: str | None = None
    contents: bool | None = None  # an "In this issue" list (None: the project's default)
    subject_variants: list[str] = Field(default_factory=list)  # a subject test's subjects
    sections: list[Section] = Field(default_factory=list)

    @property
    def slug(self) -> str:
        """URL-safe name for the archive and preview (``newsletter.authoring.slugs.file_slug``)."""
        from .slugs import file_slug

        return file_slug(self.path)

    def words(self) -> int:
        count = len(self.subject.split())
        for section in self.sections:
            count += len(section.headline.split())
            count += sum(len(item.title.split()) for item in section.items)
            for block in section.all_blocks():
                if isinstance(block, Paragraph):
                    count += len(plain(block.inlines).split())
                else:
                    count += sum(len(plain(i).split()) for i in block.items)
        return count
