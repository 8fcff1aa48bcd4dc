"""`newsletter preview`: serve the live browser preview of the project's issues."""

from __future__ import annotations

import socket
from pathlib import Path

import click

from . import get_settings

LOOPBACK_NAMES = ["127.0.0.1", "localhost"]


def _is_loopback(host: str) -> bool:
    return host in ("127.0.0.1", "localhost", "::1") or host.startswith("127.")


def _bind(host: str, port: int) -> socket.socket:
    from newsletter.errors import UsageError

    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
    except OSError as exc:
        sock.close()
        reason = "is in use" if exc.errno in (98, 48) else f"cannot be opened ({exc.strerror})"
        raise UsageError(
            f"{host}:{port} {reason}: stop the other server or pick another port with --port"
        ) from None
    sock.listen(128)
    sock.set_inheritable(True)
    return sock


def issue_url(settings, base: str, file: Path | None) -> str:
    """The preview URL for FILE (an issue of this project), or the index."""
    from newsletter.errors import UsageError

    if file is None:
        return base + "/"
    path = Path(file).resolve()
    if not path.is_file():
        raise UsageError(f"{file}: no such file")
    issues = settings.issues_path.resolve()
    if path.parent != issues or path.suffix != ".md":
        raise UsageError(
            f"{file}: not an issue file of this project; the preview shows the .md files in "
            f"{issues} (choose the project with --project)"
        )
    return f"{base}/issues/{path.stem}"


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
    import uvicorn

    from newsletter.web import create_app, stopping

    settings = get_settings(ctx)
    sock = _bind(host, port)
    bound_port = sock.getsockname()[1]
    shown_host = f"[{host}]" if ":" in host else host
    url = issue_url(settings, f"http://{shown_host}:{bound_port}", file)
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
    config = uvicorn.Config(
        app, log_level="warning", access_log=False, timeout_graceful_shutdown=1, lifespan="on"
    )

    class Server(uvicorn.Server):
        def handle_exit(self, sig, frame) -> None:  # Ctrl+C: answer open pages first
            stopping(app)
            super().handle_exit(sig, frame)

    try:
        Server(config).run(sockets=[sock])
    except KeyboardInterrupt:  # uvicorn re-raises Ctrl+C after a clean shutdown
        pass
    finally:
        sock.close()
    click.echo("Preview stopped.")
