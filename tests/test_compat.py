"""Email-client compatibility of the rendered HTML (issue 15).

Outlook table widths, head order, the hidden preheader, text sizes, line heights and
dark-mode contrast are checked in Python. Two checks need node and the pinned npm tools
that ``.ci/run`` installs into ``.ci/node_modules``: every caniemail finding for the
clients we support is listed in ``templates/COMPATIBILITY.md``, and the reference MJML
compiler gives the same Outlook widths as mjml-python. Without node they are skipped with
the reason, except under ``CI=true``, where they fail.
"""

from __future__ import annotations

import fnmatch
import json
import os
import re
import shutil
import subprocess
from functools import cache
from pathlib import Path

import pytest
from mjml import mjml2html

from newsletter.authoring.build import build_file
from newsletter.authoring.emailhtml import CHARSET_WITHIN, px_units, unitless_paddings
from newsletter.authoring.render import BUILTIN_TEMPLATES, render_mjml
from newsletter.config import Settings

ROOT = Path(__file__).resolve().parent.parent
CI_DIR = ROOT / ".ci"
ISSUES = sorted((ROOT / "issues").glob("*.md")) + [ROOT / "tests/fixtures/typical-issue.md"]
COMPATIBILITY = BUILTIN_TEMPLATES / "COMPATIBILITY.md"
GMAIL_CLIP = 102 * 1024


def _settings() -> Settings:
    return Settings(base_url="https://news.example.org", postal_address="1 Harbour Road, Eastmoor")


@cache
def _built(path: Path):
    build = build_file(path, _settings(), personal=True)
    assert build.ok, build.errors
    return build


def _html(path: Path) -> str:
    return _built(path).rendered.html


def _outlook_widths(html: str) -> list[int]:
    """Every width in the Outlook-only conditional comments, in document order."""
    out: list[int] = []
    for block in re.findall(r"<!--\[if mso \| IE\]>(.*?)<!\[endif\]-->", html, re.DOTALL):
        out += [int(w) for w in re.findall(r'width[:=]"?(\d+)', block)]
    return out


def _rule_widths(html: str) -> list[int]:
    """The widths of the rules' Outlook tables."""
    return [int(w) for w in re.findall(r'<table[^>]*width="(\d+)px" style="border-top:', html)]


def _node_tool(script: str) -> list[str]:
    node = shutil.which("node")
    missing = None
    if node is None:
        missing = "node is not installed (apt-get install nodejs npm)"
    elif not (CI_DIR / "node_modules" / "caniemail").is_dir():
        missing = "npm tools missing: run `npm ci --prefix .ci` (as .ci/run does)"
    if missing:
        if os.environ.get("CI") == "true":
            pytest.fail(f"{missing}; under CI=true this check must run")
        pytest.skip(missing)
    return [node, str(CI_DIR / script)]


# -- Outlook ------------------------------------------------------------------------------


def test_builtin_templates_write_a_unit_on_every_padding():
    for template in BUILTIN_TEMPLATES.rglob("*.mjml.j2"):
        assert unitless_paddings(template.read_text()) == [], template.name


def test_a_unitless_padding_is_given_px_before_compiling():
    doc = ('<mjml><mj-body><mj-section><mj-column><mj-divider padding="28px 28px 0" />'
           "</mj-column></mj-section></mj-body></mjml>")
    assert unitless_paddings(doc) == ['padding="28px 28px 0"']
    assert 'padding="28px 28px 0px"' in px_units(doc)
    assert px_units('<x padding="{{ pad }}" inner-padding="4 .5em 10%">') == (
        '<x padding="{{ pad }}" inner-padding="4px .5em 10%">')
    # the bug this works around: MRML drops the whole padding when a value has no unit
    assert _rule_widths(mjml2html(doc, fonts={})) == [600]
    assert _rule_widths(mjml2html(px_units(doc), fonts={})) == [544]


@pytest.mark.parametrize("path", ISSUES, ids=lambda p: p.name)
def test_outlook_rule_tables_fit_inside_their_padded_cell(path):
    rules = _rule_widths(_html(path))
    assert rules and set(rules) == {544}


def test_preheader_is_hidden_from_outlook_too():
    html = _html(ROOT / "issues/2026-11-24.md")
    body = html[html.index("<body"):]
    first_div = re.search(r'<div style="([^"]*)"', body)
    assert "display:none" in first_div.group(1) and "mso-hide:all" in first_div.group(1)


# -- head ---------------------------------------------------------------------------------


@pytest.mark.parametrize("path", ISSUES, ids=lambda p: p.name)
def test_charset_comes_first_in_head_and_client_rules_are_kept(path):
    html = _html(path)
    head = html[html.index("<head>") + 6:]
    assert head.startswith('<meta http-equiv="Content-Type" content="text/html; charset=UTF-8">')
    assert html.encode().index(b"charset=UTF-8") < CHARSET_WITHIN
    assert html.index("<title>") < html.index("<style")
    assert "#outlook a { padding: 0; }" in html
    assert re.search(r'<style media="[^"]*">\.moz-text-html \.mj-column-per-100', html)
    assert html.index("</head>") > html.index(".moz-text-html")


@pytest.mark.parametrize("path", ISSUES, ids=lambda p: p.name)
def test_html_stays_under_gmails_clip(path):
    assert _built(path).rendered.size < GMAIL_CLIP


# -- text sizes and line heights ------------------------------------------------------------


@pytest.mark.parametrize("path", ISSUES, ids=lambda p: p.name)
def test_no_text_smaller_than_14px(path):
    html = re.sub(r"<img\b[^>]*>", "", _html(path))  # alt text: the image's own style
    sizes = {int(n) for n in re.findall(r"font-size:\s*(\d+)px", html)}
    assert {n for n in sizes if 1 < n < 14} == set()  # 0 and 1 px: layout spacers


@pytest.mark.parametrize("path", ISSUES, ids=lambda p: p.name)
def test_line_heights_have_units_and_the_exact_rule_for_outlook(path):
    html = _html(path)
    heights = re.findall(r"line-height:\s*([0-9.]+)(?=[;\"\s])", html)
    assert [h for h in heights if h not in ("0",)] == []  # unitless (0 is 0 everywhere)
    for style in re.findall(r'class="nl-(?:headline|kicker|credit|date|footer)"[^>]*style="([^"]*)"',
                            html):
        assert "mso-line-height-rule: exactly" in style


# -- contrast -------------------------------------------------------------------------------


def _luminance(hex_colour: str) -> float:
    value = hex_colour.lstrip("#")
    if len(value) == 3:
        value = "".join(c * 2 for c in value)
    channels = [int(value[i:i + 2], 16) / 255 for i in (0, 2, 4)]
    linear = [c / 12.92 if c <= 0.04045 else ((c + 0.055) / 1.055) ** 2.4 for c in channels]
    return 0.2126 * linear[0] + 0.7152 * linear[1] + 0.0722 * linear[2]


def contrast(a: str, b: str) -> float:
    la, lb = sorted((_luminance(a), _luminance(b)), reverse=True)
    return (la + 0.05) / (lb + 0.05)


def test_contrast_formula_matches_wcag_examples():
    assert round(contrast("#000000", "#ffffff"), 1) == 21.0
    assert round(contrast("#b3261e", "#1e1e1e"), 2) == 2.55  # the rule the issue reported


def _dark_block(html: str) -> str:
    start = html.index("@media (prefers-color-scheme: dark)")
    depth = 0
    for end in range(html.index("{", start), len(html)):
        depth += {"{": 1, "}": -1}.get(html[end], 0)
        if depth == 0:
            break
    return html[start:end]


def test_light_mode_brand_colours_meet_wcag_aa():
    brand = _settings().brand
    for colour in (brand.text_color, brand.primary_color, brand.muted_color):
        assert contrast(colour, brand.body_color) >= 4.5, colour


def test_every_dark_mode_colour_meets_wcag_aa_on_every_dark_background():
    dark = _dark_block(_html(ROOT / "issues/2026-11-24.md"))
    backgrounds = set(re.findall(r"background-color:\s*(#[0-9a-fA-F]{3,6})", dark))
    texts = set(re.findall(r"(?<![-\w])color:\s*(#[0-9a-fA-F]{3,6})", dark))
    rules = set(re.findall(r"border-top-color:\s*(#[0-9a-fA-F]{3,6})", dark))
    brand = _settings().brand
    assert brand.dark_body_color in backgrounds and brand.dark_text_color in texts
    assert brand.dark_primary_color in rules  # the section rules change colour too
    assert len(rules) == 2  # and the footer's
    for background in backgrounds:
        for text in texts:
            assert contrast(text, background) >= 4.5, (text, background)
        for rule in rules:
            assert contrast(rule, background) >= 3.0, (rule, background)


# -- caniemail and the reference MJML (node) -------------------------------------------------


def _listed_features() -> dict[str, list[str]]:
    """COMPATIBILITY.md's table: caniemail feature title -> client patterns."""
    rows: dict[str, list[str]] = {}
    for line in COMPATIBILITY.read_text().splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if len(cells) >= 3 and cells[0].startswith("`") and cells[0].endswith("`"):
            patterns = re.findall(r"`([^`]+)`", cells[1])
            rows[cells[0].strip("`")] = patterns
            assert cells[2], f"{cells[0]}: give the fallback that client gets"
    return rows


def test_every_caniemail_finding_is_removed_or_listed_with_its_fallback(tmp_path):
    command = _node_tool("caniemail-check.mjs")
    files = []
    for path in ISSUES:
        target = tmp_path / f"{path.stem}.html"
        target.write_text(_html(path))
        files.append(str(target))
    result = subprocess.run(command + files, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    findings = json.loads(result.stdout)
    listed = _listed_features()
    unlisted = sorted({
        f"{issue['title']} ({issue['level']} in {issue['client']})"
        for issues in findings.values()
        for issue in issues
        if not any(fnmatch.fnmatch(issue["client"], p) for p in listed.get(issue["title"], []))
    })
    assert unlisted == [], "add these to templates/COMPATIBILITY.md or remove them:\n" + (
        "\n".join(unlisted))
    assert sum(map(len, findings.values())) > 0  # the check did see the documents


@pytest.mark.parametrize("path", ISSUES, ids=lambda p: p.name)
def test_reference_mjml_gives_the_same_outlook_widths(path):
    command = _node_tool("mjml-compile.mjs")
    source = px_units(render_mjml(_built(path).issue, _settings(), personal=True))
    reference = subprocess.run(command, input=source, capture_output=True, text=True,
                               timeout=120)
    assert reference.returncode == 0, reference.stderr
    ours = _outlook_widths(mjml2html(source, fonts={}, disable_comments=True))
    assert 544 in ours and ours == _outlook_widths(reference.stdout)
