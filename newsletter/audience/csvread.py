"""Reading a CSV file as spreadsheets really write it, in bounded memory.

``open_csv(path, encoding)`` refuses what is not text (a PNG, a ZIP/.xlsx workbook,
random bytes) at once and picks the encoding from the first 64 KB: a byte order mark
(UTF-8, UTF-16 LE/BE, UTF-32), else UTF-8 when the sample is valid UTF-8 (the fast path),
UTF-16 without BOM from its zero bytes, else a legacy single-byte encoding: windows-1252
(what Excel writes in western locales; a superset of latin-1's letters) unless
charset-normalizer finds a non-Latin script (Cyrillic, Greek, Japanese ...) in it.
``encoding=`` overrides the detection.

``RowReader`` then yields ``(line, cells)`` for each data row. It never holds more than a
line of at most ``ROW_LIMIT`` characters (longer lines are skipped in bounded reads), caps
a field at ``FIELD_LIMIT`` characters and a row at ``ROW_LIMIT``, and hands these rows to
``reject(line, reason, cells)`` instead of yielding them:

- a line or row over 1 MB, or a field over 64 KB;
- a NUL character (it is not text, and databases would cut the value at it);
- bytes that are not valid in the file's encoding (read as U+FFFD);
- a quote that is never closed: a quoted field that runs over a line break into lines
  that read as rows of their own. That row is rejected and the lines after it are read
  again as rows, so nothing else is swallowed.
"""

from __future__ import annotations

import codecs
import csv
import io
import re
import unicodedata
from collections import deque
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import IO

from ..errors import UsageError

SAMPLE_BYTES = 64 * 1024
FIELD_LIMIT = 64 * 1024
ROW_LIMIT = 1024 * 1024
SHOWN_CELL = 1000  # characters of a cell written to the rejects file

Reject = Callable[[int, str, list[str]], None]

_MAGIC = (
    (b"\x89PNG", "a PNG image"),
    (b"\xff\xd8\xff", "a JPEG image"),
    (b"GIF8", "a GIF image"),
    (b"%PDF", "a PDF document"),
    (b"PK\x03\x04", "an .xlsx/.ods workbook or other ZIP archive"),
    (b"\xd0\xcf\x11\xe0", "an old Excel workbook (.xls)"),
    (b"\x1f\x8b", "a gzip archive"),
    (b"SQLite format 3\x00", "an SQLite database"),
)
_BOMS = (  # UTF-32 first: its LE mark starts with UTF-16's
    (codecs.BOM_UTF32_LE, "utf-32", "UTF-32 LE"),
    (codecs.BOM_UTF32_BE, "utf-32", "UTF-32 BE"),
    (codecs.BOM_UTF8, "utf-8-sig", "UTF-8"),
    (codecs.BOM_UTF16_LE, "utf-16", "UTF-16 LE"),
    (codecs.BOM_UTF16_BE, "utf-16", "UTF-16 BE"),
)
_NAMES = {"cp1252": "windows-1252", "iso8859-1": "latin-1", "utf-8": "UTF-8"}
_CONTROL = re.compile(r"[\x00-\x08\x0e-\x1f\x7f]")
_SAVE_AS = "save the sheet as CSV (UTF-8)"

# Bytes that do not decode become U+FFFD; the count tells the reader to look for them.
_ERRORS = "newsletter-csv-replace"
_replaced = [0]


def _replace(exc: UnicodeError) -> tuple[str, int]:
    _replaced[0] += 1
    return "\ufffd", exc.end  # type: ignore[attr-defined]


codecs.register_error(_ERRORS, _replace)


@dataclass
class CsvFile:
    raw: IO[bytes]
    text: IO[str]
    encoding: str  # its name for the user: "windows-1252"
    how: str  # "detected", "--encoding", "BOM" or "" (UTF-8 without BOM)

    @property
    def label(self) -> str:
        """As the report shows it: "windows-1252 (detected)"."""
        return f"{self.encoding} ({self.how})" if self.how else self.encoding

    def close(self) -> None:
        self.text.close()


def open_csv(path: Path, encoding: str | None = None) -> CsvFile:
    """Open ``path`` as text in its (given or detected) encoding; UsageError if it is not."""
    try:
        raw = open(path, "rb")  # noqa: SIM115 - closed by CsvFile.close
    except FileNotFoundError:
        raise UsageError(f"{path}: no such file") from None
    except IsADirectoryError:
        raise UsageError(f"{path}: is a folder, not a CSV file") from None
    except OSError as exc:
        raise UsageError(f"{path}: cannot read: {exc.strerror}") from None
    try:
        sample = raw.read(SAMPLE_BYTES)
        raw.seek(0)
        codec, name, how = detect_encoding(path, sample, encoding)
    except BaseException:
        raw.close()
        raise
    text = io.TextIOWrapper(raw, encoding=codec, errors=_ERRORS, newline="")
    return CsvFile(raw, text, name, how)


def detect_encoding(path: Path, sample: bytes, given: str | None = None) -> tuple[str, str, str]:
    """(Python codec, its name for the user, how it was chosen) for a file starting with
    ``sample``."""
    if given:
        return _given(given, sample)
    for bom, codec, name in _BOMS:
        if sample.startswith(bom):
            return codec, name, "BOM"
    for magic, kind in _MAGIC:
        if sample.startswith(magic):
            raise UsageError(f"{path}: {kind}, not a CSV file; {_SAVE_AS}")
    wide = _utf16_without_bom(sample)
    if wide:
        return wide, wide.upper().replace("-LE", " LE").replace("-BE", " BE"), "detected"
    complete = len(sample) < SAMPLE_BYTES
    try:
        text = codecs.getincrementaldecoder("utf-8")().decode(sample, final=complete)
    except UnicodeDecodeError:
        pass
    else:
        _refuse_binary(path, text)
        return "utf-8", "UTF-8", ""
    if b"\x00" in sample:
        raise UsageError(f"{path}: binary data, not a CSV file; {_SAVE_AS}")
    codec = _legacy_encoding(sample)
    _refuse_binary(path, sample.decode(codec, errors="replace"))
    return codec, _NAMES.get(codecs.lookup(codec).name, codec), "detected"


def _given(name: str, sample: bytes) -> tuple[str, str, str]:
    try:
        info = codecs.lookup(name)
    except LookupError:
        info = None
    if info is None or not getattr(info, "_is_text_encoding", True):
        raise UsageError(
            f"--encoding {name!r}: not a text encoding; use e.g. utf-8, windows-1252, "
            "latin-1 or utf-16"
        )
    shown_name = _NAMES.get(info.name, info.name)
    if info.name == "utf-8" and sample.startswith(codecs.BOM_UTF8):
        return "utf-8-sig", shown_name, "--encoding"
    return info.name, shown_name, "--encoding"


def _utf16_without_bom(sample: bytes) -> str | None:
    """utf-16-le/-be when every other byte is mostly zero (ASCII text in UTF-16)."""
    sample = sample[: len(sample) // 2 * 2]
    if len(sample) < 4:
        return None
    even, odd = sample[0::2].count(0), sample[1::2].count(0)
    half = len(sample) // 2
    codec = None
    if odd > 0.4 * half and even < 0.05 * half:
        codec = "utf-16-le"
    elif even > 0.4 * half and odd < 0.05 * half:
        codec = "utf-16-be"
    if codec is None:
        return None
    try:
        codecs.getincrementaldecoder(codec)().decode(sample, final=False)
    except UnicodeDecodeError:
        return None
    return codec


def _legacy_encoding(sample: bytes) -> str:
    """windows-1252 (latin-1 where it cannot decode), unless charset-normalizer finds a
    non-Latin script: on a few names it cannot tell western encodings apart reliably."""
    from charset_normalizer import from_bytes

    try:
        sample.decode("cp1252")
        default = "cp1252"
    except UnicodeDecodeError:
        default = "latin-1"
    best = from_bytes(sample).best()
    if best is not None and not _mostly_latin(str(best)):
        return str(best.encoding)
    return default


def _mostly_latin(text: str) -> bool:
    letters = [c for c in text if ord(c) > 0x7F and c.isalpha()]
    latin = sum(1 for c in letters if unicodedata.name(c, "").startswith("LATIN"))
    return latin * 2 >= len(letters)


def _refuse_binary(path: Path, text: str) -> None:
    if len(_CONTROL.findall(text)) > max(8, len(text) // 100):
        raise UsageError(f"{path}: binary data, not a CSV file; {_SAVE_AS}")


def read_header(path: Path, csv_file: CsvFile) -> str:
    """The first line (without BOM), at most ``ROW_LIMIT`` characters."""
    before = _replaced[0]
    line = csv_file.text.readline(ROW_LIMIT + 1)
    if len(line) > ROW_LIMIT:
        raise UsageError(f"{path}:1: the header line is longer than 1 MB; {_SAVE_AS}")
    line = line.lstrip("\ufeff")
    if "\x00" in line:
        raise UsageError(f"{path}:1: a NUL character in the header line; {_SAVE_AS}")
    if _replaced[0] != before and "\ufffd" in line:
        raise UsageError(
            f"{path}:1: the header line is not {csv_file.encoding} text; "
            "pass --encoding with the file's encoding"
        )
    if not line.strip():
        raise UsageError(f"{path}:1: empty header line; the first line must name the columns")
    return line


def shown(cells: list[str]) -> list[str]:
    """Cells as written to the rejects file: clipped, NUL made visible."""
    return [
        (c if len(c) <= SHOWN_CELL else c[:SHOWN_CELL] + "…").replace("\x00", "\u2400")
        for c in cells
    ]


# Stand-ins handed to the csv parser, known by identity: a line over ROW_LIMIT (skipped
# unread), and a quote + line end that closes a row grown over ROW_LIMIT in quotes.
_LONG_LINE = "(a line longer than 1 MB)\n"
_CLOSER = '"\n'
_LONG = "line {line} is longer than 1 MB"


class RowReader:
    """Data rows of a CSV text stream as ``(line, cells)``, in bounded memory.

    ``is_row(cells)`` says whether a line, read on its own, is a plausible row (a valid
    address in its email column): a quoted field running into such lines is taken for
    a quote that was never closed. Rows are rejected through ``reject``.
    """

    def __init__(
        self,
        text: IO[str],
        delimiter: str,
        *,
        encoding: str,
        is_row: Callable[[list[str]], bool],
        reject: Reject,
        first_line: int = 1,
    ) -> None:
        self._text = text
        self.delimiter = delimiter
        self._is_row = is_row
        self._reject = reject
        self._first_line = first_line
        self._bad_bytes = (
            f"bytes that are not {encoding} text (shown as \ufffd) in line {{line}}; "
            "save the file as UTF-8 or pass --encoding with its encoding"
        )
        self._taken: list[str] = []  # the lines of the row being parsed
        self._marks: list[tuple[int, str]] = []  # (index in _taken, reason)
        self._pending: deque[str] = deque()  # lines to read again

    def __iter__(self) -> Iterator[tuple[int, list[str]]]:
        limit = csv.field_size_limit(FIELD_LIMIT)
        try:
            yield from self._rows()
        finally:
            csv.field_size_limit(limit)

    def _rows(self) -> Iterator[tuple[int, list[str]]]:
        taken, marks = self._taken, self._marks
        end = self._first_line  # the last line of the row before
        while True:  # a new parser after an error, or for lines read again at the end
            reader = csv.reader(self._lines(), delimiter=self.delimiter)
            base = end  # a row's last line is reader.line_num + base
            try:
                for cells in reader:
                    line = end + 1
                    end = reader.line_num + base
                    if marks or end != line:  # rare: over several lines, or marked
                        kept, back = self._unusual(line, cells, None)
                        base -= back
                        end -= back
                        taken.clear()
                        marks.clear()
                        if kept is None:
                            continue
                    taken.clear()
                    yield line, cells
                if not self._pending:
                    return
            except csv.Error as exc:
                line = end + 1
                end = reader.line_num + base
                end -= self._unusual(line, None, str(exc))[1]
                taken.clear()
                marks.clear()

    def _lines(self) -> Iterator[str]:
        """Physical lines for the csv parser, each at most ROW_LIMIT characters."""
        readline = self._text.readline
        taken, marks, pending = self._taken, self._marks, self._pending
        append = taken.append
        replaced = _replaced
        limit = ROW_LIMIT + 1
        size = 0  # of the row's lines, once it has more than one
        while True:
            if pending:
                line = pending.popleft()
                if line is _LONG_LINE:
                    marks.append((len(taken), _LONG))
            else:
                line = readline(limit)
                if len(line) > ROW_LIMIT:
                    line = self._skip_rest(line)
                    marks.append((len(taken), _LONG))
                elif not line:
                    return
            if taken:  # a quoted field runs on: the row grows
                size = (size if len(taken) > 1 else len(taken[0])) + len(line)
                if size > ROW_LIMIT:  # end it: the line is read again after it
                    if marks and marks[-1][0] == len(taken):
                        marks.pop()  # the line's own mark: it is read again
                    pending.appendleft(line)
                    marks.append((len(taken), "the row is longer than 1 MB"))
                    line = _CLOSER
            if "\x00" in line:
                marks.append((len(taken), "a NUL character in line {line}; remove it"))
            if replaced[0] and "\ufffd" in line:
                marks.append((len(taken), self._bad_bytes))
            append(line)
            yield line

    def _skip_rest(self, start: str) -> str:
        """Read past the rest of an over-long line in bounded chunks; its stand-in."""
        readline = self._text.readline
        chunk = start
        while chunk and chunk[-1] not in "\r\n":
            chunk = readline(ROW_LIMIT)
        if chunk.endswith("\r"):  # a CR LF may have been cut between the chunks
            after = readline(ROW_LIMIT + 1)
            if after and after != "\n":
                self._pending.append(after)
        return _LONG_LINE

    def _unusual(
        self, line: int, cells: list[str] | None, error: str | None
    ) -> tuple[list[str] | None, int]:
        """Judge a row that spans lines, carries a mark or did not parse (``error``).
        Returns (the cells to keep or None, how many lines to count back)."""
        taken = self._taken
        back = 1 if taken and taken[-1] is _CLOSER else 0
        lines = taken[: len(taken) - back]
        shown_cells = shown(self._parse(lines[0])) if lines else []
        swallowed = self._first_row_like(lines[1:])
        if swallowed is not None:
            self._pending.extendleft(reversed(lines[1:]))
            self._reject(
                line,
                f'a quote (") opened in this line is never closed: it runs into line '
                f"{line + 1 + swallowed}, which reads as a row of its own; close the quote "
                "or remove it",
                shown_cells,
            )
            return None, back + len(lines) - 1
        if self._marks:
            index, reason = self._marks[0]
            self._reject(line, reason.format(line=line + index), shown_cells)
            return None, back
        if error is not None:
            if "field larger than field limit" in error:
                reason = "a field longer than 64 KB"
                if len(lines) > 1:
                    reason += ' (a quote (") that is never closed?)'
            else:
                reason = f"unreadable CSV: {error}"
            self._reject(line, reason, shown_cells)
            return None, back
        return cells, back

    def _first_row_like(self, lines: list[str]) -> int | None:
        for index, text in enumerate(lines):
            if text is not _LONG_LINE and self._is_row(self._parse(text)):
                return index
        return None

    def _parse(self, text: str) -> list[str]:
        """One line parsed on its own, without its line end (an open quote closes there)."""
        try:
            return next(csv.reader([text.rstrip("\r\n")], delimiter=self.delimiter), [])
        except csv.Error:
            return [text]
