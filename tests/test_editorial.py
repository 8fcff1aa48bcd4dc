"""Issue 14's editorial checks, as an editor meets them: each finding at its line and column,
with its rule id and fix, and typography in what readers get."""

from __future__ import annotations

import ast
import datetime as dt
import json
import re
from pathlib import Path

import pytest
import sqlalchemy as sa

from newsletter.authoring.build import build_text
from newsletter.authoring.rules import DEFAULTS
from newsletter.config import Settings
from newsletter.errors import ConfigError

ROOT = Path(__file__).parent.parent
FRONT = "---\nsubject: A test subject\npreheader: A test preheader\ndate: 2026-11-24\n---\n"
OK = "# Lead: The harbour vote\nThe council voted on Tuesday.\n\n"


def found(text: str, settings: Settings) -> list[tuple[int, int, str, str]]:
    result = build_text(text, "t.md", settings, render_html=False)
    return [(f.line, f.column, f.severity.value, f.rule) for f in result.findings]


def rules_of(text: str, settings: Settings) -> list[tuple[int, str]]:
    return [(line, rule) for line, _, _, rule in found(text, settings)]


def test_heading_without_space_is_one_error_at_its_line(settings: Settings) -> None:
    text = FRONT + OK + "#Story: The AI chip race\nChips.\n"
    assert found(text, settings) == [(9, 1, "error", "heading-space")]
    result = build_text(text, "t.md", settings, render_html=False)
    assert "add a space after #" in result.findings[0].message
    assert [s.headline for s in result.issue.sections] == ["The harbour vote", "The AI chip race"]


def test_non_breaking_space_after_hash_names_its_own_line_only(settings: Settings) -> None:
    text = FRONT + OK + "#\u00a0Story: The AI chip race\nChips.\n"
    assert rules_of(text, settings) == [(9, "heading-space")]


def test_unpaired_emphasis_and_undecoded_entities(settings: Settings) -> None:
    text = FRONT + "# Lead: X\nA **bold claim and _an aside, AT&T &nbsp x &foo; snake_case 5 * 3.\n"
    assert found(text, settings) == [
        (7, 3, "error", "emphasis-unpaired"),
        (7, 20, "error", "emphasis-unpaired"),
        (7, 36, "error", "html-entity"),
        (7, 44, "error", "html-entity"),
    ]


def test_reported_link_and_image_cases(settings: Settings) -> None:
    text = FRONT + (
        "# Lead: X\n![An LNG tanker at sea](https://images.sendtest.news/lng.jpg\n\nText.\n\n"
        "[x](javascript:alert(1)) and more.\n"
    )
    assert ("image-syntax" in {r for _, r in rules_of(text, settings)})
    assert (11, "link-url") in rules_of(text, settings)


@pytest.mark.parametrize(
    ("typed", "rule", "column"),
    [("Hi {{first_name}}!", "merge-field-unknown", 4),
     ("Hi {{nmae|reader}, welcome.", "merge-field-braces", 4),
     ("Hi {{name|}}, welcome.", "merge-field-fallback-empty", 4)],
)
def test_merge_fields(settings: Settings, typed: str, rule: str, column: int) -> None:
    assert found(FRONT + "# Lead: X\n" + typed + "\n", settings) == [(7, column, "error", rule)]


def test_good_merge_fields_pass(settings: Settings) -> None:
    assert found(FRONT + "# Lead: X\nHi {{name}} and {{ name | reader }}.\n", settings) == []


def test_send_at_uses_schedules_parser_and_message(settings: Settings) -> None:
    from newsletter.errors import UsageError
    from newsletter.scheduling.sendtimes import parse_at

    text = FRONT.replace("date:", "send_at: tomorrow 6am\ndate:") + OK
    result = build_text(text, "t.md", settings, render_html=False)
    assert [(f.line, f.rule) for f in result.findings] == [(4, "send-at-format")]
    with pytest.raises(UsageError) as exc:
        parse_at("tomorrow 6am", "UTC", what="send_at")
    assert result.findings[0].message == str(exc.value)


def test_front_matter_errors_point_at_the_wrong_line(settings: Settings) -> None:
    text = "---\nsubject: \"Can a ceasefire hold?\npreheader: p\ndate: 2026-11-24\n---\n" + OK
    result = build_text(text, "t.md", settings, render_html=False)
    assert [(f.line, f.rule) for f in result.findings] == [(2, "yaml-syntax")]
    assert "closing \"" in result.findings[0].fix
    unclosed = "---\nsubject: s\npreheader: p\ndate: 2026-11-24\n\n" + OK
    assert rules_of(unclosed, settings) == [(5, "front-matter-unclosed")]
    tab = "---\nsubject: s\n\tpreheader: p\ndate: 2026-11-24\n---\n" + OK
    result = build_text(tab, "t.md", settings, render_html=False)
    assert [(f.line, f.rule) for f in result.findings] == [(3, "yaml-syntax")]
    assert "tab" in result.findings[0].message


def test_tab_indented_list_says_tab(settings: Settings) -> None:
    result = build_text(FRONT + OK + "\t- one\n\t- two\n", "t.md", settings, render_html=False)
    [finding] = result.findings
    assert (finding.line, finding.rule) == (9, "code-block") and "tab" in finding.message


def test_placeholder_words_whole_words_and_case(settings: Settings) -> None:
    text = FRONT + "# Lead: X\nTK: get the figure. The todo list, a tk. TODO check. Lorem Ipsum.\n"
    assert rules_of(text, settings) == [(7, "placeholder-word")] * 3
    custom = settings.model_copy(update={"placeholder_words": ["FIXME"]})
    assert rules_of(FRONT + "# Lead: X\nFIXME and TK.\n", custom) == [(7, "placeholder-word")]


def test_example_domains_and_empty_read_more(settings: Settings) -> None:
    text = FRONT + (
        "# Lead: X\n![Alt](https://img.example.com/a.jpg \"Photo: A\")\n\n"
        "See [this](https://www.example.net/page).\n\n[](https://news.sendtest.news/a)\n"
    )
    assert rules_of(text, settings) == [
        (7, "example-domain"), (9, "example-domain"), (11, "read-more-empty"),
    ]


def test_house_style_warnings_and_their_settings(settings: Settings) -> None:
    text = FRONT + (
        "# Lead: " + "A very long headline " * 5 + "\nSee [a](https://news.sendtest.news/a).\n\n"
        "[Read more](https://news.sendtest.news/a/)\n\n"
        "# Story: Two\nText.\n\n[Read more](https://news.sendtest.news/b)\n\n"
        "# Hard Numbers: Figures\n\n## 70,000\nPeople evacuated.\n"
    )
    assert found(text, settings) == [
        (6, 1, "warning", "headline-long"),
        (9, 13, "warning", "duplicate-link"),
        (14, 1, "warning", "duplicate-read-more"),
    ]
    strict = settings.model_copy(update={
        "hard_numbers_need_source": True,
        "rules": {"headline-long": "off", "duplicate-link": "error"},
    })
    assert found(text, strict) == [
        (9, 13, "error", "duplicate-link"),
        (14, 1, "warning", "duplicate-read-more"),
        (18, 1, "warning", "hard-numbers-source"),
    ]


def test_rules_settings_are_checked(project: Path) -> None:
    from newsletter.config import load_settings

    config = project / "newsletter.toml"
    config.write_text(config.read_text() + '\n[rules]\nduplicate-lnk = "off"\n')
    with pytest.raises(ConfigError, match=r"newsletter.toml:\d+: .*did you mean 'duplicate-link'"):
        load_settings(project)
    config.write_text(config.read_text().replace("duplicate-lnk", "link-url"))
    with pytest.raises(ConfigError, match="is an error and stays one"):
        load_settings(project)


def test_recent_link_from_the_ledger(settings: Settings) -> None:
    from newsletter.db.connect import open_store
    from newsletter.db.tables import sends

    engine = open_store(settings)
    with engine.begin() as conn:
        conn.execute(sa.insert(sends).values(
            kind="real", issue_path="issues/old.md", issue_slug="old", subject="Old news",
            list_name="daily", backend="outbox", status="finished", total=1,
            html='<a href="https://news.sendtest.news/old-story">x</a>', text="",
            created_at=dt.datetime(2026, 11, 20, tzinfo=dt.UTC), issue_date=dt.date(2026, 11, 20),
        ))
    engine.dispose()
    text = FRONT + "# Lead: X\nSee [it](https://news.sendtest.news/old-story).\n"
    from newsletter.delivery.history import recent_links

    # authoring reads no database: without a source of sent links the rule is skipped
    assert build_text(text, "issues/new.md", settings, render_html=False).findings == []
    result = build_text(text, "issues/new.md", settings, render_html=False,
                        sent_links=recent_links)
    [finding] = result.findings
    assert (finding.line, finding.rule) == (7, "recent-link")
    assert "'Old news' (2026-11-20, list daily)" in finding.message


def test_typography_in_html_and_text(settings: Settings) -> None:
    text = FRONT + (
        "# Lead: \"Quoted\" -- it's here\n"
        "He said \"it's fine...\" -- see https://x.org/a--b, `a--\"b\"` and {{name|o'brien}}.\n"
    )
    result = build_text(text, "t.md", settings)
    assert result.rendered is not None
    for part in (result.rendered.html, result.rendered.text):
        assert "\u201cit\u2019s fine\u2026\u201d \u2013 see https://x.org/a--b" in part
        assert 'a--"b"' in part or "a--&quot;b&quot;" in part
        assert "o'brien" in part
    german = build_text(text, "t.md", settings.model_copy(update={"lang": "de"}))
    assert "\u201eit\u2019s fine\u2026\u201c" in german.rendered.text


def test_json_carries_rule_line_column_and_fix(project: Path, capsys) -> None:
    from newsletter.cli import main

    issue = project / "issues" / "bad.md"
    issue.write_text(FRONT + "# Lead: X\nHi {{first_name}}.\n", encoding="utf-8")
    with pytest.raises(SystemExit) as exit_:
        main(["--project", str(project), "validate", "--format", "json", str(issue)])
    assert exit_.value.code == 1
    [finding] = json.loads(capsys.readouterr().out)
    assert (finding["rule"], finding["line"], finding["column"]) == ("merge-field-unknown", 7, 4)
    assert finding["fix"].startswith("did you mean {{name}}?")


def _emitted_rule_ids() -> set[str]:
    """Every rule id the code can report: string constants in the rule argument of
    Reporter.add / _Ctx.finding / Finding(...)."""
    ids: set[str] = set()
    for path in (ROOT / "newsletter").rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if not isinstance(node, ast.Call):
                continue
            name = getattr(node.func, "attr", getattr(node.func, "id", ""))
            args: list[ast.AST] = [k.value for k in node.keywords if k.arg == "rule"]
            if name in ("add", "finding") and len(node.args) >= 2:
                args.append(node.args[1])
            if name in ("add", "finding", "Finding", "model_construct") or args:
                for arg in args:
                    ids.update(c.value for c in ast.walk(arg) if isinstance(c, ast.Constant)
                               and isinstance(c.value, str) and re.fullmatch(r"[a-z]+(-[a-z]+)+", c.value))
    return ids


def test_every_rule_id_is_in_the_catalogue_and_the_readme_table() -> None:
    emitted = _emitted_rule_ids()
    assert {"heading-space", "recent-link", "lead-not-first", "html-too-large"} <= emitted
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    # the rule table of `newsletter validate` (`newsletter check` has its own, below it)
    section = readme.split("### `newsletter validate`", 1)[1].split("\n### ", 1)[0]
    table = set(re.findall(r"^\| `([a-z-]+)` \| (?:error|warning) \|", section, re.MULTILINE))
    assert emitted - set(DEFAULTS) == set()
    assert emitted - table == set(), "add these rule ids to the README's rule table"
    assert set(DEFAULTS) == table
