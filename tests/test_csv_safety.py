"""Every CSV the tool writes is safe to open in a spreadsheet (no cell starts a formula),
the database keeps the exact values, and importing an export gives them back."""

from __future__ import annotations

import csv
import io
import random
from collections.abc import Callable
from pathlib import Path

import pytest

from newsletter.audience.csvsafe import RISKY, neutralise, restore
from newsletter.audience.subscribers import get_subscriber
from newsletter.authoring.project import init_project
from newsletter.config import load_settings
from newsletter.db.connect import open_store

from .test_private_files import run  # noqa: F401 - the in-process runner fixture

Run = Callable[..., tuple[int, str, str]]
FORMULA = "=cmd|'/C calc'!A0"
TRICKY = {
    "plus": "+1+2", "minus": "-2+3", "at": "@SUM(A1:A9)", "tab": "\t=1+1", "cr": "\r=1+1",
    "quoted": "'=already quoted", "quotes": "''+two", "plain": "O'Brien", "lone": "'",
    "hyperlink": '=HYPERLINK("https://evil.example","x")',
}


def test_neutralise_then_restore_gives_back_every_value() -> None:
    alphabet = "=+-@\t\r'a ,\"\n"
    rng = random.Random(7)
    values = ["", *TRICKY.values(), FORMULA] + [
        "".join(rng.choice(alphabet) for _ in range(rng.randint(1, 6))) for _ in range(5000)
    ]
    for value in values:
        cell = neutralise(value)
        assert cell[:1] not in RISKY, repr(value)
        assert restore(cell) == value, repr(value)
    assert neutralise(-5) == -5 and neutralise(None) is None  # numbers stay numbers


def cells(text: str) -> list[str]:
    return [cell for row in csv.reader(io.StringIO(text)) for cell in row]


def assert_safe(text: str) -> None:
    risky = [cell for cell in cells(text) if cell[:1] in RISKY]
    assert risky == [], risky


@pytest.fixture
def tricky(run: Run, tmp_path: Path) -> Path:  # noqa: F811
    init_project(tmp_path / "p")
    code, _, err = run("--project", "p", "lists", "create", "@daily", "--description", "=1+1")
    assert code == 0, err
    attrs = [f"--attr={key}={value}" for key, value in TRICKY.items()]
    code, _, err = run("--project", "p", "subscribers", "add", "+plus@example.org",
                       "--name", FORMULA, "--list", "@daily", *attrs)
    assert code == 0, err
    return tmp_path / "p"


def test_every_csv_output_is_neutralised(run: Run, tricky: Path, tmp_path: Path) -> None:  # noqa: F811
    outputs = [
        ("subscribers", "list", "--format", "csv"),
        ("subscribers", "list", "--list", "@daily", "--format", "csv"),
        ("subscribers", "count", "--format", "csv"),
        ("subscribers", "count", "--status", "active", "--format", "csv"),
        ("lists", "list", "--format", "csv"),
        ("subscribers", "export"),
    ]
    for args in outputs:
        code, out, err = run("--project", "p", *args)
        assert code == 0, err
        assert_safe(out)
    code, out, _ = run("--project", "p", "subscribers", "list", "--format", "csv")
    assert f"'{FORMULA}" in cells(out) and "'+plus@example.org" in cells(out)
    code, out, _ = run("--project", "p", "lists", "list", "--format", "csv")
    assert "'@daily" in cells(out) and "'=1+1" in cells(out)
    # the stored values are exact
    engine = open_store(load_settings(tricky))
    sub = get_subscriber(engine, "+plus@example.org")
    engine.dispose()
    assert sub.name == FORMULA and sub.attributes == TRICKY


def test_export_then_import_gives_back_the_same_values(
    run: Run, tricky: Path, tmp_path: Path  # noqa: F811
) -> None:
    export = tmp_path / "members.csv"
    code, _, err = run("--project", "p", "subscribers", "export", "--list", "@daily", "-o",
                       str(export))
    assert code == 0, err
    assert_safe(export.read_text(encoding="utf-8"))
    init_project(tmp_path / "q")
    run("--project", "q", "lists", "create", "@daily")
    code, out, err = run("--project", "q", "subscribers", "import", str(export), "--list",
                         "@daily")
    assert code == 0 and "added 1 new" in out, err
    engine = open_store(load_settings(tmp_path / "q"))
    sub = get_subscriber(engine, "+plus@example.org")
    engine.dispose()
    assert sub.email == "+plus@example.org"
    assert sub.name == FORMULA and sub.attributes == TRICKY


def test_the_rejects_file_is_neutralised(run: Run, tmp_path: Path) -> None:  # noqa: F811
    init_project(tmp_path / "p")
    members = tmp_path / "members.csv"
    with open(members, "w", newline="", encoding="utf-8") as out:
        writer = csv.writer(out)
        writer.writerow(["email", "name", "=city"])
        writer.writerow(["ann@example.org", "Ann", "Rome"])
        writer.writerow(["=not an address", FORMULA, "-1"])
    code, out, err = run("--project", "p", "subscribers", "import", str(members))
    assert code == 0 and "1 invalid" in out, err
    rejects = (tmp_path / "members.rejects.csv").read_text(encoding="utf-8")
    assert_safe(rejects)
    assert f"'{FORMULA}" in cells(rejects) and "'=city" in cells(rejects)
    engine = open_store(load_settings(tmp_path / "p"))
    assert get_subscriber(engine, "ann@example.org").attributes == {"=city": "Rome"}
    engine.dispose()
