"""Spreadsheet-safe CSV: every CSV the tool writes goes through ``writer()``.

A cell that starts with ``=``, ``+``, ``-``, ``@``, a tab or a carriage return is a
formula to Excel, LibreOffice and Google Sheets (``=cmd|'/C calc'!A0`` runs a program
on some set-ups), so such a text cell is written with a single quote in front (OWASP's
rule for CSV injection); spreadsheets show the quote-prefixed cell as plain text. The
database keeps the exact value. ``restore()`` undoes it when a CSV is read back, so
importing an export gives the same values: it strips one leading quote where the rest
would have been neutralised. A value that itself starts with quotes before such a
character (``'=x``) gets one more quote on the way out, so the round trip is exact for
every value. Numbers (ids, counts) are written as they are.
"""

from __future__ import annotations

import csv
import re
from collections.abc import Iterable
from typing import Any

RISKY = frozenset("=+-@\t\r")
QUOTE = "'"


def neutralise(value: Any) -> Any:
    """``value`` as a CSV cell a spreadsheet will not run: text that would be a formula
    gets a quote in front; anything else is returned as it is."""
    if not isinstance(value, str) or not value:
        return value
    first = value[0]
    if first in RISKY or (first == QUOTE and value.lstrip(QUOTE)[:1] in RISKY):
        return QUOTE + value
    return value


def restore(cell: str) -> str:
    """The value ``neutralise`` was given for ``cell`` (a cell as read from a CSV)."""
    if cell[:1] == QUOTE and cell.lstrip(QUOTE)[:1] in RISKY:
        return cell[1:]
    return cell


def restore_row(cells: list[str]) -> list[str]:
    """``cells`` with ``restore`` applied to each (in place: the same list, for speed)."""
    # One C-level test per row (does any cell start with a quote?) keeps the importer's
    # loop fast: rows with such a cell are rare.
    if _QUOTE_START not in _SEP + _SEP.join(cells):
        return cells
    for index, cell in enumerate(cells):
        if cell[:1] == QUOTE:
            cells[index] = restore(cell)
    return cells


_SEP = "\x00"
_QUOTE_START = _SEP + QUOTE
# a cell (in a row joined with NUL, NUL first) that starts with a risky character or a quote
_MAYBE_RISKY = re.compile("\x00['=+\\-@\t\r]")


class SafeWriter:
    """``csv.writer`` whose rows are neutralised cell by cell."""

    def __init__(self, out: Any, **options: Any) -> None:
        self._writer = csv.writer(out, **options)

    def writerow(self, row: Iterable[Any]) -> Any:
        return self._writer.writerow(_safe(row))

    def writerows(self, rows: Iterable[Iterable[Any]]) -> None:
        write = self._writer.writerow
        for row in rows:
            write(_safe(row))


def _safe(row: Iterable[Any]) -> list[Any]:
    row = list(row)
    try:  # the usual row, all text and nothing risky, takes one regex search
        if not _MAYBE_RISKY.search(_SEP + _SEP.join(row)):
            return row
    except TypeError:  # numbers or None in it
        pass
    return [neutralise(value) for value in row]


def writer(out: Any, **options: Any) -> SafeWriter:
    """A CSV writer on ``out`` (options as for ``csv.writer``) that neutralises formulas."""
    return SafeWriter(out, **options)
