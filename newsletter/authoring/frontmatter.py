"""The front matter of an issue file: the YAML between the two '---' lines.

Most front matter is a few simple ``key: value`` lines, read here without PyYAML (the
fast path); anything else goes to a safe, lenient YAML loader. The values an ``Issue``
needs (subject, preheader, date, send_at) are checked here, each finding at its line.
Every pattern here is linear in the line it reads: no regular expression with two
overlapping repeats.
"""

from __future__ import annotations

import datetime as dt
import difflib
import re
from functools import lru_cache
from typing import Any

from .sourcemap import Reporter
from .subject_variants import variant_problems


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
# the key and its colon; the value is the rest of the line without its outer spaces (a
# pattern ' +(.*?) *' would do the same in time quadratic in a run of spaces)
_SIMPLE_KEY = re.compile(r"[A-Za-z_][A-Za-z0-9_-]*:")
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
        match = _SIMPLE_KEY.match(line)
        if not match or "\t" in line or _YAML_SPECIAL_CHARS.search(line):
            return None
        rest = line[match.end() :]
        if rest and rest[0] != " ":
            return None  # 'key:value' is one plain scalar to YAML
        key, value = match.group()[:-1], rest.strip(" ")
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


FRONT_MATTER_KEYS = ("subject", "preheader", "date", "send_at", "contents", "subject_variants")
# C0 controls other than tab and newline, and the two non-characters: MRML cannot parse them
CONTROL = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\ufffe\uffff]")


def _split_front_matter(text: str) -> tuple[str | None, int, int]:
    """(YAML text, line after the closing ---, status) ; status 0 ok, 1 missing, 2 unclosed.

    Unclosed, the front matter is taken to end at its first blank line or section heading
    (status 2 with that line), so the body is still read as a body: one finding, not a
    cascade; (None, 1, 2) when there is no such line."""
    lines = text.split("\n")
    if not lines or lines[0].rstrip() != "---":
        return None, 1, 1
    for index in range(1, len(lines)):
        if lines[index].rstrip() in ("---", "..."):
            return "\n".join(lines[1:index]), index + 2, 0
    for index in range(1, len(lines)):
        if not lines[index].strip() or _SECTION_START.match(lines[index]):
            return "\n".join(lines[1:index]), index + 1, 2
    return None, 1, 2


_SECTION_START = re.compile(r"#{1,2}[ \t\u00a0]*[A-Za-z][A-Za-z' \u2019]*:")


# 'key:' and the blanks after it; a plain value then starts with none of these characters
_PLAIN_KEY = re.compile(r"([A-Za-z_][\w-]*):[ \t]+")
_NOT_PLAIN_START = frozenset("'\"[{|>&*!%@`#")


def _plain_line(line: str) -> tuple[str, str] | None:
    """(key, value) of a top-level 'key: value' line whose value YAML reads as plain text."""
    match = _PLAIN_KEY.match(line)
    if match is None:
        return None
    value = line[match.end() :].rstrip(" \t")
    if not value or value[0] in _NOT_PLAIN_START or value[0].isspace():
        return None
    return match.group(1), value


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
            plain = _plain_line(line)
            if plain and ": " in plain[1] and " #" not in plain[1]:
                value = plain[1].replace("'", "''")
                fixed.append(f"{plain[0]}: '{value}'")
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


def read_front_matter(text: str, rep: Reporter) -> tuple[dict[str, Any], dict[str, int], int]:
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
        where = body_line if yaml_text is not None else 1
        rep.add(
            where,
            "front-matter-unclosed",
            "front matter is not closed: add a line '---' "
            + (f"before line {where}" if yaml_text is not None else "after it"),
        )
        if yaml_text is None:
            return {}, {}, 1
    assert yaml_text is not None
    simple = _simple_front_matter(yaml_text)
    if simple is not None:
        return simple[0], simple[1], body_line
    yaml, _ = yaml_loader()
    try:
        data = _load_yaml(yaml_text)
    except yaml.YAMLError as exc:
        _yaml_error(exc, yaml_text, rep)
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


def _yaml_error(exc: Any, yaml_text: str, rep: Reporter) -> None:
    """One finding for a YAML error, at the line that is wrong, with a fix that fits."""
    mark = getattr(exc, "problem_mark", None) or getattr(exc, "context_mark", None)
    line = mark.line + 2 if mark is not None else 2
    column = mark.column + 1 if mark is not None else 1
    problem = getattr(exc, "problem", None) or "invalid YAML"
    context = getattr(exc, "context", None) or ""
    fix = "quote values that contain ': ' or ' #'"
    start = getattr(exc, "context_mark", None)
    if "quoted scalar" in context and start is not None:
        line, column = start.line + 2, start.column + 1  # where the quote was opened
        quote = yaml_text.split("\n")[start.line][start.column : start.column + 1] or '"'
        problem = f"the quote {quote} opened here is never closed"
        fix = f"add the closing {quote} at the end of this value"
    elif "tab" in problem:
        problem = "a tab indents this line, and YAML does not allow tabs"
        fix = "remove the tab: front matter is 'key: value' lines at the left margin"
    rep.add(
        line,
        "yaml-syntax",
        f"YAML syntax error in front matter: {problem}: {fix}",
        column=column,
        fix=fix,
    )


def _unknown_keys(data: dict[str, Any], key_lines: dict[str, int], rep: Reporter) -> None:
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


# long: one check per front-matter key, in the order an editor reads them, each a few
# lines of its own; splitting them would only pass values and ok back and forth.
def issue_fields(data: dict[str, Any], key_lines: dict[str, int], rep: Reporter) -> dict | None:
    """Check front-matter keys and types; the values an Issue needs, or None."""
    values: dict[str, Any] = {}
    ok = True
    _unknown_keys(data, key_lines, rep)
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
        if CONTROL.search(values["subject"]):
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
            if CONTROL.search(values["preheader"] or ""):
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
    _send_at(data.get("send_at"), key_lines.get("send_at", 2), values, rep)
    _contents(data, key_lines, rep, values)
    _subject_variants(data, key_lines, rep, values)
    return values if ok else None


def _send_at(send_at: Any, line: int, values: dict[str, Any], rep: Reporter) -> None:
    if isinstance(send_at, (dict, list, set)):
        rep.add(line, "send-at-type", "send_at must be a date and time such as 2026-11-24 06:00")
    elif send_at is not None:
        values["send_at"] = send_at.isoformat() if isinstance(send_at, dt.date) else str(send_at)
        problem = send_at_problem(values["send_at"])
        if problem:
            rep.add(line, "send-at-format", problem)


def send_at_problem(value: str) -> str | None:
    """What ``newsletter schedule`` would say about this send_at, or None: the same parser
    (``authoring.when.parse_at``), so validate and schedule never disagree."""
    from ..errors import UsageError
    from .when import parse_at

    try:
        parse_at(value, "UTC", what="send_at")
    except UsageError as exc:
        return str(exc)
    return None


def _subject_variants(data: dict[str, Any], key_lines: dict[str, int], rep: Reporter,
                      values: dict[str, Any]) -> None:
    """``subject_variants:`` (a subject test's 2-4 subjects): the rule of
    ``subject_variants.variant_problems``, each problem at the key's line."""
    subjects = data.get("subject_variants")
    if subjects is None:
        return
    problems = variant_problems(subjects)
    for rule, message in problems:
        rep.add(key_lines.get("subject_variants", 2), rule, message)
    if not problems:
        values["subject_variants"] = [str(s).strip() for s in subjects]


def _contents(data: dict[str, Any], key_lines: dict[str, int], rep: Reporter,
              values: dict[str, Any]) -> None:
    """``contents: true`` (or false): an "In this issue" list above the first section."""
    contents = data.get("contents")
    if contents is None:
        return
    if isinstance(contents, bool):
        values["contents"] = contents
        return
    rep.add(
        key_lines.get("contents", 2),
        "contents-type",
        f"contents {str(contents)[:20]!r} must be true or false",
    )
