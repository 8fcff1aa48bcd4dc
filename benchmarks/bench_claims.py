"""The ledger's hot path alone, on PostgreSQL: the snapshot, then claim-and-answer.

One process, one worker, no backend: a send of ``--recipients`` (default 1,000,000) is
created and its snapshot copied chunk by chunk (as the runner does), then batches of
1,000 are claimed and answered ``sent`` by ``claims.record_and_claim`` until none is
left. Prints the wall time of each ``record_and_claim`` (median, p90) and the CPU
seconds per million of the PostgreSQL backends (``measure.BackendCpu``): the server's
own work for the snapshot and for the claims, which the machine's load hardly changes.

Run: python benchmarks/bench_claims.py [--recipients 1000000]
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "benchmarks"))

from bench_send import _seed  # noqa: E402
from measure import BackendCpu  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--recipients", type=int, default=1_000_000)
    n = parser.parse_args().recipients

    from newsletter.config import load_settings
    from newsletter.db.connect import open_store
    from newsletter.delivery import claims, ledger, senders, sending
    from newsletter.delivery.runner import SNAPSHOT_CHUNK
    from tests.sendtools import pg_database

    with tempfile.TemporaryDirectory() as tmp, pg_database() as url:
        project = Path(tmp) / "p"
        _seed(str(project), url, n)
        settings = load_settings(str(project))
        engine = open_store(settings)
        prepared = sending.preflight(settings, project / "issues" / "2026-11-24.md")
        server = BackendCpu(engine)
        started = time.perf_counter()
        send = sending.start(engine, settings, prepared, "daily", backend="outbox").send
        after = send.snapshot_after
        while after is not None:
            _, after = ledger.continue_snapshot(engine, send.id, SNAPSHOT_CHUNK)
        snapshot, snapshot_cpu = time.perf_counter() - started, server.seconds()
        worker = senders.register_worker(engine, send.id)
        times = []
        claimed = claims.claim_batch(engine, send, worker, 1000)
        while claimed is not None:
            batch_id, rows = claimed
            answer = claims.Answer(rows[0].seq, rows[-1].seq, rest=claims.Verdict("sent"))
            begun = time.perf_counter()
            claimed = claims.record_and_claim(engine, send, batch_id, answer, worker, 1000)
            times.append(time.perf_counter() - begun)
        claims_cpu = server.seconds() - snapshot_cpu
        counts = ledger.get_send(engine, send.id).counts
        engine.dispose()
    per_million = 1e6 / n
    print(f"{n:,} recipients on PostgreSQL: snapshot {snapshot:.1f} s, server CPU "
          f"{snapshot_cpu * per_million:.1f} s per million; record_and_claim median "
          f"{statistics.median(times) * 1e3:.1f} ms, p90 "
          f"{sorted(times)[len(times) * 9 // 10] * 1e3:.1f} ms over {len(times):,} batches, "
          f"server CPU {claims_cpu * per_million:.1f} s per million; ledger {counts}; "
          f"load average {os.getloadavg()[0]:.1f}")


if __name__ == "__main__":
    main()
