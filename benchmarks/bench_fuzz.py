"""Mutation fuzz of the authoring pipeline: internal errors and the slowest file.

Writes ``--count`` (default 4,000) issue files derived from the sample issues by random
mutations (tests/mutations.py: byte flips, duplicated and deleted lines, runs of Markdown
punctuation, long lines, Unicode separators, NULs, front-matter damage) and runs each
through ``build_file`` (read, parse, validate, render when valid), as ``newsletter
validate`` does. Prints the count of internal errors (any exception other than the
one-line errors a user is shown), the median and worst time per file (target: no file
over 1 s) and the slowest cases, each with its seed and index so that it can be rerun.

Run: python benchmarks/bench_fuzz.py [--count 4000] [--seed 1] [--show 5]
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
import traceback
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--count", type=int, default=4000)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--show", type=int, default=5, help="how many slowest cases to list")
    args = parser.parse_args()

    from newsletter.authoring.build import build_file
    from newsletter.authoring.project import init_project
    from newsletter.config import load_settings
    from newsletter.errors import NewsletterError
    from tests.mutations import mutants

    folder = Path(tempfile.mkdtemp(prefix="bench-fuzz-"))
    init_project(folder / "p", samples=False)
    settings = load_settings(folder / "p")
    path = folder / "p" / "issues" / "fuzz.md"
    times: list[tuple[float, float, int, str, int]] = []  # wall, CPU, index, mutations, size
    outcomes = {"valid": 0, "findings": 0, "refused": 0, "internal error": 0}
    started = time.perf_counter()
    for index, done, data in mutants(args.seed, args.count):
        path.write_bytes(data)
        begin, begin_cpu = time.perf_counter(), time.process_time()
        try:
            result = build_file(path, settings)
            outcomes["valid" if result.ok else "findings"] += 1
        except NewsletterError:
            outcomes["refused"] += 1
        except Exception:  # a bug the fuzz run counts and prints, then goes on
            outcomes["internal error"] += 1
            print(f"internal error: seed {args.seed} index {index} ({done})", file=sys.stderr)
            traceback.print_exc(limit=-3)
        times.append((time.perf_counter() - begin, time.process_time() - begin_cpu, index, done,
                      len(data)))
    total = time.perf_counter() - started
    seconds = sorted(t[0] for t in times)
    cpu = sorted(t[1] for t in times)
    print(f"mutation fuzz: {len(times):,} files, seed {args.seed}, {total:.1f} s in all, "
          f"load average {os.getloadavg()[0]:.1f}")
    print("  " + ", ".join(f"{name} {count:,}" for name, count in outcomes.items()))
    print(f"  per file: median {statistics.median(seconds) * 1000:.1f} ms, "
          f"p99 {seconds[int(len(seconds) * 0.99)] * 1000:.1f} ms, "
          f"worst {seconds[-1] * 1000:.1f} ms (target: at most 1,000 ms); "
          f"over 1 s: {sum(s > 1 for s in seconds)}")
    print(f"  CPU per file: median {statistics.median(cpu) * 1000:.1f} ms, "
          f"worst {cpu[-1] * 1000:.1f} ms; over 1 s: {sum(s > 1 for s in cpu)}")
    print(f"  internal errors: {outcomes['internal error']}")
    print("  slowest (wall, CPU):")
    for spent, spent_cpu, index, done, size in sorted(times, reverse=True)[: args.show]:
        print(f"  {spent * 1000:8.1f} ms {spent_cpu * 1000:8.1f} ms  index {index:5}  "
              f"{size:>9,} bytes  {done}")


if __name__ == "__main__":
    main()
