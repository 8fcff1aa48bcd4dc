"""The one suppression list: `newsletter suppressions`, provider exports, and sends."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from sqlalchemy.engine import Engine

from newsletter.audience import suppressions
from newsletter.audience.subscribers import add_subscriber, get_subscriber
from newsletter.feedback.effects import apply_events
from newsletter.feedback.sendgrid import parse_events

from .sendtools import make_project, run_cli, seed

EXPORTS = {
    # SendGrid (Suppressions > Bounces, Spam Reports, Global Unsubscribes: Export CSV)
    "sendgrid-bounces.csv": ("email,created,status,reason\n"
                             "Ann@Example.com,1732600000,5.1.1,550 no such user\n",
                             "sendgrid", {"bounced": 1}),
    "sendgrid-spam.csv": ("email,created,ip\nbob@example.com,1732600000,10.0.0.1\n",
                          "sendgrid", {"complained": 1}),
    "sendgrid-unsubscribes.csv": ("email,created\ncy@example.com,1732600000\n",
                                  "sendgrid", {"unsubscribed": 1}),
    # Amazon SES (ListSuppressedDestinations, as the console exports it)
    "ses.csv": ("EmailAddress,Reason,LastUpdateTime\n"
                "dee@example.com,BOUNCE,2026-11-20T10:00:00Z\n"
                "eve@example.com,COMPLAINT,2026-11-21T10:00:00Z\n",
                "ses", {"bounced": 1, "complained": 1}),
    # Postmark (suppressions dump of a message stream)
    "postmark.csv": ("EmailAddress,SuppressionReason,Origin,CreatedAt\n"
                     "fay@example.com,HardBounce,Recipient,2026-11-20T10:00:00Z\n"
                     "gus@example.com,SpamComplaint,Recipient,2026-11-20T10:00:00Z\n"
                     "hal@example.com,ManualSuppression,Customer,2026-11-20T10:00:00Z\n",
                     "postmark", {"bounced": 1, "complained": 1, "unsubscribed": 1}),
    # Mailgun (Suppressions > Bounces / Complaints / Unsubscribes: export)
    "mailgun-bounces.csv": ("address,code,error,created_at\n"
                            "ida@example.com,550,No such mailbox,Fri 20 Nov 2026\n",
                            "mailgun", {"bounced": 1}),
    "mailgun-complaints.csv": ("address,created_at\njo@example.com,Fri 20 Nov 2026\n",
                               "mailgun", {"complained": 1}),
}


@pytest.mark.parametrize("name", sorted(EXPORTS))
def test_import_reads_each_providers_export(store: Engine, tmp_path: Path, name: str) -> None:
    text, provider, added = EXPORTS[name]
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    report = suppressions.import_csv(store, path)
    assert (report.format, dict(report.added), report.invalid) == (provider, added, [])
    again = suppressions.import_csv(store, path)
    assert sum(again.added.values()) == 0 and again.already == report.rows
    listed = {s.email: (s.reason, s.source) for s in suppressions.listing(store)}
    assert len(listed) == report.rows
    assert all(source == f"import:{provider}" for _, source in listed.values())


def test_import_refuses_an_unknown_file_and_names_bad_lines(store: Engine, tmp_path: Path
                                                          ) -> None:
    odd = tmp_path / "odd.csv"
    odd.write_text("name,phone\nAnn,123\n", encoding="utf-8")
    with pytest.raises(Exception, match=r"odd\.csv:1: error: not a suppression export"):
        suppressions.import_csv(store, odd)
    mixed = tmp_path / "mixed.csv"
    mixed.write_text("email,created\nok@example.com,1\nnot-an-address,2\n\nyo@example.com,3\n",
                     encoding="utf-8")
    report = suppressions.import_csv(store, mixed)
    assert report.invalid == [3] and report.added == {"unsubscribed": 2}


def test_a_hard_bounce_or_complaint_suppresses_and_a_resubscribe_lifts(store: Engine) -> None:
    add_subscriber(store, "ann@example.com")
    events = [{"sg_event_id": "b1", "event": "bounce", "email": "ann@example.com",
               "reason": "550 5.1.1 unknown user", "timestamp": 1},
              {"sg_event_id": "c1", "event": "spamreport", "email": "stranger@example.com",
               "timestamp": 1}]
    apply_events(store, parse_events(json.dumps(events).encode()))
    found = {s.email: s for s in suppressions.listing(store)}
    assert found["ann@example.com"].reason == "bounced"
    assert found["stranger@example.com"].reason == "complained"  # not a subscriber: listed too
    add_subscriber(store, "ann@example.com", resubscribe=True)
    assert get_subscriber(store, "ann@example.com").status == "active"
    assert suppressions.is_suppressed(store, "ann@example.com") is None


def test_cli_add_list_remove_and_a_send_skips_suppressed(tmp_path: Path) -> None:
    settings = make_project(tmp_path / "p")
    seed(settings, 5)
    project = settings.project_dir
    added = run_cli(project, "suppressions", "add", "R2@example.com", "r3@example.com",
                    "--note", "asked by phone")
    assert added.returncode == 0, added.stderr
    assert "suppressed 2 address(es)" in added.stdout
    bad = run_cli(project, "suppressions", "add", "not an address")
    assert bad.returncode != 0 and "Traceback" not in bad.stderr
    assert len(bad.stderr.strip().splitlines()) == 1
    listed = run_cli(project, "suppressions", "list", "--format", "json")
    rows = json.loads(listed.stdout)
    assert {(r["email"], r["reason"], r["detail"]) for r in rows} == {
        ("r2@example.com", "manual", "asked by phone"),
        ("r3@example.com", "manual", "asked by phone")}
    removed = run_cli(project, "suppressions", "remove", "r3@example.com", "--yes")
    assert removed.returncode == 0 and "removed 1" in removed.stdout
    sent = run_cli(project, "send", "issues/2026-11-24.md", "--list", "daily", "--yes")
    assert sent.returncode == 0, sent.stderr
    assert "4 sent, 0 failed, 1 skipped" in sent.stdout
    assert "skipped: 1 suppressed" in sent.stdout
    outbox = sorted(p.name for p in settings.outbox_path.glob("*.eml"))
    assert outbox == [f"1-{n}.eml" for n in (1, 3, 4, 5)]
