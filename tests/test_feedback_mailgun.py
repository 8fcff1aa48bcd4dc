"""Mailgun webhooks: HMAC-SHA256 signature, timestamp window, token replay refused."""

from __future__ import annotations

import hashlib
import hmac
import json
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from .feedback_site import DATABASES, Site, site_for

KEY = "key-0123456789abcdef0123456789abcdef"


@pytest.fixture(params=DATABASES)
def site(request, tmp_path: Path) -> Iterator[Site]:
    with site_for(tmp_path, request.param, mailgun_webhook_signing_key=KEY) as value:
        yield value


def _body(event: dict, *, token: str, key: str = KEY, timestamp: int | None = None) -> bytes:
    stamp = str(int(time.time()) if timestamp is None else timestamp)
    digest = hmac.new(key.encode(), (stamp + token).encode(), hashlib.sha256).hexdigest()
    return json.dumps({"signature": {"timestamp": stamp, "token": token, "signature": digest},
                       "event-data": event}).encode()


def _failed(email: str, severity: str = "permanent", event_id: str = "ev1") -> dict:
    return {"event": "failed", "severity": severity, "id": event_id, "recipient": email,
            "timestamp": time.time(), "reason": "bounce",
            "delivery-status": {"code": 550, "description": "5.1.1 The email account that "
                                "you tried to reach does not exist."},
            "user-variables": {"send_id": "1", "subscriber_id": "2"}}


def _post(site: Site, body: bytes):
    return site.client.post("/webhooks/mailgun", content=body,
                            headers={"Content-Type": "application/json"})


def test_signed_events_apply_and_a_replayed_token_is_refused(site: Site) -> None:
    body = _body(_failed("r1@example.com"), token="a" * 50)
    assert _post(site, body).json()["applied"] == 1
    assert site.status("r1@example.com") == "bounced"
    assert site.suppressed("r1@example.com") == ("bounced", "mailgun")
    replay = _post(site, body)
    assert replay.status_code == 403
    soft = _body(_failed("r2@example.com", "temporary", "ev2"), token="b" * 50)
    assert _post(site, soft).status_code == 200
    assert site.status("r2@example.com") == "active"
    complaint = {"event": "complained", "id": "ev3", "recipient": "r3@example.com"}
    assert _post(site, _body(complaint, token="c" * 50)).status_code == 200
    assert site.status("r3@example.com") == "complained"
    unsubscribed = {"event": "unsubscribed", "id": "ev4", "recipient": "r4@example.com"}
    assert _post(site, _body(unsubscribed, token="d" * 50)).status_code == 200
    assert site.status("r4@example.com") == "unsubscribed"
    # the same event under a fresh token (Mailgun retrying) is applied once
    again = _post(site, _body(_failed("r1@example.com"), token="e" * 50)).json()
    assert again["duplicates"] == 1


@pytest.mark.parametrize("make", [
    lambda: _body(_failed("r1@example.com"), token="t" * 50, key="key-wrong"),
    lambda: _body(_failed("r1@example.com"), token="t" * 50, timestamp=int(time.time()) - 3600),
    lambda: json.dumps({"event-data": _failed("r1@example.com")}).encode(),
])
def test_forged_stale_or_unsigned_is_refused(site: Site, make) -> None:
    response = _post(site, make())
    assert response.status_code == 403 and response.text == "forbidden\n"
    assert site.status("r1@example.com") == site.status("r2@example.com") == "active"


def test_tampered_event_data_fails_only_if_signature_covers_it(site: Site) -> None:
    """Mailgun signs timestamp+token only: the signed token is single-use, so a captured
    request cannot be sent again with other event data."""
    body = _body(_failed("r1@example.com"), token="f" * 50)
    assert _post(site, body).status_code == 200
    tampered = body.replace(b"r1@example.com", b"r5@example.com")
    assert _post(site, tampered).status_code == 403
    assert site.status("r5@example.com") == "active"
