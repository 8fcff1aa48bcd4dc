"""SendGrid request building, CPU only: this tree against another version, side by side.

Per 1,000-recipient batch (the sample issue, a third without a name), in one process
per tree and round, rounds alternating between the trees so both see the same load:

(a) general path: ``payload_json(template.messages(rows, headers=False))`` (what
    ``send_batch`` posts);
(b) row path: ``rows_json`` straight from the claimed rows, as the engine's
    ``send_rows`` builds it: in a tree with ``claims.ClaimedRow`` the driver's plain row
    tuples are made ``ClaimedRow`` first (as ``claims._claim`` does) and that is timed too;
    in an older tree the plain tuples are used as they are.

No network and no database: the request body is the whole cost measured. Both trees
must build the same bytes; the script checks that (b) equals (a) in each.

Run: python benchmarks/bench_sendgrid_json.py --baseline DIR [--rounds 5] [--loops 200]
(DIR: a source tree of another version, e.g. ``git archive main | tar -x -C /tmp/base``).
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

REPO = Path(__file__).resolve().parent.parent
BATCH = 1000


def child(loops: int) -> None:
    from newsletter.delivery import claims
    from newsletter.delivery.backends.sendgrid import SendGridBackend, rows_json
    from tests.delivery_helpers import make_template

    template = make_template(Path(tempfile.mkdtemp()) / "briefing", send_id=1, list_id=1)
    backend = SendGridBackend("SG.bench", "http://127.0.0.1:9")
    content = backend.content_for(template)
    plain = [(i, f"user{i}@example.com", f"Reader {i}" if i % 3 else None, i)
             for i in range(1, BATCH + 1)]
    row_type = getattr(claims, "ClaimedRow", None)
    new = tuple.__new__

    def claimed() -> list:
        return plain if row_type is None else [new(row_type, row) for row in plain]

    def general() -> str:
        return backend.payload_json(template.messages(claimed(), headers=False))

    def rows() -> str | None:
        return rows_json(content, template, claimed())

    assert rows() == general(), "the row path must build the same bytes"
    timings = {}
    for name, work in (("general", general), ("rows", rows)):
        samples = []
        for _ in range(loops):
            started = time.perf_counter()
            work()
            samples.append(time.perf_counter() - started)
        timings[name] = statistics.median(samples) * 1e3
        timings[name + " fastest"] = min(samples) * 1e3
    print(json.dumps(timings))


def run(tree: Path, loops: int) -> dict[str, float]:
    env = {**os.environ, "PYTHONPATH": str(tree)}
    out = subprocess.run([sys.executable, __file__, "--child", "--loops", str(loops)],
                         cwd=tree, env=env, capture_output=True, text=True, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--baseline", type=Path, help="another version's source tree")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--loops", type=int, default=200, help="batches timed per round")
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(args.loops)
        return
    trees = {"this tree": REPO}
    if args.baseline:
        trees["baseline"] = args.baseline.resolve()
    results: dict[str, list[dict[str, float]]] = {name: [] for name in trees}
    for _ in range(args.rounds):
        for name, tree in trees.items():  # interleaved: both see the same machine load
            results[name].append(run(tree, args.loops))
    print(f"{BATCH:,}-recipient SendGrid request body, ms per batch ({args.loops} batches a "
          f"round, median of {args.rounds} rounds); load average {os.getloadavg()[0]:.1f}")
    keys = ("general", "general fastest", "rows", "rows fastest")
    labels = ("(a) median", "(a) fastest", "(b) median", "(b) fastest")
    print(f"{'':12}" + "".join(f"{label:>14}" for label in labels))
    medians = {}
    for name, rounds in results.items():
        medians[name] = {k: statistics.median(r[k] for r in rounds) for k in keys}
        print(f"{name:12}" + "".join(f"{medians[name][k]:>14.3f}" for k in keys))
    if args.baseline:
        ours, base = medians["this tree"], medians["baseline"]
        print(f"{'ratio':12}" + "".join(f"{ours[k] / base[k]:>14.0%}" for k in keys)
              + "   (this tree / baseline)")


if __name__ == "__main__":
    main()
