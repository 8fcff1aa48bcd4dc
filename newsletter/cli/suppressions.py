"""``newsletter suppressions``: the one suppression list (list, add, remove, import)."""

from __future__ import annotations

import json

import click

from newsletter.cli.store import FORMAT, _confirm, _engine, _print_rows
from newsletter.errors import UsageError

REASONS = click.Choice(["bounced", "complained", "unsubscribed", "manual"])


@click.group("suppressions")
def suppressions_group() -> None:
    """Addresses refused for every list and every backend: bounced, complained,
    unsubscribed at a provider, or suppressed by hand."""


@suppressions_group.command("list")
@click.option("--reason", type=REASONS, default=None, help="Only this reason.")
@click.option("--limit", type=click.IntRange(min=1), default=None, help="At most N, newest first.")
@FORMAT
@click.pass_context
def suppressions_list(ctx: click.Context, reason: str | None, limit: int | None, fmt: str
                      ) -> None:
    """List suppressed addresses, newest first."""
    from newsletter.audience import suppressions

    found = suppressions.listing(_engine(ctx), reason=reason, limit=limit)
    rows = [(s.email, s.reason, s.source, s.created_at.isoformat(timespec="seconds"),
             s.detail or "") for s in found]
    _print_rows(["email", "reason", "source", "since", "detail"], rows, fmt)


@suppressions_group.command("add")
@click.argument("emails", nargs=-1, required=True)
@click.option("--reason", type=REASONS, default="manual", show_default=True)
@click.option("--note", default=None, help="Why, kept with the suppression.")
@click.pass_context
def suppressions_add(ctx: click.Context, emails: tuple[str, ...], reason: str,
                     note: str | None) -> None:
    """Suppress addresses: no send reaches them, from now on (sends under way included)."""
    from newsletter.audience import suppressions

    added = suppressions.add(_engine(ctx), emails, reason=reason, detail=note)
    click.echo(f"suppressed {added:,} address(es); {len(set(emails)) - added:,} already were")


@suppressions_group.command("remove")
@click.argument("emails", nargs=-1, required=True)
@click.option("--yes", is_flag=True, help="Do not ask for confirmation.")
@click.pass_context
def suppressions_remove(ctx: click.Context, emails: tuple[str, ...], yes: bool) -> None:
    """Take addresses off the suppression list (their subscriber status is unchanged:
    a bounced subscriber needs `subscribers add --resubscribe`)."""
    from newsletter.audience import suppressions

    _confirm(f"Take {len(emails)} address(es) off the suppression list?", yes)
    removed = suppressions.remove(_engine(ctx), emails)
    if not removed:
        raise UsageError("none of these addresses is suppressed; nothing changed")
    click.echo(f"removed {removed:,} address(es) from the suppression list")


@suppressions_group.command("import")
@click.argument("file", type=click.Path(dir_okay=False, path_type=str))
@click.option("--format", "fmt", type=click.Choice(["text", "json"]), default="text",
              show_default=True)
@click.pass_context
def suppressions_import(ctx: click.Context, file: str, fmt: str) -> None:
    """Import a suppression export of SendGrid, Amazon SES, Postmark or Mailgun (CSV;
    the provider is recognised from the header line)."""
    from pathlib import Path

    from newsletter.audience import suppressions

    report = suppressions.import_csv(_engine(ctx), Path(file))
    if fmt == "json":
        click.echo(json.dumps({"format": report.format, "rows": report.rows,
                               "added": dict(report.added), "already": report.already,
                               "invalid_lines": report.invalid}))
        return
    added = ", ".join(f"{n:,} {r}" for r, n in sorted(report.added.items())) or "none"
    click.echo(f"imported {file} ({report.format} export): {report.rows:,} rows; "
               f"added {added}; {report.already:,} already suppressed")
    if report.invalid:
        lines = ", ".join(map(str, report.invalid[:10]))
        more = " ..." if len(report.invalid) > 10 else ""
        click.echo(f"  skipped {len(report.invalid):,} invalid address(es) on line(s) "
                   f"{lines}{more}")
