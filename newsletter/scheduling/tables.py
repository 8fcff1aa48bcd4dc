"""The scheduling tables: ``schedules`` (one row per scheduled send) and
``schedule_workers`` (one row per ``newsletter worker`` process, with its heartbeat).

Only the table definitions and the states their check constraint allows live here, so
that moving every table into ``newsletter.store.tables`` is a change of this one file.
"""

from __future__ import annotations

import sqlalchemy as sa

from newsletter.store.tables import ID, JSONType, Stamp, metadata

STATES = ("scheduled", "sending", "sent", "failed", "missed", "cancelled")
OPEN = ("scheduled", "sending")  # a schedule that has not ended

schedules = sa.Table(
    "schedules",
    metadata,
    sa.Column("id", ID, primary_key=True, autoincrement=True),
    sa.Column("issue_path", sa.Text(), nullable=False),  # relative to the project if inside
    sa.Column("list_name", sa.String(100), nullable=False),
    sa.Column("backend", sa.String(20), nullable=True),  # None: the configured one
    sa.Column("zone", sa.String(64), nullable=False),
    sa.Column("wall", sa.String(19), nullable=False),  # YYYY-MM-DD HH:MM:SS in ``zone``
    sa.Column("due_at", Stamp, nullable=False),  # UTC; local-time: the next wave
    sa.Column("local_time", sa.Boolean(), nullable=False),
    sa.Column("again", sa.Boolean(), nullable=False),
    sa.Column("source", sa.String(10), nullable=False),  # --at | send_at
    sa.Column("status", sa.String(12), nullable=False),
    sa.Column("send_id", ID, sa.ForeignKey("sends.id", ondelete="SET NULL"), nullable=True),
    sa.Column("worker_id", sa.String(40), nullable=True),  # the worker process that started it
    sa.Column("waves", JSONType, nullable=True),  # local-time: {"done": [...], "missed": [...]}
    sa.Column("note", sa.Text(), nullable=True),
    sa.Column("created_at", Stamp, nullable=False),
    sa.Column("started_at", Stamp, nullable=True),
    sa.Column("finished_at", Stamp, nullable=True),
    sa.CheckConstraint(
        "status IN ('scheduled', 'sending', 'sent', 'failed', 'missed', 'cancelled')",
        name="status",
    ),
    sa.Index(None, "status", "due_at"),
    sqlite_autoincrement=True,
)

schedule_workers = sa.Table(
    "schedule_workers",
    metadata,
    sa.Column("id", sa.String(40), primary_key=True),
    sa.Column("host", sa.String(255), nullable=False),
    sa.Column("pid", sa.Integer(), nullable=False),
    sa.Column("state", sa.String(20), nullable=False),  # idle | sending | standby | stopped
    sa.Column("detail", sa.Text(), nullable=True),
    sa.Column("started_at", Stamp, nullable=False),
    sa.Column("heartbeat_at", Stamp, nullable=False),
    sa.Column("stopped_at", Stamp, nullable=True),
)
