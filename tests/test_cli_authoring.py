"""The authoring commands as a user runs them: init, new, validate, render.

Most tests call ``newsletter.cli.main`` in-process (the same entry point as the console
script, with its error handling); a few run the real ``newsletter`` process.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given
from hypothesis import settings as hypothesis_settings
from hypothesis import strategies as st

from newsletter.authoring.parse import parse_text
from newsletter.authoring.project import new_issue
from newsletter.cli import main
from newsletter.config import load_settings

from .conftest import SAMPLE, write_issue

BAD_BODY = (
    "\n# Lead: Headline\nText with <b>html</b>.\n\n# Hard Numbers: Figures\n\n## 70,000\n\n"
    "## 3.2%\nSome text.\n"
)


def run(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    with pytest.raises(SystemExit) as info:
        main(list(args))
    out, err = capsys.readouterr()
    code = info.value.code
    return (code if isinstance(code, int) else 0), out, err


@pytest.fixture
def in_project(project: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.chdir(project)
    return project


# -- validate ---------------------------------------------------------------------------------


def test_validate_clean_file_exits_0(in_project: Path, capsys) -> None:
    code, out, err = run(capsys, "validate", "issues/2026-11-24.md")
    assert code == 0
    assert out == ""
    assert err.strip() == "1 file checked: 0 errors, 0 warnings"


def test_validate_without_arguments_checks_every_issue(in_project: Path, capsys) -> None:
    code, _, err = run(capsys, "validate")
    assert code == 0
    assert err.strip() == "3 files checked: 0 errors, 0 warnings"  # + _welcome.md


def test_validate_errors_exit_1_compiler_style(in_project: Path, capsys) -> None:
    path = write_issue(in_project / "issues", BAD_BODY, name="bad.md")
    code, out, err = run(capsys, "validate", str(path))
    assert code == 1
    assert out.splitlines() == [
        f"{path}:8:11: error: raw HTML '<b>' is not allowed in email: use Markdown (**bold**, "
        "*italics*, [text](https://...)) [raw-html]",
        f"{path}:8:18: error: raw HTML '</b>' is not allowed in email: use Markdown (**bold**, "
        "*italics*, [text](https://...)) [raw-html]",
        f'{path}:12:1: error: Hard Numbers item "70,000" has no text: add a paragraph under '
        "it [hard-numbers-item-empty]",
    ]
    assert err.strip() == "1 file checked: 3 errors, 0 warnings"


def test_warnings_pass_unless_strict(in_project: Path, capsys) -> None:
    path = write_issue(
        in_project / "issues", "# Lead: X\nText.\n", front="subject: s\ndate: 2026-11-24\n",
        name="warn.md",
    )
    code, out, _ = run(capsys, "validate", str(path))
    assert code == 0 and "[preheader-missing]" in out
    code, _, _ = run(capsys, "validate", "--strict", str(path))
    assert code == 1


def test_json_format_gives_the_same_findings(in_project: Path, capsys) -> None:
    bad = write_issue(in_project / "issues", BAD_BODY, name="bad.md")
    _, text_out, _ = run(capsys, "validate", str(bad), "issues/2026-11-24.md")
    code, json_out, _ = run(capsys, "validate", "--format", "json", str(bad),
                            "issues/2026-11-24.md")
    assert code == 1
    findings = json.loads(json_out)
    assert [set(f) for f in findings] == [
        {"path", "line", "column", "severity", "message", "rule", "fix"}
    ] * 3
    as_text = [
        f"{f['path']}:{f['line']}:{f['column']}: {f['severity']}: {f['message']} [{f['rule']}]"
        for f in findings
    ]
    assert as_text == text_out.splitlines()


@pytest.mark.parametrize(
    ("make", "expected"),
    [
        (lambda root: root / "missing.md", "missing.md: no such file"),
        (lambda root: (root / "folder.md").mkdir() or root / "folder.md",
         "folder.md: a folder with no issue files"),
        (lambda root: (root / "latin1.md").write_bytes(b"---\nsubject: caf\xe9\n") and None
         or root / "latin1.md", "latin1.md:2: not UTF-8 text; save the file as UTF-8"),
    ],
    ids=["missing", "folder", "not-utf8"],
)
def test_unreadable_file_exits_2_and_others_are_still_checked(
    in_project: Path, capsys, make, expected: str
) -> None:
    bad = write_issue(in_project / "issues", BAD_BODY, name="bad.md")
    target = make(in_project)
    code, out, err = run(capsys, "validate", str(target), str(bad))
    assert code == 2
    assert expected in err and "Traceback" not in err
    assert "[hard-numbers-item-empty]" in out  # the readable file's findings are not lost


def test_no_issue_files_is_a_usage_error(tmp_path: Path, monkeypatch, capsys) -> None:
    monkeypatch.chdir(tmp_path)
    code, _, err = run(capsys, "validate")
    assert code == 2 and "no issue files given and none in" in err


def test_bad_config_is_one_line_exit_2(in_project: Path, capsys) -> None:
    config = in_project / "newsletter.toml"
    config.write_text('bakend = "smtp"\n' + config.read_text(), encoding="utf-8")
    code, out, err = run(capsys, "validate")
    assert code == 2 and out == ""
    lines = err.strip().splitlines()
    assert len(lines) == 1
    assert f"{config}:1: " in lines[0]
    assert "unknown setting 'bakend'; did you mean 'backend'?" in lines[0]


def test_project_option_and_environment(tmp_path: Path, project: Path, monkeypatch, capsys) -> None:
    monkeypatch.chdir(tmp_path)  # outside the project
    code, _, err = run(capsys, "--project", str(project), "validate")
    assert code == 0 and "3 files checked" in err
    monkeypatch.setenv("NEWSLETTER_PROJECT", str(project))
    code, _, err = run(capsys, "validate")
    assert code == 0 and "3 files checked" in err


# -- render -----------------------------------------------------------------------------------


def test_render_writes_html_and_text(in_project: Path, capsys) -> None:
    code, out, err = run(capsys, "render", "issues/2026-11-24.md", "-o", "out/a.html",
                         "--text", "out/a.txt", "--mjml", "out/a.mjml")
    assert code == 0 and out == ""
    html = (in_project / "out" / "a.html").read_text(encoding="utf-8")
    assert html.startswith("<!DOCTYPE html>") and "Holloway Library" in html
    assert (in_project / "out" / "a.txt").read_text(encoding="utf-8").startswith("TEST BRIEFING")
    assert "<mjml" in (in_project / "out" / "a.mjml").read_text(encoding="utf-8")
    assert "out/a.html:" in err and "KB HTML" in err


def test_render_to_stdout(in_project: Path, capsys) -> None:
    code, out, _ = run(capsys, "render", "issues/2026-11-24.md")
    assert code == 0 and out.startswith("<!DOCTYPE html>")


def test_render_refuses_an_issue_with_errors(in_project: Path, capsys) -> None:
    bad = write_issue(in_project / "issues", BAD_BODY, name="bad.md")
    code, out, err = run(capsys, "render", str(bad), "-o", "out/bad.html")
    assert code == 1 and out == ""
    assert "[hard-numbers-item-empty]" in err
    assert "not rendered: fix the 3 error(s) above" in err
    assert not (in_project / "out" / "bad.html").exists()


def test_render_to_an_unwritable_place_exits_2(in_project: Path, capsys) -> None:
    (in_project / "blocker").write_text("a file, not a folder", encoding="utf-8")
    code, _, err = run(capsys, "render", "issues/2026-11-24.md", "-o", "blocker/x.html")
    assert code == 2 and "cannot write" in err and "Traceback" not in err


def test_unknown_command_is_a_usage_error(in_project: Path, capsys) -> None:
    code, _, err = run(capsys, "frobnicate")
    assert code == 2 and "No such command 'frobnicate'" in err


# -- new and init -----------------------------------------------------------------------------


def test_init_scaffolds_a_project_that_validates(tmp_path: Path, monkeypatch, capsys) -> None:
    monkeypatch.chdir(tmp_path)
    code, out, _ = run(capsys, "init", "briefing", "--name", "Morning Brief")
    assert code == 0 and "Created briefing/newsletter.toml" in out
    root = tmp_path / "briefing"
    assert (root / "templates" / "email.mjml.j2").is_file()
    assert sorted(p.name for p in (root / "issues").iterdir()) == [
        "2026-11-24.md", "2026-11-25.md", "_welcome.md"
    ]
    settings = load_settings(root)
    assert settings.name == "Morning Brief" and settings.secret_key
    assert len(settings.secret_key) >= 32
    monkeypatch.chdir(root)
    assert run(capsys, "validate")[0] == 0
    code, _, err = run(capsys, "init", ".")
    assert code == 1 and "already exists" in err


def test_init_without_samples(tmp_path: Path, capsys) -> None:
    code, _, _ = run(capsys, "init", str(tmp_path / "empty"), "--no-samples")
    assert code == 0 and list((tmp_path / "empty" / "issues").iterdir()) == []


def test_new_creates_an_issue_that_validates_once_its_placeholders_are_replaced(
    in_project: Path, capsys
) -> None:
    code, out, _ = run(capsys, "new", "--date", "2026-12-01", "--subject", "Rates #1: what & why")
    assert code == 0
    path = Path(out.strip())
    assert path == in_project / "issues" / "2026-12-01.md"
    text = path.read_text(encoding="utf-8")
    parsed = parse_text(text)
    assert parsed.issue is not None and parsed.findings == []  # well-formed, ready to edit
    assert parsed.issue.subject == "Rates #1: what & why"
    assert parsed.issue.sections[0].headline == "Rates #1: what & why"
    code, out, err = run(capsys, "validate", str(path))  # unedited: refused, not sent
    assert code == 1 and "12 errors, 0 warnings" in err
    assert f"{path}:10:1: error: the text 'Write the lead story here.' is the new-issue " in out
    edits = {
        "preheader: Plus: three numbers to know today": "preheader: Why the bank moved",
        "![Describe the photo for readers who cannot see it.](https://images.example.org/"
        'lead.jpg "Photo: Agency/Photographer")': "![The governor at the podium.](https://"
        'images.sendtest.news/2026/12/gov.jpg "Photo: Kim Lee/Wire")',
        "Write the lead story here. Use **bold**, *italics* and [links](https://example.org).":
        "The bank cut rates, **again**. See [the statement](https://news.sendtest.news/rates).",
        "[Read more](https://example.org/)": "[Read more](https://news.sendtest.news/rates-explained)",
        "Three figures to know": "Rates, rents and rail",
        "What the figure means, in one or two sentences.": "Homes sold in November.",
        "What comes next": "The budget",
        "## A title\nA paragraph about it.": "## The vote\nIt is on Thursday.",
        "A second story\nA paragraph.": "Night buses\nThey stay.",
    }
    for old, new in edits.items():
        assert old in text, old
        text = text.replace(old, new)
    path.write_text(text, encoding="utf-8")
    code, _, err = run(capsys, "validate", str(path))
    assert code == 0 and "0 errors, 0 warnings" in err
    code, _, err = run(capsys, "new", "--date", "2026-12-01")
    assert code == 1 and "already exists; edit it, or give another --date" in err


def test_new_defaults_to_today_in_the_project_time_zone(in_project: Path, capsys) -> None:
    import datetime as dt
    from zoneinfo import ZoneInfo

    for sample in (in_project / "issues").iterdir():
        sample.unlink()
    code, out, _ = run(capsys, "new")
    assert code == 0
    today = dt.datetime.now(ZoneInfo("Europe/London")).date()  # the project's time zone
    assert Path(out.strip()).name in (f"{today}.md", f"{today + dt.timedelta(days=1)}.md")


@hypothesis_settings(max_examples=60, deadline=None,
                     suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(subject=st.text(
    alphabet=st.characters(blacklist_categories=("Cc", "Cs"), blacklist_characters="\ufffe\uffff"),
    min_size=1, max_size=60,
).filter(lambda s: s.strip()))
def test_any_subject_survives_new(subject: str, tmp_path_factory) -> None:
    root = tmp_path_factory.mktemp("new")
    settings = load_settings(root)
    path = new_issue(settings, subject=subject)
    parsed = parse_text(path.read_text(encoding="utf-8"))
    assert parsed.issue is not None, [f.format() for f in parsed.findings]
    assert parsed.issue.subject == " ".join(subject.split())


# -- as a real process ------------------------------------------------------------------------


def _newsletter(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", "from newsletter.cli import main; main()", *args],
        cwd=cwd, capture_output=True, text=True, timeout=120,
        env={k: v for k, v in os.environ.items() if not k.startswith("NEWSLETTER_")},
    )


def test_real_process_exit_codes_and_no_traceback(project: Path) -> None:
    bad = write_issue(project / "issues", BAD_BODY, name="bad.md")
    ok = _newsletter("validate", "issues/2026-11-24.md", cwd=project)
    assert ok.returncode == 0, ok.stderr
    errors = _newsletter("validate", str(bad), cwd=project)
    assert errors.returncode == 1 and "[hard-numbers-item-empty]" in errors.stdout
    missing = _newsletter("validate", "nope.md", cwd=project)
    assert missing.returncode == 2 and "nope.md: no such file" in missing.stderr
    usage = _newsletter("validate", "--format", "xml", "x.md", cwd=project)
    assert usage.returncode == 2
    for proc in (ok, errors, missing, usage):
        assert "Traceback" not in proc.stderr


def test_sample_renders_identically_in_two_processes(project: Path) -> None:
    first = _newsletter("render", str(SAMPLE), cwd=project)
    second = _newsletter("render", str(SAMPLE), cwd=project)
    assert first.returncode == 0 and first.stdout == second.stdout


def test_validate_accepts_a_folder_of_issues(tmp_path: Path) -> None:
    from click.testing import CliRunner

    from newsletter.cli import cli as _cli

    folder = tmp_path / "drafts"
    folder.mkdir()
    (folder / "a.md").write_text(
        "---\nsubject: S\npreheader: P\ndate: 2026-11-24\n---\n# Lead: H\n\n## x\n",
        encoding="utf-8",
    )
    result = CliRunner().invoke(_cli, ["--project", str(tmp_path), "validate", str(folder)])
    assert result.exit_code == 1
    assert f"{folder / 'a.md'}:8:1: error:" in result.output
    empty = tmp_path / "empty"
    empty.mkdir()
    result = CliRunner().invoke(_cli, ["--project", str(tmp_path), "validate", str(empty)])
    assert result.exit_code == 2
    assert "a folder with no issue files" in result.output
