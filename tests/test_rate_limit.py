"""``max_rate``: one pace per backend, shared by every worker and process (the database's
``send_rates`` row), on SQLite and PostgreSQL."""

from __future__ import annotations

import os
import subprocess
import time
from pathlib import Path

import pytest

from newsletter.config import load_settings
from newsletter.db.connect import open_store
from newsletter.delivery import ledger
from newsletter.delivery.ratelimit import RateLimit, for_backend
from newsletter.errors import ConfigError

from .postmark_standin import PostmarkStandIn
from .sendtools import make_project, newsletter_cmd, pg_database, seed

RATE = 100.0
RECIPIENTS = 700
LATENCY = 0.75  # seconds from a batch's reservation to its arrival, at most (shared CPU)


def test_reservations_follow_one_another(tmp_path: Path) -> None:
    settings = make_project(tmp_path / "p")
    engine = open_store(settings)
    pace = RateLimit(engine, "postmark", 50)
    assert pace.batch_cap == 50
    assert pace.reserve(25) == 0.0  # idle: the first batch goes at once
    assert pace.reserve(25) == pytest.approx(0.5, abs=0.05)  # after the first's half second
    assert pace.reserve(50) == pytest.approx(1.0, abs=0.05)
    assert RateLimit(engine, "smtp", 50).reserve(50) == 0.0  # each backend its own pace
    time.sleep(2.3)  # past the 2 s reserved so far
    assert pace.reserve(10) == 0.0  # unused time is not saved up: no burst after a pause
    assert pace.reserve(10) == pytest.approx(0.2, abs=0.05)
    engine.dispose()


def test_max_rate_setting(tmp_path: Path) -> None:
    settings = make_project(tmp_path / "p")
    config = tmp_path / "p" / "newsletter.toml"
    config.write_text(config.read_text() + "\n[max_rate]\npostmark = 40\n")
    assert load_settings(tmp_path / "p").max_rate == {"postmark": 40}
    engine = open_store(settings)
    assert for_backend(engine, settings, "postmark") is None  # not in these settings
    assert for_backend(engine, load_settings(tmp_path / "p"), "postmark").rate == 40
    engine.dispose()
    with pytest.raises(ConfigError, match="'sendgird' is not a backend"):
        load_settings(tmp_path / "p", max_rate={"sendgird": 3})
    with pytest.raises(ConfigError, match="above 0"):
        load_settings(tmp_path / "p", max_rate={"ses": 0})


def _two_processes(tmp_path: Path, database_url: str | None) -> None:
    with PostmarkStandIn() as pm:
        project = tmp_path / "p"
        engine = seed(make_project(project, database_url), RECIPIENTS)
        env = {"NEWSLETTER_BACKEND": "postmark", "NEWSLETTER_POSTMARK_API_HOST": pm.url,
               "POSTMARK_SERVER_TOKEN": pm.api_key, "NEWSLETTER_MAX_RATE": f'{{"postmark": {RATE}}}'}


        command = newsletter_cmd(project, "send", "issues/2026-11-24.md", "--list", "daily",
                                 "--yes", "--workers", "3")
        first = subprocess.Popen(command, env={**os.environ, **env}, stdin=subprocess.DEVNULL,
                                 stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        deadline = time.monotonic() + 60
        while not pm.counts and time.monotonic() < deadline:
            time.sleep(0.01)
        second = subprocess.Popen(command, env={**os.environ, **env}, stdin=subprocess.DEVNULL,
                                  stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        errors = [proc.communicate(timeout=120)[1] for proc in (first, second)]
        assert all("Traceback" not in e for e in errors), errors
        sends = [s for s in ledger.list_sends(engine) if s.kind == "real"]
        assert len(sends) == 1 and ledger.get_send(engine, sends[0].id).counts == {
            "sent": RECIPIENTS}
        assert max(pm.counts.values()) == 1 and len(pm.counts) == RECIPIENTS
        times = sorted(pm.times)
        start, cap = times[0], int(RATE)
        # in any stretch of time, at most its length's worth plus one batch (a batch goes
        # whole at the start of its reservation), give or take one batch's travel time
        over = [(j - i + 1, round(times[j] - times[i], 3))
                for i in range(len(times)) for j in range(i, len(times))
                if j - i + 1 > RATE * (times[j] - times[i] + LATENCY) + cap]
        assert over == [], f"faster than {RATE:g}/s: {over[:5]}"
        span = times[-1] - start
        assert span >= (RECIPIENTS - cap) / RATE * 0.95, span
        assert span < (RECIPIENTS / RATE) * 2.5, span  # paced, not stalled
        print(f"\n{RECIPIENTS} messages by two processes in {span:.2f} s "
              f"(max_rate {RATE:g}/s)")
        engine.dispose()


def test_two_processes_together_stay_under_the_rate_sqlite(tmp_path: Path) -> None:
    _two_processes(tmp_path, None)


def test_two_processes_together_stay_under_the_rate_postgresql(tmp_path: Path) -> None:
    with pg_database() as url:
        _two_processes(tmp_path, url)
