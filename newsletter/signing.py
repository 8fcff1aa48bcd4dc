"""Signed tokens, all kinds: the one place that signs, encodes, rotates keys and checks.

Every token the newsletter puts in a link (unsubscribe, preference centre, sign-up
confirmation and form stamps, click and open tracking) and the preference form's nonce
is made here, the same way:

- a **purpose** per token kind: its label, ``newsletter/<purpose>/v1`` and a NUL byte, is
  signed in front of the payload, so a token made for one purpose never verifies for
  another (``label``);
- **HMAC-SHA256** (RFC 2104) of the payload under the project's ``secret_key``, truncated
  to the purpose's tag size (16 bytes, as RFC 4868's HMAC-SHA-256-128; 10 for click and
  open tokens, which must stay short and are worth little to forge). The key's inner and
  outer hash states are prepared once per key and purpose (``Mac``): a tag costs two
  SHA-256 state copies, a third of the time of an ``hmac.digest`` call;
- payloads are **varints** of non-negative integers below 2**63 (``varint``,
  ``read_varints``: only the canonical encoding of each value is accepted, so each value
  has one token);
- **base64url** without padding (``encode``, ``Mac.sign_many``, ``decode``: only the
  canonical encoding is accepted, never stray low bits or padding);
- **key rotation** (``KeyRing``): tokens are signed with ``secret_key`` and checked
  against it and every one of ``old_secret_keys``; a token that carries its issue day and
  was signed with an old key is accepted for ``old_secret_days`` after it was issued
  (``old_key_expired``). Tokens without a day (click and open) verify with an old key as
  long as it is kept;
- **constant-time verification**: the tag is compared with ``hmac.compare_digest``
  against every key, so timing tells neither whether nor which key matched.

The per-kind modules (``audience.tokens``: unsubscribe, preferences, purposes;
``delivery.tracking``: clicks and opens; ``web.preferences``: the form nonce) only lay out
their payloads and say which errors they raise.
"""

from __future__ import annotations

import binascii
import hashlib
import hmac
import re
import time
from collections.abc import Iterable, Sequence
from functools import lru_cache

from .config import Settings, require

DAY = 86400
MAX_VALUE = (1 << 63) - 1
TAG_BYTES = 16  # the default tag: 128 bits
_URLSAFE = bytes.maketrans(b"+/", b"-_")
_PURPOSE = re.compile(r"[a-z][a-z0-9-]{0,39}")


def today() -> int:
    """Days since 1970-01-01, UTC: the issue day tokens carry."""
    return int(time.time()) // DAY


@lru_cache(maxsize=128)
def label(purpose: str) -> bytes:
    """The bytes signed in front of every payload of ``purpose``."""
    if not _PURPOSE.fullmatch(purpose):
        raise ValueError(f"a token purpose is a short lowercase word, not {purpose!r}")
    return f"newsletter/{purpose}/v1".encode() + b"\x00"


# -- payloads: varints -----------------------------------------------------------------


def varint(value: int) -> bytes:
    """``value`` (0 <= value < 2**63) as a little-endian base-128 varint."""
    if value < 2_097_152:  # up to three bytes (every id of most lists), without a loop
        if value < 128:
            return bytes((value,))
        if value < 16_384:
            return bytes((value & 0x7F | 0x80, value >> 7))
        return bytes((value & 0x7F | 0x80, (value >> 7) & 0x7F | 0x80, value >> 14))
    out = bytearray()
    while True:
        byte = value & 0x7F
        value >>= 7
        if value:
            out.append(byte | 0x80)
        else:
            out.append(byte)
            return bytes(out)


def read_varints(data: bytes) -> list[int] | None:
    """Every value of a payload of varints; None unless each is canonical (no padding
    byte), below 2**63 and the last one complete."""
    values: list[int] = []
    value = shift = 0
    for byte in data:
        if shift > 56:  # a tenth byte: 2**63 or more
            return None
        value |= (byte & 0x7F) << shift
        shift += 7
        if not byte & 0x80:
            if byte == 0 and shift > 7:  # a padded encoding: one token per value
                return None
            values.append(value)
            value = shift = 0
    return values if shift == 0 else None


def check_value(name: str, value: int) -> int:
    """``value`` if it is an integer a token can carry; else ValueError naming it."""
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= MAX_VALUE:
        raise ValueError(f"{name} must be a non-negative integer, not {value!r}")
    return value


# -- encoding: base64url without padding -------------------------------------------------


def encode(raw: bytes) -> str:
    return binascii.b2a_base64(raw, newline=False).translate(_URLSAFE).rstrip(b"=").decode(
        "ascii")


# the last character of a canonical encoding has no stray low bits: with 2 (or 3)
# characters in the last group, only these 4 (or 16) of the 64 can end it
_LAST = {2: frozenset("AQgw"), 3: frozenset("AEIMQUYcgkosw048")}
_PAD = {0: "", 2: "==", 3: "="}


def decode(token: object, limit: int) -> bytes | None:
    """The bytes of a canonical base64url token of at most ``limit`` characters; None for
    anything else (wrong type, length or alphabet, padding, stray low bits)."""
    if not isinstance(token, str) or not 0 < len(token) <= limit or not token.isascii():
        return None
    rest = len(token) % 4
    if rest == 1 or (rest and token[-1] not in _LAST[rest]) or (
            "+" in token or "/" in token or "=" in token):
        return None
    try:  # strict: any character outside the alphabet is an error, never skipped
        return binascii.a2b_base64(token.replace("-", "+").replace("_", "/") + _PAD[rest],
                                   strict_mode=True)
    except (binascii.Error, ValueError):
        return None


# -- HMAC --------------------------------------------------------------------------------


@lru_cache(maxsize=64)
def _states(secret: str, purpose_label: bytes) -> tuple[hashlib._Hash, hashlib._Hash]:
    """HMAC-SHA256's inner state (key XOR ipad, then the label) and outer state."""
    key = secret.encode("utf-8")
    if len(key) > 64:
        key = hashlib.sha256(key).digest()
    key = key.ljust(64, b"\0")
    return (hashlib.sha256(bytes(k ^ 0x36 for k in key) + purpose_label),
            hashlib.sha256(bytes(k ^ 0x5C for k in key)))


class Mac:
    """HMAC-SHA256(secret, label(purpose) + payload), truncated to ``size`` bytes."""

    __slots__ = ("inner", "outer", "size")

    def __init__(self, secret: str, purpose: str, size: int = TAG_BYTES) -> None:
        self.inner, self.outer = _states(secret, label(purpose))
        self.size = size

    def __call__(self, payload: bytes) -> bytes:
        inner = self.inner.copy()
        inner.update(payload)
        outer = self.outer.copy()
        outer.update(inner.digest())
        return outer.digest()[:self.size]

    def sign_many(self, payloads: Iterable[bytes]) -> list[str]:
        """``encode(payload + tag)`` of each payload: the batch path of a send."""
        inner, outer, size = self.inner, self.outer, self.size
        b64 = binascii.b2a_base64
        raws: list[bytes] = []
        append = raws.append
        for payload in payloads:
            h = inner.copy()
            h.update(payload)
            o = outer.copy()
            o.update(h.digest())
            append(b64(payload + o.digest()[:size], newline=False))
        return _urlsafe(raws)

    def sign_halves(self, payloads: Iterable[bytes]) -> tuple[list[str], list[str]]:
        """Two tokens of each payload from one HMAC: ``sign_many``'s (the tag is the
        digest's first ``size`` bytes) and one whose tag is the next ``size`` bytes.

        The two tags are disjoint parts of one HMAC-SHA256 output: knowing one tells
        nothing of the other (HMAC is a pseudorandom function: each part of its output is
        unpredictable without the key, whatever else of it is known), so each token opens
        only what its own part is checked for (``KeyRing.check``'s ``half``)."""
        inner, outer, size = self.inner, self.outer, self.size
        if 2 * size > 32:
            raise ValueError(f"two tags of {size} bytes do not fit in one HMAC-SHA256")
        b64 = binascii.b2a_base64
        firsts: list[bytes] = []
        seconds: list[bytes] = []
        for payload in payloads:
            h = inner.copy()
            h.update(payload)
            o = outer.copy()
            o.update(h.digest())
            digest = o.digest()
            firsts.append(b64(payload + digest[:size], newline=False))
            seconds.append(b64(payload + digest[size:2 * size], newline=False))
        return _urlsafe(firsts), _urlsafe(seconds)


def _urlsafe(raws: list[bytes]) -> list[str]:
    """Standard base64 lines (``b2a_base64``) as base64url without padding, all at once:
    "=" is only ever padding, " " never base64."""
    if not raws:
        return []
    return b" ".join(raws).translate(_URLSAFE).replace(b"=", b"").decode("ascii").split(" ")


class KeyRing:
    """The project's keys for one purpose: signs with the current one, checks against
    every one kept. ``key_index`` 0 is ``secret_key``, 1.. ``old_secret_keys`` in order.
    Built by ``key_ring`` (which checks the settings first)."""

    def __init__(self, secret_key: str | None, old_secret_keys: Sequence[str], purpose: str,
                 size: int = TAG_BYTES) -> None:
        keys = [secret_key, *old_secret_keys]
        self.macs = [(i, Mac(secret, purpose, size)) for i, secret in enumerate(keys) if secret]
        self.signing = Mac(secret_key, purpose, size) if secret_key else None
        self.size = size
        self._states = [(i, mac.inner, mac.outer) for i, mac in self.macs]

    def mac(self) -> Mac:
        """The signing key's ``Mac``: the current key's (``key_ring(..., signs=True)``
        makes sure there is one), else the first key kept."""
        return self.signing or self.macs[0][1]

    def sign(self, payload: bytes) -> str:
        return encode(payload + self.mac()(payload))

    def split(self, token: object, limit: int) -> tuple[bytes, int] | None:
        """(payload, key_index) of a token of ours; None for anything else."""
        raw = decode(token, limit)
        return None if raw is None else self.check(raw)

    def check(self, raw: bytes, half: int = 0) -> tuple[bytes, int] | None:
        """(payload, key_index) of a decoded token whose tag one of the keys made;
        ``half`` 1: a tag that is the digest's second ``size`` bytes (``sign_halves``)."""
        if len(raw) <= self.size:
            return None
        size = self.size
        payload, tag = raw[:-size], raw[-size:]
        start = size if half else 0
        found = -1
        same = hmac.compare_digest
        for index, inner, outer in self._states:  # every key: timing tells not which matched
            h = inner.copy()  # Mac.__call__, inline: this runs per click
            h.update(payload)
            o = outer.copy()
            o.update(h.digest())
            if same(o.digest()[start:start + size], tag) and found < 0:
                found = index
        return None if found < 0 else (payload, found)


def key_ring(settings: Settings, purpose: str, size: int = TAG_BYTES, *,
             signs: bool = False) -> KeyRing:
    """The ``KeyRing`` of these settings' keys for ``purpose``, built once per set of keys
    (a token verified per request does not prepare the keys again). A one-line
    ConfigError without ``secret_key`` (``signs``), or without any key at all."""
    if signs or not any(settings.old_secret_keys):
        require(settings, "secret_key",
                purpose=f"{'signing' if signs else 'checking'} {purpose} links")
    return _ring(settings.secret_key, tuple(settings.old_secret_keys), purpose, size)


@lru_cache(maxsize=64)
def _ring(secret_key: str | None, old: tuple[str, ...], purpose: str, size: int) -> KeyRing:
    return KeyRing(secret_key, old, purpose, size)


def any_equal(expected: Sequence[str], given: str) -> bool:
    """Whether ``given`` is one of ``expected``, comparing with each in constant time."""
    if not given.isascii():  # compare_digest takes ASCII strings only
        return False
    found = False
    for value in expected:
        found = hmac.compare_digest(value, given) or found
    return found


def old_key_expired(key_index: int, issued_day: int, old_secret_days: int,
                    now_day: int | None = None) -> bool:
    """Whether a token issued on ``issued_day`` and signed with an old key (index > 0) is
    past the rotation's grace period."""
    return key_index > 0 and (today() if now_day is None else now_day) - issued_day > (
        old_secret_days)
