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
import os
import re
import statistics
import sys
import tempfile
import time
import uuid
from pathlib import Path
from urllib.parse import urlencode

import sqlalchemy as sa

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from benchmarks import loadgen  # noqa: E402
from newsletter.audience import tokens  # noqa: E402
from newsletter.audience.lists import create_list  # noqa: E402
from newsletter.authoring.project import init_project  # noqa: E402
from newsletter.config import load_settings  # noqa: E402
from newsletter.db.connect import open_store  # noqa: E402
from tests.smtpserver import SMTPTestServer  # noqa: E402

NEWSROOM = {"from_address": "The Bench Briefing <news@bench-paper.org>",
            "postal_address": "1 Harbour Road, Portsmouth PO1 2AB",
            "base_url": "https://news.bench-paper.org"}


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


def sign_ups(stamp: str, count: int, run: str) -> list[bytes]:
    """``count`` form posts, each a distinct address from a distinct IP."""
    requests = []
    for n in range(count):
        body = urlencode({"email": f"reader{n}.{run}@bench-readers.org",
                          "name": f"Reader {n}", "list": "daily", "consent": "yes",
                          "website": "", "ts": stamp}).encode()
        requests.append(
            b"POST /subscribe HTTP/1.1\r\nHost: 127.0.0.1\r\n"
            b"Content-Type: application/x-www-form-urlencoded\r\n"
            + f"X-Forwarded-For: 10.{n // 65536 % 256}.{n // 256 % 256}.{n % 256}\r\n"
              f"Content-Length: {len(body)}\r\n\r\n".encode() + body)
    return requests


def one_round(workers: int, count: int, smtp: SMTPTestServer) -> dict:
    with loadgen.scratch_database("bench_signup") as url, \
            tempfile.TemporaryDirectory() as folder:
        settings = make_project(Path(folder) / "p", url, smtp.url)
        engine = open_store(settings)
        create_list(engine, "daily")
        stamp = tokens.sign("signup-form", settings, int(time.time()) - 60)
        smtp.reset()
        server = loadgen.Server.serve(settings.project_dir, workers)
        try:
            run = uuid.uuid4().hex[:6]
            result = loadgen.closed_loop(server.port, sign_ups(stamp, count, run), count)
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
    exact = len(per_address) == count and set(per_address.values()) == {1}
    return {"rps": result.rate, "p50": result.ms(0.5), "p99": result.ms(0.99),
            "statuses": result.statuses,
            "recorded": pending, "one_each": exact, "mails": smtp.total}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--signups", type=int, default=200)
    parser.add_argument("--workers", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--rounds", type=int, default=1)
    args = parser.parse_args()
    results: dict[int, list[dict]] = {w: [] for w in args.workers}
    with SMTPTestServer() as smtp:
        for _ in range(args.rounds):
            for workers in args.workers:  # interleaved, so both see the same load
                results[workers].append(one_round(workers, args.signups, smtp))
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
    if failed:
        raise SystemExit("some sign-up was lost or mailed twice")


if __name__ == "__main__":
    main()
