"""The same MJML compiled by the reference JavaScript ``mjml`` and by mjml-python (MRML).

The MJML documents are what our templates produce for the sample issue and the typical issue
(about 2,000 words, 8 sections). The npm package is installed at benchmark time only, into
benchmarks/.cache/mjml-js (git-ignored), with npm; it is timed inside one node process loop
(no process start-up counted), as mjml-python is timed in this Python process; the two
sides alternate in rounds so that a change in the machine's load hits both. Medians per
compile are printed side by side with the ratio npm / mjml-python.

Run: python benchmarks/bench_mjml.py [--loops 100] [--rounds 5] [--mjml-version 4]
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
// node -e SCRIPT MODULE: compiles on request. Each stdin line "LOOPS FILE" is answered with
// one JSON line: the time of each of LOOPS compiles of FILE (after its first compile), ms.
const mjml2html = require(process.argv[1]);
const fs = require("fs");
const readline = require("readline");
const sources = {};
const options = { validationLevel: "soft", keepComments: false, fonts: {} };
readline.createInterface({ input: process.stdin }).on("line", (line) => {
  const space = line.indexOf(" ");
  const loops = parseInt(line.slice(0, space), 10);
  const file = line.slice(space + 1);
  const reply = {};
  if (!(file in sources)) {
    sources[file] = fs.readFileSync(file, "utf8");
    const start = process.hrtime.bigint();
    const first = mjml2html(sources[file], options);
    reply.first = Number(process.hrtime.bigint() - start) / 1e6;
    reply.bytes = Buffer.byteLength(first.html);
    reply.errors = first.errors.map((e) => e.formattedMessage).slice(0, 3);
    for (let i = 0; i < 5; i++) mjml2html(sources[file], options);  // warm-up
  }
  reply.times = [];
  for (let i = 0; i < loops; i++) {
    const start = process.hrtime.bigint();
    mjml2html(sources[file], options);
    reply.times.push(Number(process.hrtime.bigint() - start) / 1e6);
  }
  process.stdout.write(JSON.stringify(reply) + "\n");
});
"""


class NodeCompiler:
    """The JavaScript mjml in one long-lived node process, asked for rounds of compiles."""

    def __init__(self, module: Path) -> None:
        self.proc = subprocess.Popen(
            [NODE, "-e", NODE_LOOP, str(module)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )

    def run(self, file: Path, loops: int) -> dict:
        assert self.proc.stdin is not None and self.proc.stdout is not None
        self.proc.stdin.write(f"{loops} {file}\n")
        self.proc.stdin.flush()
        line = self.proc.stdout.readline()
        if not line:
            error = self.proc.stderr.read() if self.proc.stderr else ""
            raise SystemExit(f"the node loop failed: {error.strip()[-800:]}")
        return json.loads(line)

    def close(self) -> None:
        if self.proc.stdin:
            self.proc.stdin.close()
        self.proc.wait(timeout=30)


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
    from newsletter.authoring.parse import parse_text
    from newsletter.authoring.render import render_mjml
    from newsletter.config import Settings

    sources = {}
    for path in ISSUES:
        parsed = parse_text(path.read_text(encoding="utf-8"), str(path))
        assert parsed.issue is not None
        sources[path] = render_mjml(parsed.issue, Settings())
    return sources


def time_python(source: str, loops: int) -> list[float]:
    from mjml import mjml2html

    times = []
    for _ in range(loops):
        start = time.perf_counter()
        mjml2html(source, fonts={}, disable_comments=True)
        times.append((time.perf_counter() - start) * 1000)
    return times


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--loops", type=int, default=100, help="compiles per side and issue")
    parser.add_argument("--rounds", type=int, default=5, help="alternations of the two sides")
    parser.add_argument("--mjml-version", default="4")
    args = parser.parse_args()
    module = ensure_mjml_js(args.mjml_version)
    js_version = json.loads((module / "package.json").read_text())["version"]
    node_version = subprocess.run([NODE, "--version"], capture_output=True, text=True).stdout
    from importlib.metadata import version

    from mjml import mjml2html

    print(f"machine: {os.cpu_count()} cores, load average {os.getloadavg()[0]:.1f}; "
          f"mjml (npm) {js_version} on node {node_version.strip()}; "
          f"mjml-python {version('mjml-python')} on Python {sys.version.split()[0]}")
    sources = mjml_sources()
    node = NodeCompiler(module)
    try:
        with tempfile.TemporaryDirectory() as tmp:
            for path, source in sources.items():
                file = Path(tmp) / f"{path.stem}.mjml"
                file.write_text(source, encoding="utf-8")
                start = time.perf_counter()
                py_html = mjml2html(source, fonts={}, disable_comments=True)
                py_first = (time.perf_counter() - start) * 1000
                time_python(source, 5)  # warm-up
                js_first = node.run(file, 0)
                py_times: list[float] = []
                js_times: list[float] = []
                per_round = max(1, args.loops // args.rounds)
                for _ in range(args.rounds):  # alternate, so that load changes hit both
                    py_times += time_python(source, per_round)
                    js_times += node.run(file, per_round)["times"]
                py_median = statistics.median(py_times)
                js_median = statistics.median(js_times)
                print(f"\n{path.name}: MJML {len(source) / 1024:.1f} KB")
                print(f"    mjml (npm, node loop)   median {js_median:8.3f} ms  "
                      f"(first call {js_first['first']:7.2f} ms)  "
                      f"-> {js_first['bytes'] / 1024:.1f} KB")
                print(f"    mjml-python (MRML)      median {py_median:8.3f} ms  "
                      f"(first call {py_first:7.2f} ms)  "
                      f"-> {len(py_html.encode()) / 1024:.1f} KB")
                print(f"    ratio npm / mjml-python = {js_median / py_median:.1f}x")
                if js_first["errors"]:
                    print(f"    mjml (npm) validation notes: {js_first['errors']}")
    finally:
        node.close()


if __name__ == "__main__":
    main()
