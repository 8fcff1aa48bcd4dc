"""The email's look, read from the rendered HTML and text: the masthead, labels readers
understand, the Quote, What We're Ignoring and Sponsor kinds (parse, validate, render,
text), kickers, "In this issue", photos' size attributes, distinct link names, the footer's
links, and themes (switching, brand defaults, size). Positions are measured in Chromium
by test_design_browser.py.
"""

from __future__ import annotations

import re
from html import unescape
from pathlib import Path

import pytest

from newsletter.authoring.build import build_file, build_text
from newsletter.authoring.media import size_attributes
from newsletter.authoring.model import SectionKind
from newsletter.authoring.parse import parse_text
from newsletter.authoring.render import environment, render
from newsletter.authoring.validate import GMAIL_CLIP_BYTES
from newsletter.config import load_settings
from newsletter.errors import RenderError

from .conftest import REPO, SAMPLE

TYPICAL = REPO / "tests" / "fixtures" / "typical-issue.md"

KINDS_ISSUE = """\
---
subject: Kinds
preheader: All of them
date: 2026-12-03
contents: true
---

# Lead: The port strike enters its second week
kicker: Analysis
![Idle cranes at dusk.](https://images.sendtest.news/cranes.jpg "Photo: T. W./Harbour Press")

Seven days after crane operators walked out.

[Read more](https://news.sendtest.news/strike)

# Quote: On the shelves
"We can cope with two weeks. At four weeks we start rationing."

— Head of a retail association

# What We're Ignoring: Noise we skipped
## The celebrity feud
Nothing in it changes anyone's day.

# Sponsor: Warm homes, lower bills
Insulation that pays for itself, with [free surveys](https://sponsor.sendtest.news/survey).

[Book a survey](https://sponsor.sendtest.news/book)

# Story: The village that bought its pub
Two hundred and sixty people put in money.

[Read the full story](https://news.sendtest.news/pub)
"""


def write(folder: Path, text: str, name: str = "issue.md") -> Path:
    path = folder / name
    path.write_text(text, encoding="utf-8")
    return path


def findings_of(text: str) -> list[str]:
    result = build_text(text, "t.md", load_settings(None), render_html=False)
    return [f"{f.line}:{f.severity.value}:{f.rule}" for f in result.findings]


def configure(project: Path, top: str = "", brand: str = ""):
    """Add settings to the project's newsletter.toml (which ends with its [brand] table)."""
    config = project / "newsletter.toml"
    text = config.read_text(encoding="utf-8").replace("[brand]\n", f"{top}\n[brand]\n{brand}")
    config.write_text(text, encoding="utf-8")
    return load_settings(project)


@pytest.fixture
def base_settings(project: Path):
    settings = load_settings(project)
    assert settings.base_url == "https://news.example.org"  # as `newsletter init` writes it
    return settings


# -- the new kinds: parse, validate, render, text ------------------------------------------


def test_new_kinds_parse_into_the_model() -> None:
    result = parse_text(KINDS_ISSUE, "t.md")
    assert result.findings == []
    lead, quote, ignoring, sponsor, story = result.sections
    assert lead.kicker == "Analysis" and lead.image is not None and lead.image.line == 10
    assert quote.kind is SectionKind.QUOTE
    assert quote.attribution == "Head of a retail association" and len(quote.blocks) == 1
    assert ignoring.kind is SectionKind.IGNORING and ignoring.items[0].title == "The celebrity feud"
    assert sponsor.kind is SectionKind.SPONSOR and sponsor.read_more is not None
    assert story.kicker is None
    assert result.issue is not None and result.issue.contents is True


def test_the_kinds_issue_is_valid() -> None:
    assert findings_of(KINDS_ISSUE) == []


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        ("# Quote: Said\n\n“Words.”\n", ["6:error:quote-attribution-missing"]),
        ("# Quote: Said\n\n-- Someone\n", ["6:error:quote-empty"]),
        ("# Quote: Said\n\n" + "word " * 61 + "\n\n— A\n", ["6:warning:quote-long"]),
        ("# Quote: Said\n![A](https://images.sendtest.news/a.jpg \"C\")\n\nWords.\n\n— A\n",
         ["7:error:quote-image"]),
        ("# What We're Ignoring: Noise\n\nJust an intro.\n", ["6:error:ignoring-empty"]),
        ("# What We’re Ignoring: Noise\n## A feud\n", ["7:error:ignoring-item-empty"]),
        ("# Lead: L\n\nText.\n\n# Sponsor: Ad\n\nNo link here.\n",
         ["10:warning:sponsor-link-missing"]),
        ("# Sponsor: Ad\n\nBuy [it](https://sponsor.sendtest.news).\n\n# Lead: L\n\nText.\n",
         ["6:warning:sponsor-first", "10:error:lead-not-first"]),
        ("# Lead: L\n\nText.\n\n# Sponsor: Ad\n", ["10:error:sponsor-empty",
                                                   "10:warning:sponsor-link-missing"]),
        ("# Story: S\nkicker:\n\nText.\n", ["7:error:kicker-empty"]),
        ("# Story: S\nKicker: " + "long " * 10 + "\n\nText.\n", ["7:warning:kicker-long"]),
        ("# Hard Numbers: N\nkicker: Figures\n\n## 12\nTwelve.\n", ["7:error:kicker-kind"]),
        ("# Story: S\nkicker: **Bold**\n\nText.\n", ["7:error:kicker-format"]),
        ("# Story: S\nkicker: Analysis\nText straight after.\n", ["8:error:kicker-format", "6:error:story-empty"]),
    ],
)
def test_rules_of_the_new_kinds_name_the_line(body: str, expected: list[str]) -> None:
    front = "---\nsubject: S\npreheader: P\ndate: 2026-12-03\n---\n"
    assert sorted(findings_of(front + body)) == sorted(expected)


def test_contents_must_be_true_or_false() -> None:
    text = "---\nsubject: S\npreheader: P\ndate: 2026-12-03\ncontents: yes please\n---\n"
    assert findings_of(text + "# Lead: L\n\nText.\n") == ["5:error:contents-type"]


def test_new_kinds_render_with_their_labels(base_settings, tmp_path: Path) -> None:
    result = build_file(write(tmp_path, KINDS_ISSUE), base_settings, personal=True)
    assert result.ok and result.rendered is not None
    html = result.rendered.html
    kickers = re.findall(r'<div class="nl-kicker[^"]*"[^>]*>([^<]*)</div>', html)
    assert [unescape(k) for k in kickers] == [
        "In this issue", "Analysis", "Quote", "What We're Ignoring", "Sponsored"
    ]
    assert "LEAD" not in html and "STORY" not in html and ">Lead<" not in html
    assert re.search(r'<blockquote class="nl-pullquote"[^>]*><p[^>]*>[“"]We can cope', html)
    assert re.search(r'<p class="nl-attribution"[^>]*>\u2014 Head of a retail association</p>',
                     html)
    # each sponsor link is marked as such; no editorial link is
    sponsor_links = re.findall(r'<a href="https://sponsor\.sendtest\.news/[^"]*"([^>]*)>', html)
    assert len(sponsor_links) == 2
    assert all('rel="sponsored noopener"' in a and 'data-section="sponsor"' in a
               for a in sponsor_links)
    assert html.count('data-section="sponsor"') == 2
    # the sponsor sits on a band of its own colour, without the editorial rule
    sponsor = html[html.index('class="nl-sec nl-sponsor"'): html.index('class="nl-sec nl-story"')]
    assert len(re.findall(r"background: ?#f4f1ea", sponsor)) == 4 and "nl-rule" not in sponsor
    text = result.rendered.text
    for line in ("ANALYSIS: The port strike enters its second week", "QUOTE: On the shelves",
                 "\u2014 Head of a retail association", "WHAT WE'RE IGNORING: Noise we skipped",
                 "* The celebrity feud", "SPONSORED: Warm homes, lower bills",
                 "The village that bought its pub"):
        assert line in text.split("\n"), line
    assert "STORY" not in text and "LEAD" not in text


def test_in_this_issue_lists_the_stories_only(base_settings, tmp_path: Path) -> None:
    html = build_file(write(tmp_path, KINDS_ISSUE), base_settings).rendered.html
    toc = re.search(r'<ul class="nl-toc".*?</ul>', html, re.S)
    assert toc is not None
    entries = re.findall(r'<a href="#(section-\d+)"[^>]*>([^<]*)</a>', toc.group())
    assert [e[1] for e in entries] == [
        "The port strike enters its second week", "Noise we skipped",
        "The village that bought its pub",
    ]
    for anchor, _ in entries:
        assert f'id="{anchor}"' in html
    # off unless asked for: by the issue (contents: true) or by the project's default
    plain = build_file(SAMPLE, base_settings).rendered.html
    assert "nl-toc" not in plain
    settings = configure(base_settings.project_dir, "contents = true")
    assert "nl-toc" in build_file(SAMPLE, settings).rendered.html


# -- masthead, links, photos ---------------------------------------------------------------


def test_masthead_name_is_the_one_h1_with_view_in_browser(base_settings) -> None:
    email = build_file(SAMPLE, base_settings, personal=True).rendered.html
    assert re.findall(r"<h1[^>]*>(.*?)</h1>", email, re.S) == ["Test Briefing"]
    view = re.search(r'<a href="([^"]+)"[^>]*>View in browser</a>', email)
    assert view is not None and view.group(1) == "https://news.example.org/archive/2026-11-24"
    assert email.index("View in browser") < email.index("<h1")
    # the web copy is the browser view: no link to itself
    assert "View in browser" not in build_file(SAMPLE, base_settings).rendered.html


def test_logo_light_and_dark_in_the_h1(project: Path) -> None:
    settings = configure(project, brand=(
        'logo_url = "https://cdn.example.org/logo.png"\n'
        'logo_dark_url = "https://cdn.example.org/logo-dark.png"\nlogo_width = 200\n'
    ))
    html = build_file(SAMPLE, settings).rendered.html
    h1 = re.search(r"<h1[^>]*>(.*?)</h1>", html, re.S).group(1)
    imgs = re.findall(r"<img [^>]*>", h1)
    assert len(imgs) == 2
    assert all('alt="Test Briefing"' in i and 'width="200"' in i for i in imgs)
    assert "logo.png" in imgs[0] and "logo-dark.png" in imgs[1]
    # the dark one is hidden unless the client honours dark mode
    assert re.search(r'class="nl-logo-dark" style="[^"]*display: ?none', h1)
    dark = re.findall(r"@media \(prefers-color-scheme: dark\) \{(.*?)\n\}", html, re.S)
    assert any(".nl-logo-dark { display: block !important; }" in d for d in dark)
    assert any(".nl-logo-light { display: none !important; }" in d for d in dark)


def test_read_more_links_have_distinct_accessible_names(settings) -> None:
    html = build_file(TYPICAL, settings).rendered.html
    names = re.findall(r'<a href="[^"]*" aria-label="([^"]*)"', html)
    assert len(names) == 6 and len(set(names)) == 6
    # each starts with the words it shows, then names its story
    assert "Read the full story: The village that bought its own pub" in names
    # the visible words stay as written, with the arrow after them
    assert re.search(r'aria-label="Read the full story: The village[^"]*"[^>]*>'
                     r'Read the full story (&rarr;|\u2192)</a>', html)


def test_photo_gets_its_height_when_its_size_is_known(settings) -> None:
    html = build_file(SAMPLE, settings).rendered.html
    src = re.search(r'<img class="nl-photo" [^>]*src="([^"]+)"', html).group(1)
    sized = size_attributes(html, {src: (1200, 675)})  # as `newsletter check` probed it
    img = re.search(rf'<img [^>]*src="{re.escape(src)}"[^>]*>', sized).group()
    assert 'width="544"' in img and 'height="306"' in img


def test_photo_credit_in_the_photos_block_and_alt_text_styled(settings) -> None:
    html = build_file(SAMPLE, settings).rendered.html
    blocks = re.findall(r'(<img class="nl-photo"[^>]*>)\s*(<div class="nl-credit"[^>]*>[^<]*)',
                        html)
    assert len(blocks) == 2
    for img, credit in blocks:
        assert 'width="544"' in img and not re.search(r'\sheight="', img)
        style = re.search(r'style="([^"]*)"', img).group(1).replace(" ", "")
        for rule in ("font-family:", "font-size:15px", "color:#5f6368", "background-color:",
                     "display:block"):
            assert rule in style, rule
        assert "Photo:" in credit


def test_footer_links_in_the_email_and_the_web_copy(base_settings) -> None:
    email = build_file(SAMPLE, base_settings, personal=True).rendered.html
    footer = email[email.index('class="nl-footer"'):]
    assert ">Unsubscribe</a>" in footer
    assert 'Forwarded this? <a href="https://news.example.org/subscribe"' in footer
    assert '<a href="%%preferences_url%%"' in footer  # each reader's own, filled when sent
    web = build_file(SAMPLE, base_settings).rendered.html
    web_footer = web[web.index('class="nl-footer"'):]
    # "Read past issues" leads to the archive index, not back to this issue
    assert re.search(r'<a href="https://news.example.org/archive"[^>]*>Read past issues</a>',
                     web_footer)
    assert "Unsubscribe" not in web_footer


def test_footer_shows_the_preference_link_when_given(base_settings) -> None:
    footer = environment(base_settings, themed=True).get_template("footer.mjml.j2").render(
        brand=base_settings.brand, settings=base_settings,
        unsubscribe_url="https://news.example.org/u/T", archive_index_url=None,
        subscribe_url=None, preferences_url="https://news.example.org/p/T",
    )
    assert '<a href="https://news.example.org/p/T">Your preferences</a>' in footer


# -- themes --------------------------------------------------------------------------------


def themed(project: Path, theme: str, brand: str = "") -> object:
    config = project / "newsletter.toml"
    text = config.read_text(encoding="utf-8")
    assert 'theme = "classic"' in text  # as `newsletter init` writes it
    config.write_text(text.replace('theme = "classic"', f'theme = "{theme}"'), encoding="utf-8")
    return configure(project, brand=brand)


def test_bulletin_theme_is_templates_and_brand(project: Path) -> None:
    classic = build_file(SAMPLE, load_settings(project)).rendered.html
    settings = themed(project, "bulletin", 'muted_color = "#444444"\n')
    bulletin = build_file(SAMPLE, settings).rendered.html
    assert "Georgia" in classic and "Georgia" not in bulletin  # its fonts: sans-serif
    assert "#0b57d0" in bulletin and "#b3261e" not in bulletin  # its colours
    assert "#444444" in bulletin  # a [brand] key of the project wins over the theme's
    # its own masthead template: a band of the brand's colour
    assert re.search(r'class="nl-sec nl-masthead"[^>]*style="[^"]*background:#0b57d0', bulletin)


def test_unknown_theme_is_one_line_naming_the_themes(project: Path) -> None:
    settings = themed(project, "fancy")
    lines = (project / "newsletter.toml").read_text(encoding="utf-8").split("\n")
    line = next(n for n, text in enumerate(lines, start=1) if text.startswith("theme ="))
    with pytest.raises(RenderError, match=rf"newsletter.toml:{line}: theme 'fancy' not found: "
                       r"set theme to one of bulletin, classic"):
        render(parse_text(SAMPLE.read_text("utf-8"), str(SAMPLE)).issue, settings)
    result = build_file(SAMPLE, settings)
    assert not result.ok and "theme 'fancy' not found" in result.findings[0].message


def test_a_project_can_add_its_own_theme(project: Path) -> None:
    folder = project / "templates" / "themes" / "plain"
    folder.mkdir(parents=True)
    (folder / "look.css.j2").write_text("h1.nl-brand { font-size: 19px; }\n", "utf-8")
    (folder / "theme.toml").write_text('[brand]\nprimary_color = "#123456"\n', "utf-8")
    html = build_file(SAMPLE, themed(project, "plain")).rendered.html
    assert "font-size: 19px" in html and "#123456" in html


@pytest.mark.parametrize("theme", ["classic", "bulletin"])
@pytest.mark.parametrize("issue", [SAMPLE, TYPICAL], ids=["sample", "typical"])
def test_both_themes_stay_under_gmail_clip(project: Path, theme: str, issue: Path) -> None:
    result = build_file(issue, themed(project, theme), personal=True)
    assert result.ok and result.rendered is not None
    assert result.rendered.size < GMAIL_CLIP_BYTES


def test_a_bad_theme_brand_is_one_line_naming_the_setting(project: Path) -> None:
    folder = project / "templates" / "themes" / "loud"
    folder.mkdir(parents=True)
    (folder / "look.css.j2").write_text("", "utf-8")
    (folder / "theme.toml").write_text('[brand]\nprimary_color = "red"\n', "utf-8")
    result = build_file(SAMPLE, themed(project, "loud"))
    assert not result.ok
    message = result.findings[0].message
    assert "theme 'loud': brand setting primary_color" in message and "\n" not in message


def test_both_themes_and_the_new_kinds_pass_the_caniemail_check(project: Path, tmp_path: Path):
    """The compatibility check of test_compat.py, on what it does not render: the bulletin
    theme, the Quote, Ignoring and Sponsor kinds, "In this issue" and light/dark logos."""
    import fnmatch
    import json
    import subprocess

    from .test_compat import _listed_features, _node_tool

    command = _node_tool("caniemail-check.mjs")
    files = []
    for theme in ("classic", "bulletin"):
        settings = themed(project, theme, (
            'logo_url = "https://images.sendtest.news/logo.png"\n'
            'logo_dark_url = "https://images.sendtest.news/logo-dark.png"\n'
        ) if theme == "classic" else "")
        for issue in (write(tmp_path, KINDS_ISSUE), TYPICAL):
            result = build_file(issue, settings, personal=True)
            assert result.ok, result.findings
            target = tmp_path / f"{theme}-{issue.stem}.html"
            target.write_text(result.rendered.html, encoding="utf-8")
            files.append(str(target))
        (project / "newsletter.toml").write_text(
            (project / "newsletter.toml").read_text("utf-8").replace(
                f'theme = "{theme}"', 'theme = "classic"'), "utf-8")
    done = subprocess.run(command + files, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    listed = _listed_features()
    unlisted = sorted({
        f"{issue['title']} ({issue['level']} in {issue['client']})"
        for issues in json.loads(done.stdout).values()
        for issue in issues
        if not any(fnmatch.fnmatch(issue["client"], p) for p in listed.get(issue["title"], []))
    })
    assert unlisted == [], "add these to templates/COMPATIBILITY.md or remove them:\n" + (
        "\n".join(unlisted))
