"""Security headers on every kind of response of both web apps, in-process over ASGI
(httpx); redirects and absolute URLs that never come from the Host header; the preview's
Host check on every bind, with --allow-host."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import re
import signal
import subprocess
import xml.etree.ElementTree as ET
from pathlib import Path
from urllib.parse import unquote

import httpx
import pytest
from starlette.routing import Route

from newsletter.audience import tokens
from newsletter.config import Settings
from newsletter.delivery import sending
from newsletter.web import create_app
from newsletter.web.security import NOTHING_CSP, PAGE_CSP

from .sendtools import make_project, run_cli, seed

EVIL = {"Host": "evil.example"}


def _requests(app, *calls: tuple[str, str, dict]) -> list[httpx.Response]:
    async def go() -> list[httpx.Response]:
        transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
        async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as c:
            return [await c.request(method, url, **kw) for method, url, kw in calls]

    return asyncio.run(go())


async def _raw_get(app, raw_path: bytes) -> tuple[int, dict[bytes, bytes]]:
    """A GET as uvicorn hands it to the app: the path percent-decoded, Host evil."""
    scope = {"type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1",
             "method": "GET", "scheme": "http", "path": unquote(raw_path.decode()),
             "raw_path": raw_path, "root_path": "", "query_string": b"",
             "headers": [(b"host", b"evil.example")], "client": ("127.0.0.1", 5000),
             "server": ("127.0.0.1", 8000)}
    sent: list[dict] = []

    async def receive() -> dict:
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message: dict) -> None:
        sent.append(message)

    await app(scope, receive, send)
    start = next(m for m in sent if m["type"] == "http.response.start")
    return start["status"], dict(start["headers"])


def _boom(request):  # an unexpected failure inside a route: the app's own 500 page
    raise RuntimeError("boom")


def _directives(response: httpx.Response) -> dict[str, str]:
    policy = response.headers["content-security-policy"]
    return {part.split(" ", 1)[0]: part.partition(" ")[2] for part in policy.split("; ")}


def _assert_secured(response: httpx.Response, what: str) -> dict[str, str]:
    assert response.headers.get("x-content-type-options") == "nosniff", what
    assert response.headers.get("referrer-policy") == "no-referrer", what
    policy = _directives(response)
    assert policy["default-src"] == "'none'", what
    assert "'unsafe-eval'" not in str(policy) and "*" not in str(policy), what
    assert policy.get("frame-ancestors") in ("'none'", "'self'"), what
    return policy


@pytest.fixture
def public(tmp_path: Path):
    settings = make_project(tmp_path / "p")
    engine = seed(settings, 2)
    prepared = sending.preflight(settings, settings.project_dir / "issues/2026-11-24.md")
    sending.start(engine, settings, prepared, "daily", backend="outbox")
    app = create_app(settings, preview=False, public=True)
    app.router.routes.append(Route("/boom", _boom))
    yield settings, app, tokens.sign(settings, 1, 1)
    engine.dispose()


def test_every_public_response_carries_the_security_headers(public) -> None:
    settings, app, token = public
    kinds = {
        "page": ("GET", f"/u/{token}", {}), "invalid token": ("GET", "/u/nope", {}),
        "one-click": ("POST", f"/u/{token}", {"data": {"List-Unsubscribe": "One-Click"}}),
        "too large": ("POST", f"/u/{token}", {"content": b"x" * 20_000}),
        "health": ("GET", "/healthz", {}), "webhook 403": ("POST", "/webhooks/sendgrid", {}),
        "404": ("GET", "/nope", {}), "405": ("GET", "/webhooks/sendgrid", {}),
        "redirect": ("GET", "/archive/", {}), "archive": ("GET", "/archive", {}),
        "feed": ("GET", "/archive/feed.xml", {}), "email": ("GET", "/archive/2026-11-24", {}),
        "500": ("GET", "/boom", {}),
    }
    answers = dict(zip(kinds, _requests(app, *kinds.values()), strict=True))
    assert {k: r.status_code for k, r in answers.items()} == {
        "page": 200, "invalid token": 400, "one-click": 200, "too large": 413, "health": 200,
        "webhook 403": 403, "404": 404, "405": 405, "redirect": 308, "archive": 200,
        "feed": 200, "email": 200, "500": 500}
    for kind, response in answers.items():
        policy = _assert_secured(response, kind)
        assert "script-src" not in policy and policy["frame-ancestors"] == "'none'", kind
        if kind == "email":  # the archived email: its styles and images, no script
            assert policy["img-src"] == "https: data:"
        elif response.headers.get("content-type", "").startswith("text/html"):
            assert response.headers["content-security-policy"] == PAGE_CSP, kind
        else:  # text, JSON, the feed, redirects: nothing to load at all
            assert response.headers["content-security-policy"] == NOTHING_CSP, kind
    assert _directives(answers["page"])["form-action"] == "'self'"
    assert "boom" not in answers["500"].text


def test_redirects_and_feed_urls_come_from_base_url_never_from_host(public) -> None:
    settings, app, token = public
    base = settings.base_url
    slash, token_slash, query, feed = _requests(
        app, ("GET", "/archive/", {"headers": EVIL}),
        ("GET", f"/u/{token}/", {"headers": EVIL}),
        ("GET", "/archive/2026-11-24/?utm=1", {"headers": EVIL}),
        ("GET", "/archive/feed.xml", {"headers": EVIL}))
    assert slash.headers["location"] == f"{base}/archive"
    assert token_slash.headers["location"] == f"{base}/u/{token}"
    assert query.headers["location"] == f"{base}/archive/2026-11-24?utm=1"
    # a path that decodes to CR LF (as uvicorn hands it over) stays encoded in Location
    status, headers = asyncio.run(_raw_get(app, b"/u/a%0d%0aSet-Cookie:x/"))
    assert (status, headers[b"location"]) == (308, f"{base}/u/a%0D%0ASet-Cookie%3Ax".encode())
    assert b"set-cookie" not in headers
    urls = re.findall(r'(?:href="|<id>)([^"<]+)', feed.text)
    assert len(urls) >= 4 and all(u.startswith(f"{base}/archive") for u in urls), urls
    assert "evil" not in feed.text
    ET.fromstring(feed.content)
    # nothing to redirect to: no redirect, and POST is never redirected
    none, post = _requests(app, ("GET", "/nope/", {"headers": EVIL}),
                           ("POST", "/archive/", {"headers": EVIL}))
    assert (none.status_code, post.status_code) == (404, 404)


def test_serve_refuses_to_start_without_base_url(tmp_path: Path) -> None:
    settings = make_project(tmp_path / "p")
    config = settings.config_file
    config.write_text("".join(line for line in config.read_text().splitlines(keepends=True)
                              if not line.startswith("base_url")))
    result = run_cli(settings.project_dir, "serve", "--port", "0", timeout=60)
    assert result.returncode != 0 and "Traceback" not in result.stderr
    assert "'base_url' is not set" in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1


def test_every_preview_response_carries_its_own_policy(settings: Settings) -> None:
    app = create_app(settings, allowed_hosts=["testserver"])
    app.router.routes.append(Route("/boom", _boom))
    kinds = {
        "index": ("GET", "/", {}), "issue": ("GET", "/issues/2026-11-25", {}),
        "frame": ("GET", "/issues/2026-11-25/frame?device=phone", {}),
        "raw html": ("GET", "/issues/2026-11-25.html", {}),
        "raw text": ("GET", "/issues/2026-11-25.txt", {}),
        "changes": ("GET", "/_changes?v=-1&timeout=0", {}),
        "404": ("GET", "/issues/nope", {}), "405": ("POST", "/", {}),
        "redirect": ("GET", "/issues/2026-11-25/", {}),
        "bad host": ("GET", "/", {"headers": EVIL}), "500": ("GET", "/boom", {}),
    }
    answers = dict(zip(kinds, _requests(app, *kinds.values()), strict=True))
    assert {k: r.status_code for k, r in answers.items()} == {
        "index": 200, "issue": 200, "frame": 200, "raw html": 200, "raw text": 200,
        "changes": 200, "404": 404, "405": 405, "redirect": 308, "bad host": 400, "500": 500}
    assert answers["redirect"].headers["location"] == "/issues/2026-11-25"  # a path, no host
    page = _assert_secured(answers["issue"], "issue")
    page_policy = answers["issue"].headers["content-security-policy"]
    script = re.search(r"<script>(.*?)</script>", answers["issue"].text, re.DOTALL).group(1)
    digest = base64.b64encode(hashlib.sha256(script.encode()).digest()).decode()
    assert page["script-src"] == f"'sha256-{digest}'"  # exactly the live-reload script
    assert (page["connect-src"], page["frame-src"]) == ("'self'", "'self'")
    frame = _assert_secured(answers["frame"], "frame")
    assert frame["frame-ancestors"] == "'self'" and "script-src" not in frame
    for kind, response in answers.items():
        _assert_secured(response, kind)
        html = response.headers.get("content-type", "").startswith("text/html")
        if kind in ("raw html", "frame"):
            assert "script-src" not in _directives(response), kind
        elif html:  # the preview's pages, error pages included
            assert response.headers["content-security-policy"] == page_policy, kind
        else:
            assert response.headers["content-security-policy"] == NOTHING_CSP, kind


def _preview(project: Path, *args: str) -> subprocess.Popen:
    return subprocess.Popen(["newsletter", "--project", str(project), "preview", "--port", "0",
                             *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


@pytest.mark.parametrize(("bind", "extra", "allowed", "refused"), [
    ("::1", (), ["[::1]", "localhost", "127.0.0.1"], ["evil.example", "[::2]"]),
    ("127.0.0.2", (), ["127.0.0.2", "localhost"], ["evil.example"]),
    ("0.0.0.0", ("--allow-host", "preview.lan", "--allow-host", "Desk.Example"),
     ["preview.lan", "desk.example", "localhost", "[::1]"], ["evil.example", "other.lan"]),
])
def test_preview_checks_the_host_on_every_bind(project: Path, bind, extra, allowed, refused
                                               ) -> None:
    server = _preview(project, "--host", bind, *extra)
    try:
        line = server.stdout.readline()
        port = re.search(r":(\d+)/", line).group(1)
        connect = "[::1]" if ":" in bind else "127.0.0.1" if bind == "0.0.0.0" else bind
        url = f"http://{connect}:{port}/"
        for name in allowed:
            assert httpx.get(url, headers={"Host": f"{name}:{port}"}, timeout=10
                             ).status_code == 200, name
        for name in refused:
            answer = httpx.get(url, headers={"Host": f"{name}:{port}"}, timeout=10)
            assert answer.status_code == 400, name
            assert answer.headers["x-content-type-options"] == "nosniff"
    finally:
        server.send_signal(signal.SIGINT)
        _out, err = server.communicate(timeout=20)
    assert server.returncode == 0 and "Traceback" not in err
    if bind == "0.0.0.0":
        assert "preview.lan" in err and "--allow-host" in err


@pytest.mark.parametrize("bad", ["*", "evil.example:80", "a b", "http://x"])
def test_allow_host_refuses_what_is_not_a_host_name(project: Path, bad: str) -> None:
    result = subprocess.run(["newsletter", "--project", str(project), "preview", "--port", "0",
                             "--allow-host", bad], capture_output=True, text=True, timeout=60)
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert result.stderr.startswith("newsletter: --allow-host")
    assert len(result.stderr.strip().splitlines()) == 1
