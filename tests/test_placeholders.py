"""No placeholders leave the building: `newsletter init`'s example values stop real sends
and schedules; dry runs and test sends warn and go on."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import pytest

from newsletter.authoring.domains import reserved_domain
from newsletter.authoring.project import init_project
from newsletter.config import load_settings
from newsletter.delivery import ledger
from newsletter.delivery.placeholders import problems

from .sendtools import NEWSROOM, make_project, newsletter_cmd, seed

ISSUE = "issues/2026-11-24.md"
POSTAL = "1 Example Street, Example City, EX1 2MP"


def _cli(project: Path, *args: str, env: dict | None = None
         ) -> subprocess.CompletedProcess[str]:
    import os

    return subprocess.run(newsletter_cmd(project, *args), capture_output=True, text=True,
                          cwd=project, timeout=120, stdin=subprocess.DEVNULL,
                          env={**os.environ, **(env or {})})


def _line_of(project: Path, key: str) -> int:
    lines = (project / "newsletter.toml").read_text("utf-8").splitlines()
    return next(n for n, line in enumerate(lines, 1) if line.startswith(f"{key} ="))


@pytest.mark.parametrize(("host", "reserved"), [
    ("example.org", "example.org"), ("news.example.org", "example.org"),
    ("EXAMPLE.COM.", "example.com"), ("a.b.example.net", "example.net"),
    ("briefing.example", ".example"), ("mail.test", ".test"), ("x.invalid", ".invalid"),
    ("app.localhost", ".localhost"), ("localhost", "localhost"),
    ("example.org.uk", None), ("notexample.org", None), ("sendtest.news", None),
    ("testing.com", None),
])
def test_reserved_domains_rfc_2606(host: str, reserved: str | None) -> None:
    assert reserved_domain(host) == reserved


def test_send_refuses_the_example_postal_address_in_one_line(tmp_path: Path) -> None:
    project = tmp_path / "p"
    settings = make_project(project)
    config = project / "newsletter.toml"
    config.write_text(config.read_text("utf-8").replace(NEWSROOM["postal_address"], POSTAL),
                      "utf-8")
    engine = seed(settings, 3)
    result = _cli(project, "send", ISSUE, "--list", "daily", "--yes")
    assert result.returncode == 1
    assert result.stderr == (
        f"newsletter: {config}:{_line_of(project, 'postal_address')}: postal_address is still "
        f'the example value "{POSTAL}": set your newsroom\'s postal address\n')
    scheduled = _cli(project, "schedule", ISSUE, "--list", "daily", "--at", "2099-01-01 06:00")
    assert scheduled.returncode == 1 and scheduled.stderr == result.stderr
    assert not settings.outbox_path.exists() and ledger.list_sends(engine) == []
    engine.dispose()


def test_init_values_are_refused_for_real_sends_and_only_warned_about_otherwise(
    tmp_path: Path,
) -> None:
    project = tmp_path / "p"
    init_project(project, name="Fresh")
    engine = seed(load_settings(project), 3)
    real = _cli(project, "send", ISSUE, "--list", "daily", "--yes")
    assert real.returncode == 1 and real.stderr.count("\n") == 1
    assert re.fullmatch(r"newsletter: .*newsletter\.toml:\d+: from_address is still an example "
                        r'value \("Fresh <news@example\.org>" is on example\.org, reserved for '
                        r"examples by RFC 2606\): set the address your newsletter sends from\n",
                        real.stderr), real.stderr
    dry = _cli(project, "send", ISSUE, "--list", "daily", "--dry-run")
    assert dry.returncode == 0, dry.stderr
    warned = [line for line in dry.stderr.splitlines() if line.startswith("warning: ")]
    assert [w.split(": ")[2].split(" ")[0] for w in warned] == [
        "from_address", "reply_to", "base_url", "postal_address"]
    assert "3 recipient(s)" in dry.stdout and "nothing sent" in dry.stdout
    test = _cli(project, "send", ISSUE, "--list", "daily", "--test-to", "me@sendtest.news",
                "--yes")
    assert test.returncode == 0, test.stderr
    assert test.stderr.count("warning: ") == 4
    assert len(list((project / "outbox").glob("*.eml"))) == 1  # the test message only
    assert [s.kind for s in ledger.list_sends(engine)] == ["test"]
    engine.dispose()


def test_an_environment_value_is_named_by_its_variable(tmp_path: Path) -> None:
    project = tmp_path / "p"
    settings = make_project(project)
    engine = seed(settings, 2)
    result = _cli(project, "send", ISSUE, "--list", "daily", "--yes",
                  env={"NEWSLETTER_BASE_URL": "https://news.example.net"})
    assert result.returncode == 1
    assert result.stderr.startswith(
        "newsletter: environment variable NEWSLETTER_BASE_URL: base_url is still an example "
        'value ("https://news.example.net" is on example.net')
    assert ledger.list_sends(engine) == []
    engine.dispose()


def test_a_demo_project_may_keep_them_on_the_outbox_only(tmp_path: Path) -> None:
    project = tmp_path / "p"
    init_project(project)
    settings = load_settings(project)
    assert len(problems(settings)) == 4
    demo = settings.model_copy(update={"demo": True})
    assert problems(demo, "outbox") == []
    assert len(problems(demo, "smtp")) == 4
    assert problems(load_settings(tmp_path / "p").model_copy(update=NEWSROOM)) == []
