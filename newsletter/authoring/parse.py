"""Issue file -> ``Issue`` model plus the findings only the parser can see.

The parser builds the model with ``model_construct``: every value is made here, of the
right type, so pydantic's validation would only cost time (the models defer their schema).

It reads the YAML front matter (``frontmatter``, with its line marks) and the Markdown
body (``body`` for blocks, ``inline`` for the text in them; markdown-it-py token maps give
each block's line). It reports what cannot be represented in the model: YAML errors,
unknown section kinds, raw HTML, code, tables, text before the first section, misplaced
images, broken link syntax. Rules over the model itself (lengths, URLs, empty items...)
live in ``validate``.

Parsing takes time linear in the file: no pattern here or in the modules it uses can
backtrack polynomially, nothing recurses on the input's nesting, and findings are located
by walking forward (``sourcemap.Locator``).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from markdown_it import MarkdownIt

from .body import KIND_NAMES, BodyParser, heading_marks  # noqa: F401  (KIND_NAMES re-exported)
from .frontmatter import (  # noqa: F401  (re-exported: tests and render use these names)
    CONTROL,
    FRONT_MATTER_KEYS,
    _load_yaml,
    _simple_front_matter,
    issue_fields,
    read_front_matter,
    yaml_loader,
)
from .inline import inline_within_budget
from .model import Finding, Issue, Section
from .sourcemap import Locator, Reporter, locate  # noqa: F401  (re-exported)

_md = MarkdownIt("commonmark", {"html": True}).enable("table")
# Every link and image becomes a token, whatever its scheme: markdown-it would leave
# [x](javascript:...) as literal text, unseen by the URL rules, which refuse it by name.
_md.validateLink = lambda url: True  # type: ignore[method-assign]
# Escaped characters and entities stay tokens of their own (text_special), so that an
# escaped '\[' is never taken for the start of broken link syntax.
_md.disable("text_join")
# Inline Markdown is read up to a budget of characters per file (inline.MAX_INLINE_CHARS).
_md.core.ruler.at("inline", inline_within_budget)


@dataclass
class ParseResult:
    issue: Issue | None
    findings: list[Finding]
    sections: list[Section] = field(default_factory=list)
    front_matter: dict[str, Any] = field(default_factory=dict)
    body_line: int = 1  # 1-based line where the Markdown body starts


def _normalized(text: str) -> str:
    text = text.replace("\r\n", "\n").replace("\r", "\n")
    return text[1:] if text.startswith("\ufeff") else text


def read_issue_fields(text: str, path: str = "<issue>") -> dict[str, Any] | None:
    """The front matter's issue values (subject, date, ...) as ``parse_text`` reads them,
    without reading the body: for listings of many issues. None where it has none."""
    text = CONTROL.sub("\ufffd", _normalized(text))
    rep = Reporter(path, text.split("\n"))
    data, key_lines, body_line = read_front_matter(text, rep)
    return issue_fields(data, key_lines, rep) if body_line > 1 else None


def parse_text(text: str, path: str = "<issue>") -> ParseResult:
    """Parse an issue file's text. Never raises for any input."""
    text = _normalized(text)
    lines = text.split("\n")
    rep = Reporter(path, lines)
    if CONTROL.search(text):
        for number, line in enumerate(lines, start=1):
            match = CONTROL.search(line)
            if match:
                rep.add(
                    number,
                    "control-character",
                    f"invisible control character U+{ord(match.group()):04X}: delete it; "
                    "email clients and the renderer reject it",
                    column=match.start() + 1,
                )
        text = CONTROL.sub("\ufffd", text)
        lines = text.split("\n")
        rep.lines = lines
    data, key_lines, body_line = read_front_matter(text, rep)
    yaml_failed = body_line < 0
    body_line = abs(body_line)
    fields = issue_fields(data, key_lines, rep) if body_line > 1 and not yaml_failed else None
    body = "\n".join(lines[body_line - 1 :]) if body_line > 1 else text
    if body_line == 1 and rep.findings and rep.findings[-1].rule.startswith("front-matter"):
        # no front matter at all: parse the whole file as body so its findings show too
        body = text
    parser = BodyParser(rep, body_line)
    body = heading_marks(body, rep, body_line)
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
