"""`newsletter preview`: serve the live browser preview of the project's issues."""

from __future__ import annotations

import ipaddress
import re
from pathlib import Path
from typing import TYPE_CHECKING

import click

from . import get_settings

if TYPE_CHECKING:
    from newsletter.config import Settings

LOOPBACK_NAMES = ["localhost", "127.0.0.1", "[::1]"]
_NAME = re.compile(r"(\*\.)?[A-Za-z0-9_]([A-Za-z0-9_-]*[A-Za-z0-9_])?(\.[A-Za-z0-9_]([A-Za-z0-9_-]*[A-Za-z0-9_])?)*\.?")


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def host_name(value: str) -> str | None:
    """``value`` as it appears in a ``Host`` header (IPv6 in brackets, no port, lower
    case), or None when it is not a host name, a ``*.domain`` pattern or an IP address."""
    text = value.strip().lower()
    try:
        address = ipaddress.ip_address(text.strip("[]"))
    except ValueError:
        return text.rstrip(".") if _NAME.fullmatch(text) else None
    return f"[{address.compressed}]" if address.version == 6 else address.compressed


def allowed_hosts(host: str, extra: tuple[str, ...]) -> list[str]:
    """The ``Host`` names the preview answers, whatever it listens on: the loopback
    names, the address it is bound to and each ``--allow-host``. Any other name is
    refused (400), so a web page cannot rebind its own name to the preview."""
    from newsletter.errors import UsageError

    names = [*LOOPBACK_NAMES]
    bound = host_name(host)
    if bound is not None:
        names.append(bound)
    for value in extra:
        name = host_name(value)
        if name is None:
            raise UsageError(
                f"--allow-host {value!r} is not a host name or IP address; give the name "
                "people type in the address bar, without a port (e.g. --allow-host "
                "preview.lan); '*' is refused: it would let any web page read the drafts")
        names.append(name)
    return list(dict.fromkeys(names))


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
@click.option("--allow-host", "allow_host", multiple=True, metavar="NAME",
              help="Also answer requests for this host name (repeatable); by default only "
                   "localhost, 127.0.0.1, [::1] and the --host address are answered.")
@click.option("--open", "open_browser", is_flag=True,
              help="Also open the page in the system's web browser.")
@click.pass_context
def preview_cmd(
    ctx: click.Context, file: Path | None, port: int, host: str, allow_host: tuple[str, ...],
    open_browser: bool,
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
    allowed = allowed_hosts(host, allow_host)
    sock = listening_socket(host, port)
    shown_host = f"[{host}]" if ":" in host else host
    url = f"http://{shown_host}:{sock.getsockname()[1]}{path}"
    app = create_app(settings, preview=True, allowed_hosts=allowed)
    if not _is_loopback(host):
        click.echo(
            f"warning: listening on {host}: anyone who can reach it can read unsent issues; "
            f"it answers requests for {', '.join(allowed)} only (--allow-host NAME for more)",
            err=True,
        )
    click.echo(f"Previewing {settings.issues_path} at {url}  (Ctrl+C to stop)")
    if open_browser:
        import webbrowser

        webbrowser.open(url)
    serve(app, sock)
    click.echo("Preview stopped.")
