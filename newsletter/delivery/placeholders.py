"""No placeholders leave the building: sender, reply address, postal address and public
URL must be the newsroom's own before real mail goes out.

``newsletter init`` writes example values (``news@example.org``, "1 Example Street",
``https://news.example.org``) so that a new project renders and previews at once. Real
mail carrying them would show a fake postal address (CAN-SPAM wants a real one) and
unsubscribe links that lead nowhere. ``problems(settings, backend)`` names each such
value in one line (``newsletter.toml:8: postal_address is still the example value ...``):
``newsletter send`` and ``newsletter schedule`` (and the worker, at send time) refuse on
the first; ``--dry-run`` and ``--test-to`` print them as warnings and go on.

Example values are those on a domain reserved for examples and tests (RFC 2606 and
RFC 6761: example.org, example.com, example.net and their subdomains; the .example,
.test, .invalid and .localhost top-level domains; localhost) and the example postal
address. A demo project (``demo = true``, made by ``newsletter demo``) may keep them
when it sends to the outbox, which delivers nothing.
"""

from __future__ import annotations

from email.utils import parseaddr
from urllib.parse import urlsplit

from ..authoring.domains import reserved_domain
from ..config import Settings, where_set

_EXAMPLE_STREET = ("example street", "example city")  # `init` writes "1 Example Street, ..."

_FIX = {
    "from_address": "set the address your newsletter sends from",
    "reply_to": "set the address readers' replies should reach, or remove reply_to",
    "base_url": "set the public URL where `newsletter serve` answers (unsubscribe links)",
    "postal_address": "set your newsroom's postal address",
}


def _host(key: str, value: str) -> str:
    if key == "base_url":
        return urlsplit(value).hostname or ""
    return parseaddr(value)[1].rpartition("@")[2]


def _problem(key: str, value: str) -> str | None:
    if key == "postal_address":
        if any(part in value.lower() for part in _EXAMPLE_STREET):
            return f'{key} is still the example value "{value}"'
        return None
    domain = reserved_domain(_host(key, value))
    if domain is None:
        return None
    return (f'{key} is still an example value ("{value}" is on {domain}, reserved for '
            "examples by RFC 2606)")


def problems(settings: Settings, backend: str | None = None) -> list[str]:
    """One line per setting still at an example value (none for a demo on the outbox)."""
    if settings.demo and (backend or settings.backend) == "outbox":
        return []
    found = []
    for key, fix in _FIX.items():
        value = getattr(settings, key)
        problem = _problem(key, value) if value else None
        if problem is not None:
            found.append(f"{where_set(settings, key)}: {problem}: {fix}")
    return found
