"""``newsletter check``: fetch every link and image of issues and report problems by line."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import click

from . import get_settings


@click.command("check")
@click.argument("files", nargs=-1, required=True, type=click.Path(path_type=Path))
@click.option("--format", "fmt", type=click.Choice(["text", "json"]), default="text",
              show_default=True)
@click.option("--no-cache", is_flag=True, help="Fetch every URL again (answers are kept a day).")
@click.option("--timeout", type=click.FloatRange(0.5, 120), default=10.0, show_default=True,
              help="Seconds allowed for each URL.")
@click.option("--per-host", type=click.IntRange(1, 32), default=6, show_default=True,
              help="Requests at a time to one host.")
@click.option("--max-redirects", type=click.IntRange(0, 10), default=3, show_default=True,
              help="Redirect hops a link may take before it is reported.")
@click.option("--strict", is_flag=True, help="Treat warnings as errors.")
@click.pass_context
def check_cmd(ctx: click.Context, files: tuple[Path, ...], fmt: str, no_cache: bool,
              timeout: float, per_host: int, max_redirects: int, strict: bool) -> None:
    """Fetch every link and image of issue FILES; report broken ones as file:line.

    Exit status: 0 no errors, 1 errors found, 2 an unreadable file.

    Example: newsletter check issues/2026-11-24.md
    """
    from newsletter.authoring.linkcheck import CheckOptions, check_file
    from newsletter.errors import UsageError

    settings = get_settings(ctx)
    options = CheckOptions(timeout=timeout, per_host=per_host, max_redirects=max_redirects,
                           use_cache=not no_cache)
    findings, unreadable, summary = [], 0, []
    for path in files:
        try:
            report = check_file(settings, path, options)
        except UsageError as exc:
            unreadable += 1
            click.echo(f"newsletter: {exc}", err=True)
            continue
        findings.extend(report.findings)
        summary.append(f"{path}: {report.checked} URL(s) checked, {report.fetched} fetched "
                       f"now ({report.checked - report.fetched} from the cache) in "
                       f"{report.seconds:.1f} s")
    errors = sum(1 for f in findings if f.severity.value == "error")
    warnings = len(findings) - errors
    if fmt == "json":
        click.echo(json.dumps([f.model_dump(mode="json") for f in findings], indent=2))
    else:
        for finding in findings:
            click.echo(finding.format())
        for line in summary:
            click.echo(line, err=True)
        click.echo(f"{errors} error{'s' if errors != 1 else ''}, "
                   f"{warnings} warning{'s' if warnings != 1 else ''}", err=True)
    if unreadable:
        sys.exit(2)
    if errors or (strict and warnings):
        sys.exit(1)
