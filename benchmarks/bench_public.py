"""Load test of `newsletter serve` on PostgreSQL, loopback only, bounded.

    python benchmarks/bench_public.py                     # workers 1 and 2, side by side
    python benchmarks/bench_public.py --workers 1 --subscribers 2000 --events 20000

For each worker count a real `newsletter serve` process (uvicorn) is started on
127.0.0.1 against a fresh PostgreSQL database, then:

1. one-click unsubscribes: ``--clients`` concurrent clients (default 200, on one asyncio
   loop) POST ``List-Unsubscribe=One-Click`` to the links of ``--subscribers``
   distinct subscribers (default 10,000). Every answer must be 200 and the database must
   then show exactly that many list unsubscribes: none lost. Prints requests/s, p50, p99.
   The clients are keep-alive HTTP/1.1 connections on asyncio streams (httpx's pool
   was the bottleneck at 200 connections).
2. a webhook stream of ``--events`` signed events (default 100,000) in requests of
   ``--batch`` events (default 4,000), 4 requests at a time, then 5 of those requests
   again, re-signed (SendGrid's retries): every event must be applied exactly once.
   Prints events/s and the per-request p50/p99.

The client runs in this process and shares the machine's cores with the server and
PostgreSQL, so the figures are a floor for a dedicated server. Every request has a
timeout and the whole run a deadline.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import datetime as dt
import json
import os
import random
import sys
import tempfile
import time
import uuid
from pathlib import Path

import httpx
import sqlalchemy as sa
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from benchmarks import loadgen  # noqa: E402
from newsletter.audience import tokens  # noqa: E402
from newsletter.audience.lists import create_list  # noqa: E402
from newsletter.authoring.project import init_project  # noqa: E402
from newsletter.config import load_settings  # noqa: E402
from newsletter.db.connect import open_store  # noqa: E402
from newsletter.db.tables import memberships, subscribers  # noqa: E402
from newsletter.delivery import ledger  # noqa: E402
from newsletter.feedback.effects import send_event_counts, webhook_events  # noqa: E402

PG_ADMIN = os.environ.get("BENCH_PG_ADMIN",
                          "postgresql+psycopg://postgres@127.0.0.1:5432/postgres")
DEADLINE_SECONDS = 900
KINDS = [("delivered", 40), ("open", 28), ("click", 10), ("deferred", 8), ("processed", 10),
         ("bounce", 2), ("dropped", 1), ("spamreport", 0.5), ("unsubscribe", 0.5)]


def make_project(folder: Path, url: str, public_key: str):
    init_project(folder, name="Bench Briefing")
    config = folder / "newsletter.toml"
    config.write_text(f'database_url = "{url}"\nsendgrid_webhook_public_key = "{public_key}"\n'
                      + config.read_text("utf-8"), encoding="utf-8")
    return load_settings(folder)


def seed(settings, count: int) -> tuple[sa.Engine, int]:
    engine = open_store(settings)
    mailing_list = create_list(engine, "daily")
    now = dt.datetime.now(dt.UTC)
    with engine.begin() as conn:
        conn.execute(subscribers.insert(), [
            {"email": f"r{n}@example.com", "email_key": f"r{n}@example.com", "name": None,
             "attributes": {}, "status": "active", "status_changed_at": now,
             "created_at": now, "source": "bench"} for n in range(1, count + 1)])
        ids = conn.execute(sa.select(subscribers.c.id).order_by(subscribers.c.id)).scalars().all()
        conn.execute(memberships.insert(), [
            {"list_id": mailing_list.id, "subscriber_id": i, "status": "subscribed",
             "created_at": now, "status_changed_at": now} for i in ids])
    return engine, mailing_list.id


def new_send(engine: sa.Engine, list_id: int) -> int:
    return ledger.create_send(engine, kind="real", issue_path="bench.md", issue_slug="bench",
                              subject="Bench", list_id=list_id, list_name="daily",
                              backend="sendgrid", html="<p>bench</p>", text="bench")


def unsubscribe_load(port: int, paths: list[str], clients: int) -> dict:
    """One-click unsubscribes (RFC 8058 posts) from ``clients`` keep-alive connections."""
    body = b"List-Unsubscribe=One-Click"
    requests = [f"POST {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: {len(body)}"
                "\r\nContent-Type: application/x-www-form-urlencoded\r\n\r\n".encode() + body
                for path in paths]
    result = loadgen.closed_loop(port, requests, clients)
    return {"requests": len(paths), "seconds": result.seconds, "rps": result.rate,
            "p50_ms": result.ms(0.5), "p99_ms": result.ms(0.99), "statuses": result.statuses}


def make_events(count: int, subscribers_count: int, send_id: int, prefix: str) -> list[dict]:
    rng = random.Random(7)
    kinds = [k for k, _ in KINDS]
    weights = [w for _, w in KINDS]
    now = int(time.time())
    events = []
    for n in range(count):
        kind = rng.choices(kinds, weights)[0]
        event = {"email": f"r{n % subscribers_count + 1}@example.com", "timestamp": now,
                 "event": kind, "sg_event_id": f"{prefix}-{n}", "sg_message_id": f"m{n}",
                 "send_id": str(send_id), "list_id": "1",
                 "subscriber_id": str(n % subscribers_count + 1)}
        if kind == "bounce":
            event.update(type="bounce", reason="550 5.1.1 no such user")
        elif kind == "dropped":
            event["reason"] = "Bounced Address"
        elif kind == "click":
            event["url"] = "https://example.org/story"
        events.append(event)
    return events


def sign(private: ec.EllipticCurvePrivateKey, events: list[dict]) -> tuple[bytes, dict]:
    body = json.dumps(events).encode() + b"\r\n"
    ts = str(int(time.time()))
    der = private.sign(ts.encode() + body, ec.ECDSA(hashes.SHA256()))
    return body, {"X-Twilio-Email-Event-Webhook-Signature": base64.b64encode(der).decode(),
                  "X-Twilio-Email-Event-Webhook-Timestamp": ts,
                  "Content-Type": "application/json"}


async def webhook_stream(url: str, private, events: list[dict], batch: int,
                         concurrency: int = 4, retries: int = 5) -> dict:
    batches = [events[i:i + batch] for i in range(0, len(events), batch)]
    latencies: list[float] = []
    applied = duplicates = 0
    failures: list[str] = []
    async with httpx.AsyncClient(base_url=url, timeout=120) as client:
        semaphore = asyncio.Semaphore(concurrency)

        async def post(chunk: list[dict]) -> None:
            nonlocal applied, duplicates
            body, headers = sign(private, chunk)
            async with semaphore:
                started = time.perf_counter()
                response = await client.post("/webhooks/sendgrid", content=body,
                                             headers=headers)
                latencies.append(time.perf_counter() - started)
            if response.status_code != 200:
                failures.append(f"{response.status_code} {response.text[:100]}")
                return
            answer = response.json()
            applied += answer["applied"]
            duplicates += answer["duplicates"]

        started = time.perf_counter()
        await asyncio.gather(*(post(chunk) for chunk in batches))
        elapsed = time.perf_counter() - started
        first_applied = applied
        await asyncio.sleep(1.1)  # a retry is signed at a later second
        retry_started = time.perf_counter()
        await asyncio.gather(*(post(chunk) for chunk in batches[:retries]))
        retry_elapsed = time.perf_counter() - retry_started
    return {"events": len(events), "requests": len(batches), "seconds": elapsed,
            "events_per_s": len(events) / elapsed, "applied_first": first_applied,
            "applied_total": applied, "duplicates": duplicates,
            "retried_events": sum(len(b) for b in batches[:retries]),
            "retry_seconds": retry_elapsed,
            "p50_ms": loadgen.percentile(latencies, 0.5) * 1000,
            "p99_ms": loadgen.percentile(latencies, 0.99) * 1000, "failures": failures}


def run(workers: int, args, private, public_key: str, url: str, folder: Path) -> dict:
    settings = load_settings(folder)
    engine = open_store(settings)
    with engine.begin() as conn:  # everyone subscribed again, for a fair second run
        conn.execute(memberships.update().values(status="subscribed"))
        conn.execute(subscribers.update().values(status="active"))
        list_id = conn.execute(sa.text("SELECT id FROM lists WHERE name = 'daily'")).scalar_one()
    send_id = new_send(engine, list_id)
    signer = tokens.signer(settings)
    with engine.connect() as conn:
        ids = conn.execute(sa.select(subscribers.c.id).order_by(subscribers.c.id)
                           ).scalars().all()
    paths = [f"/u/{signer.sign(i, list_id)}" for i in ids]
    random.Random(1).shuffle(paths)
    server = loadgen.Server.serve(folder, workers)
    try:
        unsub = unsubscribe_load(server.port, paths, args.clients)
        with engine.connect() as conn:
            recorded = conn.execute(sa.select(sa.func.count()).select_from(memberships).where(
                memberships.c.list_id == list_id, memberships.c.status == "unsubscribed")
            ).scalar_one()
        unsub["recorded"] = recorded
        events = make_events(args.events, len(ids), send_id, f"w{workers}-{uuid.uuid4().hex[:6]}")
        hook = asyncio.run(webhook_stream(server.url, private, events, args.batch))
        with engine.connect() as conn:
            stored = conn.execute(sa.select(sa.func.count()).select_from(webhook_events).where(
                webhook_events.c.send_id == send_id)).scalar_one()
            counted = conn.execute(sa.select(sa.func.sum(send_event_counts.c.events)).where(
                send_event_counts.c.send_id == send_id)).scalar_one()
        hook["stored"], hook["counted"] = stored, counted
    finally:
        server.stop()
        engine.dispose()
    return {"workers": workers, "unsubscribe": unsub, "webhook": hook}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workers", type=int, nargs="*", default=[1, 2])
    parser.add_argument("--clients", type=int, default=200)
    parser.add_argument("--subscribers", type=int, default=10_000)
    parser.add_argument("--events", type=int, default=100_000)
    parser.add_argument("--batch", type=int, default=4_000)
    args = parser.parse_args()
    deadline = time.monotonic() + DEADLINE_SECONDS
    private = ec.generate_private_key(ec.SECP256R1())
    public_key = base64.b64encode(private.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)).decode()
    admin = sa.create_engine(PG_ADMIN, isolation_level="AUTOCOMMIT")
    name = f"newsletter_bench_{uuid.uuid4().hex[:8]}"
    with admin.connect() as conn:
        conn.execute(sa.text(f'CREATE DATABASE "{name}"'))
    url = admin.url.set(database=name).render_as_string(hide_password=False)
    results = []
    try:
        with tempfile.TemporaryDirectory() as tmp:
            folder = Path(tmp) / "bench"
            settings = make_project(folder, url, public_key)
            engine, _ = seed(settings, args.subscribers)
            engine.dispose()
            for workers in args.workers:
                if time.monotonic() > deadline:
                    print("deadline reached: stopping")
                    break
                results.append(run(workers, args, private, public_key, url, folder))
    finally:
        with admin.connect() as conn:
            conn.execute(sa.text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()
    print(f"PostgreSQL, {args.subscribers:,} subscribers, {args.clients} concurrent clients, "
          f"{os.cpu_count()} cores shared by client, server and database")
    print(f"{'workers':>7}  {'unsub req/s':>11}  {'p50 ms':>7}  {'p99 ms':>7}  {'recorded':>9}  "
          f"{'events/s':>9}  {'req p50 ms':>10}  {'req p99 ms':>10}  {'applied':>8}  "
          f"{'dup':>6}")
    ok = True
    for r in results:
        u, h = r["unsubscribe"], r["webhook"]
        print(f"{r['workers']:>7}  {u['rps']:>11,.0f}  {u['p50_ms']:>7.1f}  {u['p99_ms']:>7.1f}  "
              f"{u['recorded']:>9,}  {h['events_per_s']:>9,.0f}  {h['p50_ms']:>10.0f}  "
              f"{h['p99_ms']:>10.0f}  {h['applied_total']:>8,}  {h['duplicates']:>6,}")
        checks = {
            "every one-click answered 200": u["statuses"] == {200: args.subscribers},
            "every unsubscribe recorded": u["recorded"] == args.subscribers,
            "every event applied once": h["applied_total"] == args.events == h["stored"]
            == h["counted"],
            "retried events all duplicates": h["duplicates"] == h["retried_events"],
            "no failed webhook request": not h["failures"],
        }
        for label, passed in checks.items():
            if not passed:
                ok = False
                print(f"  FAILED: {label}: {json.dumps(r, default=str)[:600]}")
    print(json.dumps(results, default=str, indent=None)[:4000])
    if not ok:
        raise SystemExit(1)
    print("all checks passed: nothing lost, nothing applied twice")


if __name__ == "__main__":
    main()
