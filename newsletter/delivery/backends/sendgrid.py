"""The SendGrid backend: v3 Mail Send, up to 1,000 personalizations per request.

The API key comes only from the environment (``SENDGRID_API_KEY``); the host from
``sendgrid_api_host`` (tests and benchmarks point it at a local stand-in).

One request per batch: the HTML and text bodies go once per request with substitution
keys where the per-recipient parts were (``%%unsubscribe_url%%``, ``%%nl_name_N%%``, the
reader token ``%%nl_r%%`` inside every tracked URL); each personalization carries its recipient, its ``substitutions``, its own headers
(``List-Unsubscribe``, ``Message-ID``) and ``custom_args`` (``subscriber_id``; the message
level has ``send_id`` and ``list_id``), which SendGrid returns on every webhook event.
A batch longer than 1,000, or naming an address twice, is split into several requests.

Answers: 202 -> sent (``provider_id`` is ``X-Message-Id``). 429 -> wait until
``X-RateLimit-Reset`` and try again. 5xx or a refused connection -> exponential backoff
with full jitter. Both are bounded (``max_attempts``), then a temporary failure. 400 ->
permanent failure of that request's recipients with SendGrid's error body. 413 -> the
request is split in two, down to single messages. 401/403/404 -> ``BackendUnavailable``
(a bad key or host; the send stops). A timeout or a connection lost while a request was
in flight -> its recipients are ``uncertain`` (SendGrid may have accepted it). With a
progress log, each request is marked before it is posted and when it is answered, so a
process killed mid-batch leaves only the request in flight uncertain.
"""

from __future__ import annotations

import json
import os
import random
import socket
import threading
import time
import urllib.error
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from email.utils import parseaddr
from html import escape
from json.encoder import encode_basestring_ascii  # type: ignore[attr-defined]
from typing import TYPE_CHECKING, Any

from python_http_client import exceptions as http_errors

from ...authoring.text import rewrap
from ...config import Settings
from ...errors import ConfigError
from ..journal import BatchLog
from ..parts import Part
from ..personalize import (
    LIST_UNSUBSCRIBE_POST,
    MessageTemplate,
    OutgoingMessage,
    Recipient,
)
from ..tracking import click_url, open_url
from .base import NOT_HANDLED, BackendBase, BackendUnavailable, DeliveryResult, Status
from .rows import row_values

if TYPE_CHECKING:
    from ..claims import ClaimedRow

MAX_PER_REQUEST = 1000
UNSUB_KEY = "%%unsubscribe_url%%"
REWRAP_MAX = 2000  # characters of a name-bearing text block sent as one substitution
PREFS_KEY, PREFS_HTML_KEY = "%%preferences_url%%", "%%preferences_url_h%%"
READER_KEY = "%%nl_r%%"  # the recipient's reader token, in every tracked URL
_FATAL = {401, 403, 404, 405}
JSON_HEADERS = {"Content-Type": "application/json; charset=utf-8"}
_q = encode_basestring_ascii  # a Python str -> a quoted, escaped JSON string (C speed)


@dataclass(frozen=True)
class _Content:
    """A send's request skeleton: bodies with substitution keys, shared fields."""

    base: dict[str, Any]  # from, reply_to, subject?, content, headers, custom_args
    html_keys: list[str]  # substitution key per slot of the HTML part
    text_keys: list[str]
    unsub_html_key: str | None  # a separate key when the URL changes under HTML escaping
    personal_subject: bool
    json_prefix: str  # the request as JSON up to the personalizations' opening bracket
    name_keys: tuple[tuple[str, bool, str], ...]  # (JSON key, in HTML?, JSON fallback)
    fallback_names: str  # the name keys' substitutions for a recipient without a name
    url_plain: bool  # base_url needs no JSON escaping (so neither do unsubscribe URLs)
    msgid_plain: bool  # the send id and sender domain need none (so neither do Message-IDs)
    rewrap_keys: tuple[tuple[str, str], ...] = ()  # (JSON key, text.rewrap block)
    preferences: bool = False  # a body links to the preference centre (PREFS_KEY/_H)
    preferences_plain: bool = False  # its URLs need neither JSON nor HTML escaping
    click_keys: tuple[tuple[str, int, bool], ...] = ()  # (JSON key, link index (-1: the
    # pixel), HTML-escaped?)
    clicks_plain: bool = False  # tracked URLs need neither JSON nor HTML escaping: the
    # bodies then carry READER_KEY in each of them, and click_keys is empty
    base_url: str = ""  # what tracked URLs start with (when they need escaping)


class Body:
    """A JSON request body, serialized already, for ``python_http_client``.

    With a Content-Type other than exactly ``application/json`` the client sends
    ``request_body.encode("utf-8")`` as it is. It also formats that data into a debug
    message on every request, logging on or off (client.py:
    ``'PAYLOAD: {data}'.format(data=request.data)``): for a 400 KB request of 1,000
    personalizations, a 400 KB bytes repr costing 1.2 ms, as much as building the
    request. A memoryview of the bytes is sent the same way (urllib and http.client take
    any bytes-like body) and formats as ``<memory at 0x...>``.
    """

    __slots__ = ("data",)

    def __init__(self, text: str) -> None:
        self.data = text.encode("utf-8")

    def encode(self, encoding: str = "utf-8") -> memoryview:
        return memoryview(self.data)


def _address(value: str) -> dict[str, str]:
    name, email = parseaddr(value)
    return {"email": email, "name": name} if name else {"email": email}


def _keyed(part: Part, prefix: str, keys: dict[tuple[str, str], str], base: str | None
           ) -> tuple[str, list[str]]:
    """The part with a substitution key in each slot, and each slot's key; ``base``: the
    tracked URLs are written out around READER_KEY (their key: READER_KEY too)."""
    out = [part.literals[0]]
    slot_keys: list[str] = []
    for slot, literal in zip(part.slots, part.literals[1:], strict=True):
        if base is not None and slot.kind in ("click", "open"):
            slot_keys.append(READER_KEY)
            out.append(click_url(base, READER_KEY, int(slot.fallback)) if slot.kind == "click"
                       else open_url(base, READER_KEY))
            out.append(literal)
            continue
        if slot.kind == "unsubscribe":
            key = UNSUB_KEY if prefix == "t" else "%%unsubscribe_url_h%%"
        elif slot.kind == "rewrap":
            key = keys.setdefault(("w", slot.fallback), f"%%nl_wrap_{len(keys)}%%")
        elif slot.kind == "preferences":
            key = PREFS_KEY if prefix == "t" else PREFS_HTML_KEY
        elif slot.kind in ("click", "open"):  # tracked links: base64url tokens need no
            key = f"%%nl_c{prefix}{slot.fallback or 'o'}%%"  # each URL (base_url needs
            # escaping: HTML-escaped in the HTML part, as it is in the text)
        else:
            key = keys.setdefault((prefix, slot.fallback), f"%%nl_name_{prefix}{len(keys)}%%")
        slot_keys.append(key)
        out.append(key)
        out.append(literal)
    return "".join(out), slot_keys


def _plain(value: str) -> bool:
    """Whether ``value`` needs neither JSON nor HTML escaping."""
    return _q(value) == f'"{value}"' and escape(value) == value


def build_content(template: MessageTemplate) -> _Content:
    keys: dict[tuple[str, str], str] = {}
    # a plain-text block wrapped per recipient (text.rewrap) is one substitution; one too
    # long for SendGrid's 10,000 bytes of substitutions is wrapped with the name unfilled
    text_part = template.text.names_only(longer_than=REWRAP_MAX)
    # base_url plain, the rest of a tracked URL is "/c/" or "/o/", a base64url token, "."
    # and digits: then one substitution, the reader token, fills all of a recipient's
    clicks_plain = _plain(template.base_url)
    reader_base = template.base_url if clicks_plain else None
    text, text_keys = _keyed(text_part, "t", keys, reader_base)
    html, html_keys = _keyed(template.html, "h", keys, reader_base)
    shared_url = escape(template.base_url) == template.base_url
    if shared_url:
        html = html.replace("%%unsubscribe_url_h%%", UNSUB_KEY)
        html_keys = [UNSUB_KEY if k == "%%unsubscribe_url_h%%" else k for k in html_keys]
    base: dict[str, Any] = {
        "from": _address(template.from_address),
        "content": [{"type": "text/plain", "value": text}, {"type": "text/html", "value": html}],
        "headers": {
            "List-Id": template.list_id_header,
            "List-Unsubscribe-Post": LIST_UNSUBSCRIBE_POST,
        },
        "custom_args": {"send_id": str(template.send_id), "list_id": str(template.list_id)},
    }
    if template.reply_to:
        base["reply_to"] = _address(template.reply_to)
    if not template.subject.personal:
        base["subject"] = template.subject_text
    name_keys: dict[str, tuple[str, bool, str]] = {}
    rewrap_keys = {key: slot.fallback for slot, key in zip(text_part.slots, text_keys,
                                                            strict=True) if slot.kind == "rewrap"}
    for part, part_keys in ((text_part, text_keys), (template.html, html_keys)):
        for slot, key in zip(part.slots, part_keys, strict=True):
            if slot.kind == "name":
                name_keys[key] = (_q(key), part.html, _q(slot.fallback))
    prefix = json.dumps(base, ensure_ascii=True, separators=(",", ":"))
    click_keys = {} if clicks_plain else {
        (_q(f"%%nl_c{prefix}{s.fallback or 'o'}%%"), int(s.fallback or -1), prefix == "h")
        for prefix, part in (("t", text_part), ("h", template.html)) for s in part.slots
        if s.kind in ("click", "open")}
    return _Content(
        base=base,
        html_keys=html_keys,
        text_keys=text_keys,
        unsub_html_key=None if shared_url else "%%unsubscribe_url_h%%",
        personal_subject=template.subject.personal,
        json_prefix=prefix[:-1] + ',"personalizations":[',
        name_keys=tuple(name_keys.values()),
        rewrap_keys=tuple((_q(key), block) for key, block in rewrap_keys.items()),
        fallback_names="".join(f",{key}:{fallback}" for key, _, fallback in name_keys.values()),
        url_plain=_q(template.base_url) == f'"{template.base_url}"',
        preferences=template.has_preferences,
        click_keys=tuple(sorted(click_keys)),
        clicks_plain=clicks_plain and (template.links > 0 or template.has_open),
        base_url=template.base_url,
        preferences_plain=_plain(template.preferences_head),
        msgid_plain=_q(template.message_id(Recipient(1, "x@x"))) == (
            f'"{template.message_id(Recipient(1, "x@x"))}"'
        ),
    )


def personalization_json(
    content: _Content, subscriber: int | None, email: str, name: str | None, url: str,
    message_id: str, subject: str | None = None, preferences: str = "", reader: str = "",
) -> str:
    """One recipient's personalization, compact JSON: the only place it is written, for
    the general path (``payload_json``) and the row path (``rows_json``) alike.

    ``name`` as the message has it (cleaned), ``url`` the unsubscribe URL, ``subject``
    the personal subject (None when the subject is shared), ``reader`` the reader token
    of the recipient's tracked links. ``to`` names the recipient
    when it has a name; ``substitutions`` fills the bodies' keys (the name HTML-escaped in
    the HTML part, the fallback without a name); ``custom_args`` carries the subscriber
    id, which SendGrid returns on each webhook event (none for a test address).
    """
    address = _q(email)
    if name:
        as_text = _q(name)
        to = f'{{"email":{address},"name":{as_text}}}'
        if content.name_keys:
            as_html = _q(escape(name))
            names = "".join(
                f",{key}:{as_html if html else as_text}" for key, html, _ in content.name_keys
            )
        else:
            names = ""
    else:
        to, names = f'{{"email":{address}}}', content.fallback_names
    if content.rewrap_keys:
        names += "".join(f",{key}:{_q(rewrap(block, name))}" for key, block in content.rewrap_keys)
    link = url if content.url_plain else _q(url)[1:-1]
    subs = f'"{UNSUB_KEY}":"{link}"'
    if content.unsub_html_key:
        subs += f',"{content.unsub_html_key}":{_q(escape(url))}'
    if content.preferences:  # the preference centre's URL, as text and HTML-escaped
        if content.preferences_plain:
            value = f'"{preferences}"'  # base_url needs no escaping; the token none either
            subs += f',"{PREFS_KEY}":{value},"{PREFS_HTML_KEY}":{value}'
        else:
            subs += (f',"{PREFS_KEY}":{_q(preferences)},'
                     f'"{PREFS_HTML_KEY}":{_q(escape(preferences))}')
    if content.clicks_plain:  # the recipient's tracked links: one token for them all
        subs += f',"{READER_KEY}":"{reader}"'
    elif content.click_keys:  # each URL escaped (base_url needs it)
        base = content.base_url
        urls = [(key, click_url(base, reader, idx) if idx >= 0 else open_url(base, reader),
                 html) for key, idx, html in content.click_keys]
        subs += "".join(f",{key}:{_q(escape(link) if html else link)}" for key, link, html in urls)
    msgid = f'"{message_id}"' if content.msgid_plain else _q(message_id)
    item = (f'{{"to":[{to}],"headers":{{"List-Unsubscribe":"<{link}>","Message-ID":{msgid}}},'
            f'"substitutions":{{{subs}{names}}}')
    if subject is not None:
        item += f',"subject":{_q(subject)}'
    if subscriber is None:
        return item + "}"
    return f'{item},"custom_args":{{"subscriber_id":"{subscriber}"}}}}'


def rows_json(content: _Content, template: MessageTemplate, rows: Sequence[ClaimedRow]
              ) -> str | None:
    """``payload_json(template.messages(rows))`` for the usual batch, straight from the
    ledger's rows: the same bytes (``personalization_json`` writes both), no message
    object per recipient.

    None when the batch needs the general path: a test send (no subscriber ids), a name
    or an address ``messages`` would clean or refuse, an address twice, a personal
    subject or URLs and Message-IDs that need JSON escaping.
    """
    if (content.unsub_html_key or content.personal_subject or not content.url_plain
            or not content.msgid_plain):
        return None
    values = row_values(template, rows, limit=MAX_PER_REQUEST, unique=True,
                        readers=content.clicks_plain or bool(content.click_keys))
    if values is None:
        return None
    one = personalization_json
    out = [one(content, row.subscriber_id, row.email, row.name, url, message_id,
               preferences=prefs, reader=reader)
           for row, url, message_id, prefs, reader in zip(rows, *values, strict=True)]
    return content.json_prefix + ",".join(out) + "]}"


def split_requests(messages: Sequence[OutgoingMessage], limit: int = MAX_PER_REQUEST
                   ) -> list[list[OutgoingMessage]]:
    """Groups of at most ``limit`` messages of one template, each address once per group
    (Mailgun's batches share the rule)."""
    if len(messages) <= limit:  # the usual case: one batch, one request
        first = messages[0].template if messages else None
        if all(m.template is first for m in messages) and len(
            {m.email.lower() for m in messages}
        ) == len(messages):
            return [list(messages)] if messages else []
    groups: list[list[OutgoingMessage]] = []
    open_groups: dict[int, list[tuple[list[OutgoingMessage], set[str]]]] = {}
    for message in messages:
        key = message.email.lower()
        candidates = open_groups.setdefault(id(message.template), [])
        for group, seen in candidates:
            if key not in seen and len(group) < limit:
                group.append(message)
                seen.add(key)
                break
        else:
            group = [message]
            candidates.append((group, {key}))
            groups.append(group)
    return groups


def _text(body: Any) -> str:
    if isinstance(body, bytes):
        body = body.decode("utf-8", "replace")
    return " ".join(str(body or "").split())[:2000]


def _reset_wait(headers: Any, now: float) -> float | None:
    try:
        reset = float(headers.get("X-RateLimit-Reset"))
    except (TypeError, ValueError, AttributeError):
        return None
    return max(0.0, reset - now)


class SendGridBackend(BackendBase):
    name = "sendgrid"
    batch_size = MAX_PER_REQUEST
    writes_mime = False  # the API builds the message from the request's JSON
    logs_progress = True

    def __init__(
        self,
        api_key: str,
        host: str = "https://api.sendgrid.com",
        *,
        workers: int | None = None,
        timeout: float = 60.0,
        max_attempts: int = 6,
        backoff: float = 1.0,
        max_wait: float = 120.0,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.api_key = api_key
        self.host = host.rstrip("/")
        self.concurrency = workers or 4
        self.prepares_ahead = max(1, self.concurrency // 2)
        self.timeout = timeout
        self.max_attempts = max_attempts
        self.backoff = backoff
        self.max_wait = max_wait
        self.sleep = sleep
        self._local = threading.local()
        self._lock = threading.Lock()
        self._contents: dict[int, tuple[MessageTemplate, _Content]] = {}
        self.requests_made = 0
        self.waits: list[tuple[int, float]] = []  # (status, seconds) of each back-off

    @classmethod
    def from_settings(cls, settings: Settings, *, workers: int | None = None) -> SendGridBackend:
        key = os.environ.get("SENDGRID_API_KEY", "").strip()
        if not key:
            raise ConfigError(
                "SENDGRID_API_KEY is not set: export SENDGRID_API_KEY=SG.... (an API key with "
                "Mail Send permission), or choose another backend with --backend"
            )
        return cls(key, settings.sendgrid_api_host, workers=workers)

    def _client(self):
        client = getattr(self._local, "client", None)
        if client is None:
            from sendgrid import SendGridAPIClient

            client = SendGridAPIClient(api_key=self.api_key, host=self.host)
            client.client.timeout = self.timeout
            self._local.client = client
        return client

    def open(self) -> None:
        self._client()

    def close(self) -> None:
        with self._lock:
            self._contents.clear()

    def content_for(self, template: MessageTemplate) -> _Content:
        with self._lock:
            entry = self._contents.get(id(template))
            if entry is None or entry[0] is not template:
                entry = (template, build_content(template))
                self._contents[id(template)] = entry
            return entry[1]

    def payload(self, messages: Sequence[OutgoingMessage]) -> dict[str, Any]:
        """The request body for one group, as a dict (for inspection and tests)."""
        result: dict[str, Any] = json.loads(self.payload_json(messages))
        return result

    def payload_json(self, messages: Sequence[OutgoingMessage]) -> str:
        """The request body for one group: the shared part once per send, then each
        recipient's ``personalization_json``."""
        content = self.content_for(messages[0].template)
        one = personalization_json
        tracked = content.clicks_plain or bool(content.click_keys)
        readers = messages[0].template.readers(
            [m.subscriber_id for m in messages]) if tracked else [""] * len(messages)
        if content.personal_subject:
            items = [one(content, m.subscriber_id, m.email, m.name, m.unsubscribe_url,
                         m.message_id, m.subject, m.preferences_url, reader)
                     for m, reader in zip(messages, readers, strict=True)]
        else:
            items = [one(content, m.subscriber_id, m.email, m.name, m.unsubscribe_url,
                         m.message_id, preferences=m.preferences_url, reader=reader)
                     for m, reader in zip(messages, readers, strict=True)]
        return content.json_prefix + ",".join(items) + "]}"

    # -- one request, with its retries ----------------------------------------------------

    def _post(self, body: str) -> tuple[int, str, str | None]:
        """(status, error text, X-Message-Id): the final answer after bounded retries."""
        client = self._client()
        attempt = 0
        while True:
            attempt += 1
            with self._lock:
                self.requests_made += 1
            try:
                response = client.client.mail.send.post(
                    request_body=Body(body), request_headers=JSON_HEADERS
                )
            except http_errors.HTTPError as exc:
                status = exc.status_code
                text = _text(exc.body)
                if attempt >= self.max_attempts:
                    return status, text, None
                if status == 429:
                    wait = _reset_wait(exc.headers, time.time())
                    if wait is None:
                        wait = self.backoff * 2 ** (attempt - 1)
                    wait = min(self.max_wait, wait) + random.uniform(0, 0.25)
                elif status >= 500:
                    wait = random.uniform(0, min(self.max_wait, self.backoff * 2 ** (attempt - 1)))
                else:
                    return status, text, None
                with self._lock:
                    self.waits.append((status, wait))
                self.sleep(wait)
                continue
            except TimeoutError as exc:
                return -1, f"no answer from SendGrid within {self.timeout:g} s: {exc}", None
            except urllib.error.URLError as exc:
                reason = exc.reason
                if isinstance(reason, TimeoutError | socket.timeout):
                    return -1, f"no answer from SendGrid within {self.timeout:g} s", None
                if isinstance(reason, ConnectionRefusedError | socket.gaierror):
                    if attempt >= self.max_attempts:
                        return -2, f"cannot reach {self.host}: {reason}", None
                    wait = random.uniform(0, min(self.max_wait, self.backoff * 2 ** (attempt - 1)))
                    self.sleep(wait)
                    continue
                return -1, f"connection to SendGrid lost during the request: {reason}", None
            except (ConnectionError, OSError) as exc:
                return -1, f"connection to SendGrid lost during the request: {exc}", None
            message_id = response.headers.get("X-Message-Id") if response.headers else None
            return response.status_code, "", message_id

    def _posted(self, body: str, progress: BatchLog | None,
                indices: Sequence[int] | None) -> tuple[int, str, str | None]:
        """``_post``, marked in the progress log (``indices``: the request's messages in
        the batch, None for all) before it leaves and when answered (a request lost in
        flight, -1, stays unanswered: its fate is unknown)."""
        with self.request_slot():  # ``concurrency`` requests out at once
            if progress is None:
                return self._post(body)
            progress.handing_group(indices)
            status, text, message_id = self._post(body)
            if status != -1:
                progress.answered_group(indices, 200 <= status < 300)
            return status, text, message_id

    def _send_group(self, group: list[OutgoingMessage], progress: BatchLog | None = None,
                    indices: Sequence[int] | None = None) -> list[DeliveryResult]:
        status, text, message_id = self._posted(self.payload_json(group), progress, indices)
        if status == 413:  # too large: split it
            if len(group) == 1:
                return [DeliveryResult(Status.PERMANENT, f"413 {text}: too large")]
            half = len(group) // 2
            where = range(len(group)) if indices is None else indices
            return (self._send_group(group[:half], progress, where[:half])
                    + self._send_group(group[half:], progress, where[half:]))
        return self._answer(status, text, message_id, len(group))

    def send_rows(self, template: MessageTemplate, rows: Sequence[ClaimedRow],
                  progress: BatchLog | None = None) -> list[DeliveryResult] | None:
        """``send_batch(template.messages(rows))`` for a usual batch, built from the rows.

        The request is the same, byte for byte; only no message object is made per
        recipient (a third of the personalization's cost). Returns ``NOT_HANDLED``, having
        sent nothing, for anything unusual (a test send, a name or address that needs
        cleaning or refusing, an address twice, a personal subject, a request too large):
        the runner then takes the general path.
        """
        body = rows_json(self.content_for(template), template, rows)
        if body is None:
            return NOT_HANDLED
        status, text, message_id = self._posted(body, progress, None)
        if status == 413:  # nothing accepted: the general path splits it
            return NOT_HANDLED
        return self._answer(status, text, message_id, len(rows))

    def _answer(self, status: int, text: str, message_id: str | None, count: int
                ) -> list[DeliveryResult]:
        """One request's answer, for each of its ``count`` messages."""
        # one request, one answer for all of its messages: one result, repeated
        if 200 <= status < 300:
            return [DeliveryResult(Status.SENT, "", message_id)] * count
        if status in _FATAL:
            raise BackendUnavailable(
                f"SendGrid answered {status} ({text or 'no details'}): "
                + (
                    "check SENDGRID_API_KEY (a key with Mail Send permission)"
                    if status in (401, 403)
                    else f"check sendgrid_api_host ({self.host})"
                )
            )
        if status == -1:
            return [DeliveryResult(Status.UNCERTAIN, text)] * count
        if status == -2:
            raise BackendUnavailable(text + "; check sendgrid_api_host and the network")
        if status == 400:
            return [DeliveryResult(Status.PERMANENT, f"400 {text}")] * count
        reason = f"{status} {text} (after {self.max_attempts} attempts)"
        return [DeliveryResult(Status.TEMPORARY, reason)] * count

    def send_batch(self, messages: Sequence[OutgoingMessage], progress: BatchLog | None = None
                   ) -> list[DeliveryResult]:
        groups = split_requests(messages)
        if len(groups) == 1 and len(groups[0]) == len(messages):
            return self._send_group(groups[0], progress)  # one request, results in order
        by_message: dict[int, DeliveryResult] = {}
        position = {id(m): i for i, m in enumerate(messages)} if progress is not None else {}
        accepted_any = False
        for group in groups:
            indices = [position[id(m)] for m in group] if progress is not None else None
            try:
                results = self._send_group(group, progress, indices)
            except BackendUnavailable as exc:
                if not accepted_any:
                    raise
                results = [DeliveryResult(Status.TEMPORARY, str(exc))] * len(group)
            accepted_any = accepted_any or any(r.ok for r in results)
            for message, result in zip(group, results, strict=True):
                by_message[id(message)] = result
        return [by_message[id(m)] for m in messages]
