"""A signed SendGrid request whose batch holds malformed events: the good ones are applied,
the bad ones skipped and counted, on SQLite and PostgreSQL (the ``store`` fixture)."""

from __future__ import annotations

import base64
import json
import time
import warnings
from pathlib import Path

import pytest
import sqlalchemy as sa
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec

from newsletter.audience.subscribers import get_subscriber
from newsletter.feedback.effects import webhook_events
from newsletter.web import create_app

from .sendtools import make_project, seed

with warnings.catch_warnings():  # Starlette's TestClient: "httpx is deprecated, use httpx2"
    warnings.simplefilter("ignore", DeprecationWarning)
    from starlette.testclient import TestClient

SIG = "X-Twilio-Email-Event-Webhook-Signature"
TS = "X-Twilio-Email-Event-Webhook-Timestamp"
BIG = 2**63


def _event(n: int | str, kind: str = "open", email: str = "r2@example.com", **extra) -> dict:
    return {"email": email, "timestamp": int(time.time()), "event": kind,
            "sg_event_id": f"ev-{n}", **extra}


BAD_EVENTS = [
    _event(1, send_id=BIG), _event(2, send_id=str(BIG)), _event(3, subscriber_id=BIG * 4),
    _event(4, list_id=-5), _event(5, send_id="-5"), _event(6, subscriber_id=1.5),
    _event(7, send_id=None), _event(8, list_id={"id": 1}), _event(9, send_id=[1]),
    _event(10, send_id="1e3"), _event(11, subscriber_id=0), _event(12, send_id=True),
    _event(13, send_id="\u0663"),  # an Arabic-Indic digit: isdigit(), yet not ours
    _event("nul\x00"), _event(14, email="r3@example.com\x00"), _event(15, email="\ud800@x.org"),
    _event(16, email=42), {"event": "bounce", "email": "r2@example.com"}, {**_event(18), "sg_event_id": ""},
    {**_event(17), "event": None}, "junk", 7, None, [],
]


def _post(client: TestClient, private: ec.EllipticCurvePrivateKey, events: list) -> dict:
    body = json.dumps(events).encode()
    ts = str(int(time.time()))
    der = private.sign(ts.encode() + body, ec.ECDSA(hashes.SHA256()))
    response = client.post("/webhooks/sendgrid", content=body, headers={
        SIG: base64.b64encode(der).decode(), TS: ts, "Content-Type": "application/json"})
    assert response.status_code == 200, response.text
    return response.json()


def test_malformed_events_are_skipped_and_the_good_bounce_applied(
        store: sa.Engine, store_url: str, tmp_path: Path) -> None:
    private = ec.generate_private_key(ec.SECP256R1())
    public = base64.b64encode(private.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)).decode()
    settings = make_project(tmp_path / "p", store_url).model_copy(
        update={"sendgrid_webhook_public_key": public})
    engine = seed(settings, 3)
    good = [_event("bounce", "bounce", "r1@example.com", type="bounce", send_id="77",
                   subscriber_id="1", list_id="1", reason="550 no such user\x00 \ud800"),
            _event("open", send_id=BIG - 1)]  # the largest id is still an id
    with TestClient(create_app(settings, preview=False, public=True)) as client:
        answer = _post(client, private, [*BAD_EVENTS[:12], *good, *BAD_EVENTS[12:]])
        assert answer == {"received": len(BAD_EVENTS) + 2, "applied": 2, "duplicates": 0,
                          "skipped": len(BAD_EVENTS)}
        # SendGrid retries the good events in a later request: counted as duplicates
        again = _post(client, private, [*good, BAD_EVENTS[0]])
        assert again == {"received": 3, "applied": 0, "duplicates": 2, "skipped": 1}
    bounced = get_subscriber(engine, "r1@example.com")
    assert bounced.status == "bounced" and "550 no such user" in bounced.status_reason
    assert [get_subscriber(engine, f"r{n}@example.com").status for n in (2, 3)] == [
        "active", "active"]
    with engine.connect() as conn:
        stored = conn.execute(sa.select(webhook_events.c.sg_event_id, webhook_events.c.send_id)
                              .order_by(webhook_events.c.sg_event_id)).all()
    assert [tuple(row) for row in stored] == [("ev-bounce", 77), ("ev-open", BIG - 1)]
    engine.dispose()


@pytest.mark.parametrize("event", BAD_EVENTS)
def test_each_malformed_event_is_counted_not_raised(event) -> None:
    from newsletter.feedback.sendgrid import read_events

    batch = read_events(json.dumps([event, _event("ok")]).encode())
    assert ([e.event_id for e in batch.events], batch.skipped) == (["ev-ok"], 1)
    assert batch.first_problem and "example" not in batch.first_problem
