"""`newsletter check` on an issue with 200 links and images against a local server.

    python benchmarks/bench_linkcheck.py                  # 3 interleaved rounds
    python benchmarks/bench_linkcheck.py --rounds 5 --latency 0.05

The issue has 180 distinct links and 20 distinct images (JPEG/PNG made with Pillow) on
one local host (tests/linkserver.py, a threaded http.server on 127.0.0.1); ``--latency``
adds a delay to every answer, as a distant site would. Each round runs, in turn:

- ``per-host 6``: the default (6 requests at a time to one host), nothing cached;
- ``per-host 1``: one request at a time, nothing cached: what concurrency buys;
- ``cached``: the default again, every answer from .newsletter/linkcheck.json.

Prints seconds per round and the medians side by side; the target is under 3 s for the
first on this machine.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from newsletter.authoring.linkcheck import CheckOptions, cache_path, check_file  # noqa: E402
from newsletter.authoring.project import init_project  # noqa: E402
from newsletter.config import load_settings  # noqa: E402
from tests.linkserver import LinkServer  # noqa: E402

IMAGES = ["wide.jpg", "wide2.jpg", "narrow.png", "tall.jpg"]


def issue_text(url: str, links: int = 180, images: int = 20) -> str:
    parts = ["---\nsubject: Two hundred links\npreheader: A benchmark\ndate: 2026-11-24\n---\n"]
    per_section = links // images
    for n in range(images):
        image = f"{url}/img/{IMAGES[n % len(IMAGES)]}?n={n}"
        parts.append(f"\n# Story: Section {n}\n![Photo {n}]({image} \"Photo: Desk\")\n\n")
        for k in range(per_section):
            parts.append(f"A [link {k}]({url}/ok?n={n * per_section + k}).\n\n")
    return "".join(parts)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--latency", type=float, default=0.0, help="seconds per answer")
    args = parser.parse_args()
    server = LinkServer(latency=args.latency)
    folder = Path(tempfile.mkdtemp()) / "bench"
    init_project(folder, samples=False)
    settings = load_settings(folder)
    path = folder / "issues" / "bench.md"
    path.write_text(issue_text(server.url), encoding="utf-8")
    runs = {"per-host 6": CheckOptions(use_cache=False), "per-host 1":
            CheckOptions(use_cache=False, per_host=1), "cached": CheckOptions()}
    times: dict[str, list[float]] = {name: [] for name in runs}
    for round_ in range(1, args.rounds + 1):
        row = []
        for name, options in runs.items():
            if name != "cached":
                cache_path(settings).unlink(missing_ok=True)
            started = time.perf_counter()
            report = check_file(settings, path, options)
            elapsed = time.perf_counter() - started
            times[name].append(elapsed)
            row.append(f"{name}: {elapsed:6.2f} s ({report.checked} URLs, "
                       f"{report.fetched} fetched, {len(report.findings)} findings)")
        print(f"round {round_}: " + " | ".join(row))
    server.close()
    medians = {name: statistics.median(values) for name, values in times.items()}
    base = medians["per-host 6"]
    print("median:  " + "   ".join(f"{n} {m:.2f} s ({m / base:.2f}x)" for n, m in medians.items()))
    print(f"200 links and images in {base:.2f} s with the defaults "
          f"({'under' if base < 3 else 'OVER'} the 3 s target)")


if __name__ == "__main__":
    main()
