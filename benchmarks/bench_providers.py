"""Postmark, Mailgun and SES delivery speed: the whole send against each stand-in, side by side.

For each provider, in ``--rounds`` interleaved rounds, each phase in its own fresh process:

(a) the practical ceiling: a bare client posting pre-built requests (8 of them, built
    before the clock starts by the backend's own builders from the send's own template,
    ``measure.send_template``, so the same requests as (c)'s but for tokens and addresses)
    with ``--workers`` requests in flight: ``httpx`` for Postmark (calls of up to 500
    messages / 5 MB) and Mailgun (1,000 recipients a call), ``boto3`` ``sesv2``
    ``send_bulk_email`` with pre-built calls of 50 entries for SES (its template stored
    before the clock starts);
(c) ``newsletter send`` as it runs (``delivery.sending``): preflight, the send, the SQLite
    ledger's snapshot, claims, personalisation, the calls, each answer recorded.

The stand-in (tests/<provider>_standin.py) runs in a third process and counts what it
accepted; after each (c) every recipient must have been accepted exactly once and the
ledger must say so. Peak memory is the sending process's own high-water mark. Each
phase's CPU seconds are given for the sender and the stand-in; "by CPU" compares what the
phases would take with a core each for the two and no one else on the machine (the larger
of the two CPU times), which a shared machine's load does not move as it moves wall time.

Targets (issue 18): (c) at least 80% of (a) for 1,000,000 recipients on SQLite, under
150 MB. Postmark's calls carry every message whole (50 KB each for the sample issue: 50
GB for a million), so on a shared 2-core machine use fewer: ``--recipients`` applies to
Postmark and Mailgun, ``--ses-recipients`` to SES (SendBulkEmail: 20,000 calls of 50 for a
million).

Run: python benchmarks/bench_providers.py [--providers postmark,mailgun,ses]
         [--recipients 200000] [--ses-recipients 20000] [--workers 4] [--rounds 2]
"""

from __future__ import annotations

import argparse
import multiprocessing as mp
import os
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "benchmarks"))

from bench_send import exactly_once, seed_in_process  # noqa: E402
from bench_sendgrid import seeded, standin_get  # noqa: E402
from measure import peak_rss_mb, phase, process_cpu, send_template  # noqa: E402

KEYS = {"postmark": "pm-bench", "mailgun": "key-bench", "ses": "AKIDSTANDIN"}
DOMAIN = "mg.example.org"
LABEL = 46


def configure(provider: str, url: str) -> dict:
    """The settings overrides for ``provider`` at ``url``; sets its credentials."""
    if provider == "postmark":
        os.environ["POSTMARK_SERVER_TOKEN"] = KEYS[provider]
        return {"postmark_api_host": url}
    if provider == "mailgun":
        os.environ["MAILGUN_API_KEY"] = KEYS[provider]
        return {"mailgun_api_host": url, "mailgun_domain": DOMAIN}
    from tests.ses_standin import SECRET

    os.environ.update({"AWS_ACCESS_KEY_ID": KEYS[provider], "AWS_SECRET_ACCESS_KEY": SECRET,
                       "AWS_EC2_METADATA_DISABLED": "true", "AWS_CONFIG_FILE": "/nonexistent",
                       "AWS_SHARED_CREDENTIALS_FILE": "/nonexistent"})
    return {"ses_endpoint_url": url, "ses_region": "eu-west-1"}


def _prebuilt(provider: str, url: str, workers: int, project: str):
    """(requests, recipients per request, post(request) -> ok) for the bare client."""
    from newsletter.config import load_settings
    from newsletter.delivery.backends import get_backend
    settings = load_settings(project, **configure(provider, url))
    backend = get_backend(settings, provider, workers=workers)
    template = send_template(settings)  # the send's own: its requests, byte for byte
    if provider == "ses":
        return _ses_prebuilt(backend, template)
    import httpx

    if provider == "postmark":
        from newsletter.delivery.backends.postmark import calls

        built = [items for _, items in calls(backend.message_items(template.messages(
            seeded(0, 800), headers=False)))]
        pool = [b"[" + b",".join(items) + b"]" for items in built[:8]]
        per, path, kind = len(built[0]), "/email/batch", "application/json"
        headers, auth = {"X-Postmark-Server-Token": KEYS[provider]}, None
    else:
        from newsletter.delivery.backends.mailgun import request_body

        content = backend.content_for(template)
        pool = [request_body(content, template.messages(seeded(k * 1000, (k + 1) * 1000),
                                                        headers=False)) for k in range(8)]
        per, path, kind = 1000, f"/v3/{DOMAIN}/messages", content.content_type
        headers, auth = {}, ("api", KEYS[provider])
    local = threading.local()

    def post(body: bytes) -> bool:
        client = getattr(local, "client", None)
        if client is None:
            client = local.client = httpx.Client(base_url=url, headers=headers, auth=auth,
                                                 timeout=120)
        return client.post(path, content=body, headers={"Content-Type": kind}
                           ).status_code == 200
    return pool, per, post


def _ses_prebuilt(backend, template):
    """SES's bare client: boto3 ``send_bulk_email`` posting pre-built calls of 50 entries
    (the backend's own builders, its template stored before the clock starts), over the
    backend's own client (the same pool, signing and parameter validation)."""
    from newsletter.delivery.backends.sestemplate import MAX_ENTRIES

    content = backend.content_for(template)
    assert backend._store(content) is None, "the stand-in refused the template"
    messages = template.messages(seeded(0, 8 * MAX_ENTRIES), headers=False)
    pool = [content.request([content.entry_or_none(m) for m in messages[k:k + MAX_ENTRIES]],
                            backend.configuration_set)
            for k in range(0, len(messages), MAX_ENTRIES)]
    client = backend.client

    def post(request: dict) -> bool:
        results = client.send_bulk_email(**request)["BulkEmailEntryResults"]
        return all(r["Status"] == "SUCCESS" for r in results)
    return pool, MAX_ENTRIES, post


def run_bare(provider: str, url: str, count: int, workers: int, project: str, out) -> None:
    pool, per, post = _prebuilt(provider, url, workers, project)
    lock = threading.Lock()
    cursor = iter(range(0, count, per))
    failed = 0

    def worker() -> None:
        nonlocal failed
        bad = 0
        while True:
            with lock:
                start = next(cursor, None)
            if start is None:
                break
            bad += not post(pool[(start // per) % len(pool)])
        with lock:
            failed += bad

    before = resource.getrusage(resource.RUSAGE_SELF)
    started = time.perf_counter()
    with ThreadPoolExecutor(workers) as executor:
        for future in [executor.submit(worker) for _ in range(workers)]:
            future.result()
    seconds = time.perf_counter() - started
    usage = resource.getrusage(resource.RUSAGE_SELF)
    out.send({"seconds": seconds, "rss_mb": peak_rss_mb(), "failed": failed, "per": per,
              "cpu": usage.ru_utime + usage.ru_stime - before.ru_utime - before.ru_stime})


def run_send(provider: str, url: str, count: int, workers: int, project: str, out) -> None:
    from newsletter.config import load_settings
    from newsletter.db.connect import open_store
    from newsletter.delivery import sending

    settings = load_settings(project, **configure(provider, url))
    engine = open_store(settings)
    before = resource.getrusage(resource.RUSAGE_SELF)
    started = time.perf_counter()
    prepared = sending.preflight(settings, Path(project) / "issues" / "2026-11-24.md")
    send = sending.start(engine, settings, prepared, "daily", backend=provider).send
    result = sending.run(engine, settings, send.id, backend=provider, workers=workers)
    seconds = time.perf_counter() - started
    usage = resource.getrusage(resource.RUSAGE_SELF)
    out.send({"seconds": seconds, "counts": dict(result.counts), "rss_mb": peak_rss_mb(),
              "cpu": usage.ru_utime + usage.ru_stime - before.ru_utime - before.ru_stime})



def by_cpu(row: dict) -> float:
    """The seconds a phase would take with a core each for the stand-in and the sender,
    no one else running: the larger of their CPU times. Wall time on a shared machine
    depends on the load; this does not (the column "by CPU" is (a)'s over (c)'s)."""
    return max(row["cpu"], row["standin"])


def bench(provider: str, n: int, workers: int, rounds: int, tmp: Path) -> dict:
    template = tmp / f"template-{provider}"
    seconds = seed_in_process(template, None, n)
    print(f"\n{provider}: seeded {n:,} subscribers (SQLite) in {seconds:.1f} s, not timed; "
          f"stand-in tests/{provider}_standin.py in its own process", flush=True)
    server = subprocess.Popen([sys.executable, "-m", f"tests.{provider}_standin", "--key",
                               KEYS[provider], "--record", "counts"], cwd=REPO,
                              stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    runs: list[tuple[dict, dict, bool]] = []
    try:
        assert server.stdout is not None
        url = server.stdout.readline().split()[1]
        print(f"{'':{LABEL}} {'seconds':>8} {'recipients/s':>13} {'peak MB':>8} {'CPU s':>6} "
              f"{'vs (a)':>7} {'stand-in CPU s':>14} {'by CPU':>7}")
        for k in range(1, rounds + 1):
            project = tmp / f"{provider}-{k}"
            shutil.copytree(template, project)
            standin_get(url, "/_reset")
            before = process_cpu(server.pid)
            bare = phase(run_bare, provider, url, n, workers, str(project))
            bare["standin"] = process_cpu(server.pid) - before
            standin_get(url, "/_reset")
            before = process_cpu(server.pid)
            ours = phase(run_send, provider, url, n, workers, str(project))
            ours["standin"] = process_cpu(server.pid) - before
            once = exactly_once(n, standin_get(url, "/_stats"), ours["counts"])
            shutil.rmtree(project, ignore_errors=True)
            runs.append((bare, ours, once))
            for label, row in ((f"round {k} (a) bare client, {bare['per']} a request", bare),
                               (f"round {k} (c) newsletter send --backend {provider}", ours)):
                print(f"{label:{LABEL}} {row['seconds']:>8.1f} {n / row['seconds']:>13,.0f} "
                      f"{row['rss_mb']:>8.0f} {row['cpu']:>6.1f} "
                      f"{bare['seconds'] / row['seconds']:>7.0%} {row['standin']:>14.1f} "
                      f"{by_cpu(bare) / by_cpu(row):>7.0%}", flush=True)
            print(f"    (c) ledger {ours['counts']}; exactly once: {'yes' if once else 'NO'}; "
                  f"(a) failed requests: {bare['failed']}; load average "
                  f"{os.getloadavg()[0]:.1f}")
    finally:
        if server.stdin:
            server.stdin.close()
        server.wait(10)
    ratios = [bare["seconds"] / ours["seconds"] for bare, ours, _ in runs]
    by_cpus = [by_cpu(bare) / by_cpu(ours) for bare, ours, _ in runs]
    return {"by_cpu": statistics.median(by_cpus),"n": n, "a": statistics.median(b["seconds"] for b, _, _ in runs),
            "c": statistics.median(o["seconds"] for _, o, _ in runs),
            "ratio": statistics.median(ratios), "ratios": ratios,
            "peak": max(o["rss_mb"] for _, o, _ in runs), "once": all(e for *_, e in runs)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--providers", default="postmark,mailgun,ses")
    parser.add_argument("--recipients", type=int, default=1_000_000)
    parser.add_argument("--ses-recipients", type=int, default=20_000)
    parser.add_argument("--workers", type=int, default=4)
    parser.add_argument("--rounds", type=int, default=2)
    args = parser.parse_args()
    chosen = [p.strip() for p in args.providers.split(",") if p.strip()]
    unknown = [p for p in chosen if p not in KEYS]
    if unknown or args.rounds < 1:
        parser.error(f"--providers: choose from {', '.join(KEYS)}; --rounds at least 1")
    print(f"CPU cores: {mp.cpu_count()}; {args.workers} requests in flight; {args.rounds} "
          "rounds of (a) then (c) per provider")
    summary = {}
    with tempfile.TemporaryDirectory() as tmp:
        for provider in chosen:
            n = args.ses_recipients if provider == "ses" else args.recipients
            summary[provider] = bench(provider, n, args.workers, args.rounds, Path(tmp))
    print("\nsummary (medians over rounds)   [targets: (c)/(a) >= 80%, peak < 150 MB]")
    print(f"{'provider':10} {'recipients':>11} {'(a) s':>8} {'(c) s':>8} {'(c)/(a)':>8} "
          f"{'per round':>14} {'by CPU':>7} {'peak MB':>8} {'exactly once':>13}")
    for provider, s in summary.items():
        print(f"{provider:10} {s['n']:>11,} {s['a']:>8.1f} {s['c']:>8.1f} {s['ratio']:>8.0%} "
              f"{', '.join(f'{r:.0%}' for r in s['ratios']):>14} {s['by_cpu']:>7.0%} "
              f"{s['peak']:>8.0f} {'yes' if s['once'] else 'NO':>13}")
    print(f"load average now {os.getloadavg()[0]:.1f} on {mp.cpu_count()} cores (shared)")
    if not all(s["once"] for s in summary.values()):
        raise SystemExit(1)


if __name__ == "__main__":
    main()
