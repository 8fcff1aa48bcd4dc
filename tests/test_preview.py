"""The preview web app, in-process over ASGI (httpx), on a real temporary project."""

from __future__ import annotations

import asyncio
import os
import re
import signal
import subprocess
from pathlib import Path
from urllib.parse import unquote

import httpx
import pytest

from newsletter.authoring.build import build_file
from newsletter.config import Settings, load_settings
from newsletter.web import create_app, stopping
from newsletter.web.preview import Badge, force_theme

from .conftest import write_issue

NEWEST = "2026-11-25"
OLDER = "2026-11-24"
SECRET = "TOP SECRET: the outside file"


def run(coro):
    return asyncio.run(coro)


def no_traceback(response: httpx.Response) -> httpx.Response:
    body = response.text
    assert "Traceback" not in body and 'File "' not in body, body[:500]
    return response


async def fetch(app, *urls: str) -> list[httpx.Response]:
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as client:
        return [no_traceback(await client.get(url)) for url in urls]


def get(app, url: str) -> httpx.Response:
    return run(fetch(app, url))[0]


async def raw_get(app, raw_path: bytes) -> tuple[int, str]:
    """A GET exactly as uvicorn hands it over: path percent-decoded, no dot-segment cleanup."""
    path, _, query = raw_path.partition(b"?")
    scope = {
        "type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1", "method": "GET",
        "scheme": "http", "path": unquote(path.decode("ascii")), "raw_path": path,
        "root_path": "", "query_string": query, "headers": [(b"host", b"testserver")],
        "client": ("127.0.0.1", 5000), "server": ("testserver", 80),
    }
    sent: list[dict] = []

    async def receive() -> dict:
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message: dict) -> None:
        sent.append(message)

    await app(scope, receive, send)
    status = next(m["status"] for m in sent if m["type"] == "http.response.start")
    body = b"".join(m.get("body", b"") for m in sent if m["type"] == "http.response.body")
    return status, body.decode("utf-8", "replace")


@pytest.fixture
def app(settings: Settings):
    return create_app(settings)


def issues(settings: Settings) -> Path:
    return settings.issues_path


def rows_of(html: str) -> dict[str, str]:
    """The index's rows (issue name -> the row's cells), in the page's order."""
    found = re.findall(r'<tr id="row-([^"]+)" data-name="[^"]+"[^>]*>(.*?)</tr>', html, re.S)
    return dict(found)


def built_rows(app) -> list[str]:
    """The index's rows once every issue is built: the page, then ``/_rows`` for all."""
    names = list(rows_of(get(app, "/").text))
    query = "&".join(f"name={name}" for name in names)
    built = rows_of(get(app, f"/_rows?{query}").text)
    assert list(built) == names  # the same order
    return list(built.values())


# -- the index --------------------------------------------------------------------------


def test_index_lists_issues_newest_first_with_date_subject_and_status(settings: Settings) -> None:
    folder = issues(settings)
    write_issue(folder, "\n# Lead: Only a lead\nText.\n", name="2026-11-20.md",
                front="subject: No preheader here\ndate: 2026-11-20\n")
    write_issue(folder, "\n# Lead: Broken\n\n### A third-level heading\n", name="2026-11-27.md",
                front="subject: A broken one\npreheader: P\ndate: 2026-11-27\n")
    app = create_app(settings)
    page = get(app, "/")
    assert page.status_code == 200
    rows = list(rows_of(page.text).values())
    dates = [re.search(r'class="date">([^<]*)<', row).group(1) for row in rows]
    assert dates == ["2026-11-27", "2026-11-25", "2026-11-24", "2026-11-20", "no date"]
    assert "A broken one" in rows[0] and "No preheader here" in rows[3]
    broken, newest, _older, oldest, welcome = built_rows(app)  # the welcome email: no date, last
    assert "issues/_welcome.md" in welcome and 'class="badge valid">valid<' in welcome
    assert 'href="/issues/2026-11-27"' in broken and "A broken one" in broken
    assert re.search(r'class="badge error">\d+ errors?<', broken)
    assert "The harbour vote, and why it matters beyond the port" in newest
    assert 'class="badge valid">valid<' in newest
    assert 'class="badge warning">1 warning<' in oldest and "valid<" not in oldest


def test_index_shows_the_delivery_status_the_web_layer_passes_in(settings: Settings) -> None:
    asked: list[str] = []

    def sent(settings_: Settings, name: str) -> Badge | None:
        asked.append(name)
        return Badge("sent", "sent to 3") if name == NEWEST else None

    rows = built_rows(create_app(settings, status_of=sent))
    assert 'class="badge sent">sent to 3<' in rows[0]
    assert "badge sent" not in rows[1]
    assert NEWEST in asked
    page = get(create_app(settings, status_of=sent), f"/issues/{NEWEST}").text
    assert 'class="badge sent">sent to 3<' in page
    quiet = "".join(built_rows(create_app(settings, status_of=None)))
    assert "badge sent" not in quiet and 'class="badge valid">valid<' in quiet


def test_index_lists_at_once_and_builds_in_the_background(settings: Settings, monkeypatch) -> None:
    """Hundreds of issues: listed from their front matter, builds announced row by row."""
    from newsletter.web import preview

    monkeypatch.setattr(preview, "INDEX_BUILD_SECONDS", 0.0)
    for day in range(1, 31):
        write_issue(issues(settings), f"\n# Lead: Story {day}\nText.\n", name=f"2026-10-{day:02d}.md",
                    front=f"subject: October {day}\npreheader: P\ndate: 2026-10-{day:02d}\n")
    app = create_app(settings)

    async def scenario() -> tuple[str, list[str], str]:
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as c:
            first = (await c.get("/")).text
            announced: set[str] = set()
            version = 0
            for _ in range(200):
                if len(announced) == 33:
                    break
                answer = (await c.get(f"/_changes?v={version}&timeout=5")).json()
                version = answer["version"]
                announced |= set(answer["issues"])
            query = "&".join(f"name={name}" for name in sorted(announced))
            return first, sorted(announced), (await c.get(f"/_rows?{query}")).text

    first, announced, built = run(scenario())
    rows = rows_of(first)
    assert len(rows) == 33 and list(rows)[:2] == [NEWEST, OLDER]
    assert "October 30" in rows["2026-10-30"] and ">2026-10-30<" in rows["2026-10-30"]
    assert all('class="badge checking"' in row for row in rows.values())
    assert announced == sorted(rows)
    assert len(rows_of(built)) == 33 and "badge checking" not in built
    assert built.count('class="badge valid">valid<') == 33


def test_index_of_a_project_without_issues_says_what_to_do(tmp_path: Path) -> None:
    (tmp_path / "newsletter.toml").write_text('name = "Empty"\n', encoding="utf-8")
    page = get(create_app(load_settings(tmp_path)), "/")
    assert page.status_code == 200 and "newsletter new" in page.text


# -- an issue ------------------------------------------------------------------------------


def test_issue_page_shows_inbox_line_size_and_both_frames(app, settings: Settings) -> None:
    built = build_file(issues(settings) / f"{NEWEST}.md", settings)
    page = get(app, f"/issues/{NEWEST}")
    assert page.status_code == 200
    inbox = re.search(r'<div class="inbox".*?</div>', page.text, re.S).group(0)
    assert "The harbour vote, and why it matters beyond the port" in inbox
    assert "Also: 38 degrees in November, and a chess prodigy&#39;s next move" in inbox
    assert f"{built.rendered.size / 1024:.1f} KB" in page.text
    assert "of Gmail&#39;s 102 KB clipping limit" in page.text or "of Gmail's 102 KB" in page.text
    assert 'width="640"' in page.text and 'width="375"' in page.text
    frame = re.search(r'id="frame-phone" src="([^"]+)"', page.text).group(1).replace("&amp;", "&")
    inside = get(app, frame)
    assert inside.status_code == 200 and "The harbour vote" in inside.text
    assert '<base target="_blank">' in inside.text


def test_findings_are_listed_with_their_line_numbers(app, settings: Settings) -> None:
    body = "\n# Lead: Headline\nText.\n\n# Hard Numbers: Figures\n\n## 70,000\n\n## 3.2%\nSome.\n"
    write_issue(issues(settings), body, name="2026-11-26.md",
                front="subject: Numbers\npreheader: P\ndate: 2026-11-26\n")
    page = get(app, "/issues/2026-11-26")
    assert page.status_code == 200
    findings = re.search(r'<ol class="findings".*?</ol>', page.text, re.S).group(0)
    assert "line 12" in findings
    assert "Hard Numbers item &#34;70,000&#34; has no text" in findings
    assert "issues/2026-11-26.md:12:1" in findings
    assert "12 | ## 70,000" in findings  # the source line itself
    assert "No render to show yet" in page.text  # no good render ever: said, not blank
    status, raw = run(raw_get(app, b"/issues/2026-11-26.html"))
    assert status == 422 and "line 12" in raw


def test_the_last_good_render_stays_beside_new_errors(app, settings: Settings) -> None:
    path = issues(settings) / f"{NEWEST}.md"
    first = get(app, f"/issues/{NEWEST}")
    assert 'id="stale"' not in first.text
    text = path.read_text(encoding="utf-8")
    path.write_text(text.replace("# Story: The orchard", "# Storey: The orchard"), "utf-8")
    number = text.split("\n").index("# Story: The orchard that feeds a school") + 1
    page, frame = run(fetch(app, f"/issues/{NEWEST}", f"/issues/{NEWEST}/frame?device=phone"))
    assert f"line {number}" in page.text
    assert 'id="stale"' in page.text and 'id="frame-desktop"' in page.text
    assert "The orchard that feeds a school" in frame.text  # the last good render


def test_plain_text_tab_and_dark_frames(app) -> None:
    text_page, dark, light = run(fetch(
        app, f"/issues/{NEWEST}?part=text", f"/issues/{NEWEST}/frame?theme=dark",
        f"/issues/{NEWEST}/frame",
    ))
    assert '<pre class="plain" id="plain">' in text_page.text and "<iframe" not in text_page.text
    assert "prefers-color-scheme" not in dark.text and "(min-width: 0px)" in dark.text
    assert "(min-width: 100000px)" in light.text


def test_force_theme_handles_combined_queries() -> None:
    css = "@media screen and (prefers-color-scheme:dark){a{}} @media (prefers-color-scheme: light){}"
    assert force_theme(css, "dark") == (
        "@media screen and (min-width: 0px){a{}} @media (min-width: 100000px){}"
    )


def test_raw_html_and_text_parts(app, settings: Settings) -> None:
    built = build_file(issues(settings) / f"{NEWEST}.md", settings)
    html, text, download = run(fetch(
        app, f"/issues/{NEWEST}.html", f"/issues/{NEWEST}.txt", f"/issues/{NEWEST}.txt?download=1"
    ))
    assert html.status_code == 200 and html.text == built.rendered.html
    assert html.headers["content-type"] == "text/html; charset=utf-8"
    assert text.status_code == 200 and text.text == built.rendered.text
    assert text.headers["content-type"] == "text/plain; charset=utf-8"
    assert download.headers["content-disposition"] == f'attachment; filename="{NEWEST}.txt"'


def test_a_broken_newsletter_toml_is_shown_and_the_old_settings_kept(app, settings) -> None:
    assert get(app, f"/issues/{NEWEST}").status_code == 200
    config = settings.config_file
    config.write_text(config.read_text("utf-8") + "\nbogus_key = 1\n", encoding="utf-8")
    page = get(app, f"/issues/{NEWEST}")
    assert page.status_code == 200
    assert re.search(r'id="config-error">[^<]*newsletter.toml:\d+: unknown setting [^<]*bogus_key', page.text)
    assert 'id="frame-phone"' in page.text


def test_a_file_that_is_not_utf8_is_a_finding_not_a_crash(app, settings: Settings) -> None:
    (issues(settings) / "2026-11-28.md").write_bytes(b"---\nsubject: x\n\xff\xfe\n")
    page = get(app, "/issues/2026-11-28")
    assert page.status_code == 200 and "line 3" in page.text and "UTF-8" in page.text
    assert get(app, "/").status_code == 200


# -- 404s and paths -------------------------------------------------------------------------


@pytest.mark.parametrize("url", [
    "/issues/nope", "/issues/nope.html", "/issues/nope.txt", "/issues/nope/frame",
    "/nope", "/issues/", "/issues/2026-11-25.md", "/issues/2026-11-25.pdf",
    "/issues/2026-11-25/frame/x", "/favicon.ico",
])
def test_bad_names_get_a_404_page(app, url: str) -> None:
    page = get(app, url)
    assert page.status_code == 404
    assert page.headers["content-type"].startswith("text/html")
    assert "<h1>404" in page.text and 'href="/"' in page.text


def test_path_traversal_never_serves_files_outside_the_issues(
    app, settings: Settings, tmp_path: Path
) -> None:
    outside = tmp_path / "outside"
    outside.mkdir()
    secret = write_issue(outside, f"\n# Lead: {SECRET}\nText.\n", name="secret.md")
    os.symlink(secret, issues(settings) / "leak.md")
    os.symlink(outside, issues(settings) / "linked-folder")
    (settings.project_dir / "private.md").write_text(SECRET, encoding="utf-8")
    attempts = [
        b"/issues/leak", b"/issues/leak.html", b"/issues/leak.txt", b"/issues/leak/frame",
        b"/issues/../newsletter.toml", b"/issues/..%2fnewsletter.toml",
        b"/issues/%2e%2e%2fnewsletter.toml", b"/issues/%2e%2e", b"/issues/..",
        b"/issues/%2e%2e%2fprivate", b"/issues/..%2fprivate.html", b"/issues/.%2e/private.txt",
        b"/issues/%2e%2e%2f..%2foutside%2fsecret.html", b"/issues//etc/passwd",
        b"/issues/%2fetc%2fpasswd", b"/issues/%2Fetc%2Fpasswd.txt", b"/issues/C:%5Cwindows",
        b"/issues/linked-folder%2fsecret", b"/issues/..%5c..%5cnewsletter.toml",
        str(tmp_path / "outside" / "secret.md").encode(), b"/issues/%00", b"/issues/2026-11-25%00",
        b"/issues/2026-11-25/frame?device=../../etc/passwd",
    ]
    for attempt in attempts:
        status, body = run(raw_get(app, attempt))
        assert SECRET not in body and "secret_key" not in body, attempt
        assert "Traceback" not in body, attempt
        if b"?" not in attempt:
            assert status == 404, (attempt, status)
    index = get(app, "/").text
    assert "leak" not in index and SECRET not in index
    assert "/etc/passwd" not in get(app, "/issues/2026-11-25/frame?device=../../etc/passwd").text


def test_a_symlink_to_an_issue_inside_the_project_is_served(app, settings: Settings) -> None:
    (settings.project_dir / "drafts").mkdir()
    draft = write_issue(settings.project_dir / "drafts", "\n# Lead: A draft\nText.\n", name="d.md")
    os.symlink(draft, issues(settings) / "2026-12-01.md")
    assert "A draft" in get(app, "/issues/2026-12-01/frame").text


# -- live reload ------------------------------------------------------------------------------


def test_long_poll_answers_at_once_for_an_old_version_and_waits_otherwise(app) -> None:
    async def scenario() -> None:
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as c:
            assert (await c.get("/_changes?v=-1&timeout=5")).json() == {"version": 0,
                                                                         "issues": None}
            # a page from before the preview restarted: reload it whole
            assert (await c.get("/_changes?v=7&timeout=5")).json() == {"version": 0,
                                                                        "issues": None}
            loop = asyncio.get_running_loop()
            started = loop.time()
            assert (await c.get("/_changes?v=0&timeout=0.3")).json() == {"version": 0,
                                                                         "issues": []}
            assert loop.time() - started >= 0.25
            pending = asyncio.create_task(c.get("/_changes?v=0&timeout=30"))
            await asyncio.sleep(0.1)
            stopping(app)  # what Ctrl+C does: open pages are answered, not cut off
            response = await asyncio.wait_for(pending, 2)
            assert response.status_code == 200

    run(scenario())


def test_the_watcher_reports_saves_of_issues_templates_and_config(settings: Settings) -> None:
    app = create_app(settings)
    state = app.state.parts[0].state
    targets = [
        issues(settings) / f"{NEWEST}.md",
        settings.project_dir / "templates" / "footer.mjml.j2",
        settings.config_file,
    ]

    async def saved_and_seen(client: httpx.AsyncClient, path: Path) -> object:
        for _attempt in range(20):  # the first attempts may come before the watcher starts
            seen = state.version
            path.write_bytes(path.read_bytes())
            response = await client.get(f"/_changes?v={seen}&timeout=0.5")
            if response.json()["version"] > seen:
                return response.json()["issues"]  # the issues concerned; None: anything
        return False

    async def scenario() -> list[object]:
        transport = httpx.ASGITransport(app=app)
        async with (
            app.router.lifespan_context(app),
            httpx.AsyncClient(transport=transport, base_url="http://testserver") as client,
        ):
            return [await saved_and_seen(client, path) for path in targets]

    # an issue file concerns its own row only; a template or the settings concern every page
    assert run(scenario()) == [[NEWEST], None, None]


# -- the command ----------------------------------------------------------------------------


def test_preview_command_rejects_files_outside_the_project(project: Path, tmp_path: Path) -> None:
    other = write_issue(tmp_path, "\n# Lead: Elsewhere\nText.\n", name="elsewhere.md")
    result = subprocess.run(
        ["newsletter", "--project", str(project), "preview", str(other)],
        capture_output=True, text=True, timeout=60,
    )
    assert result.returncode == 2
    assert result.stderr.startswith("newsletter: ") and "not an issue file of this project" in (
        result.stderr
    )
    assert "Traceback" not in result.stderr


def test_preview_command_serves_prints_the_url_and_stops_on_ctrl_c(project: Path) -> None:
    command = ["newsletter", "--project", str(project), "preview",
               str(project / "issues" / f"{NEWEST}.md"), "--port", "0"]
    server = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        line = server.stdout.readline()
        url = re.search(r"http://127\.0\.0\.1:\d+/issues/" + NEWEST, line).group(0)
        page = httpx.get(url, timeout=10)
        assert page.status_code == 200 and "The harbour vote" in page.text
        base = url.split("/issues/")[0]
        assert httpx.get(base + "/", headers={"Host": "attacker.example"}).status_code == 400
        port = int(base.rsplit(":", 1)[1])
        busy = subprocess.run(command[:-1] + [str(port)], capture_output=True, text=True,
                              timeout=60)
        assert busy.returncode == 2 and f"127.0.0.1:{port} is in use" in busy.stderr
    finally:
        server.send_signal(signal.SIGINT)
        _out, err = server.communicate(timeout=20)
    assert server.returncode == 0, err
    assert "Traceback" not in err


def test_preview_command_is_documented_in_the_readme() -> None:
    readme = (Path(__file__).resolve().parent.parent / "README.md").read_text(encoding="utf-8")
    assert "### `newsletter preview`" in readme
