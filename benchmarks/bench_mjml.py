"""The same MJML compiled by the reference JavaScript ``mjml`` and by mjml-python (MRML).

The MJML documents are what our templates produce for the sample issue and the typical issue
(about 2,000 words, 8 sections). The npm package is installed at benchmark time only, into
benchmarks/.cache/mjml-js (git-ignored), with npm; it is timed inside one node process loop
(no process start-up counted), as mjml-python is timed in this Python process. Medians per
compile are printed side by side with the ratio npm / mjml-python.

Run: python benchmarks/bench_mjml.py [--loops 100] [--mjml-version 4]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
CACHE = REPO / "benchmarks" / ".cache" / "mjml-js"
ISSUES = [REPO / "issues" / "2026-11-24.md", REPO / "tests" / "fixtures" / "typical-issue.md"]
NODE = shutil.which("node") or "/usr/bin/node"

NODE_LOOP = r"""
// node -e SCRIPT MODULE LOOPS FILE...: process.argv is [node, MODULE, LOOPS, FILE...]
const mjml2html = require(process.argv[1]);
const fs = require("fs");
const loops = parseInt(process.argv[2], 10);
const out = {};
for (const file of process.argv.slice(3)) {
  const source = fs.readFileSync(file, "utf8");
  const options = { validationLevel: "soft", keepComments: false, fonts: {} };
  let start = process.hrtime.bigint();
  const first = mjml2html(source, options);
  const firstMs = Number(process.hrtime.bigint() - start) / 1e6;
  for (let i = 0; i < 5; i++) mjml2html(source, options);
  const times = [];
  for (let i = 0; i < loops; i++) {
    start = process.hrtime.bigint();
    mjml2html(source, options);
    times.push(Number(process.hrtime.bigint() - start) / 1e6);
  }
  times.sort((a, b) => a - b);
  const mid = Math.floor(times.length / 2);
  const median = times.length % 2 ? times[mid] : (times[mid - 1] + times[mid]) / 2;
  out[file] = { median, first: firstMs, bytes: Buffer.byteLength(first.html),
                errors: first.errors.map(e => e.formattedMessage).slice(0, 3) };
}
process.stdout.write(JSON.stringify(out));
"""


def ensure_mjml_js(version: str) -> Path:
    module = CACHE / "node_modules" / "mjml"
    if not (module / "package.json").exists():
        CACHE.mkdir(parents=True, exist_ok=True)
        print(f"installing mjml@{version} with npm into {CACHE} ...", flush=True)
        subprocess.run(
            ["npm", "install", "--no-audit", "--no-fund", "--silent", f"mjml@{version}"],
            cwd=CACHE,
            check=True,
        )
    return module


def mjml_sources() -> dict[Path, str]:
    from newsletter.config import Settings
    from newsletter.parse import parse_text
    from newsletter.render import render_mjml

    sources = {}
    for path in ISSUES:
        parsed = parse_text(path.read_text(encoding="utf-8"), str(path))
        assert parsed.issue is not None
        sources[path] = render_mjml(parsed.issue, Settings())
    return sources


def time_python(source: str, loops: int) -> tuple[list[float], float, int]:
    from mjml import mjml2html

    start = time.perf_counter()
    html = mjml2html(source, fonts={}, disable_comments=True)
    first = (time.perf_counter() - start) * 1000
    times = []
    for _ in range(loops):
        start = time.perf_counter()
        mjml2html(source, fonts={}, disable_comments=True)
        times.append((time.perf_counter() - start) * 1000)
    return times, first, len(html.encode())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--loops", type=int, default=100)
    parser.add_argument("--mjml-version", default="4")
    args = parser.parse_args()
    module = ensure_mjml_js(args.mjml_version)
    js_version = json.loads((module / "package.json").read_text())["version"]
    node_version = subprocess.run([NODE, "--version"], capture_output=True, text=True).stdout
    from importlib.metadata import version

    print(f"machine: {os.cpu_count()} cores, load average {os.getloadavg()[0]:.1f}; "
          f"mjml (npm) {js_version} on node {node_version.strip()}; "
          f"mjml-python {version('mjml-python')} on Python {sys.version.split()[0]}")
    sources = mjml_sources()
    with tempfile.TemporaryDirectory() as tmp:
        files = {}
        for path, source in sources.items():
            target = Path(tmp) / f"{path.stem}.mjml"
            target.write_text(source, encoding="utf-8")
            files[path] = target
        # Python before and after node, so that a change in machine load affects both sides
        python_before = {p: time_python(s, args.loops) for p, s in sources.items()}
        proc = subprocess.run(
            [NODE, "-e", NODE_LOOP, str(module), str(args.loops), *map(str, files.values())],
            capture_output=True,
            text=True,
        )
        if proc.returncode != 0:
            raise SystemExit(f"the node loop failed: {proc.stderr.strip()[-800:]}")
        js = json.loads(proc.stdout)
        python_after = {p: time_python(s, args.loops) for p, s in sources.items()}
    for path, source in sources.items():
        times = python_before[path][0] + python_after[path][0]
        py_median = statistics.median(times)
        result = js[str(files[path])]
        print(f"\n{path.name}: MJML {len(source) / 1024:.1f} KB")
        print(f"    mjml (npm, node loop)   median {result['median']:8.3f} ms  "
              f"(first call {result['first']:7.2f} ms)  -> {result['bytes'] / 1024:.1f} KB")
        print(f"    mjml-python (MRML)      median {py_median:8.3f} ms  "
              f"(first call {python_before[path][1]:7.2f} ms)  "
              f"-> {python_before[path][2] / 1024:.1f} KB")
        print(f"    ratio npm / mjml-python = {result['median'] / py_median:.1f}x")
        if result["errors"]:
            print(f"    mjml (npm) validation notes: {result['errors']}")


if __name__ == "__main__":
    main()
