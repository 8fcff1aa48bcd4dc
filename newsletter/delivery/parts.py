"""A body (HTML or plain text) split at its per-recipient holes, filled by substitution.

``Part.split`` cuts a rendered body once per send at its marks (the unsubscribe and
preference links, ``{{name}}`` fields, name-bearing text blocks to rewrap, tracked links
and the open pixel); ``Part.fill`` / ``Part.encode`` put each recipient's values in,
quoted-printable encoded (and dot-stuffed for SMTP) from pre-encoded pieces. Used by
``personalize.MessageTemplate``.
"""

from __future__ import annotations

import binascii
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from html import escape
from typing import NamedTuple

from ..authoring.render import NAME_FIELD, PREFERENCES_MARK, UNSUBSCRIBE_MARK
from ..authoring.text import REWRAP_BLOCK, rewrap
from .tracking import CLICK_MARK, CLICK_MARKS, OPEN_MARK

# a text-part block with a name field, wrapped per recipient (text.rewrap), comes first:
# the name fields inside it are filled by rewrap, not one by one
_MARKS = re.compile(
    REWRAP_BLOCK + "|" + re.escape(UNSUBSCRIBE_MARK) + "|" + re.escape(PREFERENCES_MARK) + "|"
    + NAME_FIELD.pattern + "|" + CLICK_MARKS + "|" + re.escape(OPEN_MARK)
)
_QP_MAX = 76
_DOTS = re.compile(rb"(?m)^\.")


class Slot(NamedTuple):
    """A per-recipient hole in a body: ``kind`` is "unsubscribe", "preferences", "name",
    "rewrap" (a plain-text block wrapped after the name is filled in; ``fallback`` holds it),
    "click" (a tracked link; ``fallback`` holds its index) or "open" (the pixel)."""

    kind: str
    fallback: str = ""


def _softbreak_end(encoded: bytes) -> bytes:
    """``encoded`` (quoted-printable) followed by a soft line break, lines kept <= 76."""
    start = encoded.rfind(b"\n") + 1
    last = len(encoded) - start
    if last + 1 > _QP_MAX:
        cut = start + _QP_MAX - 4
        # never split an "=XX" escape: '=' appears in QP output only as an escape lead
        if encoded[cut - 1 : cut] == b"=":
            cut -= 1
        elif encoded[cut - 2 : cut - 1] == b"=":
            cut -= 2
        encoded = encoded[:cut] + b"=\r\n" + encoded[cut:]
    return encoded + b"=\r\n"


def _qp(data: str) -> bytes:
    """Quoted-printable (CRLF line ends) of ``data``, whose line ends are already CRLF."""
    encoded = binascii.b2a_qp(data.encode("utf-8"), quotetabs=False, istext=True, header=False)
    # soft breaks use LF when the input has no CRLF; '=' itself is always encoded as =3D
    return encoded.replace(b"=\n", b"=\r\n")


def _stuff(data: bytes) -> bytes:
    """SMTP transparency (RFC 5321 4.5.2): double a '.' that starts a line."""
    if data.startswith(b".") or b"\n." in data:
        return _DOTS.sub(b"..", data)
    return data


def _crlf(text: str) -> str:
    return text.replace("\r\n", "\n").replace("\r", "\n").replace("\n", "\r\n")


@dataclass(frozen=True)
class Part:
    """One body (or the subject) split at its merge marks, literal pieces pre-encoded."""

    literals: tuple[str, ...]  # len(literals) == len(slots) + 1
    slots: tuple[Slot, ...]
    html: bool
    encoded: tuple[bytes, ...] = field(default=(), repr=False)
    stuffed: tuple[bytes, ...] = field(default=(), repr=False)  # encoded, SMTP dot-stuffed

    @classmethod
    def split(cls, content: str, *, html: bool, encode: bool = True) -> Part:
        literals: list[str] = []
        slots: list[Slot] = []
        pos = 0
        for match in _MARKS.finditer(content):
            literals.append(content[pos : match.start()])
            if match.group(0) == UNSUBSCRIBE_MARK:
                slots.append(Slot("unsubscribe"))
            elif match.group(0).startswith(REWRAP_BLOCK[0]):
                slots.append(Slot("rewrap", match.group(0)))
            elif match.group(0) == PREFERENCES_MARK:
                slots.append(Slot("preferences"))
            elif match.group(0).startswith("%%click:"):
                slots.append(Slot("click", match.group(0)[8:-2]))
            elif match.group(0) == OPEN_MARK:
                slots.append(Slot("open"))
            else:
                slots.append(Slot("name", match.group(1) or ""))
            pos = match.end()
        literals.append(content[pos:])
        encoded: tuple[bytes, ...] = ()
        if encode:
            pieces = [_qp(_crlf(piece)) for piece in literals]
            encoded = tuple(
                _softbreak_end(piece) if i < len(pieces) - 1 else piece
                for i, piece in enumerate(pieces)
            )
        # every piece starts at a line start, so each can be dot-stuffed on its own
        stuffed = tuple(_DOTS.sub(b"..", piece) for piece in encoded)
        return cls(tuple(literals), tuple(slots), html, encoded, stuffed)

    @property
    def personal(self) -> bool:
        return bool(self.slots)

    @property
    def has_preferences(self) -> bool:
        return any(slot.kind == "preferences" for slot in self.slots)

    @property
    def links(self) -> int:
        """How many tracked links the part's marks need (the highest index + 1)."""
        return max((int(s.fallback) + 1 for s in self.slots if s.kind == "click"), default=0)

    def values(self, url: str, name: str | None, preferences: str = "",
               clicks: Sequence[str] = ()) -> list[str]:
        """The per-recipient text for each slot (HTML-escaped in an HTML part);
        ``clicks``: the recipient's tracked URLs by link index, then the pixel's."""
        out: list[str] = []
        for slot in self.slots:
            if slot.kind == "click":
                link = clicks[int(slot.fallback)]
                out.append(escape(link) if self.html else link)
            elif slot.kind == "open":
                out.append(escape(clicks[-1]))
            elif slot.kind == "unsubscribe":
                out.append(escape(url) if self.html else url)
            elif slot.kind == "rewrap":
                out.append(rewrap(slot.fallback, name))
            elif slot.kind == "preferences":
                out.append(escape(preferences) if self.html else preferences)
            elif name:
                out.append(escape(name) if self.html else name)
            else:
                out.append(slot.fallback)  # already HTML in the HTML part
        return out

    def names_only(self, longer_than: int = 0) -> Part:
        """This part with each "rewrap" block longer than ``longer_than`` wrapped as it
        is, its name fields left as "name" slots: for a backend whose per-recipient values
        are limited in size (SendGrid), whose readers then get those blocks wrapped before
        the name is filled in."""
        if all(s.kind != "rewrap" or len(s.fallback) <= longer_than for s in self.slots):
            return self
        marks = [
            rewrap(slot.fallback, None, fill=False)
            if slot.kind == "rewrap" and len(slot.fallback) > longer_than
            else slot.fallback if slot.kind == "rewrap"
            else UNSUBSCRIBE_MARK if slot.kind == "unsubscribe"
            else CLICK_MARK.format(slot.fallback) if slot.kind == "click"
            else OPEN_MARK if slot.kind == "open"
            else f"{{{{name|{slot.fallback}}}}}" if slot.fallback else "{{name}}"
            for slot in self.slots
        ]
        return Part.split(self.fill(marks), html=self.html, encode=bool(self.encoded))

    def fill(self, values: Sequence[str]) -> str:
        if not values:
            return self.literals[0]
        out = [self.literals[0]]
        for value, literal in zip(values, self.literals[1:], strict=True):
            out.append(value)
            out.append(literal)
        return "".join(out)

    def encode(self, values: Sequence[str], *, smtp: bool = False) -> bytes:
        """The part's body, quoted-printable; ``smtp=True``: dot-stuffed for DATA."""
        pieces = self.stuffed if smtp else self.encoded
        if not values:
            return pieces[0]
        out = [pieces[0]]
        for value, literal in zip(values, pieces[1:], strict=True):
            encoded = _softbreak_end(_qp(_crlf(value)))  # a rewrapped block has lines
            out.append(_stuff(encoded) if smtp else encoded)
            out.append(literal)
        return b"".join(out)
