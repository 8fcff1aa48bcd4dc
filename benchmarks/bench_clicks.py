"""The tracked-link redirect under load: `newsletter serve` on PostgreSQL, loopback only.

    python benchmarks/bench_clicks.py                  # 3 rounds, 10,000 clicks a phase
    python benchmarks/bench_clicks.py --rounds 5 --clicks 20000 --workers 1 2
    python benchmarks/bench_clicks.py --rate 3000      # the open-loop phase's offered rate
    python benchmarks/bench_clicks.py --baseline ../main  # and another tree's serve, too
    python benchmarks/bench_clicks.py --app 20000      # and each app alone, no HTTP

A real `newsletter serve` process (uvicorn, ``--workers``) on 127.0.0.1 against a fresh
PostgreSQL database answers ``GET /c/TOKEN`` for signed tokens (random subscribers of a
10-link send). The ceiling ("bare") is a bare Starlette app under the same uvicorn
settings whose ``/c/{token}`` answers a constant 302 and records nothing. Each round runs
four phases, interleaved so that both servers see the same machine load:

(a) saturation, bare then ours: ``--clients`` (200) closed-loop keep-alive connections,
    each sending its next click as soon as the last is answered: clicks/s (the target:
    at least 2,000). Its p99 is printed too, but it is not the latency a reader sees:
    with 200 clicks always waiting, the mean latency is 200 / throughput (Little's law:
    55 ms at 3,600/s) whatever the server does.
(b) latency at load, bare then ours: the same number of connections, open loop: click i
    is due at i / ``--rate`` seconds (2,000/s in all), on connection i mod 200, and its
    latency counts from that scheduled start, so a click held back behind a slow one
    counts its wait (no coordinated omission). p50/p99/max and the achieved rate: this
    is the latency figure (the target: p99 under 50 ms at 2,000 clicks/s).
(c) zero lost: after each of our phases the database must hold exactly one row per
    answered click (waited for up to 30 s: clicks are written after the answer).

With ``--app N``, (d): each app alone, N clicks through its ASGI callable in a loop (no
HTTP, no sockets, in a process of its own, its click writer included): CPU µs per click,
the part of the cost that is the app's rather than uvicorn's, h11's and the kernel's.
With ``--workers 1 2`` one server per worker count, side by side (the targets are
judged on the first). With ``--baseline DIR`` another server, `newsletter serve` of the
code in DIR on the same database, takes its turn after ours in every phase (its lost
clicks are checked too). Medians over rounds of each figure, side by side, with the
server's CPU time per click (user + system, its workers included: less load-bound than
wall time, though it grows as throughput falls: fewer requests per event-loop turn). The load
generator (benchmarks/loadgen.py: one asyncio loop on raw streams) shares the two cores
with the servers and PostgreSQL, and with whatever else runs: the figures are a floor.
"""

from __future__ import annotations

import argparse
import os
import random
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import sqlalchemy as sa

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from benchmarks import loadgen  # noqa: E402
from newsletter.audience.lists import create_list  # noqa: E402
from newsletter.authoring.project import init_project  # noqa: E402
from newsletter.config import load_settings  # noqa: E402
from newsletter.db.connect import open_store  # noqa: E402
from newsletter.db.tables import clicks  # noqa: E402
from newsletter.delivery import ledger, tracking  # noqa: E402

LINKS = 10
BARE = """
from starlette.applications import Starlette
from starlette.responses import PlainTextResponse, Response
from starlette.routing import Route
from newsletter.web.server import listening_socket, server_config
import uvicorn

async def click(request):
    return Response(status_code=302, headers={"Location": "https://example.org/story"})

async def healthz(request):
    return PlainTextResponse("ok\\n")

app = Starlette(routes=[Route("/c/{token}", click, methods=["GET", "HEAD"]),
                        Route("/healthz", healthz)])
sock = listening_socket("127.0.0.1", 0)
print(f"http://127.0.0.1:{sock.getsockname()[1]}", flush=True)
uvicorn.Server(server_config(app)).run(sockets=[sock])
"""

# (d) the app alone: the ASGI app called in a loop, no HTTP, no sockets: CPU per request,
# its click writer's thread included (the clicks are written before the clock stops)
APP = """
import asyncio, sys, time
from pathlib import Path
project, paths, bare = sys.argv[1], Path(sys.argv[2]).read_text().split(), sys.argv[3] == "bare"
if bare:
    from starlette.applications import Starlette
    from starlette.responses import Response
    from starlette.routing import Route
    async def click(request):
        return Response(status_code=302, headers={"Location": "https://example.org/story"})
    app = Starlette(routes=[Route("/c/{token}", click, methods=["GET", "HEAD"])])
else:
    from newsletter.config import load_settings
    from newsletter.web import create_app
    app = create_app(load_settings(project), preview=False, public=True)

async def receive():
    return {"type": "http.request", "body": b"", "more_body": False}

async def drive(paths):
    codes = {}
    async def send(message):
        if message["type"] == "http.response.start":
            codes[message["status"]] = codes.get(message["status"], 0) + 1
    for path in paths:
        await app({"type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1",
                   "method": "GET", "scheme": "http", "path": path,
                   "raw_path": path.encode(), "query_string": b"", "root_path": "",
                   "headers": [(b"host", b"127.0.0.1")], "client": ("127.0.0.1", 1),
                   "server": ("127.0.0.1", 80), "state": {}}, receive, send)
    return codes

asyncio.run(drive(paths[:200]))  # warm: links cached, writer started
started = time.process_time()
codes = asyncio.run(drive(paths[200:]))
if not bare:
    app.state.parts[0].state.click_writer.flush()
print((time.process_time() - started) / (len(paths) - 200) * 1e6, codes.get(302, 0) + 200)
if not bare:
    app.state.parts[0].state.click_writer.close()
"""


def app_only(project: Path, paths: list[bytes], folder: Path, tree: Path | None
             ) -> tuple[float, int]:
    """CPU µs per request of ``tree``'s app (None: the bare one), and the 302s it gave."""
    listing = folder / "paths.txt"
    listing.write_text("\n".join(p.split(b" ")[1].decode() for p in paths))
    done = subprocess.run([sys.executable, "-c", APP, str(project), str(listing),
                           "bare" if tree is None else "ours"], capture_output=True,
                          text=True, check=True,
                          env={**os.environ, "PYTHONPATH": str(tree or REPO)})
    cpu, redirected = done.stdout.split()
    return float(cpu), int(redirected)


def stored(engine: sa.Engine, expected: int) -> int:
    deadline = time.monotonic() + 30
    count = 0
    while time.monotonic() < deadline:
        with engine.connect() as conn:
            count = conn.execute(sa.select(sa.func.count()).select_from(clicks)).scalar_one()
        if count >= expected:
            break
        time.sleep(0.2)
    return count


def prepare(folder: Path, url: str, count: int) -> tuple[sa.Engine, list[bytes]]:
    """A project on ``url`` with one 10-link send; ``count`` click requests of it."""
    init_project(folder, name="Bench Briefing")
    config = folder / "newsletter.toml"
    config.write_text(f'database_url = "{url}"\n' + config.read_text("utf-8"),
                      encoding="utf-8")
    settings = load_settings(folder)
    engine = open_store(settings)
    list_id = create_list(engine, "daily").id
    send_id = ledger.create_send(engine, kind="real", issue_path="bench.md",
                                 issue_slug="bench", subject="Bench", list_id=list_id,
                                 list_name="daily", backend="outbox", html="", text="")
    tracking.store(engine, send_id, [tracking.TrackedLink(i, f"https://example.org/{i}",
                                                          "Story", f"Story {i}")
                                     for i in range(LINKS + 1)])
    signer = tracking.ClickSigner(settings)
    rng = random.Random(7)
    readers = signer.readers(send_id, [rng.randint(1, 10**6) for _ in range(count)])
    return engine, [loadgen.get(f"/c/{tracking.click_url('', reader, rng.randint(1, LINKS))[3:]}")
                    for reader in readers]


def phase(server: loadgen.Server, run, *args) -> tuple[loadgen.Result, float]:
    """One phase against ``server``: the load's result and the server's CPU per click."""
    cpu = server.cpu
    result = run(server.port, *args)
    return result, (server.cpu - cpu) / max(1, result.answered)


class Rounds:
    """Each phase's figures, round by round."""

    def __init__(self) -> None:
        self.rows: dict[str, list[dict]] = {}

    def add(self, name: str, result: loadgen.Result, cpu: float, lost: int | None) -> None:
        self.rows.setdefault(name, []).append(
            {"rate": result.rate, "p50": result.ms(0.5), "p99": result.ms(0.99),
             "max": result.ms(1.0), "cpu": cpu * 1e6, "lost": lost,
             "statuses": result.statuses})

    def add_app(self, name: str, cpu: float, lost: int | None) -> None:
        nan = float("nan")
        self.rows.setdefault(name, []).append(
            {"rate": nan, "p50": nan, "p99": nan, "max": nan, "cpu": cpu, "lost": lost,
             "statuses": {302: 1}})

    def line(self, name: str) -> str:
        rows = self.rows[name]
        med = {k: statistics.median(r[k] for r in rows)
               for k in ("rate", "p50", "p99", "max", "cpu")}
        lost = "-" if rows[0]["lost"] is None else str(sum(r["lost"] for r in rows))
        if med["rate"] != med["rate"]:  # the app alone: CPU only
            return f"{name:34}  {'-':>9}  {'-':>7}  {'-':>7}  {'-':>7}  {med['cpu']:>7.1f}  {lost:>5}"
        return (f"{name:34}  {med['rate']:>9,.0f}  {med['p50']:>7.1f}  {med['p99']:>7.1f}  "
                f"{med['max']:>7.1f}  {med['cpu']:>7.0f}  {lost:>5}")

    def median(self, name: str, key: str) -> float:
        return statistics.median(r[key] for r in self.rows[name])

    def failed(self) -> bool:
        return any(r["lost"] or set(r["statuses"]) != {302}
                   for rows in self.rows.values() for r in rows if r["lost"] is not None)


def ours(args: argparse.Namespace, workers: int) -> str:
    return "ours /c/" + (f" {workers} worker(s)" if len(args.workers) > 1 else "")


def run_rounds(args: argparse.Namespace, folder: Path, url: str, rounds: Rounds) -> None:
    engine, requests = prepare(folder, url, (args.clicks * 2 + args.app) * args.rounds
                               * (len(args.workers) + 2) + 1200)  # enough for each server
    servers = {"bare 302": loadgen.Server(["-c", BARE])}
    for workers in args.workers:
        servers[ours(args, workers)] = loadgen.Server.serve(folder, workers)
    if args.baseline:
        servers["baseline /c/"] = loadgen.Server.serve(folder, args.workers[0], args.baseline)
    bare_requests = [loadgen.get("/c/x")] * args.clicks
    loads = []
    try:
        for name, server in servers.items():  # warm: links cached
            loadgen.closed_loop(server.port, bare_requests[:400] if name == "bare 302"
                                else [requests.pop() for _ in range(400)], 20)
        expected = stored(engine, 400 * (len(servers) - 1))
        for n in range(args.rounds):
            for label, run, extra in (("saturation", loadgen.closed_loop, (args.clients,)),
                                      ("open loop", loadgen.open_loop,
                                       (args.clients, args.rate))):
                for name, server in servers.items():
                    if name == "bare 302":
                        rounds.add(f"{name}, {label}", *phase(server, run, bare_requests,
                                                              *extra), None)
                        continue
                    chunk = [requests.pop() for _ in range(args.clicks)]
                    result, cpu = phase(server, run, chunk, *extra)
                    expected += result.statuses.get(302, 0)
                    lost = expected - stored(engine, expected)
                    rounds.add(f"{name}, {label}", result, cpu, lost)
                    expected -= lost
            if args.app:
                for name in servers:
                    tree = {"bare 302": None, "baseline /c/": args.baseline}.get(name, REPO)
                    chunk = [requests.pop() for _ in range(args.app)]
                    cpu, redirected = app_only(folder, chunk, folder.parent, tree)
                    if tree is not None:
                        expected += redirected
                        lost = expected - stored(engine, expected)
                        expected -= lost
                    rounds.add_app(f"{name}, app only", cpu, None if tree is None else lost)
            loads.append(os.getloadavg()[0])
            print(f"round {n + 1}: " + "; ".join(
                f"{name} {rows[-1]['rate']:,.0f}/s p99 {rows[-1]['p99']:.1f} ms"
                if rows[-1]["rate"] == rows[-1]["rate"] else f"{name} {rows[-1]['cpu']:.1f} µs"
                for name, rows in rounds.rows.items()) + f"; load {loads[-1]:.1f}",
                flush=True)
    finally:
        for server in servers.values():
            server.stop()
        engine.dispose()
    args.loads = loads


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--clicks", type=int, default=10_000, help="clicks per phase")
    parser.add_argument("--clients", type=int, default=200, help="concurrent connections")
    parser.add_argument("--rate", type=float, default=2000.0,
                        help="offered clicks/s of the open-loop phase, in all")
    parser.add_argument("--workers", type=int, nargs="+", default=[1],
                        help="serve --workers; several: one server each, side by side")
    parser.add_argument("--app", type=int, default=0, metavar="N",
                        help="also (d): N requests through each app alone, no HTTP")
    parser.add_argument("--baseline", type=Path,
                        help="also another tree's `newsletter serve` (say, a worktree of main)")
    args = parser.parse_args()
    rounds = Rounds()
    with loadgen.scratch_database("newsletter_bench_clicks") as url, \
            tempfile.TemporaryDirectory() as tmp:
        run_rounds(args, Path(tmp) / "bench", url, rounds)
    print(f"\nGET /c/TOKEN, PostgreSQL, {args.clients} connections, medians of {args.rounds} "
          f"rounds of {args.clicks:,} clicks a phase, serve --workers {' and '.join(map(str, args.workers))}, "
          f"{os.cpu_count()} cores shared by client, servers and database, load average "
          f"{min(args.loads):.1f}-{max(args.loads):.1f}")
    print(f"{'':34}  {'clicks/s':>9}  {'p50 ms':>7}  {'p99 ms':>7}  {'max ms':>7}  "
          f"{'CPU µs':>7}  {'lost':>5}")
    for name in rounds.rows:
        print(rounds.line(name))
    first = ours(args, args.workers[0])
    sat = rounds.median(f"{first}, saturation", "rate")
    p99 = rounds.median(f"{first}, open loop", "p99")
    print(f"ours / ceiling at saturation: "
          f"{sat / rounds.median('bare 302, saturation', 'rate'):.2f}; CPU per click "
          f"{rounds.median(f'{first}, saturation', 'cpu') / rounds.median('bare 302, saturation', 'cpu'):.2f}x the bare app's")
    print(f"target >= 2,000 clicks/s at saturation: {'met' if sat >= 2000 else 'NOT met'} "
          f"({sat:,.0f}); p99 < 50 ms at {args.rate:,.0f}/s offered: "
          f"{'met' if p99 < 50 else 'NOT met'} ({p99:.1f} ms); 0 lost: "
          f"{'met' if not rounds.failed() else 'NOT met'}")
    if rounds.failed():
        raise SystemExit("clicks were lost or not redirected")


if __name__ == "__main__":
    main()
