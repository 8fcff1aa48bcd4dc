"""Names reserved for examples and tests (RFC 2606 and RFC 6761): example.org, example.com,
example.net and their subdomains, the .example, .test, .invalid and .localhost top-level
domains, and localhost. A link or image there leads nowhere (the ``example-domain`` rule),
and a sender or public URL there is still ``init``'s example (``delivery.placeholders``).
"""

from __future__ import annotations

RESERVED_DOMAINS = ("example.org", "example.com", "example.net")
RESERVED_TLDS = ("example", "test", "invalid", "localhost")


def reserved_domain(host: str) -> str | None:
    """The reserved name ``host`` falls under (e.g. 'example.org'), or None."""
    host = host.strip().rstrip(".").lower()
    if host == "localhost":
        return host
    for domain in RESERVED_DOMAINS:
        if host == domain or host.endswith("." + domain):
            return domain
    tld = host.rsplit(".", 1)[-1]
    return f".{tld}" if tld in RESERVED_TLDS else None
