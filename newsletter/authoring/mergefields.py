"""Merge fields: ``{{name}}`` and ``{{name|fallback}}``, the only ones there are.

A field the sender does not know (``{{first_name}}``), braces that do not balance
(``{{nmae|reader}``) or an empty fallback (``{{name|}}``) would reach readers as literal
braces, so each is an error at its line and column. ``FIELDS`` is the list the README
documents; ``render.NAME_FIELD`` fills them.
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Iterator

FIELDS = {"name": "the subscriber's name, or the fallback after '|' (web copies: the fallback)"}
# a run of braces with what they hold, on one line; linear: no nested repeats
_BRACES = re.compile(r"\{+[^{}\n]*\}*|\}+")
_FIELD = re.compile(r"\s*([A-Za-z_][\w.-]*)\s*(\|(.*))?", re.DOTALL)
_SYNTAX = "write {{name}} or {{name|fallback}}"


def problems(line: str) -> Iterator[tuple[int, str, str]]:
    """(0-based column, rule, message) of each broken merge field in one line of text."""
    if "{{" not in line and "}}" not in line:
        return
    for match in _BRACES.finditer(line):
        run = match.group()
        opens = len(run) - len(run.lstrip("{"))
        closes = len(run) - len(run.rstrip("}"))
        if opens < 2 and closes < 2:
            continue  # a single {x}: not meant as a field
        inner = run[opens : len(run) - closes]
        if (opens, closes) != (2, 2):
            yield match.start(), "merge-field-braces", (
                f"{run[:40]!r} has {opens} '{{' and {closes} '}}', so it would be sent as "
                f"typed: {_SYNTAX}"
            )
            continue
        field = _FIELD.fullmatch(inner)
        name = field.group(1) if field else inner.strip()
        if field is None or name not in FIELDS:
            close = difflib.get_close_matches(name, list(FIELDS), n=1, cutoff=0.3)
            hint = f"did you mean {{{{{close[0]}}}}}? " if close else ""
            yield match.start(), "merge-field-unknown", (
                f"unknown merge field {run[:40]!r}, sent as typed: {hint}the fields are "
                + ", ".join(f"{{{{{f}}}}}" for f in FIELDS) + " (with an optional |fallback)"
            )
        elif field.group(2) is not None and not field.group(3).strip():
            yield match.start(), "merge-field-fallback-empty", (
                f"{run!r} has an empty fallback, so readers without a name get nothing: "
                "write a fallback such as {{name|reader}}, or {{name}} without '|'"
            )
