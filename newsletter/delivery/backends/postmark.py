"""The Postmark backend: ``POST /email/batch``, up to 500 messages per call.

The server token comes only from the environment (``POSTMARK_SERVER_TOKEN``); the host
from ``postmark_api_host``, the stream from ``postmark_message_stream`` (default
``broadcast``: Postmark's infrastructure for newsletters, apart from transactional mail).

Each message of a call is complete (Postmark's batch takes no substitutions): its own
HTML and text bodies, our ``List-Unsubscribe`` (the recipient's one-click link) and
``List-Unsubscribe-Post`` headers, ``List-Id``, ``Message-ID``, and ``Metadata``
(``send_id``, ``list_id``, ``subscriber_id``), which Postmark returns on its webhooks. The
JSON of the bodies is escaped and encoded once per send; per recipient only the merge
values are, and each message is one ``bytes.join`` of those pieces (``message_item``, for
the general path and the row path, ``send_rows``, alike). A call holds at most 500
messages and 5 MB (Postmark allows 50 MB: smaller calls bound each worker's memory, and
what a call lost in flight leaves uncertain); each call is built just before it is posted,
not the whole batch at once.

Answers: 200 carries one result per message: ``ErrorCode`` 0 -> sent (``MessageID``),
406 (inactive recipient: it bounced or complained before) and other codes -> that
message fails for good, with Postmark's words; 429 for one message -> temporary. For the
whole call: 401, or 422 with ErrorCode 10 (bad token) -> ``BackendUnavailable``; 413, or
422 with 410 (too many messages) or 300 (invalid request) -> the call is split in two
until the messages at fault stand alone (those fail for good); 429 -> wait
(``Retry-After``) and try again; 5xx -> back off; both bounded, then temporary. A timeout
or a connection lost in flight -> uncertain.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from json.encoder import encode_basestring_ascii  # type: ignore[attr-defined]
from typing import TYPE_CHECKING

from ...config import Settings
from ...errors import ConfigError
from ..journal import BatchLog
from ..personalize import LIST_UNSUBSCRIBE_POST, MessageTemplate, OutgoingMessage, Part
from .base import NOT_HANDLED, BackendUnavailable, DeliveryResult, Status
from .httpapi import LOST, UNREACHABLE, ApiBackend, HttpApi, display_to, each_call, halves
from .rows import row_values

if TYPE_CHECKING:
    from ..claims import ClaimedRow

MAX_MESSAGES = 500
MAX_BYTES = 50 * 1000 * 1000  # Postmark's limit per call
CALL_BYTES = 5 * 1000 * 1000  # ours: bounds each worker's memory and what one lost call holds
PATH = "/email/batch"
JSON_TYPE = "application/json"
_q = encode_basestring_ascii


def _pieces(part: Part) -> tuple[bytes, ...]:
    """The part's literal pieces as escaped JSON string content (no quotes), ASCII."""
    return tuple(_q(literal)[1:-1].encode("ascii") for literal in part.literals)


@dataclass(frozen=True)
class _Content:
    """A send's constant JSON, escaped and encoded once: head (From, Subject?), the
    bodies' pieces, the shared headers and metadata."""

    head: bytes
    html: tuple[bytes, ...]
    text: tuple[bytes, ...]
    headers: bytes  # the constant header objects, each followed by a comma
    tail: bytes  # ReplyTo, MessageStream, Metadata's send and list ids


def build_content(template: MessageTemplate, stream: str) -> _Content:
    head = f'{{"From":{_q(template.from_address)}'
    if not template.subject.personal:
        head += f',"Subject":{_q(template.subject_text)}'
    headers = (f'{{"Name":"List-Id","Value":{_q(template.list_id_header)}}},'
               f'{{"Name":"List-Unsubscribe-Post","Value":"{LIST_UNSUBSCRIBE_POST}"}},')
    tail = f',"MessageStream":{_q(stream)}'
    if template.reply_to:
        tail += f',"ReplyTo":{_q(template.reply_to)}'
    tail += f',"Metadata":{{"send_id":{_q(str(template.send_id))},"list_id":"{template.list_id}"'
    return _Content(head.encode("ascii"), _pieces(template.html), _pieces(template.text),
                    headers.encode("ascii"), tail.encode("ascii"))


def message_item(content: _Content, template: MessageTemplate, subscriber: int | None,
                 email: str, name: str | None, url: str, message_id: str, preferences: str,
                 clicks: Sequence[str]) -> bytes:
    """One message of the batch, as JSON: the only place it is written, for the general
    path and the row path alike. The bodies are their pre-escaped pieces joined with the
    recipient's values (``Part.values``), all in one ``bytes.join`` (no larger copy)."""
    out = [content.head]
    if template.subject.personal:
        subject = template.subject
        out.append(f',"Subject":{_q(subject.fill(subject.values(url, name)))}'.encode())
    out.append(f',"To":{_q(display_to(name, email))},"HtmlBody":"'.encode())
    for part, pieces, tail in ((template.html, content.html, b'","TextBody":"'),
                               (template.text, content.text, b'","Headers":[')):
        out.append(pieces[0])
        if len(pieces) > 1:
            for value, piece in zip(part.values(url, name, preferences, clicks), pieces[1:],
                                    strict=True):
                out += (_q(value)[1:-1].encode("ascii"), piece)
        out.append(tail)
    who = f',"subscriber_id":"{subscriber}"' if subscriber is not None else ""
    out += (content.headers,
            f'{{"Name":"List-Unsubscribe","Value":{_q(f"<{url}>")}}},'
            f'{{"Name":"Message-ID","Value":{_q(message_id)}}}]'.encode("ascii"),
            content.tail, f"{who}}}}}".encode("ascii"))
    return b"".join(out)


def calls(items: Iterable[bytes], limit: int = CALL_BYTES
          ) -> Iterator[tuple[range, list[bytes]]]:
    """Each call's positions in the batch and its messages' JSON: at most 500 messages
    and ``limit`` bytes (with the brackets and commas), built as it goes."""
    batch: list[bytes] = []
    start = i = 0
    size = 2
    for i, item in enumerate(items):
        if batch and (len(batch) >= MAX_MESSAGES or size + len(item) + 1 > limit):
            yield range(start, i), batch
            batch, start, size = [], i, 2
        batch.append(item)
        size += len(item) + 1
    if batch:
        yield range(start, i + 1), batch


def _item_result(item: object) -> DeliveryResult:
    if not isinstance(item, dict):
        return DeliveryResult(Status.UNCERTAIN, f"Postmark answered {item!r} for it")
    code, words = item.get("ErrorCode"), str(item.get("Message", ""))[:500]
    if code == 0:
        return DeliveryResult(Status.SENT, "", str(item.get("MessageID") or "") or None)
    if code == 406:
        return DeliveryResult(Status.PERMANENT, f"406 inactive recipient: {words}")
    if code == 429:
        return DeliveryResult(Status.TEMPORARY, f"429 {words}")
    return DeliveryResult(Status.PERMANENT, f"{code} {words}")


class PostmarkBackend(ApiBackend):
    name = "postmark"
    batch_size = MAX_MESSAGES
    writes_mime = False  # Postmark builds the MIME from the JSON
    logs_progress = True

    def __init__(self, token: str, host: str = "https://api.postmarkapp.com", *,
                 stream: str = "broadcast", workers: int | None = None,
                 call_bytes: int = CALL_BYTES, **http) -> None:
        super().__init__()
        self.stream = stream
        self.call_bytes = min(call_bytes, MAX_BYTES)
        self.concurrency = workers or 4
        self.api = HttpApi(host, {"X-Postmark-Server-Token": token, "Accept": JSON_TYPE},
                           label="Postmark", pool=self.concurrency,
                           **http)

    @classmethod
    def from_settings(cls, settings: Settings, *, workers: int | None = None
                      ) -> PostmarkBackend:
        token = os.environ.get("POSTMARK_SERVER_TOKEN", "").strip()
        if not token:
            raise ConfigError(
                "POSTMARK_SERVER_TOKEN is not set: export POSTMARK_SERVER_TOKEN=... (the "
                "server's API token, Servers > API Tokens), or choose another backend with "
                "--backend")
        return cls(token, settings.postmark_api_host, stream=settings.postmark_message_stream,
                   workers=workers)

    def build_content(self, template: MessageTemplate) -> _Content:
        return build_content(template, self.stream)

    def message_items(self, messages: Sequence[OutgoingMessage]) -> Iterator[bytes]:
        """Each message's JSON (``message_item``), made as it is needed."""
        for m in messages:
            t = m.template
            yield message_item(self.content_for(t), t, m.subscriber_id, m.email, m.name,
                               m.unsubscribe_url, m.message_id, m.preferences_url,
                               m.click_urls)

    def payload(self, messages: Sequence[OutgoingMessage]) -> list[dict]:
        """The batch call's messages (for inspection and tests)."""
        return [json.loads(item) for item in self.message_items(messages)]

    def send_batch(self, messages: Sequence[OutgoingMessage], progress: BatchLog | None = None
                   ) -> list[DeliveryResult]:
        return each_call(len(messages), calls(self.message_items(messages), self.call_bytes),
                         lambda items, indices: self._call(items, progress, indices))

    def send_rows(self, template: MessageTemplate, rows: Sequence[ClaimedRow],
                  progress: BatchLog | None = None) -> list[DeliveryResult] | None:
        """``send_batch(template.messages(rows))`` for a usual batch, built from the rows:
        the same calls, byte for byte (``message_item`` writes both), with the
        per-recipient values computed a batch at a time (``rows.row_values``) and no
        message object per recipient. ``NOT_HANDLED`` (nothing sent) for a test send or
        a name or address that needs cleaning or refusing."""
        values = row_values(template, rows, readers=bool(template.links or template.has_open))
        if values is None:
            return NOT_HANDLED
        content, one, links = self.content_for(template), message_item, template.click_urls_of
        items = (one(content, template, row.subscriber_id, row.email, row.name, url, msgid,
                     prefs, links(reader))
                 for row, url, msgid, prefs, reader in zip(rows, *values, strict=True))
        return each_call(len(rows), calls(items, self.call_bytes),
                         lambda items, indices: self._call(items, progress, indices))

    def _call(self, items: list[bytes], progress: BatchLog | None, indices: Sequence[int]
              ) -> list[DeliveryResult]:
        if progress is not None:
            progress.handing_group(indices)
        parts = [b","] * (2 * len(items) + 1)  # "[" item "," item ... "]", written in turn
        parts[0], parts[-1], parts[1::2] = b"[", b"]", items
        answer = self.api.post(PATH, parts, JSON_TYPE)
        parts.clear()  # httpx's request may linger in a reference cycle: not the 2 MB body
        if answer.status == LOST:
            return [DeliveryResult(Status.UNCERTAIN, answer.text)] * len(items)
        if answer.status == 200:
            results = self._items(answer.body, len(items))
            if progress is not None:
                for i, result in zip(indices, results, strict=True):
                    progress.answered(i, result.status is Status.SENT or
                                      result.status is Status.UNCERTAIN)
            return results
        if progress is not None:
            progress.answered_group(indices, False)  # refused whole: nothing went out
        return self._refused(answer.status, answer.text, answer.body, items, progress, indices)

    def _items(self, body: bytes, count: int) -> list[DeliveryResult]:
        try:
            data = json.loads(body)
        except ValueError:
            data = None
        if not isinstance(data, list) or len(data) != count:
            return [DeliveryResult(Status.UNCERTAIN, "Postmark's answer did not list each "
                                   "message")] * count
        return [_item_result(item) for item in data]

    def _refused(self, status: int, text: str, body: bytes, items: list[bytes],
                 progress: BatchLog | None, indices: Sequence[int]) -> list[DeliveryResult]:
        code = _error_code(body)
        if status in (401, 403) or code == 10:
            raise BackendUnavailable(f"Postmark answered {status} ({text or 'no details'}): "
                                     "check POSTMARK_SERVER_TOKEN (a server API token)")
        if status == 404:
            raise BackendUnavailable(f"Postmark answered 404: check postmark_api_host "
                                     f"({self.api.base_url})")
        if status == UNREACHABLE:
            raise BackendUnavailable(text + "; check postmark_api_host and the network")
        if status == 413 or (status == 422 and code in (300, 410, 411)):
            if len(items) > 1:
                (first, at1), (second, at2) = halves(items, indices)
                return self._call(first, progress, at1) + self._call(second, progress, at2)
            return [DeliveryResult(Status.PERMANENT, f"{status} {text}")]
        if status in (400, 422):
            return [DeliveryResult(Status.PERMANENT, f"{status} {text}")] * len(items)
        reason = f"{status} {text} (after {self.api.max_attempts} attempts)"
        return [DeliveryResult(Status.TEMPORARY, reason)] * len(items)


def _error_code(body: bytes) -> int | None:
    try:
        data = json.loads(body)
    except ValueError:
        return None
    return data.get("ErrorCode") if isinstance(data, dict) else None
