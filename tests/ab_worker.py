"""`newsletter worker`, with a clock the test moves: ``python -m tests.ab_worker PROJECT
CLOCK_FILE``. The time is the ISO timestamp in CLOCK_FILE (read at every look); the
loop's pauses are short real waits. One JSON log line per event on stderr, as the real
command writes them."""

from __future__ import annotations

import datetime as dt
import logging
import signal
import sys
import threading
import time
from pathlib import Path

from newsletter.config import load_settings
from newsletter.db.connect import open_store
from newsletter.scheduling.worker import WorkerProcess


class FileClock:
    def __init__(self, path: Path) -> None:
        self.path = path
        self.last: dt.datetime | None = None

    def now(self) -> dt.datetime:
        """The time in the file; the last one read while the test is rewriting it (a
        read between its truncation and its write finds the file empty)."""
        while True:
            text = self.path.read_text("utf-8").strip()
            if text:
                self.last = dt.datetime.fromisoformat(text)
            if self.last is not None:
                return self.last
            time.sleep(0.01)

    def sleep(self, seconds: float, stop: threading.Event) -> bool:
        return stop.wait(min(max(0.0, seconds), 0.1))


def main() -> None:
    project, clock_file = Path(sys.argv[1]), Path(sys.argv[2])
    logger = logging.getLogger("newsletter.worker")
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("%(message)s"))
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    logger.propagate = False
    settings = load_settings(project)
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())  # as `newsletter worker`: finish
    WorkerProcess(open_store(settings), settings, clock=FileClock(clock_file), stop=stop,
                  concurrency=1).run()


if __name__ == "__main__":
    main()
