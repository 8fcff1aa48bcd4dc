"""Link rewriting (delivery.tracking): the switches, SendGrid's substitutions, the open
pixel and the click tokens."""

from __future__ import annotations

import json
import re
import warnings
from html import escape
from pathlib import Path

import pytest
import sqlalchemy as sa

from newsletter.authoring.build import build_file
from newsletter.config import Settings
from newsletter.db.tables import opens
from newsletter.delivery import sending
from newsletter.delivery.personalize import prepare
from newsletter.delivery.tracking import ClickSigner, for_send
from newsletter.web import create_app
from tests.delivery_helpers import recipients, send_settings
from tests.sendgrid_standin import SendGridStandIn, sendgrid_standin  # noqa: F401 (fixture)

from .conftest import SAMPLE
from .sendtools import make_project, seed

with warnings.catch_warnings():
    warnings.simplefilter("ignore", DeprecationWarning)
    from starlette.testclient import TestClient

TRACKED = re.compile(r'href="https://news\.example\.org/c/([A-Za-z0-9_-]+\.[0-9]+)"')


def _tracked(settings: Settings, list_name: str = "daily", issue: Path = SAMPLE):
    build = build_file(issue, settings, personal=True)
    assert build.rendered is not None and build.issue is not None
    return for_send(settings, build.issue, build.rendered, list_name)


def test_tracking_switches_per_newsroom_list_and_issue(project: Path) -> None:
    settings = send_settings(project)
    assert len(_tracked(settings).links) > 1
    assert "%%click:" in _tracked(settings).rendered.html
    assert _tracked(settings.model_copy(update={"track_clicks": False})).links == ()
    board = settings.model_copy(update={"untracked_lists": ["board"]})
    assert _tracked(board, "board").links == () and _tracked(board, "daily").links
    text = SAMPLE.read_text("utf-8").replace("\n---\n", "\ntrack_clicks: false\n---\n", 1)
    off = project / "issues" / "off.md"
    off.write_text(text, encoding="utf-8")
    untracked = _tracked(settings, issue=off)
    assert untracked.links == () and "%%click:" not in untracked.rendered.html


def test_a_bad_track_clicks_value_is_one_finding_at_its_line(project: Path) -> None:
    text = SAMPLE.read_text("utf-8").replace("\n---\n", "\ntrack_clicks: sometimes\n---\n", 1)
    path = project / "issues" / "bad.md"
    path.write_text(text, encoding="utf-8")
    findings = build_file(path, send_settings(project)).errors
    line = text.splitlines().index("track_clicks: sometimes") + 1
    assert [(f.rule, f.line) for f in findings] == [("track-clicks-type", line)]


@pytest.mark.parametrize("base_url", ["https://news.example.org", "https://news.example.org/a&b"])
@pytest.mark.parametrize("rows", [False, True])
def test_sendgrid_carries_each_recipients_tracked_links(
        project: Path, sendgrid_standin: SendGridStandIn, base_url: str,  # noqa: F811
        rows: bool) -> None:
    """Each recipient's mail, as SendGrid expands it, has its own tracked links and pixel,
    whichever path built the request (the row path or the messages') and whether the
    URLs need escaping (one reader token substituted into them all) or not (each URL)."""
    from newsletter.delivery.backends.sendgrid import SendGridBackend
    from newsletter.delivery.claims import ClaimedRow

    settings = send_settings(project, track_opens=True, base_url=base_url)
    template = prepare(_tracked(settings).rendered, settings, send_id=41, list_id=2,
                       list_name="daily")
    people = recipients(5, start=126)  # ids on both sides of a varint's one byte
    messages = template.messages(people)
    with SendGridBackend(sendgrid_standin.api_key, sendgrid_standin.url,
                         backoff=0.01) as backend:
        content = backend.content_for(template)
        assert content.clicks_plain is ("&" not in base_url)
        assert bool(content.click_keys) is ("&" in base_url)
        results = backend.send_rows(template, [ClaimedRow(*r, seq=r.subscriber_id)
                                               for r in people]) if rows else None
        if results is None:  # the row path leaves URLs that need escaping to messages'
            assert not rows or "&" in base_url
            results = backend.send_batch(messages)
        assert results and all(r.ok for r in results)
    signer = ClickSigner(settings)
    link = re.compile(rf'href="{re.escape(escape(base_url))}/c/([A-Za-z0-9_-]+\.[0-9]+)"')
    for message in messages:
        (got,) = sendgrid_standin.expand(message.email)
        assert got["html"] == message.html and got["text"] == message.text
        tokens = link.findall(got["html"])
        assert len(tokens) > 2 and {signer.verify(t)[:2] for t in tokens} == {
            (41, message.subscriber_id)}
        assert f'src="{escape(base_url)}/o/' in got["html"]


def test_the_row_path_writes_the_request_the_messages_path_writes(project: Path) -> None:
    """SendGrid's row path and the messages' path write the same bytes, and a
    recipient's tracked links cost one substitution: the reader token."""
    from newsletter.delivery.backends.sendgrid import READER_KEY, SendGridBackend, rows_json
    from newsletter.delivery.claims import ClaimedRow

    settings = send_settings(project, track_opens=True)
    template = prepare(_tracked(settings).rendered, settings, send_id=300, list_id=2,
                       list_name="daily")
    backend = SendGridBackend("SG.test", "http://127.0.0.1:9")
    content = backend.content_for(template)
    people = recipients(40, start=120)  # ids on both sides of a varint's one byte
    claimed = [ClaimedRow(*r, seq=r.subscriber_id) for r in people]
    fast = rows_json(content, template, claimed)
    assert fast == backend.payload_json(template.messages(people, headers=False))
    body = json.loads(fast)
    html = body["content"][1]["value"]
    assert html.count(f"https://news.example.org/c/{READER_KEY}.") == template.links
    for item, person in zip(body["personalizations"], people, strict=True):
        reader = item["substitutions"].pop(READER_KEY)
        assert template.click_urls(person.subscriber_id)[0].endswith(f"/c/{reader}.0")
        assert not any("/c/" in value for value in item["substitutions"].values())


def test_tokens_are_short_and_any_change_breaks_them(project: Path) -> None:
    settings = send_settings(project)
    signer = ClickSigner(settings)
    token = signer.sign(123_456, 9_876_543, 17)
    assert len(token) <= 24 and signer.verify(token) == (123_456, 9_876_543, 17)
    for i in range(len(token)):
        for c in "AQw_-":
            changed = token[:i] + c + token[i + 1:]
            if changed != token:
                assert signer.verify(changed) is None
    assert ClickSigner(settings, opens=True).verify(token) is None  # a pixel's is not a link's
    rotated = settings.model_copy(update={"secret_key": "n" * 40,
                                          "old_secret_keys": [settings.secret_key]})
    assert ClickSigner(rotated).verify(token) == (123_456, 9_876_543, 17)


def test_one_reader_token_opens_every_link_of_its_send_and_nothing_else(project: Path) -> None:
    """A send signs one reader token per recipient (a batch at a time, whatever the
    varints' lengths); ``READER.N`` is link N of that send for that reader, ``READER``
    alone is the pixel's; a changed character, index or purpose is no link."""
    signer = ClickSigner(send_settings(project))
    pixels = ClickSigner(send_settings(project), opens=True)
    people = [0, 1, 127, 128, 16_383, 16_384, 9_876_543, 2**40]
    for send in (1, 300, 123_456):
        batch = signer.readers(send, people)
        assert batch == [signer.readers(send, [who])[0] for who in people]
        for who, reader in zip(people, batch, strict=True):
            assert 16 <= len(reader) <= 26 and "." not in reader
            assert signer.verify(f"{reader}.0") == (send, who, 0)
            assert signer.verify(f"{reader}.130") == (send, who, 130)
            assert pixels.verify(reader) == (send, who, 0)
            assert signer.verify(reader) is None  # a pixel's URL is no link
            assert pixels.verify(f"{reader}.1") is None  # nor a link's a pixel
            for bad in (f"{reader}.01", f"{reader}.", f"{reader}.1.2", f"{reader}.-1",
                        f"{reader}.123456", f"{reader[:-1]}{'A' if reader[-1] != 'A' else 'Q'}.1",
                        f"{signer.sign(send, who, 1)}.1"):
                assert signer.verify(bad) is None, bad
    rotated = send_settings(project).model_copy(update={
        "secret_key": "n" * 40, "old_secret_keys": [send_settings(project).secret_key]})
    reader = signer.readers(5, [6])[0]
    assert ClickSigner(rotated).verify(f"{reader}.3") == (5, 6, 3)  # the old key is kept
    assert ClickSigner(rotated).readers(5, [6])[0] != reader  # new mail: the new key


@pytest.mark.parametrize("track_opens", [False, True])
def test_the_open_pixel_only_when_asked_and_opens_recorded(tmp_path: Path,
                                                           track_opens: bool) -> None:
    settings = make_project(tmp_path / "p").model_copy(update={"track_opens": track_opens})
    engine = seed(settings, 3)
    prepared = sending.preflight(settings, settings.project_dir / "issues/2026-11-24.md")
    started = sending.start(engine, settings, prepared, "daily", backend="outbox")
    sending.run(engine, settings, started.send.id, backend="outbox")
    html = sorted(settings.outbox_path.glob("*.eml"))[0].read_text("utf-8")
    pixel = re.search(r"https://sendtest\.news/o/[A-Za-z0-9_-]+", html.replace("=\n", ""))
    assert bool(pixel) is track_opens
    if not track_opens:
        return
    app = create_app(settings, preview=False, public=True)
    with TestClient(app, base_url="https://sendtest.news") as client:
        answer = client.get(pixel.group(0))
        assert answer.status_code == 200 and answer.headers["content-type"] == "image/gif"
        assert client.get("/o/AAAAAAAAAAAAAAAAAAAAAA").status_code == 400
        app.state.parts[0].state.click_writer.flush()
    with engine.connect() as conn:
        assert conn.execute(sa.select(sa.func.count()).select_from(opens)).scalar() == 1
    engine.dispose()


def test_postmark_carries_each_recipients_tracked_links(project: Path) -> None:
    """Every backend fills the tracked links: Postmark's JSON bodies, like SendGrid's
    substitutions, carry each reader's own signed links (found as the message has them)."""
    from newsletter.delivery.backends.postmark import PostmarkBackend
    from tests.postmark_standin import PostmarkStandIn

    settings = send_settings(project, track_opens=True)
    template = prepare(_tracked(settings).rendered, settings, send_id=43, list_id=2,
                       list_name="daily")
    messages = template.messages(recipients(4), headers=False)
    signer = ClickSigner(settings)
    with PostmarkStandIn(api_key="pm") as standin, \
            PostmarkBackend("pm", standin.url, backoff=0.01) as backend:
        assert all(r.ok for r in backend.send_batch(messages))
        for message in messages:
            (got,) = standin.messages(message.email)
            assert got["HtmlBody"] == message.html and "%%" not in got["HtmlBody"]
            tokens = TRACKED.findall(got["HtmlBody"])
            assert tokens and {signer.verify(t)[:2] for t in tokens} == {
                (43, message.subscriber_id)}
