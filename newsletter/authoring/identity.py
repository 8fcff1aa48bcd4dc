"""What makes two issue files the same issue, whatever they are called.

A send is tied to its issue's identity, not to its file name, so that a copied or
renamed file is not sent to a list a second time by mistake. Two issues are the same
when either

- their ``issue_key`` matches: the same date and subject (the subject compared without
  regard to case, accents' composition or runs of spaces), or
- their ``content_hash`` matches: the same sections as rendered (headlines, images,
  paragraphs, links, items), line numbers and file name aside.

So a renamed copy with a typo fixed in the text is still caught by its date and subject,
and one with a retyped subject by its content. Both keys are stored on each send
(``sends.issue_key``, ``sends.content_hash``, ``sends.issue_date``).
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import unicodedata
from dataclasses import dataclass
from typing import Any

from .model import Issue

# positions and file details: not part of what the reader sees
_IGNORED = frozenset({"line", "column", "path", "send_at"})


@dataclass(frozen=True)
class Identity:
    issue_date: dt.date
    issue_key: str  # sha256 of the date and the normalised subject
    content_hash: str  # sha256 of the sections as rendered


def subject_key(subject: str) -> str:
    return " ".join(unicodedata.normalize("NFKC", subject).casefold().split())


def issue_key(issue_date: dt.date, subject: str) -> str:
    text = f"{issue_date.isoformat()}\n{subject_key(subject)}"
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def _content(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _content(v) for k, v in value.items() if k not in _IGNORED}
    if isinstance(value, list):
        return [_content(v) for v in value]
    return value


def content_hash(issue: Issue) -> str:
    sections = [_content(s.model_dump(mode="json")) for s in issue.sections]
    data = json.dumps(sections, sort_keys=True, ensure_ascii=False, separators=(",", ":"))
    return hashlib.sha256(data.encode("utf-8")).hexdigest()


def of_issue(issue: Issue) -> Identity:
    return Identity(issue_date=issue.date, issue_key=issue_key(issue.date, issue.subject),
                    content_hash=content_hash(issue))


def why_same(found_key: str | None, found_hash: str | None, identity: Identity) -> str:
    """Which part matched, for the refusal line."""
    if found_key == identity.issue_key:
        return "the same date and subject"
    if found_hash == identity.content_hash:
        return "the same content"
    return "the same file name"
