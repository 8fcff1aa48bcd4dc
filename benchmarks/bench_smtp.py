"""SMTP delivery speed: 50,000 recipients to a local sink, side by side in one run.

(a) a plain smtplib loop that opens one connection per message (run on ``--plain``
    messages, default 2,000; the rate is extrapolated);
(b) a raw client that replays pre-built messages over one connection: the practical
    ceiling of one connection (MAIL / RCPT / DATA round trips, nothing else);
(b') the same raw client over ``--workers`` connections at once;
(c) our SMTP backend: personalization (token, Message-ID, MIME bytes) included,
    ``--workers`` pooled connections, batches of ``backend.batch_size``;
(d) the whole ``newsletter send`` path, ledger (SQLite) included: ``sending.preflight``
    (validate + render the issue), ``sending.start`` (record the send, snapshot the
    recipients) and ``sending.run`` (claim batches, personalise, send, record each answer)
    with ``--workers`` connections, in its own freshly spawned process. The subscribers
    are seeded before the clock starts (another process); its peak memory is that
    process's peak RSS (VmHWM), interpreter and imports included. Afterwards the ledger
    must say every recipient was sent.
Target (issue 5): (c) and (d) at least 80% of (b).

``--journal``: instead, (d) only, with and without the per-message progress journal
(``newsletter.delivery.journal``: two ``os.write`` per message), in ``--rounds`` rounds
that alternate which goes first, each from a fresh copy of the seeded project; prints
each run, the medians, their ratio, and wall and CPU seconds per million recipients.

The sink runs in its own process (so it does not share the client's GIL): ``aiosmtpd``
(tests/smtpserver.py, counting only) and/or ``fast``, a minimal asyncio SMTP responder,
to show how much of the ceiling the sink itself sets. After each phase the sink's
counts are checked: every recipient exactly once.

Run: python benchmarks/bench_smtp.py [--recipients 50000] [--plain 2000] [--workers 4]
                                     [--sink aiosmtpd|fast|both]
     python benchmarks/bench_smtp.py --journal --sink fast --recipients 20000 --rounds 5
"""

from __future__ import annotations

import argparse
import asyncio
import multiprocessing as mp
import os
import re
import resource
import shutil
import smtplib
import socket
import statistics
import sys
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "benchmarks"))

from measure import peak_rss_mb  # noqa: E402

FROM = "news@example.org"
POOL = 1000  # distinct pre-built messages the raw client cycles through


# -- sinks (run in a child process) ---------------------------------------------------------


class _FastSink(asyncio.Protocol):
    """Just enough SMTP for smtplib and the raw client: counts recipients of each DATA."""

    counts: Counter[str] = Counter()

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]
        self.buffer = b""
        self.in_data = False
        self.rcpts: list[str] = []
        transport.write(b"220 fast sink ESMTP\r\n")  # type: ignore[attr-defined]

    def data_received(self, data: bytes) -> None:
        self.buffer += data
        while True:
            if self.in_data:
                if self.buffer.startswith(b".\r\n"):
                    end, skip = 0, 3
                else:
                    end = self.buffer.find(b"\r\n.\r\n")
                    if end < 0:
                        return
                    skip = 5
                self.buffer = self.buffer[end + skip :]
                self.in_data = False
                for rcpt in self.rcpts:
                    _FastSink.counts[rcpt] += 1
                self.rcpts = []
                self.transport.write(b"250 2.0.0 queued\r\n")  # type: ignore[attr-defined]
                continue
            end = self.buffer.find(b"\r\n")
            if end < 0:
                return
            line, self.buffer = self.buffer[:end], self.buffer[end + 2 :]
            verb = line[:4].upper()
            if verb == b"EHLO":
                out = b"250-fast sink\r\n250-8BITMIME\r\n250 SMTPUTF8\r\n"
            elif verb == b"HELO" or verb == b"MAIL" or verb == b"RSET" or verb == b"NOOP":
                out = b"250 OK\r\n"
            elif verb == b"RCPT":
                match = re.search(rb"<([^>]*)>", line)
                self.rcpts.append(match.group(1).decode().lower() if match else "")
                out = b"250 OK\r\n"
            elif verb == b"DATA":
                self.in_data = True
                out = b"354 go ahead\r\n"
            elif verb == b"QUIT":
                self.transport.write(b"221 bye\r\n")  # type: ignore[attr-defined]
                self.transport.close()
                return
            else:
                out = b"502 not implemented\r\n"
            self.transport.write(out)  # type: ignore[attr-defined]


def _stats(counts: Counter[str]) -> dict[str, int]:
    return {
        "messages": sum(counts.values()),
        "distinct": len(counts),
        "duplicates": sum(1 for v in counts.values() if v > 1),
    }


def run_sink(kind: str, conn) -> None:  # child process entry point
    if kind == "fast":
        loop = asyncio.new_event_loop()
        server = loop.run_until_complete(loop.create_server(_FastSink, "127.0.0.1", 0))
        port = server.sockets[0].getsockname()[1]
        threading.Thread(target=loop.run_forever, daemon=True).start()

        def counts() -> Counter[str]:
            return _FastSink.counts

        def reset() -> None:
            loop.call_soon_threadsafe(_FastSink.counts.clear)
    else:
        from tests.smtpserver import SMTPTestServer

        srv = SMTPTestServer(record=False).start()
        port = srv.port

        def counts() -> Counter[str]:
            return srv.counts

        def reset() -> None:
            srv.reset()
    conn.send(port)
    while True:
        command = conn.recv()
        if command == "stats":
            conn.send(_stats(counts()))
        elif command == "reset":
            reset()
            conn.send("ok")
        else:
            conn.send("bye")
            return


class Sink:
    def __init__(self, kind: str) -> None:
        ctx = mp.get_context("spawn")
        self.kind = kind
        self.conn, child = ctx.Pipe()
        self.process = ctx.Process(target=run_sink, args=(kind, child), daemon=True)
        self.process.start()
        self.port: int = self.conn.recv()

    def stats(self) -> dict[str, int]:
        self.conn.send("stats")
        return self.conn.recv()

    def reset(self) -> None:
        self.conn.send("reset")
        self.conn.recv()

    def stop(self) -> None:
        self.conn.send("stop")
        self.conn.recv()
        self.process.join(5)


# -- clients ------------------------------------------------------------------------------


def address(i: int) -> str:
    return f"user{i}@example.com"


def plain_loop(port: int, messages: list[bytes], count: int) -> None:
    for i in range(count):
        with smtplib.SMTP("127.0.0.1", port) as conn:
            conn.sendmail(FROM, [address(i)], messages[i % len(messages)])


def _reply(reader) -> bytes:
    while True:
        line = reader.readline()
        if not line:
            raise ConnectionError("sink closed the connection")
        if line[3:4] != b"-":
            return line


def raw_replay(port: int, payloads: list[bytes], indices: range) -> None:
    """MAIL / RCPT / DATA round trips over one socket, messages already dot-stuffed."""
    sock = socket.create_connection(("127.0.0.1", port))
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    reader = sock.makefile("rb")
    _reply(reader)
    sock.sendall(b"EHLO bench\r\n")
    _reply(reader)
    mail = f"MAIL FROM:<{FROM}>\r\n".encode()
    for i in indices:
        sock.sendall(mail)
        _reply(reader)
        sock.sendall(f"RCPT TO:<{address(i)}>\r\n".encode())
        _reply(reader)
        sock.sendall(b"DATA\r\n")
        _reply(reader)
        sock.sendall(payloads[i % len(payloads)])
        if not _reply(reader).startswith(b"250"):
            raise RuntimeError("message refused")
    sock.sendall(b"QUIT\r\n")
    _reply(reader)
    sock.close()


def ours(port: int, template, count: int, workers: int) -> tuple[int, int]:
    from newsletter.delivery.backends.smtp import SMTPBackend, parse_smtp_url
    from newsletter.delivery.personalize import Recipient

    backend = SMTPBackend(parse_smtp_url(f"smtp://127.0.0.1:{port}"), workers=workers)
    size = backend.batch_size
    lock = threading.Lock()
    cursor = iter(range(0, count, size))
    failures = 0

    def batches() -> Iterator[range]:
        while True:
            with lock:
                start = next(cursor, None)
            if start is None:
                return
            yield range(start, min(start + size, count))

    def worker() -> int:
        bad = 0
        for batch in batches():
            people = [Recipient(i, address(i), f"Reader {i}" if i % 3 else None) for i in batch]
            results = backend.send_batch(template.messages(people))
            bad += sum(1 for r in results if not r.ok)
        return bad

    backend.open()
    with ThreadPoolExecutor(workers) as pool:
        failures = sum(pool.map(lambda _: worker(), range(workers)))
    backend.close()
    return failures, backend.connections_made


def _seed(project: str, count: int) -> None:  # child process: subscribers r1..rN
    from tests.sendtools import make_project, seed

    seed(make_project(Path(project)), count).dispose()


def run_send(project: str, port: int, workers: int, conn, journal: bool = True
             ) -> None:  # child process
    """What ``newsletter send ISSUE --list daily --backend smtp --yes`` does, timed."""
    from newsletter.config import load_settings
    from newsletter.db.connect import open_store
    from newsletter.delivery import runner as delivery_engine
    from newsletter.delivery import sending

    delivery_engine.KEEP_JOURNALS = journal

    settings = load_settings(project, smtp_url=f"smtp://127.0.0.1:{port}")
    engine = open_store(settings)
    before = resource.getrusage(resource.RUSAGE_SELF)
    started = time.perf_counter()
    prepared = sending.preflight(settings, Path(project) / "issues" / "2026-11-24.md")
    send = sending.start(engine, settings, prepared, "daily", backend="smtp").send
    snapshot = time.perf_counter() - started
    result = sending.run(engine, settings, send.id, backend="smtp", workers=workers)
    seconds = time.perf_counter() - started
    after = resource.getrusage(resource.RUSAGE_SELF)
    engine.dispose()
    conn.send({"seconds": seconds, "snapshot": snapshot, "counts": result.counts,
               "status": result.status, "total": send.total,
               "cpu": after.ru_utime + after.ru_stime - before.ru_utime - before.ru_stime,
               "rss_mb": peak_rss_mb()})


def whole_send(project: str, port: int, workers: int, journal: bool = True) -> dict:
    ctx = mp.get_context("spawn")
    parent, child = ctx.Pipe()
    process = ctx.Process(target=run_send, args=(project, port, workers, child, journal))
    process.start()
    child.close()  # so that recv() sees EOF if the child dies without answering
    try:
        return parent.recv()
    except EOFError:
        process.join()
        raise RuntimeError(f"(d): the sending process died (exit code {process.exitcode}); "
                           "its traceback is above") from None
    finally:
        process.join()


# -- the run ------------------------------------------------------------------------------


CPU: list[float] = []  # client CPU seconds of the last timed phase


def timed(fn: Callable[[], object]) -> float:
    before = resource.getrusage(resource.RUSAGE_SELF)
    started = time.perf_counter()
    fn()
    seconds = time.perf_counter() - started
    after = resource.getrusage(resource.RUSAGE_SELF)
    CPU.append(after.ru_utime + after.ru_stime - before.ru_utime - before.ru_stime)
    return seconds


def check(sink: Sink, expected: int, label: str) -> str:
    stats = sink.stats()
    ok = stats["messages"] == expected and stats["distinct"] == expected
    sink.reset()
    return "ok" if ok and not stats["duplicates"] else f"MISMATCH {stats} (expected {expected})"


def bench(kind: str, template, count: int, plain: int, workers: int, seeded: Path) -> None:
    from newsletter.delivery.personalize import Recipient

    sink = Sink(kind)
    sent: dict = {}
    try:
        messages = [
            template.message(Recipient(i, address(i), f"Reader {i}")).as_bytes()
            for i in range(POOL)
        ]
        payloads = [re.sub(rb"(?m)^\.", b"..", m) + b".\r\n" for m in messages]
        size = len(messages[0])
        rows: list[tuple[str, int, float, str]] = []

        seconds = timed(lambda: plain_loop(sink.port, messages, plain))
        rows.append(("(a) smtplib, 1 connection per message", plain, seconds,
                     check(sink, plain, "a")))
        seconds = timed(lambda: raw_replay(sink.port, payloads, range(count)))
        rows.append(("(b) raw replay, 1 connection", count, seconds, check(sink, count, "b")))

        def raw_n() -> None:
            chunks = [range(k, count, workers) for k in range(workers)]
            with ThreadPoolExecutor(workers) as pool:
                list(pool.map(lambda r: raw_replay(sink.port, payloads, r), chunks))

        seconds = timed(raw_n)
        rows.append((f"(b') raw replay, {workers} connections", count, seconds,
                     check(sink, count, "b'")))
        result: dict[str, tuple[int, int]] = {}
        seconds = timed(lambda: result.setdefault("x", ours(sink.port, template, count, workers)))
        failures, connections = result["x"]
        note = check(sink, count, "c")
        if failures:
            note += f", {failures} failed"
        rows.append((f"(c) our backend, {workers} connections ({connections} opened)", count,
                     seconds, note))

        project = seeded.with_name(f"{seeded.name}-{kind}")  # a fresh ledger for each sink
        shutil.copytree(seeded, project)
        sent = whole_send(str(project), sink.port, workers)
        CPU.append(sent["cpu"])
        note = check(sink, count, "d")
        if sent["counts"] != {"sent": count} or sent["status"] != "finished":
            note += f", ledger {sent['status']} {sent['counts']}"
        else:
            note += ", ledger ok"
        rows.append((f"(d) newsletter send, SQLite ledger, {workers} connections", count,
                     sent["seconds"], note))
    finally:
        sink.stop()
    ceiling = rows[1][1] / rows[1][2]
    print(f"\nsink: {kind}; message size {size / 1024:.1f} KB; recipients {count:,}")
    print(f"{'':52} {'messages':>9} {'seconds':>8} {'msg/s':>8} {'vs (b)':>7} "
          f"{'client CPU':>11} {'CPU s':>6} {'peak MB':>7}  check")
    for (label, n, secs, note), cpu in zip(rows, CPU[-len(rows):], strict=True):
        rate = n / secs
        peak = f"{sent['rss_mb']:.0f}" if label.startswith("(d)") else "-"
        print(f"{label:52} {n:>9,} {secs:>8.2f} {rate:>8.0f} {rate / ceiling:>6.0%} "
              f"{cpu / n * 1e6:>7.0f} us {cpu:>6.1f} {peak:>7}  {note}")
    per_50k = 50_000 / (rows[0][1] / rows[0][2])
    print(f"    (a) extrapolated to 50,000 messages: {per_50k:.0f} s; load average now "
          f"{os.getloadavg()[0]:.1f} on {mp.cpu_count()} cores (other jobs share them)")
    print(f"    (d) own spawned process, peak MB its VmHWM; preflight + start (snapshot of "
          f"{sent['total']:,}) {sent['snapshot']:.2f} s; ledger {sent['status']} {sent['counts']}")


def journal_rounds(kind: str, count: int, workers: int, seeded: Path, rounds: int) -> None:
    """(d) with and without the progress journal, alternating, medians and ratio."""
    sink = Sink(kind)
    runs: dict[bool, list[dict]] = {False: [], True: []}
    print(f"\nsink: {kind}; (d) newsletter send, SQLite ledger, {workers} connections, "
          f"{count:,} recipients; {rounds} rounds, the order alternating")
    print(f"{'':34} {'seconds':>8} {'msg/s':>7} {'CPU s':>6} {'peak MB':>7}  check")
    try:
        for k in range(rounds):
            for journal in ((False, True) if k % 2 == 0 else (True, False)):
                project = seeded.with_name(f"{seeded.name}-{kind}-{k}-{int(journal)}")
                shutil.copytree(seeded, project)
                sent = whole_send(str(project), sink.port, workers, journal)
                note = check(sink, count, "d")
                if sent["counts"] != {"sent": count} or sent["status"] != "finished":
                    note += f", ledger {sent['status']} {sent['counts']}"
                shutil.rmtree(project, ignore_errors=True)
                runs[journal].append(sent)
                label = f"round {k + 1} {'with' if journal else 'without'} journal"
                print(f"{label:34} {sent['seconds']:>8.2f} {count / sent['seconds']:>7.0f} "
                      f"{sent['cpu']:>6.2f} {sent['rss_mb']:>7.0f}  {note}", flush=True)
    finally:
        sink.stop()
    print_journal_summary(runs, count)


def journal_cost(messages: int = 200_000, batch: int = 100) -> tuple[float, float]:
    """The journal alone, in this process: microseconds of CPU per message (its D and A
    lines) and per batch (its B line and the truncation once recorded)."""
    import uuid

    from newsletter.delivery.journal import Journal

    rows = [(n, f"r{n}@example.com", None, n) for n in range(batch)]
    with tempfile.TemporaryDirectory() as folder:
        kept = Journal.create(Path(folder), uuid.uuid4().hex)
        if kept is None:
            return float("nan"), float("nan")
        started = time.process_time()
        for first in range(0, messages, batch):
            kept.begin(first)
            log = kept.log(rows, 3)
            for index in range(batch):
                log.handing(index)
                log.answered(index, True)
            kept.recorded()
        total = time.process_time() - started
        started = time.process_time()
        for first in range(0, messages, batch):
            kept.begin(first)
            kept.log(rows, 3)
            kept.recorded()
        per_batch = time.process_time() - started
        kept.close()
    return (total - per_batch) / messages * 1e6, per_batch / (messages / batch) * 1e6


def print_journal_summary(runs: dict[bool, list[dict]], count: int) -> None:
    """Medians with and without the journal, per million recipients, and their ratio."""
    wall = {j: statistics.median(r["seconds"] for r in runs[j]) for j in runs}
    cpu = {j: statistics.median(r["cpu"] for r in runs[j]) for j in runs}
    per = 1e6 / count
    for journal in (False, True):
        print(f"  median {'with   ' if journal else 'without'} journal: wall "
              f"{wall[journal]:.2f} s ({wall[journal] * per:.1f} s per million), CPU "
              f"{cpu[journal]:.2f} s ({cpu[journal] * per:.1f} s per million)")
    print(f"  with / without: wall {wall[True] / wall[False]:.1%}, CPU "
          f"{cpu[True] / cpu[False]:.1%}; load average now {os.getloadavg()[0]:.1f} on "
          f"{mp.cpu_count()} cores")
    message, batch = journal_cost()
    print(f"  the journal alone (this process, CPU): {message:.2f} us per message (its D and "
          f"A lines), {batch:.1f} us per batch (B line, truncation) = "
          f"{message:.1f} s of CPU per million messages sent one by one")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--recipients", type=int, default=50_000)
    parser.add_argument("--plain", type=int, default=2_000)
    parser.add_argument("--workers", type=int, default=4)
    parser.add_argument("--sink", choices=["aiosmtpd", "fast", "both"], default="both")
    parser.add_argument("--journal", action="store_true",
                        help="(d) only, with and without the progress journal, side by side")
    parser.add_argument("--rounds", type=int, default=3, help="with --journal: rounds")
    args = parser.parse_args()

    from tests.delivery_helpers import make_template

    with tempfile.TemporaryDirectory() as tmp:
        template = make_template(Path(tmp) / "briefing", send_id=1, list_id=1)
        seeded = Path(tmp) / "send"
        started = time.perf_counter()
        seeder = mp.get_context("spawn").Process(target=_seed,
                                                 args=(str(seeded), args.recipients))
        seeder.start()
        seeder.join()
        if seeder.exitcode:
            sys.exit(f"seeding the (d) project failed (exit code {seeder.exitcode})")
        print(f"CPU cores: {mp.cpu_count()}; python {sys.version.split()[0]}; seeded "
              f"{args.recipients:,} subscribers (SQLite) for (d) in "
              f"{time.perf_counter() - started:.1f} s (not timed)")
        kinds = ["aiosmtpd", "fast"] if args.sink == "both" else [args.sink]
        for kind in kinds:
            if args.journal:
                journal_rounds(kind, args.recipients, args.workers, seeded, args.rounds)
            else:
                bench(kind, template, args.recipients, args.plain, args.workers, seeded)


if __name__ == "__main__":
    main()
