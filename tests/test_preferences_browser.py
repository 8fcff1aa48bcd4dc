"""The preference centre in real headless Chromium, against a real uvicorn server: open
the sent email, follow its footer's "Your preferences" link, pause, and the next send
skips that subscriber.

The email's links point at the project's ``base_url`` (https://sendtest.news); the
browser's requests there are passed to the local server, as the newsroom's reverse proxy
would. Every other request is aborted (no network)."""

from __future__ import annotations

import os
from email import message_from_bytes, policy
from pathlib import Path

import pytest

from newsletter.audience.subscribers import get_subscriber
from newsletter.delivery import ledger, sending
from newsletter.web import create_app
from newsletter.web.server import BackgroundServer

from .sendtools import make_project, seed

pytestmark = pytest.mark.browser

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu",
                 "--disable-background-networking", "--disable-component-update",
                 "--disable-sync", "--no-first-run"]
ISSUE = "issues/2026-11-24.md"


def _send(settings, engine, *, again: bool = False) -> ledger.SendInfo:
    prepared = sending.preflight(settings, settings.project_dir / ISSUE)
    started = sending.start(engine, settings, prepared, "daily", backend="outbox", again=again)
    return sending.run(engine, settings, started.send.id, backend="outbox")


def _html_for(settings, email: str) -> str:
    for path in sorted(settings.outbox_path.glob("*.eml")):
        message = message_from_bytes(path.read_bytes(), policy=policy.default)
        if message["To"].addresses[0].addr_spec == email:
            return message.get_body(("html",)).get_content()
    raise AssertionError(f"no message for {email}")


def test_follow_the_footer_link_pause_and_the_next_send_skips(tmp_path: Path) -> None:
    if not Path(CHROMIUM).exists():
        if os.environ.get("CI") == "true":
            pytest.fail(f"{CHROMIUM} is missing: .ci/run installs Debian's chromium")
        pytest.skip(f"{CHROMIUM} is not installed (apt-get install chromium)")
    from playwright.sync_api import sync_playwright

    settings = make_project(tmp_path / "p")
    engine = seed(settings, 3)
    first = _send(settings, engine)
    assert first.counts == {"sent": 3}
    server = BackgroundServer(create_app(settings, preview=False, public=True)).start()
    try:
        with sync_playwright() as p:
            browser = p.chromium.launch(executable_path=CHROMIUM, headless=True,
                                        args=CHROMIUM_ARGS)
            page = browser.new_page()

            def route(r) -> None:
                if r.request.url.startswith(settings.base_url + "/"):
                    local = server.url + r.request.url.removeprefix(settings.base_url)
                    r.fulfill(response=r.fetch(url=local))
                elif r.request.url.startswith("about:") or r.request.url.startswith("data:"):
                    r.continue_()
                else:
                    r.abort()

            page.route("**/*", route)
            page.set_content(_html_for(settings, "r2@example.com"))
            with page.expect_navigation():
                page.get_by_role("link", name="Your preferences").click()
            assert page.url.startswith(f"{settings.base_url}/p/")
            assert "r2@example.com" in page.content()
            with page.expect_navigation():
                page.get_by_role("button", name="Pause for 2 weeks").click()
            assert "Paused until" in page.get_by_role("status").inner_text()
            browser.close()
    finally:
        server.stop()
    paused = get_subscriber(engine, "r2@example.com")
    assert paused.status == "active"
    second = _send(settings, engine, again=True)
    assert second.total == 2 and second.counts == {"sent": 2}
    reached = {r.email for r in ledger.recipients(engine, second.id, ["sent"])}
    assert reached == {"r1@example.com", "r3@example.com"}
    engine.dispose()
