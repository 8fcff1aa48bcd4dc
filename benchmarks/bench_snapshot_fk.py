"""What the ledger's foreign key (``send_recipients.send_id -> sends.id``) costs the snapshot.

The snapshot's chunk statements (``ledger._snapshot``, ``runner.SNAPSHOT_CHUNK`` members
each, as ``continue_snapshot`` copies them) for a whole list of ``--recipients`` members,
with and without the key, in ``--rounds`` rounds alternating which goes first, each in a
transaction rolled back afterwards (every run starts from the same state); medians of
wall and CPU seconds, and per million.

PostgreSQL (a fresh database on 127.0.0.1:5432, dropped after): the CPU is the server
backend's (``/proc``); "without" drops the key inside the rolled-back transaction, so it
measures the same table whether or not migration 0018 has dropped it already (on a
database at 0018 "with" adds it back first, also rolled back). Then one
``EXPLAIN (ANALYZE)`` pass with the key gives its trigger's own time and calls.
SQLite (a fresh project in a temporary folder): this process's CPU, with
``PRAGMA foreign_keys`` on (what ``engine`` sets) and off.

Run: python benchmarks/bench_snapshot_fk.py [--database postgresql|sqlite]
         [--recipients 100000] [--rounds 5]
"""

from __future__ import annotations

import argparse
import os
import re
import resource
import statistics
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "benchmarks"))

import sqlalchemy as sa  # noqa: E402
from bench_send import _seed  # noqa: E402

from newsletter.db.connect import open_store  # noqa: E402
from newsletter.db.tables import memberships, sends, subscribers  # noqa: E402
from newsletter.delivery import ledger  # noqa: E402
from newsletter.delivery.runner import SNAPSHOT_CHUNK  # noqa: E402

KEY = "fk_send_recipients_send_id_sends"
TICK = os.sysconf("SC_CLK_TCK")


def backend_cpu(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICK


def own_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def spans(conn: sa.Connection, list_id: int) -> Iterator[sa.ColumnElement[bool]]:
    """Each chunk's condition, as ``ledger._snapshot_chunk`` bounds it."""
    until = conn.exec_driver_sql("SELECT max(id) FROM subscribers").scalar()
    after: int | None = 0
    while after is not None:
        upper = conn.execute(
            sa.select(memberships.c.subscriber_id)
            .where(memberships.c.list_id == list_id, memberships.c.subscriber_id > after)
            .order_by(memberships.c.subscriber_id).offset(SNAPSHOT_CHUNK - 1).limit(1)).scalar()
        last = upper is None
        upper = until if last else upper
        yield sa.and_(subscribers.c.id > after, subscribers.c.id <= upper,
                      memberships.c.subscriber_id > after, memberships.c.subscriber_id <= upper)
        after = None if last else upper


def new_send(conn: sa.Connection, list_id: int) -> int:
    return conn.execute(sends.insert().values(
        kind="real", issue_path="x.md", issue_slug="x", subject="S", list_id=list_id,
        list_name="daily", backend="outbox", status="finished", html="", text="", total=0,
        created_at=sa.func.now()).returning(sends.c.id)).scalar_one()


def set_key(conn: sa.Connection, keyed: bool) -> None:
    """PostgreSQL: the key present or not, inside the caller's transaction."""
    present = conn.exec_driver_sql(
        f"SELECT count(*) FROM pg_constraint WHERE conname = '{KEY}'").scalar()
    if present and not keyed:
        conn.exec_driver_sql(f"ALTER TABLE send_recipients DROP CONSTRAINT {KEY}")
    elif keyed and not present:
        conn.exec_driver_sql(f"ALTER TABLE send_recipients ADD CONSTRAINT {KEY} FOREIGN KEY "
                             "(send_id) REFERENCES sends (id) ON DELETE CASCADE")


def snapshot(conn: sa.Connection, list_id: int, cpu, explain: bool = False
             ) -> tuple[float, float, float, int]:
    """Wall, CPU, and (``explain``) the key's trigger seconds and calls."""
    send_id = new_send(conn, list_id)
    wall, started, trigger, calls = time.perf_counter(), cpu(), 0.0, 0
    for span in spans(conn, list_id):
        statement = ledger._snapshot(send_id, list_id, span)
        if not explain:
            conn.execute(statement)
            continue
        sql = statement.compile(dialect=conn.dialect, compile_kwargs={"literal_binds": True})
        plan = "\n".join(r[0] for r in conn.exec_driver_sql(f"EXPLAIN (ANALYZE) {sql}"))
        found = re.search(rf"Trigger for constraint {KEY}: time=([\d.]+) calls=(\d+)", plan)
        if found:
            trigger, calls = trigger + float(found[1]) / 1000, calls + int(found[2])
    return time.perf_counter() - wall, cpu() - started, trigger, calls


def run(url: str, n: int, rounds: int) -> None:
    engine = open_store(url)
    pg = engine.dialect.name == "postgresql"
    results: dict[bool, list[tuple[float, float]]] = {True: [], False: []}
    with engine.connect() as conn:
        raw = conn.connection.dbapi_connection
        cpu = (lambda: backend_cpu(raw.info.backend_pid)) if pg else own_cpu
        list_id = conn.exec_driver_sql("SELECT id FROM lists WHERE name = 'daily'").scalar()
        conn.rollback()
        for k in range(rounds):
            for keyed in ((True, False) if k % 2 == 0 else (False, True)):
                if not pg:  # outside a transaction, or SQLite ignores it
                    raw.execute(f"PRAGMA foreign_keys = {'ON' if keyed else 'OFF'}")
                with conn.begin() as transaction:
                    if pg:
                        set_key(conn, keyed)
                    wall, seconds, _, _ = snapshot(conn, list_id, cpu)
                    transaction.rollback()
                results[keyed].append((wall, seconds))
                print(f"round {k + 1} {'with' if keyed else 'without'} the key: wall "
                      f"{wall:.2f} s, {'backend' if pg else 'our'} CPU {seconds:.2f} s",
                      flush=True)
        if not pg:
            raw.execute("PRAGMA foreign_keys = ON")
        else:
            with conn.begin() as transaction:
                set_key(conn, True)
                _, _, trigger, calls = snapshot(conn, list_id, cpu, explain=True)
                transaction.rollback()
            print(f"EXPLAIN (ANALYZE) with the key: its trigger {trigger:.2f} s, {calls:,} calls")
    engine.dispose()
    for keyed, rows in results.items():
        wall = statistics.median(w for w, _ in rows)
        seconds = statistics.median(c for _, c in rows)
        print(f"{'with' if keyed else 'without'} the key: median wall {wall:.2f} s, CPU "
              f"{seconds:.2f} s; per million {wall / n * 1e6:.2f} s wall, "
              f"{seconds / n * 1e6:.2f} s CPU")
    print(f"load average {os.getloadavg()[0]:.1f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--database", choices=("postgresql", "sqlite"), default="postgresql")
    parser.add_argument("--recipients", type=int, default=100_000)
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    print(f"load average {os.getloadavg()[0]:.1f}; {args.recipients:,} members, "
          f"{SNAPSHOT_CHUNK:,} per chunk, {args.database}", flush=True)
    with tempfile.TemporaryDirectory() as tmp:
        if args.database == "sqlite":
            _seed(tmp, None, args.recipients)
            run(f"sqlite:///{tmp}/newsletter.db", args.recipients, args.rounds)
            return
        from tests.sendtools import pg_database

        with pg_database() as url:
            _seed(tmp, url, args.recipients)
            run(url, args.recipients, args.rounds)


if __name__ == "__main__":
    main()
