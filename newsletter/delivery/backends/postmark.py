"""The Postmark backend: ``POST /email/batch``, up to 500 messages per call.

The server token comes only from the environment (``POSTMARK_SERVER_TOKEN``); the host
from ``postmark_api_host``, the stream from ``postmark_message_stream`` (default
``broadcast``: Postmark's infrastructure for newsletters, apart from transactional mail).

Each message of a call is complete (Postmark's batch takes no substitutions): its own
HTML and text bodies, our ``List-Unsubscribe`` (the recipient's one-click link) and
``List-Unsubscribe-Post`` headers, ``List-Id``, ``Message-ID``, and ``Metadata``
(``send_id``, ``list_id``, ``subscriber_id``), which Postmark returns on its webhooks. The
JSON of the bodies is escaped once per send; per recipient only the merge values are. A
call holds at most 500 messages and 5 MB (Postmark allows 50 MB: smaller calls bound each
worker's memory, and what a call lost in flight leaves uncertain); each call is built just
before it is posted, not the whole batch at once.

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
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from email.utils import formataddr
from json.encoder import encode_basestring_ascii  # type: ignore[attr-defined]

from ...config import Settings
from ...errors import ConfigError
from ..journal import BatchLog
from ..personalize import LIST_UNSUBSCRIBE_POST, MessageTemplate, OutgoingMessage, Part
from .base import BackendBase, BackendUnavailable, DeliveryResult, Status
from .httpapi import LOST, UNREACHABLE, HttpApi, halves

MAX_MESSAGES = 500
MAX_BYTES = 50 * 1000 * 1000  # Postmark's limit per call
CALL_BYTES = 5 * 1000 * 1000  # ours: bounds each worker's memory and what one lost call holds
PATH = "/email/batch"
JSON_TYPE = "application/json"
_q = encode_basestring_ascii


def _pieces(part: Part) -> tuple[str, ...]:
    """The part's literal pieces as escaped JSON string content (no quotes)."""
    return tuple(_q(literal)[1:-1] for literal in part.literals)


def _filled(part: Part, pieces: tuple[str, ...], url: str, name: str | None, prefs: str,
            clicks: list[str]) -> str:
    if len(pieces) == 1:
        return pieces[0]
    out = [pieces[0]]
    for value, piece in zip(part.values(url, name, prefs, clicks), pieces[1:], strict=True):
        out.append(_q(value)[1:-1])
        out.append(piece)
    return "".join(out)


@dataclass(frozen=True)
class _Content:
    """A send's constant JSON, escaped once: head (From, Subject?), the bodies' pieces,
    the shared headers and metadata."""

    head: str
    html: tuple[str, ...]
    text: tuple[str, ...]
    headers: str  # the constant header objects, each followed by a comma
    tail: str  # ReplyTo, MessageStream, Metadata's send and list ids


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
    return _Content(head, _pieces(template.html), _pieces(template.text), headers, tail)


def message_json(content: _Content, m: OutgoingMessage) -> str:
    """One message of the batch, as JSON."""
    t, url, name, prefs = m.template, m.unsubscribe_url, m.name, m.preferences_url
    clicks = m.click_urls  # the recipient's tracked links, [] when the send tracks none
    to = formataddr((name, m.email)) if name else m.email
    subject = f',"Subject":{_q(m.subject)}' if t.subject.personal else ""
    who = f',"subscriber_id":"{m.subscriber_id}"' if m.subscriber_id is not None else ""
    return (f'{content.head}{subject},"To":{_q(to)},'
            f'"HtmlBody":"{_filled(t.html, content.html, url, name, prefs, clicks)}",'
            f'"TextBody":"{_filled(t.text, content.text, url, name, prefs, clicks)}",'
            f'"Headers":[{content.headers}{{"Name":"List-Unsubscribe","Value":{_q(f"<{url}>")}}},'
            f'{{"Name":"Message-ID","Value":{_q(m.message_id)}}}]{content.tail}{who}}}}}')


def calls(content_for: Callable[[MessageTemplate], _Content],
          messages: Sequence[OutgoingMessage], limit: int = CALL_BYTES
          ) -> Iterator[tuple[range, list[bytes]]]:
    """Each call's positions in ``messages`` and its messages' JSON: at most 500
    messages and ``limit`` bytes (with the brackets and commas), built as it goes."""
    items: list[bytes] = []
    start, size = 0, 2
    for i, m in enumerate(messages):
        item = message_json(content_for(m.template), m).encode("ascii")
        if items and (len(items) >= MAX_MESSAGES or size + len(item) + 1 > limit):
            yield range(start, i), items
            items, start, size = [], i, 2
        items.append(item)
        size += len(item) + 1
    if items:
        yield range(start, len(messages)), items


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


class PostmarkBackend(BackendBase):
    name = "postmark"
    batch_size = MAX_MESSAGES
    writes_mime = False  # Postmark builds the MIME from the JSON
    logs_progress = True

    def __init__(self, token: str, host: str = "https://api.postmarkapp.com", *,
                 stream: str = "broadcast", workers: int | None = None,
                 call_bytes: int = CALL_BYTES, **http) -> None:
        self.stream = stream
        self.call_bytes = min(call_bytes, MAX_BYTES)
        self.concurrency = workers or 4
        self.api = HttpApi(host, {"X-Postmark-Server-Token": token, "Accept": JSON_TYPE},
                           label="Postmark", pool=self.concurrency,
                           **http)
        self._contents: dict[int, tuple[MessageTemplate, _Content]] = {}

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

    @property
    def requests_made(self) -> int:
        return self.api.requests_made

    def close(self) -> None:
        self.api.close()
        self._contents.clear()

    def content_for(self, template: MessageTemplate) -> _Content:
        entry = self._contents.get(id(template))
        if entry is None or entry[0] is not template:
            entry = (template, build_content(template, self.stream))
            self._contents[id(template)] = entry
        return entry[1]

    def payload(self, messages: Sequence[OutgoingMessage]) -> list[dict]:
        """The batch call's messages (for inspection and tests)."""
        content = self.content_for(messages[0].template)
        return [json.loads(message_json(content, m)) for m in messages]

    def send_batch(self, messages: Sequence[OutgoingMessage], progress: BatchLog | None = None
                   ) -> list[DeliveryResult]:
        results: list[DeliveryResult] = []
        for indices, items in calls(self.content_for, messages, self.call_bytes):
            try:
                results += self._call(items, progress, indices)
            except BackendUnavailable as exc:
                if not any(r.ok for r in results):
                    raise  # nothing of the batch went out: it stays pending
                results += [DeliveryResult(Status.TEMPORARY, str(exc))] * len(items)
            items.clear()  # freed now, not when the next call is built
        return results

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
