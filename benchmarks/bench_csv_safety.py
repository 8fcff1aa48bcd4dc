"""What formula neutralising costs: plain ``csv`` against ``newsletter.audience.csvsafe``, side by side.

Writing: ``csv.writer`` versus ``csvsafe.writer`` on the rows an export writes (email,
name, status and two attributes; every 50th row has a cell starting with ``=`` or ``-``).
Reading: the importer's loop over ``csv.reader`` rows without and with
``csvsafe.restore_row``. Each variant runs ``--rounds`` times, interleaved (plain, safe,
plain, safe, ...) so that a busy machine slows both alike; the medians and their ratio
are printed.

Run: python benchmarks/bench_csv_safety.py [--rows 200000] [--rounds 5]
"""

from __future__ import annotations

import argparse
import csv
import io
import statistics
import time
from collections.abc import Callable

from newsletter.audience import csvsafe


def export_rows(count: int) -> list[list[str]]:
    rows = []
    for n in range(count):
        name = f"=Reader {n}" if n % 50 == 0 else f"Reader {n}"
        city = "-" if n % 50 == 25 else "Rome"
        rows.append([f"r{n}@example.org", name, "active", city, f"{n % 90} years"])
    return rows


def write_plain(rows: list[list[str]]) -> str:
    out = io.StringIO()
    csv.writer(out).writerows(rows)
    return out.getvalue()


def write_safe(rows: list[list[str]]) -> str:
    out = io.StringIO()
    csvsafe.writer(out).writerows(rows)
    return out.getvalue()


def read_plain(text: str) -> int:
    total = 0
    for cells in csv.reader(io.StringIO(text)):
        total += len(cells)
    return total


def read_safe(text: str) -> int:
    total = 0
    restore = csvsafe.restore_row
    for cells in csv.reader(io.StringIO(text)):
        restore(cells)
        total += len(cells)
    return total


def timed(work: Callable[[], object]) -> float:
    start = time.perf_counter()
    work()
    return time.perf_counter() - start


def compare(label: str, plain: Callable[[], object], safe: Callable[[], object], rounds: int,
            rows: int) -> None:
    times: dict[str, list[float]] = {"plain": [], "safe": []}
    for _ in range(rounds):
        times["plain"].append(timed(plain))
        times["safe"].append(timed(safe))
    a, b = statistics.median(times["plain"]), statistics.median(times["safe"])
    print(f"{label:<8} plain {a * 1000:7.1f} ms ({rows / a:>10,.0f} rows/s)   "
          f"safe {b * 1000:7.1f} ms ({rows / b:>10,.0f} rows/s)   safe/plain {b / a:5.2f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=200_000)
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    rows = export_rows(args.rows)
    text = write_safe(rows)
    print(f"{args.rows:,} rows, median of {args.rounds} interleaved rounds")
    compare("write", lambda: write_plain(rows), lambda: write_safe(rows), args.rounds, args.rows)
    compare("read", lambda: read_plain(text), lambda: read_safe(text), args.rounds, args.rows)


if __name__ == "__main__":
    main()
