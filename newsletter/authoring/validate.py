"""Rules over a parsed issue: one small function per rule family, each yielding findings.

The parser reports what it could not model; these rules judge what it did model.
``GMAIL_CLIP_BYTES`` is checked after rendering, in ``build``.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING
from urllib.parse import urlsplit

from ..config import Settings
from .media import is_local
from .model import (
    BulletList,
    Finding,
    Paragraph,
    Section,
    SectionKind,
    Severity,
    block_texts,
    fix_of,
    links_in,
    plain,
)
from .parse import ParseResult, locate
from .sourcemap import Locator

if TYPE_CHECKING:
    from .draft_placeholders import Placeholders
    from .housestyle import SentLinks

SUBJECT_MAX = 150
SUBJECT_PHONE = 60
PREHEADER_MAX = 150
PREHEADER_SHOWN = 100
GMAIL_CLIP_BYTES = 102 * 1024


class _Ctx:
    def __init__(
        self, result: ParseResult, lines: list[str], path: str, settings: Settings,
        sent_links: SentLinks | None = None,
    ) -> None:
        self.result = result
        self.lines = lines
        self.path = path
        self.settings = settings
        self.sent_links = sent_links  # links already sent (recent-link), when the caller knows

    def finding(
        self, line: int, rule: str, message: str, *, column: int = 1, warning: bool = False,
        fix: str | None = None,
    ) -> Finding:
        return Finding.model_construct(
            path=self.path,
            line=max(1, line),
            column=max(1, column),
            severity=Severity.WARNING if warning else Severity.ERROR,
            message=message,
            rule=rule,
            fix=fix_of(message) if fix is None else fix,
        )

    def key_line(self, key: str) -> int:
        for number, text in enumerate(self.lines[: self.result.body_line], start=1):
            if text.startswith(f"{key}:") or text.startswith(f"{key} :"):
                return number
        return 2


Rule = Callable[[_Ctx], Iterator[Finding]]


def front_matter_rules(ctx: _Ctx) -> Iterator[Finding]:
    issue = ctx.result.issue
    if issue is None:
        return
    n = len(issue.subject)
    if n > SUBJECT_MAX:
        yield ctx.finding(
            ctx.key_line("subject"),
            "subject-too-long",
            f"the subject has {n} characters; the limit is {SUBJECT_MAX}: shorten it",
        )
    elif n > SUBJECT_PHONE:
        yield ctx.finding(
            ctx.key_line("subject"),
            "subject-long",
            f"the subject has {n} characters and is cut off on phones after about "
            f"{SUBJECT_PHONE}: put the key words first or shorten it",
            warning=True,
        )
    if issue.preheader is None:
        yield ctx.finding(
            1,
            "preheader-missing",
            "no preheader: add 'preheader: ...' so the inbox shows your words, not the first "
            "text of the email",
            warning=True,
        )
    else:
        n = len(issue.preheader)
        if n > PREHEADER_MAX:
            yield ctx.finding(
                ctx.key_line("preheader"),
                "preheader-too-long",
                f"the preheader has {n} characters; the limit is {PREHEADER_MAX}: shorten it",
            )
        elif n > PREHEADER_SHOWN:
            yield ctx.finding(
                ctx.key_line("preheader"),
                "preheader-long",
                f"the preheader has {n} characters; inboxes show about {PREHEADER_SHOWN}: "
                "shorten it",
                warning=True,
            )


def structure_rules(ctx: _Ctx) -> Iterator[Finding]:
    sections = ctx.result.sections
    if not sections and not any(f.rule.startswith("section-") for f in ctx.result.findings):
        yield ctx.finding(
            ctx.result.body_line,
            "no-sections",
            "the issue has no sections: add one, starting with '# Lead: Your headline'",
        )
    leads = [s for s in sections if s.kind is SectionKind.LEAD]
    for extra in leads[1:]:
        yield ctx.finding(
            extra.line,
            "lead-duplicate",
            "more than one Lead: make this one a '# Story:' (an issue has at most one Lead, "
            "first)",
            fix="make this one a '# Story:'",
        )
    if leads and sections[0].kind is not SectionKind.LEAD:
        yield ctx.finding(
            leads[0].line,
            "lead-not-first",
            "the Lead must come first: move this section to the top of the issue",
        )


def _has_text(blocks: list) -> bool:
    return any(
        (isinstance(b, Paragraph) and b.inlines) or (isinstance(b, BulletList) and b.items)
        for b in blocks
    )


def section_rules(ctx: _Ctx) -> Iterator[Finding]:
    for section in ctx.result.sections:
        yield from _section(ctx, section)


# The kinds made of '## ' items: (rule id prefix, what each item heading is).
_ITEM_KINDS = {
    SectionKind.HARD_NUMBERS: ("hard-numbers", "'## <figure>' lines"),
    SectionKind.WATCHING: ("watching", "'## <title>' lines"),
    SectionKind.IGNORING: ("ignoring", "'## <title>' lines"),
}
KICKER_LONG = 30  # characters: a kicker is a label of a word or three, not a sentence
QUOTE_LONG = 60  # words: a pull quote is read at a glance


def _section(ctx: _Ctx, section: Section) -> Iterator[Finding]:
    kind = section.kind.value
    if not section.headline.strip():
        yield ctx.finding(
            section.line,
            "section-headline-missing",
            f"the {kind} section has no headline: write '# {kind}: Your headline'",
        )
    yield from _kicker(ctx, section)
    if section.kind in (SectionKind.LEAD, SectionKind.STORY):
        if not _has_text(section.blocks):
            yield ctx.finding(
                section.line,
                "story-empty",
                f"the {kind} '{section.headline[:40]}' has no text: add at least one paragraph "
                "under its heading",
            )
    elif section.kind is SectionKind.QUOTE:
        yield from _quote(ctx, section)
    elif section.kind is SectionKind.SPONSOR:
        yield from _sponsor(ctx, section)
    else:
        yield from _items(ctx, section)


def _items(ctx: _Ctx, section: Section) -> Iterator[Finding]:
    prefix, heading = _ITEM_KINDS[section.kind]
    label = section.kind.value
    if not section.items:
        yield ctx.finding(
            section.line,
            f"{prefix}-empty",
            f"the {label} section has no items: add {heading}, each followed by a paragraph",
        )
    for item in section.items:
        quoted = f'"{item.title[:40]}"'
        if section.kind is SectionKind.HARD_NUMBERS:
            if not any(ch.isdigit() for ch in item.title):
                yield ctx.finding(
                    item.line,
                    "hard-numbers-figure",
                    f"Hard Numbers item {quoted} has no digit: the heading is the "
                    "figure itself, such as '## 70,000' or '## 3.2%'",
                )
        elif not item.title:
            yield ctx.finding(
                item.line, f"{prefix}-item-title", f"{label} item has no title: write '## Title'"
            )
        if not _has_text(item.blocks):
            yield ctx.finding(
                item.line,
                f"{prefix}-item-empty",
                f"{label} item {quoted} has no text: add a paragraph under it",
            )


def _kicker_line(ctx: _Ctx, section: Section) -> int:
    for number in range(section.line + 1, min(len(ctx.lines), section.line + 20) + 1):
        if ctx.lines[number - 1].lower().startswith("kicker:"):
            return number
    return section.line


def _kicker(ctx: _Ctx, section: Section) -> Iterator[Finding]:
    """The editor's own label above a Lead's or Story's headline ('kicker: Analysis')."""
    kicker = section.kicker
    if kicker is None:
        return
    line = _kicker_line(ctx, section)
    if section.kind.label is not None:
        yield ctx.finding(
            line,
            "kicker-kind",
            f"a {section.kind.value} section is always labelled '{section.kind.label}': "
            "remove the 'kicker:' line (kickers are for Lead and Story)",
        )
    elif not kicker:
        yield ctx.finding(
            line, "kicker-empty", "the kicker is empty: write 'kicker: Analysis' or remove it"
        )
    elif len(kicker) > KICKER_LONG:
        yield ctx.finding(
            line,
            "kicker-long",
            f"the kicker has {len(kicker)} characters: keep it to a word or three (at most "
            f"{KICKER_LONG}), it is a label, not a sentence",
            warning=True,
        )


def _quote(ctx: _Ctx, section: Section) -> Iterator[Finding]:
    if not _has_text(section.blocks):
        yield ctx.finding(
            section.line,
            "quote-empty",
            "the Quote has no quotation: write the quoted words as a paragraph under its heading",
        )
    elif (words := sum(len(plain(i).split()) for _, i in block_texts(section.blocks))) > QUOTE_LONG:
        yield ctx.finding(
            section.line,
            "quote-long",
            f"the Quote has {words} words: a pull quote is read at a glance; keep it under "
            f"{QUOTE_LONG}",
            warning=True,
        )
    if not section.attribution:
        yield ctx.finding(
            section.line,
            "quote-attribution-missing",
            "the Quote does not say who said it: end it with a line '— Name, role'",
        )
    if section.image is not None:
        yield ctx.finding(
            section.image.line,
            "quote-image",
            "a Quote has no photo: remove the image or make the section a Story",
        )


def _sponsor(ctx: _Ctx, section: Section) -> Iterator[Finding]:
    if not _has_text(section.blocks):
        yield ctx.finding(
            section.line,
            "sponsor-empty",
            "the Sponsor section has no text: add the sponsor's message as a paragraph",
        )
    links = [link for _, inlines in block_texts(section.blocks) for link in links_in(inlines)]
    if section.read_more is None and not links:
        yield ctx.finding(
            section.line,
            "sponsor-link-missing",
            "the Sponsor section has no link: end it with the sponsor's link, "
            "[Find out more](https://...)",
            warning=True,
        )
    sections = ctx.result.sections
    if sections and sections[0] is section:
        yield ctx.finding(
            section.line,
            "sponsor-first",
            "the issue opens with a Sponsor: put the Lead (or another story) first, so the "
            "advertisement is never read as the day's top story",
            warning=True,
        )


def _url_problem(url: str, *, mailto: bool) -> str | None:
    if not url:
        return "is empty"
    try:
        parts = urlsplit(url)
    except ValueError:
        return "is not a valid URL"
    if parts.scheme == "https":
        return None if parts.netloc else "has no host"
    if mailto and parts.scheme == "mailto":
        return None if parts.path else "has no address"
    if not parts.scheme:
        return "is relative"
    return f"uses {parts.scheme}:, which is not allowed"


def url_rules(ctx: _Ctx) -> Iterator[Finding]:
    for section in ctx.result.sections:
        image = section.image
        if image is not None:
            line, col = locate(ctx.lines, "![", image.line, image.line)
            if not image.alt:
                yield ctx.finding(
                    line,
                    "image-alt-missing",
                    "the image has no alt text: describe it between the brackets, "
                    "![Delegates arrive in Doha](...)",
                    column=col,
                )
            problem = None if is_local(image.src) else _url_problem(image.src, mailto=False)
            if problem:  # a local file (images/photo.jpg) is checked in build: media.py
                yield ctx.finding(
                    line,
                    "image-url",
                    f"the image URL {image.src[:60]!r} {problem}: images must be absolute "
                    "https: URLs or files in the project (images/photo.jpg)",
                    column=col,
                )
            if not image.credit:
                yield ctx.finding(
                    line,
                    "image-credit-missing",
                    'the image has no credit: add it in quotes after the URL, '
                    '(https://... "Photo: Agency/Name")',
                    column=col,
                    warning=True,
                )
        where: dict[int, Locator] = {}  # one per block: repeated links get their own column
        for line_, inlines in block_texts(section.all_blocks()):
            for link in links_in(inlines):
                problem = _url_problem(link.href, mailto=True)
                if problem:
                    locator = where.setdefault(line_, Locator(ctx.lines, line_, line_ + 200))
                    line, col = locator.next(link.href or "](")
                    yield ctx.finding(
                        line,
                        "link-url",
                        f"the link {link.href[:60]!r} {problem}: links must be absolute "
                        "https: or mailto: URLs",
                        column=col,
                    )
        if section.read_more is not None:
            problem = _url_problem(section.read_more.href, mailto=False)
            if problem:
                line, col = locate(
                    ctx.lines, section.read_more.href or "](", section.read_more.line,
                    section.read_more.line,
                )
                yield ctx.finding(
                    line,
                    "link-url",
                    f"the Read more link {section.read_more.href[:60]!r} {problem}: it must be "
                    "an absolute https: URL",
                    column=col,
                )


def placeholder_rules(ctx: _Ctx) -> Iterator[Finding]:
    """What ``newsletter new`` wrote and the editor has not replaced yet."""
    from .draft_placeholders import builtin_placeholders, normalize

    marks = builtin_placeholders()
    issue = ctx.result.issue
    fix = "is the new-issue template's placeholder: replace it with your own"
    if issue is not None:
        for key, value, mark in (("subject", issue.subject, marks.subject),
                                 ("preheader", issue.preheader or "", marks.preheader)):
            if mark and normalize(value) == mark:
                yield ctx.finding(
                    ctx.key_line(key), "placeholder-text", f"the {key} {value[:60]!r} {fix}"
                )
    for section in ctx.result.sections:
        yield from _placeholders_in(ctx, marks, section, fix)


def _placeholders_in(
    ctx: _Ctx, marks: Placeholders, section: Section, fix: str
) -> Iterator[Finding]:
    titles = [(section.line, "headline", section.headline)]
    titles += [(item.line, "title", item.title) for item in section.items]
    for line, what, title in titles:
        if marks.title(title):
            yield ctx.finding(line, "placeholder-text", f"the {what} {title[:60]!r} {fix}")
    if section.image is not None and (parts := marks.image_parts(section.image)):
        line, col = locate(ctx.lines, "![", section.image.line, section.image.line)
        fixes = {"URL": "use your photo's https: URL", "alt text": "describe your photo",
                 "credit": "credit its photographer"}
        yield ctx.finding(
            line,
            "placeholder-image",
            f"the image's {' and '.join(parts)} {'is' if len(parts) == 1 else 'are'} the "
            f"new-issue template's placeholder: {', '.join(fixes[p] for p in parts)}",
            column=col,
        )
    for line, inlines in block_texts(section.all_blocks()):
        sentence = marks.sentence_in(plain(inlines))
        if sentence is not None:
            found, col = _find_words(ctx.lines, sentence, line)
            yield ctx.finding(found, "placeholder-text", f"the text {sentence[:60]!r} {fix}", column=col)
        for link in links_in(inlines):
            if marks.link(link.href):
                yield from _placeholder_link(ctx, link.href, line)
    if section.read_more is not None and marks.link(section.read_more.href):
        yield from _placeholder_link(ctx, section.read_more.href, section.read_more.line)


def _find_words(lines: list[str], sentence: str, line: int) -> tuple[int, int]:
    """Where a sentence of plain text starts in the file: its first two words, or its first
    word (markup such as '**' may stand between them), at or after ``line``."""
    words = sentence.split()
    for needle in (" ".join(words[:2]), words[0]):
        found, col = locate(lines, needle, line, line + 50)
        if lines[found - 1 : found] and lines[found - 1].startswith(needle, col - 1):
            return found, col
    return line, 1


def _placeholder_link(ctx: _Ctx, href: str, line: int) -> Iterator[Finding]:
    found, col = locate(ctx.lines, href, line, line + 50)
    yield ctx.finding(
        found,
        "placeholder-link",
        f"the link {href[:60]!r} is the new-issue template's placeholder: link to your source",
        column=col,
    )


def _leftovers(ctx: _Ctx) -> Iterator[Finding]:
    from .leftovers import leftover_rules

    return leftover_rules(ctx)


def _house_style(ctx: _Ctx) -> Iterator[Finding]:
    from .housestyle import house_style_rules

    return house_style_rules(ctx)


RULES: tuple[Rule, ...] = (
    front_matter_rules, structure_rules, section_rules, url_rules, placeholder_rules,
    _leftovers, _house_style,
)


def validate(
    result: ParseResult, lines: list[str], path: str, settings: Settings | None = None,
    sent_links: SentLinks | None = None,
) -> list[Finding]:
    """All findings of the rules over a parse result (not including the parser's own);
    ``sent_links``: where links already sent come from (the ``recent-link`` rule)."""
    ctx = _Ctx(result, lines, path, settings or Settings(), sent_links)
    findings: list[Finding] = []
    for rule in RULES:
        findings.extend(rule(ctx))
    return findings


def apply_levels(findings: list[Finding], levels: dict[str, str]) -> list[Finding]:
    """The findings with newsletter.toml's [rules] applied: "off" drops a rule's findings,
    "warning" / "error" sets their severity."""
    if not levels:
        return findings
    out = []
    for finding in findings:
        level = levels.get(finding.rule)
        if level == "off":
            continue
        if level is not None and level != finding.severity.value:
            finding = finding.model_copy(update={"severity": Severity(level)})
        out.append(finding)
    return out


def sort_findings(findings: list[Finding]) -> list[Finding]:
    return sorted(findings, key=lambda f: (f.line, f.column, f.severity != Severity.ERROR, f.rule))
