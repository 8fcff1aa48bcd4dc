"""SendGrid Event Webhook: signatures, replay window, event parsing."""

from __future__ import annotations

import base64
import json

import pytest
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from sendgrid.helpers.eventwebhook import EventWebhook

from newsletter.feedback.sendgrid import (
    Effect,
    Verifier,
    WebhookMalformed,
    WebhookRejected,
    parse_events,
)


@pytest.fixture(scope="module")
def keypair() -> tuple[ec.EllipticCurvePrivateKey, str]:
    private = ec.generate_private_key(ec.SECP256R1())
    der = private.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    return private, base64.b64encode(der).decode()


def sign(private: ec.EllipticCurvePrivateKey, body: bytes, timestamp: str) -> str:
    der = private.sign(timestamp.encode() + body, ec.ECDSA(hashes.SHA256()))
    return base64.b64encode(der).decode()


BODY = json.dumps(
    [
        {"email": "a@example.org", "timestamp": 1700000000, "event": "bounce",
         "type": "bounce", "sg_event_id": "e1", "send_id": "7", "subscriber_id": "42"},
        {"email": "b@example.org", "timestamp": 1700000000, "event": "open", "sg_event_id": "e2"},
    ]
).encode() + b"\r\n"


def test_valid_signature_accepted_and_agrees_with_sendgrid_helper(keypair) -> None:
    private, public = keypair
    ts = "1700000000"
    sig = sign(private, BODY, ts)
    Verifier(public).verify(BODY, sig, ts, now=1700000010)
    assert EventWebhook(public).verify_signature(BODY.decode(), sig, ts) is True


@pytest.mark.parametrize(
    ("mutate", "reason"),
    [
        (lambda b, s, t: (b + b" ", s, t), "bad signature"),  # altered body
        (lambda b, s, t: (b, s, str(int(t) + 1)), "bad signature"),  # altered timestamp
        (lambda b, s, t: (b, None, t), "unsigned"),
        (lambda b, s, t: (b, s, None), "unsigned"),
        (lambda b, s, t: (b, "!!notbase64!!", t), "encoding"),
        (lambda b, s, t: (b, base64.b64encode(b"junk").decode(), t), "bad signature"),
        (lambda b, s, t: (b, s, "soon"), "timestamp"),
    ],
)
def test_forged_or_altered_requests_rejected(keypair, mutate, reason) -> None:
    private, public = keypair
    ts = "1700000000"
    body, sig, stamp = mutate(BODY, sign(private, BODY, ts), ts)
    with pytest.raises(WebhookRejected, match=reason):
        Verifier(public).verify(body, sig, stamp, now=1700000010)


def test_stale_and_replayed_requests_rejected(keypair) -> None:
    private, public = keypair
    ts = "1700000000"
    sig = sign(private, BODY, ts)
    with pytest.raises(WebhookRejected, match="stale"):
        Verifier(public, max_age=300).verify(BODY, sig, ts, now=1700000000 + 301)


def test_other_key_rejected(keypair) -> None:
    private, _ = keypair
    other = ec.generate_private_key(ec.SECP256R1()).public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    ts = "1700000000"
    with pytest.raises(WebhookRejected):
        Verifier(base64.b64encode(other).decode()).verify(
            BODY, sign(private, BODY, ts), ts, now=1700000000
        )


def test_parse_events_effects() -> None:
    events = parse_events(
        json.dumps(
            [
                {"event": "bounce", "type": "bounce", "sg_event_id": "1", "email": "A@x.org",
                 "send_id": 3, "subscriber_id": "9"},
                {"event": "bounce", "type": "blocked", "sg_event_id": "2", "email": "b@x.org"},
                {"event": "dropped", "reason": "Bounced Address", "sg_event_id": "3"},
                {"event": "dropped", "reason": "Invalid SMTPAPI header", "sg_event_id": "3b"},
                {"event": "spamreport", "sg_event_id": "4"},
                {"event": "group_unsubscribe", "sg_event_id": "5"},
                {"event": "click", "sg_event_id": "6", "url": "https://example.org"},
                {"event": "open"},  # no id: passed over
                "junk",
            ]
        ).encode()
    )
    effects = {e.event_id: e.effect for e in events}
    assert effects == {
        "1": Effect.BOUNCED,
        "2": Effect.NONE,
        "3": Effect.BOUNCED,
        "3b": Effect.NONE,
        "4": Effect.COMPLAINED,
        "5": Effect.UNSUBSCRIBED,
        "6": Effect.NONE,
    }
    first = events[0]
    assert (first.email, first.send_id, first.subscriber_id) == ("a@x.org", 3, 9)


@pytest.mark.parametrize("body", [b"{", b"{}", b'"x"', b"\xff\xfe", b"[" * 100000])
def test_malformed_bodies(body: bytes) -> None:
    with pytest.raises(WebhookMalformed):
        parse_events(body)
