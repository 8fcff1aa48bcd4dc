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
