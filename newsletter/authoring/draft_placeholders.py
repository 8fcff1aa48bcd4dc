"""What the new-issue template leaves for the editor to replace, read from the template.

``newsletter new`` writes ``new-issue.md.j2`` with example text ("Write the lead story
here"), example links and an example photo. None of it may go out. Rather than a second
list of those strings, the built-in template is rendered (with ``NEW_ISSUE_SUBJECT``, the
subject ``new`` uses when given none) and read by the issue parser: its subject,
preheader, headlines and item titles, the sentences of its paragraphs, its links and its
image are the placeholders. Editing the template changes the rule with it.

Matching ignores case and runs of white space. Text matches by whole sentence (so an
editor who keeps "Use **bold**..." after writing the story is still told), headlines and
titles as a whole, and only those with a letter in them: a figure such as "1,000" is a
real Hard Numbers heading too. Links match by their full URL, so other example.org links
are not placeholders.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

from .model import Image, Inline, block_texts, links_in, plain

NEW_ISSUE_SUBJECT = "Your subject line: the most important story first"
_TEMPLATE = "new-issue.md.j2"
_SENTENCE_ENDS = (".", "!", "?", ".\u201d", "!\u201d", "?\u201d", '."', '!"', '?"')


def normalize(text: str) -> str:
    return " ".join(text.split()).casefold()


def sentences(text: str) -> list[str]:
    """The sentences of a text, split after a word ending in '.', '!' or '?'."""
    out: list[str] = []
    words: list[str] = []
    for word in text.split():
        words.append(word)
        if word.endswith(_SENTENCE_ENDS):
            out.append(" ".join(words))
            words = []
    if words:
        out.append(" ".join(words))
    return out


def _has_letter(text: str) -> bool:
    return any(ch.isalpha() for ch in text)


def _url(href: str) -> str:
    return href.strip().rstrip("/").casefold()


@dataclass(frozen=True)
class Placeholders:
    subject: str
    preheader: str
    titles: frozenset[str]  # section headlines and item titles
    sentences: frozenset[str]
    links: frozenset[str]
    image_srcs: frozenset[str]
    image_alts: frozenset[str]
    image_credits: frozenset[str]

    def title(self, text: str) -> bool:
        return normalize(text) in self.titles

    def sentence_in(self, text: str) -> str | None:
        """The first sentence of ``text`` that is a placeholder, as ``text`` has it."""
        for sentence in sentences(text):
            if normalize(sentence) in self.sentences:
                return sentence
        return None

    def link(self, href: str) -> bool:
        return _url(href) in self.links

    def image_parts(self, image: Image) -> list[str]:
        """Which parts of an image are the template's: 'URL', 'alt text', 'credit'."""
        parts = []
        if _url(image.src) in self.image_srcs:
            parts.append("URL")
        if normalize(image.alt) in self.image_alts:
            parts.append("alt text")
        if image.credit and normalize(image.credit) in self.image_credits:
            parts.append("credit")
        return parts


def from_issue_text(text: str) -> Placeholders:
    """The placeholders of a template's rendered text (parsed as an issue)."""
    from .parse import parse_text

    parsed = parse_text(text, _TEMPLATE)
    front = parsed.front_matter
    titles: set[str] = set()
    texts: list[list[Inline]] = []
    srcs, alts, credits, links = set(), set(), set(), set()
    for section in parsed.sections:
        titles.add(section.headline)
        titles.update(item.title for item in section.items)
        texts.extend(inlines for _, inlines in block_texts(section.all_blocks()))
        if section.read_more is not None:
            links.add(_url(section.read_more.href))
        if section.image is not None:
            srcs.add(_url(section.image.src))
            alts.add(normalize(section.image.alt))
            if section.image.credit:
                credits.add(normalize(section.image.credit))
    for inlines in texts:
        links.update(_url(link.href) for link in links_in(inlines))
    return Placeholders(
        subject=normalize(str(front.get("subject") or "")),
        preheader=normalize(str(front.get("preheader") or "")),
        titles=frozenset(normalize(t) for t in titles if _has_letter(t)),
        sentences=frozenset(
            normalize(s) for inlines in texts for s in sentences(plain(inlines)) if _has_letter(s)
        ),
        links=frozenset(links - {""}),
        image_srcs=frozenset(srcs - {""}),
        image_alts=frozenset(alts - {""}),
        image_credits=frozenset(credits),
    )


@lru_cache(maxsize=1)
def builtin_placeholders() -> Placeholders:
    """The placeholders of the built-in new-issue template (read once per process).

    It is rendered as ``newsletter new`` renders it, except that ``yaml_str`` passes the
    subject through: NEW_ISSUE_SUBJECT reads back the same either way, and PyYAML (which
    ``yaml_str`` loads) stays out of ``newsletter validate``. Its own environment keeps
    the email templates' bytecode cache to them."""
    import jinja2

    from .render import BUILTIN_TEMPLATES

    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(str(BUILTIN_TEMPLATES)),
        undefined=jinja2.StrictUndefined,
        keep_trailing_newline=True,
    )
    env.filters["yaml_str"] = str
    text = env.get_template(_TEMPLATE).render(subject=NEW_ISSUE_SUBJECT, date="2026-01-01")
    return from_issue_text(text)
