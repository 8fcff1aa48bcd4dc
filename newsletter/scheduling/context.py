"""What a worker process needs to start, continue and settle schedules."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

from sqlalchemy.engine import Engine

from newsletter.config import Settings

from .clock import Clock


@dataclass(frozen=True)
class WorkerContext:
    """A worker process as the scheduling steps see it: its database, settings, clock, id."""

    engine: Engine
    settings: Settings
    clock: Clock
    worker_id: str

    @property
    def grace(self) -> dt.timedelta:
        """How late a schedule may still start (``schedule_grace_hours``)."""
        return dt.timedelta(hours=self.settings.schedule_grace_hours)

    @property
    def sqlite(self) -> bool:
        return self.engine.dialect.name == "sqlite"
