"""The worker's log: one JSON line per event (``worker.started``, ``send.started`` ...)."""

from __future__ import annotations

import json
import logging
from typing import Any

from newsletter.db.transactions import utcnow
from newsletter.scheduling.sendtimes import iso

log = logging.getLogger("newsletter.worker")


def event(name: str, **fields: Any) -> None:
    """One structured line per event: JSON with the time, the event and its fields."""
    level = logging.ERROR if name.endswith(("failed", "missed")) else logging.INFO
    line = {"ts": iso(utcnow()), "level": logging.getLevelName(level).lower(),
            "event": name, **fields}
    log.log(level, json.dumps(line, default=str))
