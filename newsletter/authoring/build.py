"""The authoring pipeline as one library call: file -> parse -> validate -> render.

``build_file`` is what the CLI, the preview, the sender and the scheduling worker call. It
never raises for the content of an issue: every problem is a Finding. It raises
``UsageError`` only when the file cannot be read at all.

``issues/_welcome.md`` (``WELCOME_FILE``), the welcome email new subscribers receive
(``audience.welcome``), is an issue file without a date: ``build_file`` gives it today's
date (the line numbers of its findings stay those of the file) and renders it without
"Read in your browser" links, as it is never in the archive.
"""

from __future__ import annotations

import datetime as dt
import os
import re
from dataclasses import dataclass, field
from pathlib import Path

from ..config import Settings
from ..errors import UsageError
from .housestyle import SentLinks
from .media import image_findings
from .model import Finding, Issue, Severity
from .parse import ParseResult, parse_text
from .render import Rendered, RenderError, render
from .validate import GMAIL_CLIP_BYTES, apply_levels, sort_findings, validate


@dataclass
class Build:
    path: str
    findings: list[Finding]
    issue: Issue | None = None
    rendered: Rendered | None = None
    parsed: ParseResult | None = field(default=None, repr=False)

    @property
    def errors(self) -> list[Finding]:
        return [f for f in self.findings if f.severity is Severity.ERROR]

    @property
    def warnings(self) -> list[Finding]:
        return [f for f in self.findings if f.severity is Severity.WARNING]

    @property
    def ok(self) -> bool:
        return not self.errors


MAX_ISSUE_BYTES = 2 * 1024 * 1024  # an issue is a few KB; the Gmail clip is at 102 KB


def size_problem(size: int) -> str | None:
    """What is wrong with an issue file of ``size`` bytes, if anything."""
    if size <= MAX_ISSUE_BYTES:
        return None
    mb = 1024 * 1024
    shown = f"{size / mb:.1f} MB"
    limit = f"{MAX_ISSUE_BYTES // mb} MB"
    if float(shown[:-3]) * mb <= MAX_ISSUE_BYTES:  # never "2.0 MB, over the 2 MB limit"
        shown, limit = f"{size:,} bytes", f"{limit} ({MAX_ISSUE_BYTES:,} bytes)"
    return (
        f"issue file is {shown}, over the {limit} limit: an issue is a few KB of "
        "Markdown; check that this is the right file"
    )


def read_issue_text(path: Path) -> str:
    """The text of an issue file; a UsageError (one line) when it cannot be used at all.

    The size is checked before the file is read, so a huge file is refused at once."""
    try:
        with path.open("rb") as handle:
            problem = size_problem(os.fstat(handle.fileno()).st_size)
            if problem is None:
                data = handle.read(MAX_ISSUE_BYTES + 1)
                problem = size_problem(len(data))  # it grew while being read
        if problem:
            raise UsageError(f"{path}: error: {problem}")
    except FileNotFoundError:
        raise UsageError(f"{path}: no such file") from None
    except IsADirectoryError:
        raise UsageError(f"{path}: is a folder, not an issue file") from None
    except OSError as exc:
        raise UsageError(f"{path}: cannot read: {exc.strerror}") from None
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = data[: exc.start].count(b"\n") + 1
        raise UsageError(
            f"{path}:{line}: not UTF-8 text; save the file as UTF-8"
        ) from None


def build_text(
    text: str, path: str, settings: Settings, *, render_html: bool = True, personal: bool = False,
    sent_links: SentLinks | None = None,
) -> Build:
    """Parse, validate and (when there are no errors) render an issue's text."""
    problem = None
    if len(text) * 4 > MAX_ISSUE_BYTES:  # UTF-8 takes at most 4 bytes a character
        problem = size_problem(len(text.encode("utf-8", "surrogatepass")))
    if problem:
        finding = Finding.model_construct(
            path=path, line=1, column=1, severity=Severity.ERROR, message=problem,
            rule="issue-too-large",
        )
        return Build(path=path, findings=[finding])
    parsed = parse_text(text, path)
    lines = text.replace("\r\n", "\n").replace("\r", "\n").split("\n")
    findings = list(parsed.findings) + validate(parsed, lines, path, settings, sent_links)
    findings += image_findings(settings, parsed.sections, lines, path)  # local image files
    findings = apply_levels(findings, settings.rules)
    result = Build(path=path, findings=findings, issue=parsed.issue, parsed=parsed)
    has_errors = any(f.severity is Severity.ERROR for f in findings)
    if render_html and parsed.issue is not None and not has_errors:
        try:
            rendered = render(parsed.issue, settings, personal=personal)
        except RenderError as exc:
            findings.append(
                Finding.model_construct(
                    path=path, line=1, column=1, severity=Severity.ERROR, message=str(exc),
                    rule="template-error",
                )
            )
        else:
            result.rendered = rendered
            if rendered.size > GMAIL_CLIP_BYTES:
                findings.append(
                    Finding.model_construct(
                        path=path,
                        line=parsed.body_line,
                        column=1,
                        severity=Severity.ERROR,
                        message=(
                            f"the rendered HTML is {rendered.size / 1024:.1f} KB; Gmail clips "
                            f"messages over {GMAIL_CLIP_BYTES // 1024} KB: cut text or sections"
                        ),
                        rule="html-too-large",
                    )
                )
    result.findings = sort_findings(findings)
    return result


WELCOME_FILE = "_welcome.md"
_DATE_KEY = re.compile(r"(?m)^date\s*:")


def undated(text: str) -> tuple[str, int | None]:
    """A welcome file's text with a ``date:`` line (today) added as the last line of its
    front matter, and that line's number; unchanged (None) when it has a date or no
    front matter (whose findings then say so)."""
    lines = text.split("\n")
    if not lines or lines[0].strip() != "---":
        return text, None
    end = next((i for i, line in enumerate(lines[1:], start=1) if line.strip() == "---"), None)
    if end is None or _DATE_KEY.search("\n".join(lines[1:end])):
        return text, None
    ending = "\r" if lines[0].endswith("\r") else ""
    lines.insert(end, f"date: {dt.date.today().isoformat()}{ending}")
    return "\n".join(lines), end + 1


def build_file(
    path: Path | str, settings: Settings, *, render_html: bool = True, personal: bool = False,
    sent_links: SentLinks | None = None,
) -> Build:
    path = Path(path)
    text = read_issue_text(path)
    added = None
    if path.name == WELCOME_FILE:
        text, added = undated(text)
        settings = settings.model_copy(update={"base_url": None})  # no archive links
    result = build_text(text, str(path), settings, render_html=render_html, personal=personal,
                        sent_links=sent_links)
    if added is not None:  # the findings' lines as they are in the file
        result.findings = [f.model_copy(update={"line": f.line - 1}) if f.line > added else f
                           for f in result.findings]
    return result
