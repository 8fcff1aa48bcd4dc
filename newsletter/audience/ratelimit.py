"""Rate limits kept in the database, so that every server process counts the same hits.

``hit(conn, key, window_seconds, limit)`` counts one hit of ``key`` in the current fixed
window (one upsert that returns the new count: atomic on SQLite and PostgreSQL alike)
and says whether it is still within ``limit``. Keys are HMACs (``keyed``), never a raw
IP or email address. Windows older than two days are deleted now and then.
"""

from __future__ import annotations

import hashlib
import hmac
import random
import time

import sqlalchemy as sa

from ..db.tables import rate_limits

KEEP_SECONDS = 2 * 86400

_UPSERT = sa.text(
    'INSERT INTO rate_limits (key, "window", hits) VALUES (:key, :window, 1) '
    'ON CONFLICT (key, "window") DO UPDATE SET hits = rate_limits.hits + 1 RETURNING hits'
)


def keyed(secret: str, kind: str, value: str) -> str:
    """The key under which ``value`` (an IP or email address) is counted for ``kind``."""
    digest = hmac.digest(secret.encode("utf-8"), f"{kind}\x00{value}".encode(), "sha256")
    return f"{kind}:{digest.hex()[:40]}"


def hit(conn: sa.Connection, key: str, window_seconds: int, limit: int,
        now: float | None = None) -> bool:
    """Count one hit; True while the window's hits are at most ``limit`` (0: no limit)."""
    if limit <= 0:
        return True
    moment = time.time() if now is None else now
    window = int(moment // window_seconds) * window_seconds
    hits = conn.execute(_UPSERT, {"key": key, "window": window}).scalar_one()
    if random.random() < 0.01:  # now and then, forget windows long past
        conn.execute(sa.delete(rate_limits).where(rate_limits.c.window < moment - KEEP_SECONDS))
    return int(hits) <= limit


def hits(conn: sa.Connection, key: str, window_seconds: int, now: float | None = None) -> int:
    """The hits counted for ``key`` in the current window (without counting one)."""
    moment = time.time() if now is None else now
    window = int(moment // window_seconds) * window_seconds
    found = conn.execute(sa.select(rate_limits.c.hits).where(
        rate_limits.c.key == key, rate_limits.c.window == window)).scalar()
    return int(found or 0)


def ip_hash(secret: str, ip: str | None) -> str | None:
    """What the consent record keeps of an IP address: HMAC-SHA256 with the secret key."""
    if not ip:
        return None
    return hmac.new(secret.encode("utf-8"), b"ip\x00" + ip.encode(), hashlib.sha256).hexdigest()
