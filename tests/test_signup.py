"""Sign-up with double opt-in on `newsletter serve`: the form, the API, the confirmation
link (scanner-safe), no enumeration, bot defences, consent records (SQLite and PostgreSQL),
with the confirmation emails received by a real SMTP server on the loopback."""

from __future__ import annotations

import contextlib
import re
import time
import warnings
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
import sqlalchemy as sa

from newsletter.audience import signup, tokens
from newsletter.audience.subscribers import get_subscriber, subscriber_lists, unsubscribe
from newsletter.config import Settings
from newsletter.errors import SubscriberNotFound
from newsletter.web import create_app

from .sendtools import make_project, pg_database, seed
from .smtpserver import SMTPTestServer

with warnings.catch_warnings():
    warnings.simplefilter("ignore", DeprecationWarning)
    from starlette.testclient import TestClient


@dataclass
class Site:
    settings: Settings
    engine: sa.Engine
    client: TestClient
    smtp: SMTPTestServer

    def form(self, email: str, *, age: float = 60, **extra: str) -> httpx.Response:
        ts = tokens.sign("signup-form", self.settings, int(time.time() - age))
        data = {"email": email, "name": "Reader", "list": "daily", "consent": "yes",
                "website": "", "ts": ts, **extra}
        return self.client.post("/subscribe", data=data)

    def mails(self, email: str) -> list:
        return self.smtp.parsed(email)

    def link(self, email: str, index: int = -1) -> str:
        text = self.mails(email)[index].get_body(("plain",)).get_content()
        return re.search(r"https?://\S+/confirm/(\S+)", text).group(1)

    def pending(self, email: str) -> list[str]:
        with self.engine.connect() as conn:
            return list(conn.execute(sa.text(
                "SELECT status FROM signups WHERE email_key = :k"), {"k": email}).scalars())


@contextlib.contextmanager
def _site(tmp_path: Path, database: str, **overrides) -> Iterator[Site]:
    with pg_database() if database == "postgresql" else contextlib.nullcontext() as url, \
            SMTPTestServer() as smtp:
        settings = make_project(tmp_path / "p", url)
        settings = settings.model_copy(update={
            "backend": "smtp", "smtp_url": smtp.url, "public_lists": ["daily"], **overrides})
        engine = seed(settings, 3)
        with TestClient(create_app(settings, preview=False, public=True),
                        raise_server_exceptions=False) as client:
            yield Site(settings, engine, client, smtp)
        engine.dispose()


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def site(request, tmp_path: Path) -> Iterator[Site]:
    with _site(tmp_path, request.param) as value:
        yield value


def _status(site: Site, email: str) -> tuple[str, str | None]:
    sub = get_subscriber(site.engine, email)
    lists = {m.list_name: m.status for m in subscriber_lists(site.engine, sub.id)}
    return sub.status, lists.get("daily")


def test_the_form_is_branded_accessible_and_carries_its_defences(site: Site) -> None:
    page = site.client.get("/subscribe?list=daily")
    assert page.status_code == 200
    assert '<label for="email">' in page.text and 'type="email"' in page.text
    assert site.settings.signup_consent_text in page.text
    assert 'name="website"' in page.text and 'name="ts"' in page.text
    assert site.settings.brand.primary_color in page.text


def test_sign_up_sends_one_confirmation_and_only_a_post_confirms(site: Site) -> None:
    answer = site.form("new@example.net")
    assert answer.status_code == 200 and "Check your inbox" in answer.text
    assert len(site.mails("new@example.net")) == 1
    assert site.smtp.total == 1
    with pytest.raises(SubscriberNotFound):  # pending: no subscriber, nothing can be sent
        get_subscriber(site.engine, "new@example.net")
    token = site.link("new@example.net")
    assert site.client.head(f"/confirm/{token}").status_code == 200
    page = site.client.get(f"/confirm/{token}")  # a scanner following the link
    assert page.status_code == 200 and "Confirm my subscription" in page.text
    assert site.pending("new@example.net") == ["pending"]
    done = site.client.post(f"/confirm/{token}", data={"action": "confirm"})
    assert done.status_code == 200 and "You are subscribed" in done.text
    assert _status(site, "new@example.net") == ("active", "subscribed")
    again = site.client.post(f"/confirm/{token}", data={"action": "confirm"})
    assert "You are subscribed" in again.text  # idempotent
    # the confirmation, then exactly one welcome email (issues/_welcome.md), not two
    confirmation, welcome = site.mails("new@example.net")
    assert welcome["Subject"].startswith("Welcome to the briefing")
    assert site.smtp.total == 2
    [record] = signup.consents(site.engine, "new@example.net")
    assert record["source"] == "form" and record["consent_version"] == "1"
    assert record["confirmed_at"] and record["ip_hmac"] and record["list"] == "daily"


def test_the_answer_is_the_same_for_new_pending_active_and_unsubscribed(site: Site) -> None:
    unsubscribe(site.engine, "r2@example.com")
    site.form("pending@example.net")
    answers = [site.form(e) for e in ("fresh@example.net", "pending@example.net",
                                      "r1@example.com", "r2@example.com")]
    assert len({(a.status_code, a.text) for a in answers}) == 1
    assert answers[0].status_code == 200
    assert _status(site, "r2@example.com")[0] == "unsubscribed"  # not without a confirmation


def test_an_unsubscribed_address_comes_back_only_by_a_confirmed_opt_in(site: Site) -> None:
    unsubscribe(site.engine, "r3@example.com")
    site.form("r3@example.com")
    token = site.link("r3@example.com")
    site.client.get(f"/confirm/{token}")
    assert _status(site, "r3@example.com")[0] == "unsubscribed"
    site.client.post(f"/confirm/{token}", data={"action": "confirm"})
    assert _status(site, "r3@example.com") == ("active", "subscribed")


def test_repeated_sign_ups_send_at_most_one_further_email_a_day(site: Site) -> None:
    for _ in range(4):
        assert site.form("again@example.net").status_code == 200
    assert len(site.mails("again@example.net")) == 2
    for _ in range(3):
        site.form("r1@example.com")  # active already: one note at most
    assert len(site.mails("r1@example.com")) <= 2


def test_honeypot_and_too_fast_posts_record_and_send_nothing(site: Site) -> None:
    bot = site.form("bot@example.net", website="http://spam.example")
    assert bot.status_code == 200 and "Check your inbox" in bot.text
    fast = site.form("fast@example.net", age=0)
    assert fast.status_code == 400 and "too quickly" in fast.text
    forged = site.client.post("/subscribe", data={"email": "f@example.net", "list": "daily",
                                                 "consent": "yes", "ts": "12345"})
    assert forged.status_code == 400
    assert site.smtp.total == 0
    assert site.pending("bot@example.net") == site.pending("fast@example.net") == []


def test_disposable_addresses_and_private_lists_are_refused(site: Site) -> None:
    answer = site.form("someone@mailinator.com")
    assert answer.status_code == 400 and "permanent email address" in answer.text
    hidden = site.form("x@example.net", list="secret")
    assert hidden.status_code == 400 and site.smtp.total == 0


def test_cross_purpose_forged_and_expired_tokens(site: Site) -> None:
    site.form("cross@example.net")
    confirm = site.link("cross@example.net")
    assert site.client.post(f"/u/{confirm}", data={"List-Unsubscribe": "One-Click"}
                            ).status_code == 400  # a confirm token is no unsubscribe token
    unsub = tokens.sign(site.settings, 1, 1)
    assert site.client.get(f"/confirm/{unsub}").status_code == 400
    assert site.client.post(f"/confirm/{unsub}", data={"action": "confirm"}).status_code == 400
    old = tokens.sign("confirm", site.settings, 1, 1, issued_day=tokens.today() - 8)
    assert site.client.post(f"/confirm/{old}", data={"action": "confirm"}).status_code == 400
    forged = tokens.sign("confirm", Settings(secret_key="z" * 40), 1, 1)
    assert site.client.post(f"/confirm/{forged}", data={"action": "confirm"}).status_code == 400
    assert site.pending("cross@example.net") == ["pending"]


def test_this_was_not_me_cancels_and_one_click_never_confirms(site: Site) -> None:
    site.form("notme@example.net")
    [mail] = site.mails("notme@example.net")
    cancel = mail["List-Unsubscribe"].strip("<>").rsplit("/", 1)[1]
    answer = site.client.post(f"/confirm/{cancel}", data={"List-Unsubscribe": "One-Click"})
    assert answer.status_code == 200
    assert site.pending("notme@example.net") == ["cancelled"]
    token = site.link("notme@example.net")
    site.client.post(f"/confirm/{token}", data={"action": "confirm"})
    with pytest.raises(SubscriberNotFound):
        get_subscriber(site.engine, "notme@example.net")


def test_api_with_cors(tmp_path: Path) -> None:
    with _site(tmp_path, "sqlite", signup_cors_origins=["https://www.paper.test"]) as site:
        ok = site.client.post("/api/subscribe", json={"email": "api@example.net",
                                                      "lists": ["daily"], "consent": True},
                              headers={"Origin": "https://www.paper.test"})
        assert ok.status_code == 202
        assert ok.headers["access-control-allow-origin"] == "https://www.paper.test"
        other = site.client.post("/api/subscribe", json={"email": "b@example.net",
                                                         "consent": True},
                                 headers={"Origin": "https://evil.test"})
        assert other.status_code == 403
        pre = site.client.options("/api/subscribe", headers={
            "Origin": "https://www.paper.test", "Access-Control-Request-Method": "POST"})
        assert pre.status_code == 204
        assert len(site.mails("api@example.net")) == 1 and site.smtp.total == 1
        assert signup.consents(site.engine, "api@example.net")[0]["source"] == "api"
