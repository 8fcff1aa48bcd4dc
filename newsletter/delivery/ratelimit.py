"""``max_rate``: a backend's messages per second, shared by every worker everywhere.

One row per backend in ``send_rates`` holds ``next_at``, the moment (by the database's
clock, so machines with skewed clocks agree) from which the next message may leave.
Before each batch a worker reserves the batch's share of time with one statement::

    UPDATE send_rates SET next_at = max(next_at, now) + n / rate WHERE name = ...
    RETURNING next_at, now

and waits until its reservation begins (``next_at - n / rate``). Reservations follow one
another, so N messages take at least ``(N - batch) / rate`` seconds whatever the number
of workers, processes or machines sharing the database (on SQLite, the processes sharing
its file). Time left unused is not saved up: after a pause the pace starts afresh.

A batch goes out whole at the start of its reservation, so the runner claims at most one
second's worth (``batch_cap``): in any window of T seconds at most ``rate * (T + 1)``
messages leave.
"""

from __future__ import annotations

import math
import threading

import sqlalchemy as sa
from sqlalchemy.engine import Engine

from ..config import Settings
from ..db.tables import send_rates


def _now(dialect: str) -> sa.ColumnElement[float]:
    """The database's clock, in seconds since the epoch (fixed within one statement)."""
    if dialect == "postgresql":
        return sa.cast(sa.extract("epoch", sa.func.statement_timestamp()), sa.Float)
    return (sa.func.julianday("now") - 2440587.5) * 86400.0


class RateLimit:
    """The shared pace of the backend ``name``: ``rate`` messages per second."""

    def __init__(self, engine: Engine, name: str, rate: float) -> None:
        if not rate > 0:
            raise ValueError(f"rate must be above 0, not {rate}")
        self.engine, self.name, self.rate = engine, name, float(rate)
        dialect = engine.dialect.name
        now = _now(dialect)
        later = sa.func.greatest if dialect == "postgresql" else sa.func.max
        self._cost = sa.bindparam("cost", type_=sa.Float)
        self._reserve = (
            send_rates.update()
            .where(send_rates.c.name == name)
            .values(next_at=later(send_rates.c.next_at, now) + self._cost)
            .returning(send_rates.c.next_at, now)
        )
        self._ready = False
        self._lock = threading.Lock()
        self.waited = 0.0  # seconds spent waiting, all workers together

    @property
    def batch_cap(self) -> int:
        """The most messages a batch should hold: one second's worth (at least one)."""
        return max(1, math.ceil(self.rate))

    def _ensure_row(self) -> None:
        if self._ready:
            return
        if self.engine.dialect.name == "postgresql":
            from sqlalchemy.dialects.postgresql import insert
        else:
            from sqlalchemy.dialects.sqlite import insert
        with self.engine.begin() as conn:
            conn.execute(insert(send_rates).values(name=self.name, next_at=0.0)
                         .on_conflict_do_nothing(index_elements=["name"]))
        self._ready = True

    def reserve(self, count: int) -> float:
        """Reserve the time for ``count`` messages; the seconds to wait before sending."""
        if count <= 0:
            return 0.0
        self._ensure_row()
        cost = count / self.rate
        with self.engine.begin() as conn:
            next_at, now = conn.execute(self._reserve, {"cost": cost}).one()
        return max(0.0, float(next_at) - cost - float(now))

    def wait(self, count: int, stop: threading.Event | None = None) -> bool:
        """Reserve and wait for ``count`` messages; False when ``stop`` was set meanwhile
        (then send nothing)."""
        delay = self.reserve(count)
        if delay <= 0:
            return True
        with self._lock:
            self.waited += delay
        if stop is None:
            threading.Event().wait(delay)
            return True
        return not stop.wait(delay)


def for_backend(engine: Engine, settings: Settings, name: str) -> RateLimit | None:
    """The configured pace of backend ``name`` (``max_rate``), or None when it has none."""
    rate = settings.max_rate.get(name)
    return RateLimit(engine, name, rate) if rate else None
