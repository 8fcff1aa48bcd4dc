"""The web archive's store: publish, entries, slugs, resolve, backfill and the feed.

Each test runs on SQLite and PostgreSQL (the ``store`` fixture) with a real project's
sample issues. The pages themselves (``/archive``, ``/archive/SLUG``, the feed over
HTTP) are tested in test_web_public.py.
"""

from __future__ import annotations

import shutil
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest
from sqlalchemy.engine import Engine

from newsletter.audience.lists import create_list
from newsletter.authoring.slugs import file_slug
from newsletter.delivery import archive, ledger
from newsletter.errors import NewsletterError
from newsletter.web.archive import ATOM, feed_xml

from .sendtools import NEWSROOM, make_project

HARBOUR = "The harbour vote, and why it matters beyond the port"


@pytest.fixture
def settings(tmp_path: Path):
    return make_project(tmp_path / "p")


def _issue(settings, name: str) -> Path:
    return settings.project_dir / "issues" / name


def test_publish_stores_the_generic_web_copy(store: Engine, settings) -> None:
    path = _issue(settings, "2026-11-25.md")
    path.write_text(path.read_text("utf-8").replace(
        "Dock workers at Eastmouth", "Good morning, {{name|reader}}. Dock workers at Eastmouth"),
        "utf-8")
    entry = archive.publish(store, settings, path)
    assert (entry.slug, str(entry.issue_date), entry.subject) == ("2026-11-25", "2026-11-25",
                                                                  HARBOUR)
    assert entry.date_text == "Wednesday, 25 November 2026"
    found = archive.get_entry(store, "2026-11-25")
    assert found is not None
    html = found[1]
    assert "Good morning, reader." in html and "{{" not in html
    assert "/u/" not in html  # no personal unsubscribe link in a public copy
    assert archive.get_entry(store, "2026-11-26") is None


def test_entries_are_newest_first_and_each_issue_once(store: Engine, settings) -> None:
    archive.publish(store, settings, _issue(settings, "2026-11-24.md"))
    first = archive.publish(store, settings, _issue(settings, "2026-11-25.md"))
    copy = _issue(settings, "harbour vote (final).md")
    shutil.copy(_issue(settings, "2026-11-25.md"), copy)
    again = archive.publish(store, settings, copy)  # sent again from a renamed copy
    assert again.slug == "2026-11-25" and again.published_at == first.published_at
    assert [e.slug for e in archive.entries(store)] == ["2026-11-25", "2026-11-24"]
    assert [e.slug for e in archive.entries(store, limit=1)] == ["2026-11-25"]


def test_an_edited_copy_replaces_the_entry_by_date_and_subject(store: Engine, settings) -> None:
    archive.publish(store, settings, _issue(settings, "2026-11-25.md"))
    fixed = _issue(settings, "2026-11-25-fixed.md")
    fixed.write_text(_issue(settings, "2026-11-25.md").read_text("utf-8").replace(
        "Dock workers at Eastmouth", "Dockers at Eastmouth"), "utf-8")
    assert archive.publish(store, settings, fixed).slug == "2026-11-25"
    assert "Dockers at Eastmouth" in archive.get_entry(store, "2026-11-25")[1]
    assert len(archive.entries(store)) == 1


def test_a_reused_file_name_for_another_issue_gets_its_own_slug(store: Engine, settings
                                                                ) -> None:
    path = _issue(settings, "2026-11-25.md")
    archive.publish(store, settings, path)
    text = path.read_text("utf-8")
    path.write_text(text.replace("date: 2026-11-25", "date: 2026-11-26").replace(
        f"subject: {HARBOUR}", "subject: Another day, another vote").replace(
        "Dock workers at Eastmouth vote today", "Dock workers at Eastmouth voted yesterday"),
        "utf-8")
    other = archive.publish(store, settings, path)
    assert other.slug == "2026-11-25-2" and other.subject == "Another day, another vote"
    assert {e.slug for e in archive.entries(store)} == {"2026-11-25", "2026-11-25-2"}


def test_a_file_name_that_is_not_url_safe_is_resolved_to_its_slug(store: Engine, settings
                                                                  ) -> None:
    odd = _issue(settings, "Café du Port 25.11.md")
    shutil.move(_issue(settings, "2026-11-25.md"), odd)
    entry = archive.publish(store, settings, odd)
    assert entry.slug == file_slug(odd) and entry.slug.startswith("cafe-du-port-25-11-")
    assert archive.resolve(store, entry.slug) == entry.slug
    assert archive.resolve(store, "Café du Port 25.11") == entry.slug  # the old, raw slug
    assert archive.resolve(store, "no-such-issue") is None


def test_an_issue_with_errors_is_not_published(store: Engine, settings) -> None:
    path = _issue(settings, "2026-11-25.md")
    path.write_text(path.read_text("utf-8").replace(f"subject: {HARBOUR}\n", ""), "utf-8")
    with pytest.raises(NewsletterError, match="cannot be archived"):
        archive.publish(store, settings, path)
    assert archive.entries(store) == []


def test_backfill_publishes_real_sends_missing_from_the_archive(store: Engine, settings
                                                                ) -> None:
    daily = create_list(store, "daily")
    for slug, kind in (("2026-11-24", "real"), ("2026-11-25", "test"), ("gone", "real")):
        ledger.create_send(store, kind=kind, issue_path=f"issues/{slug}.md", issue_slug=slug,
                           subject="S", list_id=daily.id, list_name="daily", backend="outbox",
                           html="", text="", test_to=["me@example.org"])
    assert archive.backfill(store, settings) == ["2026-11-24"]  # no test sends, no lost files
    assert archive.backfill(store, settings) == []
    assert [e.slug for e in archive.entries(store)] == ["2026-11-24"]


def test_feed_lists_the_entries_with_absolute_links(store: Engine, settings) -> None:
    archive.publish(store, settings, _issue(settings, "2026-11-24.md"))
    archive.publish(store, settings, _issue(settings, "2026-11-25.md"))
    base = NEWSROOM["base_url"]
    root = ET.fromstring(feed_xml(archive.entries(store), name="Send Test", base=base))
    ns = {"a": ATOM}
    assert root.findtext("a:title", namespaces=ns) == "Send Test"
    items = root.findall("a:entry", ns)
    assert [i.findtext("a:title", namespaces=ns) for i in items][0] == HARBOUR
    assert [i.find("a:link", ns).get("href") for i in items] == [
        f"{base}/archive/2026-11-25", f"{base}/archive/2026-11-24"]
    summary = items[0].findtext("a:summary", namespaces=ns)
    assert summary.startswith("Wednesday, 25 November 2026. Also: 38 degrees")
    empty = ET.fromstring(feed_xml([], name="Send Test", base=base))
    assert empty.findall("a:entry", ns) == [] and empty.findtext("a:updated", namespaces=ns)
