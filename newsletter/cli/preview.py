"""`newsletter preview`: serve the live browser preview of the project's issues."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import click

from . import get_settings

if TYPE_CHECKING:
    from newsletter.config import Settings

LOOPBACK_NAMES = ["127.0.0.1", "localhost"]


def _is_loopback(host: str) -> bool:
    return host in ("127.0.0.1", "localhost", "::1") or host.startswith("127.")


def page_path(settings: Settings, file: Path | None) -> str:
    """The preview page for FILE (an issue file of this project), or the index."""
    from newsletter.errors import UsageError

    if file is None:
        return "/"
    path = Path(file).resolve()
    if not path.is_file():
        raise UsageError(f"{file}: no such file")
    issues = settings.issues_path.resolve()
    if path.parent != issues or path.suffix != ".md":
        raise UsageError(
            f"{file}: not an issue file of this project; the preview shows the .md files in "
            f"{issues} (choose the project with --project)"
        )
    return f"/issues/{path.stem}"


@click.command("preview")
@click.argument("file", required=False, type=click.Path(dir_okay=False, path_type=Path))
@click.option("--port", default=8025, show_default=True, type=click.IntRange(0, 65535),
              help="Port to serve on (0: any free port).")
@click.option("--host", default="127.0.0.1", show_default=True,
              help="Address to listen on; keep the default unless you know why.")
@click.option("--open", "open_browser", is_flag=True,
              help="Also open the page in the system's web browser.")
@click.pass_context
def preview_cmd(
    ctx: click.Context, file: Path | None, port: int, host: str, open_browser: bool
) -> None:
    """Serve a live preview of the issues (or of FILE) at desktop and phone widths.

    Prints the URL and serves until Ctrl+C. Saving an issue, a template or
    newsletter.toml updates the open page by itself.

    Example: newsletter preview issues/2026-11-25.md --port 8025
    """
    from newsletter.web import create_app
    from newsletter.web.server import listening_socket, serve

    settings = get_settings(ctx)
    path = page_path(settings, file)
    sock = listening_socket(host, port)
    shown_host = f"[{host}]" if ":" in host else host
    url = f"http://{shown_host}:{sock.getsockname()[1]}{path}"
    # Loopback only: refuse other Host names, so a web page cannot rebind its name to us.
    allowed = [*LOOPBACK_NAMES, host] if _is_loopback(host) and ":" not in host else None
    app = create_app(settings, preview=True, allowed_hosts=allowed)
    if not _is_loopback(host):
        click.echo(
            f"warning: listening on {host}: anyone who can reach it can read unsent issues",
            err=True,
        )
    click.echo(f"Previewing {settings.issues_path} at {url}  (Ctrl+C to stop)")
    if open_browser:
        import webbrowser

        webbrowser.open(url)
    serve(app, sock)
    click.echo("Preview stopped.")
