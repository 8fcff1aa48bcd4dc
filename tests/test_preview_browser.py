"""The live preview in real headless Chromium, against a real uvicorn server.

The sample issues' photos live on https://images.sendtest.news, which does not resolve
here: the browser's requests for them are intercepted (``page.route``) and answered
with a generated 1200x675 PNG, so the layout is measured with real, loaded images.
Every other request that is not for the loopback server is aborted (no network).

The screenshot of the issue page goes to ``test-results/preview/`` at the top of the
repository (ignored by git), so a person can look at it after the run.
"""

from __future__ import annotations

import os
import struct
import time
import zlib
from collections.abc import Iterator
from pathlib import Path

import pytest

from newsletter.authoring.project import init_project
from newsletter.config import load_settings
from newsletter.web import create_app
from newsletter.web.server import BackgroundServer

from .conftest import REPO
from .issuegen import write_many_issues

pytestmark = pytest.mark.browser

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
    "--disable-component-update", "--disable-sync", "--no-first-run",
]
SCREENSHOTS = REPO / "test-results" / "preview"
ISSUE = "2026-11-25"
HEADLINE = "The harbour vote, and why it matters beyond the port"


def png(width: int, height: int, rgb: tuple[int, int, int] = (90, 120, 150)) -> bytes:
    """A solid-colour PNG, made without any imaging library."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        body = kind + data
        return struct.pack(">I", len(data)) + body + struct.pack(">I", zlib.crc32(body))

    row = b"\x00" + bytes(rgb) * width
    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header)
        + chunk(b"IDAT", zlib.compress(row * height, 9)) + chunk(b"IEND", b"")
    )


PHOTO = png(1200, 675)


@pytest.fixture(scope="module")
def browser() -> Iterator[object]:
    if not Path(CHROMIUM).exists():
        if os.environ.get("CI") == "true":
            pytest.fail(f"{CHROMIUM} is missing: .ci/run installs Debian's chromium")
        pytest.skip(f"{CHROMIUM} is not installed (apt-get install chromium)")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS)
        yield browser
        browser.close()


class Server(BackgroundServer):
    def __init__(self, project: Path) -> None:
        super().__init__(create_app(load_settings(project)))
        self.project = project
        self.state = self.app.state.parts[0].state

    def start(self, timeout: float = 10.0) -> Server:
        super().start(timeout)
        # The watcher starts with the app; touch a file until it reports, so no save is missed.
        deadline = time.monotonic() + timeout
        config = self.project / "newsletter.toml"
        while self.state.version == 0:
            assert time.monotonic() < deadline, "the file watcher did not start"
            config.write_bytes(config.read_bytes())
            time.sleep(0.1)
        return self


@pytest.fixture
def server(project: Path) -> Iterator[Server]:
    running = Server(project)
    running.start()
    yield running
    running.stop()


@pytest.fixture
def page(browser, server: Server):
    context = browser.new_context(viewport={"width": 1280, "height": 900})
    page = context.new_page()

    def route(route) -> None:
        url = route.request.url
        if url.startswith("https://images.sendtest.news/"):
            route.fulfill(status=200, content_type="image/png", body=PHOTO)
        elif url.startswith(server.url):
            route.continue_()
        else:
            route.abort()

    page.route("**/*", route)
    yield page
    context.close()


def frame(page, device: str):
    return page.frame_locator(f"#frame-{device}")


def open_issue(page, server: Server, query: str = "") -> None:
    page.goto(f"{server.url}/issues/{ISSUE}{query}")
    for device in ("desktop", "phone"):
        frame(page, device).locator("h2.nl-headline").first.wait_for()
    page.wait_for_load_state("load")  # images included


def edit(path: Path, old: str, new: str) -> None:
    text = path.read_text(encoding="utf-8")
    assert old in text
    path.write_text(text.replace(old, new, 1), encoding="utf-8")


def test_phone_frame_has_no_horizontal_scroll_and_images_fit(page, server: Server) -> None:
    open_issue(page, server)
    phone = page.frame(url=lambda url: "device=phone" in url)
    assert phone is not None
    measured = phone.evaluate(
        """() => {
          const root = document.documentElement;
          const images = Array.from(document.images).map((img) => {
            const box = img.getBoundingClientRect();
            return {src: img.src, left: box.left, right: box.right, width: box.width,
                    loaded: img.complete && img.naturalWidth > 0};
          });
          return {inner: window.innerWidth, scrollWidth: root.scrollWidth,
                  clientWidth: root.clientWidth, images};
        }"""
    )
    assert measured["inner"] == 375
    assert measured["scrollWidth"] <= measured["clientWidth"], measured
    assert len(measured["images"]) == 2  # the lead's and the story's photo
    for image in measured["images"]:
        assert image["loaded"], image
        assert image["left"] >= 0 and image["right"] <= measured["clientWidth"], image
        assert image["width"] > 300  # full width on a phone, not a thumbnail
    desktop = page.frame(url=lambda url: "device=desktop" in url)
    assert desktop.evaluate("window.innerWidth") == 640
    # The inbox line, the size against 102 KB, and no findings for the sample issue.
    summary = page.locator("#summary").inner_text()
    assert HEADLINE in summary and "Also: 38 degrees in November" in summary
    assert "of Gmail's 102 KB clipping limit" in summary
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    shot = SCREENSHOTS / "issue-page.png"
    page.screenshot(path=str(shot), full_page=True)
    assert shot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and shot.stat().st_size > 10_000


def test_saving_a_new_headline_updates_the_page_and_keeps_scroll(page, server: Server) -> None:
    open_issue(page, server)
    phone = page.frame(url=lambda url: "device=phone" in url)
    phone.evaluate("window.scrollTo(0, 500)")
    path = server.project / "issues" / f"{ISSUE}.md"
    started = time.monotonic()
    edit(path, f"# Lead: {HEADLINE}", "# Lead: Dockers say yes to the robot cranes")
    for device in ("desktop", "phone"):
        frame(page, device).locator("h2.nl-headline", has_text="Dockers say yes").wait_for(
            timeout=2000
        )
    assert time.monotonic() - started < 2.0
    assert phone.evaluate("window.scrollY") == pytest.approx(500, abs=60)
    assert page.locator(".badge.valid").count() == 1


def test_an_error_shows_its_line_and_the_last_good_render_stays(page, server: Server) -> None:
    open_issue(page, server)
    path = server.project / "issues" / f"{ISSUE}.md"
    lines = path.read_text(encoding="utf-8").split("\n")
    number = lines.index("# Hard Numbers: Heat, chess and a long queue") + 1
    edit(path, "# Hard Numbers: Heat", "### Hard Numbers: Heat")
    finding = page.locator("#findings li.error").first
    finding.wait_for(timeout=2000)
    assert f"line {number}" in finding.inner_text()
    assert page.locator("#stale").is_visible()
    # The frames still show the last good render, not a blank page.
    headline = frame(page, "phone").locator("h2.nl-headline").first
    assert headline.inner_text() == HEADLINE
    assert frame(page, "desktop").get_by_text("Heat, chess and a long queue").is_visible()
    edit(path, "### Hard Numbers: Heat", "# Hard Numbers: Heat")
    page.locator("#findings").wait_for(state="detached", timeout=2000)
    assert page.locator("#stale").count() == 0


def test_dark_mode_switch_and_plain_text_tab(page, server: Server) -> None:
    open_issue(page, server)
    section_colour = "() => getComputedStyle(document.querySelector('div.nl-sec')).backgroundColor"
    phone = page.frame(url=lambda url: "device=phone" in url)
    assert phone.evaluate(section_colour) == "rgb(255, 255, 255)"
    page.get_by_role("link", name="Dark mode").click()
    page.wait_for_url("**theme=dark**")
    open_issue(page, server, "?theme=dark")
    phone = page.frame(url=lambda url: "device=phone" in url)
    assert phone.evaluate(section_colour) == "rgb(30, 30, 30)"  # brand.dark_body_color
    text = phone.evaluate("getComputedStyle(document.querySelector('h2.nl-headline')).color")
    assert text == "rgb(232, 230, 227)"  # brand.dark_text_color
    page.screenshot(path=str(_shot("issue-page-dark.png")), full_page=True)
    page.get_by_role("link", name="Plain text").click()
    page.wait_for_url("**part=text**")
    plain = page.locator("pre#plain")
    assert HEADLINE in plain.inner_text()
    assert "https://news.sendtest.news/eastmouth-vote" in plain.inner_text()
    assert page.locator("iframe").count() == 0


def test_saving_newsletter_toml_updates_the_open_page(page, server: Server) -> None:
    open_issue(page, server)
    edit(server.project / "newsletter.toml", 'name = "Test Briefing"', 'name = "Harbour Daily"')
    frame(page, "desktop").locator(".nl-brand", has_text="Harbour Daily").first.wait_for(
        timeout=2000
    )


def test_saving_a_template_updates_the_open_page(page, server: Server) -> None:
    open_issue(page, server)
    template = server.project / "templates" / "footer.mjml.j2"
    text = template.read_text(encoding="utf-8")
    template.write_text(text.replace("Read past issues", "Every past issue"), encoding="utf-8")
    assert "Every past issue" in template.read_text(encoding="utf-8")
    frame(page, "phone").get_by_text("Every past issue").wait_for(timeout=2000)


def test_pages_work_with_javascript_off(browser, server: Server) -> None:
    context = browser.new_context(java_script_enabled=False)
    page = context.new_page()
    page.route("**/*", lambda route: route.continue_() if route.request.url.startswith(
        server.url) else route.abort())
    page.goto(server.url + "/")
    rows = page.locator("table.issues tbody tr")
    assert rows.count() == 3  # the two sample issues, then the welcome email (undated, last)
    assert "_welcome" in rows.nth(2).inner_text() or "Welcome" in rows.nth(2).inner_text()
    assert rows.nth(0).locator("td.date").inner_text() == "2026-11-25"  # newest first
    rows.nth(0).get_by_role("link").click()
    page.wait_for_url(f"**/issues/{ISSUE}")
    frame(page, "phone").locator("h2.nl-headline").first.wait_for()
    page.get_by_role("link", name="Dark mode").click()
    page.wait_for_url("**theme=dark**")
    frame(page, "phone").locator("h2.nl-headline").first.wait_for()
    phone = page.frame(url=lambda url: "device=phone" in url)
    assert phone.evaluate(
        "getComputedStyle(document.querySelector('div.nl-sec')).backgroundColor"
    ) == "rgb(30, 30, 30)"
    context.close()


def _shot(name: str) -> Path:
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    return SCREENSHOTS / name



def test_an_issue_that_never_rendered_shows_frames_once_fixed(page, server: Server) -> None:
    path = server.project / "issues" / "2026-11-26.md"
    path.write_text(
        "---\nsubject: Draft\npreheader: P\ndate: 2026-11-26\n---\n\n# Lead: First try\n\n"
        "### Not allowed here\n",
        encoding="utf-8",
    )
    page.goto(f"{server.url}/issues/2026-11-26")
    assert "line 9" in page.locator("#findings").inner_text()
    assert page.get_by_text("No render to show yet").is_visible()
    assert page.locator("iframe").count() == 0
    edit(path, "### Not allowed here", "A paragraph at last.")
    frame(page, "phone").get_by_text("A paragraph at last.").wait_for(timeout=2000)
    assert page.locator("#findings").count() == 0
    assert page.locator(".badge.valid").is_visible()


def test_the_index_updates_when_an_issue_file_is_added(page, server: Server) -> None:
    page.goto(server.url + "/")
    assert page.locator("table.issues tbody tr").count() == 3  # 2 issues and the welcome
    (server.project / "issues" / "2026-11-30.md").write_text(
        "---\nsubject: Added while open\npreheader: P\ndate: 2026-11-30\n---\n\n"
        "# Lead: New\nText.\n",
        encoding="utf-8",
    )
    first = page.locator("table.issues tbody tr").first
    first.get_by_text("Added while open").wait_for(timeout=2000)
    assert first.locator("td.date").inner_text() == "2026-11-30"
    assert first.locator(".badge").inner_text() == "valid"


def test_the_pages_and_frames_run_under_their_content_security_policy(page, server: Server
                                                                       ) -> None:
    refused: list[str] = []
    page.on("console", lambda message: refused.append(message.text)
            if "Content Security Policy" in message.text else None)
    open_issue(page, server)
    assert "script-src 'sha256-" in page.evaluate(
        "fetch(location.href).then(r => r.headers.get('content-security-policy'))")
    edit(server.project / "issues" / f"{ISSUE}.md", f"# Lead: {HEADLINE}", "# Lead: Cranes")
    frame(page, "phone").locator("h2.nl-headline", has_text="Cranes").wait_for(timeout=2000)
    images = frame(page, "desktop").locator("img")
    assert images.count() > 0 and all(
        images.nth(i).evaluate("img => img.complete && img.naturalWidth > 0")
        for i in range(images.count()))
    page.goto(f"{server.url}/no-such-page")
    assert refused == []


def test_index_of_500_issues_lists_every_row_and_a_save_updates_that_row(
    browser, tmp_path: Path
) -> None:
    project = tmp_path / "big"
    init_project(project, name="Big Briefing")
    names = write_many_issues(project / "issues", 500)
    server = Server(project).start()
    page = browser.new_page()
    page.route("**/*", lambda route: route.continue_() if route.request.url.startswith(
        server.url) else route.abort())
    try:
        page.goto(server.url + "/")
        rows = page.locator("table.issues tbody tr")
        assert rows.count() == 503  # every issue at once, from its front matter
        assert page.locator("#row-2026-11-25 td.date").inner_text() == "2026-11-25"
        # the builds follow in the background; each one's row is swapped in when ready
        page.wait_for_function("() => !document.querySelector('tr[data-pending]')",
                               timeout=120_000)
        assert page.locator("tr .badge.valid").count() == 503
        page.evaluate("document.querySelectorAll('tr[data-name]').forEach(tr => tr.kept = 1)")
        edited = names[250]
        edit(project / "issues" / f"{edited}.md", "subject: Briefing number 250:",
             "subject: Edited at the desk:")
        row = page.locator(f"#row-{edited}")
        row.get_by_text("Edited at the desk: the council votes").wait_for(timeout=5000)
        assert row.locator(".badge.valid").count() == 1
        replaced = page.evaluate(
            "Array.from(document.querySelectorAll('tr[data-name]'))"
            ".filter(tr => !tr.kept).map(tr => tr.dataset.name)"
        )
        assert replaced == [edited]  # that row alone; the page was not reloaded
    finally:
        page.close()
        server.stop()
