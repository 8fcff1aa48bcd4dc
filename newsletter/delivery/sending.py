"""Sending an issue to a list: the library behind ``newsletter send`` and ``sends``.

- ``preflight(settings, issue_path)``: validates and renders the issue (personal copy)
  and checks what a send needs (sender, postal address, public base URL, secret, none of
  them still an example value: ``newsletter.delivery.placeholders``); every problem is a one-line
  ``NewsletterError`` (example values only warnings with ``placeholders="warn"``).
- ``start(...)``: creates the send (snapshotting its recipients) or finds the unfinished
  one of the same issue and list to resume; refuses to repeat a finished send of the same
  issue (``newsletter.authoring.identity``: whatever its file is called) unless ``again``.
- ``run(...)``: drives a send through the backend with ``runner.SendRunner``.
- ``requeue(...)``: makes recipients pending again (``RETRY``: temporary failures and
  uncertain; ``UNCERTAIN``), skipping those who may no longer receive (``newsletter.delivery.requeue``);
  ``retry_failed(...)`` does it for ``RETRY`` and runs the send again.
- ``latest_send(...)``: the newest send of an issue to a list, for ``--resend-uncertain``.
- ``dry_run(...)``: everything but sending: counts, size and a sample message.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from sqlalchemy.engine import Engine

from ..audience.lists import get_list
from ..audience.subscribers import count_subscribers
from ..authoring.build import WELCOME_FILE, build_file
from ..authoring.identity import Identity, of_issue, why_same
from ..authoring.linkcheck import check_before_send
from ..authoring.media import publish as publish_media
from ..authoring.render import Rendered
from ..config import Settings
from ..db.transactions import utcnow
from ..errors import NewsletterError, UsageError
from ..private import private_folder, write_private
from . import ledger, placeholders, variants
from .backends import get_backend
from .personalize import Recipient, prepare
from .requeue import Requeued
from .runner import Progress, SendRunner

# A real send snapshots its first recipients when it is created and the rest (in chunks,
# SendRunner) while the first batches go out: for a million recipients the whole snapshot
# takes over a second, during which nothing would be sent.
FIRST_CHUNK = 10_000
SAMPLE_ADDRESS = "sample.reader@example.org"  # the dry run's recipient: nobody's address


@dataclass
class Prepared:
    path: Path
    slug: str
    rendered: Rendered  # personal copy: carries the merge marks
    warnings: int
    identity: Identity
    notices: list[str]  # example values still in the settings (placeholders="warn")
    subject_variants: list[str] = field(default_factory=list)  # front matter's subject test


def preflight(settings: Settings, issue_path: Path | str, *, backend: str | None = None,
              placeholders_are: str = "errors") -> Prepared:
    """Validate, render and check the configuration a send needs.

    Settings still at ``newsletter init``'s example values are refused, or with
    ``placeholders_are="warnings"`` (dry runs, test sends) returned in ``notices``.
    """
    path = Path(issue_path)
    result = build_file(path, settings, personal=True)
    if result.errors:
        first = result.errors[0]
        raise NewsletterError(
            f"{path}: has {len(result.errors)} validation error(s), not sent; first: "
            f"line {first.line}: {first.message} (run `newsletter validate {path}`)"
        )
    assert result.rendered is not None and result.issue is not None
    missing = [
        ("from_address", "the sender address"),
        ("postal_address", "a postal address (CAN-SPAM requires one in every message)"),
        ("base_url", "the public base URL for unsubscribe links"),
        ("secret_key", "the secret that signs unsubscribe links"),
    ]
    for key, what in missing:
        if not getattr(settings, key):
            raise NewsletterError(
                f"{settings.config_file}: '{key}' is not set: sending needs {what}; add "
                f'{key} = "..." to newsletter.toml or set NEWSLETTER_{key.upper()}'
            )
    notices = placeholders.problems(settings, backend)
    if notices and placeholders_are != "warnings":
        raise NewsletterError(notices[0])
    check_before_send(settings, path)  # only with check_links_before_send = true
    publish_media(settings, result.issue)  # local images -> out/media/, which `serve` serves
    return Prepared(path=path, slug=result.issue.slug, rendered=result.rendered,
                    warnings=len(result.warnings), identity=of_issue(result.issue),
                    notices=notices, subject_variants=list(result.issue.subject_variants))


def already_sent(latest: ledger.SendInfo, prepared: Prepared, list_name: str) -> str:
    """The one line refusing to send (or schedule) an issue a second time."""
    same = why_same(latest.issue_key, latest.content_hash, prepared.identity)
    earlier = ("this file" if Path(latest.issue_path) == prepared.path
               else latest.issue_path)
    return (f"{prepared.path}: already sent to list {list_name!r} by send {latest.id} "
            f"({earlier}, {same}, {latest.counts.get('sent', 0):,} sent)")


def parse_addresses(text: str) -> list[str]:
    from ..audience.emails import InvalidEmail, normalize_email

    addresses: list[str] = []
    for raw in text.split(","):
        raw = raw.strip()
        if not raw:
            continue
        try:
            email, _ = normalize_email(raw)
        except InvalidEmail as exc:
            raise UsageError(f"--test-to: {raw!r} is not an email address ({exc})") from None
        if email not in addresses:
            addresses.append(email)
    if not addresses:
        raise UsageError("--test-to needs at least one address, e.g. --test-to me@example.org")
    return addresses


@dataclass
class Started:
    send: ledger.SendInfo
    resumed: bool


def start(
    engine: Engine,
    settings: Settings,
    prepared: Prepared,
    list_name: str,
    *,
    backend: str | None = None,
    again: bool = False,
    test_to: Sequence[str] = (),
    subject_test: variants.Plan | None = None,
) -> Started:
    """Create the send, or find the unfinished one of this issue and list to resume.

    ``subject_test``: a new send tries these subjects on a share of the list first
    (``variants``); a send being resumed keeps the test it has."""
    if prepared.path.name == WELCOME_FILE:
        raise UsageError(f"{prepared.path}: the welcome email goes to each new subscriber, "
                         "not to a list: use `newsletter welcome send --to ADDRESS`")
    mailing_list = get_list(engine, list_name)
    backend_name = backend or settings.backend
    get_backend(settings, backend_name)  # its settings (URL, key) are checked before any record
    if test_to:
        send_id = ledger.create_send(
            engine, kind="test", issue_path=str(prepared.path), issue_slug=prepared.slug,
            subject=prepared.rendered.subject, list_id=mailing_list.id,
            list_name=mailing_list.name, backend=backend_name, html=prepared.rendered.html,
            text=prepared.rendered.text, test_to=test_to, identity=prepared.identity,
        )
        return Started(_fresh(engine, send_id), resumed=False)
    latest = ledger.find_latest(engine, prepared.slug, mailing_list.id, prepared.identity)
    if latest is not None and latest.status == "sending":
        return Started(latest, resumed=True)
    if latest is not None and not again:
        raise NewsletterError(
            f"{already_sent(latest, prepared, list_name)}; add --again to send it once "
            f"more, or `newsletter send --retry-failed {latest.id}` for its failures"
        )
    create = dict(kind="real", issue_path=str(prepared.path), issue_slug=prepared.slug,
                  subject=prepared.rendered.subject, list_id=mailing_list.id,
                  list_name=mailing_list.name, backend=backend_name,
                  html=prepared.rendered.html, text=prepared.rendered.text,
                  identity=prepared.identity)
    try:
        if subject_test is not None:
            send_id = variants.create_tested_send(engine, subject_test, utcnow(), **create)
        else:
            send_id = ledger.create_send(engine, first_chunk=FIRST_CHUNK, **create)
    except ledger.SendExists:  # another process created it a moment ago: share it
        latest = ledger.find_latest(engine, prepared.slug, mailing_list.id, prepared.identity)
        if latest is None or latest.status != "sending":
            raise
        return Started(latest, resumed=True)
    from .archive import publish_send

    # the web archive's generic copy, as sent (under the issue's archive slug)
    publish_send(engine, settings, prepared.path, send_id, prepared.slug)
    return Started(_fresh(engine, send_id), resumed=False)


def _fresh(engine: Engine, send_id: int) -> ledger.SendInfo:
    """A send just created: every recipient is pending (no need to count them again)."""
    send = ledger.get_send(engine, send_id, counts=False)
    send.counts = {"pending": send.total} if send.total else {}
    return send


def run(
    engine: Engine,
    settings: Settings,
    send_id: int,
    *,
    backend: str | None = None,
    workers: int | None = None,
    resend_uncertain: bool = False,
    on_progress: Callable[[Progress], None] | None = None,
    stop: threading.Event | None = None,
    retry_delay: float = 2.0,
) -> ledger.SendInfo:
    """Send (or resume) ``send_id`` until no recipient is pending."""
    send = ledger.get_send(engine, send_id, counts=False)
    if send.status == "cancelled":
        raise NewsletterError(f"send {send_id} was cancelled; start a new one")
    ledger.reconcile(engine, send_id)
    if resend_uncertain:
        ledger.requeue(engine, send_id, ["uncertain"])
    send = ledger.get_send(engine, send_id)  # the counts the progress starts from
    chosen = get_backend(settings, backend or send.backend, workers=workers)
    runner = SendRunner(engine, settings, send, chosen, workers=workers,
                        on_progress=on_progress, stop=stop, retry_delay=retry_delay)
    result = runner.run()
    if runner.error is not None:
        raise NewsletterError(
            f"send {send_id} stopped: {runner.error}; fix it, then resume with "
            f"`newsletter send --resume {send_id}`"
        )
    return result


RETRY = ("temporary", "uncertain")  # what --retry-failed sends again
UNCERTAIN = ("uncertain",)  # what --resend-uncertain sends again


def requeue(engine: Engine, send_id: int, statuses: Sequence[str]) -> Requeued:
    """Make the send's recipients in ``statuses`` pending again, skipping (with the
    reason) those who may no longer receive; dead workers' batches count as uncertain."""
    send = ledger.get_send(engine, send_id, counts=False)  # it exists
    if send.status == "cancelled":
        raise NewsletterError(f"send {send_id} was cancelled; nothing of it is sent again")
    ledger.reconcile(engine, send_id)
    return ledger.requeue_counted(engine, send_id, statuses)


def retry_failed(
    engine: Engine, settings: Settings, send_id: int, **options
) -> tuple[Requeued, ledger.SendInfo]:
    """Requeue the temporary failures and uncertain recipients of a send, and run it."""
    requeued = requeue(engine, send_id, RETRY)
    return requeued, run(engine, settings, send_id, **options)


def latest_send(engine: Engine, prepared: Prepared, list_name: str) -> ledger.SendInfo:
    """The newest real send of this issue to this list, finished or not (as ``start``
    finds it), with dead workers' batches counted as uncertain; a one-line error when
    there is none."""
    mailing_list = get_list(engine, list_name)
    latest = ledger.find_latest(engine, prepared.slug, mailing_list.id, prepared.identity)
    if latest is None:
        raise NewsletterError(
            f"issue {prepared.slug} has not been sent to list {list_name!r}, so nothing is "
            "uncertain; send it without --resend-uncertain"
        )
    if ledger.reconcile(engine, latest.id):
        latest = ledger.get_send(engine, latest.id)
    return latest


@dataclass
class DryRun:
    recipients: int
    message_bytes: int
    sample_path: Path


def dry_run(
    engine: Engine, settings: Settings, prepared: Prepared, list_name: str, sample_path: Path,
    *, backend: str | None = None, test_to: Sequence[str] = (),
) -> DryRun:
    """Check everything and write one sample message; send and record nothing."""
    mailing_list = get_list(engine, list_name)
    get_backend(settings, backend)  # checks the backend's settings (URL, key)
    template = prepare(prepared.rendered, settings, send_id="dry-run", list_id=mailing_list.id,
                       list_name=mailing_list.name, test=bool(test_to))
    # The sample's unsubscribe link must not work for anyone (the file gets forwarded and
    # its links never expire): no subscriber id (token of id 0), a made-up address.
    if test_to:
        count = len(test_to)
        recipient = Recipient(None, test_to[0], None)
    else:
        count = count_subscribers(engine, list_name=mailing_list.name, status="active")
        recipient = Recipient(None, SAMPLE_ADDRESS, None)
    data = template.message(recipient).as_bytes()
    try:
        private_folder(sample_path.parent)
        write_private(sample_path, data)  # 0600, like every file holding a token or address
    except OSError as exc:
        raise UsageError(
            f"{sample_path}: cannot write the sample message ({exc.filename}: "
            f"{exc.strerror or exc}); choose another place with --sample"
        ) from None
    return DryRun(recipients=count, message_bytes=len(data), sample_path=sample_path)
