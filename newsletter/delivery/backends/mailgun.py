"""The Mailgun backend: batch sending, up to 1,000 recipients per call.

The API key comes only from the environment (``MAILGUN_API_KEY``); the sending domain
from ``mailgun_domain``, the region from ``mailgun_region`` (``us``: api.mailgun.net,
``eu``: api.eu.mailgun.net; ``mailgun_api_host`` overrides both, for tests).

One ``POST /v3/{domain}/messages`` per batch (``multipart/form-data``, so nothing is
percent-encoded: the shared fields are encoded once per send): the HTML and text bodies go
once per call with ``%recipient.KEY%`` where the per-recipient parts were, one ``to`` per
recipient, and ``recipient-variables`` (JSON) holding each recipient's values: the
unsubscribe link, the names, the reader token (``r``: each tracked URL of the bodies is
written out around ``%recipient.r%``, one short value for all of them), the Message-ID and
the subscriber id, one key per distinct value (a URL that HTML escaping leaves alone is one
key for the text, the HTML and the header). Headers use them too,
so every recipient gets their own ``List-Unsubscribe: <%recipient.u%>`` and
``Message-Id``; ``v:send_id``, ``v:list_id`` and ``v:subscriber_id`` come back on
Mailgun's webhook events. With recipient-variables, each recipient sees only their own
``To``. A batch longer than 1,000, or naming an address twice, is split. The usual batch
goes by the row path (``send_rows``: the same call built straight from the claimed rows,
the values computed a batch at a time, ``rows.row_values``).

Answers: 200 -> sent (``provider_id`` is Mailgun's id). 400 -> the call is split in two
until the recipients at fault stand alone (they fail for good, with Mailgun's words);
413 -> split the same way. 429 -> wait (``Retry-After`` / ``X-RateLimit-Reset``) and try
again; 5xx -> back off; both bounded, then temporary. 401/403 (key) and 404 (domain) ->
``BackendUnavailable``. A timeout or a connection lost in flight -> uncertain.
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from dataclasses import dataclass
from html import escape
from json.encoder import encode_basestring_ascii  # type: ignore[attr-defined]
from typing import TYPE_CHECKING
from uuid import uuid4

from ...authoring.text import rewrap
from ...config import Settings
from ...errors import ConfigError
from ..journal import BatchLog
from ..parts import Part, Slot
from ..personalize import LIST_UNSUBSCRIBE_POST, MessageTemplate, OutgoingMessage
from ..tracking import click_url, open_url
from .base import NOT_HANDLED, BackendUnavailable, DeliveryResult, Status
from .httpapi import (
    LOST,
    UNREACHABLE,
    Answer,
    ApiBackend,
    HttpApi,
    display_to,
    each_call,
    halves,
)
from .rows import row_values
from .sendgrid import split_requests

if TYPE_CHECKING:
    from ..claims import ClaimedRow

MAX_RECIPIENTS = 1000
_q = encode_basestring_ascii  # a str -> a quoted, escaped JSON string (C speed)
HOSTS = {"us": "https://api.mailgun.net", "eu": "https://api.eu.mailgun.net"}


def _field(boundary: bytes, name: str, value: str) -> bytes:
    return b"".join((b"--", boundary, b'\r\nContent-Disposition: form-data; name="',
                     name.encode("ascii"), b'"\r\n\r\n', value.encode("utf-8"), b"\r\n"))


@dataclass(frozen=True)
class _Content:
    """A send's shared form and how each recipient's variables are written."""

    boundary: bytes
    form: bytes  # the call's shared fields, encoded (from, subject, bodies, headers)
    to_head: str  # what each ``to`` field starts with
    url_html: bool  # "uh": the unsubscribe URL HTML-escaped differs from "u"
    preferences: bool  # "p": a part links to the preference centre
    preferences_html: bool  # "ph": its URL HTML-escaped differs from "p"
    name_keys: tuple[tuple[str, bool], ...]  # ('"nK":', HTML-escaped?) per name slot key
    fallback_names: str  # the name keys' values for a recipient without a name
    rewrap_keys: tuple[tuple[str, str], ...]  # ('"wK":', text.rewrap block)
    click_keys: tuple[tuple[str, int, bool], ...]  # ('"cK":', link index (-1: pixel), escaped?)
    reader: bool = False  # "r": the reader token, inside each tracked URL of the bodies
    base_url: str = ""  # what tracked URLs start with (click_keys' values)

    @property
    def content_type(self) -> str:
        return f"multipart/form-data; boundary={self.boundary.decode('ascii')}"


class _Keys:
    """Names the ``%recipient.KEY%`` of each slot, one key per distinct value: a value
    that is the same in the text and the HTML part (a URL that HTML escaping leaves as it
    is) has one key, so each recipient's variables carry it once."""

    def __init__(self, template: MessageTemplate) -> None:
        plain = escape(template.base_url) == template.base_url  # tokens are base64url
        self.url_html = not plain
        self.preferences_html = escape(template.preferences_head) != template.preferences_head
        self.preferences = template.has_preferences
        self.names: dict[tuple[bool, str], str] = {}
        self.rewraps: dict[str, str] = {}
        self.clicks: dict[tuple[int, bool], str] = {}
        self.plain = plain
        self.base = template.base_url
        self.reader = False  # a tracked URL written around %recipient.r%

    def key(self, slot: Slot, html: bool) -> str:
        if slot.kind == "unsubscribe":
            return "uh" if html and self.url_html else "u"
        if slot.kind == "preferences":
            return "ph" if html and self.preferences_html else "p"
        if slot.kind == "rewrap":
            return self.rewraps.setdefault(slot.fallback, f"w{len(self.rewraps)}")
        if slot.kind in ("click", "open"):
            where = -1 if slot.kind == "open" else int(slot.fallback)
            escaped = slot.kind == "open" or (html and not self.plain)
            return self.clicks.setdefault((where, escaped), f"c{len(self.clicks)}")
        return self.names.setdefault((html, slot.fallback), f"n{len(self.names)}")

    def keyed(self, part: Part) -> str:
        """The part with ``%recipient.KEY%`` in each slot."""
        out = [part.literals[0]]
        for slot, literal in zip(part.slots, part.literals[1:], strict=True):
            if self.plain and slot.kind in ("click", "open"):  # one token for them all
                self.reader = True
                out += (click_url(self.base, "%recipient.r%", int(slot.fallback))
                        if slot.kind == "click" else open_url(self.base, "%recipient.r%"),
                        literal)
                continue
            out += (f"%recipient.{self.key(slot, part.html)}%", literal)
        return "".join(out)


def build_content(template: MessageTemplate) -> _Content:
    keys = _Keys(template)
    fields = [("from", template.from_address), ("subject", keys.keyed(template.subject)),
              ("text", keys.keyed(template.text)), ("html", keys.keyed(template.html)),
              ("h:List-Id", template.list_id_header),
              ("h:List-Unsubscribe", "<%recipient.u%>"),
              ("h:List-Unsubscribe-Post", LIST_UNSUBSCRIBE_POST),
              ("h:Message-Id", "%recipient.m%"), ("v:send_id", str(template.send_id)),
              ("v:list_id", str(template.list_id)), ("v:subscriber_id", "%recipient.id%")]
    if template.reply_to:
        fields.append(("h:Reply-To", template.reply_to))
    boundary = f"nl-{uuid4().hex}".encode("ascii")  # in no body: 122 random bits
    form = b"".join(_field(boundary, name, value) for name, value in fields)
    to_head = f'--{boundary.decode()}\r\nContent-Disposition: form-data; name="to"\r\n\r\n'
    return _Content(
        boundary, form, to_head, keys.url_html, keys.preferences, keys.preferences_html,
        name_keys=tuple((f'"{key}":', html) for (html, _), key in keys.names.items()),
        fallback_names="".join(f',"{key}":{_q(fallback)}'
                               for (_, fallback), key in keys.names.items()),
        rewrap_keys=tuple((f'"{key}":', block) for block, key in keys.rewraps.items()),
        click_keys=tuple((f'"{key}":', where, escaped)
                         for (where, escaped), key in keys.clicks.items()),
        reader=keys.reader, base_url=template.base_url)


def variables_json(content: _Content, email: str, url: str, message_id: str,
                   subscriber: int | None, name: str | None, preferences: str,
                   reader: str) -> str:
    """One recipient's entry in ``recipient-variables``: ``"email":{"u": link, "m":
    Message-ID, "id": subscriber, then each slot key's value}``: the only place it is
    written, for the general path and the row path alike. The values are what
    ``Part.values`` gives each slot (HTML-escaped in the HTML part, a name's fallback
    without a name); ``name`` as the message has it (cleaned); ``reader`` the reader
    token of the recipient's tracked links."""
    who = "" if subscriber is None else subscriber
    out = f'{_q(email)}:{{"u":{_q(url)},"m":{_q(message_id)},"id":"{who}"'
    if content.url_html:
        out += f',"uh":{_q(escape(url))}'
    if content.preferences:
        out += f',"p":{_q(preferences)}'
        if content.preferences_html:
            out += f',"ph":{_q(escape(preferences))}'
    if content.name_keys:
        if name:
            as_text, as_html = _q(name), _q(escape(name))
            out += "".join(f",{key}{as_html if html else as_text}"
                           for key, html in content.name_keys)
        else:
            out += content.fallback_names
    if content.rewrap_keys:
        out += "".join(f",{key}{_q(rewrap(block, name))}" for key, block in content.rewrap_keys)
    if content.reader:
        out += f',"r":"{reader}"'  # base64url: nothing to escape
    if content.click_keys:
        base = content.base_url
        urls = [(key, click_url(base, reader, where) if where >= 0 else open_url(base, reader),
                 escaped) for key, where, escaped in content.click_keys]
        out += "".join(f",{key}{_q(escape(link) if escaped else link)}"
                       for key, link, escaped in urls)
    return out + "}"


def _body(content: _Content, tos: list[str], entries: list[str]) -> bytes:
    """The call's form: the shared fields, a ``to`` per recipient, the variables."""
    head = content.to_head
    boundary = content.boundary.decode("ascii")
    tail = (f'--{boundary}\r\nContent-Disposition: form-data; name="recipient-variables"'
            f'\r\n\r\n{{{",".join(entries)}}}\r\n--{boundary}--\r\n')
    return content.form + "".join([f"{head}{to}\r\n" for to in tos] + [tail]).encode("utf-8")


def request_body(content: _Content, messages: Sequence[OutgoingMessage]) -> bytes:
    """The call's form for these messages (the general path)."""
    one = variables_json
    tracked = content.reader or bool(content.click_keys)
    readers = messages[0].template.readers(
        [m.subscriber_id for m in messages]) if tracked and messages else [""] * len(messages)
    return _body(content, [display_to(m.name, m.email) for m in messages],
                 [one(content, m.email, m.unsubscribe_url, m.message_id, m.subscriber_id,
                      m.name, m.preferences_url, reader)
                  for m, reader in zip(messages, readers, strict=True)])


def rows_body(content: _Content, template: MessageTemplate, rows: Sequence[ClaimedRow]
              ) -> bytes | None:
    """``request_body(content, template.messages(rows))`` for the usual batch, straight
    from the ledger's rows: the same bytes (``variables_json`` writes both), no message
    object per recipient; None when the general path must take it (``rows.row_values``)."""
    values = row_values(template, rows, limit=MAX_RECIPIENTS, unique=True,
                        readers=content.reader or bool(content.click_keys))
    if values is None:
        return None
    one = variables_json
    return _body(content, [display_to(row.name, row.email) for row in rows], [
        one(content, row.email, url, message_id, row.subscriber_id, row.name, prefs, reader)
        for row, url, message_id, prefs, reader in zip(rows, *values, strict=True)])


class MailgunBackend(ApiBackend):
    name = "mailgun"
    batch_size = MAX_RECIPIENTS
    writes_mime = False  # Mailgun builds the MIME from the form
    logs_progress = True

    def __init__(self, api_key: str, domain: str, host: str = HOSTS["us"], *,
                 workers: int | None = None, **http) -> None:
        super().__init__()
        self.domain = domain
        self.path = f"/v3/{domain}/messages"
        self.concurrency = workers or 4
        self.prepares_ahead = max(1, self.concurrency // 2)
        self.api = HttpApi(host, {"Accept": "application/json"}, label="Mailgun",
                           auth=("api", api_key), pool=self.concurrency, **http)

    @classmethod
    def from_settings(cls, settings: Settings, *, workers: int | None = None
                      ) -> MailgunBackend:
        key = os.environ.get("MAILGUN_API_KEY", "").strip()
        if not key:
            raise ConfigError(
                "MAILGUN_API_KEY is not set: export MAILGUN_API_KEY=... (a sending or "
                "account API key), or choose another backend with --backend")
        if not settings.mailgun_domain:
            raise ConfigError(
                f"{settings.config_file}: 'mailgun_domain' is not set, and the mailgun "
                "backend needs it; add mailgun_domain = \"mg.example.org\" (your sending "
                "domain at Mailgun) to newsletter.toml or set NEWSLETTER_MAILGUN_DOMAIN")
        host = settings.mailgun_api_host or HOSTS[settings.mailgun_region]
        return cls(key, settings.mailgun_domain, host, workers=workers)

    def build_content(self, template: MessageTemplate) -> _Content:
        return build_content(template)

    def send_batch(self, messages: Sequence[OutgoingMessage], progress: BatchLog | None = None
                   ) -> list[DeliveryResult]:
        position = {id(m): i for i, m in enumerate(messages)}
        return each_call(len(messages), (
            ([position[id(m)] for m in group], group)
            for group in split_requests(messages, MAX_RECIPIENTS)),
            lambda group, indices: self._call(group, progress, indices))

    def send_rows(self, template: MessageTemplate, rows: Sequence[ClaimedRow],
                  progress: BatchLog | None = None) -> list[DeliveryResult] | None:
        """``send_batch(template.messages(rows))`` for a usual batch, built from the rows.

        The call is the same, byte for byte (``rows_body``); only no message object is
        made per recipient. Returns ``NOT_HANDLED``, having sent nothing, for anything
        unusual (a test send, a name or address that needs cleaning or refusing, an
        address twice) or a call refused whole (400, 413): the runner then takes the
        general path, which finds the recipients at fault.
        """
        content = self.content_for(template)
        body = rows_body(content, template, rows)
        if body is None:
            return NOT_HANDLED
        answer = self._post(content, body, len(rows), progress, range(len(rows)))
        return answer if isinstance(answer, list) else NOT_HANDLED

    def _call(self, group: list[OutgoingMessage], progress: BatchLog | None,
              indices: Sequence[int]) -> list[DeliveryResult]:
        content = self.content_for(group[0].template)
        answer = self._post(content, request_body(content, group), len(group), progress,
                            indices)
        if isinstance(answer, list):
            return answer
        if len(group) == 1:
            return [DeliveryResult(Status.PERMANENT, f"{answer.status} {answer.text}")]
        (first, at1), (second, at2) = halves(group, indices)
        return self._call(first, progress, at1) + self._call(second, progress, at2)

    def _post(self, content: _Content, body: bytes, count: int, progress: BatchLog | None,
              indices: Sequence[int]) -> list[DeliveryResult] | Answer:
        """One call's results; its ``Answer`` when refused for some of its recipients
        (400, 413): split it to find them."""
        with self.request_slot():  # ``concurrency`` calls out at once
            if progress is not None:
                progress.handing_group(indices)
            status, text, raw = self.api.post(self.path, body, content.content_type)
            if status == LOST:
                return [DeliveryResult(Status.UNCERTAIN, text)] * count
            if progress is not None:
                progress.answered_group(indices, status == 200)
        if status == 200:
            try:
                provider_id = str(json.loads(raw).get("id") or "") or None
            except (ValueError, AttributeError):
                provider_id = None
            return [DeliveryResult(Status.SENT, "", provider_id)] * count
        if status in (401, 403, 404) or status == UNREACHABLE:
            raise BackendUnavailable(self._fatal(status, text))
        if status in (400, 413):
            return Answer(status, text, raw)
        reason = f"{status} {text} (after {self.api.max_attempts} attempts)"
        return [DeliveryResult(Status.TEMPORARY, reason)] * count

    def _fatal(self, status: int, text: str) -> str:
        if status == UNREACHABLE:
            return text + "; check mailgun_region / mailgun_api_host and the network"
        if status == 404:
            return (f"Mailgun answered 404 ({text or 'no details'}): check mailgun_domain "
                    f"({self.domain}) and mailgun_region ({self.api.base_url})")
        return (f"Mailgun answered {status} ({text or 'no details'}): check MAILGUN_API_KEY "
                f"and that it may send for {self.domain} in this region")
