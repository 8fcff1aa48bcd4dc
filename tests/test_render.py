"""The email HTML: what a reader's mail client gets.

Checked on the real rendered output of the sample issue and the typical issue (about
2,000 words, 8 sections): 600 px body, one column on phones (measured in headless
Chromium), lang, hidden preheader, images with alt, width and credits, no external CSS
or scripts, dark-mode rules, byte-identical output, user templates and brand colours.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from html.parser import HTMLParser
from pathlib import Path

import pytest

from newsletter.authoring.build import build_file, build_text
from newsletter.authoring.render import UNSUBSCRIBE_MARK, fill_name, render
from newsletter.authoring.validate import GMAIL_CLIP_BYTES
from newsletter.config import Settings, load_settings

from .conftest import REPO, SAMPLE

TYPICAL = REPO / "tests" / "fixtures" / "typical-issue.md"


class _Tags(HTMLParser):
    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.tags: list[tuple[str, dict[str, str | None]]] = []
        self.hidden_text: list[str] = []
        self._hidden_depth = 0

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        attributes = dict(attrs)
        self.tags.append((tag, attributes))
        style = (attributes.get("style") or "").replace(" ", "")
        if tag == "div" and ("display:none" in style or self._hidden_depth):
            self._hidden_depth += 1

    def handle_endtag(self, tag: str) -> None:
        if tag == "div" and self._hidden_depth:
            self._hidden_depth -= 1

    def handle_data(self, data: str) -> None:
        if self._hidden_depth:
            self.hidden_text.append(data)


def tags(html: str) -> _Tags:
    parser = _Tags()
    parser.feed(html)
    return parser


@pytest.fixture(scope="module")
def rendered_sample(tmp_path_factory: pytest.TempPathFactory):
    from newsletter.authoring.project import init_project

    folder = tmp_path_factory.mktemp("render") / "p"
    init_project(folder, samples=False)
    settings = load_settings(folder)
    result = build_file(SAMPLE, settings)
    assert result.ok and result.rendered is not None
    return result


def test_body_is_600_px_wide(rendered_sample) -> None:
    html = rendered_sample.rendered.html
    assert "max-width:600px" in html
    assert 'width="600"' in html  # the Outlook (mso) table


def test_one_column_on_phones_media_query(rendered_sample) -> None:
    html = rendered_sample.rendered.html
    # MJML is mobile first: columns are 100% wide unless this desktop query applies
    desktop = re.search(r"@media only screen and \(min-width:480px\) \{(.*?)\}\s*\}", html, re.S)
    assert desktop is not None
    assert ".mj-column-per-32 { width:32% !important" in desktop.group(1)
    assert ".mj-column-per-68 { width:68% !important" in desktop.group(1)
    assert 'name="viewport" content="width=device-width, initial-scale=1"' in html


def test_lang_and_title(rendered_sample, tmp_path: Path) -> None:
    html = rendered_sample.rendered.html
    assert re.search(r'<html lang="en" dir="ltr"', html)
    assert "<title>Can the river towns rebuild before spring?</title>" in html
    (tmp_path / "newsletter.toml").write_text('lang = "fr"\n', encoding="utf-8")
    french = build_file(SAMPLE, load_settings(tmp_path))
    assert french.rendered is not None and '<html lang="fr"' in french.rendered.html


def test_hidden_preheader_comes_first(rendered_sample) -> None:
    parsed = tags(rendered_sample.rendered.html)
    hidden = "".join(parsed.hidden_text)
    assert hidden.startswith("Plus: a record low for rail fares, and the bank that blinked")
    # the padding keeps the body text out of the inbox preview
    assert hidden.count("\u034f") >= 40


def test_every_image_has_alt_and_width_and_a_credit(rendered_sample) -> None:
    parsed = tags(rendered_sample.rendered.html)
    images = [attrs for tag, attrs in parsed.tags if tag == "img"]
    assert len(images) == 2
    for attrs in images:
        assert attrs.get("alt"), attrs
        # the photo slot (600 px less 28 px either side); no height="auto" (no real size)
        assert attrs.get("width") == "544", attrs
        assert "height" not in attrs, attrs
        assert (attrs.get("src") or "").startswith("https://")
    html = rendered_sample.rendered.html
    assert "Photo: Lena Okafor/Northern Wire" in html
    assert "Photo: Sam Reyes for The Briefing" in html


def test_no_external_css_or_scripts(rendered_sample) -> None:
    parsed = tags(rendered_sample.rendered.html)
    names = {tag for tag, _ in parsed.tags}
    assert "link" not in names and "script" not in names
    assert "fonts.googleapis" not in rendered_sample.rendered.html
    # CSS is inlined: the kicker's rule is on the element itself
    assert re.search(r'class="nl-kicker" style="[^"]*text-transform: uppercase', rendered_sample
                     .rendered.html)


def test_dark_mode_palette(rendered_sample) -> None:
    html = rendered_sample.rendered.html
    assert '<meta name="color-scheme" content="light dark">' in html
    assert '<meta name="supported-color-schemes" content="light dark">' in html
    dark = re.search(r"@media \(prefers-color-scheme: dark\) \{(.*?)\n\}", html, re.S)
    assert dark is not None
    assert "#121212" in dark.group(1) and "#e8e6e3" in dark.group(1)


def test_identical_input_gives_byte_identical_output(settings: Settings) -> None:
    first = build_file(SAMPLE, settings).rendered
    second = build_file(SAMPLE, settings).rendered
    assert first is not None and second is not None
    assert first.html == second.html and first.text == second.text
    # and across processes with different hash seeds (set/dict order must not leak in)
    script = (
        "import sys; from newsletter.authoring.build import build_file; "
        "from newsletter.config import load_settings; "
        f"r = build_file({str(SAMPLE)!r}, load_settings({str(settings.project_dir)!r})); "
        "sys.stdout.buffer.write(r.rendered.html.encode())"
    )
    outputs = set()
    for seed in ("1", "2", "3"):
        proc = subprocess.run(
            [sys.executable, "-c", script],
            capture_output=True,
            env={**os.environ, "PYTHONHASHSEED": seed},
            check=True,
        )
        outputs.add(proc.stdout)
    assert outputs == {first.html.encode()}


def test_typical_issue_is_under_gmail_clip_size(settings: Settings) -> None:
    result = build_file(TYPICAL, settings)
    assert result.findings == []
    assert result.issue is not None and result.rendered is not None
    assert 1800 <= result.issue.words() <= 2300
    assert len(result.issue.sections) == 8
    assert {s.kind.value for s in result.issue.sections} == {
        "Lead", "Story", "Hard Numbers", "What We're Watching"
    }
    assert all(s.image is not None and s.image.credit for s in result.issue.sections
               if s.kind.value in ("Lead", "Story"))
    assert result.rendered.size < GMAIL_CLIP_BYTES


def test_user_template_overrides_one_builtin_and_brand_colours_apply(project: Path) -> None:
    (project / "templates" / "footer.mjml.j2").write_text(
        '<mj-section css-class="nl-sec"><mj-column><mj-text>'
        "Custom footer for {{ settings.name }}</mj-text></mj-column></mj-section>\n",
        encoding="utf-8",
    )
    config = project / "newsletter.toml"
    text = config.read_text(encoding="utf-8")
    text = text.replace(
        "[brand]\n", '[brand]\nprimary_color = "#0b6e4f"\nbackground_color = "#abcdef"\n'
    )
    config.write_text(text, encoding="utf-8")
    settings = load_settings(project)
    result = build_file(SAMPLE, settings)
    assert result.rendered is not None
    html = result.rendered.html
    assert "Custom footer for Test Briefing" in html
    assert "You are receiving this" not in html  # the built-in footer is replaced
    assert "Holloway Library" in html  # the other built-in templates still apply
    assert "#0b6e4f" in html and "#b3261e" not in html
    assert "background-color: #abcdef" in html or "background-color:#abcdef" in html


def test_broken_user_template_is_a_finding_naming_the_file(project: Path) -> None:
    (project / "templates" / "header.mjml.j2").write_text(
        "<mj-section>\n{% if %}\n</mj-section>\n", encoding="utf-8"
    )
    result = build_file(SAMPLE, load_settings(project))
    assert result.rendered is None
    assert [f.rule for f in result.findings] == ["template-error"]
    assert "header.mjml.j2:2: template syntax error" in result.findings[0].message


def test_project_without_templates_folder_uses_builtin(tmp_path: Path) -> None:
    result = build_file(SAMPLE, load_settings(tmp_path))
    assert result.ok and result.rendered is not None
    assert "The Daily Briefing" in result.rendered.html


def test_personal_copy_keeps_merge_marks_web_copy_fills_fallback(settings: Settings) -> None:
    text = (
        "---\nsubject: Hello\npreheader: p\ndate: 2026-11-24\n---\n"
        "# Lead: Good morning, {{name|reader}}\nText for {{ name }}.\n"
    )
    web = build_text(text, "t.md", settings)
    assert web.rendered is not None
    assert "Good morning, reader" in web.rendered.html
    assert "{{" not in web.rendered.html and UNSUBSCRIBE_MARK not in web.rendered.html
    assert web.issue is not None
    personal = render(web.issue, settings, personal=True)
    assert UNSUBSCRIBE_MARK in personal.html and UNSUBSCRIBE_MARK in personal.text
    assert "Good morning, Ada" in fill_name(personal.html, "Ada")


def test_text_is_escaped_not_interpreted(settings: Settings) -> None:
    text = (
        "---\nsubject: A & B <c>\npreheader: p\ndate: 2026-11-24\n---\n"
        "# Lead: Fish & chips {% raw %} </mj-text>\nPrices rose 5% & more; 3 < 4.\n"
    )
    result = build_text(text, "t.md", settings)
    assert result.ok, [f.format() for f in result.findings]
    assert result.rendered is not None
    html = result.rendered.html
    assert "Fish &amp; chips {% raw %} &lt;/mj-text&gt;" in html
    assert "3 &lt; 4" in html
    assert "<title>A &amp; B &lt;c&gt;</title>" in html


# -- in a real browser -----------------------------------------------------------------------

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
    "--disable-component-update", "--disable-sync", "--no-first-run",
]


@pytest.mark.browser
def test_hard_numbers_side_by_side_on_desktop_stacked_on_phones(
    rendered_sample, tmp_path: Path
) -> None:
    if not Path(CHROMIUM).exists():
        pytest.skip("Chromium is not installed at /usr/bin/chromium")
    from playwright.sync_api import sync_playwright

    page_file = tmp_path / "email.html"
    page_file.write_text(rendered_sample.rendered.html, encoding="utf-8")
    measure = """() => {
        const fig = [...document.querySelectorAll('div.nl-figure')]
            .find(e => e.textContent.trim() === '70,000');
        const row = fig.closest('table').closest('div.nl-sec');
        const cols = [...row.querySelectorAll('div.mj-outlook-group-fix')];
        const body = document.querySelector('div.nl-sec').getBoundingClientRect();
        return {cols: cols.map(c => { const r = c.getBoundingClientRect();
                                      return [r.left, r.top, r.width]; }),
                bodyWidth: body.width};
    }"""
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            page = browser.new_page(viewport={"width": 1000, "height": 800})
            page.route("**/*", lambda route: route.abort()
                       if not route.request.url.startswith("file:") else route.continue_())
            page.goto(page_file.as_uri())
            desktop = page.evaluate(measure)
            page.set_viewport_size({"width": 375, "height": 800})
            phone = page.evaluate(measure)
        finally:
            browser.close()
    assert desktop["bodyWidth"] == 600
    (l1, t1, w1), (l2, t2, w2) = desktop["cols"]
    assert t1 == t2 and l2 > l1 and round(w1 + w2) == 600  # side by side
    assert phone["bodyWidth"] == 375
    (l1, t1, w1), (l2, t2, w2) = phone["cols"]
    assert l1 == l2 and t2 > t1 and w1 == w2 == 375  # one column, stacked


def test_template_cache_is_shared_by_projects_and_never_stale(tmp_path: Path) -> None:
    """Compiled templates are cached between runs (in $XDG_CACHE_HOME), keyed by source."""
    from newsletter.authoring.project import init_project

    cache_home = tmp_path / "cache"
    env = {k: v for k, v in os.environ.items() if not k.startswith("NEWSLETTER_")}
    env["XDG_CACHE_HOME"] = str(cache_home)
    projects = [tmp_path / "a", tmp_path / "b"]
    for folder in projects:
        init_project(folder, samples=False)

    def render(folder: Path) -> str:
        proc = subprocess.run(
            [sys.executable, "-c", "from newsletter.cli import main; main()", "render",
             str(SAMPLE)],
            cwd=folder, env=env, capture_output=True, text=True, check=True,
        )
        return proc.stdout

    first = render(projects[0])
    cache = cache_home / "newsletter" / "templates"
    entries = sorted(p.name for p in cache.iterdir())
    # email, header, _masthead, footer, style, layout, look, _heading, _image, _readmore,
    # and the three section templates the sample uses
    assert len(entries) == 13
    assert render(projects[1]) == first
    assert sorted(p.name for p in cache.iterdir()) == entries  # the same templates: shared
    footer = projects[0] / "templates" / "footer.mjml.j2"
    footer.write_text(footer.read_text().replace("{{ settings.footer_text }}", "Edited!"))
    assert "Edited!" in render(projects[0])  # the edit is seen at once
    assert "Edited!" not in render(projects[1])
    assert render(projects[1]) == first


def test_template_error_spanning_lines_is_still_one_finding_line(project: Path) -> None:
    (project / "templates" / "footer.mjml.j2").write_text(
        "{{ settings.nonexistent_setting }}\n", encoding="utf-8"
    )
    result = build_file(SAMPLE, load_settings(project))
    assert [f.rule for f in result.findings] == ["template-error"]
    line = result.findings[0].format()
    assert "\n" not in line and "nonexistent_setting" in line
