"""The README's first command: `newsletter demo` runs the whole job on the embedded defaults."""

from __future__ import annotations

import email
import subprocess
import sys
from email import policy
from pathlib import Path


def _demo(folder: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "newsletter", "demo", str(folder)],
        capture_output=True, text=True, timeout=120, stdin=subprocess.DEVNULL,
    )


def test_demo_validates_renders_imports_and_sends_once(tmp_path: Path) -> None:
    folder = tmp_path / "demo"
    first = _demo(folder)
    assert first.returncode == 0, first.stderr
    assert "validated issues/2026-11-25.md: valid" in first.stdout
    html = (folder / "out" / "2026-11-25.html").read_text(encoding="utf-8")
    assert "The harbour vote" in html
    assert "sent 2026-11-25.md to list 'demo' through the outbox: 5 messages" in first.stdout
    messages = sorted((folder / "outbox").glob("*.eml"))
    assert len(messages) == 5
    parsed = email.message_from_bytes(messages[0].read_bytes(), policy=policy.default)
    assert parsed["Subject"] == "The harbour vote, and why it matters beyond the port"
    assert parsed["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
    assert (folder / "newsletter.db").exists()
    # a second run repeats nothing: no second send, no new files
    second = _demo(folder)
    assert second.returncode == 0, second.stderr
    assert "already sent 2026-11-25.md to list 'demo'" in second.stdout
    assert len(list((folder / "outbox").glob("*.eml"))) == 5


def _tree(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes()
            for p in sorted(folder.rglob("*")) if p.is_file()}


def test_demo_refuses_a_real_project_and_changes_nothing(tmp_path: Path) -> None:
    from newsletter.authoring.project import init_project

    real = tmp_path / "briefing"
    init_project(real, name="The Real Briefing")
    (real / "issues" / "2026-12-01.md").write_text("---\nsubject: Unreleased draft\n---\n",
                                                   "utf-8")
    before = _tree(real)
    result = _demo(real)
    assert result.returncode == 1
    assert result.stderr.count("\n") == 1 and "Traceback" not in result.stderr
    assert result.stderr.startswith(f"newsletter: {real}: is a newsletter project not made by "
                                    "`newsletter demo`")
    assert result.stdout == ""
    assert _tree(real) == before  # no database, no outbox, no out/, nothing rewritten
    # a folder with other files and no newsletter.toml is not the demo's either
    other = tmp_path / "notes"
    other.mkdir()
    (other / "todo.txt").write_text("buy milk\n", "utf-8")
    refused = _demo(other)
    assert refused.returncode == 1 and "is not a demo project" in refused.stderr
    assert _tree(other) == {"todo.txt": b"buy milk\n"}


def test_the_demo_project_is_marked_and_may_use_example_values(tmp_path: Path) -> None:
    import tomllib

    folder = tmp_path / "empty"
    folder.mkdir()  # an existing empty folder is fine
    assert _demo(folder).returncode == 0
    config = tomllib.loads((folder / "newsletter.toml").read_text("utf-8"))
    assert config["demo"] is True and config["from_address"].endswith("@example.org>")
