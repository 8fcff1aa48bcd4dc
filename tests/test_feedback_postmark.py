"""Postmark webhooks: basic auth on our URL, each record type's effect, once each."""

from __future__ import annotations

import base64
import json
from collections.abc import Iterator
from pathlib import Path

import pytest

from .feedback_site import DATABASES, Site, site_for

USER, PASSWORD = "postmark-hook", "s3cret-pass-phrase"


def _auth(user: str = USER, password: str = PASSWORD) -> dict[str, str]:
    token = base64.b64encode(f"{user}:{password}".encode()).decode()
    return {"Authorization": f"Basic {token}"}


@pytest.fixture(params=DATABASES)
def site(request, tmp_path: Path) -> Iterator[Site]:
    with site_for(tmp_path, request.param, postmark_webhook_user=USER,
                  postmark_webhook_password=PASSWORD) as value:
        yield value


def _post(site: Site, record: dict, headers: dict | None = None):
    return site.client.post("/webhooks/postmark", content=json.dumps(record).encode(),
                            headers=_auth() if headers is None else headers)


BOUNCE = {"RecordType": "Bounce", "ID": 4323372036854775807, "Type": "HardBounce",
          "TypeCode": 1, "Email": "r1@example.com", "Description": "The server was unable "
          "to deliver your message (ex: unknown user, mailbox not found).",
          "BouncedAt": "2026-11-24T06:01:02Z", "Inactive": True,
          "MessageID": "883953f4-6105-42a2-a16a-77a8eac79483", "MessageStream": "broadcast",
          "Metadata": {"send_id": "1", "subscriber_id": "1"}}


def test_each_record_type_has_its_effect_once(site: Site) -> None:
    first = _post(site, BOUNCE)
    assert first.status_code == 200 and first.json()["applied"] == 1
    assert _post(site, BOUNCE).json() == {"received": 1, "applied": 0, "duplicates": 1}
    assert site.status("r1@example.com") == "bounced"
    assert site.suppressed("r1@example.com") == ("bounced", "postmark")
    soft = {**BOUNCE, "ID": 2, "Type": "SoftBounce", "Inactive": False, "Email": "r2@example.com"}
    assert _post(site, soft).status_code == 200
    assert site.status("r2@example.com") == "active"
    assert site.suppressed("r2@example.com") is None
    complaint = {"RecordType": "SpamComplaint", "ID": 3, "Email": "r3@example.com",
                 "BouncedAt": "2026-11-24T07:00:00Z", "MessageID": "m3"}
    assert _post(site, complaint).status_code == 200
    assert site.status("r3@example.com") == "complained"
    change = {"RecordType": "SubscriptionChange", "MessageID": "m4", "ChangedAt":
              "2026-11-24T08:00:00Z", "Recipient": "r4@example.com", "SuppressSending": True,
              "SuppressionReason": "ManualSuppression"}
    assert _post(site, change).status_code == 200
    assert site.status("r4@example.com") == "unsubscribed"
    delivery = {"RecordType": "Delivery", "MessageID": "m5", "Recipient": "r5@example.com",
                "DeliveredAt": "2026-11-24T06:00:00Z"}
    assert _post(site, delivery).json()["applied"] == 1
    assert site.status("r5@example.com") == "active"


@pytest.mark.parametrize("headers", [
    {}, _auth(password="wrong"), _auth(user="other"),
    {"Authorization": "Bearer " + PASSWORD}, {"Authorization": "Basic not*base64"},
])
def test_without_the_right_credentials_nothing_changes(site: Site, headers: dict) -> None:
    response = _post(site, BOUNCE, headers)
    assert response.status_code == 403 and response.text == "forbidden\n"
    assert site.status("r1@example.com") == "active"


def test_not_configured_refuses_everything(tmp_path: Path) -> None:
    with site_for(tmp_path, "sqlite") as site:
        assert _post(site, BOUNCE).status_code == 403
        assert site.status("r1@example.com") == "active"


def test_a_body_that_is_not_a_record_is_400(site: Site) -> None:
    response = site.client.post("/webhooks/postmark", content=b"[1, 2]", headers=_auth())
    assert response.status_code == 400
