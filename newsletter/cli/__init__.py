"""The ``newsletter`` command: a thin layer over the library.

Commands live in small modules and are imported only when used, so that
``newsletter validate`` starts fast. To add a command, add a line to ``COMMANDS``.
Every command gets the project's settings through ``get_settings(ctx)``.
"""

from __future__ import annotations

import importlib
import sys
from typing import Any, NoReturn

import click

from newsletter.errors import NewsletterError  # no dependencies: cheap at startup

COMMANDS: dict[str, tuple[str, str]] = {
    # name: (module:attribute, one-line help shown in `newsletter --help`)
    "init": ("newsletter.cli.authoring:init_cmd", "Create a newsletter project folder."),
    "new": ("newsletter.cli.authoring:new_cmd", "Create today's issue file, ready to edit."),
    "validate": ("newsletter.cli.authoring:validate_cmd", "Check issue files; point at file:line."),
    "render": ("newsletter.cli.authoring:render_cmd", "Render an issue to email HTML and text."),
    "check": ("newsletter.cli.check:check_cmd", "Fetch an issue's links and images; report by line."),
    "demo": ("newsletter.cli.demo:demo_cmd", "Build a demo project and run the whole job."),
    "db": ("newsletter.cli.store:db_group", "The database schema: upgrade, current."),
    "lists": ("newsletter.cli.store:lists_group", "Mailing lists: create, list, delete."),
    "subscribers": (
        "newsletter.cli.store:subscribers_group",
        "Subscribers: add, remove, unsubscribe, show, list, count, import, export.",
    ),
    "preview": ("newsletter.cli.preview:preview_cmd", "Serve a live browser preview of issues."),
    "send": ("newsletter.cli.send:send_cmd", "Send an issue to a list, exactly once each."),
    "sends": ("newsletter.cli.send:sends_group", "Report sends: list, show."),
    "schedule": (
        "newsletter.cli.schedule:schedule_group",
        "Schedule an issue for later; list, cancel, move schedules.",
    ),
    "worker": (
        "newsletter.cli.schedule:worker_cmd",
        "Send scheduled issues on time; run until stopped.",
    ),
    "form": ("newsletter.cli.signup:form_cmd", "Print an HTML sign-up form for your site."),
    "welcome": (
        "newsletter.cli.welcome:welcome_group",
        "The welcome email for new subscribers: send, resume, preview.",
    ),
    "suppressions": (
        "newsletter.cli.suppressions:suppressions_group",
        "The suppression list: list, add, remove, import provider exports.",
    ),
    "bounces": ("newsletter.cli.bounces:bounces_group", "The bounce mailbox: fetch."),
    "serve": (
        "newsletter.cli.serve:serve_cmd",
        "Serve the public endpoints: sign-up, unsubscribe, webhook, archive.",
    ),
}


class LazyGroup(click.Group):
    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted(COMMANDS)

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        target = COMMANDS.get(cmd_name)
        if target is None:
            return None
        module_name, attr = target[0].split(":")
        return getattr(importlib.import_module(module_name), attr)

    def format_commands(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        rows = [(name, COMMANDS[name][1]) for name in self.list_commands(ctx)]
        with formatter.section("Commands"):
            formatter.write_dl(rows)


@click.group(cls=LazyGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.option(
    "--project",
    type=click.Path(file_okay=False, path_type=str),
    default=None,
    envvar="NEWSLETTER_PROJECT",
    help="The newsletter project folder (default: the nearest folder with newsletter.toml).",
)
@click.version_option(package_name="newsletter")
@click.pass_context
def cli(ctx: click.Context, project: str | None) -> None:
    """Write, check, render and send a daily-briefing email newsletter."""
    ctx.ensure_object(dict)
    ctx.obj["project"] = project


def get_settings(ctx: click.Context) -> Any:
    """The project's Settings, loaded once per invocation."""
    from newsletter.config import load_settings

    root = ctx.find_root()
    root.ensure_object(dict)
    if "settings" not in root.obj:
        root.obj["settings"] = load_settings(root.obj.get("project"))
    return root.obj["settings"]


def fail(message: str, code: int = 1) -> None:
    """Print one line to stderr and exit with ``code``."""
    click.echo(f"newsletter: {message}", err=True)
    sys.exit(code)


def main(argv: list[str] | None = None) -> None:
    """Entry point: never lets a traceback reach the user.

    Every problem the user can fix is a ``NewsletterError`` (the tree in
    ``newsletter.errors``), reported here and only here: one line, its exit code. A
    failure of the database itself (a full disk, a damaged file) is turned into one.
    """
    state: dict[str, Any] = {}  # the command's ctx.obj: its settings, once loaded
    try:
        code = cli.main(args=argv, prog_name="newsletter", standalone_mode=False, obj=state)
    except NewsletterError as exc:
        _report(exc)
    except click.exceptions.Abort:
        click.echo("newsletter: aborted", err=True)
        sys.exit(130)
    except click.ClickException as exc:
        exc.show()
        sys.exit(exc.exit_code)
    except KeyboardInterrupt:
        click.echo("newsletter: interrupted", err=True)
        sys.exit(130)
    except BrokenPipeError:
        sys.exit(0)
    except Exception as exc:  # the last line of defence: one line, no traceback
        if _debug():
            raise
        known = _database_failure(exc, state)
        if known is not None:
            _report(known)
        click.echo(
            f"newsletter: internal error: {type(exc).__name__}: {exc} "
            "(run with NEWSLETTER_DEBUG=1 for details and report it)",
            err=True,
        )
        sys.exit(70)
    sys.exit(code if isinstance(code, int) else 0)


def _report(error: NewsletterError) -> NoReturn:
    click.echo(f"newsletter: {error}", err=True)
    sys.exit(error.exit_code)


def _database_failure(exc: Exception, state: dict[str, Any]) -> NewsletterError | None:
    """A full disk, a damaged or foreign database file...: one line saying what to do."""
    from newsletter.db.failures import describe_database, explain

    settings = state.get("settings")
    where = describe_database(settings.effective_database_url) if settings else "the database"
    return explain(exc, where)


def _debug() -> bool:
    import os

    return os.environ.get("NEWSLETTER_DEBUG", "") not in ("", "0")
