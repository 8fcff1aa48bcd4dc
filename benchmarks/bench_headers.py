"""Personalising a message with header-safe names: what the cleaning and folding cost.

Per message, ``template.messages(batch)`` then ``as_bytes()`` of each (what the outbox and
SMTP backends do), for batches of 1,000 recipients whose names are:

- ``ascii``: "Reader N" (the usual case: the fast paths);
- ``accented``: "Zoë Ünïcode N" (encoded-words);
- ``separator``: "Ann\\u2028Lee N" (cleaned at build time; older code raised);
- ``long``: 3,000 characters without a space (cut to 200 and folded; older code wrote
  a 3,001-octet line);

with the sample issue's plain subject and with ``{{name}}`` in the subject. Also the
cost per imported row of making a chunk's names header-safe (``bulk.header_safe``).

With ``--baseline DIR`` (another version's source tree, e.g.
``git archive main | tar -x -C /tmp/base``) the same cases run there too, in alternating
rounds, each in a fresh process; a case the baseline cannot build prints "error".

Run: python benchmarks/bench_headers.py [--rounds 5] [--baseline DIR]
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

HERE = Path(__file__).resolve().parent.parent
NAMES = {
    "ascii": lambda n: f"Reader {n}",
    "accented": lambda n: f"Zoë Ünïcode {n}",
    "separator": lambda n: f"Ann\u2028Lee {n}",
    "long": lambda n: "x" * 3000,
}
BATCH = 1000


def _child(loops: int) -> dict[str, float | None]:
    """Microseconds per message for each case, in this process's source tree."""
    from newsletter.delivery.personalize import Recipient  # noqa: PLC0415
    from tests.delivery_helpers import SAMPLE, make_template  # noqa: PLC0415

    folder = Path(tempfile.mkdtemp())
    personal = folder / "personal.md"
    personal.write_text(SAMPLE.read_text("utf-8").replace(
        "subject: ", "subject: Hello {{name|Reader}} - ", 1), "utf-8")
    templates = {"plain": make_template(folder / "a"),
                 "personal": make_template(folder / "b", issue=personal)}
    out: dict[str, float | None] = {}
    for subject, template in templates.items():
        for kind, make in NAMES.items():
            batch = [Recipient(n, f"r{n}@example.com", make(n)) for n in range(1, BATCH + 1)]
            try:
                best = []
                for _ in range(loops):
                    started = time.perf_counter()
                    for message in template.messages(batch):
                        message.as_bytes()
                    best.append(time.perf_counter() - started)
                out[f"{subject}/{kind}"] = min(best) / BATCH * 1e6
            except Exception:  # a name main's code cannot take at all: shown as "fails"
                out[f"{subject}/{kind}"] = None
    try:
        from newsletter.audience.bulk import header_safe  # noqa: PLC0415
    except ImportError:
        return out
    rows = [(n, f"r{n}@example.com", f"r{n}@example.com", f"Reader {n}", "{}", "active",
             "import", "subscribed") for n in range(5000)]
    started = time.perf_counter()
    for _ in range(loops):
        header_safe(rows)
    out["import/clean-rows"] = (time.perf_counter() - started) / loops / len(rows) * 1e6
    return out


def _run(tree: Path, loops: int) -> dict[str, float | None]:
    env = {**os.environ, "PYTHONPATH": str(tree)}
    # the tree's newsletter and tests (cwd and PYTHONPATH), this script by its path
    code = ("import importlib.util, json; "
            f"spec = importlib.util.spec_from_file_location('bench', {__file__!r}); "
            "bench = importlib.util.module_from_spec(spec); spec.loader.exec_module(bench); "
            f"print(json.dumps(bench._child({loops})))")
    done = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True,
                          text=True, check=True, cwd=tree)
    return json.loads(done.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--loops", type=int, default=5)
    parser.add_argument("--baseline", type=Path, default=None)
    args = parser.parse_args()
    trees = {"this tree": HERE}
    if args.baseline is not None:
        trees = {"baseline": args.baseline.resolve(), **trees}
    figures: dict[str, dict[str, list[float | None]]] = {name: {} for name in trees}
    for _ in range(args.rounds):  # alternate the trees, so both see the same load
        for name, tree in trees.items():
            for case, value in _run(tree, args.loops).items():
                figures[name].setdefault(case, []).append(value)
    print(f"load average {os.getloadavg()[0]:.1f}; medians of {args.rounds} rounds, "
          f"the fastest of {args.loops} loops each, microseconds per message (row)")
    cases = list(figures["this tree"])
    print(f"{'case':24}" + "".join(f"{name:>12}" for name in trees)
          + ("       ratio" if len(trees) == 2 else ""))
    for case in cases:
        cells = []
        for name in trees:
            values = figures[name].get(case) or [None]
            cells.append(None if None in values else statistics.median(values))
        line = f"{case:24}" + "".join(f"{'error' if c is None else f'{c:.2f}':>12}"
                                      for c in cells)
        if len(cells) == 2 and None not in cells:
            line += f"{cells[1] / cells[0]:>12.2f}"
        print(line)


if __name__ == "__main__":
    main()
