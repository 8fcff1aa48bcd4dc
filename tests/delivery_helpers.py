"""Helpers shared by the delivery tests and benchmarks: a send's message template."""

from __future__ import annotations

from email import policy
from email.message import EmailMessage
from email.parser import BytesParser
from pathlib import Path

from newsletter.authoring.build import build_file
from newsletter.authoring.project import init_project
from newsletter.config import Settings, load_settings
from newsletter.delivery.personalize import MessageTemplate, Recipient, prepare

REPO = Path(__file__).resolve().parent.parent
SAMPLE = REPO / "issues" / "2026-11-24.md"


def send_settings(project: Path, **overrides) -> Settings:
    values = {
        "base_url": "https://news.example.org",
        "from_address": "The Briefing <news@example.org>",
        "reply_to": "editor@example.org",
        "postal_address": "1 Main Street, Springfield",
        "secret_key": "test-secret-at-least-32-bytes-long",
    }
    values.update(overrides)
    return load_settings(project, **values)


def make_template(
    project: Path | None = None,
    *,
    send_id: int | str = 1,
    list_id: int = 1,
    test: bool = False,
    issue: Path = SAMPLE,
    **overrides,
) -> MessageTemplate:
    if project is None:
        import tempfile

        project = Path(tempfile.mkdtemp()) / "briefing"
    if not (project / "newsletter.toml").exists():
        init_project(project, name="Test Briefing")
    settings = send_settings(project, **overrides)
    build = build_file(issue, settings, personal=True)
    assert build.rendered is not None, build.findings
    return prepare(
        build.rendered, settings, send_id=send_id, list_id=list_id,
        list_name="Daily Briefing", test=test,
    )


# rows a backend's row path (send_rows) leaves to the general path, after recipients(3)
UNUSUAL_ROWS = [
    Recipient(None, "editor@example.org"),  # a --test-to address: no subscriber id
    Recipient(7, "not an address"),  # refused by messages(): the general path says why
    Recipient(8, "x@example.com", " padded "),  # a name messages() cleans
]
REPEATED_ROW = Recipient(9, "USER1@example.com")  # user1 again: one request cannot hold both


def recipients(count: int, start: int = 1, domain: str = "example.com") -> list[Recipient]:
    return [
        Recipient(i, f"user{i}@{domain}", None if i % 3 == 0 else f"Reader {i}")
        for i in range(start, start + count)
    ]


def parse(data: bytes) -> EmailMessage:
    message = BytesParser(policy=policy.default).parsebytes(data)
    assert isinstance(message, EmailMessage)
    return message
