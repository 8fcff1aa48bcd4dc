"""Importing what real and hostile spreadsheets contain: quotes that never close, legacy
encodings and UTF-16, NUL characters, binary files, huge lines and fields. Each case ends
with what the editor sees: who was added, which line was rejected and why."""

from __future__ import annotations

import csv
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
from sqlalchemy.engine import Engine

from newsletter.audience.importer import import_csv, rejects_path_for
from newsletter.audience.subscribers import count_subscribers, get_subscriber, list_subscribers
from newsletter.errors import UsageError

from .conftest import REPO


def rejected(path: Path) -> dict[int, dict[str, str]]:
    with open(rejects_path_for(path), encoding="utf-8", newline="") as f:
        return {int(row["line"]): row for row in csv.DictReader(f)}


def names(store: Engine) -> dict[str, str | None]:
    return {s.email: s.name for s in list_subscribers(store)}


def test_a_quote_never_closed_rejects_its_row_and_the_next_rows_are_imported(
    store: Engine, tmp_path: Path
) -> None:
    path = tmp_path / "in.csv"
    path.write_bytes(
        b"email,name\n"  # 1
        b'u1@example.org,"never closed\n'  # 2
        b"u2@example.org,B\n"  # 3
        b"u3@example.org,C\n"  # 4
    )
    report = import_csv(store, path)
    assert (report.rows, report.added, report.invalid) == (3, 2, 1)
    assert names(store) == {"u2@example.org": "B", "u3@example.org": "C"}
    reason = rejected(path)[2]["reason"]
    assert "never closed" in reason and "line 3" in reason
    assert (rejected(path)[2]["email"], rejected(path)[2]["name"]) == (
        "u1@example.org",
        "never closed",
    )


def test_lines_after_a_never_closed_quote_keep_their_numbers(store: Engine, tmp_path: Path) -> None:
    path = tmp_path / "in.csv"
    path.write_bytes(
        b"email;name;city\r\n"  # 1
        b"a@example.org;A;Rome\r\n"  # 2
        b'b@example.org;"B;Oslo\r\n'  # 3: the quote closes only in line 5
        b"c@example.org;C;Lima\r\n"  # 4
        b'd@example.org;"D";Pisa\r\n'  # 5
        b"not-an-address;E;Bari\r\n"  # 6
        b'f@example.org;"F\r\nSecond line";Bonn\r\n'  # 7-8: a real two-line field
        b"a@example.org;dup;x\r\n"  # 9
    )
    report = import_csv(store, path)
    assert (report.added, report.invalid, report.duplicates) == (4, 2, 1)
    assert set(rejected(path)) == {3, 6, 9}
    assert rejected(path)[9]["reason"] == "duplicate of line 2"
    # the two-line field is read whole; names are stored header-safe (line break -> space)
    assert get_subscriber(store, "f@example.org").name == "F Second line"
    assert get_subscriber(store, "d@example.org").attributes == {"city": "Pisa"}


def test_a_never_closed_quote_running_past_the_field_limit(store: Engine, tmp_path: Path) -> None:
    rows = "".join(f"user{n}@example.org,User {n}\n" for n in range(4000))  # ~100 KB
    path = tmp_path / "in.csv"
    path.write_text(f'email,name\nfirst@example.org,"oops\n{rows}', encoding="utf-8")
    report = import_csv(store, path)
    assert (report.added, report.invalid) == (4000, 1)
    assert list(rejected(path)) == [2]
    assert get_subscriber(store, "user3999@example.org").name == "User 3999"


LATIN = "email,name,city\na@example.org,José Núñez,Málaga\nb@example.org,Françoise Müller,Zürich\n"


@pytest.mark.parametrize(
    ("data", "label"),
    [
        (LATIN.encode("latin-1"), "windows-1252 (detected)"),
        (
            (LATIN + "c@example.org,Zoë “Zed” – €5,Köln\n").encode("cp1252"),
            "windows-1252 (detected)",
        ),
        (LATIN.encode("utf-8"), "UTF-8"),
        (b"\xef\xbb\xbf" + LATIN.encode("utf-8"), "UTF-8 (BOM)"),
        (b"\xff\xfe" + LATIN.replace(",", "\t").encode("utf-16-le"), "UTF-16 LE (BOM)"),
        (b"\xfe\xff" + LATIN.encode("utf-16-be"), "UTF-16 BE (BOM)"),
        (LATIN.encode("utf-16-le"), "UTF-16 LE (detected)"),
    ],
    ids=[
        "latin-1",
        "windows-1252",
        "utf-8",
        "utf-8-bom",
        "utf-16-le-tabs",
        "utf-16-be",
        "utf-16-nobom",
    ],
)
def test_encodings_excel_writes_are_read(
    store: Engine, tmp_path: Path, data: bytes, label: str
) -> None:
    path = tmp_path / "in.csv"
    path.write_bytes(data)
    report = import_csv(store, path)
    assert report.encoding == label and f"  read as {label}" in report.lines()
    assert report.rejected == 0
    assert get_subscriber(store, "a@example.org").name == "José Núñez"
    assert get_subscriber(store, "b@example.org").attributes == {"city": "Zürich"}
    if "c@example.org" in names(store):
        assert get_subscriber(store, "c@example.org").name == "Zoë “Zed” – €5"


def test_a_non_latin_legacy_encoding_is_detected(store: Engine, tmp_path: Path) -> None:
    people = ["Иван Петров", "Мария Сидорова", "Алексей Смирнов", "Ольга Кузнецова"]
    text = "email,name\n" + "".join(f"u{n}@example.org,{p}\n" for n, p in enumerate(people))
    path = tmp_path / "in.csv"
    path.write_bytes(text.encode("cp1251"))
    report = import_csv(store, path)
    assert report.encoding == "cp1251 (detected)"
    assert get_subscriber(store, "u3@example.org").name == "Ольга Кузнецова"


def test_encoding_option_overrides_detection(store: Engine, tmp_path: Path) -> None:
    path = tmp_path / "in.csv"
    path.write_bytes("email,name\na@example.org,Łukasz Żółć\n".encode("cp1250"))
    report = import_csv(store, path, encoding="cp1250")
    assert report.encoding == "cp1250 (--encoding)"
    assert get_subscriber(store, "a@example.org").name == "Łukasz Żółć"
    with pytest.raises(UsageError, match=r"--encoding 'klingon': not a text encoding"):
        import_csv(store, path, encoding="klingon")
    with pytest.raises(UsageError, match=r"--encoding 'base64': not a text encoding"):
        import_csv(store, path, encoding="base64")


def test_bytes_not_in_the_encoding_reject_their_row_only(store: Engine, tmp_path: Path) -> None:
    """UTF-8 in the first 64 KB (the sample), a windows-1252 byte far below it."""
    rows = [f"user{n}@example.org,User {n}\n" for n in range(4000)]
    path = tmp_path / "in.csv"
    path.write_bytes(
        b"email,name\n"
        + "".join(rows).encode()
        + b"late@example.org,Jos\xe9\n"  # line 4002
        + b"last@example.org,Last\n"
    )
    report = import_csv(store, path)
    assert (report.added, report.invalid) == (4001, 1)
    reason = rejected(path)[4002]["reason"]
    assert "not UTF-8 text" in reason and "--encoding" in reason
    assert get_subscriber(store, "last@example.org").name == "Last"


def test_a_nul_character_rejects_the_row_instead_of_cutting_the_value(
    store: Engine, tmp_path: Path
) -> None:
    path = tmp_path / "in.csv"
    path.write_bytes(b"email,name\nn1@example.org,Ab\x00cd\nn2@example.org,Ok\n")
    report = import_csv(store, path)
    assert (report.added, report.invalid) == (1, 1)
    assert names(store) == {"n2@example.org": "Ok"}
    row = rejected(path)[2]
    assert "NUL character in line 2" in row["reason"] and row["name"] == "Ab\u2400cd"


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (b"\x89PNG\r\n\x1a\n" + os.urandom(4000), "a PNG image, not a CSV file"),
        (
            b"PK\x03\x04" + os.urandom(4000),
            "an .xlsx/.ods workbook or other ZIP archive, not a CSV file",
        ),
        (bytes(range(256)) * 64, "binary data, not a CSV file"),
        (os.urandom(100_000), "binary data, not a CSV file"),
        (b"email,name\n" + bytes(range(1, 32)) * 40, "binary data, not a CSV file"),
    ],
    ids=["png", "xlsx", "all-bytes", "random", "control-chars"],
)
def test_binary_files_are_refused_at_once(
    store: Engine, tmp_path: Path, data: bytes, message: str
) -> None:
    path = tmp_path / "in.csv"
    path.write_bytes(data)
    with pytest.raises(
        UsageError, match=f"^{re.escape(str(path))}: {re.escape(message)}; save the sheet as CSV"
    ):
        import_csv(store, path)
    assert count_subscribers(store) == 0 and not rejects_path_for(path).exists()


def test_over_long_lines_and_fields_reject_their_rows(store: Engine, tmp_path: Path) -> None:
    path = tmp_path / "in.csv"
    with open(path, "w", encoding="utf-8", newline="") as f:
        f.write("email,name\r\n")  # 1
        f.write("a@example.org,A\r\n")  # 2
        f.write("b@example.org," + "x" * 3_000_000 + "\r\n")  # 3: a 3 MB line
        f.write("c@example.org,C\r\n")  # 4
        f.write('d@example.org,"' + "y" * 100_000 + '"\r\n')  # 5: a 100 KB field
        f.write("e@example.org,E\r\n")  # 6
        f.write("f@example.org," + "z" * (2 * 1024 * 1024 - 1) + "\r")  # 7: CR cut off
        f.write("\ng@example.org,G\r\n")  # 8
    report = import_csv(store, path)
    assert (report.rows, report.added, report.invalid) == (7, 4, 3)
    assert set(names(store)) == {f"{c}@example.org" for c in "aceg"}
    reasons = {line: row["reason"] for line, row in rejected(path).items()}
    assert reasons == {
        3: "line 3 is longer than 1 MB",
        5: "a field longer than 64 KB",
        7: "line 7 is longer than 1 MB",
    }
    assert rejects_path_for(path).stat().st_size < 10_000  # the huge values are not copied


def test_a_row_grown_over_1_mb_in_quoted_fields_is_rejected(store: Engine, tmp_path: Path) -> None:
    """Each field under 64 KB, but over a line break each, 20 of them make 1.2 MB."""
    fields = ",".join(f'"{"v" * 60_000}\n{"w" * 10}"' for _ in range(20))
    header = "email," + ",".join(f"c{n}" for n in range(20))
    path = tmp_path / "in.csv"
    path.write_text(f"{header}\nbig@example.org,{fields}\nok@example.org\n", encoding="utf-8")
    report = import_csv(store, path)
    assert "ok@example.org" in names(store) and "big@example.org" not in names(store)
    assert rejected(path)[2]["reason"] == "the row is longer than 1 MB"
    assert report.added == 1


def test_an_over_long_header_is_a_one_line_error(store: Engine, tmp_path: Path) -> None:
    path = tmp_path / "in.csv"
    path.write_bytes(b"email," + b"n" * 2_000_000 + b"\na@example.org,x\n")
    with pytest.raises(UsageError, match=r"in.csv:1: the header line is longer than 1 MB"):
        import_csv(store, path)
    path.write_bytes(b"email,na\x00me\na@example.org,x\n")
    with pytest.raises(UsageError, match=r"in.csv:1: a NUL character in the header line"):
        import_csv(store, path)


def test_cli_reports_the_encoding_takes_encoding_and_refuses_binary(
    project: Path, tmp_path: Path
) -> None:
    """What the editor sees in the terminal: the encoding read, and one-line errors."""

    def newsletter(*args: str) -> subprocess.CompletedProcess[str]:
        env = {**os.environ, "PYTHONPATH": str(REPO)}
        return subprocess.run(
            [sys.executable, "-m", "newsletter", "--project", str(project), *args],
            capture_output=True,
            text=True,
            env=env,
            timeout=120,
        )

    latin = tmp_path / "members.csv"
    latin.write_bytes("email;name\na@example.org;José\n".encode("cp1252"))
    done = newsletter("subscribers", "import", str(latin))
    assert done.returncode == 0, done.stderr
    assert "  read as windows-1252 (detected)\n" in done.stdout and "added 1 new" in done.stdout
    shown = newsletter("subscribers", "show", "a@example.org", "--format", "json")
    assert json.loads(shown.stdout)["name"] == "José"

    polish = tmp_path / "polish.csv"
    polish.write_bytes("email;name\nb@example.org;Łukasz\n".encode("cp1250"))
    done = newsletter("subscribers", "import", str(polish), "--encoding", "cp1250")
    assert done.returncode == 0 and "read as cp1250 (--encoding)" in done.stdout
    done = newsletter("subscribers", "import", str(polish), "--encoding", "nope")
    assert done.returncode == 2 and done.stderr.count("\n") == 1
    assert "--encoding 'nope': not a text encoding" in done.stderr

    png = tmp_path / "photo.png"
    png.write_bytes(b"\x89PNG\r\n\x1a\n" + os.urandom(2000))
    done = newsletter("subscribers", "import", str(png))
    assert done.returncode == 2 and done.stdout == ""
    assert (
        done.stderr
        == f"newsletter: {png}: a PNG image, not a CSV file; save the sheet as CSV (UTF-8)\n"
    )
