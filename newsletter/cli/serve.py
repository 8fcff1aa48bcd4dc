"""`newsletter serve`: the public endpoints (unsubscribe, SendGrid webhook, archive)."""

from __future__ import annotations

import click

from . import get_settings


@click.command("serve")
@click.option("--host", default="127.0.0.1", show_default=True,
              help="Address to listen on (behind a reverse proxy, keep the loopback).")
@click.option("--port", default=8000, show_default=True, type=click.IntRange(0, 65535),
              help="Port to serve on (0: any free port).")
@click.option("--workers", default=1, show_default=True, type=click.IntRange(1, 64),
              help="Worker processes sharing the socket.")
@click.pass_context
def serve_cmd(ctx: click.Context, host: str, port: int, workers: int) -> None:
    """Serve the public pages: one-click unsubscribe, the SendGrid event webhook, the archive.

    Endpoints: GET/POST /u/TOKEN, GET/POST /subscribe, POST /api/subscribe,
    GET/POST /confirm/TOKEN, POST /webhooks/sendgrid, GET /archive,
    /archive/feed.xml, /archive/SLUG and /healthz. Serves until Ctrl+C.

    Example: newsletter serve --host 127.0.0.1 --port 8000
    """
    from newsletter.web import create_app
    from newsletter.web.server import listening_socket, serve

    settings = get_settings(ctx)
    app = create_app(settings, preview=False, public=True)  # checks the settings first
    sock = listening_socket(host, port)
    shown_host = f"[{host}]" if ":" in host else host
    url = f"http://{shown_host}:{sock.getsockname()[1]}"
    if not settings.sendgrid_webhook_public_key:
        click.echo("warning: sendgrid_webhook_public_key is not set: POST /webhooks/sendgrid "
                   "refuses every request (403)", err=True)
    click.echo(f"Serving {settings.name} at {url} (unsubscribe, webhook"
               + (", archive" if settings.archive else "") + f"; {workers} worker(s); "
               "Ctrl+C to stop)")
    if workers == 1:
        serve(app, sock)
    else:
        _serve_workers(settings, sock, workers)
    click.echo("Stopped.")


def _serve_workers(settings, sock, workers: int) -> None:
    import os

    from uvicorn.supervisors import Multiprocess

    from newsletter.web.public import PROJECT_VARIABLE
    from newsletter.web.server import server_config

    os.environ[PROJECT_VARIABLE] = str(settings.project_dir)
    config = server_config("newsletter.web.public:app_from_environment", factory=True,
                           workers=workers)
    try:
        Multiprocess(config, sockets=[sock]).run()
    except KeyboardInterrupt:
        pass
    finally:
        sock.close()
