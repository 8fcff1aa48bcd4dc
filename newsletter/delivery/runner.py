"""The send loop: claim a batch in the ledger, hand it to the backend, record the answer.

``SendRunner(engine, settings, send, backend).run()`` drives one send to the end (or
until ``stop`` is set: the batches in flight finish and are recorded first). It runs
``workers`` threads (plus the backend's ``prepares_ahead``: threads that build the next
requests while ``workers`` are out, ``BackendBase.request_slot``), each a worker of its
own in the ledger with its own database connection, each claiming batches of ``backend.batch_size`` (or the
``send_batch_size`` setting). Recipients refused for now
(temporary failures) are retried within the run, up to ``ledger.MAX_ATTEMPTS`` tries,
after a growing pause. The HTML was rendered once, when the send was created; each
message is personalised by substitution (``personalize.prepare``).

Each worker keeps a progress journal (``journal``): the backend writes a line right
before each message leaves and one when it is answered, so that if the process dies mid-
batch, ``ledger.reconcile`` knows who got it (sent), who may have (uncertain: one per
connection or request in flight) and who did not (pending).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from sqlalchemy.engine import Engine

from ..authoring.render import Rendered
from ..config import Settings
from ..errors import NewsletterError
from . import claims, journal, ledger, ratelimit, senders, variants
from .backends.base import Backend, BackendUnavailable, Status
from .personalize import prepare

_OUTCOME = {
    Status.SENT: "sent",
    Status.TEMPORARY: "temporary",
    Status.PERMANENT: "failed",
    Status.UNCERTAIN: "uncertain",
}
HEARTBEAT_SECONDS = 5.0
SNAPSHOT_CHUNK = 20_000  # recipients copied per transaction while batches go out
SEQ = claims.ClaimedRow._fields.index("seq")  # where the journal finds a row's seq
KEEP_JOURNALS = True  # benchmarks turn it off to measure what the journal costs


@dataclass
class Progress:
    total: int
    counts: dict[str, int] = field(default_factory=dict)
    started: float = field(default_factory=time.monotonic)

    @property
    def done(self) -> int:
        return sum(self.counts.get(s, 0) for s in ("sent", "failed", "skipped", "uncertain"))

    @property
    def elapsed(self) -> float:
        return time.monotonic() - self.started


def _unsendable(exc: Exception) -> str:
    """The ledger's reason for a message that could not be built: one line, bounded."""
    detail = " ".join(str(exc).split())[:300]
    if isinstance(exc, ValueError):
        return f"not sendable: {detail}"
    return f"message could not be built: {type(exc).__name__}: {detail}"


class SendRunner:
    def __init__(
        self,
        engine: Engine,
        settings: Settings,
        send: ledger.SendInfo,
        backend: Backend,
        *,
        workers: int | None = None,
        on_progress: Callable[[Progress], None] | None = None,
        stop: threading.Event | None = None,
        retry_delay: float = 2.0,
        max_attempts: int = ledger.MAX_ATTEMPTS,
    ) -> None:
        self.engine = engine
        self.settings = settings
        self.send = send
        self.backend = backend
        self.workers = max(1, workers or getattr(backend, "concurrency", 1))
        # threads: the workers, and those that build the next requests while the
        # backend's ``concurrency`` are out (``BackendBase.request_slot``)
        self.threads = self.workers + max(0, getattr(backend, "prepares_ahead", 0))
        self.batch_size = settings.send_batch_size or backend.batch_size
        # max_rate: shared with every worker of every process (one second's worth a batch)
        self.pace = ratelimit.for_backend(engine, settings, getattr(backend, "name", ""))
        if self.pace is not None:
            self.batch_size = min(self.batch_size, self.pace.batch_cap)
        self._logs = bool(getattr(backend, "logs_progress", False))  # takes progress=
        self.on_progress = on_progress
        self.stop = stop or threading.Event()
        self.retry_delay = retry_delay
        self.max_attempts = max_attempts
        self.error: BaseException | None = None
        self._lock = threading.Lock()
        self._worker_ids: list[str] = []
        self._journals: dict[str, journal.Journal | None] = {}
        self.progress = Progress(total=send.total, counts=dict(send.counts))
        # the snapshot, when it is still being written: workers that find nothing pending
        # wait for its next chunk rather than stop
        self._grown = threading.Condition()
        self._chunks = 0
        self._snapshot_open = send.snapshotting
        self._ahead = send.counts.get("pending", 0)  # snapshotted, not yet claimed

    # -- the run ---------------------------------------------------------------------

    def run(self) -> ledger.SendInfo:
        send = self.send
        if ledger.reconcile(self.engine, send.id):  # batches of dead workers, from journals
            self.progress.counts = dict(ledger.get_send(self.engine, send.id).counts)
        html, text = ledger.send_content(self.engine, send.id)
        self.template = prepare(
            Rendered(html=html, text=text, subject=send.subject, preheader=None),
            self.settings,
            send_id=send.id,
            list_id=send.list_id or 0,
            list_name=send.list_name,
            test=send.kind == "test",
        )
        self.template = variants.personalise(self.engine, send.id, self.template)
        folder = journal.folder_for(self.settings.project_dir) if KEEP_JOURNALS else None
        self._worker_ids = [senders.register_worker(self.engine, send.id,
                                                   str(folder) if folder else None)
                            for _ in range(self.threads)]
        self._journals = {wid: journal.Journal.create(folder, wid) if folder else None
                          for wid in self._worker_ids}
        beat_stop = threading.Event()
        beat = threading.Thread(target=self._heartbeat, args=(beat_stop,), daemon=True)
        beat.start()
        snapshot = threading.Thread(target=self._snapshot, daemon=True)
        if self._snapshot_open:
            snapshot.start()
        try:
            with self.backend:
                attempt = 0
                while True:
                    self._run_workers()
                    if self.stop.is_set() or self.error is not None:
                        break
                    attempt += 1
                    if not self.progress.counts.get("temporary"):
                        break  # nothing to retry (and no need to look through every row)
                    again = ledger.requeue(self.engine, send.id, ["temporary"],
                                           max_attempts=self.max_attempts)
                    if not again:
                        break
                    self._refresh()
                    if self.stop.wait(min(self.retry_delay * attempt, 60.0)):
                        break
        finally:
            if snapshot.is_alive():
                self.stop.set()  # the workers have stopped: so does the snapshot
                snapshot.join()
            beat_stop.set()
            beat.join(timeout=10)
            for worker_id in self._worker_ids:
                if (kept := self._journals.get(worker_id)) is not None:
                    kept.close()  # first: once the worker is stopped, others may read it
                senders.stop_worker(self.engine, worker_id)
        settled = ledger.settle(self.engine, send.id)
        if self.error is not None and not isinstance(self.error, NewsletterError):
            raise self.error
        return settled

    def _run_workers(self) -> None:
        if self.threads == 1:
            self._worker(self._worker_ids[0])
            return
        threads = [threading.Thread(target=self._worker, args=(wid,), daemon=True)
                   for wid in self._worker_ids]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()

    def _worker(self, worker_id: str) -> None:
        kept = self._journals.get(worker_id)
        try:
            claimed = None if self.stop.is_set() else self._claim(worker_id)
            while claimed is not None:
                batch_id, recipients = claimed
                answer = self._deliver(batch_id, recipients, kept)
                if answer is None:  # backend unavailable: batch released, stop
                    return
                if self.stop.is_set():
                    claims.record_batch(self.engine, self.send.id, batch_id, answer)
                    claimed = None
                    if kept is not None:
                        kept.recorded()  # the answer is in the ledger
                else:  # record this answer and claim the next batch in one commit
                    claimed = claims.record_and_claim(self.engine, self.send, batch_id,
                                                      answer, worker_id, self.batch_size)
                    if kept is not None:
                        kept.recorded()
                    if claimed is None:
                        # Nothing pending as that statement saw it: the snapshot may have
                        # committed its last chunk while it ran (or be about to), so ask
                        # again in a fresh statement (``_claim`` waits for the next chunk
                        # while the snapshot is open, and returns None only once it is
                        # closed and nothing is pending).
                        claimed = self._claim(worker_id)
                    elif claimed is not None:
                        self._claimed(len(claimed[1]))
                self._count(answer, len(recipients))
        except BaseException as exc:  # a database failure stops every worker
            with self._lock:
                self.error = self.error or exc
            self.stop.set()

    def _claim(self, worker_id: str) -> tuple[int, list[claims.ClaimedRow]] | None:
        """The next batch; while the snapshot is being written, waits for more rows."""
        while True:
            with self._grown:
                seen, still_open = self._chunks, self._snapshot_open
            claimed = claims.claim_batch(self.engine, self.send, worker_id, self.batch_size)
            if claimed is not None:
                self._claimed(len(claimed[1]))
                return claimed
            if not still_open or self.stop.is_set():
                return None
            with self._grown:
                # Nothing pending: whatever this process counted as ahead was claimed (by
                # another process sharing the send), so the snapshot must copy more now.
                self._ahead = 0
                self._grown.notify_all()
                self._grown.wait_for(
                    lambda seen=seen: self._chunks != seen or self.stop.is_set(), timeout=1.0)

    def _claimed(self, rows: int) -> None:
        with self._grown:
            self._ahead -= rows
            if self._snapshot_open and self._ahead < 2 * SNAPSHOT_CHUNK:
                self._grown.notify_all()

    def _snapshot(self) -> None:
        """Copy the rest of the send's recipients, a chunk per transaction.

        Paced to stay two chunks ahead of the claims, so that its transactions (which hold
        the database's write lock) come one at a time between batches rather than back to
        back while the workers wait.
        """
        try:
            while not self.stop.is_set():
                with self._grown:
                    if not self._grown.wait_for(lambda: self._ahead < 2 * SNAPSHOT_CHUNK,
                                                timeout=0.5):
                        continue  # far enough ahead (and look at stop again)
                total, after = ledger.continue_snapshot(self.engine, self.send.id,
                                                        SNAPSHOT_CHUNK)
                with self._lock:
                    added = total - self.progress.total
                    self.progress.total = total
                    counts = self.progress.counts
                    counts["pending"] = counts.get("pending", 0) + added
                with self._grown:
                    self._ahead += added
                    self._chunks += 1
                    self._snapshot_open = after is not None
                    self._grown.notify_all()
                if after is None:
                    return
        except BaseException as exc:  # a database failure stops every worker
            with self._lock:
                self.error = self.error or exc
            self.stop.set()
        finally:
            with self._grown:
                self._snapshot_open = False
                self._grown.notify_all()

    def _messages(self, recipients: list[claims.ClaimedRow]
                  ) -> tuple[list, list[claims.ClaimedRow], list[claims.Outcome]]:
        """The batch's messages, their recipients, and permanent failures for those whose
        message cannot be built (claimed rows are ``claims.ClaimedRow``): one bad
        address or name fails alone, before the backend sends any of the batch."""
        build = self.template.messages
        mime = getattr(self.backend, "writes_mime", True)
        try:
            return build(recipients, headers=mime), recipients, []
        except Exception:  # find the recipients that cannot be built, keep the others
            messages, kept, refused = [], [], []
            for r in recipients:
                try:
                    messages += build((r,), headers=mime)
                    kept.append(r)
                except Exception as exc:  # whatever this one recipient's message raised
                    refused.append(claims.Outcome(r.seq, "failed", _unsendable(exc)))
            return messages, kept, refused

    def _deliver(self, batch_id: int, recipients: list[claims.ClaimedRow],
                 kept: journal.Journal | None = None) -> claims.Answer | None:
        """Hand the batch to the backend; its answer (None: backend unavailable)."""
        if self.pace is not None and not self.pace.wait(len(recipients), self.stop):
            claims.release_batch(self.engine, self.send.id, batch_id)  # stopped: unsent
            return None
        low, high = recipients[0].seq, recipients[-1].seq
        refused: list[claims.Outcome] = []
        if kept is not None:
            kept.begin(batch_id)
        try:
            # the backend's row path (None: not handled, take the general path)
            results = None if self.template.variants else self.backend.send_rows(
                self.template, recipients, **self._progress(kept, recipients, True))
            if results is None:
                messages, sendable, refused = self._messages(recipients)
                progress = self._progress(kept, sendable, len(sendable) == len(recipients))
                recipients = sendable
                results = self.backend.send_batch(messages, **progress) if messages else []
        except BackendUnavailable as exc:
            claims.release_batch(self.engine, self.send.id, batch_id)
            if kept is not None:
                kept.recorded()
            with self._lock:
                self.error = self.error or exc
            self.stop.set()
            return None
        except Exception as exc:  # a backend bug: the batch may or may not have gone out
            verdict = claims.Verdict("uncertain", f"{type(exc).__name__}: {exc}")
            return claims.Answer(low, high, refused, verdict)
        if len(results) != len(recipients):
            verdict = claims.Verdict("uncertain", "backend returned no outcome")
            return claims.Answer(low, high, refused, verdict)
        if results and results.count(first := results[0]) == len(results):
            # one answer for all (one SendGrid request): one statement records it
            verdict = claims.Verdict(_OUTCOME[first.status], first.reason, first.provider_id)
            return claims.Answer(low, high, refused, verdict)
        each = [
            claims.Outcome(r.seq, _OUTCOME[res.status], res.reason, res.provider_id)
            for r, res in zip(recipients, results, strict=True)
        ]
        return claims.Answer(low, high, refused + each)

    def _progress(self, kept: journal.Journal | None, rows: list[claims.ClaimedRow], whole: bool
                  ) -> dict[str, journal.BatchLog]:
        """The keyword that gives the backend the journal's log for ``rows`` (``whole``:
        all of the batch). A backend that cannot write one: the whole batch is marked as
        in flight now, before it is called."""
        if kept is None:
            return {}
        log = kept.log(rows, SEQ, whole=whole)
        if self._logs:
            return {"progress": log}
        log.handing_group()
        return {}

    def _count(self, answer: claims.Answer, claimed: int) -> None:
        """Add a recorded batch of ``claimed`` recipients to the progress counts."""
        with self._lock:
            counts = self.progress.counts
            for outcome in answer.each:
                counts[outcome.status] = counts.get(outcome.status, 0) + 1
            if answer.rest is not None:
                rest = claimed - len(answer.each)
                counts[answer.rest.status] = counts.get(answer.rest.status, 0) + rest
            counts["pending"] = max(0, counts.get("pending", 0) - claimed)
        self._report()

    def _refresh(self) -> None:
        with self._lock:
            self.progress.counts = dict(ledger.get_send(self.engine, self.send.id).counts)
        self._report()

    def _report(self) -> None:
        if self.on_progress is not None:
            self.on_progress(self.progress)

    def _heartbeat(self, done: threading.Event) -> None:
        while not done.wait(HEARTBEAT_SECONDS):
            for worker_id in self._worker_ids:
                try:
                    claims.heartbeat(self.engine, worker_id)
                except Exception:  # the next beat tries again; a dead database stops workers
                    break
