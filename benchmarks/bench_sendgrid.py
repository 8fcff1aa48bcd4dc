"""SendGrid delivery speed: 1,000,000 recipients to the local v3 stand-in, side by side.

(a) a bare ``sendgrid`` client posting pre-built, pre-serialized 1,000-recipient JSON
    payloads (8 of them, built before the clock starts, the same shape and size as ours)
    with ``--workers`` requests in flight: the practical ceiling;
(b) our SendGrid backend with the same concurrency: per recipient a Recipient, a signed
    token, a Message-ID, the personalization (substitutions, headers, custom_args), one
    request per 1,000. Without the ledger, which is not part of this module.
Each runs in its own process (peak memory = that process's max RSS, interpreter and
imports included). The stand-in runs in a third process and counts what it accepted;
after (b) every recipient must have been accepted exactly once.

Targets (issue 5, for the whole send including the ledger): (b) at least 80% of (a),
under 30 s, under 150 MB.

Run: python benchmarks/bench_sendgrid.py [--recipients 1000000] [--workers 4]
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import os
import resource
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "benchmarks"))

from measure import peak_rss_mb, phase, process_cpu, send_template  # noqa: E402

KEY = "SG.bench-key"
BATCH = 1000


def address(i: int) -> str:
    return f"user{i}@example.com"


def recipients(start: int, stop: int):
    from newsletter.delivery.personalize import Recipient

    return [Recipient(i, address(i), f"Reader {i}" if i % 3 else None) for i in range(start, stop)]


def seeded(start: int, stop: int):
    """Recipients as bench_send seeds its subscribers (r1@example.com, "Reader 1", ...)."""
    from newsletter.delivery.personalize import Recipient

    return [Recipient(i, f"r{i}@example.com", f"Reader {i}") for i in range(start + 1, stop + 1)]


def _template(tmp: str):
    from tests.delivery_helpers import make_template

    return make_template(Path(tmp) / "briefing", send_id=1, list_id=1)


def _batches(count: int):
    lock = threading.Lock()
    cursor = iter(range(0, count, BATCH))

    def take():
        with lock:
            start = next(cursor, None)
        return None if start is None else (start, min(start + BATCH, count))

    return take


def run_bare(url: str, count: int, workers: int, out, send_like: bool = False) -> None:
    """The bare client. ``send_like``: its requests are made from the template a send of
    bench_send's projects uses (``measure.send_template``: the sample issue with its
    tracked links), not from the tests' template (``_template``, no tracked links), so
    that they are the requests that send posts."""
    from sendgrid import SendGridAPIClient

    from newsletter.delivery.backends.sendgrid import JSON_HEADERS, Body, SendGridBackend

    with tempfile.TemporaryDirectory() as tmp:
        if send_like:
            from tests.sendtools import make_project

            template = send_template(make_project(Path(tmp) / "bare"))
            people = seeded  # as bench_send seeds them
        else:
            template = _template(tmp)
            people = recipients
        builder = SendGridBackend(KEY, url)
        # pre-built and pre-serialized: the client only sends them
        # (as Body, as the backend posts them: see Body for why)
        pool = [
            Body(builder.payload_json(template.messages(people(k * BATCH, (k + 1) * BATCH))))
            for k in range(8)
        ]
        request_bytes = len(pool[0].data)
        take = _batches(count)
        requests = 0
        lock = threading.Lock()

        def worker() -> None:
            nonlocal requests
            client = SendGridAPIClient(api_key=KEY, host=url)
            n = 0
            while (span := take()) is not None:
                response = client.client.mail.send.post(
                    request_body=pool[(span[0] // BATCH) % 8], request_headers=JSON_HEADERS
                )
                assert response.status_code == 202
                n += 1
            with lock:
                requests += n

        before = resource.getrusage(resource.RUSAGE_SELF)
        cpu_before = before.ru_utime + before.ru_stime
        started = time.perf_counter()
        with ThreadPoolExecutor(workers) as executor:
            for future in [executor.submit(worker) for _ in range(workers)]:
                future.result()
        seconds = time.perf_counter() - started
    usage = resource.getrusage(resource.RUSAGE_SELF)
    out.send({"seconds": seconds, "requests": requests, "rss_mb": peak_rss_mb(),
              "bytes": request_bytes, "cpu": usage.ru_utime + usage.ru_stime - cpu_before})


def run_bare_send_like(url: str, count: int, workers: int, out) -> None:
    """``run_bare`` with the send's own requests (``send_like``), for ``phase``."""
    run_bare(url, count, workers, out, send_like=True)


def run_ours(url: str, count: int, workers: int, out) -> None:
    from newsletter.delivery.backends.sendgrid import SendGridBackend

    with tempfile.TemporaryDirectory() as tmp:
        template = _template(tmp)
        backend = SendGridBackend(KEY, url, workers=workers)
        take = _batches(count)
        failed = 0
        lock = threading.Lock()
        rss_before = peak_rss_mb()

        def worker() -> None:
            nonlocal failed
            bad = 0
            while (span := take()) is not None:
                results = backend.send_batch(template.messages(recipients(*span)))
                bad += sum(1 for r in results if not r.ok)
            with lock:
                failed += bad

        backend.open()
        before = resource.getrusage(resource.RUSAGE_SELF)
        cpu_before = before.ru_utime + before.ru_stime
        started = time.perf_counter()
        with ThreadPoolExecutor(workers) as executor:
            for future in [executor.submit(worker) for _ in range(backend.concurrency)]:
                future.result()
        seconds = time.perf_counter() - started
        backend.close()
    usage = resource.getrusage(resource.RUSAGE_SELF)
    out.send({"seconds": seconds, "requests": backend.requests_made,
              "rss_mb": peak_rss_mb(), "rss_before_mb": rss_before, "failed": failed,
              "cpu": usage.ru_utime + usage.ru_stime - cpu_before})



def standin_get(url: str, path: str) -> dict:
    with urllib.request.urlopen(url + path, timeout=30) as response:
        return json.loads(response.read())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--recipients", type=int, default=1_000_000)
    parser.add_argument("--workers", type=int, default=4)
    parser.add_argument("--rounds", type=int, default=2,
                        help="alternate (a) and (b) this many times; report each round")
    args = parser.parse_args()

    server = subprocess.Popen(
        [sys.executable, "-m", "tests.sendgrid_standin", "--key", KEY, "--record", "counts"],
        cwd=REPO, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
    )
    rounds: list[tuple[dict, dict, dict, dict]] = []
    try:
        assert server.stdout is not None
        url = server.stdout.readline().split()[1]
        print(f"CPU cores: {mp.cpu_count()}; stand-in {url} (own process); "
              f"recipients {args.recipients:,}; {args.workers} requests in flight; "
              f"{args.rounds} rounds of (a) then (b)")
        for _ in range(args.rounds):
            standin_get(url, "/_reset")
            bare = phase(run_bare, url, args.recipients, args.workers)
            bare_stats = standin_get(url, "/_stats")
            standin_get(url, "/_reset")
            cpu_before = process_cpu(server.pid)
            ours = phase(run_ours, url, args.recipients, args.workers)
            ours_stats = standin_get(url, "/_stats")
            ours["server_cpu"] = process_cpu(server.pid) - cpu_before
            rounds.append((bare, bare_stats, ours, ours_stats))
    finally:
        if server.stdin:
            server.stdin.close()
        server.wait(10)

    n = args.recipients
    print(f"request size: {rounds[0][0]['bytes'] / 1024:.0f} KB for 1,000 recipients")
    print(f"{'':44} {'seconds':>8} {'recipients/s':>13} {'requests':>9} {'peak MB':>8} "
          f"{'client CPU s':>12} {'vs (a)':>7}")
    ratios = []
    for k, (bare, bare_stats, ours, ours_stats) in enumerate(rounds, 1):
        ceiling = n / bare["seconds"]
        for label, row, stats in (
            (f"round {k} (a) bare client, pre-built payloads", bare, bare_stats),
            (f"round {k} (b) our backend, personalization", ours, ours_stats),
        ):
            rate = n / row["seconds"]
            print(f"{label:44} {row['seconds']:>8.1f} {rate:>13,.0f} {stats['requests']:>9,} "
                  f"{row['rss_mb']:>8.0f} {row['cpu']:>12.1f} {rate / ceiling:>6.0%}   "
                  f"statuses {stats['statuses']}")
        ratios.append(bare["seconds"] / ours["seconds"])
        exact = (ours_stats["recipients"] == n and ours_stats["distinct"] == n
                 and not ours_stats["duplicates"])
        print(f"    (b) every recipient accepted exactly once: {'yes' if exact else 'NO'} "
              f"({ours_stats['recipients']:,} accepted, {ours_stats['duplicates']} duplicated, "
              f"{ours['failed']} failed); stand-in CPU during (b) {ours['server_cpu']:.1f} s; "
              f"memory before sending {ours['rss_before_mb']:.0f} MB")
    print(f"(b)/(a) per round: {', '.join(f'{r:.0%}' for r in ratios)}; load average now "
          f"{os.getloadavg()[0]:.1f} on {mp.cpu_count()} cores (shared with other jobs)")


if __name__ == "__main__":
    main()
