"""The sign-up journey in Chromium, end to end: fill the form, the SMTP server receives
exactly one confirmation, a scanner's plain GET of its link leaves the sign-up pending,
pressing the button makes the reader an active subscriber of the list and sends exactly
one welcome email; its footer's "Your preferences" link opens the preference centre,
the reader pauses, and the next send of an issue skips them."""

from __future__ import annotations

import re
import time
import warnings
from pathlib import Path

import httpx
import pytest

from newsletter.audience.lists import create_list
from newsletter.audience.subscribers import get_subscriber, subscriber_lists
from newsletter.delivery import ledger, sending
from newsletter.errors import SubscriberNotFound
from newsletter.web import create_app
from newsletter.web.server import BackgroundServer

from .sendtools import make_project, seed
from .smtpserver import SMTPTestServer
from .test_preview_browser import browser  # noqa: F401  (the Chromium fixture)

pytestmark = pytest.mark.browser
warnings.filterwarnings("ignore", category=DeprecationWarning)


def test_form_to_confirmed_subscriber_in_chromium(tmp_path: Path, browser) -> None:  # noqa: F811
    with SMTPTestServer() as smtp:
        settings = make_project(tmp_path / "p").model_copy(update={
            "backend": "smtp", "smtp_url": smtp.url, "public_lists": ["daily", "weekend"],
            "signup_min_seconds": 1.0})
        engine = seed(settings, 1)
        create_list(engine, "weekend", "The weekend long reads")
        server = BackgroundServer(create_app(settings, preview=False, public=True)).start()
        try:
            page = browser.new_page()
            page.goto(f"{server.url}/subscribe?list=daily")
            assert page.get_by_label("Email address").is_visible()
            assert page.get_by_role("checkbox", name=re.compile("daily")).is_checked()
            page.get_by_label("Email address").fill("reader@example.net")
            page.get_by_label(re.compile("^Name")).fill("Rita Reader")
            page.get_by_role("checkbox", name=re.compile("Yes, send me")).check()
            time.sleep(1.2)  # a person takes longer than the minimum fill time
            page.get_by_role("button", name="Subscribe").click()
            assert page.get_by_role("heading", name="Check your inbox").is_visible()

            deadline = time.monotonic() + 10  # the email goes out just after the answer
            while not smtp.total and time.monotonic() < deadline:
                time.sleep(0.05)
            [mail] = smtp.parsed("reader@example.net")
            assert smtp.total == 1
            text = mail.get_body(("plain",)).get_content()
            token = re.search(r"/confirm/(\S+)", text).group(1)
            link = f"{server.url}/confirm/{token}"
            assert httpx.get(link).status_code == 200  # a link scanner: nothing changes
            with pytest.raises(SubscriberNotFound):
                get_subscriber(engine, "reader@example.net")

            page.goto(link)
            page.get_by_role("button", name="Confirm my subscription").click()
            assert page.get_by_role("heading", name="You are subscribed").is_visible()
            sub = get_subscriber(engine, "reader@example.net")
            assert sub.status == "active" and sub.name == "Rita Reader"
            assert {m.list_name: m.status for m in subscriber_lists(engine, sub.id)} == {
                "daily": "subscribed"}

            deadline = time.monotonic() + 20  # the welcome goes out after the answer
            while smtp.total < 2 and time.monotonic() < deadline:
                time.sleep(0.05)
            confirmation, welcome = smtp.parsed("reader@example.net")
            assert smtp.total == 2 and welcome["Subject"].startswith("Welcome")
            _pause_from_footer(page, settings, server.url, welcome)
            page.close()
        finally:
            server.stop()
        time.sleep(0.5)  # a second confirmation press would have sent a second welcome
        assert smtp.total == 2
        prepared = sending.preflight(settings, settings.project_dir / "issues/2026-11-24.md")
        started = sending.start(engine, settings, prepared, "daily", backend="smtp")
        done = sending.run(engine, settings, started.send.id, backend="smtp")
        reached = {r.email for r in ledger.recipients(engine, done.id, ["sent"])}
        assert reached == {"r1@example.com"}  # the paused reader is skipped
        assert len(smtp.parsed("reader@example.net")) == 2 and smtp.total == 3
        engine.dispose()


def _pause_from_footer(page, settings, local: str, welcome) -> None:
    """Open the welcome email's HTML, follow "Your preferences" (links on base_url are
    passed to the local server, as the newsroom's proxy would), pause for 2 weeks."""

    def route(r) -> None:
        if r.request.url.startswith(settings.base_url + "/"):
            r.fulfill(response=r.fetch(url=local + r.request.url.removeprefix(settings.base_url)))
        elif r.request.url.startswith(("about:", "data:")):
            r.continue_()
        else:
            r.abort()  # no network

    page.route("**/*", route)
    page.set_content(welcome.get_body(("html",)).get_content())
    with page.expect_navigation():
        page.get_by_role("link", name="Your preferences").click()
    assert "reader@example.net" in page.content()
    with page.expect_navigation():
        page.get_by_role("button", name="Pause for 2 weeks").click()
    assert "Paused until" in page.get_by_role("status").inner_text()
