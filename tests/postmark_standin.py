"""A local stand-in for Postmark's ``POST /email/batch``, for tests and benchmarks.

It follows Postmark's documented contract (postmarkapp.com/developer/api/email-api,
user-guide/send-email-with-api/batch-emails, api/overview#error-codes): the server token
in ``X-Postmark-Server-Token`` (401 ``{"ErrorCode": 10, ...}`` when wrong or missing), a
JSON array of at most 500 messages (422 ErrorCode 410 beyond) and 50 MB (413), each
with ``From``, ``To`` and a body (ErrorCode 300 for that message when not), at most 50
recipients and 10 MB per message; 200 with one result per message in order, ErrorCode 0
and a ``MessageID`` for each accepted one, 406 for an inactive recipient (one that
bounced or complained: ``inactive``); 429 when rate limited.

    with PostmarkStandIn(api_key="pm-token") as pm:
        pm.inactive.add("gone@example.com")   # that address gets ErrorCode 406
        pm.messages("a@example.com")          # each message accepted for it (the JSON)

``python -m tests.postmark_standin --key TOKEN`` runs it as a process (see standin_base).
"""

from __future__ import annotations

import json
import uuid
from email.utils import getaddresses
from typing import Any

from .standin_base import Reply, StandIn, serve_main

MAX_MESSAGES = 500
MAX_MESSAGE_BYTES = 10 * 1000 * 1000
MAX_RECIPIENTS = 50


def _error(code: int, message: str) -> bytes:
    return json.dumps({"ErrorCode": code, "Message": message}).encode()


class PostmarkStandIn(StandIn):
    """Postmark's batch endpoint on 127.0.0.1."""

    def __init__(self, *, api_key: str = "pm-test-token", **kw: Any) -> None:
        super().__init__(api_key=api_key, **kw)
        self.inactive: set[str] = set()
        self.streams: set[str] = {"outbound", "broadcast"}

    def routes(self, path: str) -> bool:
        return path == "/email/batch"

    def authorized(self, handler) -> Reply | None:
        if handler.headers.get("X-Postmark-Server-Token") != self.api_key:
            return 401, {}, _error(10, "The Server Token you provided in the "
                                       "X-Postmark-Server-Token request header was invalid.")
        return None

    def limited(self, reset: float) -> Reply:
        return 429, {"Retry-After": "1"}, _error(429, "Rate limit exceeded.")

    def too_large(self) -> Reply:
        return 413, {}, _error(413, "Request too large.")

    def accept(self, handler, raw: bytes) -> Reply:
        try:
            batch = json.loads(raw)
        except ValueError:
            return 422, {}, _error(300, "Invalid request: the body is not JSON.")
        if not isinstance(batch, list):
            return 422, {}, _error(300, "Invalid request: expected an array of messages.")
        if len(batch) > MAX_MESSAGES:
            return 422, {}, _error(410, "Too many batch messages. You may send at most 500.")
        answers = [self._one(message) for message in batch]
        with self.lock:
            self.accepted_requests += 1
        return 200, {}, json.dumps(answers).encode()

    def _one(self, message: Any) -> dict[str, Any]:
        if not isinstance(message, dict) or not message.get("From"):
            return {"ErrorCode": 300, "Message": "Invalid 'From' address: ''."}
        to = [email for _, email in getaddresses([str(message.get("To") or "")]) if email]
        if not to or any("@" not in email for email in to):
            return {"ErrorCode": 300, "Message": f"Error parsing 'To': {message.get('To')!r}."}
        if len(to) > MAX_RECIPIENTS:
            return {"ErrorCode": 300, "Message": "You may not have more than 50 recipients."}
        if not (message.get("HtmlBody") or message.get("TextBody")):
            return {"ErrorCode": 300, "Message": "Provide either email TextBody or HtmlBody."}
        if len(json.dumps(message)) > MAX_MESSAGE_BYTES:
            return {"ErrorCode": 300, "Message": "The message is larger than 10 MB."}
        stream = message.get("MessageStream", "outbound")
        if stream not in self.streams:
            return {"ErrorCode": 1235, "Message": f"The message stream {stream!r} "
                                                  "was not found."}
        if any(email.lower() in self.inactive for email in to):
            return {"ErrorCode": 406, "To": message["To"],
                    "Message": "You tried to send to recipient(s) that have been marked as "
                               "inactive. Found inactive addresses: " + ", ".join(to) + "."}
        message_id = str(uuid.uuid4())
        with self.lock:
            for email in to:
                self.accepted_one(email, message)
        return {"ErrorCode": 0, "Message": "OK", "MessageID": message_id,
                "SubmittedAt": "2026-11-30T00:00:00.0000000-05:00", "To": message["To"]}

    def messages(self, email: str) -> list[dict[str, Any]]:
        return list(self.accepted.get(email.lower(), []))


if __name__ == "__main__":
    serve_main(PostmarkStandIn, "pm-test-token")
