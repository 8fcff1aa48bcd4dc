"""Engagement in scheduled sends, end to end.

A scheduled issue with three ``subject_variants``, scheduled with the real
`newsletter schedule` and sent by a worker process whose clock the test moves
(``tests/ab_worker.py``, as the send-now A/B test uses): the test share gets the
variants when the schedule is due, readers click the tracked links they received
(``GET /c/TOKEN`` through the public app: 302 to the original URL), the worker decides
by human unique click rate and sends the winner to the rest. At the SMTP server: every
subscriber received exactly one message, once, with their variant's subject; the report
puts each click in the section of the link clicked.
"""

from __future__ import annotations

import datetime as dt
import json
import re
import signal
import time
import warnings
from pathlib import Path

import pytest
import sqlalchemy as sa

from newsletter.db.tables import schedules, send_recipients
from newsletter.delivery import variants
from newsletter.feedback import clicks
from newsletter.web import create_app

from .sendtools import make_project, pg_database, run_cli, seed
from .smtpserver import SMTPTestServer
from .test_clicks_e2e import TRACKED, linked_issue
from .test_subject_tests import RECIPIENTS, Worker, each_reader_one_variant_once

with warnings.catch_warnings():
    warnings.simplefilter("ignore", DeprecationWarning)
    from starlette.testclient import TestClient

SUBJECTS = ["The port strike, week two", "Five numbers on winter heating",
            "The vote that could split a coalition"]


def _issue(project: Path) -> str:
    """The typical issue (links in a Hard Numbers and a Watching item too) with three
    subject variants in its front matter."""
    front = "subject_variants:\n" + "".join(f"  - {s}\n" for s in SUBJECTS)
    return str(linked_issue(project, front))


def _wait(what: str, check, worker: Worker, timeout: float = 120) -> None:  # noqa: ANN001
    deadline = time.monotonic() + timeout
    while not check():
        assert worker.proc.poll() is None, "".join(worker.lines)
        assert time.monotonic() < deadline, f"{what}: {''.join(worker.lines)[-3000:]}"
        time.sleep(0.05)


def _schedule_status(engine: sa.Engine, schedule_id: int) -> str:
    with engine.connect() as conn:
        return conn.execute(sa.select(schedules.c.status)
                            .where(schedules.c.id == schedule_id)).scalar_one()


def _html(message) -> str:  # noqa: ANN001
    return message.get_body(("html",)).get_content()


@pytest.mark.slow
def test_a_scheduled_subject_test_each_reader_one_variant_once_winner_by_human_clicks(
        tmp_path: Path) -> None:
    with pg_database() as url, SMTPTestServer() as smtp:
        settings = make_project(tmp_path / "p", url)
        env = {"NEWSLETTER_BACKEND": "smtp", "NEWSLETTER_SMTP_URL": smtp.url}
        engine = seed(settings, RECIPIENTS)
        issue = _issue(settings.project_dir)
        due = (dt.datetime.now(dt.UTC) + dt.timedelta(hours=2)).replace(
            minute=0, second=0, microsecond=0)
        planned = run_cli(settings.project_dir, "schedule", issue, "--list", "daily", "--at",
                          due.isoformat(), "--test-share", "30%", env=env)
        assert planned.returncode == 0, planned.stdout + planned.stderr
        assert ("subject test: 3 subjects to 30% of the list, the winner to the rest 20m "
                "later (subject_variants)") in planned.stdout
        schedule_id = int(re.search(r"schedule (\d+):", planned.stdout).group(1))

        clock = tmp_path / "clock"
        clock.write_text((due - dt.timedelta(minutes=1)).isoformat())
        worker = Worker(settings.project_dir, clock, env)
        try:
            worker.wait_for("worker.started")
            time.sleep(1.0)
            assert smtp.total == 0  # not before it is due
            clock.write_text(due.isoformat())
            started = worker.wait_for("subject_test.started")
            assert (started["A"], started["B"], started["C"], started["held"]) == (
                12, 12, 12, 84)
            _wait("the test share", lambda: smtp.total == 36, worker)
            send_id = started["send"]
            test = variants.get_test(engine, send_id)
            assert test is not None and test.status == "testing"
            assert test.decide_at == due + dt.timedelta(minutes=20)
            assert test.subjects == SUBJECTS
            time.sleep(1.0)
            assert smtp.total == 36  # the rest waits for the decision
            assert _schedule_status(engine, schedule_id) == "sending"

            sections = _click(settings, engine, send_id, smtp)

            clock.write_text(test.decide_at.isoformat())
            decided = worker.wait_for("subject_test.decided")
            _wait("the winner to the rest",
                  lambda: _schedule_status(engine, schedule_id) == "sent", worker)
            worker.proc.send_signal(signal.SIGTERM)
            assert worker.proc.wait(30) == 0
        finally:
            worker.stop()
        assert decided["winner"] == "B"
        variant_of = each_reader_one_variant_once(engine, smtp, send_id, SUBJECTS, "B")
        report = variants.ab_report(engine, send_id)
        assert [(v.variant, v.sent, v.clickers) for v in report.variants] == [
            ("A", 12, 3), ("B", 12, 6), ("C", 12, 2)]
        # the rest's messages carry tracked links too, each resolving to its URL
        rest = next(e for e, v in variant_of.items() if v == "winner")
        links = clicks.links(engine, send_id)
        assert len(TRACKED.findall(_html(smtp.parsed(rest)[0]))) == len(links)

        done = run_cli(settings.project_dir, "sends", "report", str(send_id), "--format",
                       "json", env=env)
        assert done.returncode == 0, done.stderr
        data = json.loads(done.stdout)
        assert (data["unique_clickers"], data["human_clicks"]) == (11, 11)
        by_section = {s["section"]: s["human_clicks"] for s in data["sections"]}
        assert {label: by_section.get(label) for label in sections} == sections
        engine.dispose()


def _click(settings, engine: sa.Engine, send_id: int, smtp: SMTPTestServer  # noqa: ANN001
           ) -> dict[str, int]:
    """People of the test share click a link of the message they received (A: 3 the
    Lead's, B: 3 the Lead's and 3 a Hard Numbers item's, C: 2 the last Story's), link
    scanners HEAD 10 of C's; each link answers 302 with its original URL. Returns the
    people's clicks per section label."""
    links = clicks.links(engine, send_id)
    lead = next(i for i, link in enumerate(links) if link.section_kind == "Lead")
    numbers = next(i for i, link in enumerate(links) if link.section_kind == "Hard Numbers")
    story = max(i for i, link in enumerate(links) if link.section_kind == "Story")
    plan = {"A": [lead] * 3, "B": [lead] * 3 + [numbers] * 3, "C": [story] * 2}
    r = send_recipients.c
    with engine.connect() as conn:
        by_variant = {v: conn.execute(sa.select(r.email).where(
            r.send_id == send_id, r.variant == v).order_by(r.seq)).scalars().all()
            for v in "ABC"}
    app = create_app(settings.model_copy(update={"smtp_url": smtp.url}), preview=False,
                     public=True)
    with TestClient(app, base_url="https://sendtest.news") as client:
        for variant, chosen in plan.items():
            people = by_variant[variant]
            for email, idx in zip(people, chosen, strict=False):
                url = TRACKED.findall(_html(smtp.parsed(email)[0]))[idx]
                answer = client.get(url, follow_redirects=False)
                assert answer.status_code == 302
                assert answer.headers["location"] == links[idx].url
            if variant == "C":
                for email in people[2:12]:
                    url = TRACKED.findall(_html(smtp.parsed(email)[0]))[lead]
                    assert client.head(url, follow_redirects=False).status_code == 302
    # the app's click writer has written every click when the client closed
    return {links[lead].section: 6, links[numbers].section: 3, links[story].section: 2}


# -- the options, as stored ----------------------------------------------------------------


def _at() -> str:
    return (dt.datetime.now(dt.UTC) + dt.timedelta(days=1)).strftime("%Y-%m-%d 06:00")


def test_schedule_keeps_the_subject_test_options_the_worker_will_use(tmp_path: Path) -> None:
    from newsletter.errors import UsageError
    from newsletter.scheduling import schedules as lib

    settings = make_project(tmp_path / "p")
    engine = seed(settings, 3)
    plain = settings.project_dir / "issues" / "2026-11-24.md"
    given = lib.schedule_issue(engine, settings, plain, "daily", at=_at(),
                               subjects=["One way", "Another way"], decide_after="1h30m")
    assert given.schedule.subject_test == {"subjects": ["One way", "Another way"],
                                           "share": 0.2, "after_seconds": 5400}
    # when due: --subject wins over whatever the issue says then
    plan = variants.plan_of_stored(given.schedule.subject_test, SUBJECTS)
    assert (plan.subjects, plan.share, plan.after) == (
        ["One way", "Another way"], 0.2, dt.timedelta(minutes=90))
    lib.cancel(engine, given.schedule.id)

    issue = _issue(settings.project_dir)
    front = lib.schedule_issue(engine, settings, issue, "daily", at=_at())
    assert front.schedule.subject_test == {"subjects": None, "share": 0.2,
                                           "after_seconds": 1200}
    assert front.subject_test is not None and front.subject_test.subjects == SUBJECTS
    # the front matter's subjects are read when it is due: a late fix goes out
    fixed = [*SUBJECTS[:2], "The coalition vote"]
    assert variants.plan_of_stored(front.schedule.subject_test, fixed).subjects == fixed
    assert variants.plan_of_stored(front.schedule.subject_test, []) is None
    lib.cancel(engine, front.schedule.id)

    with pytest.raises(UsageError, match="--local-time sends in waves"):
        lib.schedule_issue(engine, settings, issue, "daily", at=_at(), local_time=True)
    with pytest.raises(UsageError, match="need a subject test"):
        lib.schedule_issue(engine, settings, plain, "daily", at=_at(), test_share="30%")
    with pytest.raises(UsageError, match="2 to 4 subjects"):
        lib.schedule_issue(engine, settings, plain, "daily", at=_at(), subjects=["Only"])
    engine.dispose()


def test_schedule_cli_refuses_a_bad_test_in_one_line(tmp_path: Path) -> None:
    settings = make_project(tmp_path / "p")
    seed(settings, 3).dispose()
    bad = run_cli(settings.project_dir, "schedule", "issues/2026-11-24.md", "--list", "daily",
                  "--at", _at(), "--subject", "A", "--subject", "B", "--decide-after", "2d")
    assert bad.returncode == 2 and "--decide-after '2d'" in bad.stderr
    assert "Traceback" not in bad.stderr and len(bad.stderr.strip().splitlines()) == 1
