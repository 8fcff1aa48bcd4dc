"""Load test of the sign-up form on `newsletter serve` with PostgreSQL, loopback only.

    python benchmarks/bench_signup.py                     # 200 sign-ups, workers 1 and 2
    python benchmarks/bench_signup.py --signups 400 --workers 1

For each worker count (side by side, rounds interleaved) a real `newsletter serve`
process runs against a fresh PostgreSQL database, sending through the SMTP backend to a
local aiosmtpd server (tests/smtpserver.py). ``--signups`` clients post the form at once,
each a distinct address from a distinct IP (``X-Forwarded-For``, which uvicorn trusts from
the loopback), with every defence on (honeypot, fill time, the per-IP and per-address
limits, disposable domains). Then it checks that every sign-up was recorded (one pending
row each) and that the SMTP server received exactly one confirmation per address, and
prints requests/s, p50 and p99 per worker count.

The client shares the machine's cores with the server, PostgreSQL and the SMTP server,
so the figures are a floor for a dedicated server.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import re
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

import httpx
import sqlalchemy as sa

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from newsletter.audience import tokens  # noqa: E402
from newsletter.audience.lists import create_list  # noqa: E402
from newsletter.authoring.project import init_project  # noqa: E402
from newsletter.config import load_settings  # noqa: E402
from newsletter.db.connect import open_store  # noqa: E402
from tests.smtpserver import SMTPTestServer  # noqa: E402

PG_ADMIN = os.environ.get("BENCH_PG_ADMIN",
                          "postgresql+psycopg://postgres@127.0.0.1:5432/postgres")
NEWSROOM = {"from_address": "The Bench Briefing <news@bench-paper.org>",
            "postal_address": "1 Harbour Road, Portsmouth PO1 2AB",
            "base_url": "https://news.bench-paper.org"}


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(q * (len(ordered) - 1))))]


def make_project(folder: Path, url: str, smtp_url: str):
    init_project(folder, name="Bench Briefing")
    config = folder / "newsletter.toml"
    text = config.read_text("utf-8")
    for key, value in NEWSROOM.items():
        text = re.sub(rf"^{key} = .*$", f'{key} = "{value}"', text, count=1, flags=re.M)
    text = re.sub(r'^backend = .*$', 'backend = "smtp"', text, count=1, flags=re.M)
    config.write_text(f'database_url = "{url}"\nsmtp_url = "{smtp_url}"\n'
                      'public_lists = ["daily"]\n' + text, encoding="utf-8")
    return load_settings(folder)


class Server:
    def __init__(self, project: Path, workers: int) -> None:
        self.process = subprocess.Popen(
            [sys.executable, "-m", "newsletter", "--project", str(project), "serve",
             "--port", "0", "--workers", str(workers)],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
            env={**os.environ, "PYTHONUNBUFFERED": "1", "PYTHONPATH": str(REPO)})
        assert self.process.stdout is not None
        line = self.process.stdout.readline()
        match = re.search(r"http://127\.0\.0\.1:(\d+)", line)
        if not match:
            self.process.kill()
            raise SystemExit(f"serve did not start: {line}{self.process.stderr.read()}")
        self.url = f"http://127.0.0.1:{match.group(1)}"
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            try:
                if httpx.get(f"{self.url}/healthz", timeout=2).status_code == 200:
                    return
            except httpx.HTTPError:
                time.sleep(0.1)
        raise SystemExit("serve did not answer /healthz")

    def stop(self) -> None:
        self.process.terminate()
        try:
            self.process.wait(15)
        except subprocess.TimeoutExpired:
            self.process.kill()


async def sign_ups(url: str, stamp: str, count: int, run: str) -> tuple[float, list[float], dict]:
    limits = httpx.Limits(max_connections=count, max_keepalive_connections=count)
    latencies: list[float] = []
    statuses: dict[int, int] = {}
    async with httpx.AsyncClient(limits=limits, timeout=60) as client:
        async def one(n: int) -> None:
            data = {"email": f"reader{n}.{run}@bench-readers.org", "name": f"Reader {n}",
                    "list": "daily", "consent": "yes", "website": "", "ts": stamp}
            headers = {"X-Forwarded-For": f"10.{n // 65536 % 256}.{n // 256 % 256}.{n % 256}"}
            started = time.perf_counter()
            answer = await client.post(f"{url}/subscribe", data=data, headers=headers)
            latencies.append(time.perf_counter() - started)
            statuses[answer.status_code] = statuses.get(answer.status_code, 0) + 1

        started = time.perf_counter()
        await asyncio.gather(*(one(n) for n in range(count)))
    return time.perf_counter() - started, latencies, statuses


def one_round(workers: int, count: int, smtp: SMTPTestServer, admin: sa.Engine) -> dict:
    name = f"bench_signup_{uuid.uuid4().hex[:8]}"
    with admin.connect() as conn:
        conn.execute(sa.text(f'CREATE DATABASE "{name}"'))
    url = admin.url.set(database=name).render_as_string(hide_password=False)
    try:
        with tempfile.TemporaryDirectory() as folder:
            settings = make_project(Path(folder) / "p", url, smtp.url)
            engine = open_store(settings)
            create_list(engine, "daily")
            stamp = tokens.sign("signup-form", settings, int(time.time()) - 60)
            smtp.reset()
            server = Server(settings.project_dir, workers)
            try:
                run = uuid.uuid4().hex[:6]
                seconds, latencies, statuses = asyncio.run(
                    sign_ups(server.url, stamp, count, run))
                deadline = time.monotonic() + 30  # the last emails may still be in flight
                while smtp.total < count and time.monotonic() < deadline:
                    time.sleep(0.05)
            finally:
                server.stop()
            with engine.connect() as conn:
                pending = conn.execute(sa.text(
                    "SELECT count(*) FROM signups WHERE status = 'pending'")).scalar_one()
            engine.dispose()
            per_address = {address: len(mails) for address, mails in smtp.messages.items()}
    finally:
        with admin.connect() as conn:
            conn.execute(sa.text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
    exact = len(per_address) == count and set(per_address.values()) == {1}
    return {"rps": count / seconds, "p50": percentile(latencies, 0.5) * 1000,
            "p99": percentile(latencies, 0.99) * 1000, "statuses": statuses,
            "recorded": pending, "one_each": exact, "mails": smtp.total}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--signups", type=int, default=200)
    parser.add_argument("--workers", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--rounds", type=int, default=1)
    args = parser.parse_args()
    admin = sa.create_engine(PG_ADMIN, isolation_level="AUTOCOMMIT")
    results: dict[int, list[dict]] = {w: [] for w in args.workers}
    with SMTPTestServer() as smtp:
        for _ in range(args.rounds):
            for workers in args.workers:  # interleaved, so both see the same load
                results[workers].append(one_round(workers, args.signups, smtp, admin))
    print(f"{args.signups} concurrent sign-ups on PostgreSQL, SMTP to aiosmtpd on loopback; "
          f"load {os.getloadavg()[0]:.1f}")
    print(f"{'workers':>7} {'req/s':>8} {'p50 ms':>8} {'p99 ms':>8}  recorded  one email each")
    failed = False
    for workers, rounds in results.items():
        rps = statistics.median(r["rps"] for r in rounds)
        p50 = statistics.median(r["p50"] for r in rounds)
        p99 = statistics.median(r["p99"] for r in rounds)
        recorded = min(r["recorded"] for r in rounds)
        exact = all(r["one_each"] for r in rounds)
        codes = {k: v for r in rounds for k, v in r["statuses"].items()}
        print(f"{workers:>7} {rps:>8.0f} {p50:>8.0f} {p99:>8.0f}  {recorded:>8}  "
              f"{'yes' if exact else 'NO'} (answers {codes})")
        failed = failed or not exact or recorded != args.signups
    admin.dispose()
    if failed:
        raise SystemExit("some sign-up was lost or mailed twice")


if __name__ == "__main__":
    main()
