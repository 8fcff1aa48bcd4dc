"""Shared fixtures: a temporary newsletter project and its settings."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from newsletter.authoring.project import init_project
from newsletter.config import Settings, load_settings

pytest_plugins = ["tests.dbfixtures"]

REPO = Path(__file__).resolve().parent.parent
SAMPLE = REPO / "issues" / "2026-11-24.md"


@pytest.fixture(autouse=True)
def _clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    """No NEWSLETTER_* variable of the developer's shell leaks into a test."""
    for key in list(os.environ):
        if key.startswith("NEWSLETTER_") or key == "SENDGRID_API_KEY":
            monkeypatch.delenv(key, raising=False)


@pytest.fixture
def project(tmp_path: Path) -> Path:
    """A fresh project folder made by `newsletter init`, with the sample issues."""
    folder = tmp_path / "briefing"
    init_project(folder, name="Test Briefing")
    return folder


@pytest.fixture
def settings(project: Path) -> Settings:
    return load_settings(project)


def write_issue(folder: Path, body: str, front: str | None = None, name: str = "t.md") -> Path:
    """Write an issue file; ``front`` defaults to a valid subject, preheader and date."""
    if front is None:
        front = "subject: A test subject\npreheader: A test preheader\ndate: 2026-11-24\n"
    path = folder / name
    path.write_text(f"---\n{front}---\n{body}", encoding="utf-8")
    return path
