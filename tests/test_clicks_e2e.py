"""Click tracking end to end: a real SMTP send, its links clicked by people and scanners
through the public app, and the report's numbers exactly."""

from __future__ import annotations

import csv
import datetime as dt
import io
import json
import re
import warnings
from pathlib import Path

import pytest
import sqlalchemy as sa

from newsletter.db.tables import clicks as clicks_table
from newsletter.delivery import sending
from newsletter.feedback import clicks
from newsletter.web import create_app

from .sendtools import make_project, run_cli, seed
from .smtpserver import SMTPTestServer

with warnings.catch_warnings():
    warnings.simplefilter("ignore", DeprecationWarning)
    from starlette.testclient import TestClient

FIXTURE = Path(__file__).parent / "fixtures" / "typical-issue.md"
# the typical issue, with links in a Hard Numbers item and a What We're Watching item
LINKED = {
    "Households that applied for the winter heating grant":
        "Households that applied for the [winter heating grant](https://news.sendtest.news/grant)",
    "The constitutional court hands down":
        "The [constitutional court](https://news.sendtest.news/court) hands down",
}
T0 = dt.datetime(2026, 11, 30, 6, 0, tzinfo=dt.UTC)
TRACKED = re.compile(r'href="(https://sendtest\.news/c/[A-Za-z0-9_-]+\.[0-9]+)"')


def linked_issue(project: Path, front: str = "") -> Path:
    """The typical issue with the LINKED links (and ``front`` matter lines added), as
    issues/2026-12-03.md of ``project``."""
    issue = FIXTURE.read_text("utf-8").replace("date: 2026-12-03\n",
                                                "date: 2026-12-03\n" + front, 1)
    for old, new in LINKED.items():
        issue = issue.replace(old, new)
    path = project / "issues" / "2026-12-03.md"
    path.write_text(issue, encoding="utf-8")
    return path


class Clock:
    def __init__(self) -> None:
        self.now = T0

    def __call__(self) -> dt.datetime:
        return self.now

    def at(self, seconds: float) -> None:
        self.now = T0 + dt.timedelta(seconds=seconds)


@pytest.fixture
def sent(tmp_path: Path):
    """A project whose issue went by SMTP to 10 subscribers; what each received."""
    with SMTPTestServer() as smtp:
        settings = make_project(tmp_path / "p").model_copy(update={"smtp_url": smtp.url})
        engine = seed(settings, 10)
        path = linked_issue(settings.project_dir)
        prepared = sending.preflight(settings, path)
        started = sending.start(engine, settings, prepared, "daily", backend="smtp")
        result = sending.run(engine, settings, started.send.id, backend="smtp")
        assert result.counts == {"sent": 10}
        received = {f"r{n}@example.com": smtp.parsed(f"r{n}@example.com")[0]
                    for n in range(1, 11)}
    yield settings, engine, started.send.id, received
    engine.dispose()


def _parts(message) -> tuple[str, str]:
    text = message.get_body(("plain",)).get_content()
    html = message.get_body(("html",)).get_content()
    return text, html


def test_every_content_link_is_tracked_and_the_footer_is_not(sent) -> None:
    settings, engine, send_id, received = sent
    text, html = _parts(received["r1@example.com"])
    links = clicks.links(engine, send_id)
    assert links[0].section_kind == "Canary"
    # the canary is the first link of the body, and hidden
    first = re.search(r"<body[^>]*>\s*<a ([^>]*)>", html)
    assert first and 'aria-hidden="true"' in first.group(1) and "display:none" in first.group(1)
    tracked = TRACKED.findall(html)
    assert len(tracked) == len(links)  # every content link, the canary once
    assert not re.search(r'href="https://(?!sendtest\.news)[^"]*"', html)  # none left bare
    assert "/u/" in html and "/p/" in html  # unsubscribe and preferences: as they were
    assert f"{settings.base_url}/subscribe" in html
    # the text part's numbered links are tracked too, with the HTML links' tokens
    text_links = re.findall(r"^\[\d+\] (\S+?)\r?$", text, re.M)
    assert text_links and all(u.startswith(f"{settings.base_url}/c/") for u in text_links)
    assert set(text_links) <= set(tracked)
    # sections: each Hard Numbers item and each Story is its own
    assert [(link.section_kind, link.item_title) for link in links[1:4]] == [
        ("Lead", None), ("Lead", None), ("Hard Numbers", "1.8 million")]
    court = next(link for link in links if link.url.endswith("/court"))
    assert court.section == ("What We're Watching: A coalition vote, a court ruling and a "
                             "comet / The data-retention ruling")
    assert links[-1].section_kind == "Story"
    # each recipient has their own tokens
    other = TRACKED.findall(_parts(received["r2@example.com"])[1])
    assert not set(other) & set(tracked)
    # the archive's web copy carries none
    page = (settings.project_dir / "out").rglob("*.html")
    for path in page:
        assert "/c/" not in path.read_text("utf-8")


def test_people_and_scanners_clicked_and_the_report_counts_them_apart(
        sent, monkeypatch: pytest.MonkeyPatch) -> None:
    settings, engine, send_id, received = sent
    clock = Clock()
    monkeypatch.setattr(clicks, "now", clock)
    html_of = {email: TRACKED.findall(_parts(m)[1]) for email, m in received.items()}
    text_of = {email: re.findall(r"^\[\d+\] (\S+?)\r?$", _parts(m)[0], re.M)
               for email, m in received.items()}
    links = clicks.links(engine, send_id)
    lead = next(i for i, link in enumerate(links) if link.section_kind == "Lead")
    numbers = next(i for i, link in enumerate(links) if link.section_kind == "Hard Numbers")
    app = create_app(settings, preview=False, public=True)
    with TestClient(app, base_url="https://sendtest.news") as client:
        def get(email: str, idx: int, when: float, method: str = "GET"):
            clock.at(when)
            answer = client.request(method, html_of[email][idx], follow_redirects=False)
            assert answer.status_code == 302
            assert answer.headers["location"] == links[idx].url
            return answer

        # people: spaced GETs
        get("r1@example.com", lead, 0)
        get("r1@example.com", numbers, 300)
        get("r2@example.com", lead, 10)
        clock.at(900)
        story_text = text_of["r2@example.com"][-1]  # a Story's link, from the text part
        assert client.get(story_text, follow_redirects=False).status_code == 302
        get("r3@example.com", lead, 20, "HEAD")  # a scanner's check, then the person
        get("r3@example.com", lead, 50)
        # scanners: the canary with two links around it, and a rapid burst
        get("r4@example.com", 0, 100)
        get("r4@example.com", lead, 100.3)
        get("r4@example.com", numbers, 100.6)
        get("r5@example.com", 1, 200)
        get("r5@example.com", 2, 200.5)
        get("r5@example.com", 3, 201)
        # forged and altered tokens: a plain 400, nothing recorded, no redirect
        token = html_of["r6@example.com"][lead].rsplit("/", 1)[1]
        altered = token[:-3] + ("A" if token[-3] != "A" else "B") + token[-2:]
        for bad in (altered, "x" * 22, token[:-1], "AAAAAAAAAAAAAAAAAAAAAA"):
            answer = client.get(f"/c/{bad}", follow_redirects=False)
            assert answer.status_code == 400 and "location" not in answer.headers
            assert "r6" not in answer.text and "example.com" not in answer.text
        app.state.parts[0].state.click_writer.flush()
    with engine.connect() as conn:
        stored = conn.execute(sa.select(sa.func.count()).select_from(clicks_table)).scalar()
        assert stored == 12  # 5 people's + 7 flagged; the forged ones: none
        assert not conn.execute(sa.select(clicks_table).where(
            clicks_table.c.subscriber_id == 6)).first()
    assert clicks.unique_human_clickers(engine, send_id) == 3

    project = settings.project_dir
    done = run_cli(project, "sends", "report", str(send_id), "--format", "json")
    assert done.returncode == 0, done.stderr
    data = json.loads(done.stdout)
    assert (data["sent"], data["unique_clickers"], data["click_rate"]) == (10, 3, 0.3)
    assert (data["human_clicks"], data["flagged_clicks"]) == (5, 7)
    assert data["flagged"] == {"head": 1, "canary": 3, "burst": 3}
    by_section = {s["section"]: s for s in data["sections"]}
    lead_label = links[lead].section
    assert by_section[lead_label]["human_clicks"] == 3
    assert by_section[lead_label]["unique_clickers"] == 3
    assert by_section[links[numbers].section]["human_clicks"] == 1
    assert sum(s["human_clicks"] for s in data["sections"]) == 5
    assert data["opens"]["note"] == "may include machine opens"

    table = run_cli(project, "sends", "report", str(send_id))
    assert table.returncode == 0, table.stderr
    assert "unique clickers 3, click rate 30.0%, people's clicks 5" in table.stdout
    assert "flagged clicks 7 (link scanners, not counted: burst 3, canary 3, head 1)" in (
        table.stdout)

    rows = list(csv.reader(io.StringIO(run_cli(project, "sends", "report", str(send_id),
                                               "--format", "csv").stdout)))
    assert rows[0] == ["email", "link", "section", "clicked_at", "counted_as"]
    r1 = [row for row in rows[1:] if row[0] == "r1@example.com"]
    assert [(row[1], row[4]) for row in r1] == [(links[lead].url, "human"),
                                                (links[numbers].url, "human")]
    assert sum(1 for row in rows[1:] if row[4].startswith("flagged")) == 7


def test_report_of_an_unknown_send_is_one_line(tmp_path: Path) -> None:
    settings = make_project(tmp_path / "p")
    seed(settings, 1).dispose()
    done = run_cli(settings.project_dir, "sends", "report", "99")
    assert done.returncode != 0
    assert "no send with id 99" in done.stderr and "Traceback" not in done.stderr
