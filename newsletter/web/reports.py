"""The report pages of the preview/admin app: a page per send and a page per list.

- ``/reports``: the lists and the recent sends, each a link to its page;
- ``/reports/sends/{id}``: a send's numbers (``feedback.clickreport``), people's clicks
  over the first 48 hours, clicks by section (people's and flagged), and the tables;
- ``/reports/lists/{name}``: subscribers over the last 30 days (joined, unsubscribed,
  bounced per day) and the list's sends.

Charts are server-side SVG (``charts``), readable in light and dark mode. The database is
opened on the first request (the preview runs without one until then).
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import AsyncIterator

from sqlalchemy.engine import Engine
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from newsletter.config import Settings
from newsletter.errors import NewsletterError

from . import Part, error_page, page
from .charts import bars, lines


class Reports:
    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self._engine: Engine | None = None
        self._lock = threading.Lock()

    @property
    def engine(self) -> Engine:
        with self._lock:
            if self._engine is None:
                from newsletter.db.connect import open_store

                self._engine = open_store(self.settings, create=False)
            return self._engine

    def close(self) -> None:
        if self._engine is not None:
            self._engine.dispose()

    def _index(self) -> dict[str, object]:
        from newsletter.audience.lists import list_lists
        from newsletter.delivery import ledger

        return {"lists": list_lists(self.engine),
                "sends": [s for s in ledger.list_sends(self.engine, limit=50)
                          if s.kind == "real"]}

    def _send(self, send_id: int) -> dict[str, object]:
        from newsletter.feedback.clickreport import HOURS, send_report

        report = send_report(self.engine, send_id)
        sections = sorted(report.sections, key=lambda r: -r.human)
        return {
            "report": report,
            "hours_chart": bars("People's clicks, first 48 hours (by hour after sending)",
                                [str(h) for h in range(HOURS)], {"people": report.hourly}, every=6),
            "sections_chart": bars(
                "Clicks by section", [r.label for r in sections],
                {"people": [r.human for r in sections],
                 "flagged (scanners)": [r.flagged for r in sections]},
                horizontal=True, stacked=True) if sections else None,
            "sections": sections,
        }

    def _list(self, name: str) -> dict[str, object]:
        from newsletter.feedback.clickreport import list_days

        days = list_days(self.engine, name)
        return {
            "days": days,
            "chart": lines("Subscribers over time (per day, last 30 days)",
                           [f"{d:%d %b}" for d in days.days],
                           {"joined": days.joined, "unsubscribed": days.unsubscribed,
                            "bounced": days.bounced}),
        }

    async def index(self, request: Request) -> Response:
        context = await run_in_threadpool(self._index)
        return page("reports/index.html", newsletter=self.settings.name, **context)

    async def send(self, request: Request) -> Response:
        raw = request.path_params["send_id"]
        if not raw.isdigit() or len(raw) > 18:
            return error_page(404, "Not found", "There is no such send.")
        try:
            context = await run_in_threadpool(self._send, int(raw))
        except NewsletterError as exc:
            return error_page(404, "Not found", str(exc))
        return page("reports/send.html", newsletter=self.settings.name, **context)

    async def list_page(self, request: Request) -> Response:
        try:
            context = await run_in_threadpool(self._list, request.path_params["name"])
        except NewsletterError as exc:
            return error_page(404, "Not found", str(exc))
        return page("reports/list.html", newsletter=self.settings.name, **context)


def part(settings: Settings, **_options: object) -> Part:
    reports = Reports(settings)

    @contextlib.asynccontextmanager
    async def lifespan() -> AsyncIterator[None]:
        try:
            yield
        finally:
            reports.close()

    from . import PAGES
    from .security import preview_csp

    return Part(routes=[
        Route("/reports", reports.index, name="reports-index"),
        Route("/reports/sends/{send_id}", reports.send, name="reports-send"),
        Route("/reports/lists/{name}", reports.list_page, name="reports-list"),
    ], lifespan=lifespan, state=reports, csp=preview_csp(PAGES))
