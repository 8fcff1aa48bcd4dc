"""Per-recipient messages: what a mail client would show, header by header."""

from __future__ import annotations

import re
from email import policy
from email.parser import BytesParser
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import settings as hsettings
from hypothesis import strategies as st

from newsletter.audience import tokens
from newsletter.authoring.build import build_file
from newsletter.config import Settings, load_settings
from newsletter.delivery.personalize import MessageTemplate, Recipient, prepare
from newsletter.errors import ConfigError
from tests.conftest import write_issue

BODY = """# Lead: Hello {{name|reader}}, a test
First paragraph for {{ name | dear reader }} with **bold** and a [link](https://news.sendtest.news/a).

# Story: Second
Plain paragraph {{name}}. Ünïcödé text — with an em dash & an ampersand.
"""


def _settings(project: Path) -> Settings:
    return load_settings(
        project,
        base_url="https://news.example.org",
        from_address="The Briefing <news@example.org>",
        reply_to="editor@example.org",
        postal_address="1 Main Street, Springfield",
        secret_key="test-secret-at-least-32-bytes-long",
    )


@pytest.fixture
def template(project: Path) -> MessageTemplate:
    settings = _settings(project)
    path = write_issue(project, BODY, front="subject: News for {{name|you}}\ndate: 2026-11-24\n")
    build = build_file(path, settings, personal=True)
    assert build.rendered is not None, build.findings
    return prepare(build.rendered, settings, send_id=77, list_id=3, list_name="Daily Briefing")


def parse(data: bytes):
    return BytesParser(policy=policy.default).parsebytes(data)


def parts(message) -> tuple[str, str]:
    text = message.get_body(("plain",)).get_content().replace("\r\n", "\n")
    html = message.get_body(("html",)).get_content().replace("\r\n", "\n")
    return text, html


def test_headers_a_mail_client_sees(template: MessageTemplate, project: Path) -> None:
    msg = template.message(Recipient(12, "ann@example.com", "Ann"))
    parsed = parse(msg.as_bytes())
    assert parsed["From"] == "The Briefing <news@example.org>"
    assert parsed["Reply-To"] == "editor@example.org"
    assert parsed["To"] == "Ann <ann@example.com>"
    assert parsed["Subject"] == "News for Ann"
    assert parsed["Date"].datetime is not None
    assert parsed["List-Id"] == "Daily Briefing <daily-briefing.news.example.org>"
    assert parsed["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
    url = parsed["List-Unsubscribe"].strip("<>")
    assert url.startswith("https://news.example.org/u/")
    data = tokens.verify(url.rsplit("/", 1)[1], _settings(project), list_id=3)
    assert (data.subscriber_id, data.list_id) == (12, 3)
    assert parsed["Message-ID"].endswith("@example.org>")
    assert parsed.get_content_type() == "multipart/alternative"
    kinds = [p.get_content_type() for p in parsed.iter_parts()]
    assert kinds == ["text/plain", "text/html"]
    assert all(p.get_content_charset() == "utf-8" for p in parsed.iter_parts())
    text, html = parts(parsed)
    assert f"Unsubscribe: {url}" in text
    assert f'href="{url}"' in html
    assert "ann@example.com" not in url


def test_merge_fields_use_the_name_or_the_fallback(template: MessageTemplate) -> None:
    named = parse(template.message(Recipient(1, "a@example.com", "Ann")).as_bytes())
    text, html = parts(named)
    assert "Hello Ann, a test" in html and "for Ann with" in html and "paragraph Ann." in html
    assert "Hello Ann, a test" in text
    anonymous = parse(template.message(Recipient(2, "b@example.com", None)).as_bytes())
    text, html = parts(anonymous)
    assert anonymous["Subject"] == "News for you"
    assert "Hello reader, a test" in html and "for dear reader with" in html
    assert "paragraph ." in text
    assert anonymous["To"] == "b@example.com"
    assert "{{" not in text + html and "%%" not in text + html


def test_name_is_html_escaped_in_html_only(template: MessageTemplate) -> None:
    msg = template.message(Recipient(3, "c@example.com", '<b>Tom</b> & "Jerry"'))
    text, html = parts(parse(msg.as_bytes()))
    assert "Hello &lt;b&gt;Tom&lt;/b&gt; &amp; &quot;Jerry&quot;, a test" in html
    assert "<b>Tom</b>" not in html
    assert 'Hello <b>Tom</b> & "Jerry", a test' in text


def test_a_name_containing_merge_marks_is_inert(template: MessageTemplate) -> None:
    msg = template.message(Recipient(4, "d@example.com", "%%unsubscribe_url%% {{name}}"))
    text, _ = parts(parse(msg.as_bytes()))
    assert "Hello %%unsubscribe_url%% {{name}}, a test" in text


def test_header_injection_in_the_name_is_neutralised(template: MessageTemplate) -> None:
    msg = template.message(Recipient(5, "e@example.com", "Eve\r\nBcc: victim@example.com"))
    parsed = parse(msg.as_bytes())
    assert parsed["Bcc"] is None
    assert "victim" in parsed["To"]  # kept as part of the display name, harmless
    with pytest.raises(ValueError):
        template.message(Recipient(6, "x@example.com\r\nBcc: v@example.com", None))


def test_message_ids_unique_per_recipient_and_send(project: Path) -> None:
    settings = _settings(project)
    rendered = build_file(write_issue(project, BODY), settings, personal=True).rendered
    assert rendered is not None
    one = prepare(rendered, settings, send_id=1, list_id=1, list_name="L")
    two = prepare(rendered, settings, send_id=2, list_id=1, list_name="L")
    ids = {t.message(Recipient(i, f"u{i}@example.com")).message_id for t in (one, two)
           for i in range(500)}
    assert len(ids) == 1000
    test_ids = {one.message(Recipient(None, f"t{i}@example.com")).message_id for i in range(50)}
    assert len(test_ids) == 50


def test_test_sends_prefix_the_subject(project: Path) -> None:
    settings = _settings(project)
    rendered = build_file(write_issue(project, BODY), settings, personal=True).rendered
    assert rendered is not None
    template = prepare(rendered, settings, send_id="t1", list_id=1, list_name="L", test=True)
    msg = parse(template.message(Recipient(None, "me@example.com")).as_bytes())
    assert msg["Subject"] == "[TEST] A test subject"
    token = msg["List-Unsubscribe"].strip("<>").rsplit("/", 1)[1]
    assert tokens.verify(token, settings).subscriber_id == 0  # matches no subscriber


def test_unicode_subject_and_sender_are_encoded(project: Path) -> None:
    settings = _settings(project).model_copy(
        update={"from_address": "Zoë Briefing <news@example.org>"}
    )
    path = write_issue(project, BODY, front="subject: Ça va? Größe — ok\ndate: 2026-11-24\n")
    rendered = build_file(path, settings, personal=True).rendered
    assert rendered is not None
    data = prepare(rendered, settings, send_id=1, list_id=1, list_name="L").message(
        Recipient(1, "z@example.com", "Zoë")
    ).as_bytes()
    assert data.split(b"\r\n\r\n", 1)[0].isascii()  # headers are 7-bit
    parsed = parse(data)
    assert parsed["Subject"] == "Ça va? Größe — ok"
    assert parsed["From"] == "Zoë Briefing <news@example.org>"
    assert parsed["To"] == "Zoë <z@example.com>"


@given(name=st.one_of(st.none(), st.text(max_size=120), st.just("." * 80)))
@hsettings(max_examples=150, deadline=None)
def test_bytes_always_decode_to_the_filled_parts(sample_template: MessageTemplate, name) -> None:
    msg = sample_template.message(Recipient(9, "p@example.com", name))
    data = msg.as_bytes()
    head, body = data.split(b"\r\n\r\n", 1)
    assert head.isascii() and all(len(line) <= 998 for line in head.split(b"\r\n"))
    assert all(len(line) <= 76 for line in body.split(b"\r\n"))  # quoted-printable limit
    assert data.count(b"\n") == data.count(b"\r\n")
    text, html = parts(parse(data))
    assert text == msg.text.replace("\r\n", "\n")
    assert html == msg.html.replace("\r\n", "\n")
    # the SMTP form is the same message, dot-stuffed, with the end-of-data line
    smtp = msg.as_smtp_data()
    assert smtp.endswith(b"\r\n.\r\n") and b"\r\n.\r\n" not in smtp[:-5]
    assert re.sub(rb"(?m)^\.\.", b".", smtp[:-3]) == data


def test_lines_starting_with_a_dot_are_stuffed_for_smtp(project: Path) -> None:
    settings = _settings(project)
    path = write_issue(project, "# Lead: Dots\n.hidden line? No: {{name|x}}\n")
    rendered = build_file(path, settings, personal=True).rendered
    assert rendered is not None
    template = prepare(rendered, settings, send_id=1, list_id=1, list_name="L")
    msg = template.message(Recipient(1, "a@example.com", "." + "n" * 90))
    data, smtp = msg.as_bytes(), msg.as_smtp_data()
    assert b"\r\n.hidden" in data and b"\r\n..hidden" in smtp
    assert re.sub(rb"(?m)^\.\.", b".", smtp[:-3]) == data


@pytest.fixture(scope="module")
def sample_template(tmp_path_factory: pytest.TempPathFactory) -> MessageTemplate:
    from newsletter.authoring.project import init_project

    folder = tmp_path_factory.mktemp("p") / "briefing"
    init_project(folder, name="Sample")
    settings = _settings(folder)
    rendered = build_file(folder / "issues" / "2026-11-24.md", settings, personal=True).rendered
    assert rendered is not None
    return prepare(rendered, settings, send_id=5, list_id=2, list_name="Sample")


def test_refuses_without_sender_or_base_url(project: Path) -> None:
    settings = _settings(project).model_copy(update={"from_address": None})
    rendered = build_file(write_issue(project, BODY), settings, personal=True).rendered
    assert rendered is not None
    with pytest.raises(ConfigError, match="from_address"):
        prepare(rendered, settings, send_id=1, list_id=1, list_name="L")
    generic = build_file(write_issue(project, BODY), _settings(project)).rendered
    assert generic is not None
    with pytest.raises(ValueError, match="personal=True"):
        prepare(generic, _settings(project), send_id=1, list_id=1, list_name="L")
