"""The senders of a send: each process (or thread) that claims its batches registers in
``send_workers`` and heartbeats while it works; one that stopped, stopped beating for
``LEASE`` or whose process is gone (on this host) is dead, and ``recovery`` settles the
batches it left in flight. ("Worker" in ``newsletter worker`` means the scheduling
process; these are the per-send senders that process, or ``newsletter send``, runs.)
"""

from __future__ import annotations

import datetime as dt
import os
import socket
import uuid

import sqlalchemy as sa

from ..db.tables import send_workers
from ..db.transactions import DB, aware, transaction, utcnow

LEASE = dt.timedelta(seconds=30)


def register_worker(db: DB, send_id: int, journal_dir: str | None = None) -> str:
    """A new worker of the send; ``journal_dir``: where it keeps its progress journal."""
    worker_id = uuid.uuid4().hex
    now = utcnow()
    with transaction(db) as conn:
        conn.execute(
            send_workers.insert().values(
                id=worker_id,
                send_id=send_id,
                host=socket.gethostname()[:255],
                pid=os.getpid(),
                started_at=now,
                heartbeat_at=now,
                journal_dir=journal_dir,
            )
        )
    return worker_id




def stop_worker(db: DB, worker_id: str) -> None:
    with transaction(db) as conn:
        conn.execute(
            send_workers.update()
            .where(send_workers.c.id == worker_id)
            .values(stopped_at=utcnow(), heartbeat_at=utcnow())
        )


def pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def dead_workers(conn: sa.Connection, send_id: int, now: dt.datetime) -> list[sa.Row]:
    """The send's workers that stopped, stopped beating or whose process is gone."""
    host = socket.gethostname()[:255]
    dead = []
    for row in conn.execute(sa.select(send_workers).where(send_workers.c.send_id == send_id)):
        stale = aware(row.heartbeat_at) < now - LEASE  # type: ignore[operator]
        gone = row.host == host and row.pid != os.getpid() and not pid_alive(row.pid)
        if row.stopped_at is not None or stale or gone:
            dead.append(row)
    return dead
