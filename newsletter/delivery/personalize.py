"""Rendered issue + recipient -> the recipient's message. Pure: no I/O.

``prepare(rendered, settings, send_id=..., list_id=..., list_name=...)`` runs once per
send. It splits the HTML, the plain text and the subject at their merge marks
(``UNSUBSCRIBE_MARK``, ``PREFERENCES_MARK`` and ``{{name}}`` / ``{{name|fallback}}``) with
one compiled regex,
quoted-printable-encodes every literal piece once, and builds the constant header block
(From, Reply-To, Subject, Date, List-Id, List-Unsubscribe-Post, MIME-Version) with
``email.policy.SMTP``. ``template.message(recipient)`` then only signs a token, makes a
Message-ID and writes the recipient's header block (a few microseconds);
``OutgoingMessage.as_bytes()`` joins the pre-encoded pieces with the encoded per-recipient
values, so building a 45 KB message costs a join rather than a render or a 45 KB encode.

Per-recipient values are made header-safe by ``headersafe`` (the one rule): the name is
cleaned (no line breaks of any kind, no controls, at most ``NAME_MAX`` characters) and
To and a personal Subject are folded to lines of at most 78 octets. A recipient whose
message still cannot be built makes ``messages()`` raise before anything is sent; the
runner then fails that recipient alone.

Every message is ``multipart/alternative`` (text/plain first, then text/html), UTF-8,
quoted-printable, CRLF line ends, lines of at most 76 characters, and carries
``List-Unsubscribe: <{base_url}/u/{token}>`` plus ``List-Unsubscribe-Post:
List-Unsubscribe=One-Click`` (RFC 8058) and the same link in the footer. Where the
body has ``PREFERENCES_MARK`` (the default footer does) it becomes the recipient's
preference-centre link, ``{base_url}/p/{token}`` (``audience.tokens``: a token that
expires, whose tag is the second half of the HMAC that signs the recipient's unsubscribe
token, ``Signer.pairs_for_list``); signed only when a part has it.

A subject test (``delivery.variants``) gives the template one derived template per
variant (``with_variants``): the same bodies, its own subject and constant header block.
``messages()`` picks each recipient's by their ledger row's ``seq``; each message carries
its variant's template, so every backend writes that subject.

A test send (``test=True``) puts ``"[TEST] "`` before the subject. A recipient without a
subscriber id (a ``--test-to`` address) gets a link for subscriber 0, which matches nobody.
"""

from __future__ import annotations

import hmac
import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from email import policy
from email.message import EmailMessage
from email.parser import BytesParser
from email.utils import format_datetime, parseaddr
from hashlib import sha256
from secrets import token_hex
from typing import NamedTuple, Protocol
from urllib.parse import urlsplit

from ..audience.tokens import Signer, preferences_signer, signer
from ..authoring.render import UNSUBSCRIBE_MARK, Rendered
from ..config import Settings, require
from ..errors import ConfigError
from .headersafe import (
    NAME_MAX,
    TEXT_MAX,
    address_header,
    clean_text,
    is_clean,
    sendable_address,
    text_header,
)
from .parts import Part, _stuff
from .tracking import ClickSigner, click_url, open_url

TEST_PREFIX = "[TEST] "
LIST_UNSUBSCRIBE_POST = "List-Unsubscribe=One-Click"
class Recipient(NamedTuple):
    """Who a message is for. Anything with these three fields will do (``Addressee``):
    the ledger's claimed rows (``claims.ClaimedRow``) are used as they are."""

    subscriber_id: int | None  # None for a --test-to address that is not a subscriber
    email: str
    name: str | None = None


class Addressee(Protocol):
    """What a message needs to know of its recipient, read by name: a ``Recipient`` or a
    ``claims.ClaimedRow``."""

    @property
    def subscriber_id(self) -> int | None: ...

    @property
    def email(self) -> str: ...

    @property
    def name(self) -> str | None: ...


def clean_name(name: object) -> str | None:
    """A display name safe for headers and bodies (``headersafe.clean_text``)."""
    return clean_text(name, NAME_MAX)


def _header_bytes(items: Sequence[tuple[str, object]]) -> bytes:
    msg = EmailMessage(policy=policy.SMTP)
    for key, value in items:
        msg[key] = value
    return b"".join(policy.SMTP.fold_binary(key, value) for key, value in msg.items())


def _list_label(name: str) -> str:
    label = re.sub(r"[^a-z0-9-]+", "-", name.lower()).strip("-")
    return label or "list"


@dataclass
class MessageTemplate:
    """Everything about a send's messages that does not depend on the recipient."""

    send_id: int | str
    list_id: int
    list_name: str
    test: bool
    base_url: str
    subject: Part
    text: Part
    html: Part
    headers: bytes  # the constant header block, folded, CRLF
    list_id_header: str
    from_address: str
    reply_to: str | None
    date: datetime
    boundary: str
    signer: Signer = field(repr=False)
    _msgid_tag: str = field(repr=False, default="")
    _msgid_domain: str = field(repr=False, default="")
    _sign: Callable[[Iterable[int]], list[str]] | None = field(repr=False, default=None)
    _sign_preferences: Callable[[Iterable[int]], list[str]] | None = field(
        repr=False, default=None)
    _sign_pairs: Callable[[Iterable[int]], tuple[list[str], list[str]]] | None = field(
        repr=False, default=None)
    # a subject test: each variant's template, which variant a row (by seq) has, and the
    # variant of every other row (the winner, once decided)
    variants: dict[str, MessageTemplate] = field(repr=False, default_factory=dict)
    variant_of: Mapping[int, str] = field(repr=False, default_factory=dict)
    default_variant: str | None = None
    _resolve_default: Callable[[], str | None] | None = field(repr=False, default=None)
    clicker: ClickSigner | None = field(repr=False, default=None)  # links' and pixel's

    def __post_init__(self) -> None:
        self._msgid_head = f"<{self.send_id}."
        self._msgid_tail = f".{self._msgid_tag}@{self._msgid_domain}>"
        self._url_head = f"{self.base_url}/u/"
        self.preferences_head = f"{self.base_url}/p/"
        self.has_preferences = self.text.has_preferences or self.html.has_preferences
        self.links = max(self.text.links, self.html.links)
        self.has_open = any(s.kind == "open" for s in self.html.slots)

    def click_urls(self, subscriber_id: int | None) -> list[str]:
        """The recipient's tracked URLs by link index, then the pixel's (none without
        marks); a test address (no subscriber) gets subscriber 0's, which count for no one."""
        return self.click_urls_each((subscriber_id,))[0]

    def click_urls_each(self, subscriber_ids: Sequence[int | None]) -> list[list[str]]:
        """``click_urls`` of each of these subscribers, signed as a batch (faster)."""
        return [self.click_urls_of(reader) for reader in self.readers(subscriber_ids)]

    def readers(self, subscriber_ids: Sequence[int | None]) -> list[str]:
        """The reader token of each of these subscribers (``tracking.ClickSigner.readers``:
        one signature covers all of a recipient's tracked links and the pixel); "" each
        when the message tracks nothing."""
        if not (self.links or self.has_open) or self.clicker is None:
            return [""] * len(subscriber_ids)
        return self.clicker.readers(int(self.send_id), [s or 0 for s in subscriber_ids])

    def click_urls_of(self, reader: str) -> list[str]:
        """The tracked URLs of the recipient with this reader token, by link index, then
        the pixel's (none for "": nothing tracked)."""
        if not reader:
            return []
        base = self.base_url
        urls = [click_url(base, reader, idx) for idx in range(self.links)]
        if self.has_open:
            urls.append(open_url(base, reader))
        return urls

    def preferences_urls(self, subscriber_ids: Sequence[int]) -> list[str]:
        """The preference-centre URLs of these subscribers ("" for each when no part
        links to the preference centre, or for a test address: subscriber 0)."""
        return self.tokens_and_preferences(subscriber_ids)[1]

    def tokens_and_preferences(self, subscriber_ids: Sequence[int]
                               ) -> tuple[list[str], list[str]]:
        """``tokens(ids)`` and ``preferences_urls(ids)``: when the message links to the
        preference centre, one HMAC per recipient signs both (``Signer.pairs_for_list``:
        the preference token's tag is the other half of the unsubscribe token's HMAC)."""
        if self._sign_preferences is None or not self.has_preferences:
            return self.tokens(subscriber_ids), [""] * len(subscriber_ids)
        if self.list_id > 0:
            pairs = self._sign_pairs
            if pairs is None:
                pairs = self._sign_pairs = self.signer.pairs_for_list(self.list_id)
            unsubscribe, preferences = pairs(subscriber_ids)
        else:  # no list (a test send): the first form, signed on its own
            unsubscribe = self.tokens(subscriber_ids)
            preferences = self._sign_preferences(subscriber_ids)
        head = self.preferences_head
        return unsubscribe, [head + token if n else "" for n, token in
                             zip(subscriber_ids, preferences, strict=True)]

    def with_variants(self, subjects: Mapping[str, str], variant_of: Mapping[int, str],
                      default: str | None,
                      resolve: Callable[[], str | None] | None = None) -> MessageTemplate:
        """This template, choosing each recipient's subject by variant: ``subjects`` maps
        a variant ("A") to its subject, ``variant_of`` a row's seq to its variant; rows not
        in it get ``default``, or while that is None what ``resolve()`` answers (asked
        until it names one), else this template's own subject."""
        derived = {}
        for variant, text in subjects.items():
            raw = (TEST_PREFIX if self.test else "") + (clean_text(text, TEXT_MAX) or "")
            part = Part.split(raw, html=False, encode=False)
            derived[variant] = replace(self, subject=part, headers=_constant_headers(
                self.from_address, self.reply_to, raw, part, self.date, self.list_id_header,
                self.boundary))
        return replace(self, variants=derived, variant_of=dict(variant_of),
                       default_variant=default, _resolve_default=resolve)

    def for_recipient(self, recipient: Addressee) -> MessageTemplate:
        """The template of ``recipient``'s variant (this one without a subject test)."""
        if not self.variants:
            return self
        variant = self.variant_of.get(getattr(recipient, "seq", -1), self.default_variant)
        if variant is None and self._resolve_default is not None:
            variant = self.default_variant = self._resolve_default()
        return self.variants.get(variant, self) if variant is not None else self

    @property
    def subject_text(self) -> str:
        """The subject as most recipients see it (merge fields at their fallback)."""
        return self.subject.fill(self.subject.values("", None))

    def unsubscribe_url(self, token: str) -> str:
        return f"{self.base_url}/u/{token}"

    def message_id(self, recipient: Addressee) -> str:
        """The Message-ID for ``recipient``."""
        subscriber, email = recipient.subscriber_id, recipient.email
        if subscriber is not None:
            who = str(subscriber)
        else:
            who = "t" + sha256(email.lower().encode("utf-8")).hexdigest()[:12]
        return f"<{self.send_id}.{who}.{self._msgid_tag}@{self._msgid_domain}>"

    def message(self, recipient: Addressee) -> OutgoingMessage:
        """The recipient's message: signs the token; the bytes are built on demand.

        ``recipient``: a ``Recipient`` or a ``claims.ClaimedRow``. Raises ValueError for
        an address that cannot be sent to.
        """
        return self.messages((recipient,))[0]

    def tokens(self, subscriber_ids: Sequence[int]) -> list[str]:
        """The unsubscribe tokens of these subscribers (for this send's list)."""
        sign = self._sign
        if sign is None:
            sign = self._sign = self.signer.many_for_list(self.list_id)
        return sign(subscriber_ids)

    def urls_and_ids(self) -> tuple[str, str, str]:
        """What an unsubscribe URL starts with (then the token), and a subscriber's
        Message-ID's head and tail (the subscriber id between them)."""
        return self._url_head, self._msgid_head, self._msgid_tail

    def messages(self, recipients: Iterable[Addressee], *, headers: bool = True
                 ) -> list[OutgoingMessage]:
        """``[self.message(r) for r in recipients]``, with the lookups hoisted (faster).

        Each name is made header-safe (``headersafe.clean_text``) and, with ``headers``,
        each recipient's header block is built here, so that a recipient whose message
        cannot be built raises now (ValueError or anything else), before a backend has
        sent any of the batch. ``headers=False`` (a backend that writes no MIME, such as
        SendGrid's API) leaves the header block to ``as_bytes()``.
        """
        recipients = recipients if isinstance(recipients, list | tuple) else list(recipients)
        ids = [r.subscriber_id or 0 for r in recipients]
        tokens, preference_urls = self.tokens_and_preferences(ids)
        head, tail, url_head = self._msgid_head, self._msgid_tail, self._url_head
        new = tuple.__new__  # an OutgoingMessage without a Python-level __new__ call
        out: list[OutgoingMessage] = []
        append = out.append
        pick = self.for_recipient if self.variants else None
        for recipient, token, prefs in zip(recipients, tokens, preference_urls, strict=True):
            template = self if pick is None else pick(recipient)
            subscriber, email, name = recipient.subscriber_id, recipient.email, recipient.name
            if not sendable_address(email):
                raise ValueError(f"not a deliverable address: {email!r}")
            if name is not None and not (type(name) is str and is_clean(name)):
                name = clean_name(name)
            if subscriber is not None:
                message_id = f"{head}{subscriber}{tail}"
            else:
                message_id = self.message_id(recipient)
            message = new(OutgoingMessage, (template, subscriber, email, name, token,
                                            url_head + token, message_id, prefs, None))
            if headers:
                message = new(OutgoingMessage, (*message[:-1], message.build_headers()))
            append(message)
        return out


class OutgoingMessage(NamedTuple):
    """One recipient's message. Cheap to create; ``as_bytes()`` builds the MIME bytes."""

    template: MessageTemplate
    subscriber_id: int | None
    email: str
    name: str | None  # cleaned for headers and bodies
    token: str
    unsubscribe_url: str
    message_id: str
    preferences_url: str = ""  # the preference centre ("" when the body has no link to it)
    head: bytes | None = None  # recipient_headers(), when built by messages()

    @property
    def send_id(self) -> int | str:
        return self.template.send_id

    @property
    def recipient(self) -> Recipient:
        return Recipient(self.subscriber_id, self.email, self.name)

    @property
    def list_unsubscribe(self) -> str:
        return f"<{self.unsubscribe_url}>"

    @property
    def subject(self) -> str:
        part = self.template.subject
        return part.fill(part.values(self.unsubscribe_url, self.name))

    @property
    def click_urls(self) -> list[str]:
        """This message's tracked URLs by link index (``MessageTemplate.click_urls``)."""
        return self.template.click_urls(self.subscriber_id)

    @property
    def html(self) -> str:
        part = self.template.html
        return part.fill(part.values(self.unsubscribe_url, self.name, self.preferences_url,
                                     self.click_urls))

    @property
    def text(self) -> str:
        part = self.template.text
        return part.fill(part.values(self.unsubscribe_url, self.name, self.preferences_url,
                                     self.click_urls))

    def recipient_headers(self) -> bytes:
        """To, Message-ID, List-Unsubscribe (and Subject when it has merge fields)."""
        return self.head if self.head is not None else self.build_headers()

    def build_headers(self) -> bytes:
        """The recipient's header block, every line folded to at most 78 octets (a
        Message-ID or link too long for 998 is a ValueError: such a message cannot go)."""
        message_id, url = self.message_id, self.unsubscribe_url
        data = f"Message-ID: {message_id}\r\nList-Unsubscribe: <{url}>\r\n"
        if not (data.isascii() and message_id.count(" ") == url.count(" ") == 0
                and (message_id + url).isprintable()
                and len(message_id) <= 984 and len(url) <= 976):  # lines of <= 998
            raise ValueError(f"Message-ID {message_id!r} or link {url!r} cannot go in a header")
        head = address_header("To", self.name, self.email) + data.encode("ascii")
        if self.template.subject.personal:
            head += text_header("Subject", self.subject)
        return head

    def as_bytes(self) -> bytes:
        """The complete RFC 5322 message (CRLF), ready for an .eml file."""
        return self._assemble(smtp=False)

    def as_smtp_data(self) -> bytes:
        """The message as SMTP DATA content: dot-stuffed and ending with "<CRLF>.<CRLF>".

        Built from pieces stuffed once per send, so no 50 KB regex runs per recipient.
        """
        return self._assemble(smtp=True)

    def _assemble(self, *, smtp: bool) -> bytes:
        t = self.template
        url, name, prefs = self.unsubscribe_url, self.name, self.preferences_url
        clicks = t.click_urls(self.subscriber_id)
        boundary = t.boundary.encode("ascii")
        head = self.recipient_headers()
        return b"".join((
            _stuff(head) if smtp else head,
            t.headers,
            b"\r\n--", boundary,
            b"\r\nContent-Type: text/plain; charset=\"utf-8\"\r\n"
            b"Content-Transfer-Encoding: quoted-printable\r\n\r\n",
            t.text.encode(t.text.values(url, name, prefs, clicks), smtp=smtp),
            b"\r\n--", boundary,
            b"\r\nContent-Type: text/html; charset=\"utf-8\"\r\n"
            b"Content-Transfer-Encoding: quoted-printable\r\n\r\n",
            t.html.encode(t.html.values(url, name, prefs, clicks), smtp=smtp),
            b"\r\n--", boundary, b"--\r\n",
            b".\r\n" if smtp else b"",
        ))

    def as_email(self) -> EmailMessage:
        """The message parsed back (for tests, previews and the outbox reader)."""
        message = BytesParser(policy=policy.default).parsebytes(self.as_bytes())
        assert isinstance(message, EmailMessage)
        return message


def sender_domain(from_address: str) -> str:
    address = parseaddr(from_address)[1]
    if "@" not in address:
        raise ConfigError(
            f"from_address {from_address!r} has no domain: write news@example.org or "
            "'The Briefing <news@example.org>'"
        )
    return address.rsplit("@", 1)[1].lower()


def _ascii_domain(domain: str) -> str:
    """The sender's domain as a Message-ID may carry it: ASCII (IDNA for a non-ASCII one)."""
    try:
        return domain.encode("idna").decode("ascii")
    except UnicodeError:
        return "newsletter.invalid"


def _constant_headers(from_address: str, reply_to: str | None, subject_raw: str,
                      subject: Part, when: datetime, list_id_header: str, boundary: str
                      ) -> bytes:
    """The header block every recipient of a template shares (folded, CRLF)."""
    items: list[tuple[str, str]] = [("From", from_address)]
    if reply_to:
        items.append(("Reply-To", reply_to))
    headers = _header_bytes(items)
    if not subject.personal:  # written as a personal subject is, by the same rule
        headers += text_header("Subject", subject_raw)
    return headers + _header_bytes([
        ("Date", format_datetime(when)),
        ("List-Id", list_id_header),
        ("List-Unsubscribe-Post", LIST_UNSUBSCRIBE_POST),
        ("MIME-Version", "1.0"),
    ]) + (
        f'Content-Type: multipart/alternative; boundary="{boundary}"\r\n\r\n'.encode("ascii")
    )


def prepare(
    rendered: Rendered,
    settings: Settings,
    *,
    send_id: int | str,
    list_id: int,
    list_name: str,
    test: bool = False,
    date: datetime | None = None,
) -> MessageTemplate:
    """Build the per-send template from a ``render(issue, settings, personal=True)`` output."""
    require(settings, "from_address", "base_url", "secret_key", purpose="sending")
    assert settings.from_address and settings.base_url and settings.secret_key
    if UNSUBSCRIBE_MARK not in rendered.html or UNSUBSCRIBE_MARK not in rendered.text:
        raise ValueError("render the issue with personal=True: the unsubscribe mark is missing")
    domain = sender_domain(settings.from_address)
    host = urlsplit(settings.base_url).hostname or domain
    subject_raw = (TEST_PREFIX if test else "") + (clean_text(rendered.subject, TEXT_MAX) or "")
    subject = Part.split(subject_raw, html=False, encode=False)
    when = date or datetime.now(UTC)
    list_id_header = f"{clean_text(list_name) or ''} <{_list_label(list_name)}.{host}>"
    boundary = "=_nl_" + token_hex(12)
    headers = _constant_headers(settings.from_address, settings.reply_to, subject_raw, subject,
                                when, list_id_header, boundary)
    tag = hmac.digest(settings.secret_key.encode(), b"newsletter/message-id", "sha256")
    tracked = isinstance(send_id, int) and "%%" in rendered.html
    return MessageTemplate(
        send_id=send_id,
        list_id=list_id,
        list_name=list_name,
        test=test,
        base_url=settings.base_url,
        subject=subject,
        text=Part.split(rendered.text, html=False),
        html=Part.split(rendered.html, html=True),
        headers=headers,
        list_id_header=list_id_header,
        from_address=settings.from_address,
        reply_to=settings.reply_to,
        date=when,
        boundary=boundary,
        signer=signer(settings),
        _sign_preferences=preferences_signer(settings),
        clicker=ClickSigner(settings) if tracked else None,
        _msgid_tag=tag.hex()[:10],
        _msgid_domain=_ascii_domain(domain),
    )
