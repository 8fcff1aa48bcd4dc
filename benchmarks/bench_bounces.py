"""Bounce mailbox throughput: N delivery status notifications in a real IMAP server
(dovecot, as the tests start it), read, parsed, claimed, applied and moved.

Side by side in one run: one `bounces fetch` over all N, and two fetchers at once over
another N (each report applied once: the totals are checked); plus the bare IMAP ceiling
(fetching the same N messages without parsing or applying). Target: 10,000 in under 60 s.

    python benchmarks/bench_bounces.py               # 10,000 DSNs, SQLite
    python benchmarks/bench_bounces.py --count 2000
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import threading
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))


def _fill(imap, settings, folder: str, count: int, tag: str) -> None:
    from tests.test_bounce_mailbox import sample

    conn = imap.client()
    conn.create(folder)
    names = ("gmail-hard.eml", "microsoft-hard.eml", "yahoo-soft.eml", "yahoo-arf.eml")
    for n in range(count):
        raw = sample(names[n % 4], settings, 1 + n % 5000, mid=f"{tag}-{n}")
        conn.append(folder, None, None, raw.replace(b"\n", b"\r\n"))
    conn.logout()


def _bare(imap, folder: str) -> float:
    """The ceiling: fetch every message of the folder in chunks, nothing else."""
    from newsletter.feedback import mailbox

    started = time.perf_counter()
    conn = imap.client()
    uids = mailbox._uids(conn, folder)
    for start in range(0, len(uids), mailbox.CHUNK):
        mailbox._fetch(conn, uids[start:start + mailbox.CHUNK])
    conn.logout()
    return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--count", type=int, default=10_000)
    args = parser.parse_args()
    from newsletter.feedback import mailbox
    from tests.imapserver import DovecotServer
    from tests.sendtools import make_project, seed

    with tempfile.TemporaryDirectory() as tmp, DovecotServer() as imap:
        settings = make_project(Path(tmp) / "p")
        engine = seed(settings, 5000)
        results = {}
        for label, fetchers in (("one fetcher", 1), ("two fetchers at once", 2)):
            folder = f"B{fetchers}"
            _fill(imap, settings, folder, args.count, label.replace(" ", ""))
            bare = _bare(imap, folder)
            url = imap.url.replace("/INBOX?", f"/{folder}?") + f"&processed={folder}.done"
            local = settings.model_copy(update={"bounce_mailbox": url})
            reports: list = []
            started = time.perf_counter()
            threads = [threading.Thread(target=lambda s=local, out=reports: out.append(
                mailbox.fetch(engine, s))) for _ in range(fetchers)]
            for t in threads:
                t.start()
            for t in threads:
                t.join()
            seconds = time.perf_counter() - started
            applied = sum(sum(r.applied.values()) for r in reports)
            assert applied == args.count, (applied, args.count)  # each exactly once
            results[label] = (seconds, bare)
        print(f"{args.count:,} DSNs/ARFs in dovecot, SQLite (target: under 60 s)")
        print(f"{'':24}{'seconds':>9}{'per s':>9}{'bare IMAP fetch s':>19}{'ratio':>7}")
        for label, (seconds, bare) in results.items():
            print(f"{label:24}{seconds:9.1f}{args.count / seconds:9,.0f}{bare:19.1f}"
                  f"{bare / seconds:7.2f}")


if __name__ == "__main__":
    main()
