"""Sign-up across processes and from the CLI: rate limits shared by two `newsletter serve`
processes on one database, `newsletter form`, consent in `subscribers show` and export."""

from __future__ import annotations

import contextlib
import json
import os
import re
import subprocess
import time
from collections.abc import Iterator
from email import message_from_bytes
from email.policy import default
from pathlib import Path

import httpx
import pytest

from newsletter.audience import signup
from newsletter.config import Settings
from newsletter.db.engine import make_engine

from .sendtools import make_project, newsletter_cmd, run_cli, seed
from .smtpserver import free_port


def _project(tmp_path: Path, extra: str) -> Settings:
    settings = make_project(tmp_path / "p")
    config = settings.config_file
    config.write_text('public_lists = ["daily"]\n' + extra + config.read_text("utf-8"),
                      encoding="utf-8")
    seed(settings, 2).dispose()
    return settings


@contextlib.contextmanager
def _serve(project: Path) -> Iterator[str]:
    port = free_port()
    process = subprocess.Popen(newsletter_cmd(project, "serve", "--port", str(port)),
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                               env={**os.environ, "PYTHONPATH": os.getcwd()})
    url = f"http://127.0.0.1:{port}"
    try:
        for _ in range(200):
            with contextlib.suppress(httpx.HTTPError):
                if httpx.get(f"{url}/healthz", timeout=2).status_code == 200:
                    break
            time.sleep(0.1)
        else:
            pytest.fail("newsletter serve did not start: " + process.stderr.read().decode())
        yield url
    finally:
        process.terminate()
        process.wait(10)


def _emails(settings: Settings, count: int) -> list[Path]:
    """The outbox's files once ``count`` are there (they are written just after the
    answer), or what is there after 10 s."""
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        found = sorted(settings.outbox_path.glob("*.eml"))
        if len(found) >= count:
            time.sleep(0.3)  # and no more come
            return sorted(settings.outbox_path.glob("*.eml"))
        time.sleep(0.05)
    return sorted(settings.outbox_path.glob("*.eml"))


def _sign_up(url: str, email: str) -> httpx.Response:
    page = httpx.get(f"{url}/subscribe")
    ts = re.search(r'name="ts" value="([^"]+)"', page.text).group(1)
    return httpx.post(f"{url}/subscribe", data={"email": email, "list": "daily",
                                                "consent": "yes", "ts": ts, "website": ""})


def test_the_per_ip_limit_holds_across_two_server_processes(tmp_path: Path) -> None:
    settings = _project(tmp_path, "signup_ip_limit = 3\nsignup_min_seconds = 0\n")
    with _serve(settings.project_dir) as one, _serve(settings.project_dir) as two:
        answers = [_sign_up(url, f"ip{i}@example.net")
                   for i, url in enumerate((one, two, one, two, one))]
        assert len(_emails(settings, 3)) == 3
    assert [a.status_code for a in answers] == [200, 200, 200, 429, 429]
    assert "Too many sign-ups" in answers[3].text


def test_the_per_address_limit_holds_across_processes_and_stays_silent(tmp_path: Path) -> None:
    settings = _project(tmp_path, "signup_address_limit = 2\nsignup_min_seconds = 0\n"
                        "signup_ip_limit = 0\n")
    with _serve(settings.project_dir) as one, _serve(settings.project_dir) as two:
        answers = [_sign_up(url, "same@example.net") for url in (one, two, one, two)]
        assert len(_emails(settings, 2)) == 2  # the first, and one further
    assert {(a.status_code, a.text) for a in answers} == {(200, answers[0].text)}


def test_form_snippet_posts_to_subscribe_with_its_defences(tmp_path: Path) -> None:
    settings = _project(tmp_path, "")
    result = run_cli(settings.project_dir, "form", "--list", "daily")
    assert result.returncode == 0, result.stderr
    html = result.stdout
    assert f'action="{settings.base_url}/subscribe"' in html
    assert 'name="website"' in html and 'name="ts"' in html and 'value="daily"' in html
    refused = run_cli(settings.project_dir, "form", "--list", "secret")
    assert refused.returncode != 0 and "not public" in refused.stderr
    assert "Traceback" not in refused.stderr


def test_consent_is_shown_and_exported(tmp_path: Path) -> None:
    settings = _project(tmp_path, "signup_min_seconds = 0\n")
    with _serve(settings.project_dir) as url:
        assert _sign_up(url, "c@example.net").status_code == 200
        mail = message_from_bytes(_emails(settings, 1)[0].read_bytes(), policy=default)
        text = mail.get_body(("plain",)).get_content()
        token = re.search(r"/confirm/(\S+)", text).group(1)
        httpx.post(f"{url}/confirm/{token}", data={"action": "confirm"})
    shown = run_cli(settings.project_dir, "subscribers", "show", "c@example.net")
    assert "consent:    daily: signed up" in shown.stdout and "confirmed 20" in shown.stdout
    data = json.loads(run_cli(settings.project_dir, "subscribers", "show", "c@example.net",
                              "--format", "json").stdout)
    assert data["consent"][0]["source"] == "form" and data["consent"][0]["confirmed_at"]
    export = run_cli(settings.project_dir, "subscribers", "export", "--consent").stdout
    assert "consent" in export.splitlines()[0] and "signed_up_at" in export
    erased = run_cli(settings.project_dir, "subscribers", "remove", "c@example.net", "--yes")
    assert erased.returncode == 0, erased.stderr
    engine = make_engine(settings.effective_database_url)
    assert signup.consents(engine, "c@example.net") == []  # erasure takes the records too
    engine.dispose()
