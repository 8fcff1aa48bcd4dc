"""``newsletter bounces fetch``: read the bounce mailbox once and apply what it reports."""

from __future__ import annotations

import json

import click

from newsletter.cli import get_settings
from newsletter.cli.store import _engine


@click.group("bounces")
def bounces_group() -> None:
    """The bounce mailbox of SMTP sends (``bounce_mailbox`` in newsletter.toml)."""


@bounces_group.command("fetch")
@click.option("--limit", type=click.IntRange(min=1), default=None,
              help="Read at most N messages this time.")
@click.option("--format", "fmt", type=click.Choice(["text", "json"]), default="text",
              show_default=True)
@click.pass_context
def bounces_fetch(ctx: click.Context, limit: int | None, fmt: str) -> None:
    """Read the bounce mailbox over IMAP (TLS): apply hard bounces and complaints, count
    soft bounces, move what was read to the processed folder."""
    from newsletter.feedback import mailbox

    report = mailbox.fetch(_engine(ctx), get_settings(ctx), limit=limit)
    if fmt == "json":
        click.echo(json.dumps({"read": report.read, "applied": dict(report.applied),
                               "duplicates": report.duplicates,
                               "soft_to_hard": report.soft_to_hard}))
    else:
        click.echo(report.line())
