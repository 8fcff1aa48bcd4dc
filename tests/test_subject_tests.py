"""Subject tests: 2-4 subjects on a share of the list, the winner to the rest.

The end-to-end test runs the real `newsletter send` and a worker process (with a clock
the test moves, ``tests/ab_worker.py``) against PostgreSQL and the local SMTP server,
kills the worker with SIGKILL while it is deciding, and checks at the SMTP server that
every subscriber received exactly one message, with their own variant's subject or the
winner's.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections import Counter
from pathlib import Path

import pytest
import sqlalchemy as sa

from newsletter.authoring.parse import parse_text
from newsletter.db.tables import send_recipients
from newsletter.delivery import ledger, variants
from newsletter.errors import UsageError

from .sendtools import make_project, pg_database, run_cli, seed
from .smtpserver import SMTPTestServer

ROOT = Path(__file__).resolve().parent.parent
ISSUE = "issues/2026-11-24.md"
SUBJECTS = ["Can a ceasefire hold?", "Three numbers on the ceasefire",
            "What the ceasefire means for you"]


# -- the rules ------------------------------------------------------------------------


def test_two_proportion_z_test_matches_the_textbook_example() -> None:
    p = variants.two_proportion_p(220, 1000, 180, 1000)
    assert p is not None and abs(p - 0.0253) < 0.001
    assert variants.two_proportion_p(5, 0, 1, 10) is None
    assert variants.two_proportion_p(0, 10, 0, 10) == 1.0


def test_the_highest_human_rate_wins_and_a_tie_goes_to_a() -> None:
    sent = {"A": 100, "B": 100, "C": 50}
    assert variants.choose(["A", "B", "C"], sent, {"A": 5, "B": 9, "C": 4}) == "B"
    assert variants.choose(["A", "B", "C"], sent, {"A": 5, "B": 5, "C": 1}) == "A"
    assert variants.choose(["A", "B", "C"], sent, {"A": 5, "B": 5, "C": 3}) == "C"  # 6%
    assert variants.choose(["A", "B"], {}, {}) == "A"


def test_the_split_is_equal_random_and_reproducible_from_the_seed() -> None:
    seqs = list(range(1, 1001))
    split = variants.deal(seqs, 3, 0.2, "seed-1")
    assert [len(s) for s in split] == [67, 67, 67]
    assert len(set().union(*map(set, split))) == 201  # nobody in two variants
    assert split == variants.deal(list(reversed(seqs)), 3, 0.2, "seed-1")
    assert split != variants.deal(seqs, 3, 0.2, "seed-2")
    assert split[0] != sorted(seqs)[:67]  # drawn at random, not the first ids
    assert [len(s) for s in variants.deal([1, 2], 2, 0.2, "s")] == [1, 1]


@pytest.mark.parametrize(("text", "expected"), [("20%", 0.2), ("12.5%", 0.125), ("50", 0.5)])
def test_test_share(text: str, expected: float) -> None:
    assert variants.parse_share(text) == expected


@pytest.mark.parametrize("text", ["0%", "100%", "abc", "-5%", ""])
def test_a_bad_test_share_says_what_to_write(text: str) -> None:
    with pytest.raises(UsageError, match=r"--test-share .*e\.g\. --test-share 20%"):
        variants.parse_share(text)


def test_decide_after() -> None:
    assert variants.parse_after("20m") == dt.timedelta(minutes=20)
    assert variants.parse_after("1h30m") == dt.timedelta(minutes=90)
    for bad in ("20", "30s", "25h", "soon", "20m later"):
        with pytest.raises(UsageError, match="from 1m to 24h"):
            variants.parse_after(bad)


FRONT = "---\nsubject: Can a ceasefire hold?\npreheader: p\ndate: 2026-11-24\n{extra}---\n"
BODY = "\n# Lead: Can a ceasefire hold?\nTalks resume in Doha.\n"


@pytest.mark.parametrize(("extra", "rule"), [
    ("subject_variants:\n  - Only one\n", "subject-variants-count"),
    ("subject_variants: [a, b, c, d, e]\n", "subject-variants-count"),
    ("subject_variants: just text\n", "subject-variants-type"),
    ("subject_variants:\n  - Same words\n  - same  WORDS\n", "subject-variants-duplicate"),
    (f"subject_variants:\n  - Fine\n  - {'x' * 151}\n", "subject-variant-too-long"),
])
def test_front_matter_subject_variants_are_checked_at_their_line(extra: str, rule: str) -> None:
    result = parse_text(FRONT.format(extra=extra) + BODY, "issues/x.md")
    found = [f for f in result.findings if f.rule == rule]
    assert found and found[0].line == 5 and found[0].severity == "error"


def test_front_matter_subject_variants_reach_the_issue() -> None:
    extra = "subject_variants:\n  - One\n  - Two\n"
    result = parse_text(FRONT.format(extra=extra) + BODY, "issues/x.md")
    assert result.issue is not None and result.issue.subject_variants == ["One", "Two"]
    assert not [f for f in result.findings if f.severity == "error"]


def test_cli_refuses_one_subject_and_a_share_without_a_test(tmp_path: Path) -> None:
    settings = make_project(tmp_path / "p")
    seed(settings, 3).dispose()
    one = run_cli(settings.project_dir, "send", ISSUE, "--list", "daily", "--subject", "Only",
                  "--yes")
    assert one.returncode == 2 and "2 to 4 subjects" in one.stderr
    assert "Traceback" not in one.stderr
    share = run_cli(settings.project_dir, "send", ISSUE, "--list", "daily", "--test-share",
                    "20%", "--yes")
    assert share.returncode == 2 and "need a subject test" in share.stderr


# -- end to end -----------------------------------------------------------------------

RECIPIENTS = 120  # 30%: 36 in the test, 12 per variant; 84 get the winner


class Worker:
    """tests/ab_worker.py in a subprocess: the worker loop with the test's clock."""

    def __init__(self, project: Path, clock: Path, env: dict[str, str]) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "tests.ab_worker", str(project), str(clock)], cwd=ROOT,
            env={**os.environ, **env, "PYTHONPATH": str(ROOT)}, stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        self.events: list[dict] = []
        self.lines: list[str] = []
        self.reader = threading.Thread(target=self._read, daemon=True)
        self.reader.start()

    def _read(self) -> None:
        assert self.proc.stderr is not None
        for line in self.proc.stderr:
            self.lines.append(line)
            with contextlib.suppress(json.JSONDecodeError):
                self.events.append(json.loads(line))

    def wait_for(self, event: str, timeout: float = 60) -> dict:
        deadline = time.monotonic() + timeout
        while True:
            found = [e for e in self.events if e.get("event") == event]
            if found:
                return found[0]
            assert self.proc.poll() is None, "".join(self.lines)
            assert time.monotonic() < deadline, f"no {event}: {''.join(self.lines)}"
            time.sleep(0.05)

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait(10)


def _clicks(engine: sa.Engine, send_id: int, by_variant: dict[str, tuple[int, int]]) -> None:
    """Clicks as click tracking records them (``feedback.clicks.record``): per variant
    (people, link scanners); each person clicks twice a minute apart (counted once), each
    scanner sends HEAD requests (flagged, never counted)."""
    from newsletter.feedback import clicks

    r = send_recipients.c
    start = dt.datetime.now(dt.UTC) - dt.timedelta(hours=1)
    with engine.begin() as conn:
        for variant, (humans, scanners) in by_variant.items():
            ids = conn.execute(sa.select(r.subscriber_id).where(
                r.send_id == send_id, r.variant == variant).order_by(r.seq)).scalars().all()
            for n, subscriber_id in enumerate(ids[:humans + scanners]):
                method = "GET" if n < humans else "HEAD"
                for k in range(2):
                    clicks.record(conn, send_id, subscriber_id, 1, method,
                                  start + dt.timedelta(minutes=n, seconds=60 * k + 1))


def _subject(data: bytes) -> str:
    from email import policy
    from email.parser import BytesParser

    return str(BytesParser(policy=policy.default).parsebytes(data)["Subject"])


def each_reader_one_variant_once(engine: sa.Engine, smtp: SMTPTestServer, send_id: int,
                                 subjects: list[str], winner: str) -> dict[str, str]:
    """At the SMTP server: each of the RECIPIENTS received one message, once, with their
    variant's subject (12 per variant of three) or the winner's (84); the send finished.
    Returns each address's variant."""
    with engine.connect() as conn:
        variant_of = dict(conn.execute(
            sa.select(send_recipients.c.email, send_recipients.c.variant)
            .where(send_recipients.c.send_id == send_id)).all())
    wanted = dict(zip("ABC", subjects, strict=True)) | {"winner": subjects["ABC".index(winner)]}
    assert Counter(smtp.counts.values()) == Counter({1: RECIPIENTS})
    assert {email: _subject(smtp.messages[email][0]) for email in variant_of} == {
        email: wanted[v] for email, v in variant_of.items()}
    assert Counter(variant_of.values()) == {"A": 12, "B": 12, "C": 12, "winner": 84}
    finished = ledger.get_send(engine, send_id)
    assert finished.status == "finished" and finished.counts == {"sent": RECIPIENTS}
    return variant_of


@pytest.mark.slow
def test_three_subjects_worker_killed_while_deciding_each_reader_one_variant_once(
        tmp_path: Path) -> None:
    with pg_database() as url, SMTPTestServer() as smtp:
        settings = make_project(tmp_path / "p", url)
        env = {"NEWSLETTER_BACKEND": "smtp", "NEWSLETTER_SMTP_URL": smtp.url}
        engine = seed(settings, RECIPIENTS)
        subjects = [a for s in SUBJECTS for a in ("--subject", s)]
        sent = run_cli(settings.project_dir, "send", ISSUE, "--list", "daily", *subjects,
                       "--test-share", "30%", "--decide-after", "20m", "--yes", env=env)
        assert sent.returncode == 0, sent.stdout + sent.stderr
        assert "84 held for the subject test's winner" in sent.stdout
        send_id = ledger.list_sends(engine)[0].id
        test = variants.get_test(engine, send_id)
        assert test is not None and test.status == "testing"
        assert smtp.total == 36 and ledger.get_send(engine, send_id).status == "sending"
        # B: 6 of 12 people clicked; C: 2 people and 10 link scanners; A: 3 people
        _clicks(engine, send_id, {"A": (3, 0), "B": (6, 0), "C": (2, 10)})
        clock = tmp_path / "clock"
        clock.write_text((test.decide_at - dt.timedelta(minutes=1)).isoformat())
        first = Worker(settings.project_dir, clock, env)
        blocker = engine.connect()
        try:
            first.wait_for("worker.started")
            time.sleep(1.0)
            assert smtp.total == 36  # not before the time is up
            # the decision waits for this row lock: the worker is killed while deciding
            tx = blocker.begin()
            blocker.execute(sa.text("SELECT * FROM subject_tests WHERE send_id = :s FOR UPDATE"),
                            {"s": send_id})
            clock.write_text(test.decide_at.isoformat())
            first.wait_for("subject_test.deciding")
            time.sleep(0.5)
            first.proc.send_signal(signal.SIGKILL)
            first.proc.wait(10)
            tx.rollback()
        finally:
            blocker.close()
            first.stop()
        assert variants.get_test(engine, send_id).status == "testing"
        assert smtp.total == 36
        second = Worker(settings.project_dir, clock, env)
        try:
            decided = second.wait_for("subject_test.decided")
            second.wait_for("subject_test.sent", timeout=120)
            second.proc.send_signal(signal.SIGTERM)
            assert second.proc.wait(30) == 0
        finally:
            second.stop()
        assert decided["winner"] == "B"
        each_reader_one_variant_once(engine, smtp, send_id, SUBJECTS, "B")
        report = variants.ab_report(engine, send_id)
        assert report is not None and report.winner == "B"
        assert [(v.variant, v.sent, v.clickers) for v in report.variants] == [
            ("A", 12, 3), ("B", 12, 6), ("C", 12, 2)]
        assert report.p_value == pytest.approx(variants.two_proportion_p(6, 12, 3, 12))
        assert not report.significant and "not significant" in "\n".join(report.lines())
        shown = run_cli(settings.project_dir, "sends", "show", str(send_id), env=env)
        assert "B (winner): 12 sent, 6 human clickers, 50.0%" in shown.stdout
        assert "the difference is not significant" in shown.stdout
        engine.dispose()
