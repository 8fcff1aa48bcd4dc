"""A local stand-in for Amazon SES v2 ``SendEmail`` (``POST /v2/email/outbound-emails``).

It follows the SES v2 API reference (SendEmail, Common Errors) and the botocore model
(sesv2 2019-09-27, rest-json): requests signed with AWS Signature Version 4 (the
signature is checked with the stand-in's secret: 403 ``UnrecognizedClientException`` for
an unknown key id, ``InvalidSignatureException`` for a wrong signature), raw content
(base64 MIME, at most 40 MB: 400 ``MessageRejected`` beyond; the whole request beyond
the server's limit: 413), at most 50 destinations, a configuration set that must exist
(404 ``NotFoundException``), addresses refused as unverified in the sandbox (400
``MessageRejected``), a sending rate (429 ``TooManyRequestsException`` "Maximum sending
rate exceeded.") and a daily quota ("Daily message quota exceeded."), errors named in
``x-amzn-ErrorType`` with a ``{"message"}`` body, and 200 ``{"MessageId"}``.

    with SESStandIn() as ses:          # key id AKIDSTANDIN, secret "standin-secret"
        boto3.client("sesv2", endpoint_url=ses.url, region_name="eu-west-1", ...)
        ses.quota(10)                   # 10 more messages today, then the quota error
        ses.rejected.add("x@example.com")
        ses.messages("a@example.com")   # each raw message accepted for it (parsed)
"""

from __future__ import annotations

import base64
import json
import re
import uuid
from email import policy
from email.parser import BytesParser
from typing import Any

from .standin_base import Reply, StandIn, serve_main

KEY_ID, SECRET = "AKIDSTANDIN", "standin-secret"
MAX_MESSAGE = 40 * 1024 * 1024
_CREDENTIAL = re.compile(r"Credential=([^/]+)/(\d{8})/([^/]+)/([^/]+)/aws4_request, "
                         r"SignedHeaders=([^,]+), Signature=([0-9a-f]+)")


def _error(code: str, message: str, status: int) -> Reply:
    return status, {"x-amzn-ErrorType": f"{code}:http://internal.amazon.com/coral/"
                    "com.amazonaws.sesv2/"}, json.dumps({"message": message}).encode()


class SESStandIn(StandIn):
    """SES v2 SendEmail on 127.0.0.1."""

    max_bytes = 60 * 1024 * 1024  # the raw message is checked first (40 MB)

    def __init__(self, *, api_key: str = KEY_ID, secret: str = SECRET, **kw: Any) -> None:
        super().__init__(api_key=api_key, **kw)
        self.secret = secret
        self.rejected: set[str] = set()
        self.configuration_sets: set[str] = {"newsletter"}
        self._quota: int | None = None

    def quota(self, left: int | None) -> None:
        with self.lock:
            self._quota = left

    def routes(self, path: str) -> bool:
        return path == "/v2/email/outbound-emails"

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
        request = AWSRequest(method="POST", url=f"http://{handler.headers.get('Host', '')}{handler.path}", data=raw,
                             headers=headers)
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
        try:
            body = json.loads(raw)
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
        config_set = body.get("ConfigurationSetName")
        if config_set is not None and config_set not in self.configuration_sets:
            return _error("NotFoundException",
                          f"Configuration set <{config_set}> does not exist.", 404)
        refused = [email for email in to if email.lower() in self.rejected]
        if refused:
            return _error("MessageRejected", "Email address is not verified. The following "
                          f"identities failed the check in region EU-WEST-1: {refused[0]}", 400)
        with self.lock:
            if self._quota is not None:
                if self._quota < len(to):
                    return _error("LimitExceededException", "Daily message quota exceeded.",
                                  400)
                self._quota -= len(to)
            self.accepted_requests += 1
            for email in to:
                self.accepted_one(email, (message, body))
        return 200, {}, json.dumps({"MessageId": f"0100{uuid.uuid4().hex}-000000"}).encode()

    def messages(self, email: str) -> list[Any]:
        return [message for message, _ in self.accepted.get(email.lower(), [])]


if __name__ == "__main__":
    serve_main(SESStandIn, KEY_ID)
