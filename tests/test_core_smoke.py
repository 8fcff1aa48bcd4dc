"""End-to-end checks of the authoring core on the sample issues."""

from __future__ import annotations

from pathlib import Path

from newsletter.authoring.build import build_file
from newsletter.config import Settings

from .conftest import REPO, write_issue


def test_sample_issues_are_valid_and_render(settings: Settings) -> None:
    for path in sorted((REPO / "issues").glob("*.md")):
        result = build_file(path, settings)
        assert result.errors == [], [f.format() for f in result.errors]
        assert result.rendered is not None
        html = result.rendered.html
        assert result.issue is not None
        assert result.issue.sections[0].headline.split()[0] in html
        assert 'lang="en"' in html
        assert "<script" not in html and "<link" not in html
        assert result.rendered.size < 102 * 1024


def test_error_names_line_of_empty_hard_numbers_item(tmp_path: Path, settings: Settings) -> None:
    body = "\n# Lead: Headline\nText.\n\n# Hard Numbers: Figures\n\n## 70,000\n\n## 3.2%\nSome text.\n"
    path = write_issue(tmp_path, body)
    result = build_file(path, settings)
    lines = [f.format() for f in result.errors]
    assert lines == [
        f'{path}:12:1: error: Hard Numbers item "70,000" has no text: add a paragraph under '
        "it [hard-numbers-item-empty]"
    ]
    assert result.rendered is None
