"""A send's messages as one stored SES template plus per-recipient data (``SendBulkEmail``).

SES renders a stored template with Handlebars: ``{{var}}`` and ``{{{var}}}`` put a value
in (SES escapes neither in HTML, its docs say; we write ``{{{var}}}``, which Handlebars
never escapes, and our values are already HTML-escaped by ``Part.values``, the one rule),
``\\{{`` makes what follows literal up to the next ``{{``, and every ``{{`` starts a
mustache. So the template is our rendered subject, text and HTML with each merge slot
(``Part.slots``: links, names, tracked URLs) replaced by ``{{{s0}}}``, ``{{{t0}}}``,
``{{{h0}}}``...; and every literal ``{`` that could start a mustache (two or more in a
row, or one right before a slot) and every ``\\`` before one becomes ``{{{lb}}}`` or
``{{{bs}}}``, whose values are ``{`` and ``\\``. Rendered, each recipient's subject, text
and HTML are exactly what ``OutgoingMessage.subject`` / ``.text`` / ``.html`` give.

Headers: ``List-Id`` and ``List-Unsubscribe-Post`` go in the template call's
``Headers``; ``List-Unsubscribe`` in each entry's ``ReplacementHeaders`` (SES: an entry's
header replaces the template's of the same name, others are added). SES writes its own
``Message-ID`` and ``Date`` whatever a request says (header-fields.html), so neither is
sent; the ledger keeps SES's MessageId of each entry, as for raw messages.

What cannot go this way (``unsuitable``): a template over SES's 500 KB, or a ``List-Id``
that is not printable ASCII of at most 870 characters (SES's limit for a header value);
a recipient whose ``List-Unsubscribe`` is not (``entry_or_none``). The backend sends
those as raw messages instead and says why in the log.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from email.utils import formataddr, parseaddr
from hashlib import sha256
from json.encoder import encode_basestring_ascii  # type: ignore[attr-defined]
from typing import Any

from ..personalize import LIST_UNSUBSCRIBE_POST, MessageTemplate, OutgoingMessage, Part

MAX_ENTRIES = 50  # BulkEmailEntries in one SendBulkEmail call
MAX_TEMPLATE = 500 * 1024  # subject, text and HTML of one stored template (SES quotas)
MAX_HEADER_VALUE = 870  # MessageHeader.Value: printable ASCII, at most 870 characters
_SPECIAL = re.compile(r"\\*(?:\{\{+|\{\Z)|\\+\Z")  # what Handlebars would read as syntax
_KEEP = {"{": "{{{lb}}}", "\\": "{{{bs}}}"}
_q = encode_basestring_ascii  # a str -> a quoted, escaped JSON string (C speed)


def _literal(text: str) -> tuple[str, bool]:
    """``text`` written so that Handlebars renders it back as it is; whether it needed
    the ``lb`` / ``bs`` values."""
    if "{" not in text and "\\" not in text:
        return text, False
    out = _SPECIAL.sub(lambda m: "".join(_KEEP[c] for c in m.group(0)), text)
    return out, out != text


def handlebars(part: Part, prefix: str) -> tuple[str, bool]:
    """The part with ``{{{prefix i}}}`` in its slot ``i``; whether it needs lb/bs."""
    out: list[str] = []
    special = False
    for i, literal in enumerate(part.literals):
        if i:
            out.append(f"{{{{{{{prefix}{i - 1}}}}}}}")
        text, used = _literal(literal)
        out.append(text)
        special = special or used
    return "".join(out), special


def _address(value: str) -> str:
    """An address for a JSON field SES reads as a header: a non-ASCII display name as
    an RFC 2047 encoded-word (SES's rule for From and To)."""
    name, email = parseaddr(value)
    return formataddr((name, email)) if name else email


def _punycode(email: str) -> str:
    """The address with its domain in Punycode (SES's rule); a non-ASCII local part stays
    as it is (SES has no SMTPUTF8: it refuses the address, and that entry alone fails)."""
    local, _, domain = email.rpartition("@")
    try:
        return f"{local}@{domain.encode('idna').decode('ascii')}"
    except UnicodeError:
        return email


def header_ok(value: str) -> bool:
    return len(value) <= MAX_HEADER_VALUE and value.isascii() and value.isprintable()


@dataclass(frozen=True)
class BulkContent:
    """One template's stored content and what every call with it shares."""

    name: str  # the SES template name: the send and a digest of the content
    subject: str
    text: str
    html: str
    parts: tuple[tuple[str, Part], ...]  # (key prefix, part) of the parts with slots
    special: bool  # the values lb and bs are needed
    headers: tuple[dict[str, str], ...]  # the template call's Headers
    from_address: str
    reply_to: str | None
    tags: tuple[dict[str, str], ...]  # the call's default tags: send_id, list_id
    why_not: str | None  # why this template cannot go as a stored template (None: it can)

    def stored(self) -> dict[str, Any]:
        """``CreateEmailTemplate``'s arguments."""
        return {"TemplateName": self.name, "TemplateContent": {
            "Subject": self.subject, "Text": self.text, "Html": self.html}}

    def data(self, m: OutgoingMessage) -> str:
        """The recipient's ReplacementTemplateData: each slot's value by key."""
        url, name, prefs = m.unsubscribe_url, m.name, m.preferences_url
        clicks = m.click_urls
        out = ['{"lb":"{","bs":"\\\\",' if self.special else "{"]
        for prefix, part in self.parts:
            out += [f'"{prefix}{i}":{_q(value)},'
                    for i, value in enumerate(part.values(url, name, prefs, clicks))]
        text = "".join(out)
        return (text[:-1] if text.endswith(",") else text) + "}"

    def entry_or_none(self, m: OutgoingMessage) -> dict[str, Any] | None:
        """The recipient's BulkEmailEntry; None if their headers cannot go in one."""
        unsubscribe = f"<{m.unsubscribe_url}>"
        if not header_ok(unsubscribe):
            return None
        email = m.email if m.email.isascii() else _punycode(m.email)
        entry: dict[str, Any] = {
            "Destination": {"ToAddresses": [formataddr((m.name, email)) if m.name
                                             else email]},
            "ReplacementEmailContent": {"ReplacementTemplate": {
                "ReplacementTemplateData": self.data(m)}},
            "ReplacementHeaders": [{"Name": "List-Unsubscribe", "Value": unsubscribe}],
        }
        if m.subscriber_id is not None:
            entry["ReplacementTags"] = [{"Name": "subscriber_id",
                                         "Value": str(m.subscriber_id)}]
        return entry

    def request(self, entries: list[dict[str, Any]], configuration_set: str | None
                ) -> dict[str, Any]:
        """``SendBulkEmail``'s arguments for these entries."""
        request: dict[str, Any] = {
            "FromEmailAddress": self.from_address,
            "DefaultContent": {"Template": {"TemplateName": self.name, "TemplateData": "{}",
                                            "Headers": list(self.headers)}},
            "DefaultEmailTags": list(self.tags),
            "BulkEmailEntries": entries,
        }
        if self.reply_to:
            request["ReplyToAddresses"] = [self.reply_to]
        if configuration_set:
            request["ConfigurationSetName"] = configuration_set
        return request


def bulk_content(template: MessageTemplate) -> BulkContent:
    """The stored template for ``template`` (and why it cannot be one, if so)."""
    subject, s_special = handlebars(template.subject, "s")
    text, t_special = handlebars(template.text, "t")
    html, h_special = handlebars(template.html, "h")
    digest = sha256("\0".join((subject, text, html)).encode("utf-8")).hexdigest()[:16]
    send = re.sub(r"[^A-Za-z0-9_-]", "-", str(template.send_id))[:24]
    list_id = template.list_id_header
    headers = ({"Name": "List-Id", "Value": list_id},
               {"Name": "List-Unsubscribe-Post", "Value": LIST_UNSUBSCRIBE_POST})
    size = sum(len(x.encode("utf-8")) for x in (subject, text, html))
    why_not = None
    if size > MAX_TEMPLATE:
        why_not = (f"the issue's template would be {size:,} bytes, over SES's "
                   f"{MAX_TEMPLATE:,} for a stored template")
    elif not header_ok(list_id):
        why_not = f"the List-Id {list_id!r} is not printable ASCII of at most 870 characters"
    parts = tuple((prefix, part) for prefix, part in (
        ("s", template.subject), ("t", template.text), ("h", template.html)) if part.slots)
    return BulkContent(
        name=f"newsletter-{send}-{digest}", subject=subject, text=text, html=html,
        parts=parts, special=s_special or t_special or h_special, headers=headers,
        from_address=_address(template.from_address),
        reply_to=_address(template.reply_to) if template.reply_to else None,
        tags=({"Name": "send_id", "Value": str(template.send_id)},
              {"Name": "list_id", "Value": str(template.list_id)}),
        why_not=why_not)
