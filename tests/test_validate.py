"""The validator's rules over a parsed issue, each with the line it points at.

Findings come from ``build_text`` (parser + rules + the rendered-size check), as the CLI,
the preview and the sender see them.
"""

from __future__ import annotations

import pytest

from newsletter.build import build_text
from newsletter.config import Settings
from newsletter.model import Severity
from newsletter.validate import GMAIL_CLIP_BYTES, SUBJECT_MAX, SUBJECT_PHONE

FRONT = "---\nsubject: A test subject\npreheader: A test preheader\ndate: 2026-11-24\n---\n"
BODY = "# Lead: X\nText.\n"


def findings(text: str, settings: Settings, *, render: bool = False) -> list[tuple[int, str, str]]:
    result = build_text(text, "t.md", settings, render_html=render)
    return [(f.line, f.severity.value, f.rule) for f in result.findings]


def only(text: str, settings: Settings, rule: str):
    result = build_text(text, "t.md", settings, render_html=False)
    matches = [f for f in result.findings if f.rule == rule]
    assert len(matches) == 1, [f.format() for f in result.findings]
    return matches[0]


def front(subject: str = "A test subject", preheader: str | None = "A preheader") -> str:
    lines = [f"subject: {subject}", "date: 2026-11-24"]
    if preheader is not None:
        lines.insert(1, f"preheader: {preheader}")
    return "---\n" + "\n".join(lines) + "\n---\n"


# -- subject and preheader ------------------------------------------------------------------


def test_subject_lengths(settings: Settings) -> None:
    assert findings(front("a" * SUBJECT_PHONE) + BODY, settings) == []
    long = only(front("a" * (SUBJECT_PHONE + 1)) + BODY, settings, "subject-long")
    assert (long.line, long.severity) == (2, Severity.WARNING)
    assert "cut off on phones" in long.message
    too_long = only(front("a" * (SUBJECT_MAX + 1)) + BODY, settings, "subject-too-long")
    assert (too_long.line, too_long.severity) == (2, Severity.ERROR)
    assert findings(front("a" * SUBJECT_MAX) + BODY, settings) == [(2, "warning", "subject-long")]


def test_preheader_missing_and_lengths(settings: Settings) -> None:
    missing = only(front(preheader=None) + BODY, settings, "preheader-missing")
    assert missing.severity is Severity.WARNING and "add 'preheader: ...'" in missing.message
    assert findings(front(preheader="b" * 100) + BODY, settings) == []
    assert findings(front(preheader="b" * 101) + BODY, settings) == [
        (3, "warning", "preheader-long")
    ]
    assert findings(front(preheader="b" * 151) + BODY, settings) == [
        (3, "error", "preheader-too-long")
    ]


# -- structure --------------------------------------------------------------------------------


def test_no_sections(settings: Settings) -> None:
    assert findings(FRONT + "\n", settings) == [(6, "error", "no-sections")]


def test_lead_not_first_and_duplicate_lead(settings: Settings) -> None:
    text = FRONT + "# Story: A\nText.\n\n# Lead: B\nText.\n\n# Lead: C\nText.\n"
    assert findings(text, settings) == [
        (9, "warning", "lead-not-first"),
        (12, "warning", "lead-duplicate"),
    ]


def test_empty_sections_and_items(settings: Settings) -> None:
    text = FRONT + (
        "# Lead: A\n"  # 6
        "\n"
        "# Hard Numbers: N\n"  # 8
        "\n"
        "## About half\n"  # 10
        "Text.\n"
        "\n"
        "## 4\n"  # 13
        "\n"
        "# Hard Numbers: Nothing\n"  # 15
        "\n"
        "# What We're Watching: W\n"  # 17
        "\n"
        "# What We're Watching: W2\n"  # 19
        "\n"
        "## T\n"  # 21
        "\n"
        "##\n"  # 23
        "Text.\n"
        "# Story:\n"  # 25
        "Text.\n"
    )
    assert findings(text, settings) == [
        (6, "error", "story-empty"),
        (10, "error", "hard-numbers-figure"),
        (13, "error", "hard-numbers-item-empty"),
        (15, "error", "hard-numbers-empty"),
        (17, "error", "watching-empty"),
        (21, "error", "watching-item-empty"),
        (23, "error", "watching-item-title"),
        (25, "error", "section-headline-missing"),
    ]


def test_hard_numbers_item_message_matches_the_contract(settings: Settings) -> None:
    text = FRONT + "# Lead: X\nText.\n\n# Hard Numbers: F\n\n## 70,000\n\n## 3%\nText.\n"
    result = build_text(text, "issues/2026-11-24.md", settings)
    assert [f.format() for f in result.findings] == [
        'issues/2026-11-24.md:11:1: error: Hard Numbers item "70,000" has no text: add a '
        "paragraph under it [hard-numbers-item-empty]"
    ]


# -- URLs and images --------------------------------------------------------------------------


def test_relative_and_insecure_urls_are_errors_mailto_allowed(settings: Settings) -> None:
    text = FRONT + (
        "# Lead: X\n"  # 6
        '![alt](http://x.org/a.jpg "c")\n'  # 7
        "\n"
        "See [a](/relative), [b](http://x.org), [c](mailto:desk@example.org) and "  # 9
        "[d](https://x.org/ok).\n"
        "\n"
        "- a [list link](ftp://x.org/file)\n"  # 11
        "\n"
        "[Read more](page.html)\n"  # 13
    )
    result = build_text(text, "t.md", settings, render_html=False)
    got = [(f.line, f.column, f.rule) for f in result.findings]
    assert got == [
        (7, 1, "image-url"),
        (9, 9, "link-url"),
        (9, 25, "link-url"),
        (11, 17, "link-url"),
        (13, 13, "link-url"),
    ]
    messages = [f.message for f in result.findings]
    assert "is relative" in messages[1] and "uses http:" in messages[2]
    assert all(f.severity is Severity.ERROR for f in result.findings)


def test_image_without_alt_and_without_credit(settings: Settings) -> None:
    text = FRONT + "# Lead: X\n![](https://x.org/a.jpg)\n\nText.\n"
    assert findings(text, settings) == [
        (7, "error", "image-alt-missing"),
        (7, "warning", "image-credit-missing"),
    ]
    credited = FRONT + '# Lead: X\n![A photo](https://x.org/a.jpg "Photo: A/B")\n\nText.\n'
    assert findings(credited, settings) == []


def test_errors_are_all_reported_at_once(settings: Settings) -> None:
    text = (
        "---\nsubject: " + "s" * 151 + "\ndate: 2026-11-24\n---\n"  # no preheader
        "# Story: A\n"  # 5
        "Text [x](http://x.org).\n"  # 6
        "\n"
        "# Lead: B\n"  # 8
        "![](https://x.org/a.jpg)\n"  # 9
        "\n"
        "Text <b>html</b>.\n"  # 11
        "\n"
        "# Hard Numbers: N\n"  # 13
        "\n"
        "## 5\n"  # 15
    )
    rules = findings(text, settings)
    assert rules == [
        (1, "warning", "preheader-missing"),
        (2, "error", "subject-too-long"),
        (6, "error", "link-url"),
        (8, "warning", "lead-not-first"),
        (9, "error", "image-alt-missing"),
        (9, "warning", "image-credit-missing"),
        (11, "error", "raw-html"),
        (11, "error", "raw-html"),
        (15, "error", "hard-numbers-item-empty"),
    ]


# -- the rendered size --------------------------------------------------------------------------


def _oversized(stories: int) -> str:
    paragraph = (
        "The committee met again on Tuesday and, after a long debate about the budget, agreed "
        "to publish its report before the end of the month, with a [summary](https://example."
        "org/summary) for readers who do not have time for all of it.\n\n"
    )
    parts = [FRONT, "# Lead: A long issue\nText.\n\n"]
    for number in range(stories):
        parts.append(f"# Story: Story number {number}\n" + paragraph * 4)
    return "".join(parts)


def test_rendered_html_over_102_kb_is_an_error(settings: Settings) -> None:
    small = build_text(_oversized(2), "t.md", settings)
    assert small.ok and small.rendered is not None
    big = build_text(_oversized(60), "t.md", settings)
    assert big.rendered is not None and big.rendered.size > GMAIL_CLIP_BYTES
    assert [(f.line, f.rule) for f in big.findings] == [(6, "html-too-large")]
    message = big.findings[0].message
    assert "Gmail clips" in message and "102 KB" in message
    assert not big.ok


@pytest.mark.parametrize("name", ["2026-11-24.md", "2026-11-25.md"])
def test_sample_issues_have_no_findings_at_all(settings: Settings, name: str) -> None:
    text = (settings.issues_path / name).read_text(encoding="utf-8")
    assert findings(text, settings, render=True) == []
