"""A newsletter project on disk: scaffolding, new issue files, finding issues."""

from __future__ import annotations

import datetime as dt
import shutil
from pathlib import Path

import jinja2

from ..config import CONFIG_NAME, Settings
from ..errors import NewsletterError, UsageError
from ..private import write_private
from .draft_placeholders import NEW_ISSUE_SUBJECT
from .render import BUILTIN_TEMPLATES, environment

SAMPLE_ISSUES = next(
    (
        p
        for p in (
            Path(__file__).parent.parent / "_sample_issues",
            Path(__file__).parent.parent.parent / "issues",
        )
        if p.is_dir()
    ),
    Path(__file__).parent.parent.parent / "issues",
)

CONFIG_TEMPLATE = """\
# newsletter.toml: settings of this newsletter project.
# Every key can be overridden by an environment variable NEWSLETTER_<KEY>
# (for example NEWSLETTER_SMTP_URL). Secrets such as SENDGRID_API_KEY come
# only from the environment.

name = "{name}"
from_address = "{name} <news@example.org>"
reply_to = "editors@example.org"
postal_address = "1 Example Street, Example City, EX1 2MP"   # required by CAN-SPAM
base_url = "https://news.example.org"                      # public URL: unsubscribe, archive
secret_key = "{secret}"                  # signs unsubscribe links: keep it secret
timezone = "Europe/London"
lang = "en"
footer_text = "You are receiving this because you subscribed to {name}."

# Where subscribers live. Default: newsletter.db (SQLite) in this folder.
# database_url = "postgresql+psycopg://user@host/dbname"

# How messages leave: outbox (writes .eml files to outbox/), smtp or sendgrid.
backend = "outbox"
# smtp_url = "smtp://user:pass@smtp.example.org:587?starttls=true"

# templates = "templates"   # your templates override the built-in ones by file name
theme = "classic"           # the look: "classic" or "bulletin" (templates/themes/<name>/)
# contents = true           # an "In this issue" list in every issue

# Colours, fonts and logo; each key set here wins over the theme's own.
[brand]
# primary_color = "#b3261e"
# logo_url = "https://news.example.org/logo.png"
# logo_dark_url = "https://news.example.org/logo-dark.png"
# logo_width = 180
"""


def init_project(folder: Path, *, name: str = "The Daily Briefing", samples: bool = True) -> Path:
    """Create a project folder: newsletter.toml, issues/ (with samples), templates/."""
    import secrets

    folder = Path(folder)
    config = folder / CONFIG_NAME
    if config.exists():
        raise NewsletterError(f"{config}: already exists; this folder is already a project")
    if '"' in name or "\\" in name:
        raise UsageError("the newsletter name may not contain quotes or backslashes")
    try:
        _scaffold(folder, samples)
        # 0600: it holds the secret key that signs every unsubscribe link
        write_private(config, CONFIG_TEMPLATE.format(name=name, secret=secrets.token_urlsafe(32)))
    except OSError as exc:
        raise UsageError(
            f"{exc.filename or folder}: cannot create the project: {exc.strerror or exc}; "
            "choose a folder you may write"
        ) from None
    return config


def _scaffold(folder: Path, samples: bool) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "issues").mkdir(exist_ok=True)
    templates = folder / "templates"
    if not templates.exists():
        shutil.copytree(BUILTIN_TEMPLATES, templates)
    if samples:
        for sample in sorted(SAMPLE_ISSUES.glob("*.md")):
            target = folder / "issues" / sample.name
            if not target.exists():
                shutil.copyfile(sample, target)


def new_issue(
    settings: Settings, *, date: dt.date | None = None, subject: str | None = None
) -> Path:
    """Write a new issue file for ``date`` (default today, in the project's time zone)."""
    from zoneinfo import ZoneInfo

    if date is None:
        date = dt.datetime.now(ZoneInfo(settings.timezone)).date()
    folder = settings.issues_path
    folder.mkdir(parents=True, exist_ok=True)
    target = folder / f"{date.isoformat()}.md"
    if target.exists():
        raise NewsletterError(
            f"{target}: already exists; edit it, or give another --date"
        )
    subject = " ".join((subject or "").split()) or NEW_ISSUE_SUBJECT
    try:
        template = environment(settings).get_template("new-issue.md.j2")
        text = template.render(date=date.isoformat(), subject=subject)
    except jinja2.TemplateError as exc:
        raise NewsletterError(f"new-issue.md.j2: template error: {exc}") from None
    target.write_text(text, encoding="utf-8")
    return target


def issue_files(settings: Settings) -> list[Path]:
    """Every issue file of the project, newest name first; special files (``_welcome.md``,
    whose names start with ``_``) after the issues."""
    folder = settings.issues_path
    if not folder.is_dir():
        return []
    return sorted((p for p in folder.glob("*.md") if p.is_file()),
                  key=lambda p: (not p.name.startswith("_"), p.name), reverse=True)
