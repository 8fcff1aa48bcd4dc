"""Every subscriber status change goes through ``audience.status_changes``, the one path.

Each entry point (the web unsubscribe link, the SendGrid webhook, the CLI's unsubscribe,
add --resubscribe and remove, the CSV import's status columns) is driven as a user
drives it, on SQLite and PostgreSQL; the test records which of ``audience.status_changes``'s writers
ran, and reads back what was stored: the status, when it changed and why. A change the
rules refuse leaves the status, its time and its reason exactly as they were, whichever
entry point asked.
"""

from __future__ import annotations

import datetime as dt
import io
import re
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import sqlalchemy as sa

from newsletter.audience import status_changes
from newsletter.audience.importer import import_csv
from newsletter.audience.subscribers import (
    SubscriberNotFound,
    add_subscriber,
    get_subscriber,
    set_status,
    subscriber_lists,
)
from newsletter.cli import main
from newsletter.db.tables import memberships, subscribers

from .test_web_public import ONE_CLICK, Site, _event, _site, keypair  # noqa: F401 (fixture)

REPO_PACKAGE = Path(__file__).resolve().parent.parent / "newsletter"


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def site(request, tmp_path: Path, keypair) -> Iterator[Site]:  # noqa: F811
    with _site(tmp_path, request.param, keypair, count=9) as value:
        yield value


@pytest.fixture
def calls(monkeypatch: pytest.MonkeyPatch) -> list[tuple[str, str]]:
    """(writer, target) of every write ``audience.status_changes`` makes, in order."""
    seen: list[tuple[str, str]] = []

    def spy(name: str, original: Callable) -> Callable:
        def wrapper(*args, **kwargs):
            target = "erased" if name == "erase" else args[2 if name == "set_membership" else 1]
            seen.append((name, target))
            return original(*args, **kwargs)
        return wrapper

    for name in ("set_global", "set_membership", "erase"):
        monkeypatch.setattr(status_changes, name, spy(name, getattr(status_changes, name)))
    return seen


def cli(site: Site, monkeypatch: pytest.MonkeyPatch, capsys, *args: str) -> tuple[int, str]:
    monkeypatch.setattr(sys, "stdin", io.StringIO(""))  # not a terminal
    capsys.readouterr()
    with pytest.raises(SystemExit) as exit_info:
        main(["--project", str(site.settings.project_dir), *args])
    out, err = capsys.readouterr()
    return int(exit_info.value.code or 0), out + err


def stored(site: Site, email: str, list_name: str | None = None) -> tuple:
    """(status, when, why) as stored: globally, or of the membership of ``list_name``."""
    sub = get_subscriber(site.engine, email)
    if list_name is None:
        return sub.status, sub.status_changed_at, sub.status_reason
    for m in subscriber_lists(site.engine, sub.id):
        if m.list_name == list_name:
            return m.status, m.status_changed_at, m.status_reason
    return None, None, None


def write_csv(tmp_path: Path, name: str, text: str) -> Path:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


def test_each_entry_point_changes_statuses_through_the_one_path(
    site: Site, calls: list, monkeypatch: pytest.MonkeyPatch, capsys, tmp_path: Path
) -> None:
    def step(action: Callable[[], object], email: str, expected_calls: list,
             expected: tuple[str, str], list_name: str | None = None) -> None:
        calls.clear()
        before = dt.datetime.now(dt.UTC)
        action()
        after = dt.datetime.now(dt.UTC)
        assert calls == expected_calls, email
        state, when, why = stored(site, email, list_name)
        assert (state, why) == expected, email
        assert before - dt.timedelta(seconds=1) <= when <= after + dt.timedelta(seconds=1)

    post = site.post
    step(lambda: post(f"/u/{site.token('r1@example.com')}", data=ONE_CLICK), "r1@example.com",
         [("set_membership", "unsubscribed")], ("unsubscribed", "unsubscribe link: this list"),
         list_name="daily")
    step(lambda: post(f"/u/{site.token('r2@example.com')}", data={"scope": "all"}),
         "r2@example.com", [("set_global", "unsubscribed")],
         ("unsubscribed", "unsubscribe link: everything"))
    step(lambda: site.hook([_event(1, "bounce", "r3@example.com", type="bounce",
                                   reason="550 no such\nuser")]),
         "r3@example.com", [("set_global", "bounced")], ("bounced", "SendGrid: 550 no such user"))
    step(lambda: site.hook([_event(2, "spamreport", "r4@example.com")]), "r4@example.com",
         [("set_global", "complained")], ("complained", "SendGrid: spam report"))
    step(lambda: site.hook([_event(3, "unsubscribe", "r5@example.com")]), "r5@example.com",
         [("set_global", "unsubscribed")], ("unsubscribed", "SendGrid: SendGrid unsubscribe"))
    run = lambda *args: cli(site, monkeypatch, capsys, *args)  # noqa: E731
    step(lambda: run("subscribers", "unsubscribe", "r6@example.com", "--reason", "asked"),
         "r6@example.com", [("set_global", "unsubscribed")], ("unsubscribed", "asked"))
    step(lambda: run("subscribers", "add", "r6@example.com", "--resubscribe", "--yes"),
         "r6@example.com", [("set_global", "active")], ("active", "resubscribed"))
    path = write_csv(tmp_path, "in.csv", "email,status\nr7@example.com,bounced\n")
    step(lambda: import_csv(site.engine, path), "r7@example.com", [("set_global", "bounced")],
         ("bounced", "import of in.csv"))
    path = write_csv(tmp_path, "back.csv", "email\nr7@example.com\n")
    step(lambda: import_csv(site.engine, path, resubscribe=True), "r7@example.com",
         [("set_global", "active")], ("active", "resubscribed by import of back.csv"))

    calls.clear()
    assert run("subscribers", "remove", "r8@example.com", "--yes")[0] == 0
    assert calls == [("erase", "erased")]
    with pytest.raises(SubscriberNotFound):
        get_subscriber(site.engine, "r8@example.com")
    with site.engine.connect() as conn:  # gone with its memberships
        assert conn.execute(sa.select(sa.func.count()).select_from(memberships)
                            .where(memberships.c.subscriber_id == 8)).scalar() == 0


def test_an_illegal_change_is_refused_the_same_way_everywhere(
    site: Site, monkeypatch: pytest.MonkeyPatch, capsys, tmp_path: Path
) -> None:
    """A complaint is never weakened or undone without an explicit resubscribe; a list
    left is not rejoined without one: the stored status, time and reason stay."""
    site.hook([_event(1, "spamreport", "r1@example.com")])
    site.post(f"/u/{site.token('r2@example.com')}", data=ONE_CLICK)
    complained, left = stored(site, "r1@example.com"), stored(site, "r2@example.com", "daily")
    assert complained[0] == "complained" and left[0] == "unsubscribed"
    run = lambda *args: cli(site, monkeypatch, capsys, *args)  # noqa: E731

    attempts: list[Callable[[], object]] = [
        lambda: site.post(f"/u/{site.token('r1@example.com')}", data={"scope": "all"}),
        lambda: site.hook([_event(2, "unsubscribe", "r1@example.com"),
                           _event(3, "bounce", "r1@example.com", type="bounce")]),
        lambda: run("subscribers", "unsubscribe", "r1@example.com"),
        lambda: run("subscribers", "add", "r1@example.com", "--list", "daily"),
        lambda: run("subscribers", "add", "r2@example.com", "--list", "daily"),
        lambda: set_status(site.engine, "r1@example.com", "bounced", "by hand"),
        lambda: set_status(site.engine, "r1@example.com", "active", "by hand"),
        lambda: import_csv(site.engine, write_csv(
            tmp_path, "a.csv", "email,status,list_status\n"
            "r1@example.com,unsubscribed,\nr2@example.com,active,subscribed\n"),
            list_name="daily"),
    ]
    for n, attempt in enumerate(attempts):
        attempt()
        assert stored(site, "r1@example.com") == complained, n
        assert stored(site, "r2@example.com", "daily") == left, n
    assert run("subscribers", "unsubscribe", "r1@example.com")[1].strip().endswith(
        "already unsubscribed from everything")
    report = import_csv(site.engine, tmp_path / "a.csv", list_name="daily")
    assert (report.kept_unsubscribed, report.status_applied) == (2, 0)
    assert site.hook([_event(4, "bounce", "r1@example.com", type="bounce")]).json()[
        "applied"] == 1  # received and applied, and it changed nothing: the rules said no
    assert not set_status(site.engine, "r1@example.com", "unsubscribed")

    # only an explicit resubscribe brings them back, through the same path
    assert add_subscriber(site.engine, "r1@example.com", lists=["daily"],
                          resubscribe=True).resubscribed
    assert stored(site, "r1@example.com")[::2] == ("active", "resubscribed")
    code, out = run("subscribers", "add", "r2@example.com", "--list", "daily",
                    "--resubscribe", "--yes")
    assert code == 0 and stored(site, "r2@example.com", "daily")[::2] == (
        "subscribed", "resubscribed")


def test_the_rules_in_one_table() -> None:
    """What may become what: stronger only; active only by an explicit resubscribe."""
    order = ["active", "unsubscribed", "bounced", "complained"]
    for current in order:
        for target in order:
            expected = (order.index(target) > order.index(current)
                        if target != "active" else False)
            assert status_changes.may_change(current, target) is expected, (current, target)
            assert status_changes.may_change(current, target, resubscribe=True) is (
                expected or (target == "active" and current != "active"))
    assert status_changes.may_change_membership(None, "subscribed", active=True)
    assert not status_changes.may_change_membership(None, "subscribed", active=False)
    assert not status_changes.may_change_membership("unsubscribed", "subscribed", active=True)
    assert status_changes.may_change_membership("unsubscribed", "subscribed", active=True,
                                        resubscribe=True)
    assert status_changes.may_change_membership(None, "unsubscribed", active=False)
    assert not status_changes.may_change_membership("unsubscribed", "unsubscribed", active=True)


# What writes a subscriber's or membership's status, or deletes them, in SQL.
_WRITES = re.compile(
    r"(?i)\b(update|delete)\s*\(\s*(subscribers|memberships)\b"
    r"|\b(subscribers|memberships)\s*\.\s*(update|delete)\s*\("
    r"|\bUPDATE\s+(subscribers|memberships)\b|\bDELETE\s+FROM\s+(subscribers|memberships)\b"
)
#: deleting a list takes its memberships with it: not a subscriber's status change; the
#: preference centre's name in greetings and the welcome's ``welcomed_at`` are no status
_ALLOWED = {("audience/lists.py", "delete(memberships"),
            ("audience/preferences.py", "update(subscribers"),
            ("audience/welcome.py", "update(subscribers")}


def test_no_module_but_status_changes_writes_a_status() -> None:
    found = []
    for path in sorted(REPO_PACKAGE.rglob("*.py")):
        name = path.relative_to(REPO_PACKAGE).as_posix()
        if name == "audience/status_changes.py" or "/migrations/" in name:
            continue
        for match in _WRITES.finditer(path.read_text("utf-8")):
            text = re.sub(r"\s+", "", match.group(0)).replace("sa.", "")
            if (name, text) not in _ALLOWED:
                found.append(f"{name}: {match.group(0)}")
    assert found == []
    assert _WRITES.search("conn.execute(sa.update(subscribers).values(status='active'))")
    assert _WRITES.search('"UPDATE memberships SET status = ?"')
    assert subscribers.name == "subscribers"  # the tables the pattern names
