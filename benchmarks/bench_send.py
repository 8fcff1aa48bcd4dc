"""The whole send, ledger included: 1,000,000 recipients to the SendGrid stand-in.

Side by side, in ``--rounds`` rounds (default 3), each phase in its own fresh process:

(a) the practical ceiling: a bare ``sendgrid`` client posting pre-built 1,000-recipient
    payloads with ``--workers`` requests in flight (``bench_sendgrid.run_bare``);
(c) ``newsletter.delivery.sending``: preflight, create the send, snapshot the recipients into the
    ledger, claim batches of 1,000, personalise, post, record each answer — what
    ``newsletter send`` does. "send created in" is the time to the send's creation (the
    preflight and the first snapshot chunk; the rest is copied while sending).

Each round runs (a) then (c). One run of (a) varies by 10-15% between runs on a shared
2-core machine, so one pair is not a fair ratio: each round's (c)/(a) is taken in that
round, and the summary gives the medians.

Every (c) starts from the same freshly seeded state, made before any clock starts and
not timed. SQLite: the subscribers are seeded once (in a separate process, with the
current code and migrations) into a template project; each round copies that project
directory and sends from the copy. PostgreSQL: each round creates a fresh database and
seeds it (again in a separate process) before its (a).

Peak memory is the sending process's own high-water mark (VmHWM), interpreter and imports
included. The stand-in's counters are reset before each phase; after each (c) it must have
accepted every recipient exactly once, and the ledger must say so.

Targets (issue 5): (c) at least 80% of (a), under 30 s wall, under 150 MB.

``--journal``: instead, (c) only, with and without the per-message progress journal
(``newsletter.delivery.journal``: a line before and after each request), in ``--rounds``
rounds alternating which goes first, each from a fresh copy of the seeded project
(SQLite); prints each run, the medians, their ratio, and wall and CPU seconds per million.

Run: python benchmarks/bench_send.py [--recipients 1000000] [--workers 4] [--rounds 3]
         [--database sqlite|postgresql]
     python benchmarks/bench_send.py --journal --recipients 200000 --rounds 5
"""

from __future__ import annotations

import argparse
import contextlib
import multiprocessing as mp
import os
import resource
import shutil
import statistics
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

LABEL = 50  # width of a row's label


def _seed(project: str, database_url: str | None, count: int) -> None:
    from tests.sendtools import make_project, seed

    settings = make_project(Path(project), database_url)
    seed(settings, count).dispose()


def seed_in_process(project: Path, database_url: str | None, count: int) -> float:
    """Seed ``count`` subscribers into a new project, in a spawned process; its seconds."""
    started = time.perf_counter()
    seeder = mp.get_context("spawn").Process(
        target=_seed, args=(str(project), database_url, count))
    seeder.start()
    seeder.join()
    if seeder.exitcode != 0:
        raise SystemExit(f"seeding failed (exit code {seeder.exitcode})")
    return time.perf_counter() - started


def run_send(url: str, count: int, workers: int, out, project: str = "",
             journal: bool = True) -> None:
    from newsletter.config import load_settings
    from newsletter.db.connect import open_store
    from newsletter.delivery import runner as delivery_engine
    from newsletter.delivery import sending

    delivery_engine.KEEP_JOURNALS = journal

    settings = load_settings(project, sendgrid_api_host=url)
    engine = open_store(settings)
    os.environ["SENDGRID_API_KEY"] = KEY
    before = resource.getrusage(resource.RUSAGE_SELF)
    cpu_before = before.ru_utime + before.ru_stime
    started = time.perf_counter()
    prepared = sending.preflight(settings, Path(project) / "issues" / "2026-11-24.md")
    send = sending.start(engine, settings, prepared, "daily", backend="sendgrid").send
    created = time.perf_counter() - started  # preflight, the send and its first recipients
    result = sending.run(engine, settings, send.id, backend="sendgrid", workers=workers)
    seconds = time.perf_counter() - started
    usage = resource.getrusage(resource.RUSAGE_SELF)
    out.send({"seconds": seconds, "created": created, "counts": dict(result.counts),
              "rss_mb": peak_rss_mb(),
              "cpu": usage.ru_utime + usage.ru_stime - cpu_before})


def send_phase(url: str, count: int, workers: int, project: Path, journal: bool = True
               ) -> dict:
    """(c) in a fresh interpreter (its own memory), sending from ``project``."""
    ctx = mp.get_context("spawn")
    parent, child = ctx.Pipe()
    process = ctx.Process(target=run_send,
                          args=(url, count, workers, child, str(project), journal))
    process.start()
    try:
        result = parent.recv()
    except EOFError:
        process.join()
        raise SystemExit(f"(c) failed (exit code {process.exitcode})") from None
    process.join()
    return result


def exactly_once(count: int, stats: dict, ledger: dict) -> bool:
    return (stats["recipients"] == count and stats["distinct"] == count
            and not stats["duplicates"] and ledger.get("sent") == count
            and sum(ledger.values()) == count)


def row(label: str, result: dict, count: int, ceiling_seconds: float) -> str:
    return (f"{label:{LABEL}} {result['seconds']:>8.1f} {count / result['seconds']:>13,.0f} "
            f"{result['rss_mb']:>8.0f} {result['cpu']:>6.1f} "
            f"{ceiling_seconds / result['seconds']:>7.0%}")


def journal_rounds(url: str, n: int, workers: int, template: Path, rounds: int) -> bool:
    """(c) with and without the progress journal, alternating; medians and their ratio.
    Returns whether every run delivered exactly once."""
    from bench_smtp import print_journal_summary

    runs: dict[bool, list[dict]] = {False: [], True: []}
    exact = True
    print(f"{'':{LABEL}} {'seconds':>8} {'recipients/s':>13} {'peak MB':>8} {'CPU s':>6}")
    for k in range(rounds):
        for journal in ((False, True) if k % 2 == 0 else (True, False)):
            project = template.with_name(f"round{k}-{int(journal)}")
            shutil.copytree(template, project)
            standin_get(url, "/_reset")
            ours = send_phase(url, n, workers, project, journal)
            stats = standin_get(url, "/_stats")
            shutil.rmtree(project, ignore_errors=True)
            runs[journal].append(ours)
            once = exactly_once(n, stats, ours["counts"])
            exact = exact and once
            label = f"round {k + 1} (c) {'with' if journal else 'without'} journal"
            print(f"{label:{LABEL}} {ours['seconds']:>8.1f} {n / ours['seconds']:>13,.0f} "
                  f"{ours['rss_mb']:>8.0f} {ours['cpu']:>6.1f}  exactly once: "
                  f"{'yes' if once else 'NO'}", flush=True)
    print_journal_summary(runs, n)
    return exact


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--recipients", type=int, default=1_000_000)
    parser.add_argument("--workers", type=int, default=4)
    parser.add_argument("--rounds", type=int, default=3,
                        help="run (a) then (c) this many times; report each round and medians")
    parser.add_argument("--database", choices=["sqlite", "postgresql"], default="sqlite")
    parser.add_argument("--journal", action="store_true",
                        help="(c) only, with and without the progress journal (SQLite)")
    args = parser.parse_args()
    n, pg = args.recipients, args.database == "postgresql"
    if args.rounds < 1:
        parser.error("--rounds must be at least 1")
    if args.journal and pg:
        parser.error("--journal compares on SQLite only")

    from tests.sendtools import pg_database

    rounds: list[tuple[dict, dict, dict]] = []  # (a), (c), stand-in stats after (c)
    with tempfile.TemporaryDirectory() as tmp:
        template = Path(tmp) / "template"
        if not pg:
            seconds = seed_in_process(template, None, n)
            size = (template / "newsletter.db").stat().st_size / 1e6
            print(f"seeded {n:,} subscribers (sqlite, {size:.0f} MB) into a template project "
                  f"in {seconds:.1f} s; each round sends from a fresh copy (not timed)")
        server = subprocess.Popen(
            [sys.executable, "-m", "tests.sendgrid_standin", "--key", KEY, "--record", "counts"],
            cwd=REPO, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
        )
        try:
            assert server.stdout is not None
            url = server.stdout.readline().split()[1]
            print(f"CPU cores: {mp.cpu_count()}; stand-in {url} (own process); "
                  f"{args.workers} requests in flight; {args.rounds} rounds of "
                  + ("(c) without and with the journal" if args.journal else "(a) then (c)"))
            if args.journal:
                if not journal_rounds(url, n, args.workers, template, args.rounds):
                    raise SystemExit(1)
                return
            print(f"{'':{LABEL}} {'seconds':>8} {'recipients/s':>13} {'peak MB':>8} "
                  f"{'CPU s':>6} {'vs (a)':>7}", flush=True)
            for k in range(1, args.rounds + 1):
                project = Path(tmp) / f"round{k}"
                with contextlib.ExitStack() as stack:
                    started = time.perf_counter()
                    if pg:  # a fresh database, dropped at the end of the round
                        database_url = stack.enter_context(pg_database())
                        seed_in_process(project, database_url, n)
                        prepared = f"fresh database seeded in {time.perf_counter() - started:.1f} s"
                    else:
                        shutil.copytree(template, project)
                        stack.callback(shutil.rmtree, project, ignore_errors=True)
                        prepared = f"template copied in {time.perf_counter() - started:.1f} s"
                    standin_get(url, "/_reset")
                    bare = phase(run_bare, url, n, args.workers)
                    standin_get(url, "/_reset")
                    ours = send_phase(url, n, args.workers, project)
                    stats = standin_get(url, "/_stats")
                rounds.append((bare, ours, stats))
                print(row(f"round {k} (a) bare client, pre-built payloads", bare, n,
                          bare["seconds"]))
                print(row(f"round {k} (c) newsletter send (ledger {args.database})", ours, n,
                          bare["seconds"]))
                print(f"    (c) send created in {ours['created']:.1f} s; ledger {ours['counts']}; "
                      f"stand-in accepted {stats['recipients']:,} ({stats['distinct']:,} "
                      f"distinct, {stats['duplicates']} duplicated) in {stats['requests']:,} "
                      f"requests: exactly once: "
                      f"{'yes' if exactly_once(n, stats, ours['counts']) else 'NO'} "
                      f"({prepared}, not timed)", flush=True)
        finally:
            if server.stdin:
                server.stdin.close()
            server.wait(10)

    a_seconds = statistics.median(bare["seconds"] for bare, _, _ in rounds)
    c_seconds = statistics.median(ours["seconds"] for _, ours, _ in rounds)
    ratios = [bare["seconds"] / ours["seconds"] for bare, ours, _ in rounds]
    exact = [exactly_once(n, stats, ours["counts"]) for _, ours, stats in rounds]
    print(f"summary over {len(rounds)} rounds ({n:,} recipients, ledger {args.database}):")
    print(f"  (a) median {a_seconds:.1f} s ({n / a_seconds:,.0f}/s); "
          f"(c) median {c_seconds:.1f} s ({n / c_seconds:,.0f}/s)   [target (c) < 30 s]")
    print(f"  (c)/(a) throughput per round {', '.join(f'{r:.0%}' for r in ratios)}; "
          f"median {statistics.median(ratios):.0%}   [target >= 80%]")
    print(f"  (c) max peak {max(o['rss_mb'] for _, o, _ in rounds):.0f} MB   [target < 150 MB]; "
          f"max CPU {max(o['cpu'] for _, o, _ in rounds):.1f} s")
    print(f"  exactly once (stand-in and ledger) per round: "
          f"{', '.join('yes' if e else 'NO' for e in exact)}")
    print(f"  load average now {os.getloadavg()[0]:.1f} on {mp.cpu_count()} cores")
    if not all(exact):
        raise SystemExit(1)


if __name__ == "__main__":
    main()
