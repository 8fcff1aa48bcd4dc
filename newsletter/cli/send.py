"""Commands: send, sends list, sends show."""

from __future__ import annotations

import json
import signal
import sys
import threading
import time
from pathlib import Path

import click

from ..config import BACKENDS
from . import fail, get_settings


def _engine(ctx: click.Context):
    from newsletter.db.connect import open_store

    return open_store(get_settings(ctx))


class _ProgressLine:
    """sent / failed / rate / ETA on one terminal line (stderr), at most 5 times a second."""

    def __init__(self, enabled: bool) -> None:
        self.enabled = enabled
        self.last = 0.0

    def __call__(self, progress) -> None:
        if not self.enabled:
            return
        now = time.monotonic()
        if now - self.last < 0.2:
            return
        self.last = now
        c = progress.counts
        done = progress.done
        rate = c.get("sent", 0) / progress.elapsed if progress.elapsed > 0 else 0.0
        left = max(0, progress.total - done)
        eta = f"{left / rate:,.0f}s" if rate > 0 else "?"
        failed = c.get("failed", 0) + c.get("temporary", 0)
        click.echo(
            f"\r  {done:,}/{progress.total:,}  sent {c.get('sent', 0):,}  failed {failed:,}  "
            f"{rate:,.0f}/s  ETA {eta}   ",
            nl=False, err=True,
        )

    def close(self) -> None:
        if self.enabled:
            click.echo("", err=True)


def _report(send, seconds: float | None = None, skipped: dict[str, int] | None = None) -> int:
    """Print the final report; return the exit status (0 all sent/skipped, else 1).
    ``skipped``: the skipped recipients per reason (``ledger.skipped_reasons``)."""
    c = send.counts
    sent = c.get("sent", 0)
    line = (
        f"send {send.id} ({send.kind}, {send.list_name}, {send.backend}) {send.status}: "
        f"{sent:,} sent, {c.get('failed', 0) + c.get('temporary', 0):,} failed, "
        f"{c.get('skipped', 0):,} skipped, {c.get('uncertain', 0):,} uncertain"
    )
    if c.get("pending", 0) or c.get("sending", 0):
        line += f", {c.get('pending', 0) + c.get('sending', 0):,} not yet sent"
    if seconds:
        line += f" in {seconds:.1f} s ({sent / seconds:,.0f} messages/s)"
    click.echo(line)
    if skipped:
        click.echo("  skipped: " + ", ".join(f"{n:,} {reason}" for reason, n in
                                            sorted(skipped.items(), key=lambda i: -i[1])))
    code = 0
    if c.get("temporary", 0) or c.get("uncertain", 0):
        click.echo(
            f"  {c.get('temporary', 0):,} failed temporarily and {c.get('uncertain', 0):,} are "
            f"uncertain: `newsletter sends show {send.id}` lists them; "
            f"`newsletter send --retry-failed {send.id}` sends them again"
        )
        code = 1
    if c.get("failed", 0):
        click.echo(
            f"  {c.get('failed', 0):,} refused for good (see `newsletter sends show {send.id}` "
            "for the server's replies)"
        )
        code = 1
    if c.get("pending", 0) or c.get("sending", 0):
        click.echo(f"  resume with `newsletter send --resume {send.id}`")
        code = 1
    if c.get("held", 0):
        click.echo(f"  {c['held']:,} held for the subject test's winner: `newsletter worker` "
                   f"sends it to them when the test is decided (`newsletter sends show "
                   f"{send.id}`)")
    return code


def _stop_on_signals() -> threading.Event:
    stop = threading.Event()

    def handler(signum, frame):  # noqa: ARG001
        if stop.is_set():
            raise KeyboardInterrupt
        click.echo("\nstopping after the batches in flight (again to abort)...", err=True)
        stop.set()

    signal.signal(signal.SIGINT, handler)
    signal.signal(signal.SIGTERM, handler)
    return stop


def subject_test_options(command):  # noqa: ANN001, ANN201  (a click command)
    """``--subject``, ``--test-share``, ``--decide-after``: a subject test, for ``send``
    and ``schedule`` alike (``delivery.variants.plan_for`` reads them)."""
    for option in reversed([
        click.option("--subject", "subjects", multiple=True,
                     help="A subject test: give 2-4 --subject options (instead of the "
                          "issue's subject_variants); the first is variant A."),
        click.option("--test-share", default=None,
                     help="Share of the list that gets the subject test, split equally "
                          "between the variants at random (default 20%)."),
        click.option("--decide-after", default=None,
                     help="How long the test runs before `newsletter worker` sends the "
                          "winner to the rest of the list (default 20m; 1m to 24h)."),
    ]):
        command = option(command)
    return command


# long: a parameter per option, then the dispatch between its modes, each a helper
@click.command("send")
@click.argument("issue", required=False, type=click.Path(dir_okay=False, path_type=Path))
@click.option("--list", "list_name", help="The list to send to.")
@click.option("--backend", type=click.Choice(BACKENDS), default=None,
              help="Delivery backend (default: `backend` in newsletter.toml).")
@click.option("--dry-run", is_flag=True, help="Check everything and write a sample message.")
@click.option("--sample", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="Where --dry-run writes the sample message (default out/SLUG-sample.eml).")
@click.option("--test-to", default=None, help="Send only to these addresses, comma-separated.")
@click.option("--workers", type=click.IntRange(1, 64), default=None,
              help="Concurrent batches (SMTP connections / SendGrid requests).")
@click.option("--yes", "-y", is_flag=True, help="Do not ask for confirmation.")
@click.option("--again", is_flag=True, help="Send an issue already sent to this list once more.")
@click.option("--resume", "resume_id", type=int, default=None, help="Resume send ID.")
@click.option("--retry-failed", "retry_id", type=int, default=None,
              help="Retry the temporary failures and uncertain recipients of send ID.")
@click.option("--resend-uncertain", is_flag=True,
              help="Resend the recipients whose outcome is unknown: of the latest send of "
                   "ISSUE to --list (finished or not), or with --resume ID.")
@subject_test_options
@click.pass_context
def send_cmd(ctx: click.Context, issue: Path | None, list_name: str | None, backend: str | None,
             dry_run: bool, sample: Path | None, test_to: str | None, workers: int | None,
             yes: bool, again: bool, resume_id: int | None, retry_id: int | None,
             resend_uncertain: bool, subjects: tuple[str, ...], test_share: str | None,
             decide_after: str | None) -> None:
    """Send ISSUE to every active subscriber of --list, exactly once each.

    Examples:

      newsletter send issues/2026-11-24.md --list daily

      newsletter send issues/2026-11-24.md --list daily --dry-run

      newsletter send issues/2026-11-24.md --list daily --test-to me@example.org

      newsletter send issues/2026-11-24.md --list daily --resend-uncertain

      newsletter send --resume 12 --resend-uncertain

      newsletter send --retry-failed 12
    """
    from newsletter.delivery import sending

    settings = get_settings(ctx)
    progress = _ProgressLine(sys.stderr.isatty())
    if resume_id is not None or retry_id is not None:
        if issue is not None or list_name:
            fail("--resume/--retry-failed take a send ID only, not an issue or --list", 2)
        _send_by_id(ctx, resume_id, retry_id, backend=backend, workers=workers,
                    resend_uncertain=resend_uncertain, progress=progress)
        return
    if issue is None or not list_name:
        fail("send needs an ISSUE file and --list NAME (or --resume / --retry-failed ID)", 2)
        return
    if resend_uncertain and (again or test_to or dry_run):
        fail("--resend-uncertain resends the uncertain recipients of the latest send of the "
             "issue to the list: leave out --again, --test-to and --dry-run", 2)
    # example settings (`newsletter init`'s) stop a real send; a dry run or test send
    # only warns, so a new project can be tried out before it is set up
    prepared = sending.preflight(settings, issue, backend=backend, placeholders_are=(
        "warnings" if dry_run or test_to else "errors"))
    for notice in prepared.notices:
        click.echo(f"warning: {notice}", err=True)
    engine = _engine(ctx)
    if resend_uncertain:
        _resend_latest(engine, settings, prepared, list_name, backend=backend,
                       workers=workers, yes=yes, progress=progress)
        return
    addresses = sending.parse_addresses(test_to) if test_to else []
    plan = _subject_plan(prepared, subjects, test_share, decide_after,
                         real=not (addresses or dry_run))
    if dry_run:
        target = sample or settings.project_dir / "out" / f"{prepared.slug}-sample.eml"
        result = sending.dry_run(engine, settings, prepared, list_name, target,
                                 backend=backend, test_to=addresses)
        click.echo(
            f"dry run: {result.recipients:,} recipient(s) on list {list_name!r}; one message "
            f"is {result.message_bytes / 1024:.1f} KB; sample written to {result.sample_path}; "
            "nothing sent"
        )
        return
    _send_issue(engine, settings, prepared, list_name, addresses, backend=backend,
                workers=workers, yes=yes, again=again, progress=progress, plan=plan)


def _subject_plan(prepared, subjects: tuple[str, ...], share: str | None,
                  after: str | None, *, real: bool):
    """The subject test asked for (--subject, else the issue's subject_variants), or None."""
    from newsletter.delivery import variants

    if subjects and not real:
        fail("--subject sets up a real send's subject test; --test-to and --dry-run use the "
             "issue's subject: leave out --subject", 2)
    return variants.plan_for(prepared.subject_variants if real else [], subjects, share, after)


def _send_issue(engine, settings, prepared, list_name: str, addresses: list[str], *,
                backend: str | None, workers: int | None, yes: bool, again: bool,
                progress: _ProgressLine, plan=None) -> None:
    """Ask (unless --yes), create or resume the send of the issue to the list, run it."""
    from newsletter.audience.subscribers import count_subscribers
    from newsletter.delivery import sending

    count = len(addresses) if addresses else count_subscribers(
        engine, list_name=list_name, status="active")
    chosen = backend or settings.backend
    what = f"TEST send to {', '.join(addresses)}" if addresses else (
        f"{count:,} subscriber(s) of list {list_name!r}")
    if not yes:
        subject = (f"a subject test of {len(plan.subjects)} subjects" if plan
                   else repr(prepared.rendered.subject))
        _confirm(f"Send {subject} to {what} via {chosen}?")
    started_send = sending.start(engine, settings, prepared, list_name, backend=backend,
                                 again=again, test_to=addresses, subject_test=plan)
    send = started_send.send
    if started_send.resumed:
        click.echo(f"resuming unfinished send {send.id}: {send.unfinished:,} recipient(s) left")
    else:
        click.echo(f"send {send.id}: {send.total:,} recipient(s) via {send.backend}")
    _test_line(engine, send.id)
    _run(engine, settings, send.id, backend=backend, workers=workers, progress=progress)


def _test_line(engine, send_id: int) -> None:
    """What the send's subject test does, in one line (nothing without one)."""
    from newsletter.delivery import variants

    report = variants.ab_report(engine, send_id)
    if report is None:
        return
    each = ", ".join(f"{v.variant} {v.sent:,}" if report.winner else v.variant
                     for v in report.variants)
    if report.winner:
        click.echo(f"  subject test decided: {report.winner} won ({each} sent)")
        return
    click.echo(f"  subject test: {len(report.variants)} variants ({each}) to the test share now; the rest "
               f"({report.rest.get('held', 0):,}) get the winner at "
               f"{report.decide_at:%Y-%m-%d %H:%M} UTC from `newsletter worker`, which must "
               "be running")


def _confirm(question: str) -> None:
    if not (sys.stdin.isatty() and sys.stdout.isatty()):
        fail("refusing to send without confirmation: no terminal to ask on; "
             "add --yes to send", 1)
    click.confirm(question, abort=True)


def _run(engine, settings, send_id: int, *, backend: str | None, workers: int | None,
         progress: _ProgressLine) -> None:
    """Run the send to the end (Ctrl-C: after the batches in flight), report, exit."""
    from newsletter.delivery import ledger, sending

    stop = _stop_on_signals()
    started = time.monotonic()
    result = sending.run(engine, settings, send_id, backend=backend, workers=workers,
                         on_progress=progress, stop=stop)
    progress.close()
    seconds = time.monotonic() - started
    sys.exit(_report(result, seconds, ledger.skipped_reasons(engine, send_id)))


def _requeued(verb: str, requeued, send_id: int, what: str = "recipient(s)") -> None:
    """``retrying 12 recipient(s) of send 3; 2 skipped, no longer receiving (...)``"""
    line = f"{verb} {requeued.pending:,} {what} of send {send_id}"
    if requeued.skipped:
        line += f"; {requeued.skipped_line()}"
    click.echo(line)


def _send_by_id(ctx: click.Context, resume_id: int | None, retry_id: int | None, *,
                backend: str | None, workers: int | None, resend_uncertain: bool,
                progress: _ProgressLine) -> None:
    """``--resume ID [--resend-uncertain]`` and ``--retry-failed ID``."""
    from newsletter.delivery import ledger, sending

    settings = get_settings(ctx)
    engine = _engine(ctx)
    send_id = resume_id if resume_id is not None else retry_id
    assert send_id is not None
    if retry_id is not None:
        _requeued("retrying", sending.requeue(engine, send_id, sending.RETRY), send_id)
    else:
        if resend_uncertain:
            _requeued("resending", sending.requeue(engine, send_id, sending.UNCERTAIN),
                      send_id, "uncertain recipient(s)")
        info = ledger.get_send(engine, send_id)
        click.echo(f"resuming send {send_id}: {info.unfinished:,} recipient(s) left")
    _run(engine, settings, send_id, backend=backend, workers=workers, progress=progress)


def _resend_latest(engine, settings, prepared, list_name: str, *, backend: str | None,
                   workers: int | None, yes: bool, progress: _ProgressLine) -> None:
    """``send ISSUE --list L --resend-uncertain``: the latest send of the issue to the
    list, finished or not, resends its uncertain recipients (and finishes the rest)."""
    from newsletter.delivery import sending

    send = sending.latest_send(engine, prepared, list_name)
    uncertain = send.counts.get("uncertain", 0)
    if not yes and uncertain:
        _confirm(f"Resend {send.subject!r} to the {uncertain:,} uncertain recipient(s) of "
                 f"send {send.id} via {backend or send.backend}? They may have it already.")
    _requeued("resending", sending.requeue(engine, send.id, sending.UNCERTAIN), send.id,
              "uncertain recipient(s)")
    _run(engine, settings, send.id, backend=backend, workers=workers, progress=progress)


@click.group("sends")
def sends_group() -> None:
    """Report sends, past or running: `newsletter sends list`, `newsletter sends show ID`,
    `newsletter sends report ID`."""


@sends_group.command("list")
@click.option("--limit", type=click.IntRange(1, 10000), default=50, show_default=True)
@click.option("--format", "fmt", type=click.Choice(["table", "json"]), default="table")
@click.pass_context
def sends_list(ctx: click.Context, limit: int, fmt: str) -> None:
    """List sends, newest first, with counts per status.

    Example: newsletter sends list
    """
    from newsletter.delivery import ledger

    rows = ledger.list_sends(_engine(ctx), limit=limit)
    if fmt == "json":
        click.echo(json.dumps([_as_dict(s) for s in rows], indent=2))
        return
    if not rows:
        click.echo("no sends yet")
        return
    click.echo(f"{'id':>5}  {'created (UTC)':16}  {'kind':4}  {'status':9}  {'list':12}  "
               f"{'sent':>8}  {'failed':>6}  {'skip':>5}  {'uncert':>6}  issue")
    for s in rows:
        c = s.counts
        click.echo(
            f"{s.id:>5}  {s.created_at:%Y-%m-%d %H:%M}  {s.kind:4}  {s.status:9}  "
            f"{s.list_name[:12]:12}  {c.get('sent', 0):>8,}  "
            f"{c.get('failed', 0) + c.get('temporary', 0):>6,}  {c.get('skipped', 0):>5,}  "
            f"{c.get('uncertain', 0):>6,}  {s.issue_slug}"
        )


@sends_group.command("show")
@click.argument("send_id", type=int)
@click.option("--all", "show_all", is_flag=True, help="List every failed/uncertain recipient.")
@click.option("--format", "fmt", type=click.Choice(["text", "json"]), default="text")
@click.pass_context
def sends_show(ctx: click.Context, send_id: int, show_all: bool, fmt: str) -> None:
    """Show one send: counts per status, failures with reasons, uncertain recipients.

    Example: newsletter sends show 12
    """
    from newsletter.delivery import ledger

    engine = _engine(ctx)
    send = ledger.get_send(engine, send_id)
    problems = ledger.recipients(engine, send_id, ["failed", "temporary", "uncertain"],
                                 limit=None if show_all else 50)
    from newsletter.feedback.effects import engagement

    events = engagement(engine, send_id)  # from the SendGrid event webhook
    from newsletter.delivery.variants import ab_report

    test = ab_report(engine, send_id)
    if fmt == "json":
        data = _as_dict(send)
        data["engagement"] = events.as_dict()
        data["subject_test"] = test.as_dict() if test is not None else None
        data["problems"] = [
            {"email": r.email, "status": r.status, "reason": r.reason, "attempts": r.attempts}
            for r in problems
        ]
        click.echo(json.dumps(data, indent=2))
        return
    click.echo(f"send {send.id}: {send.subject}")
    click.echo(f"  issue {send.issue_path}, list {send.list_name}, backend {send.backend}, "
               f"{send.kind}")
    click.echo(f"  created {send.created_at:%Y-%m-%d %H:%M:%S} UTC, status {send.status}"
               + (f", finished {send.finished_at:%Y-%m-%d %H:%M:%S} UTC"
                  if send.finished_at else ""))
    click.echo(f"  recipients {send.total:,}: " + ", ".join(
        f"{status} {send.counts.get(status, 0):,}" for status in ledger.STATUSES
        if send.counts.get(status, 0)))
    click.echo(f"  events: {events.line()}")
    if test is not None:
        for line in test.lines():
            click.echo(f"  {line}")
    for row in problems:
        click.echo(f"  {row.status:9} {row.email}: {row.reason or ''}")
    hidden = sum(send.counts.get(s, 0) for s in ("failed", "temporary", "uncertain"))
    if not show_all and hidden > len(problems):
        click.echo(f"  ... and {hidden - len(problems):,} more (--all lists them)")
    _report(send)


def _as_dict(send) -> dict:
    return {
        "id": send.id, "kind": send.kind, "issue": send.issue_path, "slug": send.issue_slug,
        "subject": send.subject, "list": send.list_name, "backend": send.backend,
        "status": send.status, "total": send.total,
        "created_at": send.created_at.isoformat(),
        "finished_at": send.finished_at.isoformat() if send.finished_at else None,
        "counts": send.counts,
    }


@sends_group.command("report")
@click.argument("send_id", type=int)
@click.option("--format", "fmt", type=click.Choice(["table", "json", "csv"]), default="table",
              help="json: every number; csv: who clicked what (email, link, section, time, "
                   "human or flagged), for a CRM.")
@click.pass_context
def sends_report(ctx: click.Context, send_id: int, fmt: str) -> None:
    """What readers used: people's clicks per section and per link, unique clickers,
    click rate, unsubscribes, bounces, complaints, and the clicks flagged as scanners'.

    Example: newsletter sends report 12 --format csv > clicks.csv
    """
    from newsletter.cli.report import echo_report

    echo_report(_engine(ctx), send_id, fmt)
