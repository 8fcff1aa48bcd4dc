"""The progress journal, and how ``ledger.reconcile`` settles a dead worker's batch from it.

A worker "dies" here by an exception escaping the backend at a chosen moment (the
journal is then left as ``kill -9`` leaves it: its lines written, the lock released);
tests/test_send_crash.py does the same with real ``kill -9``.
"""

from __future__ import annotations

import errno
import os
import uuid
from pathlib import Path

import pytest

from newsletter.audience.subscribers import unsubscribe
from newsletter.delivery import journal, ledger, sending
from newsletter.delivery.backends.smtp import SMTPBackend

from .sendtools import make_project, seed
from .smtpserver import SMTPTestServer

ISSUE = "issues/2026-11-24.md"


def _rows(*seqs: int) -> list[tuple]:
    return [(seq, f"r{seq}@example.com", None, seq) for seq in seqs]


def test_marks_are_read_back_once_the_writer_is_gone(tmp_path: Path) -> None:
    worker = uuid.uuid4().hex
    kept = journal.Journal.create(tmp_path, worker)
    assert kept is not None
    kept.begin(7)
    log = kept.log(_rows(11, 12, 13, 14), 3)
    log.handing(0)
    log.answered(0, True)
    log.handing(1)
    log.answered(1, False)  # refused: nothing delivered
    log.handing(2)  # ... and the process dies here
    assert journal.read(tmp_path, worker) is None  # the writer lives: not to be believed
    kept.close()  # a batch unrecorded: the file stays, unlocked
    marks = journal.read(tmp_path, worker)
    assert marks == {7: journal.Marks(rest=None, each={11: "A", 12: "R", 13: "D"})}
    assert kept.path.stat().st_mode & 0o777 == 0o600  # it names subscribers' ids
    journal.remove(tmp_path, worker)
    assert not kept.path.exists()


def test_group_marks_and_a_recorded_batch(tmp_path: Path) -> None:
    worker = uuid.uuid4().hex
    kept = journal.Journal.create(tmp_path, worker)
    assert kept is not None
    kept.begin(1)
    kept.log(_rows(1, 2), 3).handing_group()
    kept.recorded()  # the answer is in the ledger: the lines go
    kept.begin(2)
    log = kept.log(_rows(5, 6, 7), 3, whole=False)  # one of the batch was not sendable
    log.handing_group()
    log.answered_group([0, 2], True)
    kept.close()
    assert journal.read(tmp_path, worker) == {
        2: journal.Marks(rest=None, each={5: "A", 6: "D", 7: "A"})}
    whole = journal.Marks()
    whole.mark("D", b"*")
    whole.mark("A", b"*")
    assert whole == journal.Marks(rest="A", each={})


def test_a_journal_from_before_a_reboot_or_damaged_is_not_believed(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    worker = uuid.uuid4().hex
    kept = journal.Journal.create(tmp_path, worker)
    assert kept is not None
    kept.begin(3)
    kept.close()
    assert journal.read(tmp_path, worker) == {3: journal.Marks()}
    monkeypatch.setattr(journal, "_boot", ["another-boot"])  # a power cut, a reboot
    assert journal.read(tmp_path, worker) is None
    monkeypatch.undo()
    with kept.path.open("ab") as handle:
        handle.write(b"D 1")  # no newline: not a line this code writes
    assert journal.read(tmp_path, worker) is None
    assert journal.read(tmp_path, uuid.uuid4().hex) is None  # none for that worker
    assert journal.read(tmp_path, "../etc/passwd") is None


def test_a_line_that_cannot_be_written_removes_the_journal(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    worker = uuid.uuid4().hex
    kept = journal.Journal.create(tmp_path, worker)
    assert kept is not None
    kept.begin(1)

    def full(fd: int, data: bytes) -> int:
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(os, "write", full)
    kept.log(_rows(1), 3).handing(0)
    monkeypatch.undo()
    assert not kept.active and not kept.path.exists()  # never believed with a line missing
    assert journal.read(tmp_path, worker) is None


class _Died(BaseException):
    """Stands for the process's death: nothing after it runs."""


def _die_after(backend: SMTPBackend, stage: str, at: int) -> None:
    """Make the backend "die" at message ``at``: right after its end of data went out
    (``stage="data"``) or right after the server's 250 (``stage="answer"``)."""
    original = backend._transaction
    count = {"n": 0}

    def transaction(conn, sender, message, progress=None, index=0):
        count["n"] += 1
        if count["n"] == at and stage == "data":
            sock = conn.sock

            class Sock:
                def __getattr__(self, name):
                    return getattr(sock, name)

                def sendall(self, data):
                    sock.sendall(data)
                    if data.endswith(b"\r\n.\r\n"):
                        raise _Died()

            conn.sock = Sock()
        outcome = original(conn, sender, message, progress, index)
        if count["n"] == at and stage == "answer":
            raise _Died()
        return outcome

    backend._transaction = transaction  # type: ignore[method-assign]


@pytest.mark.parametrize(("stage", "at", "sent", "uncertain"),
                         [("data", 5, 4, 1), ("answer", 5, 5, 0), ("data", 6, 5, 1)])
def test_a_worker_that_dies_mid_batch_leaves_one_uncertain(
    tmp_path: Path, stage: str, at: int, sent: int, uncertain: int,
    monkeypatch: pytest.MonkeyPatch) -> None:
    with SMTPTestServer(record=False) as smtp:
        settings = make_project(tmp_path / "p").model_copy(update={"smtp_url": smtp.url})
        engine = seed(settings, 30)
        prepared = sending.preflight(settings, settings.project_dir / ISSUE)
        send = sending.start(engine, settings, prepared, "daily", backend="smtp").send
        real = SMTPBackend.from_settings

        def dying(cls, settings, *, workers=None):
            backend = real(settings, workers=workers)
            _die_after(backend, stage, at)
            return backend

        monkeypatch.setattr(SMTPBackend, "from_settings", classmethod(dying))
        with pytest.raises(_Died):
            sending.run(engine, settings, send.id, backend="smtp", workers=1)
        monkeypatch.undo()
        assert sum(smtp.counts.values()) == at  # the last one went out
        unsubscribe(engine, "r20@example.com")  # while in the dead batch (not pending)
        ledger.reconcile(engine, send.id)
        counts = ledger.get_send(engine, send.id).counts
        # the last one is uncertain if it died before its 250 was read, else sent
        expected = {"sent": sent, "uncertain": uncertain, "pending": 29 - at, "skipped": 1}
        assert counts == {k: n for k, n in expected.items() if n}, counts
        skipped = ledger.recipients(engine, send.id, ["skipped"])
        assert [(r.email, r.reason) for r in skipped] == [("r20@example.com", "unsubscribed")]
        folder = journal.folder_for(settings.project_dir)
        assert folder.stat().st_mode & 0o777 == 0o700
        assert list(folder.iterdir()) == []  # settled: the journal is removed
        result = sending.run(engine, settings, send.id, backend="smtp")
        assert result.counts == {k: n for k, n in {"sent": 29 - uncertain, "skipped": 1,
                                                    "uncertain": uncertain}.items() if n}
        assert max(smtp.counts.values()) == 1 and len(smtp.counts) == 29  # all but r20
        engine.dispose()


def test_without_a_journal_to_believe_the_whole_batch_is_uncertain(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    with SMTPTestServer(record=False) as smtp:
        settings = make_project(tmp_path / "p").model_copy(update={"smtp_url": smtp.url})
        engine = seed(settings, 30)
        prepared = sending.preflight(settings, settings.project_dir / ISSUE)
        send = sending.start(engine, settings, prepared, "daily", backend="smtp").send
        real = SMTPBackend.from_settings

        def dying(cls, settings, *, workers=None):
            backend = real(settings, workers=workers)
            _die_after(backend, "answer", 5)
            return backend

        monkeypatch.setattr(SMTPBackend, "from_settings", classmethod(dying))
        with pytest.raises(_Died):
            sending.run(engine, settings, send.id, backend="smtp", workers=1)
        monkeypatch.undo()
        monkeypatch.setattr(journal, "_boot", ["after-a-power-cut"])
        ledger.reconcile(engine, send.id)
        counts = ledger.get_send(engine, send.id).counts
        assert counts == {"uncertain": 30}, counts  # the batch: all 30 of them
        engine.dispose()
