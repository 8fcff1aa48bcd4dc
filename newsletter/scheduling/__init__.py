"""Scheduled sends: stored now, started on time by a worker process, once, across restarts.

- ``schedules``: creating, reading, listing, moving and cancelling schedules;
- ``due``: finding due schedules and claiming them (start, resume, settle their sends);
- ``waves``: ``--local-time`` waves at run time;
- ``worker``: the worker process (``newsletter worker``), its registry and its loop;
- ``status``: an issue's delivery status (scheduled, sending, sent, failed) for the preview;
- ``tables``: the ``schedules`` and ``schedule_workers`` tables; ``clock``, ``log``,
  ``context``: what the others share.

Times (``--at``, ``send_at``, daylight saving) and local-time waves are computed in
``newsletter.scheduling.sendtimes``. "Worker" here always means a process running
``newsletter worker``; the ledger's per-send senders (``delivery.ledger.send_workers``) are
another thing, and a worker process runs each send in a send thread.
"""
