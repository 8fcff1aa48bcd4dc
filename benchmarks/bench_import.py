"""Import benchmark: a generated CSV (5% invalid, 5% duplicates) into SQLite and PostgreSQL.

    python benchmarks/bench_import.py                      # 1,000,000 rows, both databases
    python benchmarks/bench_import.py --rows 200000 --backends sqlite --profile
    python benchmarks/bench_import.py --rows 10000000 --once   # no re-import

Each import runs in a child process (``newsletter.audience.importer.import_csv`` on a fresh
database), so that its peak memory (``ru_maxrss`` from ``os.wait4``) is its own.
Prints rows/s and peak memory per database against the targets (SQLite >= 50,000
rows/s, PostgreSQL >= 30,000 rows/s, peak < 200 MB), the cost per address of
email-validator against the fast path side by side, and with ``--profile`` the
functions where the SQLite import spends its time.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import random
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

HERE = Path(__file__).resolve().parent
CACHE = HERE / ".cache"
TARGETS = {"sqlite": 50_000, "postgresql": 30_000}
PEAK_MB = 200
PG_ADMIN = os.environ.get("BENCH_PG_ADMIN", "postgresql+psycopg://postgres@127.0.0.1:5432/postgres")

FIRST = ["Ann", "Bob", "Chloé", "Dmitri", "Eve", "Farah", "Gustavo", "Hana", "Ivan", "Jun"]
ASCII_FIRST = ["ann", "bob", "chloe", "dmitri", "eve", "farah", "gustavo", "hana", "ivan"]
LAST = ["Lee", "Smith", "García", "Novak", "O'Brien", "Kowalski", "Tanaka", "Müller"]
CITIES = ["Rome", "Paris; FR", "London", "Lagos", "Osaka", "Lima", "Oslo", ""]
DOMAINS = ["example.org", "Mail.Example.COM", "news.example.net", "post.example.co.uk"]
INVALID = [
    "no-at-sign",
    "two@@example.org",
    "a..b@example.org",
    "x@localhost",
    "@example.org",
    "ann@example",
    "spaces in@example.org",
    "bob@exa_mple.org",
]


def generate(path: Path, rows: int, seed: int = 4) -> dict[str, int]:
    """Write the CSV: ~90% distinct valid rows, 5% invalid, 5% repeats of earlier rows."""
    rng = random.Random(seed)
    counts = {"valid": 0, "invalid": 0, "duplicate": 0}
    recent: list[str] = []
    with open(path, "w", encoding="utf-8", newline="") as out:
        out.write("Email,First Name,Last Name,City,Plan\r\n")
        for n in range(rows):
            roll = rng.random()
            if roll < 0.05:
                email = rng.choice(INVALID) + ("" if rng.random() < 0.5 else str(n))
                counts["invalid"] += 1
            elif roll < 0.10 and recent:
                email = rng.choice(recent).upper() if rng.random() < 0.3 else rng.choice(recent)
                counts["duplicate"] += 1
            else:
                # Real lists are almost all ASCII; one address in 500 has an accent.
                first = rng.choice(FIRST) if rng.random() < 0.002 else rng.choice(ASCII_FIRST)
                email = f"{first.lower()}.{n}@{rng.choice(DOMAINS)}"
                counts["valid"] += 1
                if len(recent) < 50_000:
                    recent.append(email)
                else:
                    recent[rng.randrange(50_000)] = email
            city = rng.choice(CITIES)
            city = f'"{city}"' if ";" in city else city
            out.write(
                f"{email},{rng.choice(FIRST)},{rng.choice(LAST)},{city},"
                f"{rng.choice(['free', 'paid', ''])}\r\n"
            )
    return counts


CHILD = r"""
import json, sys, cProfile, pstats, io
from newsletter.db.connect import open_store
from newsletter.audience.lists import create_list
from newsletter.audience.importer import import_csv
url, csv_path, profile = sys.argv[1], sys.argv[2], sys.argv[3] == "1"
engine = open_store(url)
create_list(engine, "bench")
def run():
    return import_csv(engine, csv_path, list_name="bench")
if profile:
    prof = cProfile.Profile()
    report = prof.runcall(run)
    buf = io.StringIO()
    pstats.Stats(prof, stream=buf).sort_stats("tottime").print_stats(14)
    sys.stderr.write(buf.getvalue())
else:
    report = run()
again = import_csv(engine, csv_path, list_name="bench") if sys.argv[4] == "1" else None
print(json.dumps({"first": report.as_dict(), "again": again and again.as_dict()}))
"""


def run_child(url: str, csv_path: Path, profile: bool, again: bool = True
              ) -> tuple[dict, float, float, str]:
    """Run the import in a child (then the re-import unless ``again`` is false); its own
    peak RSS comes from os.wait4."""
    with tempfile.TemporaryFile("w+") as err_file:
        proc = subprocess.Popen(
            [sys.executable, "-c", CHILD, url, str(csv_path), "1" if profile else "0",
             "1" if again else "0"],
            stdout=subprocess.PIPE,
            stderr=err_file,
            text=True,
        )
        assert proc.stdout is not None
        out = proc.stdout.read()
        _, status, usage = os.wait4(proc.pid, 0)
        proc.returncode = os.waitstatus_to_exitcode(status)
        err_file.seek(0)
        err = err_file.read()
    if proc.returncode != 0:
        raise SystemExit(f"import failed:\n{err}")
    return json.loads(out), usage.ru_maxrss / 1024, usage.ru_utime + usage.ru_stime, err


def pg_database() -> tuple[str, callable]:
    import sqlalchemy as sa

    name = f"newsletter_bench_{uuid.uuid4().hex[:8]}"
    admin = sa.create_engine(PG_ADMIN, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.exec_driver_sql(f'CREATE DATABASE "{name}"')
    url = PG_ADMIN.rsplit("/", 1)[0] + f"/{name}"

    def drop() -> None:
        with admin.connect() as conn:
            conn.exec_driver_sql(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        admin.dispose()

    return url, drop


def normalisation_costs(csv_path: Path, sample: int = 50_000) -> None:
    """Microseconds per address: email-validator against the fast path, same addresses."""
    import csv

    from email_validator import EmailNotValidError, validate_email

    from newsletter.audience.emails import normalize

    with open(csv_path, encoding="utf-8", newline="") as f:
        reader = csv.reader(f)
        next(reader)
        addresses = [row[0] for _, row in zip(range(sample), reader, strict=False)]

    def slow(text: str) -> None:
        with contextlib.suppress(EmailNotValidError):
            validate_email(text, check_deliverability=False)

    def fast(text: str) -> None:
        with contextlib.suppress(ValueError):
            normalize(text)

    for label, fn in (("email-validator", slow), ("fast path + fallback", fast)):
        times = []
        for _ in range(3):
            start = time.perf_counter()
            for a in addresses:
                fn(a)
            times.append((time.perf_counter() - start) / len(addresses) * 1e6)
        print(f"  {label:<22} {statistics.median(times):6.2f} us/address (median of 3)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--backends", default="sqlite,postgresql")
    parser.add_argument("--profile", action="store_true", help="cProfile the SQLite import")
    parser.add_argument("--once", action="store_true",
                        help="no re-import of the same file (halves a 10,000,000-row run)")
    args = parser.parse_args()
    CACHE.mkdir(exist_ok=True)
    csv_path = CACHE / f"import-{args.rows}.csv"
    if not csv_path.exists():
        start = time.perf_counter()
        counts = generate(csv_path, args.rows)
        print(f"generated {csv_path} in {time.perf_counter() - start:.1f} s: {counts}")
    size_mb = csv_path.stat().st_size / 1e6
    print(f"input: {csv_path.name}, {args.rows:,} rows, {size_mb:.1f} MB")
    print("normalising addresses (same 50,000 addresses):")
    normalisation_costs(csv_path)
    results = []
    for backend in args.backends.split(","):
        drop = None
        with tempfile.TemporaryDirectory() as tmp:
            if backend == "sqlite":
                url = f"sqlite:///{tmp}/bench.db"
            else:
                url, drop = pg_database()
            try:
                data, peak, cpu, err = run_child(
                    url, csv_path, args.profile and backend == "sqlite", not args.once
                )
            finally:
                if drop:
                    drop()
        if err.strip():
            print(f"--- profile of the {backend} import (by own time) ---")
            print("\n".join(err.splitlines()[:40]))
        results.append((backend, data, peak, cpu))
    print()
    print(
        f"{'database':<11} {'rows':>10} {'s':>7} {'rows/s':>9} {'target':>8} {'peak MB':>8} "
        f"{'child CPU s':>11} {'re-import rows/s':>17}  counts"
    )
    ok = True
    for backend, data, peak, cpu in results:
        first, again = data["first"], data["again"]
        rate = first["rows"] / first["seconds"]
        rate_again = again["rows"] / again["seconds"] if again else float("nan")
        passed = rate >= TARGETS[backend] and peak < PEAK_MB
        ok = ok and passed
        counts = {k: first[k] for k in ("added", "invalid", "duplicates", "empty")}
        print(
            f"{backend:<11} {first['rows']:>10,} {first['seconds']:>7.1f} {rate:>9,.0f} "
            f"{TARGETS[backend]:>8,} {peak:>8.0f} {cpu:>11.1f} {rate_again:>17,.0f}  {counts} "
            f"{'PASS' if passed else 'FAIL'}"
        )
        assert again is None or (again["added"] == 0
                                 and again["unchanged"] == first["added"]), again
    print("all targets met" if ok else "some targets missed")
    print(f"machine load while measuring: {os.getloadavg()[0]:.1f} (1-minute average, 2 cores)")
    print("child CPU s: both import runs (first and re-import) plus start-up, all threads")


if __name__ == "__main__":
    main()
