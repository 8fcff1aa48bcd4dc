"""The tracked-link redirect under load: `newsletter serve` on PostgreSQL, loopback only.

    python benchmarks/bench_clicks.py                       # 3 rounds of 20,000 clicks
    python benchmarks/bench_clicks.py --rounds 2 --clicks 5000 --workers 2

A real `newsletter serve` process (uvicorn, ``--workers``) on 127.0.0.1 against a fresh
PostgreSQL database answers ``GET /c/TOKEN`` for ``--clicks`` signed tokens (random
subscribers of a 10-link send) from ``--clients`` concurrent keep-alive clients (default
200, one asyncio loop, minimal HTTP/1.1 on streams). The ceiling is a bare Starlette app
under the same uvicorn settings whose ``/c/{token}`` answers a constant 302 and records
nothing. The two are interleaved, round by round, so both see the same machine load.

Per round: clicks/s, p50 and p99 latency; after each of our rounds the database must
hold exactly one row per answered click (waited for up to 30 s: the clicks are written
after answering): "lost" is the difference and must be 0. Prints the medians side by
side and our share of the ceiling. The client shares the cores with the server and
PostgreSQL (and with whatever else runs), so the figures are a floor.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import random
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

import sqlalchemy as sa

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from newsletter.audience.lists import create_list  # noqa: E402
from newsletter.authoring.project import init_project  # noqa: E402
from newsletter.config import load_settings  # noqa: E402
from newsletter.db.connect import open_store  # noqa: E402
from newsletter.db.tables import clicks  # noqa: E402
from newsletter.delivery import ledger, tracking  # noqa: E402

PG_ADMIN = os.environ.get("BENCH_PG_ADMIN",
                          "postgresql+psycopg://postgres@127.0.0.1:5432/postgres")
LINKS = 10
BARE = """
import socket, sys
from starlette.applications import Starlette
from starlette.responses import Response
from starlette.routing import Route
from newsletter.web.server import server_config
import uvicorn

async def click(request):
    return Response(status_code=302, headers={"Location": "https://example.org/story"})

app = Starlette(routes=[Route("/c/{token}", click, methods=["GET", "HEAD"])])
sock = socket.socket(); sock.bind(("127.0.0.1", int(sys.argv[1]))); sock.listen(2048)
uvicorn.Server(server_config(app)).run(sockets=[sock])
"""


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_listening(port: int, process: subprocess.Popen, what: str) -> None:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise SystemExit(f"{what} exited: {process.stderr.read() if process.stderr else ''}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=1):
                return
        except OSError:
            time.sleep(0.1)
    raise SystemExit(f"{what} did not start")


def start_ours(project: Path, workers: int) -> tuple[subprocess.Popen, int]:
    port = free_port()
    process = subprocess.Popen(
        [sys.executable, "-m", "newsletter", "--project", str(project), "serve", "--port",
         str(port), "--workers", str(workers)],
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
        env={**os.environ, "PYTHONPATH": str(REPO)})
    wait_listening(port, process, "newsletter serve")
    return process, port


def start_bare() -> tuple[subprocess.Popen, int]:
    port = free_port()
    process = subprocess.Popen([sys.executable, "-c", BARE, str(port)],
                               stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
                               env={**os.environ, "PYTHONPATH": str(REPO)})
    wait_listening(port, process, "bare Starlette")
    return process, port


def stop(process: subprocess.Popen) -> None:
    process.terminate()
    try:
        process.wait(15)
    except subprocess.TimeoutExpired:
        process.kill()


async def one_client(port: int, paths: list[str], latencies: list[float],
                     statuses: dict[int, int]) -> None:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        while paths:
            path = paths.pop()
            started = time.perf_counter()
            writer.write(f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n".encode())
            status_line = await asyncio.wait_for(reader.readline(), 30)
            length = 0
            while True:
                line = await asyncio.wait_for(reader.readline(), 30)
                if line in (b"\r\n", b""):
                    break
                name, _, value = line.decode("latin-1").partition(":")
                if name.lower() == "content-length":
                    length = int(value)
            if length:
                await asyncio.wait_for(reader.readexactly(length), 30)
            latencies.append(time.perf_counter() - started)
            code = int(status_line.split()[1]) if status_line else 0
            statuses[code] = statuses.get(code, 0) + 1
    finally:
        writer.close()


async def load(port: int, paths: list[str], clients: int) -> dict:
    pending = list(paths)
    latencies: list[float] = []
    statuses: dict[int, int] = {}
    started = time.perf_counter()
    await asyncio.gather(*(one_client(port, pending, latencies, statuses)
                           for _ in range(clients)))
    elapsed = time.perf_counter() - started
    ordered = sorted(latencies)
    return {"rps": len(paths) / elapsed, "p50": ordered[len(ordered) // 2] * 1000,
            "p99": ordered[min(len(ordered) - 1, int(0.99 * len(ordered)))] * 1000,
            "statuses": statuses}


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


def prepare(folder: Path, url: str, clicks_per_round: int, rounds: int):
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
    batches = [[f"/c/{signer.sign(send_id, rng.randint(1, 1_000_000), rng.randint(1, LINKS))}"
                for _ in range(clicks_per_round)] for _ in range(rounds)]
    return engine, batches


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--clicks", type=int, default=20_000)
    parser.add_argument("--clients", type=int, default=200)
    parser.add_argument("--workers", type=int, default=1)
    args = parser.parse_args()
    admin = sa.create_engine(PG_ADMIN, isolation_level="AUTOCOMMIT")
    name = f"newsletter_bench_{uuid.uuid4().hex[:8]}"
    with admin.connect() as conn:
        conn.execute(sa.text(f'CREATE DATABASE "{name}"'))
    url = admin.url.set(database=name).render_as_string(hide_password=False)
    ours: list[dict] = []
    bare: list[dict] = []
    try:
        with tempfile.TemporaryDirectory() as tmp:
            engine, batches = prepare(Path(tmp) / "bench", url, args.clicks, args.rounds)
            ours_process, ours_port = start_ours(Path(tmp) / "bench", args.workers)
            bare_process, bare_port = start_bare()
            try:
                asyncio.run(load(ours_port, batches[0][:200], 20))  # warm: links cached
                asyncio.run(load(bare_port, ["/c/warm"] * 200, 20))
                warm = stored(engine, 200)
                for n, paths in enumerate(batches, start=1):
                    bare.append(asyncio.run(load(bare_port, ["/c/x"] * len(paths),
                                                 args.clients)))
                    result = asyncio.run(load(ours_port, paths, args.clients))
                    expected = warm + n * len(paths)
                    result["lost"] = expected - stored(engine, expected)
                    ours.append(result)
                    print(f"round {n}: bare {bare[-1]['rps']:,.0f}/s p99 {bare[-1]['p99']:.1f} ms"
                          f" | ours {result['rps']:,.0f}/s p99 {result['p99']:.1f} ms, "
                          f"statuses {result['statuses']}, lost {result['lost']}")
            finally:
                stop(ours_process)
                stop(bare_process)
                engine.dispose()
    finally:
        with admin.connect() as conn:
            conn.execute(sa.text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()
    med = statistics.median
    print(f"\nGET /c/TOKEN, PostgreSQL, {args.clients} concurrent clients, {args.rounds} rounds "
          f"of {args.clicks:,} clicks, serve --workers {args.workers}, {os.cpu_count()} cores "
          "shared by client, servers and database")
    print(f"{'':22}  {'clicks/s':>9}  {'p50 ms':>7}  {'p99 ms':>7}  {'lost':>5}")
    print(f"{'bare Starlette 302':22}  {med(r['rps'] for r in bare):>9,.0f}  "
          f"{med(r['p50'] for r in bare):>7.1f}  {med(r['p99'] for r in bare):>7.1f}  {'-':>5}")
    print(f"{'newsletter /c/ (ours)':22}  {med(r['rps'] for r in ours):>9,.0f}  "
          f"{med(r['p50'] for r in ours):>7.1f}  {med(r['p99'] for r in ours):>7.1f}  "
          f"{sum(r['lost'] for r in ours):>5}")
    print(f"ours / ceiling: {med(r['rps'] for r in ours) / med(r['rps'] for r in bare):.2f}; "
          "target: >= 2,000 clicks/s, p99 < 50 ms, 0 lost")
    if any(r["lost"] for r in ours) or any(set(r["statuses"]) != {302} for r in ours):
        raise SystemExit("clicks were lost or not redirected")


if __name__ == "__main__":
    main()
