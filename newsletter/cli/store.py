"""Commands over the subscriber store: ``db``, ``lists`` and ``subscribers``.

Each command parses its arguments, calls ``newsletter.audience`` or ``newsletter.audience.importer``
and prints; nothing here touches SQL.
"""

from __future__ import annotations

import itertools
import json
import sys
import time
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import Any

import click

from newsletter.audience import csvsafe
from newsletter.cli import get_settings
from newsletter.errors import UsageError

FORMAT = click.option(
    "--format",
    "fmt",
    type=click.Choice(["table", "csv", "json"]),
    default="table",
    show_default=True,
    help="Output format.",
)
STATUS_CHOICE = click.Choice(["active", "unsubscribed", "bounced", "complained"])


def _engine(ctx: click.Context) -> Any:
    from newsletter.db.connect import open_store

    engine = open_store(get_settings(ctx))
    ctx.call_on_close(engine.dispose)
    return engine


def _print_rows(headers: Sequence[str], rows: Iterable[Sequence[Any]], fmt: str) -> None:
    """Print rows as an aligned table, CSV or JSON; CSV and JSON stream (a million rows
    never sit in memory), the table needs every row for its column widths."""
    if fmt == "json":
        click.echo("[", nl=False)
        for n, row in enumerate(rows):
            item = json.dumps(dict(zip(headers, row, strict=True)), ensure_ascii=False)
            click.echo(("," if n else "") + "\n  " + item, nl=False)
        click.echo("\n]")
        return
    if fmt == "csv":
        writer = csvsafe.writer(sys.stdout, lineterminator="\n")
        writer.writerow(headers)
        writer.writerows(rows)
        return
    cells = [[("" if value is None else str(value)) for value in row] for row in rows]
    widths = [max([len(h)] + [len(r[i]) for r in cells]) for i, h in enumerate(headers)]
    click.echo("  ".join(h.ljust(w) for h, w in zip(headers, widths, strict=True)).rstrip())
    for row in cells:
        click.echo("  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)).rstrip())


def _confirm(question: str, yes: bool) -> None:
    """Ask on a terminal; elsewhere require --yes."""
    if yes:
        return
    if not sys.stdin.isatty():
        raise UsageError(f"{question} Not confirmed: add --yes to confirm without a terminal")
    if not click.confirm(question, default=False, err=True):
        raise UsageError("not confirmed; nothing changed")


# -- db -------------------------------------------------------------------------------


@click.group("db")
def db_group() -> None:
    """The database schema: check it and migrate it.

    Examples: newsletter db upgrade; newsletter db current
    """


@db_group.command("upgrade")
@click.pass_context
def db_upgrade(ctx: click.Context) -> None:
    """Migrate the database to this version's schema (creates it when empty)."""
    from newsletter.db.engine import make_engine
    from newsletter.db.schema import upgrade

    engine = make_engine(get_settings(ctx).effective_database_url)
    ctx.call_on_close(engine.dispose)
    before, after = upgrade(engine)
    where = engine.url.render_as_string(hide_password=True)
    old = ", ".join(before.current) or "empty"
    new = ", ".join(after.current)
    if before.current == after.current:
        click.echo(f"{where}: already at schema {new}")
    else:
        click.echo(f"{where}: upgraded schema {old} -> {new}")


@db_group.command("current")
@click.pass_context
def db_current(ctx: click.Context) -> None:
    """Show the database's schema version and whether it needs `newsletter db upgrade`."""
    from newsletter.db.engine import make_engine
    from newsletter.db.schema import current_state

    engine = make_engine(get_settings(ctx).effective_database_url)
    ctx.call_on_close(engine.dispose)
    state = current_state(engine)
    where = engine.url.render_as_string(hide_password=True)
    current = ", ".join(state.current) or "none (empty database)"
    click.echo(f"{where}: schema {current}; this newsletter needs {', '.join(state.heads)}")
    if not state.known:
        click.echo("made by a newer newsletter: upgrade the newsletter package")
    elif state.empty:
        click.echo("created on first use, or now with `newsletter db upgrade`")
    elif not state.up_to_date:
        click.echo("old schema: run `newsletter db upgrade`")
    else:
        click.echo("up to date")


# -- lists ----------------------------------------------------------------------------


@click.group("lists")
def lists_group() -> None:
    """Mailing lists: create, list, delete.

    Examples: newsletter lists create daily --description "The daily briefing"
    """


@lists_group.command("create")
@click.argument("name")
@click.option("--description", default=None, help="What the list is for.")
@click.pass_context
def lists_create(ctx: click.Context, name: str, description: str | None) -> None:
    """Create a list called NAME."""
    from newsletter.audience.lists import create_list

    created = create_list(_engine(ctx), name, description)
    click.echo(f"created list {created.name!r}")


@lists_group.command("list")
@FORMAT
@click.pass_context
def lists_list(ctx: click.Context, fmt: str) -> None:
    """Every list with its numbers of active and inactive members."""
    from newsletter.audience.lists import list_lists

    found = list_lists(_engine(ctx))
    if not found and fmt == "table":
        click.echo("no lists yet: create one with `newsletter lists create NAME`")
        return
    rows = [
        (m.name, m.active, m.inactive, m.description or "", m.created_at.isoformat(" ", "seconds"))
        for m in found
    ]
    _print_rows(["name", "active", "inactive", "description", "created"], rows, fmt)


@lists_group.command("delete")
@click.argument("name")
@click.option("--yes", is_flag=True, help="Do not ask for confirmation.")
@click.pass_context
def lists_delete(ctx: click.Context, name: str, yes: bool) -> None:
    """Delete list NAME and its memberships (the subscribers stay)."""
    from newsletter.audience.lists import delete_list
    from newsletter.audience.subscribers import count_subscribers

    engine = _engine(ctx)
    members = count_subscribers(engine, list_name=name)
    _confirm(f"Delete list {name!r} and its {members:,} memberships (subscribers stay)?", yes)
    removed = delete_list(engine, name)
    click.echo(f"deleted list {name!r} ({removed:,} memberships)")


# -- subscribers ----------------------------------------------------------------------


@click.group("subscribers")
def subscribers_group() -> None:
    """Subscribers: add, remove, unsubscribe, show, list, count, import, export.

    Example: newsletter subscribers import members.csv --list daily
    """


def _attributes(pairs: Sequence[str]) -> dict[str, str]:
    result: dict[str, str] = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key.strip():
            raise UsageError(f"--attr {pair!r}: write it as name=value, e.g. --attr city=Rome")
        result[key.strip()] = value
    return result


@subscribers_group.command("add")
@click.argument("email")
@click.option("--name", default=None, help="The subscriber's name ({{name}} in issues).")
@click.option("--list", "lists", multiple=True, help="Subscribe to this list (repeatable).")
@click.option("--attr", "attrs", multiple=True, help="An attribute name=value (repeatable).")
@click.option(
    "--resubscribe",
    is_flag=True,
    help="Make an unsubscribed, bounced or complained address active again (asks first).",
)
@click.option("--yes", is_flag=True, help="Confirm --resubscribe without asking.")
@click.pass_context
def subscribers_add(
    ctx: click.Context,
    email: str,
    name: str | None,
    lists: tuple[str, ...],
    attrs: tuple[str, ...],
    resubscribe: bool,
    yes: bool,
) -> None:
    """Add EMAIL (or find it) and subscribe it to the --list lists."""
    from newsletter.audience.subscribers import add_subscriber

    if resubscribe:
        _confirm(f"Resubscribe {email} if it unsubscribed, bounced or complained?", yes)
    result = add_subscriber(
        _engine(ctx),
        email,
        name=name,
        attributes=_attributes(attrs),
        lists=lists,
        resubscribe=resubscribe,
    )
    sub = result.subscriber
    state = "added" if result.created else "already there"
    click.echo(f"{sub.email}: {state} (status {sub.status})")
    if result.resubscribed:
        click.echo("  made active again (--resubscribe)")
    if result.added_to:
        click.echo(f"  subscribed to {', '.join(result.added_to)}")
    if result.already_in:
        click.echo(f"  already subscribed to {', '.join(result.already_in)}")
    if result.not_resubscribed:
        click.echo(
            f"  not subscribed to {', '.join(result.not_resubscribed)}: it unsubscribed; "
            "use --resubscribe only if they asked to come back"
        )


@subscribers_group.command("remove")
@click.argument("email")
@click.option("--yes", is_flag=True, help="Do not ask for confirmation.")
@click.pass_context
def subscribers_remove(ctx: click.Context, email: str, yes: bool) -> None:
    """Delete EMAIL and its memberships for good (erasure). To stop sending, use unsubscribe."""
    from newsletter.audience.subscribers import get_subscriber, remove_subscriber

    engine = _engine(ctx)
    found = get_subscriber(engine, email)
    _confirm(f"Delete {found.email} and all its data for good?", yes)
    remove_subscriber(engine, email, key=get_settings(ctx).secret_key)
    click.echo(f"removed {found.email}; the delivery records keep their counts without "
               "the address or name")


@subscribers_group.command("unsubscribe")
@click.argument("email")
@click.option("--list", "list_name", default=None, help="Only from this list.")
@click.option("--reason", default=None, help="Why (kept with the status).")
@click.pass_context
def subscribers_unsubscribe(
    ctx: click.Context, email: str, list_name: str | None, reason: str | None
) -> None:
    """Unsubscribe EMAIL from everything, or from one --list."""
    from newsletter.audience.subscribers import unsubscribe

    changed = unsubscribe(_engine(ctx), email, list_name=list_name, reason=reason)
    where = f"from list {list_name!r}" if list_name else "from everything"
    click.echo(f"{email}: {'unsubscribed' if changed else 'already unsubscribed'} {where}")


@subscribers_group.command("show")
@click.argument("email")
@click.option(
    "--format", "fmt", type=click.Choice(["table", "json"]), default="table", show_default=True
)
@click.pass_context
def subscribers_show(ctx: click.Context, email: str, fmt: str) -> None:
    """Show one subscriber: status and why, attributes, lists."""
    from newsletter.audience.subscribers import get_subscriber, subscriber_lists

    engine = _engine(ctx)
    sub = get_subscriber(engine, email)
    memberships = subscriber_lists(engine, sub.id)
    from newsletter.audience.signup import consents

    consent = consents(engine, sub.email.lower())
    if fmt == "json":
        data = sub.as_dict()
        data["consent"] = consent
        data["lists"] = [
            {
                "list": m.list_name,
                "status": m.status,
                "status_changed_at": m.status_changed_at.isoformat(),
                "status_reason": m.status_reason,
            }
            for m in memberships
        ]
        click.echo(json.dumps(data, indent=2, ensure_ascii=False))
        return
    click.echo(f"email:      {sub.email}")
    click.echo(f"name:       {sub.name or ''}")
    reason = f" ({sub.status_reason})" if sub.status_reason else ""
    when = sub.status_changed_at.isoformat(" ", "seconds")
    click.echo(f"status:     {sub.status}{reason} since {when}")
    click.echo(f"created:    {sub.created_at.isoformat(' ', 'seconds')} from {sub.source or '?'}")
    for key, value in sorted(sub.attributes.items()):
        click.echo(f"attribute:  {key} = {value}")
    for m in memberships:
        why = f" ({m.status_reason})" if m.status_reason else ""
        click.echo(f"list:       {m.list_name}: {m.status}{why}")
    for c in consent:
        confirmed = f", confirmed {c['confirmed_at']}" if c["confirmed_at"] else ", not confirmed"
        click.echo(f"consent:    {c['list']}: signed up {c['signed_up_at']} by {c['source']}, "
                   f"text version {c['consent_version']}{confirmed}")


@subscribers_group.command("list")
@click.option("--list", "list_name", default=None, help="Only members of this list.")
@click.option("--status", type=STATUS_CHOICE, default=None, help="Only with this status.")
@click.option("--limit", type=click.IntRange(min=1), default=None, help="At most this many.")
@FORMAT
@click.pass_context
def subscribers_list(
    ctx: click.Context, list_name: str | None, status: str | None, limit: int | None, fmt: str
) -> None:
    """List subscribers in the order they were added.

    With --list, --status is the status in that list: someone active who unsubscribed
    from the list counts as unsubscribed.
    """
    from newsletter.audience.subscribers import iter_subscribers

    found = iter_subscribers(_engine(ctx), list_name=list_name, status=status)
    rows = (
        (
            sub.id,
            sub.email,
            sub.name or "",
            sub.effective_status,
            sub.created_at.isoformat(),
        )
        for sub in itertools.islice(found, limit)
    )
    _print_rows(["id", "email", "name", "status", "created"], rows, fmt)


@subscribers_group.command("count")
@click.option("--list", "list_name", default=None, help="Only members of this list.")
@click.option("--status", type=STATUS_CHOICE, default=None, help="Only with this status.")
@FORMAT
@click.pass_context
def subscribers_count(
    ctx: click.Context, list_name: str | None, status: str | None, fmt: str
) -> None:
    """Count subscribers: one number with --status, else one per status and the total."""
    from newsletter.audience.subscribers import count_by_status

    counts = count_by_status(_engine(ctx), list_name=list_name)
    if status is not None:
        if fmt == "table":
            click.echo(str(counts[status]))
        else:
            _print_rows(["status", "count"], [(status, counts[status])], fmt)
        return
    rows = [*counts.items(), ("total", sum(counts.values()))]
    _print_rows(["status", "count"], rows, fmt)


def _progress() -> tuple[Callable[[int, int, int], None], Callable[[], None]]:
    """A progress line with rate and ETA on stderr, when stderr is a terminal."""
    start = time.monotonic()
    shown = [False]

    def update(done: int, total: int, rows: int) -> None:
        elapsed = max(time.monotonic() - start, 1e-6)
        fraction = min(done / total, 1.0) if total else 1.0
        eta = elapsed * (1 - fraction) / fraction if fraction > 0 else 0.0
        bar = "#" * int(fraction * 30)
        line = (
            f"\r[{bar:<30}] {fraction:4.0%}  {rows:,} rows  {rows / elapsed:,.0f} rows/s  "
            f"ETA {int(eta) // 60}:{int(eta) % 60:02d} "
        )
        click.echo(line, err=True, nl=False)
        shown[0] = True

    def done() -> None:
        if shown[0]:
            click.echo("", err=True)

    if not sys.stderr.isatty():
        return (lambda done, total, rows: None), (lambda: None)
    return update, done


@subscribers_group.command("import")
@click.argument("file", type=click.Path(dir_okay=False, path_type=Path))
@click.option("--list", "list_name", default=None, help="Subscribe everyone to this list.")
@click.option(
    "--resubscribe",
    is_flag=True,
    help="Make addresses that unsubscribed, bounced or complained active again (asks first).",
)
@click.option("--yes", is_flag=True, help="Confirm --resubscribe without asking.")
@click.option(
    "--encoding",
    metavar="NAME",
    default=None,
    help="Read the file in this encoding (e.g. windows-1252, latin-1, utf-16) instead of "
    "the detected one.",
)
@click.option(
    "--format", "fmt", type=click.Choice(["text", "json"]), default="text", show_default=True
)
@click.pass_context
def subscribers_import(
    ctx: click.Context,
    file: Path,
    list_name: str | None,
    resubscribe: bool,
    yes: bool,
    encoding: str | None,
    fmt: str,
) -> None:
    """Import subscribers from a CSV FILE (comma, semicolon or tab; header row required).

    Rejected rows go to FILE.rejects.csv with their line number and reason. Running the
    same import again changes nothing; an interrupted import completes when run again.
    """
    from newsletter.audience.importer import import_csv

    if resubscribe:
        _confirm(
            "Make every address in the file that unsubscribed, bounced or complained active "
            "again? Only do this if they asked to come back.",
            yes,
        )
    engine = _engine(ctx)
    update, finish = _progress()
    try:
        report = import_csv(
            engine,
            file,
            list_name=list_name,
            resubscribe=resubscribe,
            progress=update,
            encoding=encoding,
        )
    finally:
        finish()
    if fmt == "json":
        click.echo(json.dumps(report.as_dict(), indent=2))
    else:
        for line in report.lines():
            click.echo(line)


@subscribers_group.command("export")
@click.option("--list", "list_name", default=None, help="Only members of this list.")
@click.option("--status", type=STATUS_CHOICE, default=None, help="Only with this status.")
@click.option("--consent", is_flag=True,
              help="Add a consent column: the sign-up consent records, as JSON.")
@click.option(
    "-o",
    "--output",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    help="Write to this file (default: standard output).",
)
@click.pass_context
def subscribers_export(
    ctx: click.Context, list_name: str | None, status: str | None, consent: bool,
    output: Path | None
) -> None:
    """Write subscribers as CSV (email, name, status[, list_status], attributes), which
    `newsletter subscribers import` reads back to the same state."""
    from newsletter.audience.importer import export_csv
    from newsletter.private import open_private

    engine = _engine(ctx)
    if output is None:
        export_csv(engine, sys.stdout, list_name=list_name, status=status, consent=consent)
        return
    partial = output.with_name(output.name + ".part")
    try:
        with open_private(partial, "w", encoding="utf-8", newline="") as out:
            count = export_csv(engine, out, list_name=list_name, status=status,
                               consent=consent)
        partial.replace(output)
    except OSError as exc:
        raise UsageError(f"{output}: cannot write: {exc.strerror}") from None
    finally:
        partial.unlink(missing_ok=True)
    click.echo(f"exported {count:,} subscribers to {output}", err=True)
