"""The whole send, ledger included: 1,000,000 recipients to the SendGrid stand-in.

Side by side, in one run, each phase in its own fresh process:

(a) the practical ceiling: a bare ``sendgrid`` client posting pre-built 1,000-recipient
    payloads with ``--workers`` requests in flight (``bench_sendgrid.run_bare``);
(c) ``newsletter.sending``: snapshot the recipients into the ledger, claim batches of
    1,000, personalise, post, record each answer — what ``newsletter send`` does.

The subscribers are created before the clock starts (a separate process). Peak memory is
the sending process's max RSS, interpreter and imports included. Afterwards the stand-in
must have accepted every recipient exactly once and the ledger must say so.

Targets (issue 5): (c) at least 80% of (a), under 30 s wall, under 150 MB.

Run: python benchmarks/bench_send.py [--recipients 1000000] [--workers 4]
         [--database sqlite|postgresql]
"""

from __future__ import annotations

import argparse
import multiprocessing as mp
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "benchmarks"))

from bench_sendgrid import KEY, phase, run_bare, standin_get  # noqa: E402
from measure import peak_rss_mb  # noqa: E402


def _seed(project: str, database_url: str | None, count: int) -> None:
    from tests.sendtools import make_project, seed

    settings = make_project(Path(project), database_url)
    seed(settings, count).dispose()


def run_send(url: str, count: int, workers: int, out, project: str = "") -> None:
    from newsletter import sending
    from newsletter.config import load_settings
    from newsletter.store import open_store

    settings = load_settings(project, sendgrid_api_host=url)
    engine = open_store(settings)
    import os

    os.environ["SENDGRID_API_KEY"] = KEY
    before = resource.getrusage(resource.RUSAGE_SELF)
    cpu_before = before.ru_utime + before.ru_stime
    started = time.perf_counter()
    prepared = sending.preflight(settings, Path(project) / "issues" / "2026-11-24.md")
    send = sending.start(engine, settings, prepared, "daily", backend="sendgrid").send
    snapshot = time.perf_counter() - started
    result = sending.run(engine, settings, send.id, backend="sendgrid", workers=workers)
    seconds = time.perf_counter() - started
    usage = resource.getrusage(resource.RUSAGE_SELF)
    out.send({"seconds": seconds, "snapshot": snapshot, "counts": result.counts,
              "rss_mb": peak_rss_mb(),
              "cpu": usage.ru_utime + usage.ru_stime - cpu_before})


def _run_send_in(project: str):
    def target(url, count, workers, out):
        run_send(url, count, workers, out, project)

    return target


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--recipients", type=int, default=1_000_000)
    parser.add_argument("--workers", type=int, default=4)
    parser.add_argument("--database", choices=["sqlite", "postgresql"], default="sqlite")
    args = parser.parse_args()

    from contextlib import nullcontext

    from tests.sendtools import pg_database

    with tempfile.TemporaryDirectory() as tmp, (
        pg_database() if args.database == "postgresql" else nullcontext()
    ) as database_url:
        project = str(Path(tmp) / "bench")
        started = time.perf_counter()
        seeder = mp.get_context("spawn").Process(
            target=_seed, args=(project, database_url, args.recipients))
        seeder.start()
        seeder.join()
        print(f"seeded {args.recipients:,} subscribers ({args.database}) in "
              f"{time.perf_counter() - started:.1f} s (not timed below)")
        server = subprocess.Popen(
            [sys.executable, "-m", "tests.sendgrid_standin", "--key", KEY, "--record", "counts"],
            cwd=REPO, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
        )
        try:
            assert server.stdout is not None
            url = server.stdout.readline().split()[1]
            print(f"CPU cores: {mp.cpu_count()}; stand-in {url} (own process); "
                  f"{args.workers} requests in flight")
            bare = phase(run_bare, url, args.recipients, args.workers)
            standin_get(url, "/_reset")
            ctx = mp.get_context("spawn")  # a fresh interpreter: its own memory
            parent, child = ctx.Pipe()
            process = ctx.Process(target=run_send,
                                  args=(url, args.recipients, args.workers, child, project))
            process.start()
            ours = parent.recv()
            process.join()
            stats = standin_get(url, "/_stats")
        finally:
            if server.stdin:
                server.stdin.close()
            server.wait(10)
    ceiling = args.recipients / bare["seconds"]
    rate = args.recipients / ours["seconds"]
    print(f"{'':44} {'seconds':>8} {'recipients/s':>13} {'peak MB':>8} {'CPU s':>6} {'vs (a)':>7}")
    print(f"{'(a) bare client, pre-built payloads':44} {bare['seconds']:>8.1f} {ceiling:>13,.0f} "
          f"{bare['rss_mb']:>8.0f} {bare['cpu']:>6.1f} {1:>7.0%}")
    print(f"{'(c) newsletter send (ledger ' + args.database + ')':44} {ours['seconds']:>8.1f} "
          f"{rate:>13,.0f} {ours['rss_mb']:>8.0f} {ours['cpu']:>6.1f} {rate / ceiling:>7.0%}")
    exact = (stats["recipients"] == args.recipients and stats["distinct"] == args.recipients
             and not stats["duplicates"])
    print(f"(c) snapshot {ours['snapshot']:.1f} s; ledger {ours['counts']}; stand-in accepted "
          f"{stats['recipients']:,} ({stats['distinct']:,} distinct, {stats['duplicates']} "
          f"duplicated) in {stats['requests']:,} requests: exactly once: "
          f"{'yes' if exact else 'NO'}")


if __name__ == "__main__":
    main()
