"""Bounce reports as they arrive in a mailbox: delivery status notifications (RFC 3464)
and abuse reports (ARF, RFC 5965), parsed with the email package.

``read(raw, secret)`` returns one ``Report``: what happened (``hard``: a permanent
failure, status 5.x.x; ``soft``: a temporary one, 4.x.x, or a failure without a status;
``complaint``: an abuse report; ``ignored``: anything else, e.g. a delay warning, an
auto-reply), to whom (the ``Final-Recipient`` / ``Original-Rcpt-To``), and, when the
report carries our VERP return path (``feedback.verp``: in its To header, or the quoted
original's Return-Path), the send and subscriber it is about.
"""

from __future__ import annotations

import email
import email.policy
import hashlib
import re
from dataclasses import dataclass
from email.message import Message

from .verp import Verp, decode

_STATUS = re.compile(r"\b([245])\.(\d{1,3})\.(\d{1,3})\b")
_SCAN_LIMIT = 200_000  # characters of a report searched for the VERP address


@dataclass(frozen=True)
class Report:
    message_key: str  # the report's Message-ID, or a digest of it: applied once
    kind: str  # hard | soft | complaint | ignored
    recipient: str | None
    status: str | None
    detail: str | None
    verp: Verp | None


def _address(value: str | None) -> str | None:
    """``rfc822; ann@example.org`` or ``<ann@example.org>`` -> ``ann@example.org``."""
    if not value:
        return None
    text = value.split(";", 1)[-1].strip().strip("<>").strip()
    return text.lower() if "@" in text else None


def _one_line(value: object) -> str | None:
    text = " ".join(str(value).split()) if value else ""
    return text[:500] or None


def message_key(msg: Message, raw: bytes) -> str:
    mid = (msg.get("Message-ID") or "").strip()
    if mid and len(mid) <= 200:
        return mid
    return "sha256:" + hashlib.sha256(raw).hexdigest()


def _parts(msg: Message, content_type: str) -> list[Message]:
    return [part for part in msg.walk() if part.get_content_type() == content_type]


def _dsn(msg: Message) -> tuple[str, str | None, str | None, str | None]:
    """(kind, recipient, status, diagnostic) from a message/delivery-status part."""
    for part in _parts(msg, "message/delivery-status"):
        blocks = part.get_payload()
        if not isinstance(blocks, list):
            continue
        for block in blocks[1:] or blocks:  # the first block is per-message
            action = (block.get("Action") or "").strip().lower()
            status = _STATUS.search(block.get("Status") or "")
            code = status.group(0) if status else None
            recipient = _address(block.get("Final-Recipient")) or _address(
                block.get("Original-Recipient"))
            detail = _one_line(block.get("Diagnostic-Code"))
            if action == "failed":
                return ("hard" if code and code.startswith("5") else "soft",
                        recipient, code, detail)
            if action == "delayed":
                return "ignored", recipient, code, detail
    return "ignored", None, None, None


def _arf(msg: Message) -> tuple[str, str | None, str | None, str | None]:
    for part in _parts(msg, "message/feedback-report"):
        payload = part.get_payload()
        fields = payload[0] if isinstance(payload, list) and payload else part
        kind = (fields.get("Feedback-Type") or "abuse").strip().lower()
        recipient = _address(fields.get("Original-Rcpt-To"))
        if recipient is None:
            for original in _parts(msg, "message/rfc822") + _parts(msg, "text/rfc822-headers"):
                inner = original.get_payload()
                headers = inner[0] if isinstance(inner, list) and inner else None
                if headers is None and isinstance(inner, str):
                    headers = email.message_from_string(inner)
                if headers is not None:
                    recipient = _address(headers.get("To"))
                    break
        return "complaint", recipient, None, f"feedback report: {kind}"
    return "ignored", None, None, None


def read(raw: bytes, secret: str) -> Report:
    """What one message of the bounce mailbox reports (see the module docs)."""
    msg = email.message_from_bytes(raw, policy=email.policy.compat32)
    report_type = (msg.get_param("report-type") or "").lower() \
        if msg.get_content_type() == "multipart/report" else ""
    if report_type == "feedback-report" or _parts(msg, "message/feedback-report"):
        kind, recipient, status, detail = _arf(msg)
    elif report_type == "delivery-status" or _parts(msg, "message/delivery-status"):
        kind, recipient, status, detail = _dsn(msg)
    else:
        kind, recipient, status, detail = "ignored", None, None, None
    verp = decode(secret, raw[:_SCAN_LIMIT].decode("latin-1")) if kind != "ignored" else None
    return Report(message_key(msg, raw), kind, recipient, status, detail, verp)
