"""Amazon SES feedback through SNS: signatures (v1 and v2) checked with a certificate
served locally, the certificate's host checked, subscriptions confirmed only on SNS."""

from __future__ import annotations

import base64
import datetime as dt
import http.server
import json
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa
from cryptography.x509.oid import NameOID

from newsletter.feedback.ses import string_to_sign, trusted_url

from .feedback_site import DATABASES, Site, site_for

TOPIC = "arn:aws:sns:eu-west-1:123456789012:newsletter-feedback"


class CertServer:
    """Serves /cert.pem and records every GET (the confirmation URL included)."""

    def __init__(self) -> None:
        self.key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "sns.amazonaws.com")])
        now = dt.datetime.now(dt.UTC)
        cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name)
                .public_key(self.key.public_key()).serial_number(x509.random_serial_number())
                .not_valid_before(now - dt.timedelta(days=1))
                .not_valid_after(now + dt.timedelta(days=30))
                .sign(self.key, hashes.SHA256()))
        pem = cert.public_bytes(serialization.Encoding.PEM)
        self.hits: list[str] = []
        owner = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # noqa: N802
                owner.hits.append(self.path)
                body = pem if self.path.endswith(".pem") else b"<ConfirmSubscriptionResponse/>"
                self.send_response(200)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args) -> None:
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.host = f"127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def sign(self, fields: dict, version: str = "1") -> dict:
        fields = {**fields, "SignatureVersion": version,
                  "SigningCertURL": fields.get("SigningCertURL", f"http://{self.host}/cert.pem")}
        algorithm = hashes.SHA1() if version == "1" else hashes.SHA256()  # noqa: S303
        signature = self.key.sign(string_to_sign(fields), padding.PKCS1v15(), algorithm)
        return {**fields, "Signature": base64.b64encode(signature).decode()}


@pytest.fixture(scope="module")
def certs() -> Iterator[CertServer]:
    server = CertServer()
    yield server
    server.server.shutdown()


@pytest.fixture(params=DATABASES)
def site(request, tmp_path: Path, certs: CertServer) -> Iterator[Site]:
    with site_for(tmp_path, request.param, ses_topic_arns=[TOPIC],
                  sns_test_host=certs.host) as value:
        yield value


def _notification(note: dict, message_id: str = "n-1") -> dict:
    return {"Type": "Notification", "MessageId": message_id, "TopicArn": TOPIC,
            "Message": json.dumps(note), "Timestamp": "2026-11-24T06:01:02.123Z"}


def _bounce(email: str, kind: str = "Permanent", message_id: str = "0102-ses-1") -> dict:
    return {"notificationType": "Bounce",
            "bounce": {"bounceType": kind, "bounceSubType": "General",
                       "bouncedRecipients": [{"emailAddress": email, "action": "failed",
                                              "status": "5.1.1", "diagnosticCode":
                                              "smtp; 550 5.1.1 user unknown"}],
                       "timestamp": "2026-11-24T06:01:00.000Z", "feedbackId": "fb-1"},
            "mail": {"messageId": message_id, "source": "news@sendtest.news",
                     "destination": [email], "tags": {"send_id": ["1"]}}}


def _post(site: Site, fields: dict, kind: str = "Notification"):
    return site.client.post("/webhooks/ses", content=json.dumps(fields).encode(),
                            headers={"x-amz-sns-message-type": kind,
                                     "Content-Type": "text/plain; charset=UTF-8"})


@pytest.mark.parametrize("version", ["1", "2"])
def test_signed_notifications_apply_once(site: Site, certs: CertServer, version: str) -> None:
    signed = certs.sign(_notification(_bounce("r1@example.com")), version)
    assert _post(site, signed).json()["applied"] == 1
    assert _post(site, signed).json()["duplicates"] == 1
    assert site.status("r1@example.com") == "bounced"
    assert site.suppressed("r1@example.com") == ("bounced", "ses")
    soft = certs.sign(_notification(_bounce("r2@example.com", "Transient", "m2"), "n-2"), version)
    assert _post(site, soft).status_code == 200
    assert site.status("r2@example.com") == "active"
    complaint = {"notificationType": "Complaint", "mail": {"messageId": "m3"},
                 "complaint": {"complainedRecipients": [{"emailAddress": "r3@example.com"}],
                               "complaintFeedbackType": "abuse"}}
    assert _post(site, certs.sign(_notification(complaint, "n-3"), version)).status_code == 200
    assert site.status("r3@example.com") == "complained"


def test_forged_altered_or_foreign_messages_are_refused(site: Site, certs: CertServer) -> None:
    signed = certs.sign(_notification(_bounce("r1@example.com")))
    altered = {**signed, "Message": signed["Message"].replace("r1@", "r2@")}
    other_topic = certs.sign({**_notification(_bounce("r1@example.com")),
                              "TopicArn": TOPIC + "-other"})
    foreign_cert = certs.sign({**_notification(_bounce("r1@example.com")),
                               "SigningCertURL": "https://sns.eu-west-1.evil.example/c.pem"})
    bad_version = {**signed, "SignatureVersion": "3"}
    fetched = len(certs.hits)
    for fields in (altered, other_topic, foreign_cert, bad_version,
                   {**signed, "Signature": "bm90IGEgc2lnbmF0dXJl"}):
        response = _post(site, fields)
        assert response.status_code == 403 and response.text == "forbidden\n"
    assert len(certs.hits) - fetched <= 1  # the certificate at most; never the foreign one
    assert site.status("r1@example.com") == site.status("r2@example.com") == "active"
    assert _post(site, {"Type": "Nonsense"}).status_code == 400


def test_subscription_confirmed_only_on_sns(site: Site, certs: CertServer) -> None:
    confirm = {"Type": "SubscriptionConfirmation", "MessageId": "c-1", "TopicArn": TOPIC,
               "Token": "2336412f37", "Message": "You have chosen to subscribe ...",
               "SubscribeURL": f"http://{certs.host}/?Action=ConfirmSubscription&Token=23",
               "Timestamp": "2026-11-24T06:00:00.000Z"}
    assert _post(site, certs.sign(confirm), "SubscriptionConfirmation").status_code == 200
    assert any("ConfirmSubscription" in hit for hit in certs.hits)
    before = len(certs.hits)
    elsewhere = {**confirm, "MessageId": "c-2",
                 "SubscribeURL": "http://127.0.0.1:9/?Action=ConfirmSubscription"}
    assert _post(site, certs.sign(elsewhere), "SubscriptionConfirmation").status_code == 403
    assert len(certs.hits) == before


def test_the_host_checks_are_on_by_default(tmp_path: Path, certs: CertServer) -> None:
    assert trusted_url("https://sns.eu-west-1.amazonaws.com/SimpleNotificationService-x.pem")
    assert trusted_url("https://sns.cn-north-1.amazonaws.com.cn/x.pem")
    for url in ("http://sns.eu-west-1.amazonaws.com/x.pem",
                "https://sns.eu-west-1.amazonaws.com.evil.example/x.pem",
                "https://evil.example/sns.eu-west-1.amazonaws.com/x.pem",
                "https://user@sns.eu-west-1.amazonaws.com/x.pem",
                f"http://{certs.host}/cert.pem"):
        assert not trusted_url(url), url
    with site_for(tmp_path, "sqlite", ses_topic_arns=[TOPIC]) as site:  # no test host
        before = len(certs.hits)
        assert _post(site, certs.sign(_notification(_bounce("r1@example.com")))
                     ).status_code == 403
        assert len(certs.hits) == before and site.status("r1@example.com") == "active"
