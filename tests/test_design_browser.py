"""The email's look, measured in headless Chromium: the typical issue (eight sections, six
photos; a Quote, What We're Ignoring and a Sponsor added; "In this issue" on) in both built-in themes at 600 and 375 px, in light, dark (prefers-color-scheme
emulated) and images-off modes.

Photos are answered with a generated PNG (or refused, for images off); nothing leaves the
machine. Full-page screenshots go to ``test-results/design/`` (ignored by git), named
``THEME-WIDTH-MODE.png``, for a person to look at after the run.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from newsletter.authoring.build import build_text
from newsletter.authoring.render import UNSUBSCRIBE_MARK, fill_name
from newsletter.config import load_settings

from .conftest import REPO
from .test_preview_browser import CHROMIUM, CHROMIUM_ARGS, png

pytestmark = pytest.mark.browser

TYPICAL = REPO / "tests" / "fixtures" / "typical-issue.md"
SCREENSHOTS = REPO / "test-results" / "design"
PHOTO = png(1200, 675)
LOGO = png(360, 80, (179, 38, 30))
LOGO_DARK = png(360, 80, (240, 240, 240))
EDGE = 28  # every text starts this far from the body's left edge on phones
# the typical issue, with the three kinds it lacks added after its Watching section
MORE_KINDS = """
# Quote: On the shelves
"We can cope with two weeks. At four weeks we start rationing what goes to which stores."

— Head of a retail association

# What We're Ignoring: A feud and a forecast
## The celebrity feud
Nothing in it changes anyone's day, however many headlines it fills.

## The long-range winter forecast
Forecasts more than ten days out are little better than a coin toss.

# Sponsor: Warm homes, lower bills
Insulation that pays for itself within five winters, with [free home surveys](https://sponsor.sendtest.news/survey) this month.

[Book a survey](https://sponsor.sendtest.news/book)

"""

# Where things are, relative to the email body's left edge.
MEASURE = """() => {
    const body = document.querySelector('div.nl-sec').getBoundingClientRect();
    const box = e => { const r = e.getBoundingClientRect();
                       return {left: r.left - body.left, top: r.top, bottom: r.bottom,
                               right: r.right - body.left, width: r.width, height: r.height}; };
    const texts = [...document.querySelectorAll(
        'h1, h2, h3, .nl-text p, .nl-text ul, .nl-text ol, div.nl-credit, div.nl-kicker,'
        + ' div.nl-figure, div.nl-date, blockquote, .nl-footer p, img.nl-photo')]
        .filter(e => e.getBoundingClientRect().width > 0)
        .map(e => ({tag: e.tagName, cls: e.className, text: (e.alt || e.textContent).slice(0, 40),
                    ...box(e)}));
    const photos = [...document.querySelectorAll('img.nl-photo')].map(img => {
        const sec = img.closest('div.nl-sec');
        const rule = sec.querySelector('td.nl-rule p');
        const credit = img.parentElement.querySelector('div.nl-credit');
        return {photo: box(img), rule: rule && box(rule), credit: credit && box(credit),
                alt: img.alt, loaded: img.complete && img.naturalWidth > 0,
                background: getComputedStyle(img).backgroundColor};
    });
    const h2 = document.querySelector('h2.nl-headline');
    return {bodyWidth: body.width, scrollWidth: document.documentElement.scrollWidth,
            viewport: window.innerWidth, texts, photos,
            h1: [...document.querySelectorAll('h1')].map(e => e.textContent.trim()),
            logos: [...document.querySelectorAll('img.nl-logo')]
                .filter(e => e.getBoundingClientRect().width > 0).map(e => e.src),
            bodyBackground: getComputedStyle(document.querySelector('div.nl-lead'))
                .backgroundColor,
            headlineColor: getComputedStyle(h2).color};
}"""


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


@pytest.fixture(scope="module", params=["classic", "bulletin"])
def email_file(request, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The typical issue as a subscriber gets it, in one theme, with a light and a dark
    logo, written to a file."""
    folder = tmp_path_factory.mktemp(request.param)
    (folder / "newsletter.toml").write_text(
        f'name = "The Briefing"\ntheme = "{request.param}"\n'
        'base_url = "https://news.example.org"\n'
        'postal_address = "1 Harbour Street, Eastmoor"\n'
        "contents = true\n"
        "[brand]\n"
        'logo_url = "https://images.sendtest.news/logo.png"\n'
        'logo_dark_url = "https://images.sendtest.news/logo-dark.png"\n',
        encoding="utf-8",
    )
    text = TYPICAL.read_text(encoding="utf-8")
    cut = text.index("# Story: The village")
    text = text[:cut] + MORE_KINDS.lstrip("\n") + text[cut:]
    result = build_text(text, str(TYPICAL), load_settings(folder), personal=True)
    assert result.ok and result.rendered is not None, result.findings
    html = fill_name(result.rendered.html, "Ann").replace(
        UNSUBSCRIBE_MARK, "https://news.example.org/u/TOKEN"
    )
    path = folder / f"{request.param}.html"
    path.write_text(html, encoding="utf-8")
    return path


def look(browser, path: Path, width: int, mode: str) -> dict:
    context = browser.new_context(
        viewport={"width": width, "height": 900},
        color_scheme="dark" if mode == "dark" else "light",
    )
    page = context.new_page()

    def route(route) -> None:
        url = route.request.url
        if url.startswith("file:"):
            route.continue_()
        elif url.startswith("https://images.sendtest.news/") and mode != "images-off":
            body = LOGO_DARK if "logo-dark" in url else LOGO if "logo" in url else PHOTO
            route.fulfill(status=200, content_type="image/png", body=body)
        else:
            route.abort()

    page.route("**/*", route)
    try:
        page.goto(path.as_uri())
        page.wait_for_load_state("load")
        measured = page.evaluate(MEASURE)
        SCREENSHOTS.mkdir(parents=True, exist_ok=True)
        page.screenshot(path=str(SCREENSHOTS / f"{path.stem}-{width}-{mode}.png"), full_page=True)
    finally:
        context.close()
    return measured


@pytest.mark.parametrize("mode", ["light", "dark", "images-off"])
@pytest.mark.parametrize("width", [600, 375])
def test_layout(browser, email_file: Path, width: int, mode: str) -> None:
    m = look(browser, email_file, width, mode)
    assert m["bodyWidth"] == width
    kinds = {t["text"] for t in m["texts"] if "nl-kicker" in t["cls"]}
    assert {"Quote", "What We're Ignoring", "Sponsored", "In this issue"} <= kinds
    assert m["scrollWidth"] <= m["viewport"], "the page scrolls sideways"
    assert len(m["h1"]) == 1  # one <h1>: the masthead, holding the logo
    # the dark logo replaces the light one where dark mode is honoured
    logo = "logo-dark.png" if mode == "dark" else "logo.png"
    assert [src.rsplit("/", 1)[1] for src in m["logos"]] == [logo]
    lefts = {round(t["left"]) for t in m["texts"]}
    if width == 375:
        # on phones every text (and every photo) starts at the same left edge
        stray = [t for t in m["texts"] if round(t["left"]) != EDGE]
        assert not stray, stray[:3]
    else:
        assert min(lefts) == EDGE
        assert all(t["right"] <= width - EDGE + 0.5 for t in m["texts"]), "text past 28 px"
    assert len(m["photos"]) == 6
    for photo in m["photos"]:
        # the section's rule is above its photo, the credit directly under it
        assert photo["rule"] is not None and photo["rule"]["bottom"] <= photo["photo"]["top"]
        assert photo["credit"] is not None
        gap = photo["credit"]["top"] - photo["photo"]["bottom"]
        assert 4 <= gap <= 12, gap
        assert photo["photo"]["width"] == width - 2 * EDGE
        assert photo["loaded"] is (mode != "images-off")
        if mode == "images-off":
            # the alt text shows in a tinted box the width of the photo, not a bare line
            assert photo["photo"]["height"] >= 20
            assert photo["background"] not in ("rgba(0, 0, 0, 0)", "transparent")
    if mode == "dark":
        assert m["bodyBackground"] == "rgb(30, 30, 30)"
        assert m["headlineColor"] == "rgb(232, 230, 227)"
    else:
        assert m["bodyBackground"] == "rgb(255, 255, 255)"
