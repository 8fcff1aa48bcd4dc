"""The demo command."""

from __future__ import annotations

from pathlib import Path

import click


@click.command("demo")
@click.argument(
    "directory", type=click.Path(file_okay=False, path_type=Path), default="demo-newsletter"
)
def demo_cmd(directory: Path) -> None:
    """Create (or reuse) a demo project in DIRECTORY and run the whole job on it.

    Example: newsletter demo demo-newsletter
    """
    from newsletter.demo import run_demo

    run_demo(directory, echo=click.echo)
