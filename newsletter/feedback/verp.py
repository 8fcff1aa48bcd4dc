"""VERP return paths: ``bounces+SEND-SUBSCRIBER-MAC@bounce_domain``.

Every SMTP message of a real send goes out with a return path (the envelope's MAIL FROM)
of its own when ``bounce_domain`` is configured, so a bounce that comes back names the
send and the subscriber even when the report quotes nothing of the message. MAC is the
first 16 hex digits of an HMAC-SHA256 of both ids made with ``secret_key``: a forged or
altered address ties to no one. Test sends (no subscriber) use the plain address.
"""

from __future__ import annotations

import hashlib
import hmac
import re
from typing import NamedTuple

PREFIX = "bounces"
_TOKEN = re.compile(r"bounces\+(\d{1,19})-(\d{1,19})-([0-9a-f]{16})@", re.IGNORECASE)


class Verp(NamedTuple):
    send_id: int
    subscriber_id: int


def _mac(secret: str, send_id: int, subscriber_id: int) -> str:
    return hmac.new(secret.encode(), f"verp:{send_id}:{subscriber_id}".encode(),
                    hashlib.sha256).hexdigest()[:16]


def address(secret: str, domain: str, send_id: int, subscriber_id: int) -> str:
    return f"{PREFIX}+{send_id}-{subscriber_id}-{_mac(secret, send_id, subscriber_id)}@{domain}"


def decode(secret: str, text: str) -> Verp | None:
    """The send and subscriber of the first valid VERP address in ``text``, else None."""
    for match in _TOKEN.finditer(text or ""):
        send_id, subscriber_id = int(match.group(1)), int(match.group(2))
        if hmac.compare_digest(match.group(3).lower(), _mac(secret, send_id, subscriber_id)):
            return Verp(send_id, subscriber_id)
    return None
