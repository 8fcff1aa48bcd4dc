"""The validator's rules over a parsed issue, each with the line it points at.

Findings come from ``build_text`` (parser + rules + the rendered-size check), as the CLI,
the preview and the sender see them.
"""

from __future__ import annotations

import pytest

from newsletter.authoring.build import build_text
from newsletter.authoring.model import Severity
from newsletter.authoring.validate import GMAIL_CLIP_BYTES, SUBJECT_MAX, SUBJECT_PHONE
from newsletter.config import Settings

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
        (9, "error", "lead-not-first"),
        (12, "error", "lead-duplicate"),
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
        (8, "error", "lead-not-first"),
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
        "to publish its report before the end of the month, with a [summary](https://news.sendtest."
        "news/summary) for readers who do not have time for all of it.\n\n"
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
    assert [(f.line, f.rule) for f in big.errors] == [(6, "html-too-large")]
    message = big.errors[0].message
    assert "Gmail clips" in message and "102 KB" in message
    assert not big.ok


@pytest.mark.parametrize("name", ["2026-11-24.md", "2026-11-25.md"])
def test_sample_issues_have_no_findings_at_all(settings: Settings, name: str) -> None:
    text = (settings.issues_path / name).read_text(encoding="utf-8")
    assert findings(text, settings, render=True) == []


# -- refused link schemes ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("href", "scheme"),
    [("javascript:alert(1)", "javascript"), ("vbscript:msgbox(1)", "vbscript"),
     ("file:///etc/passwd", "file"), ("data:text/html,hello", "data"),
     ("http://example.org/a", "http")],
)
def test_refused_link_schemes_are_errors_at_their_column(
    settings: Settings, href: str, scheme: str
) -> None:
    text = FRONT + f"# Lead: X\nText.\n\nSee [the page]({href}) today.\n"  # line 9
    finding = only(text, settings, "link-url")  # javascript: was literal text: no finding
    assert (finding.line, finding.column, finding.severity) == (9, 16, Severity.ERROR)
    assert f"uses {scheme}:" in finding.message
    assert "links must be absolute https: or mailto: URLs" in finding.message


@pytest.mark.parametrize("src", ["javascript:alert(1)", "data:image/png;base64,AAAA", "/a.jpg"])
def test_section_image_with_a_refused_scheme_is_an_error(settings: Settings, src: str) -> None:
    text = FRONT + f'# Lead: X\n![A photo]({src} "Photo: A/B")\n\nText.\n'
    finding = only(text, settings, "image-url")
    assert (finding.line, finding.column) == (7, 1)
    assert "images must be absolute https: URLs" in finding.message


def test_unclosed_image_is_an_error_and_nothing_renders(settings: Settings) -> None:
    text = FRONT + "# Lead: X\n![Alt text](https://images.sendtest.news/a.jpg\n\nText.\n"
    result = build_text(text, "t.md", settings)
    assert [(f.line, f.column, f.rule) for f in result.findings] == [(7, 1, "image-syntax")]
    assert result.rendered is None


# -- the new-issue template's placeholders --------------------------------------------------------


def _new_issue(settings: Settings, subject: str | None, day: int = 1) -> str:
    import datetime as dt

    from newsletter.authoring.project import new_issue

    path = new_issue(settings, date=dt.date(2026, 12, day), subject=subject)
    return path.read_text(encoding="utf-8")


def test_unedited_new_issue_is_refused_at_each_placeholder(settings: Settings) -> None:
    text = _new_issue(settings, "The harbour vote")
    result = build_text(text, "new.md", settings)
    assert [(f.line, f.rule) for f in result.findings] == [
        (3, "placeholder-text"),  # preheader: Plus: three numbers to know today
        (8, "placeholder-image"),  # images.example.org/lead.jpg, its alt text and credit
        (10, "placeholder-text"),  # Write the lead story here.
        (10, "placeholder-link"),  # [links](https://example.org)
        (12, "placeholder-link"),  # [Read more](https://example.org/)
        (14, "placeholder-text"),  # Hard Numbers: Three figures to know
        (17, "placeholder-text"),  # What the figure means...
        (19, "placeholder-text"),  # What We're Watching: What comes next
        (21, "placeholder-text"),  # ## A title
        (22, "placeholder-text"),  # A paragraph about it.
        (24, "placeholder-text"),  # Story: A second story
        (25, "placeholder-text"),  # A paragraph.
    ]
    assert all(f.severity is Severity.ERROR for f in result.findings)
    assert result.rendered is None
    messages = {(f.line, f.rule): f.message for f in result.findings}
    assert "'Write the lead story here.' is the new-issue template's placeholder" in messages[
        (10, "placeholder-text")
    ]
    image = messages[(8, "placeholder-image")]
    assert "URL and alt text and credit are" in image and "use your photo's" in image
    default = build_text(_new_issue(settings, None, day=2), "new2.md", settings)
    assert {(2, "placeholder-text"), (7, "placeholder-text")} <= {
        (f.line, f.rule) for f in default.findings
    }  # the default subject, also the Lead's headline


def test_an_edited_issue_keeping_one_placeholder_sentence_is_told(settings: Settings) -> None:
    text = FRONT + (
        "# Lead: The harbour vote\n"
        "The council voted 7-2 on Tuesday. Use **bold**, *italics* and [links](https://x.org).\n"
        "\n"
        "[Read more](https://news.sendtest.news/harbour)\n"  # not a placeholder link
    )
    result = build_text(text, "t.md", settings, render_html=False)
    assert [(f.line, f.column, f.rule) for f in result.findings] == [(7, 35, "placeholder-text")]
    assert "'Use bold, italics and links.'" in result.findings[0].message


def test_placeholders_follow_the_template(settings: Settings) -> None:
    from newsletter.authoring.draft_placeholders import builtin_placeholders, from_issue_text
    from newsletter.authoring.render import BUILTIN_TEMPLATES

    source = (BUILTIN_TEMPLATES / "new-issue.md.j2").read_text(encoding="utf-8")
    assert "Write the lead story here." in source  # the rule reads it from there
    marks = builtin_placeholders()
    assert marks.sentence_in("Intro. Write the lead  story HERE. More.") == (
        "Write the lead story HERE."
    )
    assert marks.link("https://images.example.org/lead.jpg") is False
    assert marks.title("1,000") is False  # a figure alone is a real heading too
    edited = from_issue_text(
        "---\nsubject: S\ndate: 2026-11-24\n---\n# Story: Tell us\nReplace this line.\n"
    )
    assert edited.sentence_in("Replace this line.") and not edited.sentence_in(
        "Write the lead story here."
    )


# -- the size limit ---------------------------------------------------------------------------------


def test_issue_file_over_2_mb_is_refused_at_once(settings: Settings, tmp_path) -> None:
    from click.testing import CliRunner

    from newsletter.authoring.build import MAX_ISSUE_BYTES, build_file
    from newsletter.cli import cli
    from newsletter.errors import UsageError

    big = tmp_path / "big.md"
    big.write_bytes((FRONT + BODY).encode() + b"x" * int(3.1 * 1024 * 1024))
    with pytest.raises(UsageError) as caught:
        build_file(big, settings)
    assert str(caught.value).startswith(f"{big}: error: issue file is 3.1 MB, over the 2 MB limit: ")
    result = CliRunner().invoke(cli, ["--project", str(settings.project_dir), "validate", str(big)])
    assert result.exit_code == 2 and "Traceback" not in result.output
    assert f"{big}: error: issue file is 3.1 MB, over the 2 MB limit" in result.output
    exact = tmp_path / "exact.md"
    exact.write_bytes((FRONT + BODY).encode().ljust(MAX_ISSUE_BYTES, b"\n"))
    assert build_file(exact, settings, render_html=False).ok  # 2 MB itself is allowed
    in_memory = build_text(FRONT + BODY + "x" * (MAX_ISSUE_BYTES + 1), "t.md", settings)
    assert [(f.line, f.rule) for f in in_memory.findings] == [(1, "issue-too-large")]
