"""Where things are in an issue file: findings at a line and column, and finding text there.

The parser and the rules know a block's first and last line; these helpers find the
column (and, in a block of several lines, the line) of what a finding is about. A
``Locator`` walks forward through a block, so the n-th occurrence of a needle costs one
search, not n: a paragraph with thousands of raw-HTML tags or links stays linear.
"""

from __future__ import annotations

from .model import Finding, Severity, fix_of


class Reporter:
    """Collects one file's findings; ``lines`` is the file's text split at line ends."""

    def __init__(self, path: str, lines: list[str]) -> None:
        self.path = path
        self.lines = lines
        self.findings: list[Finding] = []

    def add(
        self, line: int, rule: str, message: str, *, column: int = 1, warning: bool = False,
        fix: str | None = None,
    ) -> None:
        self.findings.append(
            Finding.model_construct(
                path=self.path,
                line=max(1, line),
                column=max(1, column),
                severity=Severity.WARNING if warning else Severity.ERROR,
                message=message,
                rule=rule,
                fix=fix_of(message) if fix is None else fix,
            )
        )


def locate(
    lines: list[str], needle: str, first: int, last: int, skip: int = 0
) -> tuple[int, int]:
    """Line and column (1-based) of ``needle`` between lines ``first``..``last``.

    ``skip`` passes over that many earlier occurrences (the second image of a paragraph);
    to visit many occurrences in turn, use a ``Locator``.
    """
    for number in range(max(1, first), min(len(lines), last) + 1):
        col = lines[number - 1].find(needle)
        while col >= 0:
            if skip == 0:
                return number, col + 1
            skip -= 1
            col = lines[number - 1].find(needle, col + 1)
    return first, 1


class Locator:
    """Successive occurrences of needles between lines ``first``..``last``.

    Each needle has its own cursor: ``next("![")`` gives the first image marker, the next
    call the second, and so on. When the needle is not found (text the parser changed,
    such as an entity), the answer is the block's first line, column 1.
    """

    def __init__(self, lines: list[str], first: int, last: int) -> None:
        self.lines = lines
        self.first = max(1, first)
        self.last = min(len(lines), last)
        self._cursors: dict[str, tuple[int, int]] = {}  # needle -> (line, 0-based col) to try

    def next(self, needle: str) -> tuple[int, int]:
        number, start = self._cursors.get(needle, (self.first, 0))
        while needle and number <= self.last:
            col = self.lines[number - 1].find(needle, start)
            if col >= 0:
                self._cursors[needle] = (number, col + 1)
                return number, col + 1
            number, start = number + 1, 0
        self._cursors[needle] = (self.last + 1, 0)
        return self.first, 1
