"""A local stand-in for Mailgun's ``POST /v3/{domain}/messages``, for tests and benchmarks.

It follows Mailgun's documented contract (documentation.mailgun.com: Messages API,
user-manual/sending-messages/batch-sending, API errors): HTTP basic auth ``api:KEY``
(401 ``Forbidden`` when wrong), the domain (404 ``Domain not found``), a form (multipart or
url-encoded) with ``from``, ``to`` (several), ``subject``, ``text``/``html`` (400 with ``{"message"}`` when
missing or when an address is not valid), at most 1,000 recipients per call (400), the
``recipient-variables`` JSON (400 when not JSON) substituted as ``%recipient.KEY%`` in
the bodies, subject and ``h:`` headers, 25 MB per message (413), 429 with
``Retry-After`` when rate limited, and 200 ``{"id", "message": "Queued. Thank you."}``.

    with MailgunStandIn(api_key="key-test", domain="mg.example.org") as mg:
        mg.expand("a@example.com")   # each message as that recipient would get it
"""

from __future__ import annotations

import base64
import json
import re
import uuid
from typing import Any
from urllib.parse import parse_qsl

from .standin_base import Reply, StandIn, serve_main

MAX_RECIPIENTS = 1000
_VAR = re.compile(r"%recipient\.([A-Za-z0-9_]+)%")
_NAME = re.compile(rb'Content-Disposition: form-data; name="([^"]+)"')
_ADDRESS = re.compile(r"^(?:[^<>]*<)?([^<>@\s]+@[^<>@\s]+\.[^<>@\s]+)>?$")


def parse_form(content_type: str, raw: bytes) -> dict[str, list[str]] | None:
    """A form's fields (each name's values in order), either encoding; None if neither."""
    form: dict[str, list[str]] = {}
    if content_type.startswith("application/x-www-form-urlencoded"):
        for key, value in parse_qsl(raw.decode("utf-8"), keep_blank_values=True):
            form.setdefault(key, []).append(value)
        return form
    match = re.match(r'multipart/form-data;\s*boundary="?([^";]+)"?', content_type)
    if match is None:
        return None
    for part in raw.split(b"--" + match.group(1).encode("ascii"))[1:-1]:
        head, _, value = part.partition(b"\r\n\r\n")
        name = _NAME.search(head)
        if name is None:
            return None
        form.setdefault(name.group(1).decode("utf-8"), []).append(
            value.removesuffix(b"\r\n").decode("utf-8"))
    return form


def _error(message: str) -> bytes:
    return json.dumps({"message": message}).encode()


class MailgunStandIn(StandIn):
    """Mailgun's messages endpoint on 127.0.0.1."""

    max_bytes = 25 * 1000 * 1000

    def __init__(self, *, api_key: str = "key-test", domain: str = "mg.example.org",
                 **kw: Any) -> None:
        super().__init__(api_key=api_key, **kw)
        self.domain = domain

    def routes(self, path: str) -> bool:
        return re.fullmatch(r"/v3/[^/]+/messages", path) is not None

    def authorized(self, handler) -> Reply | None:
        expected = "Basic " + base64.b64encode(f"api:{self.api_key}".encode()).decode()
        if handler.headers.get("Authorization") != expected:
            return 401, {"Content-Type": "text/plain"}, b"Forbidden"
        if handler.path.split("/")[2] != self.domain:
            return 404, {}, _error(f"Domain not found: {handler.path.split('/')[2]}")
        return None

    def limited(self, reset: float) -> Reply:
        return 429, {"Retry-After": "1", "X-RateLimit-Limit": str(self._limit),
                     "X-RateLimit-Remaining": "0"}, _error("Too many requests")

    def too_large(self) -> Reply:
        return 413, {}, _error("Request Entity Too Large")

    def accept(self, handler, raw: bytes) -> Reply:
        form = parse_form(handler.headers.get("Content-Type", ""), raw)
        if form is None:
            return 400, {}, _error("expected a form (multipart/form-data or "
                                   "application/x-www-form-urlencoded)")
        problem = self._problem(form)
        if problem:
            return 400, {}, _error(problem)
        to = [_ADDRESS.match(t).group(1) for t in form["to"]]  # type: ignore[union-attr]
        message_id = f"<{uuid.uuid4().hex}@{self.domain}>"
        variables = json.loads(form.get("recipient-variables", ["{}"])[0])
        with self.lock:
            self.accepted_requests += 1
            for email in to:
                self.accepted_one(email, (form, variables.get(email, {})))
        return 200, {}, json.dumps({"id": message_id, "message": "Queued. Thank you."}
                                   ).encode()

    @staticmethod
    def _problem(form: dict[str, list[str]]) -> str | None:
        if not form.get("from"):
            return "'from' parameter is missing"
        if not form.get("to"):
            return "'to' parameter is missing"
        if len(form["to"]) > MAX_RECIPIENTS:
            return "Too many recipients. Maximum allowed is 1000"
        if any(not _ADDRESS.match(t) for t in form["to"]):
            return "'to' parameter is not a valid address. please check documentation"
        if not (form.get("text") or form.get("html")):
            return "Need at least one of 'text' or 'html' parameters specified"
        try:
            variables = json.loads(form.get("recipient-variables", ["{}"])[0])
        except ValueError:
            return "recipient-variables parameter is not a valid JSON"
        return None if isinstance(variables, dict) else "recipient-variables must be an object"

    def expand(self, email: str) -> list[dict[str, Any]]:
        """Each accepted message for ``email`` with its recipient-variables applied."""
        out = []
        for form, variables in self.accepted.get(email.lower(), []):
            def fill(text: str, variables: dict = variables) -> str:
                return _VAR.sub(lambda m: str(variables.get(m.group(1), m.group(0))), text)

            out.append({
                "from": form["from"][0],
                "to": [t for t in form["to"] if email.lower() in t.lower()],
                "subject": fill(form["subject"][0]),
                "text": fill(form.get("text", [""])[0]),
                "html": fill(form.get("html", [""])[0]),
                "headers": {k[2:]: fill(v[0]) for k, v in form.items() if k.startswith("h:")},
                "variables": {k[2:]: fill(v[0]) for k, v in form.items()
                              if k.startswith("v:")},
            })
        return out


if __name__ == "__main__":
    serve_main(MailgunStandIn, "key-test")
