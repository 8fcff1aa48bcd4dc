"""What one chunk of a CSV import changes for subscribers that already exist.

``ChunkPlan`` decides, row by row, with the rules of ``status_changes`` (the same rules as
every other entry point): who is resubscribed (only with ``resubscribe``), who a
``status`` or ``list_status`` column unsubscribes (never the reverse), who joins the list,
and what stays as it is; it counts each row once in the import's report. ``apply`` then
writes the changes through ``status_changes``'s set-based calls: a few statements per
chunk of thousands of rows.
"""

from __future__ import annotations

import datetime as dt
from typing import TYPE_CHECKING

import sqlalchemy as sa

from . import status_changes as transitions

if TYPE_CHECKING:
    from .importer import ImportReport as Report
    from .importer import _Row as Row


class ChunkPlan:
    """The status changes of one chunk's existing subscribers, decided by the rules of
    ``status_changes`` and counted in the report, then written set-based by ``apply``."""

    def __init__(self, reason: str, resubscribe: bool) -> None:
        self.reason = reason
        self.resubscribe = resubscribe
        self.globals: dict[str, list[tuple[int, str]]] = {}  # status: [(id, why)]
        self.lists: dict[str, list[tuple[int, str]]] = {}  # list status: [(id, why)]
        self.to_check: list[tuple[Row, int, bool]] = []  # (row, id, already counted)

    def global_change(
        self, row: Row, sid: int, current: str, has_list: bool, report: Report
    ) -> None:
        """Decide and count an existing subscriber's global status; queue its list check."""
        wanted = row.status  # None (no inactive status in the file) or an inactive one
        if wanted is None and current == "active":
            if has_list:
                self.to_check.append((row, sid, False))
            else:
                report.unchanged += 1
        elif wanted is None and transitions.may_change(current, "active",
                                                      resubscribe=self.resubscribe):
            self.globals.setdefault("active", []).append((sid, f"resubscribed by {self.reason}"))
            report.resubscribed += 1
            if has_list:
                self.to_check.append((row, sid, True))
        elif wanted is not None and transitions.may_change(current, wanted):
            self.globals.setdefault(wanted, []).append((sid, self.reason))
            report.status_applied += 1
            if has_list and current == "active":
                self.to_check.append((row, sid, True))
        elif wanted == current:
            report.unchanged += 1
        else:
            report.kept_unsubscribed += 1

    def list_change(
        self, row: Row, sid: int, member: str | None, counted: bool, report: Report
    ) -> None:
        """Decide an existing subscriber's membership (counted only if not counted yet)."""
        wanted = row.list_status or "subscribed"
        if member == "subscribed" and row.list_status is None or member == wanted:
            counter = "unchanged"
        elif not transitions.may_change_membership(member, wanted, active=True,
                                                   resubscribe=self.resubscribe):
            counter = "kept_unsubscribed"
        else:
            back = member == "unsubscribed"
            why = f"resubscribed by {self.reason}" if back else self.reason
            self.lists.setdefault(wanted, []).append((sid, why))
            joined = member is None and wanted == "subscribed"
            counter = "resubscribed" if back else "joined" if joined else "status_applied"
        if not counted:
            setattr(report, counter, getattr(report, counter) + 1)

    def apply(self, conn: sa.Connection, list_id: int | None, now: dt.datetime) -> None:
        """Write the changes: reactivations first (joining a list needs an active
        address), then the memberships, then the global unsubscribes."""
        reactivate = self.globals.pop("active", None)
        if reactivate:
            transitions.set_global(conn, "active", reactivate, resubscribe=True, now=now)
        if list_id is not None:
            for wanted, items in self.lists.items():
                transitions.set_membership(conn, list_id, wanted, items,
                                           resubscribe=self.resubscribe, now=now)
        for wanted, items in self.globals.items():
            transitions.set_global(conn, wanted, items, now=now)
