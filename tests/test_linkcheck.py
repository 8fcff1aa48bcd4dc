"""`newsletter check`: links and images fetched from a local server, problems at their lines."""

from __future__ import annotations

import json
import stat
from collections.abc import Iterator
from pathlib import Path

import pytest

from newsletter.authoring.linkcheck import CheckOptions, cache_path, check_file, image_size
from newsletter.config import load_settings
from newsletter.delivery.sending import preflight
from newsletter.errors import LinksBroken

from .conftest import write_issue
from .linkserver import HUGE, LinkServer
from .test_cli_authoring import run


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LinkServer]:
    links = LinkServer(slow_seconds=3.0, tls_dir=tmp_path_factory.mktemp("tls"))
    yield links
    links.close()


def _issue(project: Path, server: LinkServer) -> Path:
    u = server.url
    body = (
        f"\n# Lead: Links of every kind\n![A wide photo]({u}/img/wide.jpg \"Photo: A\")\n\n"
        f"Fine [ok]({u}/ok) and [gone]({u}/missing).\n\n"
        f"A [server error]({u}/error), a [slow one]({u}/slow).\n\n"
        f"Robots get [403]({u}/forbidden); [short hop]({u}/r/2), [long chain]({u}/r/5).\n\n"
        f"Mail [us](mailto:desk@example.org) and [downgrade]({server.tls_url}/down).\n\n"
        f"# Story: A narrow picture\n![Narrow]({u}/img/narrow.png \"Photo: B\")\n\nText.\n\n"
        f"# Story: Not a picture\n![Fake]({u}/img/fake.jpg \"Photo: C\")\n\nText.\n\n"
        f"# Story: A heavy picture\n![Heavy]({u}/img/big.jpg \"Photo: D\")\n\nText.\n\n"
        f"# Story: A tall picture\n![Tall]({u}/img/tall.jpg \"Photo: E\")\n\nText.\n\n"
        f"# Story: Another wide one\n![Wide]({u}/img/wide2.jpg \"Photo: F\")\n\nText.\n\n"
        f"[Read more]({u}/missing)\n"
    )
    return write_issue(project, body)


def _options(server: LinkServer, **kw) -> CheckOptions:
    return CheckOptions(timeout=1.0, verify=server.ca_file, **kw)


def test_each_problem_is_reported_at_its_line_with_its_rule(project, server) -> None:
    settings = load_settings(project)
    path = _issue(project, server)
    report = check_file(settings, path, _options(server))
    got = {(f.line, f.rule, f.severity.value) for f in report.findings}
    expected = {
        (10, "link-broken", "error"),
        (12, "link-broken", "error"),
        (12, "link-timeout", "warning"),
        (14, "link-blocked", "warning"),
        (14, "link-redirects", "warning"),
        (16, "link-downgrade", "warning"),
        (19, "image-narrow", "warning"),
        (24, "image-not-image", "error"),
        (29, "image-too-large", "warning"),
        (34, "image-aspect", "warning"),
        (43, "link-broken", "error"),
    }
    assert got == expected
    broken = next(f for f in report.findings if f.line == 10)
    assert broken.column == 49 and "404" in broken.message and "/missing" in broken.message
    assert next(f for f in report.findings if f.rule == "link-redirects").message.count("5 redirects")
    assert report.checked == 14  # distinct URLs: /missing once for two places


def _plain_issue(project: Path, server: LinkServer, name: str = "p.md") -> Path:
    body = (f"\n# Lead: Plain links\nSee [ok]({server.url}/ok) and "
            f"[gone]({server.url}/missing).\n\n[Read more]({server.url}/ok)\n")
    return write_issue(project, body, name=name)


def test_answers_are_cached_a_day_in_a_private_file(project, server) -> None:
    settings = load_settings(project)
    path = _plain_issue(project, server)
    before = server.hits["/ok"]
    first = check_file(settings, path, _options(server))
    assert (first.checked, first.fetched) == (2, 2)
    assert server.hits["/ok"] == before + 1  # two places, one request
    again = check_file(settings, path, _options(server))
    assert again.fetched == 0 and server.hits["/ok"] == before + 1
    assert [f.rule for f in again.findings] == ["link-broken"]
    assert stat.S_IMODE(cache_path(settings).stat().st_mode) == 0o600
    forced = check_file(settings, path, _options(server, use_cache=False))
    assert forced.fetched == 2 and server.hits["/ok"] == before + 2


def test_failures_that_may_pass_are_not_cached(project, server) -> None:
    settings = load_settings(project)
    path = write_issue(project, f"\n# Lead: Slow\nA [slow one]({server.url}/slow).\n")
    check_file(settings, path, CheckOptions(timeout=0.5))
    report = check_file(settings, path, CheckOptions(timeout=0.5))
    assert report.fetched == 1 and [f.rule for f in report.findings] == ["link-timeout"]


def test_an_image_is_read_only_as_far_as_its_header(project, server) -> None:
    settings = load_settings(project)
    url = f"{server.url}/img/huge.jpg"
    path = write_issue(project, f"\n# Lead: Huge\n![Huge]({url} \"Photo: X\")\n\nText.\n")
    report = check_file(settings, path, _options(server))
    assert [f.rule for f in report.findings] == ["image-too-large"]  # 20 MB, declared
    assert server.sent < HUGE // 4  # the checker hung up after the first bytes
    assert image_size(settings, url) == (1600, 900)


def test_the_renderer_gets_probed_sizes(project, server) -> None:
    settings = load_settings(project)
    url = f"{server.url}/img/wide.jpg"
    body = f"\n# Lead: Sized\n![Wide]({url} \"Photo: X\")\n\nText.\n"
    path = write_issue(project, body)
    assert image_size(settings, url) is None
    check_file(settings, path, _options(server))
    assert image_size(settings, url) == (1600, 900)


def test_cli_check_text_and_json(project, server, capsys, monkeypatch) -> None:
    monkeypatch.chdir(project)
    path = _plain_issue(project, server)
    code, out, err = run(capsys, "check", str(path))
    assert code == 1
    assert out.strip().splitlines() == [
        f"{path}:8:48: error: the link {server.url}/missing answers 404 Not Found: fix or "
        "remove the link [link-broken]"
    ]
    assert "1 error, 0 warnings" in err
    code, out, _ = run(capsys, "check", str(path), "--format", "json", "--no-cache")
    assert code == 1
    [finding] = json.loads(out)
    assert (finding["rule"], finding["line"], finding["column"]) == ("link-broken", 8, 48)
    code, _, err = run(capsys, "check", str(project / "nope.md"))
    assert code == 2 and "nope.md: no such file" in err and "Traceback" not in err


def test_send_checks_links_only_when_asked(project, server, monkeypatch) -> None:
    u = server.tls_url  # sending needs https: links
    body = f"\n# Lead: Secure links\nSee [ok]({u}/ok) and [gone]({u}/missing).\n"
    path = write_issue(project, body, name="send.md")
    monkeypatch.setenv("SSL_CERT_FILE", server.cert_file)  # trust the local server
    settings = load_settings(project, demo=True)
    before = server.hits["/missing"]
    preflight(settings, path, placeholders_are="warnings")
    assert server.hits["/missing"] == before  # never during send by default
    settings = load_settings(project, demo=True, check_links_before_send=True)
    with pytest.raises(LinksBroken) as info:
        preflight(settings, path, placeholders_are="warnings")
    assert str(info.value).startswith(f"{path}:8: the link ")
    assert "404" in str(info.value) and "\n" not in str(info.value)


def test_preview_button_checks_and_shows_results_beside_findings(project, server) -> None:
    from starlette.testclient import TestClient

    from newsletter.web import create_app

    _plain_issue(project / "issues", server, name="2026-11-30.md")
    app = create_app(load_settings(project))
    with TestClient(app, base_url="http://127.0.0.1") as client:
        page = client.get("/issues/2026-11-30").text
        assert "Check links" in page and "2 not checked yet" in page
        refused = client.post("/issues/2026-11-30/links",
                              headers={"Origin": "http://evil.example"})
        assert refused.status_code == 403
        answer = client.post("/issues/2026-11-30/links", follow_redirects=False)
        assert answer.status_code == 303 and answer.headers["location"].endswith("#links")
        page = client.get("/issues/2026-11-30").text
        assert "all checked" in page and "answers 404 Not Found" in page
        data = client.post("/issues/2026-11-30/links", headers={"Accept": "application/json"})
        assert [f["rule"] for f in data.json()["findings"]] == ["link-broken"]

