"""Everyday commands as a user runs them, start-up included, against their import floors.

A demo project (``newsletter demo``: a list, subscribers, one send through the outbox) is
made in a temporary folder; then each command below is run ``--runs`` times in fresh
processes, interleaved round by round with the two floors, so that every figure sees the
same machine load:

- ``python -c 'import click, sqlalchemy'``: the unavoidable part of a database command;
- ``python -c 'import click, markdown_it, jinja2, ...; from pydantic import BaseModel'``:
  the libraries ``newsletter validate`` uses (its floor). Its issue model is made of
  pydantic models, so the floor imports ``BaseModel``: a bare ``import pydantic`` loads
  only pydantic's lazy top module (about 1 ms), not the library validate runs on.

Prints the median wall time and CPU time (user + system, of the child process: steadier
on a loaded machine) of each, and their ratios to the floor's (target: at most 1.5x for
``lists list``, ``sends list``, ``subscribers add``, ``schedule list`` and ``validate``).
Commands run through the console script next to this Python (what a virtual environment's
user runs), with this tree first on ``PYTHONPATH``. Each tree's modules are compiled to
bytecode first (``compileall``), as an installed package's are: with
``PYTHONDONTWRITEBYTECODE=1`` in the environment and no ``__pycache__``, every run would
compile our modules from source (about 60 ms), while the libraries' are compiled. Compare another tree side by side
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
# what `validate` uses: with a database, its recent-link rule reads the links already sent
VALIDATE_FLOOR = ("import click, markdown_it, jinja2, mjml, css_inline, sqlalchemy; "
                  "from pydantic import BaseModel")
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


def run(argv: list[str], cwd: Path, tree: Path) -> tuple[float, float]:
    """(wall, CPU) seconds of one run of ``argv``."""
    env = dict(os.environ, PYTHONPATH=str(tree), NEWSLETTER_DEBUG="")
    started = time.perf_counter()
    child = subprocess.Popen(argv, cwd=cwd, env=env, stdout=subprocess.DEVNULL,
                             stderr=subprocess.PIPE)
    _, status, usage = os.wait4(child.pid, 0)
    elapsed = time.perf_counter() - started
    child.returncode = os.waitstatus_to_exitcode(status)
    error = child.stderr.read().decode() if child.stderr else ""
    if child.returncode != 0:
        raise SystemExit(f"{' '.join(argv)} failed ({child.returncode}): {error.strip()}")
    return elapsed, usage.ru_utime + usage.ru_stime


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
    for tree in trees.values():  # as installed: bytecode compiled (pip does it)
        subprocess.run([sys.executable, "-m", "compileall", "-q", str(tree / "newsletter")],
                       check=True)
    commands = [c for c in COMMANDS if args.only in c[0]]
    projects = {name: make_project(tree) for name, tree in trees.items()}
    floors = {"db": DB_FLOOR, "validate": VALIDATE_FLOOR}
    times: dict[tuple[str, str], list[tuple[float, float]]] = {}
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
    def medians(key: tuple[str, str]) -> tuple[float, float]:
        return tuple(statistics.median(t[i] for t in times[key]) * 1000 for i in (0, 1))

    floor_ms = {k: medians(("floor", k)) for k in floors}
    for key, code in floors.items():
        wall, cpu = floor_ms[key]
        print(f"  floor {key:9s} python -c '{code}': wall {wall:.1f} ms, CPU {cpu:.1f} ms")
    header = "".join(f"{name + ' wall':>12s} {'/floor':>6s} {'CPU':>8s} {'/floor':>6s}"
                     for name in trees)
    print(f"  {'command':18s}{header}   target")
    for label, _, floor in commands:
        cells = ""
        for name in trees:
            wall, cpu = medians((name, label))
            cells += (f"{wall:10.1f}ms {wall / floor_ms[floor][0]:5.2f}x"
                      f" {cpu:6.1f}ms {cpu / floor_ms[floor][1]:5.2f}x")
        target = "<= 1.5x" if label in TARGETS else ""
        print(f"  {label:18s}{cells}   {target}")
    for folder, _ in projects.values():
        shutil.rmtree(folder.parent, ignore_errors=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
