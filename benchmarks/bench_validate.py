"""`newsletter validate` on the typical issue: this tree against another, side by side.

    python benchmarks/bench_validate.py [--base /tmp/ed-base] [--runs 7]

Each run is a fresh process (what an editor waits for), alternating between the trees so
that machine noise falls on both; the same issue file (this tree's
tests/fixtures/typical-issue.md) is checked by both. Prints the median wall time of each,
and their ratio, plus the in-process time of build_text (parse + rules) per tree.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent.parent
ISSUE = HERE / "tests" / "fixtures" / "typical-issue.md"
INPROC = (
    "import sys,time,statistics;from pathlib import Path;"
    "from newsletter.config import Settings;from newsletter.authoring.build import build_text;"
    "t=Path(sys.argv[1]).read_text();s=Settings(project_dir=Path(sys.argv[2]));"
    "build_text(t,'i.md',s,render_html=False);ts=[]\n"
    "for _ in range(50):\n a=time.perf_counter();build_text(t,'i.md',s,render_html=False);"
    "ts.append(time.perf_counter()-a)\n"
    "print(statistics.median(ts))"
)


def run(tree: Path, project: Path) -> float:
    env = {**os.environ, "PYTHONPATH": str(tree)}
    start = time.perf_counter()
    subprocess.run(
        [sys.executable, "-m", "newsletter", "--project", str(project), "validate", str(ISSUE)],
        env=env, cwd=tree, capture_output=True, check=False,
    )
    return time.perf_counter() - start


def inproc(tree: Path, project: Path) -> float:
    env = {**os.environ, "PYTHONPATH": str(tree)}
    out = subprocess.run([sys.executable, "-c", INPROC, str(ISSUE), str(project)], env=env,
                         cwd=tree, capture_output=True, text=True, check=True)
    return float(out.stdout.strip())


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--base", type=Path, default=Path("/tmp/ed-base"))
    parser.add_argument("--runs", type=int, default=7)
    args = parser.parse_args()
    trees = {"base": args.base.resolve(), "this": HERE}
    times: dict[str, list[float]] = {name: [] for name in trees}
    with tempfile.TemporaryDirectory() as project:  # no newsletter.toml, no database
        for tree in trees.values():
            run(tree, Path(project))  # warm the file cache and bytecode
        for _ in range(args.runs):
            for name, tree in trees.items():
                times[name].append(run(tree, Path(project)))
        per_call = {name: inproc(tree, Path(project)) for name, tree in trees.items()}
    base, this = (statistics.median(times[n]) for n in ("base", "this"))
    print(f"validate {ISSUE.name}, {args.runs} interleaved runs each (median):")
    print(f"  {'':6} {'process':>10} {'build_text':>12}")
    for name, value in (("base", base), ("this", this)):
        print(f"  {name:6} {value * 1000:8.0f} ms {per_call[name] * 1000:9.2f} ms")
    print(f"  ratio  {this / base:9.2f}x {per_call['this'] / per_call['base']:10.2f}x")


if __name__ == "__main__":
    main()
