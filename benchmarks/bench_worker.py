"""How late does `newsletter worker` start a scheduled send? (issue 6: within 2 seconds)

Starts a real `newsletter worker` process on a fresh project (SQLite, or PostgreSQL with
--database postgresql), schedules --sends issues of --recipients subscribers each, spread
over the next seconds (some added while the worker sleeps), and reads the worker's
`send.started` log lines: ``late_seconds`` is the time from the due instant to the moment
the send was created in the ledger (issue re-read, validated, rendered; recipients
snapshotted). Prints the median and the maximum, and each send's time to finish.

Run: python benchmarks/bench_worker.py [--sends 6] [--recipients 2000]
         [--database sqlite|postgresql]
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sends", type=int, default=6)
    parser.add_argument("--recipients", type=int, default=2000)
    parser.add_argument("--database", choices=["sqlite", "postgresql"], default="sqlite")
    args = parser.parse_args()

    from contextlib import nullcontext

    from newsletter.scheduling.schedules import schedule_issue
    from tests.sendtools import make_project, newsletter_cmd, pg_database, seed

    with tempfile.TemporaryDirectory() as folder, (
        pg_database() if args.database == "postgresql" else nullcontext(None)
    ) as url:
        settings = make_project(Path(folder) / "p", url)
        engine = seed(settings, args.recipients)
        original = (settings.project_dir / "issues/2026-11-24.md").read_text("utf-8")
        proc = subprocess.Popen(newsletter_cmd(settings.project_dir, "worker"),
                                stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                stderr=subprocess.PIPE, text=True, env=dict(os.environ))
        events: list[dict] = []

        def read() -> None:
            assert proc.stderr is not None
            for line in proc.stderr:
                try:
                    events.append(json.loads(line))
                except json.JSONDecodeError:
                    print(line, end="", file=sys.stderr)

        threading.Thread(target=read, daemon=True).start()
        while not any(e["event"] == "worker.started" for e in events):
            time.sleep(0.05)
        try:
            for n in range(args.sends):
                path = settings.project_dir / f"issues/2026-12-{n + 1:02d}.md"
                # another issue each time: its subject and its content differ (a copy of
                # the same issue would be refused as already scheduled)
                path.write_text(original.replace("subject: ", f"subject: Edition {n}: ", 1)
                                .replace("Roughly **4,200 homes**", f"Roughly **{4200 + n} homes**"),
                                "utf-8")
                # odd sends are added late, while the worker is asleep (1.3 s ahead)
                due = dt.datetime.now(dt.UTC) + dt.timedelta(seconds=1.3 + 1.7 * n)
                schedule_issue(engine, settings, path, "daily", at=due.isoformat())
                time.sleep(0.9)
            deadline = time.monotonic() + 300
            while sum(e["event"] == "send.finished" for e in events) < args.sends:
                if time.monotonic() > deadline:
                    raise SystemExit("timed out waiting for the sends")
                time.sleep(0.1)
        finally:
            proc.terminate()
            proc.wait(30)
        late = [e["late_seconds"] for e in events if e["event"] == "send.started"]
        started = {e["send"]: e["ts"] for e in events if e["event"] == "send.started"}
        print(f"{args.sends} sends of {args.recipients:,} recipients, {args.database}, "
              f"worker_poll_seconds {settings.worker_poll_seconds}")
        print(f"start delay after the due time: median {statistics.median(late):.3f} s, "
              f"max {max(late):.3f} s (target: under 2 s)")
        print("each start delay (s): " + ", ".join(f"{x:.3f}" for x in late))
        print(f"sends started: {len(started)}, finished: "
              f"{sum(e['event'] == 'send.finished' for e in events)}")
        engine.dispose()


if __name__ == "__main__":
    main()
