"""Everyday commands as a user runs them, start-up included, against their import floors.

A demo project (``newsletter demo``: a list, subscribers, one send through the outbox) is
made in a temporary folder; then each command below is run ``--runs`` times in fresh
processes, interleaved round by round with the two floors, so that every figure sees the
same machine load:

- ``python -c 'import click, sqlalchemy'``: the unavoidable part of a database command;
- ``python -c 'import click, pydantic, markdown_it, jinja2, ...'``: the libraries
  ``newsletter validate`` uses (its floor).

Prints the median wall time of each, and its ratio to its floor (target: at most 1.5x for
``lists list``, ``sends list``, ``subscribers add``, ``schedule list`` and ``validate``).
Commands run through the console script next to this Python (what a virtual environment's
user runs), with this tree first on ``PYTHONPATH``. Compare another tree side by side
with ``--baseline DIR`` (e.g. ``git archive main | tar -x -C /tmp/base``).

Run: python benchmarks/bench_commands.py [--runs 10] [--baseline DIR] [--only lists]
"""

from __future__ import annotations

import argparse
import itertools
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
DB_FLOOR = "import click, sqlalchemy"
VALIDATE_FLOOR = "import click, pydantic, markdown_it, jinja2, mjml, css_inline"
TARGETS = {"lists list", "sends list", "subscribers add", "schedule list", "validate"}

# (label, arguments after `newsletter`, floor); {n} is the run number (unique addresses).
COMMANDS: list[tuple[str, list[str], str]] = [
    ("--help", ["--help"], "db"),
    ("lists list", ["lists", "list"], "db"),
    ("lists create", ["lists", "create", "bench-{n}"], "db"),
    ("sends list", ["sends", "list"], "db"),
    ("sends show", ["sends", "show", "1"], "db"),
    ("subscribers add", ["subscribers", "add", "reader-{n}@example.org", "--list", "demo"], "db"),
    ("subscribers count", ["subscribers", "count"], "db"),
    ("subscribers list", ["subscribers", "list", "--limit", "20"], "db"),
    ("schedule list", ["schedule", "list"], "db"),
    ("suppressions list", ["suppressions", "list"], "db"),
    ("db current", ["db", "current"], "db"),
    ("validate", ["validate", "issues/{issue}"], "validate"),
    ("render", ["render", "issues/{issue}", "-o", "out/bench.html"], "validate"),
]


def launcher() -> list[str]:
    script = Path(sys.executable).with_name("newsletter")
    return [str(script)] if script.exists() else [sys.executable, "-m", "newsletter"]


def run(argv: list[str], cwd: Path, tree: Path) -> float:
    env = dict(os.environ, PYTHONPATH=str(tree), NEWSLETTER_DEBUG="")
    started = time.perf_counter()
    done = subprocess.run(argv, cwd=cwd, env=env, capture_output=True, text=True)
    elapsed = time.perf_counter() - started
    if done.returncode != 0:
        raise SystemExit(f"{' '.join(argv)} failed ({done.returncode}): {done.stderr.strip()}")
    return elapsed


def make_project(tree: Path) -> tuple[Path, str]:
    folder = Path(tempfile.mkdtemp(prefix="bench-commands-")) / "demo"
    run([*launcher(), "demo", str(folder)], folder.parent, tree)
    issue = sorted(p.name for p in (folder / "issues").glob("*.md"))[0]
    return folder, issue


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--runs", type=int, default=10)
    parser.add_argument("--baseline", type=Path, help="another source tree, timed alongside")
    parser.add_argument("--only", default="", help="time only commands whose label has this")
    args = parser.parse_args()

    trees = {"this": ROOT} | ({"base": args.baseline.resolve()} if args.baseline else {})
    commands = [c for c in COMMANDS if args.only in c[0]]
    projects = {name: make_project(tree) for name, tree in trees.items()}
    floors = {"db": DB_FLOOR, "validate": VALIDATE_FLOOR}
    times: dict[tuple[str, str], list[float]] = {}
    counter = itertools.count()
    for _ in range(args.runs):
        for key, code in floors.items():
            times.setdefault(("floor", key), []).append(
                run([sys.executable, "-c", code], ROOT, ROOT))
        for (name, tree), (label, argv, _) in itertools.product(trees.items(), commands):
            folder, issue = projects[name]
            n = next(counter)
            full = [*launcher(), *(a.format(n=n, issue=issue) for a in argv)]
            times.setdefault((name, label), []).append(run(full, folder, tree))

    load = os.getloadavg()[0]
    print(f"median of {args.runs} runs, interleaved; {os.cpu_count()} cores, load {load:.1f}, "
          f"Python {sys.version.split()[0]}, launcher {launcher()[0]}")
    floor_ms = {k: statistics.median(times[("floor", k)]) * 1000 for k in floors}
    print(f"  floor db        python -c '{DB_FLOOR}'  {floor_ms['db']:7.1f} ms")
    print(f"  floor validate  python -c '{VALIDATE_FLOOR}'  {floor_ms['validate']:7.1f} ms")
    header = "".join(f"{name:>10s} {'/floor':>7s}" for name in trees)
    print(f"  {'command':20s}{header}   target")
    for label, _, floor in commands:
        cells = ""
        for name in trees:
            ms = statistics.median(times[(name, label)]) * 1000
            cells += f"{ms:8.1f}ms {ms / floor_ms[floor]:6.2f}x"
        target = "<= 1.5x" if label in TARGETS else ""
        print(f"  {label:20s}{cells}   {target}")
    for folder, _ in projects.values():
        shutil.rmtree(folder.parent, ignore_errors=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
