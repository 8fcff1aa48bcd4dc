"""URL-safe names for issues: the one place a file name becomes part of a URL.

An issue's slug names it in the web archive (``/archive/SLUG``), in the footer's
"Read in your browser" link and in the editors' preview (``/issues/SLUG``). It is
lowercase ASCII letters, digits and single hyphens, whatever the file is called:

- a file name that is already such a slug keeps it (``2026-11-24.md`` -> ``2026-11-24``),
  so links to issues named the usual way never change;
- any other name is folded to ASCII (accents dropped), lowercased, with every run of
  other characters made one hyphen, plus six hex digits of a hash of the exact name:
  ``2026-12-01 copy.md`` -> ``2026-12-01-copy-9a50e4``. The suffix keeps two names that
  fold alike (``Café.md``, ``cafe!.md``) or fold to nothing (``東京.md``) apart.
"""

from __future__ import annotations

import hashlib
import re
import unicodedata
from pathlib import PurePath

SLUG = re.compile(r"[a-z0-9]+(?:-[a-z0-9]+)*")
MAX_LENGTH = 80  # archive_issues.slug and sends.issue_slug hold 200


def slugify(text: str, *, max_length: int = MAX_LENGTH) -> str:
    """Lowercase ASCII letters, digits and single hyphens ('' when nothing is left)."""
    folded = unicodedata.normalize("NFKD", text).encode("ascii", "ignore").decode("ascii")
    slug = re.sub(r"[^a-z0-9]+", "-", folded.lower()).strip("-")
    return slug[:max_length].rstrip("-")


def file_slug(path: str | PurePath) -> str:
    """The URL-safe, unique slug of an issue file (see the module's docstring)."""
    stem = PurePath(path).stem
    if SLUG.fullmatch(stem) and len(stem) <= MAX_LENGTH:
        return stem
    digest = hashlib.sha256(stem.encode("utf-8", "surrogateescape")).hexdigest()[:6]
    base = slugify(stem, max_length=MAX_LENGTH - 7)
    return f"{base}-{digest}" if base else f"issue-{digest}"
