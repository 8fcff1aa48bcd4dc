"""The preference centre ``/p/{token}`` in-process over ASGI, on SQLite and PostgreSQL:
the footer's link opens the right subscriber's page, a pause keeps the next send away
until it ends, lists, name, download and erase, and every bad token gets one plain page."""

from __future__ import annotations

import contextlib
import datetime as dt
import json
import re
import warnings
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
import sqlalchemy as sa

from newsletter.audience import tokens
from newsletter.audience.lists import create_list
from newsletter.audience.subscribers import get_subscriber, subscriber_lists
from newsletter.config import Settings
from newsletter.db.tables import memberships, subscribers
from newsletter.delivery import ledger, sending
from newsletter.web import create_app

from .sendtools import make_project, pg_database, seed

with warnings.catch_warnings():
    warnings.simplefilter("ignore", DeprecationWarning)
    from starlette.testclient import TestClient

ISSUE = "issues/2026-11-24.md"


@dataclass
class Site:
    settings: Settings
    engine: sa.Engine
    client: TestClient
    responses: list[httpx.Response]

    def get(self, url: str, **kw) -> httpx.Response:
        response = self.client.get(url, **kw)
        self.responses.append(response)
        return response

    def post(self, url: str, **kw) -> httpx.Response:
        response = self.client.post(url, **kw)
        self.responses.append(response)
        return response

    def url(self, email: str, **kw) -> str:
        sub = get_subscriber(self.engine, email)
        return f"/p/{tokens.sign_preferences(self.settings, sub.id, **kw)}"

    def form(self, url: str, action: str, **fields) -> httpx.Response:
        """Press a button on the page as a browser does: GET it, POST its nonce."""
        page = self.get(url)
        assert page.status_code == 200, page.text
        nonce = re.search(r'name="nonce" value="([0-9a-f]+)"', page.text).group(1)
        return self.post(url, data={"nonce": nonce, "action": action, **fields})


@contextlib.contextmanager
def _site(tmp_path: Path, database: str) -> Iterator[Site]:
    with pg_database() if database == "postgresql" else contextlib.nullcontext() as url:
        settings = make_project(tmp_path / "p", url)
        engine = seed(settings, 3)
        responses: list[httpx.Response] = []
        app = create_app(settings, preview=False, public=True)
        with TestClient(app, raise_server_exceptions=False) as client:
            yield Site(settings, engine, client, responses)
        for response in responses:  # no traceback in any answer
            assert "Traceback" not in response.text and 'File "' not in response.text
        engine.dispose()


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def site(request, tmp_path: Path) -> Iterator[Site]:
    with _site(tmp_path, request.param) as value:
        yield value


def _send(site: Site, *, again: bool = False) -> list[str]:
    """Send the sample issue to 'daily' through the outbox; the addresses it reached."""
    outbox = site.settings.outbox_path
    before = set(outbox.glob("*.eml")) if outbox.exists() else set()
    prepared = sending.preflight(site.settings, site.settings.project_dir / ISSUE)
    started = sending.start(site.engine, site.settings, prepared, "daily", backend="outbox",
                            again=again)
    sending.run(site.engine, site.settings, started.send.id, backend="outbox")
    new = sorted(set(outbox.glob("*.eml")) - before)
    return sorted(re.search(r"^To: .*<?(r\d+@example\.com)>?$", p.read_text(), re.M).group(1)
                  for p in new)


def test_the_footer_link_opens_that_subscribers_page(site: Site) -> None:
    assert _send(site) == ["r1@example.com", "r2@example.com", "r3@example.com"]
    for path in sorted(site.settings.outbox_path.glob("*.eml")):
        message = path.read_text()
        to = re.search(r"^To: .*?(r\d+@example\.com)", message, re.M).group(1)
        plain = message.replace("=\n", "")  # quoted-printable soft breaks
        links = set(re.findall(r"https://sendtest\.news(/p/[A-Za-z0-9_-]+)", plain))
        assert len(links) == 1, links  # the same link in the HTML and the text part
        page = site.get(links.pop())
        assert page.status_code == 200 and to in page.text
        others = {f"r{n}@example.com" for n in (1, 2, 3)} - {to}
        assert not any(other in page.text for other in others)
        assert "no-store" in page.headers["cache-control"]


def test_the_archive_copy_has_no_preference_link(site: Site) -> None:
    _send(site)
    page = site.get("/archive/2026-11-24")
    assert page.status_code == 200 and "/p/" not in page.text and "preferences" not in page.text


def test_a_pause_skips_the_next_sends_until_it_ends(site: Site) -> None:
    url = site.url("r2@example.com")
    answer = site.form(url, "pause", weeks="2")
    assert answer.status_code == 200 and "Paused until" in answer.text
    assert _send(site) == ["r1@example.com", "r3@example.com"]
    sub = get_subscriber(site.engine, "r2@example.com")
    with site.engine.begin() as conn:  # two weeks later: the pause has ended by itself
        conn.execute(sa.update(subscribers).where(subscribers.c.id == sub.id).values(
            paused_until=dt.datetime.now(dt.UTC) - dt.timedelta(seconds=1)))
    assert "Pause for 1 week" in site.get(url).text  # the page offers a pause again
    assert _send(site, again=True) == ["r1@example.com", "r2@example.com", "r3@example.com"]


def test_a_pause_during_a_send_skips_the_pending_message(site: Site) -> None:
    prepared = sending.preflight(site.settings, site.settings.project_dir / ISSUE)
    send = sending.start(site.engine, site.settings, prepared, "daily", backend="outbox").send
    assert site.form(site.url("r1@example.com"), "pause", weeks="1").status_code == 200
    rows = {r.email: r for r in ledger.recipients(site.engine, send.id, ["skipped"])}
    assert set(rows) == {"r1@example.com"} and rows["r1@example.com"].reason == "paused"
    assert site.form(site.url("r1@example.com"), "resume").status_code == 200
    assert get_subscriber(site.engine, "r1@example.com").status == "active"


def test_lists_and_name(site: Site) -> None:
    weekly = create_list(site.engine, "weekly", description="The week in review")
    sub = get_subscriber(site.engine, "r1@example.com")
    now = dt.datetime.now(dt.UTC)
    with site.engine.begin() as conn:  # r1 was on 'weekly' and left it
        conn.execute(memberships.insert().values(
            list_id=weekly.id, subscriber_id=sub.id, status="unsubscribed", created_at=now,
            status_changed_at=now))
    url = site.url("r1@example.com")
    page = site.get(url)
    assert "weekly" in page.text and "The week in review" in page.text
    with site.engine.connect() as conn:
        daily = conn.execute(sa.text("SELECT id FROM lists WHERE name = 'daily'")).scalar_one()
    assert site.form(url, "lists", list=[str(weekly.id)]).status_code == 200
    lists = {m.list_name: m.status for m in subscriber_lists(site.engine, sub.id)}
    assert lists == {"daily": "unsubscribed", "weekly": "subscribed"}
    site.form(url, "lists", list=[str(weekly.id), str(daily), "999"])  # 999: not offered
    lists = {m.list_name: m.status for m in subscriber_lists(site.engine, sub.id)}
    assert lists == {"daily": "subscribed", "weekly": "subscribed"}
    assert site.form(url, "name", name="Ann\r\nBcc: x@evil.example").status_code == 200
    assert get_subscriber(site.engine, "r1@example.com").name == "Ann Bcc: x@evil.example"


def test_public_lists_are_offered_and_can_be_joined(site: Site) -> None:
    """A list the newsroom makes public (``public_lists``) is offered to every reader, as
    the sign-up form offers it; ticking it joins it. A private list they were never on is
    not shown."""
    create_list(site.engine, "weekend", description="The weekend long reads")
    create_list(site.engine, "staff", description="Internal")
    site.settings.public_lists = ["daily", "weekend"]
    url = site.url("r2@example.com")
    page = site.get(url)
    assert "The weekend long reads" in page.text and "Internal" not in page.text
    with site.engine.connect() as conn:
        ids = dict(conn.execute(sa.text("SELECT name, id FROM lists")).all())
    assert site.form(url, "lists", list=[str(ids["daily"]), str(ids["weekend"]),
                                         str(ids["staff"])]).status_code == 200
    sub = get_subscriber(site.engine, "r2@example.com")
    lists = {m.list_name: m.status for m in subscriber_lists(site.engine, sub.id)}
    assert lists == {"daily": "subscribed", "weekend": "subscribed"}  # not 'staff'


def test_download_my_data(site: Site) -> None:
    _send(site)
    answer = site.form(site.url("r2@example.com"), "download")
    assert answer.status_code == 200
    assert answer.headers["content-type"].startswith("application/json")
    assert "attachment" in answer.headers["content-disposition"]
    data = json.loads(answer.text)
    assert data["subscriber"]["email"] == "r2@example.com"
    assert [m["list"] for m in data["memberships"]] == ["daily"]
    assert [(s["list"], s["status"]) for s in data["sends_received"]] == [("daily", "sent")]
    assert "r1@example.com" not in answer.text and "r3@example.com" not in answer.text


def test_erase_asks_once_then_erases_as_subscribers_remove_does(site: Site) -> None:
    _send(site)
    url = site.url("r3@example.com")
    ask = site.form(url, "erase")
    assert ask.status_code == 200 and "Yes, erase me" in ask.text
    assert get_subscriber(site.engine, "r3@example.com")  # asking changed nothing
    nonce = re.search(r'name="nonce" value="([0-9a-f]+)"', ask.text).group(1)
    done = site.post(url, data={"nonce": nonce, "action": "erase-confirmed"})
    assert done.status_code == 200 and "erased" in done.text
    with site.engine.connect() as conn:
        assert conn.execute(sa.select(subscribers.c.id).where(
            subscribers.c.email_key == "r3@example.com")).first() is None
        emails = conn.execute(sa.select(ledger.send_recipients.c.email)).scalars().all()
    assert "r3@example.com" not in emails and any(e.startswith("erased:") for e in emails)
    again = site.get(url)  # the link now names nobody: the invalid page, nothing more
    assert again.status_code == 400 and "r3@" not in again.text


def _bad_tokens(site: Site) -> list[str]:
    sub = get_subscriber(site.engine, "r1@example.com")
    good = tokens.sign_preferences(site.settings, sub.id)
    other = site.settings.model_copy(update={"secret_key": "another-secret-key-" + "x" * 20})
    old_day = tokens.today() - site.settings.preferences_link_days - 1
    return [
        tokens.sign(site.settings, sub.id, 1),  # an unsubscribe token: another purpose
        tokens.sign_preferences(other, sub.id),  # forged: another key
        tokens.sign_preferences(site.settings, sub.id, issued_day=old_day),  # expired
        good[:-2], good[:-1] + ("A" if good[-1] != "A" else "B"), "x", "%00", "a" * 70,
    ]


def test_forged_expired_and_cross_purpose_tokens_get_one_plain_400_page(site: Site) -> None:
    bodies = set()
    for bad in _bad_tokens(site):
        for answer in (site.get(f"/p/{bad}"), site.post(f"/p/{bad}", data={"action": "erase"})):
            assert answer.status_code == 400, bad
            assert "r1@" not in answer.text and "Reader" not in answer.text
            bodies.add(answer.text)
    assert len(bodies) == 1
    # and a preference token is no unsubscribe token
    good = site.url("r1@example.com").removeprefix("/p/")
    assert site.post(f"/u/{good}", data={"List-Unsubscribe": "One-Click"}).status_code == 400
    assert get_subscriber(site.engine, "r1@example.com").status == "active"


def test_get_changes_nothing_and_a_post_needs_the_pages_nonce(site: Site) -> None:
    url = site.url("r1@example.com")
    for _ in range(3):
        assert site.get(url).status_code == 200
        assert site.client.head(url).status_code == 200
    forged = site.post(url, data={"action": "erase-confirmed"})  # no nonce: cross-site
    assert forged.status_code == 400
    wrong = site.post(url, data={"action": "pause", "weeks": "4", "nonce": "0" * 32})
    assert wrong.status_code == 400
    other = site.url("r2@example.com")  # a nonce from another subscriber's page
    nonce = re.search(r'name="nonce" value="([0-9a-f]+)"', site.get(other).text).group(1)
    assert site.post(url, data={"action": "pause", "weeks": "4", "nonce": nonce}
                     ).status_code == 400
    sub = get_subscriber(site.engine, "r1@example.com")
    assert sub.status == "active"
    with site.engine.connect() as conn:
        assert conn.execute(sa.select(subscribers.c.paused_until).where(
            subscribers.c.id == sub.id)).scalar() is None


def test_sendgrid_messages_carry_each_recipients_preference_link(
        site: Site, monkeypatch: pytest.MonkeyPatch) -> None:
    """Through the real ``sendgrid`` client and the local stand-in: the substitutions
    fill each recipient's own preference link, in the HTML and the text part."""
    from .sendgrid_standin import SendGridStandIn

    with SendGridStandIn() as standin:
        monkeypatch.setenv("SENDGRID_API_KEY", standin.api_key)
        settings = site.settings.model_copy(update={"sendgrid_api_host": standin.url})
        prepared = sending.preflight(settings, settings.project_dir / ISSUE)
        send = sending.start(site.engine, settings, prepared, "daily", backend="sendgrid").send
        sending.run(site.engine, settings, send.id, backend="sendgrid")
        for n in (1, 2, 3):
            email = f"r{n}@example.com"
            [message] = standin.expand(email)
            links = {m for part in (message["html"], message["text"])
                     for m in re.findall(r"https://sendtest\.news(/p/[A-Za-z0-9_-]+)", part)}
            assert len(links) == 1 and "%%" not in message["html"] + message["text"]
            page = site.get(links.pop())
            assert page.status_code == 200 and email in page.text
