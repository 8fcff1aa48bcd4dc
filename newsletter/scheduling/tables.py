"""The scheduling tables: ``schedules`` (one row per scheduled send) and
``schedule_workers`` (one row per ``newsletter worker`` process, with its heartbeat).

The tables are defined with every other table in ``newsletter.db.tables`` (one
metadata for the migrations); here are the states their check constraint allows.
"""

from __future__ import annotations

from newsletter.db.tables import schedule_workers as schedule_workers  # defined there
from newsletter.db.tables import schedules as schedules  # defined there

STATES = ("scheduled", "sending", "sent", "failed", "missed", "cancelled")
OPEN = ("scheduled", "sending")  # a schedule that has not ended
