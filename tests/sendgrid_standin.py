"""A local stand-in for SendGrid's v3 ``POST /v3/mail/send``, for tests and benchmarks.

It follows the documented contract (twilio/sendgrid-oai tsg_mail_v3.yaml and the Mail
Send reference): ``Authorization: Bearer KEY`` (401 / 403 with the error JSON), the
request JSON (400 ``{"errors": [{"message", "field", "help"}]}`` for a missing
``from``, ``subject``, ``content`` or ``personalizations``, more than 1,000
personalizations or recipients, an address twice in one request, reserved headers,
oversized ``custom_args`` / ``substitutions``), the 30 MB size limit (413), a
configurable rate limit answering 429 with ``X-RateLimit-Limit`` / ``-Remaining`` /
``-Reset`` (epoch seconds), injected 5xx answers, and 202 with an empty body and
``X-Message-Id`` for an accepted request.

In-process (tests)::

    with SendGridStandIn(api_key="SG.test") as sg:
        SendGridAPIClient(api_key="SG.test", host=sg.url)
        sg.rate_limit(2, window=1.0)       # 2 requests per window, then 429
        sg.fail_next(2, status=503)        # the next 2 requests get 503
        sg.counts["a@example.com"]         # accepted messages per recipient
        sg.expand("a@example.com")         # those messages with substitutions applied

As a separate process (benchmarks, so it does not share the client's GIL)::

    python -m tests.sendgrid_standin --port 0 --key SG.bench --record counts
    # prints "READY http://127.0.0.1:PORT"; GET /_stats answers the counters as JSON
"""

from __future__ import annotations

import json
import uuid
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler
from typing import Any

from .standin_base import Reply, StandIn, serve_main

MAX_BYTES = 30 * 1024 * 1024
MAX_PERSONALIZATIONS = 1000
MAX_RECIPIENTS = 1000
RESERVED_HEADERS = {
    "x-sg-id", "x-sg-eid", "received", "dkim-signature", "content-type",
    "content-transfer-encoding", "to", "from", "subject", "reply-to", "cc", "bcc",
}


class Invalid(Exception):
    def __init__(self, message: str, field: str | None, help_: str | None = None) -> None:
        super().__init__(message)
        self.message, self.field, self.help = message, field, help_


def error_body(*errors: tuple[str, str | None, str | None]) -> bytes:
    return json.dumps({
        "errors": [{"message": m, "field": f, "help": h} for m, f, h in errors],
        "id": uuid.uuid4().hex,
    }).encode()


def _size(value: Any) -> int:
    return len(json.dumps(value, separators=(",", ":")).encode())


def validate(body: Any) -> None:
    """Raise ``Invalid`` like SendGrid does for a request it would refuse with 400."""
    if not isinstance(body, dict):
        raise Invalid("Bad Request", None)
    _validate_sender(body.get("from"))
    personalizations = body.get("personalizations")
    if not isinstance(personalizations, list) or not personalizations:
        raise Invalid("The personalizations field is required and must have at least one "
                      "personalization.", "personalizations",
                      "http://sendgrid.com/docs/API_Reference/Web_API_v3/Mail/errors.html#-Personalizations-Errors")
    if len(personalizations) > MAX_PERSONALIZATIONS:
        raise Invalid("The personalizations field must have no more than 1000 "
                      "personalizations.", "personalizations", None)
    _validate_content(body.get("content"))
    _validate_headers(body.get("headers"), "headers")
    _validate_size(body, "custom_args", "custom_args")
    seen: set[str] = set()
    for i, p in enumerate(personalizations):
        _validate_personalization(body, i, p, seen)
        if len(seen) > MAX_RECIPIENTS:
            raise Invalid("The total number of recipients must be no more than 1000.",
                          "personalizations", None)


def _validate_sender(sender: Any) -> None:
    if not isinstance(sender, dict) or not sender.get("email"):
        raise Invalid("The from object must be provided for every email send. "
                      "It is an object that requires the email parameter, but may also "
                      "contain a name parameter.", "from.email",
                      "http://sendgrid.com/docs/API_Reference/Web_API_v3/Mail/errors.html#message.from")
    if not str(sender["email"]).isascii():
        raise Invalid("The from email does not contain a valid address.", "from.email")


def _validate_content(content: Any) -> None:
    if not isinstance(content, list) or not content or not all(
        isinstance(c, dict) and c.get("type") and isinstance(c.get("value"), str) and c["value"]
        for c in content
    ):
        raise Invalid("Unless a valid template_id is provided, the content parameter is "
                      "required. There must be at least one defined content block. We "
                      "typically suggest both text/plain and text/html blocks are included, "
                      "but only one block is required.", "content", None)
    types = [c["type"] for c in content]
    if "text/plain" in types and types[0] != "text/plain":
        raise Invalid("If present, text/plain content must be first, followed by any other "
                      "content.", "content", None)


def _validate_headers(headers: Any, where: str) -> None:
    for name in (headers or {}):
        if name.lower() in RESERVED_HEADERS:
            raise Invalid(f"The header {name} is reserved and cannot be set.", where, None)


def _validate_size(holder: dict, key: str, where: str) -> None:
    if key in holder and _size(holder[key]) > 10000:
        raise Invalid(f"The {key} field must be less than 10000 bytes.", where, None)


def _validate_personalization(body: dict, i: int, p: Any, seen: set[str]) -> None:
    """One personalization; ``seen`` collects the addresses of all of them (unique)."""
    if not isinstance(p, dict) or not p.get("to"):
        raise Invalid("The to array is required for all personalization objects, and must "
                      "have at least one email object with a valid email address.",
                      f"personalizations.{i}.to", None)
    if not body.get("subject") and not p.get("subject"):
        raise Invalid("The subject is required. You can get around this requirement if "
                      "you use a template with a subject defined or if every single "
                      "personalization has a subject defined.", "subject", None)
    for kind in ("to", "cc", "bcc"):
        for address in p.get(kind) or []:
            email = str(address.get("email", "")) if isinstance(address, dict) else ""
            if "@" not in email:
                raise Invalid("Does not contain a valid address.",
                              f"personalizations.{i}.{kind}", None)
            key = email.lower()
            if key in seen:
                raise Invalid(
                    "Each email address in the personalization block should be unique "
                    "between to, cc, and bcc. We found the first duplicate instance of "
                    f"[{email}] in the personalizations.{i}.{kind} field.",
                    f"personalizations.{i}.{kind}", None)
            seen.add(key)
    _validate_headers(p.get("headers"), f"personalizations.{i}.headers")
    _validate_size(p, "substitutions", f"personalizations.{i}.substitutions")
    _validate_size(p, "custom_args", f"personalizations.{i}.custom_args")


@dataclass
class Accepted:
    message_id: str
    body: dict[str, Any]  # the request (shared by its recipients)
    index: int  # which personalization


class SendGridStandIn(StandIn):
    """SendGrid's Mail Send endpoint on 127.0.0.1 (see the module docs)."""

    max_bytes = MAX_BYTES

    def __init__(self, *, api_key: str = "SG.test-key", forbidden_keys: tuple[str, ...] = (),
                 **kw: Any) -> None:
        super().__init__(api_key=api_key, **kw)
        self.forbidden_keys = set(forbidden_keys)
        self.last_errors: list[bytes] = []  # the body of each 400 answered

    # -- what was accepted ----------------------------------------------------------------

    def expand(self, email: str) -> list[dict[str, Any]]:
        """Each accepted message for ``email`` as the recipient would get it."""
        out = []
        for item in self.accepted.get(email.lower(), []):
            body, p = item.body, item.body["personalizations"][item.index]
            subs: dict[str, str] = p.get("substitutions") or {}

            def fill(text: str, subs: dict[str, str] = subs) -> str:
                for key, value in subs.items():
                    text = text.replace(key, value)
                return text

            content = {c["type"]: fill(c["value"]) for c in body["content"]}
            out.append({
                "message_id": item.message_id,
                "to": p["to"],
                "from": body["from"],
                "reply_to": body.get("reply_to"),
                "subject": fill(p.get("subject") or body["subject"]),
                "headers": {**(body.get("headers") or {}), **(p.get("headers") or {})},
                "custom_args": {**(body.get("custom_args") or {}), **(p.get("custom_args") or {})},
                "text": content.get("text/plain"),
                "html": content.get("text/html"),
                "content_types": [c["type"] for c in body["content"]],
            })
        return out

    def reset(self) -> None:
        super().reset()
        with self.lock:
            self.last_errors.clear()

    # -- SendGrid's answers ----------------------------------------------------------------

    def routes(self, path: str) -> bool:
        return path.rstrip("/") == "/v3/mail/send"

    def not_found(self) -> Reply:
        return 404, {}, error_body(("Not Found", None, None))

    def authorized(self, handler: BaseHTTPRequestHandler) -> Reply | None:
        """403 for a key without permission, 401 for a wrong one."""
        auth = handler.headers.get("Authorization", "")
        key = auth.removeprefix("Bearer ").strip() if auth.startswith("Bearer ") else None
        if key in self.forbidden_keys:
            return 403, {}, error_body(("access forbidden", None, None))
        if key != self.api_key:
            return 401, {}, error_body((
                "The provided authorization grant is invalid, expired, or revoked", None, None
            ))
        return None

    def limited(self, reset: float) -> Reply:
        """429 with SendGrid's X-RateLimit-* headers (the reset in epoch seconds)."""
        return 429, {
            "X-RateLimit-Limit": str(self._limit),
            "X-RateLimit-Remaining": "0",
            "X-RateLimit-Reset": str(int(reset) + 1),
        }, error_body(("too many requests", None, None))

    def failure(self, status: int) -> Reply:
        return status, {}, error_body(("Internal Server Error", None, None))

    def too_large(self) -> Reply:
        return 413, {}, error_body(("Payload Too Large", None, None))

    def answered(self, status: int, body: bytes) -> None:
        if status == 400:
            with self.lock:
                self.last_errors.append(body)

    def accept(self, handler: BaseHTTPRequestHandler, raw: bytes) -> Reply:
        try:
            body = json.loads(raw)
        except ValueError:
            return 400, {}, error_body(("Bad Request", None, None))
        try:
            validate(body)
        except Invalid as exc:
            return 400, {}, error_body((exc.message, exc.field, exc.help))
        message_id = uuid.uuid4().hex[:22]
        with self.lock:
            self.accepted_requests += 1
            for i, p in enumerate(body["personalizations"]):
                for kind in ("to", "cc", "bcc"):
                    for address in p.get(kind) or []:
                        self.accepted_one(address["email"], Accepted(message_id, body, i))
        return 202, {"X-Message-Id": message_id}, b""


try:  # a pytest fixture for test modules: ``from tests.sendgrid_standin import sendgrid_standin``
    import pytest

    @pytest.fixture
    def sendgrid_standin():
        """The stand-in on 127.0.0.1 accepting the key "SG.test-key"; stopped after the test."""
        with SendGridStandIn() as standin:
            yield standin
except ImportError:  # benchmarks run without pytest installed
    pass


if __name__ == "__main__":
    serve_main(SendGridStandIn, "SG.test-key")
