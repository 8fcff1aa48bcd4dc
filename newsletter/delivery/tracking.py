"""Click tracking: each link of a send's HTML and text parts becomes ``base_url/c/TOKEN``.

``for_send(settings, issue, rendered, list_name)`` runs once per send, on the personal
copy, when the send is created. It replaces each tracked link's URL with a mark,
``%%click:N%%`` (N its index), records each link's URL and section (``TrackedLink``) and
puts an invisible canary link, index 0, first in the body: no person can click it, so a
hit on it is a scanner's (``feedback.clicks``). ``personalize`` fills the marks per
recipient, like the unsubscribe link (no re-render): ``ClickSigner.readers`` signs one
short token per recipient, the reader token (send, subscriber; about 20 characters), and
each tracked link is ``base_url/c/READER.N`` (N the link's index), the pixel
``base_url/o/READER``. One signature covers all of a recipient's links: the link index is
not signed, since whoever holds one of a reader's links holds all of them anyway (the
same email), and a forged index can only name another link of the same send. Links
mailed before the reader token, ``base_url/c/TOKEN`` with (send, subscriber, index) each
signed alone, keep working (``ClickSigner.verify``).

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

import re
from collections.abc import Sequence
from dataclasses import dataclass
from html import unescape

import sqlalchemy as sa

from .. import signing
from ..authoring.model import Issue, Section, block_texts, links_in
from ..authoring.render import Rendered
from ..config import Settings
from ..db.tables import send_links
from ..db.transactions import DB, transaction
from ..signing import varint

CLICK_MARK = "%%click:{}%%"
CLICK_MARKS = r"%%click:(\d{1,5})%%"  # personalize's pattern of the marks
OPEN_MARK = "%%open_url%%"
CANARY_KIND = "Canary"
OTHER_KIND = "Other"
TAG_BYTES = 10  # 80 bits: a click link is worth little to forge, and stays short
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
# signed by ``newsletter.signing`` (keys, rotation, HMAC, encoding): purposes "reader",
# "click" and "open", no issue day (a tracked link works as long as its key is kept)


READER = "reader"  # the purpose of reader tokens (one per recipient of a send)
_INDEX = re.compile(r"0|[1-9][0-9]{0,4}")  # a link index as a click URL writes it


class ClickSigner:
    """Signs and checks click and open tokens. Build once per send or app.

    Reader tokens (what a send signs, ``readers``): varint(send) varint(subscriber) + an
    80-bit HMAC-SHA256 tag under the purpose "reader", base64url; a click URL adds
    ``.N``. The tokens of earlier sends (``sign``, ``many``: varint(send)
    varint(subscriber) varint(link) + tag, purpose "click", or "open" with ``opens``;
    ``sign`` and ``many`` still make them, for tests) still verify."""

    def __init__(self, settings: Settings, *, opens: bool = False) -> None:
        if not (settings.secret_key or any(settings.old_secret_keys)):
            raise ValueError("click tracking needs secret_key")
        self._ring = signing.KeyRing(settings.secret_key, settings.old_secret_keys,
                                     "open" if opens else "click", TAG_BYTES)
        self._reader = signing.KeyRing(settings.secret_key, settings.old_secret_keys,
                                       READER, TAG_BYTES)
        self.opens = opens

    def readers(self, send_id: int, subscriber_ids: Sequence[int]) -> list[str]:
        """The reader token of each of these subscribers for this send: one signature per
        recipient, whatever the number of links."""
        send = varint(send_id)
        return self._reader.mac().sign_many([send + varint(who) for who in subscriber_ids])

    def reader(self, token: str) -> tuple[int, int] | None:
        """(send, subscriber) of a reader token of ours; None for anything else."""
        values = _values(self._reader, token, 2)
        return None if values is None else (values[0], values[1])

    def sign(self, send_id: int, subscriber_id: int, idx: int) -> str:
        return self._ring.sign(varint(send_id) + varint(subscriber_id) + varint(idx))

    def many(self, send_id: int, subscriber_id: int, count: int) -> list[str]:
        """``sign`` of links 0..count-1 of one recipient's message (earlier sends' form)."""
        head = varint(send_id) + varint(subscriber_id)
        return self._ring.mac().sign_many([head + varint(i) for i in range(count)])

    def verify(self, token: str) -> tuple[int, int, int] | None:
        """(send, subscriber, link) of a token of ours: a link's ``READER.N``, the
        pixel's ``READER`` (link 0; with ``opens``), or one signed before reader tokens
        (same purpose); None for anything else."""
        head, dot, index = token.partition(".")
        if dot:
            found = None if self.opens or not _INDEX.fullmatch(index) else self.reader(head)
            return None if found is None else (found[0], found[1], int(index))
        if self.opens and (found := self.reader(token)) is not None:
            return found[0], found[1], 0
        values = _values(self._ring, token, 3)
        return None if values is None else (values[0], values[1], values[2])


def _values(ring: signing.KeyRing, token: str, count: int) -> list[int] | None:
    """The ``count`` values a token of ``ring`` carries (16 to 40 characters); None for
    anything else."""
    if not 16 <= len(token) <= 40:
        return None
    opened = ring.split(token, 40)
    values = None if opened is None else signing.read_varints(opened[0])
    return values if values is not None and len(values) == count else None


def click_url(base_url: str, reader: str, idx: int) -> str:
    """The tracked URL of link ``idx`` for the recipient whose reader token is ``reader``."""
    return f"{base_url}/c/{reader}.{idx}"


def open_url(base_url: str, reader: str) -> str:
    """The open pixel's URL for the recipient whose reader token is ``reader``."""
    return f"{base_url}/o/{reader}"
