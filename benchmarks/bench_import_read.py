"""Import reading benchmark: the bounded, hostile-input-proof CSV reader against a baseline.

    python benchmarks/bench_import_read.py --baseline /path/to/main-worktree
    python benchmarks/bench_import_read.py --rows 200000 --runs 3 --huge-mb 300

Prints, side by side in one run:

- SQLite import rate of the same generated CSV (bench_import's file: 5% invalid, 5%
  duplicates) with this tree's code and with the baseline tree's, runs interleaved, each
  in a child process with its own peak RSS (``ru_maxrss`` from ``os.wait4``); medians and
  the ratio;
- the reading layer alone (no database): ``csv.reader`` straight over the file, as the
  importer read it before, against ``newsletter.audience.csvread.RowReader``; medians and ratio;
- peak RSS of importing a file with one ``--huge-mb`` MB line (generated in a temporary
  folder, not in the repository), with this tree (target < 200 MB; the line is rejected)
  and, with ``--huge-baseline``, with the baseline tree.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
from bench_import import CACHE, generate  # noqa: E402

TREE = HERE.parent
PEAK_MB = 200

CHILD = r"""
import json, sys
from newsletter.db.connect import open_store
from newsletter.audience.lists import create_list
from newsletter.audience.importer import import_csv
url, csv_path = sys.argv[1], sys.argv[2]
engine = open_store(url)
create_list(engine, "bench")
report = import_csv(engine, csv_path, list_name="bench")
print(json.dumps(report.as_dict()))
"""

READ_CHILD = r"""
import csv, io, json, sys, time
from pathlib import Path
from newsletter.audience.csvread import RowReader, open_csv, read_header
mode, path = sys.argv[1], Path(sys.argv[2])
start = time.perf_counter()
rows = 0
if mode == "csv.reader":
    with open(path, "rb") as raw:
        text = io.TextIOWrapper(raw, encoding="utf-8-sig", newline="")
        text.readline()
        for cells in csv.reader(text):
            rows += 1
else:
    source = open_csv(path)
    read_header(path, source)
    reader = RowReader(
        source.text, ",", encoding=source.encoding, is_row=lambda c: False, reject=print
    )
    for line, cells in reader:
        rows += 1
    source.close()
print(json.dumps({"seconds": time.perf_counter() - start, "rows": rows}))
"""


def child(code: str, args: list[str], tree: Path) -> tuple[dict, float]:
    """Run ``code`` with ``tree`` first on the path; (its JSON output, peak RSS in MB)."""
    env = {**os.environ, "PYTHONPATH": str(tree)}
    with tempfile.TemporaryFile("w+") as err:
        proc = subprocess.Popen(
            [sys.executable, "-c", code, *args],
            stdout=subprocess.PIPE,
            stderr=err,
            text=True,
            env=env,
            cwd=tree,
        )
        assert proc.stdout is not None
        out = proc.stdout.read()
        _, status, usage = os.wait4(proc.pid, 0)
        err.seek(0)
        if os.waitstatus_to_exitcode(status) != 0:
            last = (err.read().strip().splitlines() or ["?"])[-1]
            return {"error": last}, usage.ru_maxrss / 1024
    return json.loads(out), usage.ru_maxrss / 1024


def import_once(tree: Path, csv_path: Path) -> tuple[dict, float]:
    with tempfile.TemporaryDirectory() as tmp:
        return child(CHILD, [f"sqlite:///{tmp}/bench.db", str(csv_path)], tree)


def compare_imports(trees: dict[str, Path], csv_path: Path, runs: int) -> None:
    rates: dict[str, list[float]] = {name: [] for name in trees}
    peaks: dict[str, list[float]] = {name: [] for name in trees}
    for _ in range(runs):  # interleaved, so that load changes hit both alike
        for name, tree in trees.items():
            data, peak = import_once(tree, csv_path)
            rates[name].append(data["rows"] / data["seconds"])
            peaks[name].append(peak)
    print(f"SQLite import of {csv_path.name}, {runs} runs each, interleaved:")
    for name in trees:
        print(
            f"  {name:<9} median {statistics.median(rates[name]):>9,.0f} rows/s  "
            f"(runs {', '.join(f'{r:,.0f}' for r in rates[name])})  "
            f"peak {max(peaks[name]):.0f} MB"
        )
    if len(trees) == 2:
        ratio = statistics.median(rates["this"]) / statistics.median(rates["baseline"])
        print(f"  ratio this/baseline: {ratio:.3f}")


def compare_readers(csv_path: Path, runs: int) -> None:
    times: dict[str, list[float]] = {"csv.reader": [], "RowReader": []}
    for _ in range(runs):
        for mode in times:
            data, _ = child(READ_CHILD, [mode, str(csv_path)], TREE)
            times[mode].append(data["seconds"])
    base = statistics.median(times["csv.reader"])
    print(f"reading {csv_path.name} alone (no database), {runs} runs each, interleaved:")
    for mode, values in times.items():
        median = statistics.median(values)
        print(f"  {mode:<11} median {median * 1000:7.0f} ms  ratio {median / base:.2f}")


def huge_line(trees: dict[str, Path], megabytes: int) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "huge.csv"
        with open(path, "w", encoding="utf-8", newline="") as out:
            out.write("email,name\nbefore@example.org,Before\nhuge@example.org,")
            block = "x" * (1 << 20)
            for _ in range(megabytes):
                out.write(block)
            out.write("\nafter@example.org,After\n")
        size = path.stat().st_size / 1e6
        print(f"a {size:,.0f} MB file with one {megabytes} MB line (target: peak < {PEAK_MB} MB):")
        for name, tree in trees.items():
            start = time.perf_counter()
            data, peak = import_once(tree, path)
            took = time.perf_counter() - start
            if "error" in data:
                outcome = f"failed: {data['error'][:90]}"
            else:
                outcome = f"added {data['added']}, rejected {data['invalid']}"
            verdict = "PASS" if peak < PEAK_MB and "error" not in data else "FAIL"
            print(f"  {name:<9} peak {peak:6.0f} MB  {took:5.1f} s  {outcome}  {verdict}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=200_000)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--baseline", type=Path, help="a checkout to compare with (e.g. main)")
    parser.add_argument("--huge-mb", type=int, default=300)
    parser.add_argument("--huge-baseline", action="store_true", help="the huge line on it too")
    args = parser.parse_args()
    CACHE.mkdir(exist_ok=True)
    csv_path = CACHE / f"import-{args.rows}.csv"
    if not csv_path.exists():
        generate(csv_path, args.rows)
    trees = {"this": TREE}
    if args.baseline:
        trees["baseline"] = args.baseline.resolve()
    compare_imports(trees, csv_path, args.runs)
    compare_readers(csv_path, max(args.runs, 5))
    if args.huge_mb:
        huge_line(trees if args.huge_baseline else {"this": TREE}, args.huge_mb)
    print(f"machine load while measuring: {os.getloadavg()[0]:.1f} (1-minute average, 2 cores)")


if __name__ == "__main__":
    main()
