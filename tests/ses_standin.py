"""A local stand-in for Amazon SES v2: ``SendEmail`` (``POST /v2/email/outbound-emails``),
``SendBulkEmail`` (``POST /v2/email/outbound-bulk-emails``), ``CreateEmailTemplate``
(``POST /v2/email/templates``) and ``DeleteEmailTemplate`` (``DELETE
/v2/email/templates/NAME``).

It follows the SES v2 API reference (those operations, BulkEmailEntry, Common Errors),
the developer guide (quotas, header fields, personalized email) and the botocore model
(sesv2 2019-09-27, rest-json): requests signed with AWS Signature Version 4 (the
signature is checked with the stand-in's secret: 403 ``UnrecognizedClientException`` for
an unknown key id, ``InvalidSignatureException`` for a wrong signature), errors named in
``x-amzn-ErrorType`` with a ``{"message"}`` body, a request beyond the server's limit:
413; a sending rate (429 ``TooManyRequestsException`` "Maximum sending rate exceeded.");
a configuration set that must exist (404 ``NotFoundException``).

SendEmail: raw content (base64 MIME, at most 40 MB: 400 ``MessageRejected`` beyond), at
most 50 destinations, addresses refused as unverified in the sandbox (400
``MessageRejected``), a daily quota (400 ``LimitExceededException`` "Daily message quota
exceeded."), 200 ``{"MessageId"}``.

Templates: a name of letters, digits, ``_`` and ``-`` (at most 64), subject, text and HTML
of at most 500 KB together (400 ``BadRequestException``), a name taken (400
``AlreadyExistsException``), at most ``max_templates`` (400 ``LimitExceededException``);
deleting an unknown one: 404 ``NotFoundException``.

SendBulkEmail: a stored template (404 ``NotFoundException`` "Template ... does not
exist"), 1 to 50 entries, each with 1 to 50 destinations and valid headers (header value:
printable ASCII, at most 870) and addresses (ASCII: no SMTPUTF8, a domain in Punycode;
else 400 ``BadRequestException`` for the call); 200 with a
``BulkEmailEntryResults`` item per entry, in order: ``SUCCESS`` and a MessageId,
``MESSAGE_REJECTED`` (unverified address), ``ACCOUNT_DAILY_QUOTA_EXCEEDED`` (the quota
counts recipients), or a status queued for an address with ``entry_status``. Each
accepted entry is rendered as SES does (``render``: Handlebars variables, nothing
HTML-escaped, ``\\{{`` literal; the entry's ReplacementHeaders replace the template
call's headers of the same name, SES's own Message-ID and Date) into the message the
recipient receives. A template SES cannot render (bad syntax, a helper, a missing value)
still answers ``SUCCESS``, as SES does (it publishes a Rendering Failure event): the
stand-in keeps it in ``rendering_failures`` and counts no message.

    with SESStandIn() as ses:          # key id AKIDSTANDIN, secret "standin-secret"
        boto3.client("sesv2", endpoint_url=ses.url, region_name="eu-west-1", ...)
        ses.quota(10)                   # 10 more recipients today, then the quota error
        ses.rejected.add("x@example.com")
        ses.entry_status["y@example.com"] = ["ACCOUNT_THROTTLED"]  # its next entry's status
        ses.messages("a@example.com")   # each message accepted for it (parsed)
"""

from __future__ import annotations

import base64
import json
import re
import uuid
from datetime import UTC, datetime
from email import policy
from email.message import EmailMessage
from email.parser import BytesParser
from email.utils import format_datetime, getaddresses
from typing import Any
from urllib.parse import unquote

from .standin_base import Reply, StandIn, serve_main

KEY_ID, SECRET = "AKIDSTANDIN", "standin-secret"
MAX_MESSAGE = 40 * 1024 * 1024
MAX_TEMPLATE = 500 * 1024
TEMPLATES = "/v2/email/templates"
_CREDENTIAL = re.compile(r"Credential=([^/]+)/(\d{8})/([^/]+)/([^/]+)/aws4_request, "
                         r"SignedHeaders=([^,]+), Signature=([0-9a-f]+)")
_NAME = re.compile(r"[A-Za-z0-9_-]{1,64}")
_VARIABLE = re.compile(r"\s*([A-Za-z0-9_]+)\s*")
_HEADER_NAME = re.compile(r"[!-9;-~]{1,126}")


def _error(code: str, message: str, status: int) -> Reply:
    return status, {"x-amzn-ErrorType": f"{code}:http://internal.amazon.com/coral/"
                    "com.amazonaws.sesv2/"}, json.dumps({"message": message}).encode()


def _message_id() -> str:
    return f"0100{uuid.uuid4().hex}-000000"


def render(template: str, data: dict[str, Any]) -> str:
    """``template`` rendered as Handlebars does for plain variables: ``{{v}}`` and
    ``{{{v}}}`` put in ``data[v]`` (SES escapes no HTML), a missing one is an error (SES:
    a rendering failure); ``\\{{`` makes the text up to the next ``{{`` literal, ``\\\\{{``
    is a backslash then a variable. Anything else in ``{{...}}`` (helpers, blocks,
    partials, comments, ``{{{{`` raw blocks) is refused: our templates have none."""
    out: list[str] = []
    pos = 0
    while True:
        start = template.find("{{", pos)
        if start < 0:
            out.append(template[pos:])
            return "".join(out)
        text = template[pos:start]
        if text.endswith("\\\\"):
            out.append(text[:-1])
        elif text.endswith("\\"):
            end = template.find("{{", start + 2)
            end = len(template) if end < 0 else end
            while template[end - 1:end] == "\\":  # the next mustache's own escape
                end -= 1
            out += (text[:-1], template[start:end])
            pos = end
            continue
        else:
            out.append(text)
        if template.startswith("{{{{", start):
            raise ValueError("raw blocks are not supported")
        triple = template.startswith("{{{", start)
        close = "}}}" if triple else "}}"
        end = template.find(close, start)
        if end < 0:
            raise ValueError(f"unclosed mustache at {start}")
        match = _VARIABLE.fullmatch(template[start + len(close):end])
        if match is None:
            raise ValueError(f"not a variable: {template[start:end + len(close)]!r}")
        if match.group(1) not in data:
            raise ValueError(f"no value for {match.group(1)}")
        out.append(str(data[match.group(1)]))
        pos = end + len(close)


def variables(template: str) -> set[str]:
    """The variable names ``render`` would look up (for a quick check without rendering)."""
    names: set[str] = set()
    render(template, _Recorder(names))
    return names


class _Recorder(dict):
    def __init__(self, names: set[str]) -> None:
        super().__init__()
        self.names = names

    def __contains__(self, key: object) -> bool:
        self.names.add(str(key))
        return True

    def __getitem__(self, key: str) -> str:
        return ""


class SESStandIn(StandIn):
    """SES v2 SendEmail, SendBulkEmail and email templates on 127.0.0.1."""

    max_bytes = 60 * 1024 * 1024  # the raw message is checked first (40 MB)
    max_templates = 10_000

    def __init__(self, *, api_key: str = KEY_ID, secret: str = SECRET, **kw: Any) -> None:
        super().__init__(api_key=api_key, **kw)
        self.secret = secret
        self.rejected: set[str] = set()
        self.configuration_sets: set[str] = {"newsletter"}
        self.templates: dict[str, dict[str, str]] = {}
        self._variables: dict[str, set[str]] = {}
        self.entry_status: dict[str, list[str]] = {}
        self.rendering_failures: list[tuple[str, str]] = []  # (address, why)
        self.calls: dict[str, int] = {}  # operation -> requests answered 200
        self._quota: int | None = None

    def reset(self) -> None:
        super().reset()
        with self.lock:
            self.calls.clear()
            self.rendering_failures.clear()

    def quota(self, left: int | None) -> None:
        with self.lock:
            self._quota = left

    def routes(self, path: str) -> bool:
        return path in ("/v2/email/outbound-emails", "/v2/email/outbound-bulk-emails",
                        TEMPLATES) or path.startswith(TEMPLATES + "/")

    def authorized(self, handler) -> Reply | None:
        match = _CREDENTIAL.search(handler.headers.get("Authorization", ""))
        if match is None or match.group(1) != self.api_key:
            return _error("UnrecognizedClientException",
                          "The security token included in the request is invalid.", 403)
        return None

    def _signature_ok(self, handler, raw: bytes) -> bool:
        from botocore.auth import SigV4Auth
        from botocore.awsrequest import AWSRequest
        from botocore.credentials import Credentials

        match = _CREDENTIAL.search(handler.headers["Authorization"])
        assert match is not None
        signed = match.group(5).split(";")
        headers = {name: handler.headers.get(name, "") for name in signed}
        request = AWSRequest(method=handler.command,
                             url=f"http://{handler.headers.get('Host', '')}{handler.path}",
                             data=raw, headers=headers)
        request.context["timestamp"] = handler.headers.get("X-Amz-Date", "")
        auth = SigV4Auth(Credentials(self.api_key, self.secret), match.group(4),
                         match.group(3))
        wanted = auth.signature(auth.string_to_sign(request, auth.canonical_request(request)),
                                request)
        return wanted == match.group(6)

    def limited(self, reset: float) -> Reply:
        return _error("TooManyRequestsException", "Maximum sending rate exceeded.", 429)

    def failure(self, status: int) -> Reply:
        return _error("InternalFailure", "An internal error occurred.", status)

    def too_large(self) -> Reply:
        return 413, {}, b'{"message": "Request Entity Too Large"}'

    def accept(self, handler, raw: bytes) -> Reply:
        if not self._signature_ok(handler, raw):
            return _error("InvalidSignatureException", "The request signature we calculated "
                          "does not match the signature you provided.", 403)
        path = handler.path.split("?")[0]
        if handler.command == "DELETE" and path.startswith(TEMPLATES + "/"):
            reply = self._delete(unquote(path[len(TEMPLATES) + 1:]))
        elif handler.command != "POST":
            reply = 405, {}, b'{"message": "Method Not Allowed"}'
        else:
            try:
                body = json.loads(raw)
                assert isinstance(body, dict)
            except (ValueError, AssertionError):
                return _error("BadRequestException", "Invalid request: JSON expected.", 400)
            if path == TEMPLATES:
                reply = self._create(body)
            elif path == "/v2/email/outbound-bulk-emails":
                reply = self._bulk(body)
            else:
                reply = self._send(body)
        if reply[0] == 200:
            with self.lock:
                operation = f"{handler.command} {path.split('/')[3]}"
                self.calls[operation] = self.calls.get(operation, 0) + 1
        return reply

    # -- templates -------------------------------------------------------------------------

    def _create(self, body: dict) -> Reply:
        name = str(body.get("TemplateName") or "")
        content = body.get("TemplateContent") or {}
        if not _NAME.fullmatch(name) or not isinstance(content, dict):
            return _error("BadRequestException", f"Invalid template name <{name}>.", 400)
        parts = {key: str(content.get(key) or "") for key in ("Subject", "Text", "Html")}
        if sum(len(v.encode("utf-8")) for v in parts.values()) > MAX_TEMPLATE:
            return _error("BadRequestException", "Template size exceeds the 500 KB limit.", 400)
        try:
            names = set().union(*(variables(v) for v in parts.values()))
        except ValueError as exc:
            names = {f"<cannot render: {exc}>"}  # SES stores it; each send fails to render
        with self.lock:
            if name in self.templates:
                return _error("AlreadyExistsException", f"Template {name} already exists.", 400)
            if len(self.templates) >= self.max_templates:
                return _error("LimitExceededException", "Maximum number of templates "
                              "reached.", 400)
            self.templates[name] = parts
            self._variables[name] = names
        return 200, {}, b"{}"

    def _delete(self, name: str) -> Reply:
        with self.lock:
            if self.templates.pop(name, None) is None:
                return _error("NotFoundException", f"Template {name} does not exist.", 404)
            self._variables.pop(name, None)
        return 200, {}, b"{}"

    # -- SendEmail -------------------------------------------------------------------------

    def _send(self, body: dict) -> Reply:
        try:
            data = base64.b64decode(body["Content"]["Raw"]["Data"], validate=True)
        except (ValueError, KeyError, TypeError):
            return _error("BadRequestException", "Invalid request: raw content expected.", 400)
        if len(data) > MAX_MESSAGE:
            return _error("MessageRejected", "Message length is more than 40 MB.", 400)
        to = list((body.get("Destination") or {}).get("ToAddresses") or [])
        message = None  # parsed when kept, or when it alone names the recipients
        if self.record == "full" or not to:
            message = BytesParser(policy=policy.default).parsebytes(data)
        if not to and message is not None and message["To"]:
            to = [a.addr_spec for a in message["To"].addresses]
        if not to or len(to) > 50:
            return _error("BadRequestException", "Between 1 and 50 destinations.", 400)
        refused = self._refused(body, to)
        if refused is not None:
            return refused
        with self.lock:
            if self._quota is not None:
                if self._quota < len(to):
                    return _error("LimitExceededException", "Daily message quota exceeded.",
                                  400)
                self._quota -= len(to)
            self.accepted_requests += 1
            for email in to:
                self.accepted_one(email, (message, body))
        return 200, {}, json.dumps({"MessageId": _message_id()}).encode()

    def _refused(self, body: dict, to: list[str]) -> Reply | None:
        config_set = body.get("ConfigurationSetName")
        if config_set is not None and config_set not in self.configuration_sets:
            return _error("NotFoundException",
                          f"Configuration set <{config_set}> does not exist.", 404)
        refused = [email for email in to if email.lower() in self.rejected]
        if refused:
            return _error("MessageRejected", "Email address is not verified. The following "
                          f"identities failed the check in region EU-WEST-1: {refused[0]}", 400)
        return None

    # -- SendBulkEmail ---------------------------------------------------------------------

    def _bulk(self, body: dict) -> Reply:
        template = ((body.get("DefaultContent") or {}).get("Template") or {})
        name = str(template.get("TemplateName") or "")
        entries = body.get("BulkEmailEntries")
        if not body.get("FromEmailAddress"):
            return _error("BadRequestException", "FromEmailAddress is required.", 400)
        if not isinstance(entries, list) or not 1 <= len(entries) <= 50:
            return _error("BadRequestException", "Between 1 and 50 BulkEmailEntries.", 400)
        problem = _bad_headers(template.get("Headers") or [])
        for entry in entries:
            to = _addresses(entry)
            if not 1 <= len(to) <= 50:
                problem = problem or "Between 1 and 50 destinations in an entry."
            if not all(a.isascii() and "@" in a for a in to):  # no SMTPUTF8; IDNA domains
                problem = problem or f"Illegal address: {next(a for a in to if a)}"
            problem = problem or _bad_headers(entry.get("ReplacementHeaders") or [])
        if problem:
            return _error("BadRequestException", problem, 400)
        refused = self._refused(body, [])
        if refused is not None:
            return refused
        with self.lock:
            stored = self.templates.get(name)
            names = self._variables.get(name, set())
        if stored is None:
            return _error("NotFoundException", f"Template {name} does not exist.", 404)
        results = [self._entry(body, stored, names, template, entry) for entry in entries]
        with self.lock:
            self.accepted_requests += 1
        return 200, {}, json.dumps({"BulkEmailEntryResults": results}).encode()

    def _entry(self, body: dict, stored: dict[str, str], names: set[str], template: dict,
               entry: dict) -> dict[str, str]:
        to = _addresses(entry)
        with self.lock:
            queued = next((self.entry_status[a.lower()] for a in to
                           if self.entry_status.get(a.lower())), None)
            forced = queued.pop(0) if queued else None
        if forced:
            return {"Status": forced, "Error": f"{forced} (stand-in)"}
        if any(a.lower() in self.rejected for a in to):
            return {"Status": "MESSAGE_REJECTED", "Error": "Email address is not verified."}
        replacement = ((entry.get("ReplacementEmailContent") or {})
                       .get("ReplacementTemplate") or {}).get("ReplacementTemplateData")
        try:
            data = json.loads(replacement or template.get("TemplateData") or "{}")
            missing = names - set(data)
            if missing:
                raise ValueError(f"no value for {sorted(missing)[0]}")
            message = self._render(body, stored, template, entry, data) \
                if self.record == "full" else None
        except ValueError as exc:
            with self.lock:
                self.rendering_failures.append((to[0], str(exc)))
            return {"Status": "SUCCESS", "MessageId": _message_id()}  # SES: no error here
        with self.lock:
            if self._quota is not None:
                if self._quota < len(to):
                    return {"Status": "ACCOUNT_DAILY_QUOTA_EXCEEDED",
                            "Error": "Daily message quota exceeded."}
                self._quota -= len(to)
            for email in to:
                self.accepted_one(email, (message, {**body, "entry": entry}))
        return {"Status": "SUCCESS", "MessageId": _message_id()}

    def _render(self, body: dict, stored: dict[str, str], template: dict, entry: dict,
                data: dict) -> EmailMessage:
        """The message a recipient receives: SES's headers, the merged headers, the
        rendered parts (multipart/alternative, text then HTML)."""
        message = EmailMessage(policy=policy.SMTP)
        message["From"] = body["FromEmailAddress"]
        message["To"] = ", ".join((entry.get("Destination") or {}).get("ToAddresses") or [])
        if body.get("ReplyToAddresses"):
            message["Reply-To"] = ", ".join(body["ReplyToAddresses"])
        message["Subject"] = render(stored["Subject"], data)
        message["Message-ID"] = f"<{_message_id()}@email.amazonses.com>"
        message["Date"] = format_datetime(datetime.now(UTC))
        headers = {h["Name"].lower(): (h["Name"], h["Value"])
                   for h in template.get("Headers") or []}
        headers.update({h["Name"].lower(): (h["Name"], h["Value"])
                        for h in entry.get("ReplacementHeaders") or []})
        for key, value in headers.values():
            message[key] = value
        message.set_content(render(stored["Text"], data), cte="quoted-printable")
        message.add_alternative(render(stored["Html"], data), subtype="html",
                                cte="quoted-printable")
        return BytesParser(policy=policy.default).parsebytes(message.as_bytes())

    def _handler(self):
        base = super()._handler()

        class Handler(base):  # type: ignore[misc, valid-type]
            def do_DELETE(self) -> None:  # noqa: N802 - DeleteEmailTemplate
                self.do_POST()

        return Handler

    def messages(self, email: str) -> list[Any]:
        return [message for message, _ in self.accepted.get(email.lower(), [])]


def _addresses(entry: dict) -> list[str]:
    destination = entry.get("Destination") or {}
    given = [a for key in ("ToAddresses", "CcAddresses", "BccAddresses")
             for a in destination.get(key) or []]
    return [address for _, address in getaddresses(given)]


def _bad_headers(headers: list) -> str | None:
    if len(headers) > 15:
        return "At most 15 headers."
    for header in headers:
        name, value = str(header.get("Name", "")), str(header.get("Value", ""))
        if not _HEADER_NAME.fullmatch(name):
            return f"Invalid header name <{name}>."
        if not value or len(value) > 870 or not value.isascii() or not value.isprintable():
            return f"Invalid value for header <{name}>."
    return None


if __name__ == "__main__":
    serve_main(SESStandIn, KEY_ID)
