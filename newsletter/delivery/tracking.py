"""Click tracking: each link of a send's HTML and text parts becomes ``base_url/c/TOKEN``.

``for_send(settings, issue, rendered, list_name)`` runs once per send, on the personal
copy, when the send is created. It replaces each tracked link's URL with a mark,
``%%click:N%%`` (N its index), records each link's URL and section (``TrackedLink``) and
puts an invisible canary link, index 0, first in the body: no person can click it, so a
hit on it is a scanner's (``feedback.clicks``). ``personalize`` fills the marks per
recipient, like the unsubscribe link (no re-render): ``ClickSigner`` signs (send,
subscriber, link index) into a short token, about 20 characters.

Never rewritten: links to the newsletter's own site (``base_url``: view in browser,
archive, subscribe, unsubscribe, preferences), everything in the footer, ``#`` anchors,
``mailto:`` and ``tel:``. The archive and preview copies are rendered without marks, so
they never carry tracking links. Off when ``track_clicks = false`` (the newsroom), for a
list named in ``untracked_lists``, for an issue with ``track_clicks: false``, and for test
sends (they go to editors). ``track_opens = true`` adds a 1x1 pixel ``base_url/o/TOKEN``.

Each link knows its section: the issue's links, in reading order, come from the model
(Lead, each Hard Numbers and Watching item, each Story, Quote, Sponsor); the rendered
links are matched to them in order, so a link used twice keeps each place's section.
"""

from __future__ import annotations

import binascii
import hashlib
import hmac
import re
from collections.abc import Sequence
from dataclasses import dataclass
from html import unescape

import sqlalchemy as sa

from ..authoring.model import Issue, Section, block_texts, links_in
from ..authoring.render import Rendered
from ..config import Settings
from ..db.tables import send_links
from ..db.transactions import DB, transaction

CLICK_MARK = "%%click:{}%%"
CLICK_MARKS = r"%%click:(\d{1,5})%%"  # personalize's pattern of the marks
OPEN_MARK = "%%open_url%%"
CANARY_KIND = "Canary"
OTHER_KIND = "Other"
TAG_BYTES = 10  # 80 bits: a click link is worth little to forge, and stays short
_CLICK_LABEL = b"newsletter/click/v1\x00"
_OPEN_LABEL = b"newsletter/open/v1\x00"
_HREF = re.compile(r'(<a\b[^>]*?\shref=")([^"]*)(")', re.IGNORECASE)
_TEXT_REF = re.compile(r"(?m)^(\[\d+\] )(\S+)$")
_FOOTER = 'class="nl-footer"'
_BODY = re.compile(r"<body\b[^>]*>", re.IGNORECASE)
CANARY_HTML = (
    '<a href="{}" aria-hidden="true" tabindex="-1" style="display:none;font-size:0;'
    'line-height:0;max-height:0;overflow:hidden;mso-hide:all;color:transparent"></a>'
)
PIXEL_HTML = ('<img src="{}" width="1" height="1" alt="" aria-hidden="true" '
              'style="display:block;width:1px;height:1px;border:0">')


@dataclass(frozen=True)
class TrackedLink:
    idx: int
    url: str
    section_kind: str
    section_title: str | None = None
    item_title: str | None = None


@dataclass(frozen=True)
class Tracked:
    rendered: Rendered  # the personal copy with click marks
    links: tuple[TrackedLink, ...]  # index 0 is the canary


def enabled(settings: Settings, issue: Issue | None, list_name: str) -> bool:
    """Whether a real send of ``issue`` to ``list_name`` tracks clicks (three switches)."""
    if not settings.track_clicks or not settings.base_url:
        return False
    if list_name in settings.untracked_lists:
        return False
    return not (issue is not None and issue.track_clicks is False)


def _section_links(section: Section) -> list[TrackedLink]:
    kind, title = section.kind.value, section.headline or None
    out = [TrackedLink(-1, link.href, kind, title)
           for _, inlines in block_texts(section.blocks) for link in links_in(inlines)]
    for item in section.items:
        out.extend(TrackedLink(-1, link.href, kind, title, item.title)
                   for _, inlines in block_texts(item.blocks) for link in links_in(inlines))
    if section.read_more is not None:
        out.append(TrackedLink(-1, section.read_more.href, kind, title))
    return out


def inventory(issue: Issue) -> list[TrackedLink]:
    """The issue's links in reading order, each with its section (index not yet set)."""
    return [link for section in issue.sections for link in _section_links(section)]


def _tracked(url: str, own: str) -> bool:
    return not (not url or url.startswith(("#", "mailto:", "tel:", "%%", "{{"))
                or (own and (url == own or url.startswith(own + "/"))))


class _Rewriter:
    def __init__(self, issue: Issue, own: str) -> None:
        self.expected = inventory(issue)
        self.cursor = 0
        self.own = own
        # the canary leads to the site's home, should anything follow it
        self.links: list[TrackedLink] = [TrackedLink(0, own or "/", CANARY_KIND)]
        self.by_url: dict[str, int] = {}

    def _place(self, url: str) -> TrackedLink:
        for pos in range(self.cursor, len(self.expected)):
            if self.expected[pos].url == url:
                self.cursor = pos + 1
                return self.expected[pos]
        return TrackedLink(-1, url, OTHER_KIND)

    def html_link(self, match: re.Match[str]) -> str:
        url = unescape(match.group(2))
        if not _tracked(url, self.own):
            return match.group(0)
        place = self._place(url)
        idx = len(self.links)
        self.links.append(TrackedLink(idx, url, place.section_kind, place.section_title,
                                      place.item_title))
        self.by_url.setdefault(url, idx)
        return match.group(1) + CLICK_MARK.format(idx) + match.group(3)

    def text_link(self, match: re.Match[str]) -> str:
        url = match.group(2)
        if not _tracked(url, self.own):
            return match.group(0)
        idx = self.by_url.get(url)
        if idx is None:
            place = self._place(url)
            idx = len(self.links)
            self.links.append(TrackedLink(idx, url, place.section_kind, place.section_title,
                                          place.item_title))
            self.by_url[url] = idx
        return match.group(1) + CLICK_MARK.format(idx)


def rewrite(settings: Settings, issue: Issue, rendered: Rendered) -> Tracked:
    """The personal copy with every tracked link marked, the canary first in the body
    (and the open pixel last, with ``track_opens``); the links with their sections."""
    rewriter = _Rewriter(issue, (settings.base_url or "").rstrip("/"))
    html = rendered.html
    footer = html.find(_FOOTER)
    footer = len(html) if footer < 0 else footer
    body, tail = html[:footer], html[footer:]
    body = _HREF.sub(rewriter.html_link, body)
    opening = _BODY.search(body)
    at = opening.end() if opening else 0
    body = body[:at] + CANARY_HTML.format(CLICK_MARK.format(0)) + body[at:]
    if settings.track_opens:
        end = tail.lower().rfind("</body>")
        end = len(tail) if end < 0 else end
        tail = tail[:end] + PIXEL_HTML.format(OPEN_MARK) + tail[end:]
    text = rendered.text
    refs = text.rfind("\nLinks:\n")
    if refs >= 0:
        text = text[:refs] + _TEXT_REF.sub(rewriter.text_link, text[refs:])
    marked = Rendered(html=body + tail, text=text, subject=rendered.subject,
                      preheader=rendered.preheader)
    return Tracked(marked, tuple(rewriter.links))


def for_send(settings: Settings, issue: Issue | None, rendered: Rendered, list_name: str
             ) -> Tracked:
    """``rewrite`` when tracking is on for this issue and list; else the copy as it is."""
    if issue is None or not enabled(settings, issue, list_name):
        return Tracked(rendered, ())
    return rewrite(settings, issue, rendered)


def store(db: DB, send_id: int, links: Sequence[TrackedLink]) -> None:
    """Keep a send's links (idempotent: a resumed send stores the same ones again)."""
    if not links:
        return
    with transaction(db) as conn:
        known = conn.execute(sa.select(sa.func.count()).select_from(send_links)
                             .where(send_links.c.send_id == send_id)).scalar()
        if known:
            return
        conn.execute(send_links.insert(), [
            {"send_id": send_id, "idx": link.idx, "url": link.url,
             "section_kind": link.section_kind, "section_title": link.section_title,
             "item_title": link.item_title} for link in links])


# -- tokens ------------------------------------------------------------------------------


def _varint(value: int) -> bytes:
    if 0 <= value < 128:  # a link index, a small id: one byte
        return _ONE_BYTE[value]
    out = bytearray()
    while True:
        byte = value & 0x7F
        value >>= 7
        if value:
            out.append(byte | 0x80)
        else:
            out.append(byte)
            return bytes(out)


_ONE_BYTE = [bytes((n,)) for n in range(128)]
_URLSAFE = bytes.maketrans(b"+/", b"-_")


def _varints(data: bytes) -> list[int] | None:
    values, value, shift = [], 0, 0
    for byte in data:
        value |= (byte & 0x7F) << shift
        shift += 7
        if shift > 63:
            return None
        if not byte & 0x80:
            values.append(value)
            value, shift = 0, 0
    return values if shift == 0 else None


def _states(secret: str, label: bytes) -> tuple[hashlib._Hash, hashlib._Hash]:
    key = secret.encode("utf-8")
    if len(key) > 64:
        key = hashlib.sha256(key).digest()
    key = key.ljust(64, b"\0")
    return (hashlib.sha256(bytes(k ^ 0x36 for k in key) + label),
            hashlib.sha256(bytes(k ^ 0x5C for k in key)))


def _mac(states: tuple[hashlib._Hash, hashlib._Hash], payload: bytes) -> bytes:
    inner, outer = states[0].copy(), states[1].copy()
    inner.update(payload)
    outer.update(inner.digest())
    return outer.digest()[:TAG_BYTES]


def _b64(raw: bytes) -> str:
    return binascii.b2a_base64(raw, newline=False).rstrip(b"=").translate(_URLSAFE).decode(
        "ascii")


class ClickSigner:
    """Signs and checks click (and open) tokens: varint(send) varint(subscriber)
    varint(link) + an 80-bit HMAC-SHA256 tag, base64url. Build once per send or app."""

    def __init__(self, settings: Settings, *, opens: bool = False) -> None:
        label = _OPEN_LABEL if opens else _CLICK_LABEL
        secrets = [s for s in (settings.secret_key, *settings.old_secret_keys) if s]
        if not secrets:
            raise ValueError("click tracking needs secret_key")
        self._sign = _states(secrets[0], label)
        self._check = [_states(s, label) for s in secrets]

    def sign(self, send_id: int, subscriber_id: int, idx: int) -> str:
        payload = _varint(send_id) + _varint(subscriber_id) + _varint(idx)
        return _b64(payload + _mac(self._sign, payload))

    def many(self, send_id: int, subscriber_id: int, count: int) -> list[str]:
        """The tokens of links 0..count-1 of one recipient's message."""
        return self.many_for(send_id, (subscriber_id,), count)[0]

    def many_for(self, send_id: int, subscriber_ids: Sequence[int], count: int
                 ) -> list[list[str]]:
        """``many`` for each of these subscribers (a batch's), in one go.

        The same tokens as ``sign`` makes one by one, for a fraction of the CPU (a send
        makes one per link and recipient): the HMAC's inner hash takes each recipient's
        common head once, and the base64url conversion is done for all tokens at once
        ("=" is only ever padding, and " " never in base64).
        """
        if count <= 0:
            return [[] for _ in subscriber_ids]
        inner, outer = self._sign
        send = _varint(send_id)
        tails = [_varint(idx) for idx in range(count)]
        encode = binascii.b2a_base64
        raws: list[bytes] = []
        append = raws.append
        for subscriber_id in subscriber_ids:
            head = send + _varint(subscriber_id)
            common = inner.copy()
            common.update(head)
            for tail in tails:
                h = common.copy()
                h.update(tail)
                o = outer.copy()
                o.update(h.digest())
                append(encode(head + tail + o.digest()[:TAG_BYTES], newline=False))
        if not raws:
            return []
        flat = b" ".join(raws).translate(_URLSAFE).replace(b"=", b"").decode("ascii").split(" ")
        return [flat[at:at + count] for at in range(0, len(flat), count)]

    def verify(self, token: str) -> tuple[int, int, int] | None:
        """(send, subscriber, link) of a token of ours; None for anything else."""
        if not 16 <= len(token) <= 40 or not token.isascii() or len(token) % 4 == 1:
            return None
        try:
            raw = binascii.a2b_base64(token.replace("-", "+").replace("_", "/")
                                      + "=" * (-len(token) % 4), strict_mode=True)
        except (binascii.Error, ValueError):
            return None
        if _b64(raw) != token:
            return None
        payload, tag = raw[:-TAG_BYTES], raw[-TAG_BYTES:]
        values = _varints(payload)
        if values is None or len(values) != 3:
            return None
        ok = False
        for states in self._check:  # every key, so timing tells nothing
            ok |= hmac.compare_digest(_mac(states, payload), tag)
        return (values[0], values[1], values[2]) if ok else None


def click_url(base_url: str, token: str) -> str:
    return f"{base_url}/c/{token}"
