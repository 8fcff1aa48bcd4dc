"""Requeue cost: making uncertain recipients pending again, with and without the rule.

`--retry-failed` and `--resend-uncertain` used to put rows back to pending with one plain
UPDATE; now each row asks the rule of `audience.receiving` (correlated look-ups of the
subscriber and membership, plus share locks on PostgreSQL) and is skipped when the
subscriber may no longer receive. This times both on the same rows, interleaved round by
round: N recipients of one send made `uncertain`, a tenth of them unsubscribed since.

    python benchmarks/bench_requeue.py                        # 100,000 rows, SQLite
    python benchmarks/bench_requeue.py --database postgresql  # a fresh PostgreSQL database
"""

from __future__ import annotations

import argparse
import contextlib
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

import sqlalchemy as sa

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))


def _plain(engine: sa.Engine, send_id: int) -> int:
    """The requeue before the rule: one UPDATE, nobody asked."""
    from newsletter.db.tables import send_recipients

    r = send_recipients.c
    with engine.begin() as conn:
        return conn.execute(send_recipients.update()
                            .where(r.send_id == send_id, r.status.in_(["uncertain"]))
                            .values(status="pending")).rowcount


def _ruled(engine: sa.Engine, send_id: int) -> int:
    from newsletter.delivery import ledger

    return ledger.requeue_counted(engine, send_id, ["uncertain"]).pending


def _reset(engine: sa.Engine, send_id: int) -> None:
    from newsletter.db.tables import send_recipients

    with engine.begin() as conn:
        conn.execute(send_recipients.update().where(send_recipients.c.send_id == send_id)
                     .values(status="uncertain", reason=None))


def _prepare(folder: Path, url: str | None, count: int) -> tuple[sa.Engine, int]:
    from newsletter.db.tables import subscribers
    from newsletter.delivery import ledger
    from tests.sendtools import make_project, seed

    settings = make_project(folder, url)
    engine = seed(settings, count)
    send_id = ledger.create_send(engine, kind="real", issue_path="i.md", issue_slug="i",
                                 subject="S", list_id=1, list_name="daily", backend="smtp",
                                 html="", text="")
    with engine.begin() as conn:  # a tenth unsubscribed after the first attempt
        conn.execute(subscribers.update().where(subscribers.c.id % 10 == 0)
                     .values(status="unsubscribed"))
    return engine, send_id


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--recipients", type=int, default=100_000)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--database", choices=["sqlite", "postgresql"], default="sqlite")
    args = parser.parse_args()
    from tests.sendtools import pg_database

    with contextlib.ExitStack() as stack:
        folder = Path(stack.enter_context(tempfile.TemporaryDirectory()))
        url = stack.enter_context(pg_database()) if args.database == "postgresql" else None
        engine, send_id = _prepare(folder / "p", url, args.recipients)
        times: dict[str, list[float]] = {"plain UPDATE (before)": [], "through the rule": []}
        pending: dict[str, int] = {}
        for _ in range(args.rounds):
            for label, requeue in zip(times, (_plain, _ruled), strict=True):
                _reset(engine, send_id)
                started = time.perf_counter()
                pending[label] = requeue(engine, send_id)
                times[label].append(time.perf_counter() - started)
        engine.dispose()
    print(f"requeue of {args.recipients:,} uncertain rows, {args.database}, "
          f"{args.rounds} interleaved rounds, load {os.getloadavg()[0]:.1f}")
    base = statistics.median(times["plain UPDATE (before)"])
    for label, values in times.items():
        median = statistics.median(values)
        print(f"  {label:24} median {median * 1000:8.1f} ms  min {min(values) * 1000:8.1f} ms"
              f"  {median / base:5.2f}x  -> {pending[label]:,} pending")


if __name__ == "__main__":
    main()
