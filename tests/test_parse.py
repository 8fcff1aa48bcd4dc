"""The parser: issue file text -> Issue model, and the findings only the parser can see.

Each rule is checked with the line (and where it matters the column) a user is sent to.
"""

from __future__ import annotations

import datetime as dt

import pytest
from hypothesis import given
from hypothesis import settings as hypothesis_settings
from hypothesis import strategies as st

from newsletter.authoring.model import BulletList, Link, Paragraph, SectionKind, Severity, Strong
from newsletter.authoring.parse import _load_yaml, _simple_front_matter, locate, parse_text

from .conftest import REPO

FRONT = "---\nsubject: A test subject\npreheader: A test preheader\ndate: 2026-11-24\n---\n"
# FRONT takes lines 1-5; the body starts on line 6.


def found(text: str) -> list[tuple[int, str, str]]:
    """(line, severity, rule) of every parser finding, in file order."""
    result = parse_text(text, "t.md")
    return sorted((f.line, f.severity.value, f.rule) for f in result.findings)


def one(text: str, rule: str):
    matches = [f for f in parse_text(text, "t.md").findings if f.rule == rule]
    assert len(matches) == 1, [f.format() for f in parse_text(text, "t.md").findings]
    return matches[0]


# -- a whole issue ------------------------------------------------------------------------


def test_sample_shaped_issue_parses_into_the_model() -> None:
    text = FRONT + (
        "\n"
        "# Lead: Can a ceasefire hold?\n"  # 7
        '![Delegates arrive.](https://images.sendtest.news/doha.jpg "Photo: Agency/Name")\n'
        "\n"
        "First paragraph with **bold** and a [link](https://news.sendtest.news/a).\n"  # 10
        "\n"
        "[Read more](https://news.sendtest.news/ceasefire)\n"  # 12
        "\n"
        "# Hard Numbers: Floods and fares\n"  # 14
        "\n"
        "## 70,000\n"  # 16
        "People evacuated.\n"
        "\n"
        "## 3.2%\n"  # 19
        "The fall in fares.\n"
        "\n"
        "# what we\u2019re watching: Banks\n"  # 22
        "An intro paragraph.\n"
        "\n"
        "## The bank steps in\n"  # 25
        "It cut rates.\n"
        "\n"
        "# STORY: A second story\n"  # 28
        "- one\n"
        "- two\n"
    )
    result = parse_text(text, "t.md")
    assert result.findings == []
    issue = result.issue
    assert issue is not None
    assert issue.subject == "A test subject"
    assert issue.preheader == "A test preheader"
    assert issue.date == dt.date(2026, 11, 24)
    assert [(s.kind, s.line) for s in issue.sections] == [
        (SectionKind.LEAD, 7),
        (SectionKind.HARD_NUMBERS, 14),
        (SectionKind.WATCHING, 22),
        (SectionKind.STORY, 28),
    ]
    lead, numbers, watching, story = issue.sections
    assert lead.headline == "Can a ceasefire hold?"
    assert lead.image is not None
    assert (lead.image.alt, lead.image.credit, lead.image.line) == (
        "Delegates arrive.", "Photo: Agency/Name", 8
    )
    assert lead.read_more is not None
    assert (lead.read_more.href, lead.read_more.label, lead.read_more.line) == (
        "https://news.sendtest.news/ceasefire", "Read more", 12
    )
    assert len(lead.blocks) == 1 and isinstance(lead.blocks[0], Paragraph)
    inlines = lead.blocks[0].inlines
    assert any(isinstance(n, Strong) for n in inlines)
    assert any(isinstance(n, Link) and n.href == "https://news.sendtest.news/a" for n in inlines)
    assert [(i.title, i.line) for i in numbers.items] == [("70,000", 16), ("3.2%", 19)]
    assert watching.headline == "Banks" and len(watching.blocks) == 1  # the intro
    assert [i.title for i in watching.items] == ["The bank steps in"]
    assert isinstance(story.blocks[0], BulletList) and len(story.blocks[0].items) == 2


def test_crlf_and_bom_give_the_same_model_and_lines() -> None:
    text = FRONT + "# Lead: X\n\nText with <b>html</b>.\n"
    plain_result = parse_text(text, "t.md")
    for variant in (text.replace("\n", "\r\n"), "\ufeff" + text, "\ufeff" + text.replace("\n", "\r")):
        other = parse_text(variant, "t.md")
        assert [f.format() for f in other.findings] == [f.format() for f in plain_result.findings]
        assert other.sections == plain_result.sections


# -- front matter ------------------------------------------------------------------------


def test_yaml_syntax_error_names_its_line_and_column() -> None:
    finding = one(
        "---\nsubject: A\npreheader: [unclosed\ndate: 2026-11-24\n---\n# Lead: X\nText.\n",
        "yaml-syntax",
    )
    assert (finding.line, finding.column, finding.severity) == (4, 5, Severity.ERROR)
    assert "YAML syntax error" in finding.message and "quote" in finding.message


def test_unquoted_colon_in_a_value_is_accepted() -> None:
    result = parse_text(
        "---\nsubject: War: what next\npreheader: Plus: three numbers\ndate: 2026-11-24\n---\n"
        "# Lead: X\nText.\n"
    )
    assert result.findings == []
    assert result.issue is not None
    assert result.issue.subject == "War: what next"
    assert result.issue.preheader == "Plus: three numbers"


def test_unknown_front_matter_key_is_a_warning_with_did_you_mean() -> None:
    finding = one(
        "---\nsubject: A\npreheadr: B\ndate: 2026-11-24\n---\n# Lead: X\nText.\n",
        "front-matter-unknown-key",
    )
    assert finding.line == 3 and finding.severity is Severity.WARNING
    assert "did you mean 'preheader'?" in finding.message
    far = one("---\nsubject: A\nzzz: 1\ndate: 2026-11-24\n---\n", "front-matter-unknown-key")
    assert "remove it" in far.message


@pytest.mark.parametrize(
    ("front", "rule", "line"),
    [
        ("subject: A\n", "date-missing", 2),
        ("date: 2026-11-24\n", "subject-missing", 2),
        ("subject: '  '\ndate: 2026-11-24\n", "subject-missing", 2),
        ("subject: A\ndate: 2026-13-45\n", "date-format", 3),
        ("subject: A\ndate: 2026-02-30\n", "date-format", 3),
        ("subject: A\ndate: tomorrow\n", "date-format", 3),
        ("subject: A\ndate: 24/11/2026\n", "date-format", 3),
        ("date: 2026-11-24\nsubject: [a, b]\n", "subject-type", 3),
        ("subject: A\npreheader: {a: 1}\ndate: 2026-11-24\n", "preheader-type", 3),
        ("subject: A\ndate: 2026-11-24\nsend_at: [1, 2]\n", "send-at-type", 4),
    ],
)
def test_front_matter_values(front: str, rule: str, line: int) -> None:
    finding = one(f"---\n{front}---\n# Lead: X\nText.\n", rule)
    assert finding.line == line and finding.severity is Severity.ERROR


def test_front_matter_missing_unclosed_and_not_a_mapping() -> None:
    assert (1, "error", "front-matter-missing") in found("# Lead: X\nText.\n")
    assert (3, "error", "front-matter-unclosed") in found("---\nsubject: A\n# Lead: X\nText.\n")
    assert found("---\n- a\n- b\n---\n# Lead: X\nText.\n") == [
        (2, "error", "front-matter-not-mapping")
    ]


def test_no_front_matter_still_reports_body_findings() -> None:
    rules = {rule for _, _, rule in found("# Leed: X\nText.\n")}
    assert {"front-matter-missing", "section-kind-unknown"} <= rules


def test_datetime_date_and_send_at() -> None:
    result = parse_text(
        "---\nsubject: A\ndate: 2026-11-24 07:30:00\nsend_at: 2026-11-24 06:00:00\n---\n"
        "# Lead: X\nText.\n"
    )
    assert result.issue is not None
    assert result.issue.date == dt.date(2026, 11, 24)
    assert result.issue.send_at == "2026-11-24T06:00:00"


# -- sections ------------------------------------------------------------------------------


def test_unknown_section_kind_is_an_error_with_did_you_mean() -> None:
    finding = one(FRONT + "\n# Hard Numbrs: Figures\n\n## 5\nText.\n", "section-kind-unknown")
    assert finding.line == 7 and finding.severity is Severity.ERROR
    assert "did you mean 'Hard Numbers'?" in finding.message
    other = one(FRONT + "# Weather: Rain\nText.\n", "section-kind-unknown")
    assert "use one of Lead, Story, Hard Numbers, What We're Watching" in other.message


@pytest.mark.parametrize(
    "heading",
    [
        "What We're Watching",
        "What We\u2019re Watching",  # curly apostrophe, as editors' word processors write it
        "what we\u2018re watching",
        "WHAT WE'RE WATCHING",
        "What  We're   Watching",
    ],
)
def test_watching_kind_with_any_case_and_apostrophe(heading: str) -> None:
    result = parse_text(FRONT + f"# {heading}: Banks\n\n## The bank\nIt cut rates.\n")
    assert result.findings == []
    assert result.issue is not None
    assert result.issue.sections[0].kind is SectionKind.WATCHING


def test_heading_without_kind() -> None:
    finding = one(FRONT + "# Just a heading\nText.\n", "section-heading-format")
    assert finding.line == 6


def test_text_before_the_first_section() -> None:
    finding = one(FRONT + "\nHello readers.\n\n# Lead: X\nText.\n", "text-before-section")
    assert finding.line == 7 and "before the first section" in finding.message


def test_misplaced_images() -> None:
    text = FRONT + (
        "# Lead: X\n"  # 6
        '![a](https://x.org/a.jpg "c")\n'  # 7: the section image
        '![b](https://x.org/b.jpg "c")\n'  # 8: a second one
        "\n"
        "Text ![inline](https://x.org/c.jpg) here.\n"  # 10
        "\n"
        '![late](https://x.org/d.jpg "c")\n'  # 12
    )
    result = parse_text(text, "t.md")
    positions = [(f.line, f.column) for f in result.findings if f.rule == "image-position"]
    assert positions == [(8, 1), (10, 6), (12, 1)]
    assert result.issue is not None and result.issue.sections[0].image is not None
    assert result.issue.sections[0].image.line == 7


@pytest.mark.parametrize(
    ("body", "rule", "line", "column"),
    [
        ("# Lead: X\nText <br> here.\n", "raw-html", 7, 6),
        ("# Lead: X\nText.\n\n<div>block</div>\n", "raw-html", 9, 1),
        ("# Lead: X\nText.\n\n| a | b |\n|---|---|\n| 1 | 2 |\n", "table", 9, 1),
        ("# Lead: X\nText.\n\n```\ncode\n```\n", "code-block", 9, 1),
        ("# Lead: X\nText.\n\n    indented code\n", "code-block", 9, 1),
        ("# Lead: X\nText.\n\n> A quote\n", "blockquote", 9, 1),
        ("# Lead: X\nText.\n\n### Small heading\n", "heading-level", 9, 1),
        ("# Lead: X\nText.\n\n***\n", "horizontal-rule", 9, 1),
        ("# Lead: X\nText.\n\n## Sub\nMore.\n", "subheading-in-story", 9, 1),
        ("# Lead: X\n- a\n  - b\n", "list-nested", 8, 1),
        ("# Lead: X\n- a\n\n  ```\n  code\n  ```\n", "list-content", 9, 1),
        ("# Lead: X\nText \x00 with a NUL.\n", "control-character", 7, 6),
    ],
)
def test_unsafe_markdown_is_an_error_at_its_line(
    body: str, rule: str, line: int, column: int
) -> None:
    finding = one(FRONT + body, rule)
    assert (finding.line, finding.column, finding.severity) == (line, column, Severity.ERROR)


def test_every_error_is_reported_at_once() -> None:
    text = FRONT + (
        "Stray text.\n"  # 6
        "# Lead: X\n"  # 7
        "Text <i>html</i>.\n"  # 8
        "\n"
        "| a | b |\n|---|---|\n| 1 | 2 |\n"  # 10
        "\n"
        "# Weather: Rain\n"  # 14
        "\n"
        "# Story: Y\n"  # 16
        "> quote\n"  # 17
    )
    rules = [(line, rule) for line, _, rule in found(text)]
    assert rules == [
        (6, "text-before-section"),
        (8, "raw-html"),
        (8, "raw-html"),
        (10, "table"),
        (14, "section-kind-unknown"),
        (17, "blockquote"),
    ]


def test_locate_skips_earlier_occurrences() -> None:
    lines = ["a ![x] ![y]", "![z]"]
    assert locate(lines, "![", 1, 2) == (1, 3)
    assert locate(lines, "![", 1, 2, skip=1) == (1, 8)
    assert locate(lines, "![", 1, 2, skip=2) == (2, 1)
    assert locate(lines, "nothing", 1, 2) == (1, 1)


# -- the fast path for simple front matter agrees with YAML --------------------------------

SIMPLE_VALUES = st.one_of(
    st.from_regex(r"[A-Za-z\u00e9\u4e2d][A-Za-z \u00e9',.!?()\[\]{}&*%@`#:|>-]{0,25}", fullmatch=True),
    st.text(
        alphabet=st.characters(blacklist_categories=("Cs",), blacklist_characters="\ufeff"),
        max_size=30,
    ),
    st.sampled_from([
        "2026-11-24", "2026-13-45", "2026-02-30", "2026-11-24 06:00", "yes", "No", "null", "~",
        "Plus: three numbers", "Rates #1", "C# and F#", "x:", "a:b", "'quoted'", '"double"',
        "[list]", "{map}", "- dash", "? q", "& anchor", "*alias", "!tag", "|", ">", "%", "@", "`",
        "3 things", "0x1F", ".inf", "Can't stop", "Plan [B] {x}", "caf\u00e9 \u00fcber", "a\tb",
        "trailing   ", "\u2028sep", "\x85nel", "\ufffdrepl",
    ]),
)


@hypothesis_settings(max_examples=500, deadline=None)
@given(
    entries=st.lists(
        st.tuples(st.sampled_from(["subject", "preheader", "date", "send_at", "yes", "x-y", "_k"]),
                  SIMPLE_VALUES),
        max_size=5,
    ),
    extra=st.sampled_from(["", "\n", "# a comment\n", "  \n", "\t\n"]),
)
def test_simple_front_matter_reads_as_yaml_does(entries, extra: str) -> None:
    text = "".join(f"{key}: {value}\n" for key, value in entries if "\n" not in value) + extra
    fast = _simple_front_matter(text)
    if fast is None:
        return  # left to YAML
    assert (_load_yaml(text) or {}) == fast[0]


def test_simple_front_matter_is_used_for_the_samples() -> None:
    for path in sorted((REPO / "issues").glob("*.md")):
        text = path.read_text(encoding="utf-8")
        front = text.split("---\n")[1]
        assert _simple_front_matter(front) is not None, path


def test_markdown_too_deep_for_the_reader_is_a_finding(monkeypatch: pytest.MonkeyPatch) -> None:
    # markdown-it limits nesting itself, so no real file gets here: this checks that if the
    # reader ever runs out of stack, the editor gets a finding, not a crash
    from newsletter.authoring import parse

    def exhausted(body: str):
        raise RecursionError("maximum recursion depth exceeded")

    monkeypatch.setattr(parse._md, "parse", exhausted)
    result = parse_text(FRONT + "# Lead: X\nText.\n", "t.md")
    assert [(f.line, f.rule) for f in result.findings] == [(6, "too-deep")]


# -- hostile input: linear time, bounded nesting -------------------------------------------------
# The alarm only stops a hang: each of these takes milliseconds now; on the quadratic
# patterns they replaced they took minutes (an 80,000-space heading: 17 s).


@pytest.fixture
def hang_guard():
    import signal

    def stop(signum, frame):  # pragma: no cover - only on a regression
        raise TimeoutError("parsing is still running after 20 s")

    previous = signal.signal(signal.SIGALRM, stop)
    signal.setitimer(signal.ITIMER_REAL, 20)
    yield
    signal.setitimer(signal.ITIMER_REAL, 0)
    signal.signal(signal.SIGALRM, previous)


@pytest.mark.parametrize(
    ("text", "rule", "line"),
    [
        (FRONT + "# Lead" + " " * 300_000 + "x\nText.\n", "section-heading-format", 6),
        (FRONT + "# a" + " " * 300_000 + "b: c\nText.\n", "section-kind-unknown", 6),
        ("---\nsubject: a" + " " * 300_000 + "b\ndate: 2026-11-24\n---\n# Lead: X\nT.\n", None, 0),
        ("---\nsubject: a" + " " * 300_000 + "b: c \x85\ndate: 2026-11-24\n---\n", None, 0),
    ],
    ids=["heading-spaces", "heading-spaces-colon", "front-matter-spaces", "yaml-retry-spaces"],
)
def test_runs_of_spaces_parse_in_linear_time(hang_guard, text: str, rule, line: int) -> None:
    result = parse_text(text, "t.md")
    if rule is not None:
        assert (line, rule) in [(f.line, f.rule) for f in result.findings]


def test_long_runs_of_stars_are_a_finding_not_a_crash(hang_guard, settings) -> None:
    from newsletter.authoring.build import build_text

    text = FRONT + "# Lead: X\n" + "*" * 2000 + "a" + "*" * 2000 + "\n"  # 1,000 levels deep
    result = build_text(text, "t.md", settings)  # was RecursionError (exit 70)
    assert [(f.line, f.column, f.rule) for f in result.findings] == [
        (7, 1, "formatting-too-deep")
    ]
    assert "nested 1000 deep" in result.findings[0].message
    shallow = FRONT + "# Lead: X\n" + "*" * 10 + "a" + "*" * 10 + "\n"  # 5 levels: fine
    assert build_text(shallow, "t.md", settings).ok


def test_raw_html_findings_in_a_long_paragraph_each_have_their_column(hang_guard) -> None:
    result = parse_text(FRONT + "# Lead: X\nText " + "<b>" * 30_000 + "\n", "t.md")
    columns = [f.column for f in result.findings if f.rule == "raw-html"]
    assert columns[:3] == [6, 9, 12] and len(columns) == 30_000 and columns[-1] == 6 + 3 * 29_999


# -- links: every scheme is a link; broken link syntax is a finding -------------------------------


@pytest.mark.parametrize(
    "href", ["javascript:alert(1)", "vbscript:msgbox(1)", "file:///etc/passwd",
             "data:text/html,hello", "JavaScript:alert(1)"],
)
def test_links_with_refused_schemes_are_links_in_the_model(href: str) -> None:
    result = parse_text(FRONT + f"# Lead: X\nSee [this]({href}) now.\n", "t.md")
    assert result.findings == []  # the URL rule names the scheme (tests/test_validate.py)
    inlines = result.sections[0].blocks[0].inlines
    assert [n.href for n in inlines if isinstance(n, Link)] == [href]


@pytest.mark.parametrize(
    ("line_text", "rule", "column"),
    [
        ("![Alt](https://images.sendtest.news/a.jpg", "image-syntax", 1),
        ("See [the report](https://news.sendtest.news/report and more.", "link-syntax", 5),
        ("See [the report](https://news.sendtest.news/a report) now.", "link-syntax", 5),
        ("Two [a](https://x.org/a) then [b](https://x.org/b", "link-syntax", 31),
        ('Photo ![A](https://x.org/a.jpg "credit', "image-syntax", 7),
    ],
)
def test_unclosed_link_or_image_syntax_is_an_error_at_its_column(
    line_text: str, rule: str, column: int
) -> None:
    finding = one(FRONT + "# Lead: X\nText.\n\n" + line_text + "\n", rule)
    assert (finding.line, finding.column, finding.severity) == (9, column, Severity.ERROR)
    assert "closing ')'" in finding.message


def test_brackets_that_are_not_links_are_fine() -> None:
    for text in ("A [bracketed] aside (and a parenthesis).", "Escaped \\[not](a link.",
                 "Code `[a](b` is text.", "Rates rose [see chart] (page 2)."):
        assert found(FRONT + "# Lead: X\n" + text + "\n") == [], text


def test_text_past_the_inline_budget_is_one_error_and_kept_plain(hang_guard) -> None:
    from newsletter.authoring.inline import MAX_INLINE_CHARS

    paragraph = "[" * 50_000  # markdown-it's slowest input: about 7 us a character
    text = FRONT + "# Lead: X\n" + "\n\n".join([paragraph] * 6) + "\n"
    result = parse_text(text, "t.md")
    # the heading and the first block fit; the second (line 9) passes 100,000
    assert [(f.line, f.rule) for f in result.findings] == [(9, "text-too-long")]
    assert f"more than {MAX_INLINE_CHARS:,} characters" in result.findings[0].message
    assert len(result.sections[0].blocks) == 6  # nothing lost
