"""The clock the scheduling code reads and sleeps on; tests give a controllable one."""

from __future__ import annotations

import datetime as dt
import threading
from typing import Protocol

from newsletter.db.transactions import utcnow


class Clock(Protocol):
    def now(self) -> dt.datetime: ...

    def sleep(self, seconds: float, stop: threading.Event) -> bool:
        """Wait up to ``seconds``; True when ``stop`` was set."""
        ...


class SystemClock:
    def now(self) -> dt.datetime:
        return utcnow()

    def sleep(self, seconds: float, stop: threading.Event) -> bool:
        return stop.wait(max(0.0, seconds))


SYSTEM_CLOCK = SystemClock()
