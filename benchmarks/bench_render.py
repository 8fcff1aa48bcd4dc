"""Authoring speed: the library pipeline in one process, and the CLI as a user runs it.

(a) parse + validate + render HTML + plain text, median per issue, in one process, for the
    sample issue (issues/2026-11-24.md) and the typical issue (tests/fixtures/typical-issue.md,
    about 2,000 words in 8 sections). Target: at most 5 ms.
(b) ``newsletter validate FILE`` and ``newsletter render FILE -o ...`` as whole commands,
    start-up included, median of ``--runs`` runs (default 20). Target: under 300 ms each.
    Wall time is what a user waits; CPU time (of the process and its children) is printed
    beside it because on a machine shared with other jobs the wall time mostly measures them.
    Timed twice: through the ``newsletter`` found on PATH (under pyenv that is a bash shim that
    execs the interpreter) and through the installed entry-point script itself.

Run: python benchmarks/bench_render.py [--runs 20] [--loops 200] [--baseline DIR]
"""

from __future__ import annotations

import argparse
import os
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
SAMPLE = REPO / "issues" / "2026-11-24.md"
TYPICAL = REPO / "tests" / "fixtures" / "typical-issue.md"


def _ms(seconds: float) -> str:
    return f"{seconds * 1000:8.2f} ms"


def bench_library(loops: int) -> None:
    from newsletter.authoring.build import build_text
    from newsletter.config import load_settings

    with tempfile.TemporaryDirectory() as tmp:
        from newsletter.authoring.project import init_project

        init_project(Path(tmp) / "p", samples=False)
        settings = load_settings(Path(tmp) / "p")
        print(f"(a) parse + validate + render HTML + text, one process, median of {loops}")
        for path in (SAMPLE, TYPICAL):
            if not path.exists():
                print(f"    {path.name}: missing, skipped")
                continue
            text = path.read_text(encoding="utf-8")
            first = time.perf_counter()
            result = build_text(text, str(path), settings)
            first = time.perf_counter() - first
            assert result.ok and result.rendered is not None, [f.format() for f in result.errors]
            times, cpu = [], []
            for _ in range(loops):
                start, start_cpu = time.perf_counter(), time.process_time()
                build_text(text, str(path), settings)
                cpu.append(time.process_time() - start_cpu)
                times.append(time.perf_counter() - start)
            assert result.issue is not None
            print(
                f"    {path.name:24} {result.issue.words():5d} words "
                f"{len(result.issue.sections):2d} sections {result.rendered.size / 1024:6.1f} KB"
                f"  median {_ms(statistics.median(times))} wall, "
                f"{_ms(statistics.median(cpu))} CPU, fastest {_ms(min(times)).strip()} "
                f"(first call {_ms(first).strip()})"
            )
            _stages(text, str(path), settings, loops)


def _stages(text: str, path: str, settings, loops: int) -> None:
    """Where the time goes, stage by stage (medians)."""
    from newsletter.authoring.emailhtml import finish
    from newsletter.authoring.parse import parse_text
    from newsletter.authoring.render import render_mjml
    from newsletter.authoring.text import render_text
    from newsletter.authoring.validate import validate

    parsed = parse_text(text, path)
    lines = text.split("\n")
    issue = parsed.issue
    assert issue is not None
    mjml_source = render_mjml(issue, settings)
    from mjml import mjml2html

    raw_html = mjml2html(mjml_source, fonts={}, disable_comments=True)
    stages = {
        "parse": lambda: parse_text(text, path),
        "validate": lambda: validate(parsed, lines, path, settings),
        "jinja -> mjml": lambda: render_mjml(issue, settings),
        "mjml -> html": lambda: mjml2html(mjml_source, fonts={}, disable_comments=True),
        "css inline + head order": lambda: finish(raw_html),
        "plain text": lambda: render_text(issue, settings),
    }
    parts = []
    for name, call in stages.items():
        times = []
        for _ in range(max(20, loops // 4)):
            start = time.perf_counter()
            call()
            times.append(time.perf_counter() - start)
        parts.append(f"{name} {statistics.median(times) * 1000:.2f}")
    print("        stages (ms): " + ", ".join(parts))


def _run(argv: list[str], cwd: Path, env: dict[str, str]) -> tuple[float, float]:
    """(wall seconds, CPU seconds of the process and its children)."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.perf_counter()
    proc = subprocess.run(argv, cwd=cwd, env=env, capture_output=True)
    elapsed = time.perf_counter() - start
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if proc.returncode != 0:
        raise SystemExit(f"{' '.join(argv)} failed: {proc.stderr.decode()[-500:]}")
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return elapsed, cpu


def _launchers() -> list[tuple[str, list[str]]]:
    """Every ``newsletter`` on PATH (a pyenv shim and/or the entry script), and python -c."""
    found: list[tuple[str, list[str]]] = []
    seen: set[Path] = set()
    for folder in os.environ.get("PATH", "").split(os.pathsep):
        candidate = Path(folder) / "newsletter"
        if candidate.is_file() and os.access(candidate, os.X_OK) and candidate not in seen:
            seen.add(candidate)
            kind = "pyenv shim" if "shims" in candidate.parts else "entry script"
            found.append((kind, [str(candidate)]))
    found.append(("python -c", [sys.executable, "-c", "from newsletter.cli import main; main()"]))
    return found


def bench_commands(runs: int, baseline: Path | None) -> None:
    """Median wall time per command; variants are interleaved run by run, so a busy machine
    slows them alike and the ratios stay fair."""
    clean = {k: v for k, v in os.environ.items() if not k.startswith("NEWSLETTER_")}
    variants: list[tuple[str, dict[str, str]]] = [
        ("this tree", clean),
        ("this tree, cold template cache", {**clean, "NEWSLETTER_TEMPLATE_CACHE": "0"}),
    ]
    if baseline is not None:
        variants.append((f"baseline {baseline}", {**clean, "PYTHONPATH": str(baseline)}))
    print(f"(b) whole commands as a user runs them, start-up included, median of {runs} runs")
    with tempfile.TemporaryDirectory() as tmp:
        project = Path(tmp) / "p"
        from newsletter.authoring.project import init_project

        init_project(project, samples=False)
        shutil.copyfile(SAMPLE, project / "issues" / SAMPLE.name)
        issue = f"issues/{SAMPLE.name}"
        alone = [_run([sys.executable, "-c", "pass"], project, clean) for _ in range(runs)]
        print(f"    {'python -c pass (interpreter start-up alone)':66} "
              f"{_ms(statistics.median(w for w, _ in alone))} wall "
              f"{_ms(statistics.median(c for _, c in alone))} CPU "
              f"(fastest {_ms(min(w for w, _ in alone)).strip()})")
        commands = (["validate", issue], ["render", issue, "-o", "out/x.html", "--text", "o.txt"])
        for kind, prefix in _launchers():
            for args in commands:
                times: dict[str, list[tuple[float, float]]] = {name: [] for name, _ in variants}
                for _name, env in variants:  # warm-up: page cache, template cache
                    _run(prefix + args, project, env)
                for _ in range(runs):
                    for name, env in variants:
                        times[name].append(_run(prefix + args, project, env))
                medians = {
                    name: (statistics.median(w for w, _ in values),
                           statistics.median(c for _, c in values))
                    for name, values in times.items()
                }
                for name, (wall, cpu) in medians.items():
                    shown = f"newsletter {args[0]} ({kind}; {name})"
                    verdict = "ok" if wall < 0.3 else "OVER 300 ms"
                    fastest = min(w for w, _ in times[name])
                    print(f"    {shown:66} {_ms(wall)} wall {_ms(cpu)} CPU "
                          f"(fastest {_ms(fastest).strip()})  {verdict}")
                if baseline is not None:
                    base_wall, base_cpu = medians[variants[-1][0]]
                    wall, cpu = medians["this tree"]
                    print(f"    {'':66} baseline/this = {base_wall / wall:.2f}x wall, "
                          f"{base_cpu / cpu:.2f}x CPU")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--runs", type=int, default=20, help="runs per command")
    parser.add_argument("--loops", type=int, default=200, help="in-process loops per issue")
    parser.add_argument("--skip-commands", action="store_true")
    parser.add_argument(
        "--baseline",
        type=Path,
        default=None,
        help="a source tree of another version (e.g. from `git archive REV | tar -x -C DIR`) "
        "to time side by side through PYTHONPATH",
    )
    args = parser.parse_args()
    print(f"machine: {os.cpu_count()} cores, Python {sys.version.split()[0]}, "
          f"load average {os.getloadavg()[0]:.1f}")
    bench_library(args.loops)
    if not args.skip_commands:
        bench_commands(args.runs, args.baseline)
    print(f"load average at the end {os.getloadavg()[0]:.1f}")


if __name__ == "__main__":
    main()
