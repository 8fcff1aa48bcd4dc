"""Per-recipient values made safe for email headers: the one cleaning rule, and folding.

A subscriber's name (and anything else that ends up in a header per recipient) comes
from people: a CSV export, a sign-up form, a hand edit. Python's email policy refuses a
header value containing anything ``str.splitlines()`` treats as a line break (``\\n``
``\\r`` ``\\v`` ``\\f`` ``\\x1c`` ``\\x1d`` ``\\x1e`` ``\\x85`` U+2028 U+2029), and a
mail server refuses a header line longer than 998 octets (RFC 5322 2.1.1). So:

- ``clean_text(value, limit)`` is the rule, applied where a name enters (``subscribers
  add``, the CSV import's bulk insert, the library's ``add_subscriber``) and again when a
  message is built (for rows stored before, or written by hand): every control character
  and every line or paragraph separator becomes a space, surrogates and the invisible
  bidirectional-override characters (which can disguise a name) are dropped, runs of
  white space become one space, the ends are trimmed, and the text is cut to ``limit``
  characters (``NAME_MAX`` for a name) on a character boundary.
- ``is_clean(value, limit)`` says, fast, whether ``clean_text`` would leave it unchanged.
- ``address_header`` and ``text_header`` write ``To:`` and an unstructured header such
  as ``Subject:`` as CRLF-ended lines of at most ``LINE_MAX`` (78) octets: plain ASCII
  words fold at spaces; anything else (non-ASCII, a word too long for a line, text that
  looks like an encoded-word) becomes RFC 2047 encoded-words, each at most 75 characters
  and split between characters, never inside one.
"""

from __future__ import annotations

import re
from base64 import b64encode
from email.utils import formataddr

NAME_MAX = 200  # characters of a display name kept (a real name is far shorter)
TEXT_MAX = 998  # characters of any other per-recipient header text kept
ADDRESS_MAX = 254  # RFC 5321: the longest address a server must accept
LINE_MAX = 78  # RFC 5322: SHOULD; no line we write is longer
_WORD_BYTES = 42  # UTF-8 octets per encoded-word: 12 + 56 base64 characters = 68

#: Every C0 and C1 control (this covers all of str.splitlines()'s line boundaries but
#: two) and the Unicode line and paragraph separators: each becomes a space.
_SPACE = re.compile("[\x00-\x1f\x7f-\x9f\u2028\u2029]")
#: Lone surrogates (cannot be encoded), bidi embeddings/overrides/isolates and the BOM.
_DROP = re.compile("[\ud800-\udfff\u202a-\u202e\u2066-\u2069\ufeff]")
_ENCODED_WORD = "=?"
#: A display name that needs no quoting: RFC 5322 atext (less "=" and "?", which could
#: start an encoded-word) and spaces.
_ATOMS = re.compile(r"[A-Za-z0-9!#$%&'*+/^_`{|}~ -]+")


def is_clean(value: str, limit: int = NAME_MAX) -> bool:
    """True when ``clean_text(value, limit)`` is ``value`` itself (the fast check)."""
    return 0 < len(value) <= limit and value.isprintable() and value[0] != " " != value[-1]


def clean_text(value: object, limit: int = NAME_MAX) -> str | None:
    """``value`` safe for a header (and a body): one line, no controls, at most ``limit``
    characters; None when nothing is left."""
    if value is None:
        return None
    text = value if isinstance(value, str) else str(value)
    if is_clean(text, limit):
        return text
    text = " ".join(_SPACE.sub(" ", _DROP.sub("", text)).split())
    if len(text) > limit:
        text = text[:limit].rstrip(" \u200c\u200d")
    return text or None


def sendable_address(email: object) -> bool:
    """An address a message can be built for: printable, no spaces, an ``@``, not
    longer than an SMTP server must accept (stored addresses are validated already)."""
    return (
        isinstance(email, str) and 2 < len(email) <= ADDRESS_MAX and email.isprintable()
        and " " not in email and "@" in email
    )


def encoded_words(text: str) -> list[str]:
    """``text`` as RFC 2047 "B" encoded-words of at most 68 characters, split between
    characters (a decoder joins adjacent encoded-words without the space between)."""
    words: list[str] = []
    chunk: list[bytes] = []
    size = 0
    for char in text:
        data = char.encode("utf-8")
        if size + len(data) > _WORD_BYTES and chunk:
            words.append(_word(b"".join(chunk)))
            chunk, size = [], 0
        chunk.append(data)
        size += len(data)
    if chunk or not words:
        words.append(_word(b"".join(chunk)))
    return words


def _word(data: bytes) -> str:
    return "=?utf-8?b?" + b64encode(data).decode("ascii") + "?="


def _fold(name: str, pieces: list[str]) -> bytes:
    """``Name: piece piece ...``: pieces joined by a space, a line break before a piece
    that would pass LINE_MAX (every piece fits on a line of its own)."""
    lines: list[str] = []
    line = name + ":"
    for piece in pieces:
        if len(line) + 1 + len(piece) > LINE_MAX and line != name + ":":
            lines.append(line)
            line = ""
        line += " " + piece
    lines.append(line)
    return ("\r\n".join(lines) + "\r\n").encode("ascii")


def _plain_words(text: str, room: int) -> list[str] | None:
    """The words of ``text`` when it can go in a header as it is, else None."""
    if not text.isascii() or _ENCODED_WORD in text or not text.isprintable():
        return None
    words = text.split(" ")
    if "" in words or max(len(word) for word in words) > room:
        return None  # doubled spaces would be lost in folding; a word too long to fold
    return words


def text_header(name: str, value: str) -> bytes:
    """An unstructured header (``Subject``), folded: lines of at most 78 octets."""
    room = LINE_MAX - len(name) - 2
    words = _plain_words(value, room)
    return _fold(name, words if words is not None else encoded_words(value))


def address_header(name: str, display_name: str | None, email: str) -> bytes:
    """``To: display name <email>`` (or ``To: email``), folded: lines of at most 78
    octets. The display name is quoted when it fits on the line as it is, else sent as
    encoded-words. An internationalized (UTF-8) address goes as it is, without a name
    (RFC 6532)."""
    if not email.isascii():
        return f"{name}: {email}\r\n".encode()
    if not display_name:
        return _fold(name, [email])
    if _ATOMS.fullmatch(display_name) and len(name) + len(display_name) + len(email) < 74:
        return f"{name}: {display_name} <{email}>\r\n".encode("ascii")  # the usual case
    if display_name.isascii() and _ENCODED_WORD not in display_name:
        line = formataddr((display_name, email))
        if len(name) + 2 + len(line) <= LINE_MAX and line.isprintable():
            return f"{name}: {line}\r\n".encode("ascii")
    return _fold(name, [*encoded_words(display_name), f"<{email}>"])
