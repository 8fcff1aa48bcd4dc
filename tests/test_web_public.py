"""The public endpoints in-process over ASGI (httpx), on SQLite and PostgreSQL: one-click
unsubscribe, the SendGrid event webhook, the archive and its feed, /healthz."""

from __future__ import annotations

import base64
import concurrent.futures
import contextlib
import json
import re
import signal
import subprocess
import time
import warnings
import xml.etree.ElementTree as ET
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
import sqlalchemy as sa
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec

from newsletter.audience import tokens
from newsletter.audience.lists import create_list
from newsletter.audience.subscribers import add_subscriber, get_subscriber, subscriber_lists
from newsletter.config import Settings
from newsletter.delivery import claims, ledger, senders, sending
from newsletter.feedback.effects import engagement, webhook_events
from newsletter.web import create_app
from newsletter.web.server import BackgroundServer

from .sendtools import NEWSROOM, make_project, newsletter_cmd, pg_database, run_cli, seed

with warnings.catch_warnings():  # Starlette's TestClient: "httpx is deprecated, use httpx2"
    warnings.simplefilter("ignore", DeprecationWarning)
    from starlette.testclient import TestClient

ONE_CLICK = {"List-Unsubscribe": "One-Click"}
SIG = "X-Twilio-Email-Event-Webhook-Signature"
TS = "X-Twilio-Email-Event-Webhook-Timestamp"


@pytest.fixture(scope="module")
def keypair() -> tuple[ec.EllipticCurvePrivateKey, str]:
    private = ec.generate_private_key(ec.SECP256R1())
    der = private.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    return private, base64.b64encode(der).decode()


@dataclass
class Site:
    settings: Settings
    engine: sa.Engine
    client: TestClient
    private: ec.EllipticCurvePrivateKey
    responses: list[httpx.Response]

    def get(self, url: str, **kw) -> httpx.Response:
        response = self.client.get(url, **kw)
        self.responses.append(response)
        return response

    def post(self, url: str, **kw) -> httpx.Response:
        response = self.client.post(url, **kw)
        self.responses.append(response)
        return response

    def token(self, email: str, list_name: str = "daily") -> str:
        sub = get_subscriber(self.engine, email)
        return tokens.sign(self.settings, sub.id, self.list_id(list_name))

    def list_id(self, list_name: str) -> int:
        with self.engine.connect() as conn:
            return conn.execute(sa.text("SELECT id FROM lists WHERE name = :n"),
                                {"n": list_name}).scalar_one()

    def signed(self, events: list[dict], *, timestamp: int | None = None) -> tuple[bytes, dict]:
        body = json.dumps(events).encode() + b"\r\n"
        ts = str(int(time.time()) if timestamp is None else timestamp)
        der = self.private.sign(ts.encode() + body, ec.ECDSA(hashes.SHA256()))
        return body, {SIG: base64.b64encode(der).decode(), TS: ts,
                      "Content-Type": "application/json"}

    def hook(self, events: list[dict], **kw) -> httpx.Response:
        body, headers = self.signed(events, **kw)
        return self.post("/webhooks/sendgrid", content=body, headers=headers)


def _app(settings: Settings):
    return create_app(settings, preview=False, public=True)


@contextlib.contextmanager
def _site(tmp_path: Path, database: str, keypair, count: int = 5, **overrides
          ) -> Iterator[Site]:
    with pg_database() if database == "postgresql" else contextlib.nullcontext() as url:
        settings = make_project(tmp_path / "p", url)
        settings = settings.model_copy(update={"sendgrid_webhook_public_key": keypair[1],
                                               **overrides})
        engine = seed(settings, count)
        app = _app(settings)
        responses: list[httpx.Response] = []
        with TestClient(app, raise_server_exceptions=False) as client:
            yield Site(settings, engine, client, keypair[0], responses)
        for response in responses:  # no traceback or stack trace in any answer
            assert "Traceback" not in response.text and 'File "' not in response.text
        engine.dispose()


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def site(request, tmp_path: Path, keypair) -> Iterator[Site]:
    with _site(tmp_path, request.param, keypair) as value:
        yield value


def _state(site: Site, email: str, list_name: str = "daily") -> tuple[str, str | None]:
    sub = get_subscriber(site.engine, email)
    member = {m.list_name: m.status for m in subscriber_lists(site.engine, sub.id)}
    return sub.status, member.get(list_name)


# -- unsubscribe -------------------------------------------------------------------------


def test_get_shows_a_confirmation_page_and_changes_nothing(site: Site) -> None:
    token = site.token("r1@example.com")
    page = site.get(f"/u/{token}")
    assert page.status_code == 200
    assert "Unsubscribe from this list" in page.text and "Unsubscribe from everything" in page.text
    assert f'action="/u/{token}"' in page.text and "daily" in page.text
    assert "r1@example.com" not in page.text
    assert page.headers["cache-control"] == "no-store"
    assert "form-action 'self'" in page.headers["content-security-policy"]
    for _ in range(3):  # a mail scanner following the link, again and again
        site.get(f"/u/{token}")
        site.client.head(f"/u/{token}")
    assert _state(site, "r1@example.com") == ("active", "subscribed")


def test_one_click_post_unsubscribes_at_once_and_is_idempotent(site: Site) -> None:
    token = site.token("r2@example.com")
    for _ in range(3):
        response = site.post(f"/u/{token}", data=ONE_CLICK)
        assert response.status_code == 200
        assert response.text == "unsubscribed\n"
        assert _state(site, "r2@example.com") == ("active", "unsubscribed")
    # multipart/form-data, as some mail clients send it
    token3 = site.token("r3@example.com")
    response = site.post(f"/u/{token3}", files={"List-Unsubscribe": (None, "One-Click")})
    assert response.status_code == 200
    assert _state(site, "r3@example.com") == ("active", "unsubscribed")
    assert _state(site, "r1@example.com") == ("active", "subscribed")  # no one else


def test_form_posts_for_this_list_and_for_everything(site: Site) -> None:
    create_list(site.engine, "weekly")
    add_subscriber(site.engine, "r4@example.com", lists=["weekly"])
    page = site.post(f"/u/{site.token('r4@example.com')}", data={"scope": "list"})
    assert page.status_code == 200 and "You are unsubscribed" in page.text
    assert _state(site, "r4@example.com") == ("active", "unsubscribed")
    assert _state(site, "r4@example.com", "weekly") == ("active", "subscribed")
    page = site.post(f"/u/{site.token('r4@example.com', 'weekly')}", data={"scope": "all"})
    assert page.status_code == 200 and "any more emails" in page.text
    assert get_subscriber(site.engine, "r4@example.com").status == "unsubscribed"
    again = site.post(f"/u/{site.token('r4@example.com', 'weekly')}", data={"scope": "all"})
    assert again.status_code == 200
    # a post that asks for nothing changes nothing
    empty = site.post(f"/u/{site.token('r5@example.com')}", data={"other": "x"})
    assert empty.status_code == 400
    assert _state(site, "r5@example.com") == ("active", "subscribed")


def _altered(token: str) -> list[str]:
    raw = base64.urlsafe_b64decode(token + "=" * (-len(token) % 4))
    flipped = bytearray(raw)
    flipped[-1] ^= 0x01
    tag_only = bytearray(raw)
    tag_only[0] ^= 0x01  # the subscriber id
    enc = lambda b: base64.urlsafe_b64encode(bytes(b)).rstrip(b"=").decode()  # noqa: E731
    return [enc(flipped), enc(tag_only), token[:-1], token[:10], token + "A", "x", "%00",
            token.replace(token[3], "!" if token[3] != "!" else "-", 1), "a" * 64 + "b"]


def test_forged_truncated_altered_tokens_get_one_plain_400_page(site: Site) -> None:
    good = site.token("r1@example.com")
    forged = tokens.Signer("not our secret").sign(1, 1)
    bodies = set()
    for bad in [*_altered(good), forged]:
        for method in ("get", "post"):
            response = getattr(site, method)(f"/u/{bad}", **({"data": ONE_CLICK}
                                                             if method == "post" else {}))
            assert response.status_code in (400, 404), bad
            if response.status_code == 400:
                bodies.add(response.text)
                assert "example.com" not in response.text and "Reader" not in response.text
    assert len(bodies) == 1  # the same page whatever was wrong: it tells nothing
    assert "not valid" in next(iter(bodies))
    assert [_state(site, f"r{n}@example.com") for n in range(1, 6)] == [
        ("active", "subscribed")] * 5


def test_a_token_for_one_list_never_touches_another(site: Site) -> None:
    create_list(site.engine, "weekly")
    add_subscriber(site.engine, "r1@example.com", lists=["weekly"])
    daily = site.token("r1@example.com", "daily")
    weekly_id = site.list_id("weekly")
    # the same token with the list id rewritten to the other list: refused
    data = tokens.verify(daily, site.settings)
    raw = base64.urlsafe_b64decode(daily + "=" * (-len(daily) % 4))
    payload = (tokens._varint(data.subscriber_id) + tokens._varint(weekly_id)
               + tokens._varint(data.issued_day))
    moved = base64.urlsafe_b64encode(payload + raw[-tokens.TAG_BYTES:]).rstrip(b"=").decode()
    assert site.post(f"/u/{moved}", data=ONE_CLICK).status_code == 400
    with pytest.raises(tokens.WrongList):
        tokens.verify(daily, site.settings, list_id=weekly_id)
    assert _state(site, "r1@example.com", "weekly") == ("active", "subscribed")
    assert site.post(f"/u/{daily}", data=ONE_CLICK).status_code == 200
    assert _state(site, "r1@example.com", "daily") == ("active", "unsubscribed")
    assert _state(site, "r1@example.com", "weekly") == ("active", "subscribed")


def test_rotated_secrets_keep_old_links_working_for_the_configured_days(
        tmp_path: Path, keypair) -> None:
    with _site(tmp_path, "sqlite", keypair) as old_site:
        old_token = old_site.token("r1@example.com")
        stale = tokens.Signer(old_site.settings.secret_key, tokens.today() - 91).sign(
            get_subscriber(old_site.engine, "r2@example.com").id, 1)
        rotated = old_site.settings.model_copy(update={
            "secret_key": "a brand new secret of enough length",
            "old_secret_keys": [old_site.settings.secret_key], "old_secret_days": 90})
        with TestClient(_app(rotated), raise_server_exceptions=False) as client:
            assert client.get(f"/u/{old_token}").status_code == 200
            assert client.post(f"/u/{old_token}", data=ONE_CLICK).status_code == 200
            assert client.post(f"/u/{stale}", data=ONE_CLICK).status_code == 400
            new_token = tokens.sign(rotated, get_subscriber(old_site.engine, "r3@example.com").id,
                                    1)
            assert client.post(f"/u/{new_token}", data=ONE_CLICK).status_code == 200
        assert _state(old_site, "r1@example.com") == ("active", "unsubscribed")
        assert _state(old_site, "r2@example.com") == ("active", "subscribed")
        assert _state(old_site, "r3@example.com") == ("active", "unsubscribed")


def test_sent_links_carry_no_address_and_unsubscribe_end_to_end(site: Site) -> None:
    prepared = sending.preflight(site.settings, site.settings.project_dir / "issues/2026-11-24.md")
    started = sending.start(site.engine, site.settings, prepared, "daily", backend="outbox")
    sending.run(site.engine, site.settings, started.send.id, backend="outbox")
    messages = sorted(site.settings.outbox_path.glob("*.eml"))
    assert len(messages) == 5
    for path in messages:
        text = path.read_text()
        header = next(line for line in text.splitlines() if line.startswith("List-Unsubscribe:"))
        url = header.split("<", 1)[1].split(">", 1)[0]
        assert "@" not in url and "%40" not in url and "example.com" not in url
        assert url.startswith(f"{site.settings.base_url}/u/")
        path_only = url.removeprefix(site.settings.base_url)
        assert site.post(path_only, data=ONE_CLICK).status_code == 200
    assert all(_state(site, f"r{n}@example.com")[1] == "unsubscribed" for n in range(1, 6))


def test_unsubscribe_is_seen_by_a_send_in_progress_before_its_next_batch(site: Site) -> None:
    prepared = sending.preflight(site.settings, site.settings.project_dir / "issues/2026-11-24.md")
    send = sending.start(site.engine, site.settings, prepared, "daily", backend="outbox").send
    assert send.total == 5  # the recipients are snapshotted, all pending
    worker = senders.register_worker(site.engine, send.id)
    assert site.post(f"/u/{site.token('r3@example.com')}", data=ONE_CLICK).status_code == 200
    assert site.post(f"/u/{site.token('r4@example.com')}", data={"scope": "all"}
                     ).status_code == 200
    _, claimed = claims.claim_batch(site.engine, send, worker, 10)
    emails = [c.email for c in claimed]
    assert emails == ["r1@example.com", "r2@example.com", "r5@example.com"]
    skipped = ledger.recipients(site.engine, send.id, ["skipped"])
    assert [r.email for r in skipped] == ["r3@example.com", "r4@example.com"]


# -- webhook -----------------------------------------------------------------------------


def _event(n: int | str, kind: str, email: str, send_id: int | None = None, **extra) -> dict:
    event = {"email": email, "timestamp": int(time.time()), "event": kind,
             "sg_event_id": f"ev-{n}", "sg_message_id": f"m{n}"}
    if send_id is not None:
        event["send_id"] = str(send_id)
    return {**event, **extra}


def test_webhook_rejects_unsigned_invalid_stale_and_replayed_requests(site: Site) -> None:
    events = [_event(1, "bounce", "r1@example.com", type="bounce")]
    body, headers = site.signed(events)
    assert site.post("/webhooks/sendgrid", content=body).status_code == 403  # unsigned
    no_ts = {k: v for k, v in headers.items() if k != TS}
    assert site.post("/webhooks/sendgrid", content=body, headers=no_ts).status_code == 403
    bad = {**headers, SIG: base64.b64encode(b"0" * 70).decode()}
    assert site.post("/webhooks/sendgrid", content=body, headers=bad).status_code == 403
    altered = body.replace(b"bounce", b"bounce ", 1)
    assert site.post("/webhooks/sendgrid", content=altered, headers=headers).status_code == 403
    other_key = ec.generate_private_key(ec.SECP256R1())
    forged = {**headers, SIG: base64.b64encode(other_key.sign(
        headers[TS].encode() + body, ec.ECDSA(hashes.SHA256()))).decode()}
    assert site.post("/webhooks/sendgrid", content=body, headers=forged).status_code == 403
    stale_body, stale = site.signed(events, timestamp=int(time.time()) - 3600)
    assert site.post("/webhooks/sendgrid", content=stale_body, headers=stale).status_code == 403
    future_body, future = site.signed(events, timestamp=int(time.time()) + 3600)
    assert site.post("/webhooks/sendgrid", content=future_body, headers=future).status_code == 403
    assert get_subscriber(site.engine, "r1@example.com").status == "active"
    first = site.post("/webhooks/sendgrid", content=body, headers=headers)
    assert first.status_code == 200 and first.json()["applied"] == 1
    replay = site.post("/webhooks/sendgrid", content=body, headers=headers)
    assert replay.status_code == 403 and "forbidden" in replay.text
    assert get_subscriber(site.engine, "r1@example.com").status == "bounced"


def test_webhook_malformed_oversized_and_unconfigured(site: Site, tmp_path: Path, keypair
                                                      ) -> None:
    for junk in (b"{not json", b'{"event": "bounce"}', b"\xff\xfe", b""):
        ts = str(int(time.time()))
        der = site.private.sign(ts.encode() + junk, ec.ECDSA(hashes.SHA256()))
        response = site.post("/webhooks/sendgrid", content=junk,
                             headers={SIG: base64.b64encode(der).decode(), TS: ts})
        assert response.status_code == 400, junk
    limit = site.settings.max_body_bytes
    big = site.post("/webhooks/sendgrid", content=b"[" + b" " * limit + b"]")
    assert big.status_code == 413

    def chunks():  # no Content-Length: the body is cut off while it streams
        for _ in range(limit // 65536 + 2):
            yield b" " * 65536

    streamed = site.post("/webhooks/sendgrid", content=chunks())
    assert streamed.status_code == 413
    assert site.post(f"/u/{site.token('r1@example.com')}",
                     content=b"List-Unsubscribe=One-Click" + b"&x=" + b"y" * 20000,
                     headers={"Content-Type": "application/x-www-form-urlencoded"}
                     ).status_code == 413
    assert _state(site, "r1@example.com") == ("active", "subscribed")
    unconfigured = site.settings.model_copy(update={"sendgrid_webhook_public_key": None})
    with TestClient(_app(unconfigured)) as client:
        body, headers = site.signed([_event(1, "bounce", "r1@example.com")])
        assert client.post("/webhooks/sendgrid", content=body, headers=headers
                           ).status_code == 403
    assert get_subscriber(site.engine, "r1@example.com").status == "active"


def test_webhook_effects_on_subscribers(site: Site) -> None:
    add_subscriber(site.engine, "r6@example.com", lists=["daily"])
    add_subscriber(site.engine, "r7@example.com", lists=["daily"])
    add_subscriber(site.engine, "r8@example.com", lists=["daily"])
    events = [
        _event(1, "bounce", "r1@example.com", type="bounce", reason="550 no such user"),
        _event(2, "bounce", "r2@example.com", type="blocked", reason="421 try later"),
        _event(3, "dropped", "R3@Example.com", reason="Bounced Address"),
        _event(4, "spamreport", "r4@example.com"),
        _event(5, "unsubscribe", "r5@example.com"),
        _event(6, "group_unsubscribe", "r6@example.com", asm_group_id=1),
        _event(7, "dropped", "r7@example.com", reason="Invalid SMTPAPI header"),
        _event(8, "unsubscribe", "r8@example.com"),
        _event(9, "spamreport", "r8@example.com"),  # the stronger status wins
        _event(10, "bounce", "nobody@example.com", type="bounce"),  # not a subscriber
    ]
    response = site.hook(events)
    assert response.status_code == 200
    assert response.json() == {"received": 10, "applied": 10, "duplicates": 0,
                               "skipped": 0}
    status = {n: get_subscriber(site.engine, f"r{n}@example.com").status for n in range(1, 9)}
    assert status == {1: "bounced", 2: "active", 3: "bounced", 4: "complained",
                      5: "unsubscribed", 6: "unsubscribed", 7: "active", 8: "complained"}
    assert "550 no such user" in get_subscriber(site.engine, "r1@example.com").status_reason
    # a later unsubscribe does not weaken a bounce or a complaint
    site.hook([_event(11, "unsubscribe", "r1@example.com"),
               _event(12, "unsubscribe", "r4@example.com")])
    assert get_subscriber(site.engine, "r1@example.com").status == "bounced"
    assert get_subscriber(site.engine, "r4@example.com").status == "complained"


def test_webhook_counts_per_send_and_recipient_once_each(site: Site) -> None:
    prepared = sending.preflight(site.settings, site.settings.project_dir / "issues/2026-11-24.md")
    send = sending.start(site.engine, site.settings, prepared, "daily", backend="outbox").send
    sid = send.id
    events = [_event(f"d{n}", "delivered", f"r{n}@example.com", sid) for n in range(1, 5)]
    events += [_event("o1", "open", "r1@example.com", sid), _event("o2", "open", "r1@example.com",
               sid), _event("o3", "open", "r2@example.com", sid),
               _event("c1", "click", "r1@example.com", sid, url="https://example.org/a"),
               _event("b5", "bounce", "r5@example.com", sid, type="bounce"),
               _event("s4", "spamreport", "r4@example.com", sid),
               _event("u3", "unsubscribe", "r3@example.com", sid),
               _event("x1", "open", "r1@example.com", 999999)]  # an unknown send
    assert site.hook(events[:6]).json()["applied"] == 6
    again = site.hook(events)  # SendGrid retries: the first six come again
    assert again.json() == {"received": 12, "applied": 6, "duplicates": 6,
                            "skipped": 0}
    result = engagement(site.engine, sid)
    assert result.as_dict() == {
        "delivered": 4, "opened": 2, "clicked": 1, "bounced": 1, "complained": 1,
        "unsubscribed": 1, "deferred": 0, "dropped": 0,
        "events": {"delivered": 4, "open": 3, "click": 1, "bounce": 1, "spamreport": 1,
                   "unsubscribe": 1}}
    with site.engine.connect() as conn:
        assert conn.execute(sa.select(sa.func.count()).select_from(webhook_events)
                            ).scalar_one() == 12
    shown = run_cli(site.settings.project_dir, "sends", "show", str(sid))
    assert "events: delivered 4, opened 2 (3 opens), clicked 1 (1 clicks), bounced 1, " \
           "complained 1, unsubscribed 1" in shown.stdout, shown.stdout + shown.stderr
    shown = run_cli(site.settings.project_dir, "sends", "show", str(sid), "--format", "json")
    assert json.loads(shown.stdout)["engagement"]["opened"] == 2


def test_the_same_events_in_concurrent_requests_are_applied_once(site: Site) -> None:
    prepared = sending.preflight(site.settings, site.settings.project_dir / "issues/2026-11-24.md")
    sid = sending.start(site.engine, site.settings, prepared, "daily", backend="outbox").send.id
    events = [_event(f"e{n}", "open", f"r{n % 5 + 1}@example.com", sid) for n in range(400)]
    events.append(_event("b", "bounce", "r1@example.com", sid, type="bounce"))
    server = BackgroundServer(_app(site.settings)).start()
    try:
        def post(i: int) -> int:
            # the same events, each request signed at its own time (not a replay)
            body, headers = site.signed(events[::-1] if i % 2 else events,
                                        timestamp=int(time.time()) - i)
            return httpx.post(f"{server.url}/webhooks/sendgrid", content=body,
                              headers=headers, timeout=60).json()["applied"]

        with concurrent.futures.ThreadPoolExecutor(8) as pool:
            applied = list(pool.map(post, range(8)))
    finally:
        server.stop()
    assert sum(applied) == 401
    result = engagement(site.engine, sid)
    assert result.events == {"open": 400, "bounce": 1}
    assert result.recipients["opens"] == 5 and result.recipients["bounced"] == 1


def test_a_database_failure_answers_503_without_details(tmp_path: Path, keypair) -> None:
    with _site(tmp_path, "sqlite", keypair) as site:
        token = site.token("r1@example.com")
        with site.engine.begin() as conn:
            conn.execute(sa.text("DROP TABLE webhook_events"))
            conn.execute(sa.text("DROP TABLE archive_issues"))
            conn.execute(sa.text("DROP TABLE memberships"))
        response = site.hook([_event(1, "open", "r1@example.com")])
        assert response.status_code == 503
        assert response.text == "temporarily unavailable, retry later\n"
        for answer in (site.post(f"/u/{token}", data=ONE_CLICK), site.get("/archive"),
                       site.get("/archive/feed.xml")):
            assert answer.status_code == 503
            assert answer.text == "temporarily unavailable, retry later\n"


# -- archive, feed, health ---------------------------------------------------------------


def _send_both(site: Site) -> None:
    for name in ("2026-11-24.md", "2026-11-25.md"):
        prepared = sending.preflight(site.settings, site.settings.project_dir / "issues" / name)
        sending.start(site.engine, site.settings, prepared, "daily", backend="outbox")


def test_archive_lists_sent_issues_newest_first_without_personal_links(site: Site) -> None:
    empty = site.get("/archive")
    assert empty.status_code == 200 and "No issue has been sent yet" in empty.text
    # a test send is not published
    prepared = sending.preflight(site.settings, site.settings.project_dir / "issues/2026-11-24.md")
    sending.start(site.engine, site.settings, prepared, "daily", backend="outbox",
                  test_to=["me@example.org"])
    assert "No issue has been sent yet" in site.get("/archive").text
    _send_both(site)
    index = site.get("/archive")
    first, second = index.text.index("/archive/2026-11-25"), index.text.index("/archive/2026-11-24")
    assert first < second
    assert "Tuesday, 24 November 2026" in index.text
    page = site.get("/archive/2026-11-24")
    assert page.status_code == 200
    assert prepared.rendered.subject in page.text
    assert "/u/" not in page.text and "%%" not in page.text and "{{" not in page.text
    assert "default-src 'none'" in page.headers["content-security-policy"]
    assert site.get("/archive/no-such-issue").status_code == 404


def test_feed_is_valid_atom_newest_first(site: Site) -> None:
    _send_both(site)
    response = site.get("/archive/feed.xml")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("application/atom+xml")
    root = ET.fromstring(response.content)
    ns = {"a": "http://www.w3.org/2005/Atom"}
    assert root.tag == "{http://www.w3.org/2005/Atom}feed"
    for required in ("id", "title", "updated"):
        assert root.find(f"a:{required}", ns) is not None
    entries = root.findall("a:entry", ns)
    assert [e.find("a:id", ns).text for e in entries] == [
        f"{NEWSROOM['base_url']}/archive/2026-11-25", f"{NEWSROOM['base_url']}/archive/2026-11-24"]
    for entry in entries:
        for required in ("id", "title", "updated", "link", "summary"):
            assert entry.find(f"a:{required}", ns) is not None
        assert entry.find("a:updated", ns).text.endswith("Z")


def test_archive_false_hides_the_archive(tmp_path: Path, keypair) -> None:
    with _site(tmp_path, "sqlite", keypair, archive=False) as site:
        _send_both(site)
        for path in ("/archive", "/archive/feed.xml", "/archive/2026-11-24"):
            assert site.get(path).status_code == 404
        assert site.get("/healthz").text == "ok\n"


def test_healthz_and_unknown_pages(site: Site) -> None:
    health = site.get("/healthz")
    assert health.status_code == 200 and health.text == "ok\n"
    assert site.get("/").status_code == 404
    assert site.get("/issues/2026-11-24").status_code == 404  # no preview of drafts here
    assert site.get("/webhooks/sendgrid").status_code == 405


# -- newsletter serve ----------------------------------------------------------------------


def test_newsletter_serve_runs_uvicorn_until_ctrl_c(tmp_path: Path, keypair) -> None:
    settings = make_project(tmp_path / "p")
    config = settings.config_file
    config.write_text(f'sendgrid_webhook_public_key = "{keypair[1]}"\n' + config.read_text())
    engine = seed(settings, 3)
    token = tokens.sign(settings, 2, 1)
    process = subprocess.Popen(newsletter_cmd(settings.project_dir, "serve", "--port", "0"),
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        line = process.stdout.readline()
        url = re.search(r"http://127\.0\.0\.1:\d+", line).group(0)
        assert "archive" in line
        deadline = time.monotonic() + 20
        while True:
            try:
                health = httpx.get(f"{url}/healthz", timeout=2)
                break
            except httpx.TransportError:
                assert time.monotonic() < deadline, "serve did not answer"
                time.sleep(0.1)
        assert health.status_code == 200 and health.text == "ok\n"
        response = httpx.post(f"{url}/u/{token}", data=ONE_CLICK, timeout=10)
        assert response.status_code == 200
        assert httpx.get(f"{url}/archive", timeout=10).status_code == 200
        process.send_signal(signal.SIGINT)
        out, err = process.communicate(timeout=20)
    finally:
        if process.poll() is None:
            process.kill()
            process.communicate()
    assert process.returncode == 0, err
    assert "Stopped." in out and "Traceback" not in err
    assert {m.list_name: m.status for m in subscriber_lists(engine, 2)} == {
        "daily": "unsubscribed"}
    engine.dispose()


def test_newsletter_serve_refuses_bad_settings_in_one_line(tmp_path: Path) -> None:
    settings = make_project(tmp_path / "p")
    config = settings.config_file
    original = config.read_text()
    config.write_text('sendgrid_webhook_public_key = "bm90IGEga2V5"\n' + original)
    result = run_cli(settings.project_dir, "serve", "--port", "0", timeout=60)
    assert result.returncode != 0
    assert "sendgrid_webhook_public_key" in result.stderr and "Traceback" not in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1
    without_secret = "".join(line for line in original.splitlines(keepends=True)
                             if not line.startswith("secret_key"))
    assert without_secret != original
    config.write_text(without_secret)
    result = run_cli(settings.project_dir, "serve", "--port", "0", timeout=60)
    assert result.returncode != 0 and "Traceback" not in result.stderr
    assert result.stderr.startswith("newsletter: ") and "'secret_key' is not set" in result.stderr


def test_archive_backfills_sends_made_without_sending_start(site: Site) -> None:
    """A send created straight in the ledger (as scheduling does) still gets archived."""
    path = site.settings.project_dir / "issues" / "2026-11-25.md"
    prepared = sending.preflight(site.settings, path)
    list_id = site.list_id("daily")
    ledger.create_send(site.engine, kind="real", issue_path=str(path),
                       issue_slug=prepared.slug, subject=prepared.rendered.subject,
                       list_id=list_id, list_name="daily", backend="outbox",
                       html=prepared.rendered.html, text=prepared.rendered.text)
    ledger.create_send(site.engine, kind="real", issue_path=str(path.with_name("gone.md")),
                       issue_slug="gone", subject="Gone", list_id=list_id, list_name="daily",
                       backend="outbox", html="x", text="x")
    index = site.get("/archive")
    assert "/archive/2026-11-25" in index.text and "/archive/gone" not in index.text
    page = site.get("/archive/2026-11-25")
    assert page.status_code == 200 and prepared.rendered.subject in page.text
    assert "/u/" not in page.text
