"""The Mailgun backend: batch sending, up to 1,000 recipients per call.

The API key comes only from the environment (``MAILGUN_API_KEY``); the sending domain
from ``mailgun_domain``, the region from ``mailgun_region`` (``us``: api.mailgun.net,
``eu``: api.eu.mailgun.net; ``mailgun_api_host`` overrides both, for tests).

One ``POST /v3/{domain}/messages`` per batch (``multipart/form-data``, so nothing is
percent-encoded: the shared fields are encoded once per send): the HTML and text bodies go
once per call with ``%recipient.KEY%`` where the per-recipient parts were, one ``to`` per
recipient, and ``recipient-variables`` (JSON) holding each recipient's values: the
unsubscribe link, the names, the Message-ID and the subscriber id. Headers use them too,
so every recipient gets their own ``List-Unsubscribe: <%recipient.u%>`` and
``Message-Id``; ``v:send_id``, ``v:list_id`` and ``v:subscriber_id`` come back on
Mailgun's webhook events. With recipient-variables, each recipient sees only their own
``To``. A batch longer than 1,000, or naming an address twice, is split.

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
from email.utils import formataddr
from json.encoder import encode_basestring_ascii  # type: ignore[attr-defined]
from uuid import uuid4

from ...config import Settings
from ...errors import ConfigError
from ..journal import BatchLog
from ..personalize import LIST_UNSUBSCRIBE_POST, MessageTemplate, OutgoingMessage, Part
from .base import BackendBase, BackendUnavailable, DeliveryResult, Status
from .httpapi import LOST, UNREACHABLE, HttpApi, halves
from .sendgrid import split_requests

MAX_RECIPIENTS = 1000
_q = encode_basestring_ascii  # a str -> a quoted, escaped JSON string (C speed)
HOSTS = {"us": "https://api.mailgun.net", "eu": "https://api.eu.mailgun.net"}

def _field(boundary: bytes, name: str, value: str) -> bytes:
    return b"".join((b"--", boundary, b'\r\nContent-Disposition: form-data; name="',
                     name.encode("ascii"), b'"\r\n\r\n', value.encode("utf-8"), b"\r\n"))


def _keyed(part: Part, prefix: str) -> str:
    """The part with ``%recipient.{prefix}{i}%`` in its slot ``i``."""
    out = [part.literals[0]]
    for i, literal in enumerate(part.literals[1:]):
        out += (f"%recipient.{prefix}{i}%", literal)
    return "".join(out)


@dataclass(frozen=True)
class _Content:
    boundary: bytes
    form: bytes  # the call's shared fields, encoded (from, subject, bodies, headers)
    parts: tuple[tuple[str, Part], ...]  # (key prefix, part) of each part with slots
    to_head: bytes  # what each ``to`` field starts with

    @property
    def content_type(self) -> str:
        return f"multipart/form-data; boundary={self.boundary.decode('ascii')}"


def build_content(template: MessageTemplate) -> _Content:
    text = _keyed(template.text, "t")
    html = _keyed(template.html, "h")
    subject = _keyed(template.subject, "s")
    fields = [("from", template.from_address), ("subject", subject), ("text", text),
              ("html", html), ("h:List-Id", template.list_id_header),
              ("h:List-Unsubscribe", "<%recipient.u%>"),
              ("h:List-Unsubscribe-Post", LIST_UNSUBSCRIBE_POST),
              ("h:Message-Id", "%recipient.m%"), ("v:send_id", str(template.send_id)),
              ("v:list_id", str(template.list_id)), ("v:subscriber_id", "%recipient.id%")]
    if template.reply_to:
        fields.append(("h:Reply-To", template.reply_to))
    boundary = f"nl-{uuid4().hex}".encode("ascii")  # in no body: 122 random bits
    form = b"".join(_field(boundary, name, value) for name, value in fields)
    to_head = b"--" + boundary + b'\r\nContent-Disposition: form-data; name="to"\r\n\r\n'
    parts = tuple((prefix, part) for prefix, part in (
        ("t", template.text), ("h", template.html), ("s", template.subject)) if part.slots)
    return _Content(boundary, form, parts, to_head)


def variables_json(content: _Content, m: OutgoingMessage) -> str:
    """One recipient's entry in ``recipient-variables``: ``"email":{"u": link, "m":
    Message-ID, "id": subscriber, then each slot's value}``, the values from
    ``Part.values`` (the one rule for what a recipient's merge fields become)."""
    url, name, prefs = m.unsubscribe_url, m.name, m.preferences_url
    who = "" if m.subscriber_id is None else m.subscriber_id
    out = [f'{_q(m.email)}:{{"u":{_q(url)},"m":{_q(m.message_id)},"id":"{who}"']
    clicks = m.click_urls  # the recipient's tracked links, [] when the send tracks none
    for prefix, part in content.parts:
        out += [f',"{prefix}{i}":{_q(value)}'
                for i, value in enumerate(part.values(url, name, prefs, clicks))]
    out.append("}")
    return "".join(out)


def request_body(content: _Content, messages: Sequence[OutgoingMessage]) -> bytes:
    """The call's form: the shared fields, a ``to`` per recipient, the variables."""
    head = content.to_head
    to = [head + _to(m.name, m.email).encode("utf-8") + b"\r\n" for m in messages]
    rv = "{" + ",".join([variables_json(content, m) for m in messages]) + "}"
    return b"".join((content.form, *to, _field(content.boundary, "recipient-variables", rv),
                     b"--", content.boundary, b"--\r\n"))


def _to(name: str | None, email: str) -> str:
    if not name:
        return email
    if name.replace(" ", "").isalnum() and name.isascii():  # nothing to quote or encode
        return f"{name} <{email}>"
    return formataddr((name, email))


class MailgunBackend(BackendBase):
    name = "mailgun"
    batch_size = MAX_RECIPIENTS
    writes_mime = False  # Mailgun builds the MIME from the form
    logs_progress = True

    def __init__(self, api_key: str, domain: str, host: str = HOSTS["us"], *,
                 workers: int | None = None, **http) -> None:
        self.domain = domain
        self.path = f"/v3/{domain}/messages"
        self.concurrency = workers or 4
        self.api = HttpApi(host, {"Accept": "application/json"}, label="Mailgun",
                           auth=("api", api_key), pool=self.concurrency, **http)
        self._contents: dict[int, tuple[MessageTemplate, _Content]] = {}

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

    @property
    def requests_made(self) -> int:
        return self.api.requests_made

    def close(self) -> None:
        self.api.close()
        self._contents.clear()

    def content_for(self, template: MessageTemplate) -> _Content:
        entry = self._contents.get(id(template))
        if entry is None or entry[0] is not template:
            entry = (template, build_content(template))
            self._contents[id(template)] = entry
        return entry[1]

    def send_batch(self, messages: Sequence[OutgoingMessage], progress: BatchLog | None = None
                   ) -> list[DeliveryResult]:
        position = {id(m): i for i, m in enumerate(messages)}
        by_message: dict[int, DeliveryResult] = {}
        accepted = False
        for group in split_requests(messages, MAX_RECIPIENTS):
            indices = [position[id(m)] for m in group]
            try:
                results = self._call(group, progress, indices)
            except BackendUnavailable as exc:
                if not accepted:
                    raise  # nothing of the batch went out: it stays pending
                results = [DeliveryResult(Status.TEMPORARY, str(exc))] * len(group)
            accepted = accepted or any(r.ok for r in results)
            by_message.update(zip(map(id, group), results, strict=True))
        return [by_message[id(m)] for m in messages]

    def _call(self, group: list[OutgoingMessage], progress: BatchLog | None,
              indices: Sequence[int]) -> list[DeliveryResult]:
        content = self.content_for(group[0].template)
        body = request_body(content, group)
        if progress is not None:
            progress.handing_group(indices)
        status, text, raw = self.api.post(self.path, body, content.content_type)
        if status == LOST:
            return [DeliveryResult(Status.UNCERTAIN, text)] * len(group)
        if progress is not None:
            progress.answered_group(indices, status == 200)
        if status == 200:
            try:
                provider_id = str(json.loads(raw).get("id") or "") or None
            except (ValueError, AttributeError):
                provider_id = None
            return [DeliveryResult(Status.SENT, "", provider_id)] * len(group)
        if status in (401, 403, 404) or status == UNREACHABLE:
            raise BackendUnavailable(self._fatal(status, text))
        if status in (400, 413):
            if len(group) == 1:
                return [DeliveryResult(Status.PERMANENT, f"{status} {text}")]
            (first, at1), (second, at2) = halves(group, indices)
            return self._call(first, progress, at1) + self._call(second, progress, at2)
        reason = f"{status} {text} (after {self.api.max_attempts} attempts)"
        return [DeliveryResult(Status.TEMPORARY, reason)] * len(group)

    def _fatal(self, status: int, text: str) -> str:
        if status == UNREACHABLE:
            return text + "; check mailgun_region / mailgun_api_host and the network"
        if status == 404:
            return (f"Mailgun answered 404 ({text or 'no details'}): check mailgun_domain "
                    f"({self.domain}) and mailgun_region ({self.api.base_url})")
        return (f"Mailgun answered {status} ({text or 'no details'}): check MAILGUN_API_KEY "
                f"and that it may send for {self.domain} in this region")
