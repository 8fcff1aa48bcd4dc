"""The report pages of the preview app: a send's page and a list's page, with charts."""

from __future__ import annotations

import datetime as dt
import re
import warnings
from collections.abc import Iterator
from pathlib import Path

import pytest

from newsletter.config import Settings
from newsletter.delivery import ledger, sending
from newsletter.feedback import clicks
from newsletter.web import create_app
from newsletter.web.server import BackgroundServer

from .sendtools import make_project, seed
from .test_preview_browser import browser  # noqa: F401  (the Chromium fixture)

with warnings.catch_warnings():
    warnings.simplefilter("ignore", DeprecationWarning)
    from starlette.testclient import TestClient

ISSUE = "issues/2026-11-24.md"


@pytest.fixture
def reported(tmp_path: Path) -> Iterator[tuple[Settings, int]]:
    """An issue sent to 20 subscribers (outbox), clicked by three people and a scanner."""
    settings = make_project(tmp_path / "p")
    engine = seed(settings, 20)
    prepared = sending.preflight(settings, settings.project_dir / ISSUE)
    started = sending.start(engine, settings, prepared, "daily", backend="outbox")
    sending.run(engine, settings, started.send.id, backend="outbox")
    send = ledger.get_send(engine, started.send.id)
    start = send.created_at.replace(tzinfo=dt.UTC) if send.created_at.tzinfo is None \
        else send.created_at

    def at(hours: float) -> dt.datetime:
        return start + dt.timedelta(hours=hours)

    with engine.begin() as conn:
        clicks.record(conn, send.id, 1, 1, "GET", at(0.2))
        clicks.record(conn, send.id, 2, 1, "GET", at(3.5))
        clicks.record(conn, send.id, 2, 2, "GET", at(3.6))
        clicks.record(conn, send.id, 3, 3, "GET", at(30))
        clicks.record(conn, send.id, 4, 0, "GET", at(0.01))  # the canary: a scanner
    engine.dispose()
    yield settings, send.id


def test_the_send_page_shows_the_numbers_and_two_charts(reported) -> None:
    settings, send_id = reported
    with TestClient(create_app(settings), raise_server_exceptions=False) as client:
        answer = client.get(f"/reports/sends/{send_id}")
        assert answer.status_code == 200
        html = answer.text
        text = re.sub(r"<svg.*?</svg>", "", html, flags=re.S)
        text = re.sub(r"<[^>]+>", " ", text)
        text = " ".join(text.split())
        assert "20 sent" in text and "3 unique clickers" in text and "15.0% click rate" in text
        assert "4 people's clicks" in text and "1 flagged clicks (scanners, canary 1)" in text
        assert html.count("<svg") == 2 and "<script" not in html.split("<svg", 1)[1]
        assert "first 48 hours" in html and "Clicks by section" in html
        listing = client.get("/reports")
        assert listing.status_code == 200 and f'/reports/sends/{send_id}"' in listing.text
        assert client.get("/reports/sends/999").status_code == 404
        assert client.get("/reports/sends/abc").status_code == 404
        page = client.get("/reports/lists/daily")
        assert page.status_code == 200 and "20</strong> subscribed now" in page.text
        assert "20</strong> joined in 30 days" in page.text and "<svg" in page.text
        missing = client.get("/reports/lists/nope")
        assert missing.status_code == 404 and "Traceback" not in missing.text


def test_the_hourly_chart_counts_people_in_their_hour(reported) -> None:
    from newsletter.db.connect import open_store
    from newsletter.feedback.clickreport import send_report

    settings, send_id = reported
    engine = open_store(settings)
    report = send_report(engine, send_id)
    engine.dispose()
    assert report.hourly[0] == 1 and report.hourly[3] == 2 and report.hourly[30] == 1
    assert sum(report.hourly) == 4


def _luminance(css: str) -> float:
    r, g, b = (int(v) for v in re.findall(r"\d+", css)[:3])
    return (0.2126 * r + 0.7152 * g + 0.0722 * b) / 255


@pytest.mark.browser
def test_charts_are_readable_in_light_and_dark_mode(reported, browser) -> None:  # noqa: F811
    settings, send_id = reported
    server = BackgroundServer(create_app(settings)).start()
    try:
        for scheme, light_text in (("light", False), ("dark", True)):
            context = browser.new_context(color_scheme=scheme)
            page = context.new_page()
            page.route("**/*", lambda route: route.continue_()
                       if route.request.url.startswith(server.url) else route.abort())
            page.goto(f"{server.url}/reports/sends/{send_id}")
            chart = page.locator("#sections svg")
            assert chart.count() == 1 and chart.bounding_box()["width"] > 300
            label = page.locator("#sections svg .title").first
            ink = label.evaluate("e => getComputedStyle(e).fill")
            ground = page.evaluate("getComputedStyle(document.body).backgroundColor")
            assert (_luminance(ink) > 0.6) is light_text, (scheme, ink)
            assert abs(_luminance(ink) - _luminance(ground)) > 0.5, (scheme, ink, ground)
            shot = Path(__file__).resolve().parent.parent / "test-results" / "reports"
            shot.mkdir(parents=True, exist_ok=True)
            page.screenshot(path=str(shot / f"send-{scheme}.png"), full_page=True)
            context.close()
    finally:
        server.stop()
