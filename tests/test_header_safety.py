"""One subscriber's name never stops a batch: names are made header-safe where they enter
and when a message is built, and a recipient whose message cannot be built fails alone.

Every send here goes through the ledger and the engine to a real backend: .eml files in
the outbox, aiosmtpd on 127.0.0.1 (which refuses a line over 1,000 octets, as servers do),
and the real ``sendgrid`` client against the local stand-in.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from email import policy
from email.headerregistry import Address
from email.message import EmailMessage
from email.parser import BytesParser
from pathlib import Path

import pytest
import sqlalchemy as sa
from hypothesis import HealthCheck, given, seed
from hypothesis import settings as hsettings
from hypothesis import strategies as st

from newsletter.db.tables import subscribers
from newsletter.delivery import ledger, personalize, sending
from newsletter.delivery.headersafe import NAME_MAX, clean_text

from .sendgrid_standin import SendGridStandIn
from .sendtools import make_project
from .sendtools import seed as seed_list
from .smtpserver import SMTPTestServer

KEY = "SG.header-safety"
BACKENDS = ["outbox", "smtp", "sendgrid"]
ODD_ID = 3  # the subscriber whose name is odd; r1..r5@example.com are the list
PEOPLE = 5
SUBJECT = "Hello {{name|reader}}: the river towns"
LINE_BREAKS = "\n\r\v\f\x1c\x1d\x1e\x85\u2028\u2029"  # str.splitlines() boundaries


@dataclass
class Delivered:
    """What one recipient received from one send, as header name -> value, plus lines."""

    headers: dict[str, str]
    lines: list[bytes]  # the header block's raw lines (empty for SendGrid: JSON)


class Harness:
    """A project with a list of five, an issue with {{name}} in subject and body, and
    one backend; ``send(name)`` gives subscriber 3 that name (as a hand edit or an old
    import would have stored it, uncleaned) and sends the issue to the list again."""

    def __init__(self, folder: Path, backend: str, smtp: SMTPTestServer | None,
                 standin: SendGridStandIn | None) -> None:
        settings = make_project(folder)
        updates: dict[str, object] = {}
        if smtp is not None:
            updates["smtp_url"] = smtp.url
        if standin is not None:
            updates["sendgrid_api_host"] = standin.url
        self.settings = settings.model_copy(update=updates)
        self.engine = seed_list(self.settings, PEOPLE)
        issue = self.settings.project_dir / "issues" / "2026-11-24.md"
        text = issue.read_text("utf-8")
        head, body = text.split("\n---\n", 1)
        head = "\n".join(f"subject: {SUBJECT}" if line.startswith("subject:") else line
                         for line in head.splitlines())
        issue.write_text(f"{head}\n---\n{body.replace('First', 'Dear {{name}}, first', 1)}",
                         "utf-8")
        self.prepared = sending.preflight(self.settings, issue)
        self.backend, self.smtp, self.standin = backend, smtp, standin

    def send(self, name: str | None) -> tuple[ledger.SendInfo, dict[str, list[Delivered]]]:
        with self.engine.begin() as conn:  # stored as it is: the entry points would clean it
            conn.execute(sa.update(subscribers).where(subscribers.c.id == ODD_ID)
                         .values(name=name))
        for sink in (self.smtp, self.standin):
            if sink is not None:
                sink.reset()
        started = sending.start(self.engine, self.settings, self.prepared, "daily",
                                backend=self.backend, again=True)
        result = sending.run(self.engine, self.settings, started.send.id, backend=self.backend,
                             retry_delay=0.01)
        return result, self.received(started.send.id)

    def received(self, send_id: int) -> dict[str, list[Delivered]]:
        out: dict[str, list[Delivered]] = {}
        if self.backend == "outbox":
            for path in self.settings.outbox_path.glob(f"{send_id}-*.eml"):
                who = f"r{path.stem.split('-')[1]}@example.com"
                out.setdefault(who, []).append(_from_mime(path.read_bytes()))
        elif self.backend == "smtp":
            assert self.smtp is not None
            for who, messages in self.smtp.messages.items():
                out[who] = [_from_mime(data) for data in messages]
        else:
            assert self.standin is not None
            for who in self.standin.counts:
                out[who] = [_from_sendgrid(m) for m in self.standin.expand(who)]
        return out


def _from_mime(data: bytes) -> Delivered:
    head = data.split(b"\r\n\r\n", 1)[0]
    parsed = BytesParser(policy=policy.default).parsebytes(data)
    assert not parsed.defects, parsed.defects
    headers = {}
    for key in parsed:
        header = parsed[key]
        assert not header.defects, (key, header.defects)
        headers[key] = str(header)
    return Delivered(headers, head.split(b"\r\n"))


def _from_sendgrid(message: dict) -> Delivered:
    """SendGrid writes the MIME itself: every value we gave it must make a header
    Python's strict policy accepts and folds into lines of at most 998 octets."""
    (to,) = message["to"]
    name = to.get("name") or ""
    values = {"Subject": message["subject"], **message["headers"]}
    mime = EmailMessage(policy=policy.SMTP)
    assert not set(name) & set(LINE_BREAKS) and len(name) <= NAME_MAX
    mime["To"] = Address(display_name=name, addr_spec=to["email"])
    for key, value in values.items():
        assert not set(value) & set(LINE_BREAKS), (key, value)
        mime[key] = value
    data = mime.as_bytes()
    delivered = _from_mime(data)
    delivered.headers["To-Name"] = to.get("name") or ""
    return delivered


@pytest.fixture(scope="module")
def smtp() -> Iterator[SMTPTestServer]:
    with SMTPTestServer() as server:
        yield server


@pytest.fixture(scope="module")
def standin() -> Iterator[SendGridStandIn]:
    with SendGridStandIn(api_key=KEY) as server:
        yield server


@pytest.fixture
def harness(request, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Harness:
    backend = request.param
    monkeypatch.setenv("SENDGRID_API_KEY", KEY)
    smtp = request.getfixturevalue("smtp") if backend == "smtp" else None
    standin = request.getfixturevalue("standin") if backend == "sendgrid" else None
    return Harness(tmp_path / "p", backend, smtp, standin)


def _expect_others_once(received: dict[str, list[Delivered]]) -> None:
    for n in range(1, PEOPLE + 1):
        if n != ODD_ID:
            assert len(received.get(f"r{n}@example.com", [])) == 1, n


def _header_lines_ok(delivered: Delivered) -> None:
    assert all(len(line) <= 998 for line in delivered.lines)


# -- the two reproduced cases, on each backend ------------------------------------------


@pytest.mark.parametrize("harness", BACKENDS, indirect=True)
def test_a_line_separator_in_a_name_with_name_in_the_subject(harness: Harness) -> None:
    result, received = harness.send("Ann\u2028Lee\x85Jr")
    assert result.counts == {"sent": PEOPLE}
    _expect_others_once(received)
    (odd,) = received[f"r{ODD_ID}@example.com"]
    assert odd.headers["Subject"] == "Hello Ann Lee Jr: the river towns"
    assert odd.headers["To"] == f"Ann Lee Jr <r{ODD_ID}@example.com>"
    _header_lines_ok(odd)
    (other,) = received["r1@example.com"]
    assert other.headers["Subject"] == "Hello Reader 1: the river towns"


@pytest.mark.parametrize("harness", BACKENDS, indirect=True)
def test_a_3000_character_name_is_shortened_and_folded(harness: Harness) -> None:
    result, received = harness.send("x" * 3000)
    assert result.counts == {"sent": PEOPLE}
    _expect_others_once(received)
    (odd,) = received[f"r{ODD_ID}@example.com"]
    _header_lines_ok(odd)
    if harness.backend == "sendgrid":
        assert odd.headers["To-Name"] == "x" * NAME_MAX
    else:
        assert all(len(line) <= 78 for line in odd.lines)
    assert odd.headers["Subject"].replace(" ", "") == f"Hello{'x' * NAME_MAX}:theriver" + "towns"
    assert odd.headers["To"].endswith(f"<r{ODD_ID}@example.com>")


@pytest.mark.parametrize("harness", BACKENDS, indirect=True)
def test_a_message_that_cannot_be_built_fails_alone(
    harness: Harness, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Any exception while personalising one recipient: that one is a permanent failure
    with the reason; the rest of the batch goes out, and nothing is uncertain."""
    real = personalize.clean_name

    def broken(name: object) -> str | None:
        if isinstance(name, str) and "\N{COLLISION SYMBOL}" in name:
            raise RuntimeError("personalisation blew up")
        return real(name)

    monkeypatch.setattr(personalize, "clean_name", broken)
    result, received = harness.send("Bad\N{COLLISION SYMBOL}\u2028name")
    assert result.counts == {"sent": PEOPLE - 1, "failed": 1}
    _expect_others_once(received)
    assert f"r{ODD_ID}@example.com" not in received
    (row,) = ledger.recipients(harness.engine, result.id, ["failed"])
    assert row.subscriber_id == ODD_ID
    assert row.reason == "message could not be built: RuntimeError: personalisation blew up"


@pytest.mark.parametrize("harness", ["outbox", "smtp"], indirect=True)
def test_an_address_too_long_for_a_server_fails_alone(harness: Harness) -> None:
    long_address = "a" * 250 + "@example.com"
    with harness.engine.begin() as conn:  # a hand edit: the add path would refuse it
        conn.execute(sa.update(subscribers).where(subscribers.c.id == 2)
                     .values(email=long_address, email_key=long_address))
    result, received = harness.send("Ann")
    assert result.counts == {"sent": PEOPLE - 1, "failed": 1}
    assert long_address not in received and len(received) == PEOPLE - 1
    (row,) = ledger.recipients(harness.engine, result.id, ["failed"])
    assert row.reason.startswith("not sendable: not a deliverable address")


# -- any name at all, on every backend (property) --------------------------------------

TRICKY = list("ab é\t") + list(LINE_BREAKS) + ["\x00", "\x7f", "\u202e", "\ufeff", "=?", "\""]
NAMES = st.one_of(
    st.none(),
    st.text(st.characters(blacklist_categories=("Cs",)), max_size=80),
    st.lists(st.sampled_from(TRICKY), min_size=1, max_size=40).map("".join),
    st.builds(lambda part, times, tail: part * times + tail,
              st.text(st.characters(blacklist_categories=("Cs",)), min_size=1, max_size=3),
              st.integers(100, 1500), st.lists(st.sampled_from(TRICKY), max_size=4).map("".join)),
)


@pytest.mark.parametrize("harness", BACKENDS, indirect=True)
def test_any_name_fails_at_most_its_own_message(harness: Harness) -> None:
    @seed(20261124)
    @hsettings(max_examples=35, deadline=None, database=None,
               suppress_health_check=[HealthCheck.too_slow])
    @given(name=NAMES)
    def check(name: str | None) -> None:
        result, received = harness.send(name)
        _expect_others_once(received)
        assert not result.counts.get("uncertain") and not result.counts.get("temporary")
        odd = received.get(f"r{ODD_ID}@example.com", [])
        assert len(odd) <= 1
        if not odd:
            assert result.counts == {"sent": PEOPLE - 1, "failed": 1}
            return
        assert result.counts == {"sent": PEOPLE}
        _header_lines_ok(odd[0])
        expected = clean_text(name) or "reader"
        subject = odd[0].headers["Subject"]
        assert subject.split() == f"Hello {expected}: the river towns".split()

    check()


# -- the entry points store names made safe ---------------------------------------------


def test_add_subscriber_stores_a_header_safe_name(store: sa.Engine) -> None:
    from newsletter.audience.subscribers import add_subscriber, get_subscriber

    add_subscriber(store, "ann@example.org", name=" Ann\u2028Lee\r\nBcc: x\x00 ")
    assert get_subscriber(store, "ann@example.org").name == "Ann Lee Bcc: x"
    add_subscriber(store, "long@example.org", name="y" * 3000)
    assert get_subscriber(store, "long@example.org").name == "y" * NAME_MAX
    add_subscriber(store, "none@example.org", name="\u2029\x0b")
    assert get_subscriber(store, "none@example.org").name is None


def test_import_stores_header_safe_names(store: sa.Engine, tmp_path: Path) -> None:
    from newsletter.audience.importer import import_csv
    from newsletter.audience.subscribers import get_subscriber

    csv = tmp_path / "members.csv"
    csv.write_text(
        'email,name\n'
        'a@example.org,"Ann\u2028Lee"\n'
        f'b@example.org,{"z" * 3000}\n'
        'c@example.org,"Line\nbreak\x85and\u2029more"\n'
        'd@example.org,Plain Name\n',
        "utf-8",
    )
    report = import_csv(store, csv)
    assert report.added == 4
    assert get_subscriber(store, "a@example.org").name == "Ann Lee"
    assert get_subscriber(store, "b@example.org").name == "z" * NAME_MAX
    assert get_subscriber(store, "c@example.org").name == "Line break and more"
    assert get_subscriber(store, "d@example.org").name == "Plain Name"


# -- the rule and the folding, on their own ---------------------------------------------


@pytest.mark.parametrize("char", list(LINE_BREAKS) + ["\x00", "\x7f", "\x9f", "\t"])
def test_every_line_break_and_control_becomes_a_space(char: str) -> None:
    assert clean_text(f"Ann{char}Lee") == "Ann Lee"
    assert len(clean_text(f"Ann{char}Lee").splitlines()) == 1  # type: ignore[union-attr]


def test_invisible_and_unencodable_characters_are_dropped() -> None:
    assert clean_text("\u202eevil\u202c name\ufeff") == "evil name"
    assert clean_text("Jo\ud800hn") == "John"  # a lone surrogate cannot be encoded
    assert clean_text("  \u2028 ") is None
    assert clean_text("Zoë 👨\u200d👩\u200d👧") == "Zoë 👨\u200d👩\u200d👧"  # joiners kept


@seed(5322)
@hsettings(max_examples=300, deadline=None, database=None)
@given(value=st.text(st.characters(blacklist_categories=("Cs",)), max_size=400),
       name=st.sampled_from(["Subject", "To"]))
def test_headers_fold_to_short_lines_and_read_back(value: str, name: str) -> None:
    from newsletter.delivery.headersafe import address_header, text_header

    text = clean_text(value, 400)
    assert clean_text(text, 400) == text  # the rule is idempotent
    if text is None:
        return
    data = (text_header(name, text) if name == "Subject"
            else address_header(name, text, "ann@example.org"))
    assert data.isascii() and data.endswith(b"\r\n")
    assert all(len(line) <= 78 for line in data[:-2].split(b"\r\n"))
    parsed = BytesParser(policy=policy.default).parsebytes(data + b"\r\n")
    if name == "Subject":
        assert str(parsed["Subject"]) == text
    else:
        (address,) = parsed["To"].addresses
        assert address.addr_spec == "ann@example.org"
        # Python's parser puts a space between adjacent encoded-words of a display name;
        # RFC 2047 decoders (mail clients, email.header) join them
        assert address.display_name.replace(" ", "") == text.replace(" ", "")
