"""A temporary PostgreSQL cluster with the server settings README.md recommends for
large sends ("PostgreSQL server settings for large sends"), for ``bench_send.py
--pg-cluster``; and the server's checkpoint, WAL and buffer counters, to see where a
send's database time went.

The machine's shared server (127.0.0.1:5432) serves everyone's tests with PostgreSQL's
defaults; a benchmark must not change its settings. The cluster is made with the
installed ``initdb`` and ``pg_ctl`` (as the ``postgres`` user when run as root: initdb
refuses root) in a fresh directory, listens on 127.0.0.1 only, trusts local connections,
and is stopped and deleted afterwards.
"""

from __future__ import annotations

import contextlib
import glob
import os
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path

#: what README.md's PostgreSQL section recommends for sends of millions (and why, there)
SETTINGS = {
    "shared_buffers": "2GB",
    "max_wal_size": "16GB",
    "min_wal_size": "2GB",
    "checkpoint_timeout": "30min",
    "wal_compression": "on",
    "jit": "off",
}


def _bin(name: str) -> str:
    found = sorted(glob.glob(f"/usr/lib/postgresql/*/bin/{name}"))
    if not found:
        raise SystemExit(f"--pg-cluster: no /usr/lib/postgresql/*/bin/{name}; install "
                         "PostgreSQL's server package or run without --pg-cluster")
    return found[-1]  # the newest version


def _as_postgres(command: list[str]) -> list[str]:
    return ["runuser", "-u", "postgres", "--", *command] if os.geteuid() == 0 else command


@contextlib.contextmanager
def temporary_cluster(port: int, settings: dict[str, str] | None = None) -> Iterator[str]:
    """Start a cluster on ``port`` with ``settings`` (default ``SETTINGS``; ``{}``:
    PostgreSQL's own defaults); yields its
    admin URL (the ``postgres`` database); stopped and removed on exit."""
    data = Path(tempfile.mkdtemp(prefix="newsletter-pgcluster-"))
    if os.geteuid() == 0:
        shutil.chown(data, "postgres", "postgres")
    try:
        subprocess.run(_as_postgres([_bin("initdb"), "-D", str(data), "-U", "postgres",
                                     "--auth=trust", "-E", "UTF8", "--no-sync"]),
                       check=True, capture_output=True, text=True)
        lines = [f"port = {port}", "listen_addresses = '127.0.0.1'",
                 f"unix_socket_directories = '{data}'"]
        chosen = SETTINGS if settings is None else settings
        lines += [f"{name} = '{value}'" for name, value in chosen.items()]
        with open(data / "postgresql.conf", "a", encoding="utf-8") as conf:
            conf.write("\n".join(lines) + "\n")
        subprocess.run(_as_postgres([_bin("pg_ctl"), "-D", str(data), "-w", "-l",
                                     str(data / "server.log"), "start"]),
                       check=True, capture_output=True, text=True)
        try:
            yield f"postgresql+psycopg://postgres@127.0.0.1:{port}/postgres"
        finally:
            subprocess.run(_as_postgres([_bin("pg_ctl"), "-D", str(data), "-w", "-m", "fast",
                                         "stop"]), check=False, capture_output=True)
    finally:
        shutil.rmtree(data, ignore_errors=True)


def _admin(database_url: str, statements: list[str]) -> None:
    import sqlalchemy as sa

    engine = sa.create_engine(database_url, isolation_level="AUTOCOMMIT")
    try:
        with engine.connect() as conn:
            for statement in statements:
                conn.exec_driver_sql(statement)
    finally:
        engine.dispose()


def warm_wal(database_url: str, segments: int = 64) -> None:
    """Make the WAL segment files a running server has for reuse (``segments`` of 16 MB,
    recycled by a checkpoint; ``min_wal_size`` keeps up to 2 GB of them). A new cluster
    has none: every 16 MB of WAL a send writes would first be zero-filled by the backend
    that needs it, inside its commit and holding the WAL write lock (a tenth of the
    server's CPU in a 1,000,000-recipient send, and every other commit waiting), which a
    server in service does not pay."""
    _admin(database_url, ["SELECT pg_logical_emit_message(false, 'warm', 'x'); "
                          "SELECT pg_switch_wal()"] * segments + ["CHECKPOINT"])


def checkpoint(database_url: str) -> None:
    """A checkpoint now (after seeding, not timed): the seeding's dirty pages written and
    its WAL segments recycled, as a server in service does every ``checkpoint_timeout``."""
    _admin(database_url, ["CHECKPOINT"])


_COUNTERS = """
SELECT (SELECT checkpoints_timed FROM pg_stat_bgwriter) AS checkpoints_timed,
       (SELECT checkpoints_req FROM pg_stat_bgwriter) AS checkpoints_requested,
       (SELECT buffers_checkpoint FROM pg_stat_bgwriter) AS buffers_checkpoint,
       (SELECT buffers_backend FROM pg_stat_bgwriter) AS buffers_backend,
       (SELECT wal_bytes FROM pg_stat_wal) AS wal_bytes,
       (SELECT wal_fpi FROM pg_stat_wal) AS wal_fpi,
       blks_hit, blks_read
FROM pg_stat_database WHERE datname = current_database()"""


def counters(database_url: str) -> dict[str, float]:
    """The server's checkpoint, WAL and buffer counters now (server-wide, except the
    buffer hits and reads, which are the database's; on a shared server other
    databases' work counts too)."""
    import sqlalchemy as sa

    engine = sa.create_engine(database_url)
    try:
        with engine.connect() as conn:
            conn.exec_driver_sql("SELECT pg_stat_clear_snapshot()")
            row = conn.exec_driver_sql(_COUNTERS).one()
    finally:
        engine.dispose()
    return {name: float(value) for name, value in row._mapping.items()}


def describe(before: dict[str, float], after: dict[str, float]) -> str:
    """The counters' growth between two readings, in one line."""
    grew = {name: after[name] - before[name] for name in before}
    reads = grew["blks_hit"] + grew["blks_read"]
    return (f"checkpoints {grew['checkpoints_timed']:.0f} timed + "
            f"{grew['checkpoints_requested']:.0f} requested, "
            f"{grew['buffers_checkpoint'] * 8 / 1e3:,.0f} MB written by checkpoints, "
            f"{grew['buffers_backend'] * 8 / 1e3:,.0f} MB by backends; WAL "
            f"{grew['wal_bytes'] / 1e9:,.2f} GB ({grew['wal_fpi']:,.0f} full-page images); "
            f"buffer hits {grew['blks_hit'] / reads if reads else 0:.1%} of "
            f"{reads:,.0f}")
