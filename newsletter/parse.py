"""Issue file -> ``Issue`` model plus the findings only the parser can see.

The parser builds the model with ``model_construct``: every value is made here, of the
right type, so pydantic's validation would only cost time (the models defer their schema).

The parser reads the YAML front matter (with its line marks) and the Markdown body
(markdown-it-py token maps give each block's line). It reports what cannot be
represented in the model: YAML errors, unknown section kinds, raw HTML, code,
tables, text before the first section, misplaced images. Rules over the model
itself (lengths, URLs, empty items...) live in ``validate``.
"""

from __future__ import annotations

import datetime as dt
import difflib
import re
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Any

from markdown_it import MarkdownIt
from markdown_it.token import Token

from .model import (
    BulletList,
    Emphasis,
    Finding,
    Image,
    Inline,
    Issue,
    Item,
    LineBreak,
    Link,
    Paragraph,
    ReadMore,
    Section,
    SectionKind,
    Severity,
    Strong,
    Text,
    plain,
)


@lru_cache(maxsize=1)
def yaml_loader() -> tuple[Any, Any]:
    """(the yaml module, our Loader), imported on first need: most front matter is read by
    ``_simple_front_matter`` and the CLI starts faster without PyYAML.

    The Loader is safe YAML (the C one where libyaml exists) whose values never raise
    outside YAMLError: an impossible date such as 2026-13-45 stays a string (the date rule
    then names it), and so does a bad !!int.
    """
    import yaml

    try:
        from yaml import CSafeLoader as base
    except ImportError:  # pragma: no cover
        from yaml import SafeLoader as base  # type: ignore[assignment]

    class Loader(base):  # type: ignore[misc,valid-type]
        pass

    def lenient(constructor):  # type: ignore[no-untyped-def]
        def construct(loader, node):  # type: ignore[no-untyped-def]
            try:
                return constructor(loader, node)
            except (ValueError, TypeError, OverflowError):
                if isinstance(node, yaml.ScalarNode):
                    return loader.construct_scalar(node)
                return None

        return construct

    for tag in ("timestamp", "int", "float", "bool"):
        full = f"tag:yaml.org,2002:{tag}"
        Loader.add_constructor(full, lenient(base.yaml_constructors[full]))
    return yaml, Loader


# -- the fast path for front matter ---------------------------------------------------------
# Lines "key: value" whose value YAML would read back as the same string (or as a date) are
# read here without PyYAML; anything else (quotes, lists, numbers, times, comments after a
# value, indentation...) goes to YAML. A value containing ': ' is taken whole, as
# ``_load_yaml`` forgives it. tests/test_parse.py checks that both agree.
_SIMPLE_KEY_LINE = re.compile(r"([A-Za-z_][A-Za-z0-9_-]*):(?: +(.*?))? *")
_YAML_WORDS = {"yes", "no", "true", "false", "on", "off", "null", "y", "n", "~"}
_DATE_VALUE = re.compile(r"(\d{4})-(\d{2})-(\d{2})")
# what YAML treats specially or refuses: non-printable characters and other line breaks
_YAML_SPECIAL_CHARS = re.compile(
    "[^\x20-\x7e\xa0-\u2027\u202a-\ud7ff\ue000-\ufefe\uff00-\ufffd\U00010000-\U0010ffff]"
)


def _simple_front_matter(yaml_text: str) -> tuple[dict[str, Any], dict[str, int]] | None:
    """The front matter as YAML would read it, when every line is that simple; else None."""
    data: dict[str, Any] = {}
    lines: dict[str, int] = {}
    for number, line in enumerate(yaml_text.split("\n"), start=2):
        if not line.strip():
            if line:  # white space only: let YAML judge tabs and the like
                return None
            continue
        if line.startswith("#"):
            continue
        match = _SIMPLE_KEY_LINE.fullmatch(line)
        if not match or "\t" in line or _YAML_SPECIAL_CHARS.search(line):
            return None
        key, value = match.group(1), match.group(2)
        if key.lower() in _YAML_WORDS:
            return None
        if not value:
            parsed: Any = None
        elif _DATE_VALUE.fullmatch(value):
            year, month, day = (int(part) for part in _DATE_VALUE.fullmatch(value).groups())
            try:
                parsed = dt.date(year, month, day)
            except ValueError:
                parsed = value  # as the lenient YAML loader does
        elif (
            not value[0].isalpha()
            or value.lower() in _YAML_WORDS
            or " #" in value
            or value.endswith(":")
        ):
            return None
        else:
            parsed = value
        data[key] = parsed
        lines[key] = number
    return data, lines


FRONT_MATTER_KEYS = ("subject", "preheader", "date", "send_at")
KIND_NAMES = {
    "lead": SectionKind.LEAD,
    "story": SectionKind.STORY,
    "hard numbers": SectionKind.HARD_NUMBERS,
    "what we're watching": SectionKind.WATCHING,
}
# C0 controls other than tab and newline, and the two non-characters: MRML cannot parse them
_CONTROL = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\ufffe\uffff]")
_HEADING = re.compile(r"^\s*([^:]*?)\s*:\s*(.*?)\s*$", re.DOTALL)
_md = MarkdownIt("commonmark", {"html": True}).enable("table")


@dataclass
class ParseResult:
    issue: Issue | None
    findings: list[Finding]
    sections: list[Section] = field(default_factory=list)
    front_matter: dict[str, Any] = field(default_factory=dict)
    body_line: int = 1  # 1-based line where the Markdown body starts


class _Reporter:
    def __init__(self, path: str, lines: list[str]) -> None:
        self.path = path
        self.lines = lines
        self.findings: list[Finding] = []

    def add(self, line: int, rule: str, message: str, *, column: int = 1, warning: bool = False):
        self.findings.append(
            Finding.model_construct(
                path=self.path,
                line=max(1, line),
                column=max(1, column),
                severity=Severity.WARNING if warning else Severity.ERROR,
                message=message,
                rule=rule,
            )
        )


def locate(
    lines: list[str], needle: str, first: int, last: int, skip: int = 0
) -> tuple[int, int]:
    """Line and column (1-based) of ``needle`` between lines ``first``..``last``.

    ``skip`` passes over that many earlier occurrences (the second image of a paragraph).
    """
    for number in range(max(1, first), min(len(lines), last) + 1):
        col = lines[number - 1].find(needle)
        while col >= 0:
            if skip == 0:
                return number, col + 1
            skip -= 1
            col = lines[number - 1].find(needle, col + 1)
    return first, 1


def _split_front_matter(text: str) -> tuple[str | None, int, int]:
    """(YAML text, line after the closing ---, status) ; status 0 ok, 1 missing, 2 unclosed."""
    lines = text.split("\n")
    if not lines or lines[0].rstrip() != "---":
        return None, 1, 1
    for index in range(1, len(lines)):
        if lines[index].rstrip() in ("---", "..."):
            return "\n".join(lines[1:index]), index + 2, 0
    return None, 1, 2


_PLAIN_LINE = re.compile(r"^([A-Za-z_][\w-]*):[ \t]+([^'\"\[{|>&*!%@`#\s].*?)[ \t]*$")


def _load_yaml(yaml_text: str) -> Any:
    """YAML, forgiving one common slip: an unquoted value containing ': '.

    Editors write ``preheader: Plus: three numbers``; strict YAML rejects it. When the
    strict parse fails, such top-level values are quoted and the parse tried again;
    if that fails too, the original error is reported.
    """
    yaml, loader = yaml_loader()
    try:
        return yaml.load(yaml_text, Loader=loader)
    except yaml.YAMLError as first:
        fixed = []
        changed = False
        for line in yaml_text.split("\n"):
            match = _PLAIN_LINE.match(line)
            if match and ": " in match.group(2) and " #" not in match.group(2):
                value = match.group(2).replace("'", "''")
                fixed.append(f"{match.group(1)}: '{value}'")
                changed = True
            else:
                fixed.append(line)
        if not changed:
            raise
        try:
            return yaml.load("\n".join(fixed), Loader=loader)
        except yaml.YAMLError:
            raise first from None


def _key_lines(yaml_text: str) -> dict[str, int]:
    result: dict[str, int] = {}
    yaml, loader = yaml_loader()
    try:
        node = yaml.compose(yaml_text, Loader=loader)
    except (yaml.YAMLError, RecursionError):
        for number, line in enumerate(yaml_text.split("\n"), start=2):
            match = re.match(r"^([A-Za-z_][\w-]*)\s*:", line)
            if match:
                result.setdefault(match.group(1), number)
        return result
    if isinstance(node, yaml.MappingNode):
        for key_node, _ in node.value:
            if isinstance(key_node, yaml.ScalarNode):
                result[str(key_node.value)] = key_node.start_mark.line + 2
    return result


def _front_matter(text: str, rep: _Reporter) -> tuple[dict[str, Any], dict[str, int], int]:
    yaml_text, body_line, status = _split_front_matter(text)
    if status == 1:
        rep.add(
            1,
            "front-matter-missing",
            "the file must start with front matter: a line '---', then 'subject:' and "
            "'date:' lines, then '---'",
        )
        return {}, {}, 1
    if status == 2:
        rep.add(1, "front-matter-unclosed", "front matter is not closed: add a line '---' after it")
        return {}, {}, 1
    assert yaml_text is not None
    simple = _simple_front_matter(yaml_text)
    if simple is not None:
        return simple[0], simple[1], body_line
    yaml, _ = yaml_loader()
    try:
        data = _load_yaml(yaml_text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None) or getattr(exc, "context_mark", None)
        line = mark.line + 2 if mark is not None else 2
        column = mark.column + 1 if mark is not None else 1
        problem = getattr(exc, "problem", None) or "invalid YAML"
        rep.add(
            line,
            "yaml-syntax",
            f"YAML syntax error in front matter: {problem}; quote values that contain ':' or '#'",
            column=column,
        )
        return {}, {}, -body_line
    except RecursionError:
        rep.add(2, "yaml-syntax", "YAML syntax error in front matter: nested too deeply")
        return {}, {}, -body_line
    except (ValueError, TypeError, OverflowError) as exc:  # a value YAML cannot construct
        rep.add(2, "yaml-syntax", f"YAML value error in front matter: {str(exc)[:80]}")
        return {}, {}, -body_line
    if data is None:
        data = {}
    if not isinstance(data, dict):
        rep.add(2, "front-matter-not-mapping", "front matter must be 'key: value' lines")
        return {}, {}, -body_line
    return data, _key_lines(yaml_text), body_line


def _issue_fields(data: dict[str, Any], key_lines: dict[str, int], rep: _Reporter) -> dict | None:
    """Check front-matter keys and types; the values an Issue needs, or None."""
    values: dict[str, Any] = {}
    ok = True
    for key in data:
        if str(key) not in FRONT_MATTER_KEYS:
            close = difflib.get_close_matches(str(key), FRONT_MATTER_KEYS, n=1)
            hint = f"did you mean '{close[0]}'?" if close else "remove it"
            rep.add(
                key_lines.get(str(key), 2),
                "front-matter-unknown-key",
                f"unknown front-matter key '{key}': {hint}",
                warning=True,
            )
    subject = data.get("subject")
    if subject is None or (isinstance(subject, str) and not subject.strip()):
        rep.add(
            key_lines.get("subject", 2),
            "subject-missing",
            "the subject is missing: add 'subject: ...' to the front matter",
        )
        ok = False
    elif isinstance(subject, (dict, list)):
        rep.add(key_lines["subject"], "subject-type", "the subject must be one line of text")
        ok = False
    else:
        values["subject"] = str(subject).strip()
        if _CONTROL.search(values["subject"]):
            rep.add(
                key_lines.get("subject", 2),
                "control-character",
                "the subject contains an invisible control character: delete it",
            )
    preheader = data.get("preheader")
    if preheader is not None:
        if isinstance(preheader, (dict, list)):
            rep.add(
                key_lines.get("preheader", 2),
                "preheader-type",
                "the preheader must be one line of text",
            )
        else:
            values["preheader"] = str(preheader).strip() or None
            if _CONTROL.search(values["preheader"] or ""):
                rep.add(
                    key_lines.get("preheader", 2),
                    "control-character",
                    "the preheader contains an invisible control character: delete it",
                )
    date = data.get("date")
    if date is None:
        rep.add(
            key_lines.get("date", 2),
            "date-missing",
            "the date is missing: add 'date: YYYY-MM-DD' to the front matter",
        )
        ok = False
    elif isinstance(date, dt.datetime):
        values["date"] = date.date()
    elif isinstance(date, dt.date):
        values["date"] = date
    else:
        parsed = None
        if isinstance(date, str) and re.fullmatch(r"\d{4}-\d{2}-\d{2}", date.strip()):
            try:
                parsed = dt.date.fromisoformat(date.strip())
            except ValueError:
                parsed = None
        if parsed is None:
            rep.add(
                key_lines.get("date", 2),
                "date-format",
                f"date {str(date)[:40]!r} is not a calendar date: write it as YYYY-MM-DD",
            )
            ok = False
        else:
            values["date"] = parsed
    send_at = data.get("send_at")
    if isinstance(send_at, (dict, list, set)):
        rep.add(
            key_lines.get("send_at", 2),
            "send-at-type",
            "send_at must be a date and time such as 2026-11-24 06:00",
        )
    elif send_at is not None:
        values["send_at"] = send_at.isoformat() if isinstance(send_at, dt.date) else str(send_at)
    return values if ok else None


class _BodyParser:
    """Walks markdown-it block tokens and builds sections."""

    def __init__(self, rep: _Reporter, offset: int) -> None:
        self.rep = rep
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

    # -- inline -----------------------------------------------------------------------

    def inlines(self, token: Token, first: int, last: int) -> list[Inline]:
        root: list[Any] = []
        stack: list[tuple[str, dict[str, Any], list[Any]]] = []
        current = root
        seen: dict[str, int] = {}  # needle -> occurrences already reported in this block

        def where(needle: str) -> tuple[int, int]:
            count = seen.get(needle, 0)
            seen[needle] = count + 1
            return locate(self.rep.lines, needle, first, last, skip=count)

        for child in token.children or []:
            kind = child.type
            if kind == "text" or kind == "code_inline":
                current.append(child.content)  # plain strings become Text nodes at the end
            elif kind == "softbreak":
                current.append(" ")
            elif kind == "hardbreak":
                current.append(LineBreak.model_construct())
            elif kind in ("strong_open", "em_open", "link_open"):
                attrs = {"href": str(child.attrs.get("href", ""))} if kind == "link_open" else {}
                stack.append((kind, attrs, current))
                current = []
            elif kind in ("strong_close", "em_close", "link_close") and stack:
                opened, attrs, parent = stack.pop()
                children = _merge_text(current, trim=False)
                if opened == "strong_open":
                    node: Any = Strong.model_construct(children=children)
                elif opened == "em_open":
                    node = Emphasis.model_construct(children=children)
                else:
                    node = Link.model_construct(href=attrs["href"], children=children)
                parent.append(node)
                current = parent
            elif kind == "html_inline":
                line, col = where(child.content)
                self.rep.add(
                    line,
                    "raw-html",
                    f"raw HTML {child.content[:30]!r} is not allowed in email: use Markdown "
                    "(**bold**, *italics*, [text](https://...))",
                    column=col,
                )
            elif kind == "image":
                line, col = where("![")
                self.rep.add(
                    line,
                    "image-position",
                    "an image may only stand on the line right after a '# Kind: Headline' "
                    "heading; move it there or remove it",
                    column=col,
                )
        while stack:  # unbalanced (cannot happen with markdown-it, but never lose text)
            _, _, parent = stack.pop()
            parent.extend(current)
            current = parent
        return _merge_text(root)

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
        match = _HEADING.match(text)
        self.item = None
        if not match:
            self.rep.add(
                line,
                "section-heading-format",
                f"section heading {text[:40]!r} must read '# Kind: Headline' with a kind "
                "Lead, Story, Hard Numbers or What We're Watching",
            )
            self.skipping = True
            return
        raw_kind, headline = match.group(1), match.group(2)
        key = re.sub(r"\s+", " ", raw_kind.replace("\u2019", "'").replace("\u2018", "'")).lower()
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
        if section["kind"] in (SectionKind.LEAD, SectionKind.STORY) and section["blocks"]:
            _split_read_more(section)
        section.pop("_first_block", None)
        self.sections.append(section)

    def paragraph(self, inline: Token, first: int, last: int) -> None:
        children = [c for c in inline.children or [] if c.type != "softbreak"]
        images = [c for c in children if c.type == "image"]
        only_images = bool(images) and all(
            c.type == "image" or (c.type == "text" and not c.content.strip()) for c in children
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
                    c.content for c in (image.children or []) if c.type in ("text", "code_inline")
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
            skip = len(images) - len(extra)
            for number in range(len(extra)):
                line, col = locate(self.rep.lines, "![", first, last, skip=skip + number)
                self.rep.add(
                    line,
                    "image-position",
                    "an image may only stand on the line right after a '# Kind: Headline' "
                    "heading, one per section; move it there or remove it",
                    column=col,
                )
            return
        inlines = self.inlines(inline, first, last)
        if self.section is not None:
            self.section["_first_block"] = False
        if inlines:
            self.add_block(Paragraph.model_construct(line=first, inlines=inlines), first)

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
                self.reject(
                    token,
                    "code-block",
                    "code blocks do not display safely in email: make it a paragraph "
                    "(indent less than four spaces)",
                )
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
                content = self.inlines(token, line, line + token.content.count("\n"))
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
        items = [_merge_text(i) for i in items if i]
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


def _merge_text(nodes: list[Any], *, trim: bool = True) -> list[Any]:
    """Runs of strings and Text nodes joined into one Text each; with ``trim`` the white
    space at both ends is removed (a paragraph's or list item's outer edges)."""
    parts: list[Any] = []  # str runs (as lists) and nodes
    for node in nodes:
        piece = node.text if isinstance(node, Text) else node
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


def parse_text(text: str, path: str = "<issue>") -> ParseResult:
    """Parse an issue file's text. Never raises for any input."""
    text = text.replace("\r\n", "\n").replace("\r", "\n")
    if text.startswith("\ufeff"):
        text = text[1:]
    lines = text.split("\n")
    rep = _Reporter(path, lines)
    if _CONTROL.search(text):
        for number, line in enumerate(lines, start=1):
            match = _CONTROL.search(line)
            if match:
                rep.add(
                    number,
                    "control-character",
                    f"invisible control character U+{ord(match.group()):04X}: delete it; "
                    "email clients and the renderer reject it",
                    column=match.start() + 1,
                )
        text = _CONTROL.sub("\ufffd", text)
        lines = text.split("\n")
        rep.lines = lines
    data, key_lines, body_line = _front_matter(text, rep)
    yaml_failed = body_line < 0
    body_line = abs(body_line)
    fields = _issue_fields(data, key_lines, rep) if body_line > 1 and not yaml_failed else None
    body = "\n".join(lines[body_line - 1 :]) if body_line > 1 else text
    if body_line == 1 and rep.findings and rep.findings[-1].rule.startswith("front-matter"):
        # no front matter at all: parse the whole file as body so its findings show too
        body = text
    parser = _BodyParser(rep, body_line)
    try:
        tokens = _md.parse(body)
    except RecursionError:
        rep.add(body_line, "too-deep", "the Markdown is nested too deeply to read; simplify it")
        tokens = []
    raw_sections = parser.parse(tokens)
    sections = [Section.model_construct(**s) for s in raw_sections]
    issue = None
    if fields is not None:
        issue = Issue.model_construct(path=path, sections=sections, **fields)
    return ParseResult(
        issue=issue,
        findings=rep.findings,
        sections=sections,
        front_matter=data,
        body_line=body_line,
    )
