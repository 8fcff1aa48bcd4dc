"""Authoring commands: init, new, validate, render."""

from __future__ import annotations

import datetime as dt
import json
import sys
from pathlib import Path

import click

from . import fail, get_settings


@click.command("init")
@click.argument("directory", type=click.Path(file_okay=False, path_type=Path))
@click.option("--name", default="The Daily Briefing", show_default=True, help="Newsletter name.")
@click.option("--no-samples", is_flag=True, help="Do not copy the sample issues.")
def init_cmd(directory: Path, name: str, no_samples: bool) -> None:
    """Create a newsletter project in DIRECTORY (issues/, templates/, newsletter.toml).

    Example: newsletter init my-briefing
    """
    from newsletter.authoring.project import init_project

    config = init_project(directory, name=name, samples=not no_samples)
    click.echo(f"Created {config}")
    click.echo(
        "  readable only by you (mode 0600): it holds the secret key; the database, exports, "
        "rejects files, the outbox and dry-run samples are created the same way"
    )
    click.echo(f"Next: cd {directory} && newsletter new")


@click.command("new")
@click.option(
    "--date",
    "date_",
    type=click.DateTime(formats=["%Y-%m-%d"]),
    default=None,
    help="Issue date, YYYY-MM-DD (default: today in the project's time zone).",
)
@click.option("--subject", default=None, help="Subject line to start from.")
@click.pass_context
def new_cmd(ctx: click.Context, date_: dt.datetime | None, subject: str | None) -> None:
    """Create a new issue file in issues/ from the template, ready to edit.

    Example: newsletter new --date 2026-12-01
    """
    from newsletter.authoring.project import new_issue

    path = new_issue(get_settings(ctx), date=date_.date() if date_ else None, subject=subject)
    click.echo(str(path))


@click.command("validate")
@click.argument("files", nargs=-1, type=click.Path(path_type=Path))
@click.option(
    "--format", "fmt", type=click.Choice(["text", "json"]), default="text", show_default=True
)
@click.option("--strict", is_flag=True, help="Treat warnings as errors.")
@click.pass_context
def validate_cmd(ctx: click.Context, files: tuple[Path, ...], fmt: str, strict: bool) -> None:
    """Check issue FILES or folders (default: every file in issues/); findings as file:line.

    Exit status: 0 no errors, 1 errors found, 2 usage error or unreadable file.

    Example: newsletter validate issues/2026-11-24.md
    """
    from newsletter.authoring.build import build_file
    from newsletter.authoring.project import issue_files
    from newsletter.errors import UsageError

    settings = get_settings(ctx)
    paths: list[Path] = []
    empty_folders = []
    for given in files:  # a folder stands for the issue files in it
        inside = sorted(given.glob("*.md")) if given.is_dir() else [given]
        paths.extend(inside)
        if not inside:
            empty_folders.append(given)
    if not files:
        paths = issue_files(settings)
    if not paths and not empty_folders:
        fail(f"no issue files given and none in {settings.issues_path}", 2)
    findings = []
    unreadable = len(empty_folders)
    for folder in empty_folders:
        click.echo(f"newsletter: {folder}: a folder with no issue files (*.md) in it", err=True)
    errors = warnings = 0
    from newsletter.delivery.history import recent_links  # the recent-link rule's source

    for path in paths:
        try:
            result = build_file(path, settings, sent_links=recent_links)
        except UsageError as exc:
            unreadable += 1
            click.echo(f"newsletter: {exc}", err=True)
            continue
        findings.extend(result.findings)
        errors += len(result.errors)
        warnings += len(result.warnings)
    if fmt == "json":
        click.echo(json.dumps([f.model_dump(mode="json") for f in findings], indent=2))
    else:
        for finding in findings:
            click.echo(finding.format())
        checked = len(paths) + len(empty_folders) - unreadable
        click.echo(
            f"{checked} file{'s' if checked != 1 else ''} checked: "
            f"{errors} error{'s' if errors != 1 else ''}, "
            f"{warnings} warning{'s' if warnings != 1 else ''}",
            err=True,
        )
    if unreadable:
        sys.exit(2)
    if errors or (strict and warnings):
        sys.exit(1)


@click.command("render")
@click.argument("file", type=click.Path(dir_okay=False, path_type=Path))
@click.option("-o", "--output", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="Write the HTML here (default: standard output).")
@click.option("--text", "text_out", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="Write the plain-text part here.")
@click.option("--mjml", "mjml_out", type=click.Path(dir_okay=False, path_type=Path),
              default=None, help="Also write the intermediate MJML (for template authors).")
@click.pass_context
def render_cmd(
    ctx: click.Context,
    file: Path,
    output: Path | None,
    text_out: Path | None,
    mjml_out: Path | None,
) -> None:
    """Render FILE to email HTML (CSS inlined) and a plain-text part.

    Refuses (exit status 1) when the issue has errors; warnings are shown on stderr.

    Example: newsletter render issues/2026-11-24.md -o out.html --text out.txt
    """
    from newsletter.authoring.build import build_file
    from newsletter.authoring.render import render_mjml

    settings = get_settings(ctx)
    result = build_file(file, settings)
    for finding in result.findings:
        click.echo(finding.format(), err=True)
    if not result.ok or result.rendered is None:
        fail(f"{file}: not rendered: fix the {len(result.errors)} error(s) above", 1)
        return
    rendered = result.rendered
    if result.issue is not None:
        from newsletter.authoring.media import publish

        for media in publish(settings, result.issue):  # local images, resized, in out/media/
            click.echo(f"{media}: image", err=True)
    for target, content in ((output, rendered.html), (text_out, rendered.text)):
        if target is not None:
            _write(target, content)
    if mjml_out is not None and result.issue is not None:
        _write(mjml_out, render_mjml(result.issue, settings))
    if output is None:
        click.echo(rendered.html, nl=False)
    else:
        click.echo(
            f"{output}: {rendered.size / 1024:.1f} KB HTML"
            + (f", {text_out}: plain text" if text_out else ""),
            err=True,
        )


def _write(path: Path, content: str) -> None:
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(content, encoding="utf-8")
    except OSError as exc:
        fail(f"{path}: cannot write: {exc.strerror}", 2)
