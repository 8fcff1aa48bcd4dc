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

``--clicks``: the sample issue with its links click-tracked (``tracking.for_send``), as
a real send to a list has it (four tracked links: a token per link and recipient).

Each phase also gives the median CPU time per batch (``process_time``), the figure to
compare when the machine is loaded.

Run: python benchmarks/bench_sendgrid_json.py --baseline DIR [--rounds 5] [--loops 200]
         [--clicks]
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


def _tracked_template():
    """The sample issue's template as a real send has it: its links click-tracked."""
    from newsletter.authoring.build import build_file
    from newsletter.authoring.project import init_project
    from newsletter.delivery.personalize import prepare
    from newsletter.delivery.tracking import for_send
    from tests.delivery_helpers import SAMPLE, send_settings

    project = Path(tempfile.mkdtemp()) / "briefing"
    init_project(project, name="Test Briefing")
    settings = send_settings(project)
    build = build_file(SAMPLE, settings, personal=True)
    tracked = for_send(settings, build.issue, build.rendered, "daily")
    return prepare(tracked.rendered, settings, send_id=1, list_id=1, list_name="daily")


def child(loops: int, clicks: bool) -> None:
    from newsletter.delivery import claims
    from newsletter.delivery.backends.sendgrid import SendGridBackend, rows_json
    from tests.delivery_helpers import make_template

    template = (_tracked_template() if clicks
                else make_template(Path(tempfile.mkdtemp()) / "briefing", send_id=1, list_id=1))
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
        samples, cpu = [], []
        for _ in range(loops):
            started, cpu_started = time.perf_counter(), time.process_time()
            work()
            samples.append(time.perf_counter() - started)
            cpu.append(time.process_time() - cpu_started)
        timings[name] = statistics.median(samples) * 1e3
        timings[name + " fastest"] = min(samples) * 1e3
        timings[name + " CPU"] = statistics.median(cpu) * 1e3
    print(json.dumps(timings))


def run(tree: Path, loops: int, clicks: bool) -> dict[str, float]:
    env = {**os.environ, "PYTHONPATH": str(tree)}
    out = subprocess.run([sys.executable, __file__, "--child", "--loops", str(loops)]
                         + (["--clicks"] if clicks else []),
                         cwd=tree, env=env, capture_output=True, text=True, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--baseline", type=Path, help="another version's source tree")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--loops", type=int, default=200, help="batches timed per round")
    parser.add_argument("--clicks", action="store_true",
                        help="the sample issue's links click-tracked, as a real send has them")
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(args.loops, args.clicks)
        return
    trees = {"this tree": REPO}
    if args.baseline:
        trees["baseline"] = args.baseline.resolve()
    results: dict[str, list[dict[str, float]]] = {name: [] for name in trees}
    for _ in range(args.rounds):
        for name, tree in trees.items():  # interleaved: both see the same machine load
            results[name].append(run(tree, args.loops, args.clicks))
    print(f"{BATCH:,}-recipient SendGrid request body, ms per batch ({args.loops} batches a "
          f"round, median of {args.rounds} rounds); load average {os.getloadavg()[0]:.1f}")
    keys = ("general", "general fastest", "general CPU", "rows", "rows fastest", "rows CPU")
    labels = ("(a) median", "(a) fastest", "(a) CPU", "(b) median", "(b) fastest", "(b) CPU")
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
