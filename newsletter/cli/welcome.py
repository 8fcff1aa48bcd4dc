"""``newsletter welcome``: the welcome email new subscribers receive (``issues/_welcome.md``)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import click

from newsletter.cli import fail, get_settings


def _engine(ctx: click.Context) -> Any:
    from newsletter.db.connect import open_store

    return open_store(get_settings(ctx))


def _report(result: Any) -> str:
    line = f"{result.sent} welcome email(s) sent"
    if result.uncertain:
        line += (f", {result.uncertain} uncertain (resend with `newsletter welcome resume "
                 "--resend-uncertain`)")
    if result.failed:
        line += f", {result.failed} failed (see `newsletter sends show ID`)"
    return line


@click.group("welcome")
def welcome_group() -> None:
    """The welcome email (issues/_welcome.md): send, resume, preview."""


@welcome_group.command("send")
@click.option("--to", "addresses", multiple=True, required=True, metavar="ADDRESS",
              help="A subscriber to welcome (repeatable); each is welcomed at most once.")
@click.option("--backend", type=click.Choice(["outbox", "smtp", "sendgrid"]), default=None,
              help="Override the configured backend.")
@click.pass_context
def welcome_send(ctx: click.Context, addresses: tuple[str, ...], backend: str | None) -> None:
    """Send the welcome email to subscribers who have not had it.

    Example: newsletter welcome send --to ann@example.org
    """
    from newsletter.audience.subscribers import get_subscriber
    from newsletter.audience.welcome import send_welcome, welcome_path

    settings = get_settings(ctx)
    if not welcome_path(settings).is_file():
        fail(f"{welcome_path(settings)}: no welcome email; write one (`newsletter init` "
             "makes a sample) and run this again")
    engine = _engine(ctx)
    found = [get_subscriber(engine, address) for address in addresses]
    result = send_welcome(engine, settings, [s.id for s in found], backend=backend)
    click.echo(_report(result))
    if result.not_sent:
        click.echo(f"{result.not_sent} not sent: welcomed before, or not receiving "
                   "(unsubscribed, paused, on no list)")
    if result.uncertain or result.failed or result.not_sent:
        ctx.exit(1)


@welcome_group.command("resume")
@click.option("--resend-uncertain", is_flag=True,
              help="Also resend messages whose answer never came back (they may arrive twice).")
@click.option("--backend", type=click.Choice(["outbox", "smtp", "sendgrid"]), default=None,
              help="Override the backend the sends were started with.")
@click.pass_context
def welcome_resume(ctx: click.Context, resend_uncertain: bool, backend: str | None) -> None:
    """Finish welcome sends a crash or an unavailable backend left unfinished."""
    from newsletter.audience.welcome import resume_welcomes

    result = resume_welcomes(_engine(ctx), get_settings(ctx), backend=backend,
                             resend_uncertain=resend_uncertain)
    if not result.send_ids:
        click.echo("no unfinished welcome sends")
        return
    click.echo(f"resumed {len(result.send_ids)} welcome send(s): {_report(result)}")


@welcome_group.command("preview")
@click.option("-o", "--output", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="Write the HTML to FILE instead of printing it.")
@click.option("--text", "as_text", is_flag=True, help="The plain-text part instead of HTML.")
@click.pass_context
def welcome_preview(ctx: click.Context, output: Path | None, as_text: bool) -> None:
    """Print the welcome email as a new subscriber sees it (or `newsletter preview`
    shows it beside the issues).

    Example: newsletter welcome preview -o out/welcome.html
    """
    from newsletter.audience.welcome import build_welcome, welcome_path

    settings = get_settings(ctx)
    rendered = build_welcome(settings, personal=False)
    if rendered is None:
        fail(f"{welcome_path(settings)}: no welcome email; write one (`newsletter init` "
             "makes a sample)")
    assert rendered is not None
    content = rendered.text if as_text else rendered.html
    if output is None:
        click.echo(content, nl=False)
        return
    try:
        output.write_text(content, encoding="utf-8")
    except OSError as exc:
        fail(f"{output}: cannot write: {exc.strerror or exc}", 2)
    click.echo(f"wrote {output}")
