"""CSV import and export on SQLite and PostgreSQL: formats, rejects, idempotence, and the
rule that an import never makes an unsubscribed, bounced or complained address active."""

from __future__ import annotations

import csv
import io
from pathlib import Path

import pytest
import sqlalchemy as sa
from sqlalchemy.engine import Engine

from newsletter.audience.importer import export_csv, import_csv, rejects_path_for
from newsletter.audience.lists import create_list, get_list
from newsletter.audience.subscribers import (
    add_subscriber,
    count_by_status,
    count_subscribers,
    get_subscriber,
    list_subscribers,
    sendable_batch,
    set_status,
    subscriber_lists,
    unsubscribe,
)
from newsletter.db.tables import lists, memberships, subscribers
from newsletter.errors import UsageError


def write(path: Path, text: str, bom: bool = False, crlf: bool = False) -> Path:
    data = text.replace("\n", "\r\n") if crlf else text
    path.write_bytes((b"\xef\xbb\xbf" if bom else b"") + data.encode("utf-8"))
    return path


def state(engine: Engine) -> list[tuple]:
    """Everything a user can see, independent of ids and timestamps."""
    rows = []
    for sub in list_subscribers(engine):
        member = sorted((m.list_name, m.status) for m in subscriber_lists(engine, sub.id))
        rows.append((sub.email, sub.name, sub.status, sorted(sub.attributes.items()), member))
    return rows


def test_real_world_export_semicolons_bom_crlf_first_last_names(
    store: Engine, tmp_path: Path
) -> None:
    create_list(store, "daily")
    path = write(
        tmp_path / "members.csv",
        "E-mail Address;First Name;Last Name;City;Plan\n"
        'Ann@Example.ORG;Ann;Lee;"Paris; FR";paid\n'
        '"bob@example.org";"Bob ""The Builder""";;Oslo;\n'
        'chloé@example.org;Chloé;Ämmä;"Multi\nline";free\n'
        "dan@example.org;;;;\n",
        bom=True,
        crlf=True,
    )
    report = import_csv(store, path, list_name="daily")
    assert (report.rows, report.added, report.rejected) == (4, 4, 0)
    assert report.rejects_path is None and not rejects_path_for(path).exists()
    ann = get_subscriber(store, "ann@example.org")
    assert ann.email == "Ann@example.org" and ann.name == "Ann Lee"
    assert ann.attributes == {"City": "Paris; FR", "Plan": "paid"}
    assert get_subscriber(store, "bob@example.org").name == 'Bob "The Builder"'
    chloe = get_subscriber(store, "chloé@example.org")
    assert chloe.name == "Chloé Ämmä" and chloe.attributes["City"] == "Multi\r\nline"
    dan = get_subscriber(store, "dan@example.org")
    assert dan.name is None and dan.attributes == {}
    assert [s.email for s in sendable_batch(store, get_list(store, "daily").id)] == [
        "Ann@example.org",
        "bob@example.org",
        "chloé@example.org",
        "dan@example.org",
    ]


@pytest.mark.parametrize(
    ("header", "delimiter"),
    [
        ("email_address\tName\tcompany", "\t"),
        ("EMAIL,NAME,Company", ","),
        ("Mail;Full Name;company", ";"),
    ],
)
def test_header_aliases_and_delimiters(
    store: Engine, tmp_path: Path, header: str, delimiter: str
) -> None:
    rows = (
        delimiter.join(["x@example.org", "X Person", "ACME, Inc."])
        if delimiter != ","
        else ('x@example.org,X Person,"ACME, Inc."')
    )
    path = write(tmp_path / "in.csv", f"{header}\n{rows}\n")
    report = import_csv(store, path)
    assert report.added == 1
    sub = get_subscriber(store, "x@example.org")
    assert sub.name == "X Person"
    assert list(sub.attributes.values()) == ["ACME, Inc."]


def test_name_column_keeps_first_and_last_as_attributes(store: Engine, tmp_path: Path) -> None:
    path = write(tmp_path / "in.csv", "email,name,first_name,last_name\na@example.org,A B,A,B\n")
    import_csv(store, path)
    sub = get_subscriber(store, "a@example.org")
    assert sub.name == "A B" and sub.attributes == {"first_name": "A", "last_name": "B"}


def test_rejects_file_names_line_and_reason(store: Engine, tmp_path: Path) -> None:
    path = write(
        tmp_path / "list.csv",
        "email,name\n"  # line 1
        "a@example.org,A\n"  # 2
        "\n"  # 3: empty
        "not-an-address,B\n"  # 4
        '"multi@example.org","two\nlines"\n'  # 5-6
        "A@EXAMPLE.ORG,dup in chunk\n"  # 7
        ",no address\n"  # 8
        "c@example.org,C\n"  # 9
        "x@mail.localhost,D\n"  # 10
        "multi@example.org,dup across chunks\n",  # 11
    )
    report = import_csv(store, path, chunk_rows=2)
    assert (report.rows, report.added, report.invalid, report.empty, report.duplicates) == (
        9,
        3,
        3,
        1,
        2,
    )
    with open(report.rejects_path, encoding="utf-8", newline="") as f:
        rejected = {int(r["line"]): r for r in csv.DictReader(f)}
    assert sorted(rejected) == [3, 4, 7, 8, 10, 11]
    assert rejected[3]["reason"] == "empty row"
    assert rejected[4]["reason"].startswith("invalid email address 'not-an-address'")
    assert rejected[4]["name"] == "B"
    assert rejected[7]["reason"] == "duplicate of line 2"
    assert rejected[8]["reason"].startswith("invalid email address '': no email address")
    assert "special-use" in rejected[10]["reason"]
    assert rejected[11]["reason"] == "duplicate of line 5"
    assert count_subscribers(store) == 3
    # Again, now that every address exists: the same rows are duplicates of the same lines.
    again = import_csv(store, path, chunk_rows=2)
    assert (again.unchanged, again.duplicates, again.invalid, again.empty) == (3, 2, 3, 1)
    with open(again.rejects_path, encoding="utf-8", newline="") as f:
        assert {int(r["line"]): r["reason"] for r in csv.DictReader(f)} == {
            line: row["reason"] for line, row in rejected.items()
        }
    # A later clean run removes the stale rejects file.
    clean = write(tmp_path / "list.csv", "email\nz@example.org\n")
    assert import_csv(store, clean).rejects_path is None
    assert not rejects_path_for(clean).exists()


def test_reimport_changes_nothing(store: Engine, tmp_path: Path) -> None:
    create_list(store, "daily")
    lines = ["email,name,city"] + [f"user{n}@example.org,User {n},C{n % 3}" for n in range(50)]
    path = write(tmp_path / "in.csv", "\n".join(lines) + "\n")
    first = import_csv(store, path, list_name="daily", chunk_rows=7)
    assert first.added == 50
    before = state(store)
    again = import_csv(store, path, list_name="daily", chunk_rows=7)
    assert (again.added, again.joined, again.unchanged) == (0, 0, 50)
    assert state(store) == before


@pytest.mark.parametrize("how", ["unsubscribed", "bounced", "complained", "list-unsubscribed"])
def test_import_never_reactivates_an_address_that_left(
    store: Engine, tmp_path: Path, how: str
) -> None:
    """The most important rule: only --resubscribe brings them back, counted apart."""
    create_list(store, "daily")
    add_subscriber(store, "Left@Example.org", lists=["daily"])
    add_subscriber(store, "stays@example.org", lists=["daily"])
    if how == "list-unsubscribed":
        unsubscribe(store, "left@example.org", list_name="daily")
    else:
        set_status(store, "left@example.org", how, "by test")
    path = write(
        tmp_path / "in.csv",
        "email,name,status,list_status\n"
        "LEFT@example.org,Left,active,subscribed\n"  # the file even claims they are active
        "stays@example.org,,,\n"
        "new@example.org,New,,\n",
    )
    daily = get_list(store, "daily").id
    for _ in range(2):
        report = import_csv(store, path, list_name="daily")
        assert report.kept_unsubscribed == 1 and report.resubscribed == 0
        left = get_subscriber(store, "left@example.org")
        expected_status = "active" if how == "list-unsubscribed" else how
        assert left.status == expected_status
        sendable = {s.email for s in sendable_batch(store, daily)}
        assert sendable == {"stays@example.org", "new@example.org"}

    report = import_csv(store, path, list_name="daily", resubscribe=True)
    assert report.resubscribed == 1 and report.kept_unsubscribed == 0
    assert get_subscriber(store, "left@example.org").status == "active"
    assert "Left@example.org" in {s.email for s in sendable_batch(store, daily)}
    assert "resubscribed" in (
        get_subscriber(store, "left@example.org").status_reason
        if how != "list-unsubscribed"
        else subscriber_lists(store, get_subscriber(store, "left@example.org").id)[0].status_reason
    )


def test_status_columns_only_ever_unsubscribe(store: Engine, tmp_path: Path) -> None:
    create_list(store, "daily")
    add_subscriber(store, "a@example.org", lists=["daily"])
    add_subscriber(store, "b@example.org", lists=["daily"])
    path = write(
        tmp_path / "in.csv",
        "email,status,list_status\n"
        "a@example.org,complained,\n"
        "b@example.org,,unsubscribed\n"
        "c@example.org,bounced,\n"
        "d@example.org,weird,\n",
    )
    report = import_csv(store, path, list_name="daily")
    assert (report.status_applied, report.added, report.invalid) == (2, 1, 1)
    assert get_subscriber(store, "a@example.org").status == "complained"
    assert get_subscriber(store, "c@example.org").status == "bounced"
    assert sendable_batch(store, get_list(store, "daily").id) == []
    assert import_csv(store, path, list_name="daily").status_applied == 0  # idempotent


def test_export_then_import_gives_the_same_state(store: Engine, tmp_path: Path) -> None:
    create_list(store, "daily")
    add_subscriber(
        store, "a@example.org", name='Ann, "A"', lists=["daily"], attributes={"city": "Rome"}
    )
    add_subscriber(store, "b@example.org", lists=["daily"], attributes={"plan": "paid", "é": "ü"})
    add_subscriber(store, "c@example.org", name="Cé", lists=["daily"])
    add_subscriber(store, "d@example.org", lists=["daily"])
    unsubscribe(store, "b@example.org", list_name="daily")
    set_status(store, "c@example.org", "bounced")
    unsubscribe(store, "d@example.org")
    buffer = io.StringIO()
    assert export_csv(store, buffer, list_name="daily") == 4
    path = tmp_path / "export.csv"
    path.write_text(buffer.getvalue(), encoding="utf-8", newline="")
    before = state(store)
    with store.begin() as conn:
        conn.execute(sa.delete(memberships))
        conn.execute(sa.delete(subscribers))
        conn.execute(sa.delete(lists))
    create_list(store, "daily")
    report = import_csv(store, path, list_name="daily")
    assert report.added == 4 and report.rejected == 0
    assert state(store) == before
    again = io.StringIO()
    export_csv(store, again, list_name="daily")
    assert again.getvalue() == buffer.getvalue()
    assert count_by_status(store, list_name="daily") == {
        "active": 1,
        "unsubscribed": 2,
        "bounced": 1,
        "complained": 0,
    }


def test_bad_files_are_one_line_errors(store: Engine, tmp_path: Path) -> None:
    with pytest.raises(UsageError, match=r"in.csv:1: no email column in the header"):
        import_csv(store, write(tmp_path / "in.csv", "name,city\nA,B\n"))
    png = tmp_path / "photo.csv"
    png.write_bytes(b"\x89PNG\r\n\x1a\n" + bytes(range(256)) * 4)
    with pytest.raises(UsageError, match=r"photo.csv: a PNG image, not a CSV file"):
        import_csv(store, png)
    with pytest.raises(UsageError, match="no such file"):
        import_csv(store, tmp_path / "missing.csv")
    with pytest.raises(UsageError, match="appears twice"):
        import_csv(store, write(tmp_path / "dup.csv", "email,city,city\n"))
    create_list(store, "daily")
    with pytest.raises(Exception, match="no list named 'nope'"):
        import_csv(store, write(tmp_path / "ok.csv", "email\na@example.org\n"), list_name="nope")
    assert count_subscribers(store) == 0


def test_progress_reports_bytes_and_rows(store: Engine, tmp_path: Path) -> None:
    lines = ["email"] + [f"p{n}@example.org" for n in range(30)]
    path = write(tmp_path / "in.csv", "\n".join(lines) + "\n")
    calls: list[tuple[int, int, int]] = []
    import_csv(store, path, chunk_rows=10, progress=lambda *a: calls.append(a))
    assert [rows for _, _, rows in calls] == [10, 20, 30]
    assert calls[-1][0] == calls[-1][1] == path.stat().st_size


def test_demo_subscribers_are_imported_once(settings) -> None:  # type: ignore[no-untyped-def]
    from newsletter.audience.importer import DEMO_LIST, import_demo_subscribers
    from newsletter.db.connect import open_store

    lines: list[str] = []
    first = import_demo_subscribers(settings, lines.append)
    assert (first.added, first.invalid, first.duplicates) == (5, 1, 1)
    assert lines[0] == "created list 'demo'"
    second = import_demo_subscribers(settings, lines.append)
    assert (second.added, second.unchanged) == (0, 5)
    engine = open_store(settings)
    assert count_subscribers(engine, list_name=DEMO_LIST, status="active") == 5
    engine.dispose()
