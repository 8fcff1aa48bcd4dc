"""What the connection limits cost: uvicorn's own accept loop against ours, loopback only.

    python benchmarks/bench_accept.py                       # 5 interleaved rounds each
    python benchmarks/bench_accept.py --rounds 3 --requests 3000 --clients 50

Each round starts a server process serving a one-line text answer, either as stock
uvicorn serves it (asyncio's accept loop, h11) or as ``newsletter serve`` does
(``newsletter.web.limits``: our acceptor, the guarded h11 protocol, the head timeout),
and measures two loads with ``--clients`` concurrent asyncio clients:

- ``new conn``: one request per connection (``Connection: close``): every request is
  an accept, the path the limits change;
- ``keep-alive``: all requests over ``--clients`` persistent connections.

Rounds alternate stock and guarded so both see the same machine. Prints requests/s per
round and the medians side by side, with guarded/stock as a ratio.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

REQUEST = b"GET / HTTP/1.1\r\nHost: 127.0.0.1\r\n%s\r\n"


def serve(mode: str) -> None:
    import uvicorn
    from starlette.applications import Starlette
    from starlette.responses import PlainTextResponse
    from starlette.routing import Route

    from newsletter.web.server import listening_socket, server_config

    async def hello(request):
        return PlainTextResponse("ok\n")

    app = Starlette(routes=[Route("/", hello)])
    sock = listening_socket("127.0.0.1", 0)
    print(sock.getsockname()[1], flush=True)
    if mode == "guarded":
        config = server_config(app)
    else:
        config = uvicorn.Config(app, log_level="warning", access_log=False, lifespan="on",
                                loop="asyncio", http="h11")
    uvicorn.Server(config).run(sockets=[sock])


async def _one(port: int, close: bool, reader=None, writer=None):
    if reader is None:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(REQUEST % (b"Connection: close\r\n" if close else b""))
    head = await reader.readuntil(b"\r\n\r\n")
    length = int(head.lower().split(b"content-length: ")[1].split(b"\r\n")[0])
    await reader.readexactly(length)
    assert head.startswith(b"HTTP/1.1 200")
    if close:
        writer.close()
        return None, None
    return reader, writer


async def load(port: int, requests: int, clients: int, close: bool) -> float:
    per_client = requests // clients

    async def client() -> None:
        reader = writer = None
        for _ in range(per_client):
            reader, writer = await asyncio.wait_for(_one(port, close, reader, writer), 10)
        if writer is not None:
            writer.close()

    started = time.perf_counter()
    await asyncio.gather(*(client() for _ in range(clients)))
    return per_client * clients / (time.perf_counter() - started)


def round_(mode: str, args: argparse.Namespace) -> dict[str, float]:
    server = subprocess.Popen([sys.executable, __file__, "--serve", mode],
                              stdout=subprocess.PIPE, text=True)
    try:
        port = int(server.stdout.readline())
        time.sleep(0.3)
        return {
            "new conn": asyncio.run(load(port, args.requests, args.clients, close=True)),
            "keep-alive": asyncio.run(load(port, args.requests, args.clients, close=False)),
        }
    finally:
        server.terminate()
        server.wait(10)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--requests", type=int, default=4000)
    parser.add_argument("--clients", type=int, default=50)
    parser.add_argument("--serve", choices=["stock", "guarded"])
    args = parser.parse_args()
    if args.serve:
        serve(args.serve)
        return
    results: dict[str, list[dict[str, float]]] = {"stock": [], "guarded": []}
    for n in range(args.rounds):
        for mode in (("stock", "guarded") if n % 2 == 0 else ("guarded", "stock")):
            figures = round_(mode, args)
            results[mode].append(figures)
            print(f"round {n + 1} {mode:8}: " + ", ".join(
                f"{k} {v:,.0f} req/s" for k, v in figures.items()), flush=True)
    print(f"\nmedians of {args.rounds} rounds, {args.requests:,} requests, "
          f"{args.clients} clients:")
    print(f"{'load':12} {'stock':>12} {'guarded':>12} {'ratio':>8}")
    for load_name in ("new conn", "keep-alive"):
        stock = statistics.median(r[load_name] for r in results["stock"])
        guarded = statistics.median(r[load_name] for r in results["guarded"])
        print(f"{load_name:12} {stock:>10,.0f}/s {guarded:>10,.0f}/s {guarded / stock:>7.0%}")


if __name__ == "__main__":
    main()
