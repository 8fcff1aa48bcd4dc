"""A big send snapshots its first recipients at once and the rest while batches go out.

The chunk sizes are made tiny here so that a send of a few dozen recipients crosses
several chunks. Run on SQLite and on PostgreSQL.
"""

from __future__ import annotations

import contextlib
from pathlib import Path

import pytest

from newsletter.audience.subscribers import add_subscriber, unsubscribe
from newsletter.delivery import ledger, runner, sending

from .sendtools import make_project, pg_database, seed

ISSUE = "issues/2026-11-24.md"


@pytest.fixture(params=["sqlite", "postgresql"])
def project(request, tmp_path: Path, monkeypatch):
    monkeypatch.setattr(sending, "FIRST_CHUNK", 4)
    monkeypatch.setattr(runner, "SNAPSHOT_CHUNK", 5)
    with pg_database() if request.param == "postgresql" else contextlib.nullcontext() as url:
        settings = make_project(tmp_path / "p", url)
        engine = seed(settings, 23)
        yield settings, engine
        engine.dispose()


def _start(settings, engine) -> ledger.SendInfo:
    prepared = sending.preflight(settings, settings.project_dir / ISSUE)
    return sending.start(engine, settings, prepared, "daily", backend="outbox").send


def _outbox(settings, send_id: int) -> list[str]:
    return sorted(p.name for p in (settings.project_dir / "outbox").glob(f"{send_id}-*.eml"))


@pytest.mark.parametrize("workers", [1, 3])
def test_every_recipient_once_across_chunks(project, workers: int) -> None:
    settings, engine = project
    send = _start(settings, engine)
    assert (send.total, send.snapshotting) == (4, True)  # only the first chunk so far
    result = sending.run(engine, settings, send.id, backend="outbox", workers=workers)
    assert (result.status, result.total, result.counts) == ("finished", 23, {"sent": 23})
    assert not result.snapshotting
    assert _outbox(settings, send.id) == sorted(f"{send.id}-{n}.eml" for n in range(1, 24))


def test_a_send_stopped_mid_snapshot_is_unfinished_and_resumes(project) -> None:
    settings, engine = project
    send = _start(settings, engine)  # as if the process died right after creating it
    info = ledger.get_send(engine, send.id)
    assert info.snapshotting and not info.ok and info.unfinished
    assert ledger.finish_if_done(engine, send.id) is False
    assert ledger.settle(engine, send.id).status == "sending"
    total, after = ledger.continue_snapshot(engine, send.id, 5)
    assert (total, after) == (9, 9)
    result = sending.run(engine, settings, send.id, backend="outbox")  # the resume
    assert (result.status, result.counts) == ("finished", {"sent": 23})


def test_changes_during_the_snapshot(project) -> None:
    settings, engine = project
    send = _start(settings, engine)
    add_subscriber(engine, "new@example.com", lists=["daily"])  # signed up after the start
    unsubscribe(engine, "r2@example.com")  # copied already: skipped by the trigger
    unsubscribe(engine, "r20@example.com")  # not copied yet: never added
    result = sending.run(engine, settings, send.id, backend="outbox")
    assert result.counts == {"sent": 21, "skipped": 1}
    assert result.total == 22
    emails = {r.email for r in ledger.recipients(engine, send.id, ledger.STATUSES, limit=None)}
    assert "new@example.com" not in emails and "r20@example.com" not in emails


@pytest.mark.postgres
def test_two_processes_share_a_send_mid_snapshot(tmp_path: Path, monkeypatch) -> None:
    """Two runners (as two processes would) share a send whose snapshot is still being
    copied: each paces the snapshot by its own claims, so when one takes the rows the
    other copied, both used to wait for each other forever. It finishes, each once."""
    import threading

    monkeypatch.setattr(sending, "FIRST_CHUNK", 4)
    monkeypatch.setattr(runner, "SNAPSHOT_CHUNK", 5)
    monkeypatch.setattr(runner.SendRunner, "__init__", _small_batches(runner.SendRunner.__init__))
    with pg_database() as url:
        settings = make_project(tmp_path / "p", url)
        engine = seed(settings, 150)
        try:
            send = _start(settings, engine)
            runs = [threading.Thread(target=sending.run, args=(engine, settings, send.id),
                                     kwargs={"backend": "outbox", "workers": 1}, daemon=True)
                    for _ in range(2)]
            for run in runs:
                run.start()
            for run in runs:
                run.join(timeout=120)
            assert not any(run.is_alive() for run in runs), "the two runners stalled"
            result = ledger.get_send(engine, send.id)
            assert (result.total, result.counts) == (150, {"sent": 150})
            assert _outbox(settings, send.id) == sorted(
                f"{send.id}-{n}.eml" for n in range(1, 151))
        finally:
            engine.dispose()


def _small_batches(init):
    def patched(self, *args, **kwargs) -> None:
        init(self, *args, **kwargs)
        self.batch_size = 3  # claims of 3 rows against chunks of 5: the runners interleave
    return patched


@pytest.mark.postgres
def test_claims_go_on_while_a_snapshot_chunk_is_copied(tmp_path: Path, monkeypatch) -> None:
    """PostgreSQL: workers claim while the snapshot copies its next chunk. The chunk's
    lock on the send's row must not hold their claims up (a claim's batch row names the
    send, whose key PostgreSQL checks with a share lock that a full row lock blocks): a
    chunk held open here as long as the test likes, a claim made meanwhile is answered
    at once, and the chunk then commits as usual."""
    import threading

    from newsletter.delivery import claims, senders

    monkeypatch.setattr(sending, "FIRST_CHUNK", 4)
    with pg_database() as url:
        settings = make_project(tmp_path / "p", url)
        engine = seed(settings, 30)
        try:
            send = _start(settings, engine)
            worker = senders.register_worker(engine, send.id)
            copying, release = threading.Event(), threading.Event()
            chunk = ledger._snapshot_chunk

            def held(*args, **kwargs):
                copied = chunk(*args, **kwargs)
                copying.set()
                release.wait(60)  # the chunk's transaction stays open until released
                return copied

            monkeypatch.setattr(ledger, "_snapshot_chunk", held)
            snapshot = threading.Thread(target=ledger.continue_snapshot,
                                        args=(engine, send.id, 10), daemon=True)
            snapshot.start()
            assert copying.wait(30)
            claimed: list = []
            claim = threading.Thread(target=lambda: claimed.append(
                claims.claim_batch(engine, send, worker, 3)), daemon=True)
            claim.start()
            claim.join(timeout=10)
            waited = claim.is_alive()
            release.set()
            snapshot.join(timeout=30)
            claim.join(timeout=30)
            assert not waited, "the claim waited for the snapshot chunk to commit"
            assert [r.seq for r in claimed[0][1]] == [1, 2, 3]
            assert ledger.get_send(engine, send.id).total == 14  # 4, then a chunk of 10
        finally:
            engine.dispose()
