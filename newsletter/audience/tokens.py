"""Signed tokens: unsubscribe links, and any other single-purpose link (``sign``/``verify``
with a purpose: ``"confirm"`` for sign-up confirmations, ``"preferences"`` ...).

General form (``sign(purpose, settings, *values)`` / ``verify(purpose, token, settings)``):
the same layout with any number of non-negative integer values, and the purpose's own
label in the tag (``newsletter/<purpose>/v1``), so a token made for one purpose never
verifies for another. ``verify`` takes ``max_age_days``: such tokens expire (from the day
they were issued), whatever key signed them. ``"unsubscribe"`` is the label below, so
``sign("unsubscribe", settings, s, l) == sign(settings, s, l)``.

Unsubscribe tokens: sign and verify (subscriber id, list id) with the project's secret.

A token is one URL-safe base64 string (no padding, about 30 characters) of::

    varint(subscriber_id) varint(list_id) varint(issued_day) tag[16]

where ``issued_day`` is the day (days since 1970-01-01, UTC) the token was signed and
``tag`` is HMAC-SHA256 over a purpose label plus those bytes, truncated to 128 bits
(as in RFC 4868's HMAC-SHA-256-128). No email address or other personal data is inside;
the ids are only readable, never changeable, without the secret.

``verify`` tries ``settings.secret_key`` first and then each of ``settings.old_secret_keys``
(secret rotation). A token signed with an old key is accepted for
``settings.old_secret_days`` days after it was issued, so links in mail sent before a
rotation keep working for that period; links signed with the current key never expire.
Every way a token can be wrong raises a subclass of ``InvalidToken``; its message never
reveals anything about a subscriber. Tags are compared in constant time.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import re
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

from ..config import Settings, require
from ..errors import (
    BadSignature,
    ExpiredToken,
    MalformedToken,
    WrongList,
)
from ..errors import InvalidToken as InvalidToken  # what callers catch: tokens.InvalidToken

PURPOSE = b"newsletter/unsubscribe/v1\x00"
TAG_BYTES = 16
MAX_VALUES = 8  # values a purpose token may carry
MAX_TOKEN = 128  # characters of a purpose token at most
_DAY = 86400
_MAX_ID = (1 << 63) - 1


@dataclass(frozen=True)
class TokenData:
    subscriber_id: int
    list_id: int
    issued_day: int  # days since 1970-01-01 UTC
    key_index: int  # 0: the current secret, 1..: position in old_secret_keys + 1


def _varint(value: int) -> bytes:
    out = bytearray()
    while True:
        byte = value & 0x7F
        value >>= 7
        if value:
            out.append(byte | 0x80)
        else:
            out.append(byte)
            return bytes(out)


def _read_varints(data: bytes, count: int) -> list[int]:
    values: list[int] = []
    pos = 0
    for _ in range(count):
        value = shift = 0
        while True:
            if pos >= len(data) or shift > 63:
                raise MalformedToken("invalid unsubscribe link")
            byte = data[pos]
            pos += 1
            value |= (byte & 0x7F) << shift
            shift += 7
            if not byte & 0x80:
                break
        if byte == 0 and shift > 7:  # non-canonical (padded) encoding: one token per value
            raise MalformedToken("invalid unsubscribe link")
        values.append(value)
    if pos != len(data):
        raise MalformedToken("invalid unsubscribe link")
    return values


def _key(secret: str) -> bytes:
    return secret.encode("utf-8")


def _tag(key: bytes, payload: bytes, label: bytes = PURPOSE) -> bytes:
    return hmac.digest(key, label + payload, "sha256")[:TAG_BYTES]


def _check_id(name: str, value: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= _MAX_ID:
        raise ValueError(f"{name} must be a non-negative integer, not {value!r}")
    return value


def today() -> int:
    return int(time.time()) // _DAY


class Signer:
    """Signs many tokens with one key: build once per send, call ``sign`` per recipient."""

    purpose = PURPOSE  # the label signed with every token (a subclass: another purpose)

    def __init__(self, secret_key: str, issued_day: int | None = None) -> None:
        self._key = _key(secret_key)
        self._day = _varint(today() if issued_day is None else issued_day)

    def sign(self, subscriber_id: int, list_id: int) -> str:
        return self.for_list(list_id)(subscriber_id)

    def for_list(self, list_id: int) -> Callable[[int], str]:
        """A fast ``sign(subscriber_id)`` for one list (the key and suffix prepared once)."""
        many = self.many_for_list(list_id)
        return lambda subscriber_id: many((subscriber_id,))[0]

    def many_for_list(self, list_id: int) -> Callable[[Iterable[int]], list[str]]:
        """A fast ``sign_many(subscriber_ids) -> tokens`` for one list: one call per batch."""
        suffix = _varint(_check_id("list_id", list_id)) + self._day
        # HMAC-SHA256 (RFC 2104) with the key's inner and outer hash states prepared once:
        # per token only two SHA-256 state copies, instead of a full HMAC set-up
        key = self._key
        if len(key) > 64:
            key = hashlib.sha256(key).digest()
        key = key.ljust(64, b"\0")
        inner = hashlib.sha256(bytes(k ^ 0x36 for k in key) + self.purpose)
        outer = hashlib.sha256(bytes(k ^ 0x5C for k in key))
        b64 = binascii.b2a_base64
        urlsafe = bytes.maketrans(b"+/", b"-_")

        def sign_many(subscriber_ids: Iterable[int]) -> list[str]:
            raws: list[bytes] = []
            append = raws.append
            for n in subscriber_ids:
                if type(n) is int and 0 <= n < 2_097_152:  # up to three varint bytes, inline
                    if n < 128:
                        head = bytes((n,))
                    elif n < 16_384:
                        head = bytes((n & 0x7F | 0x80, n >> 7))
                    else:
                        head = bytes((n & 0x7F | 0x80, (n >> 7) & 0x7F | 0x80, n >> 14))
                    payload = head + suffix
                else:
                    payload = _varint(_check_id("subscriber_id", n)) + suffix
                h = inner.copy()
                h.update(payload)
                o = outer.copy()
                o.update(h.digest())
                append(b64(payload + o.digest()[:TAG_BYTES], newline=False))
            if not raws:
                return []
            # base64url without padding, converted for the whole batch at once: "=" only
            # ever appears as padding, and " " never in base64
            return b" ".join(raws).translate(urlsafe).replace(b"=", b"").decode("ascii").split(" ")

        return sign_many


def signer(settings: Settings, issued_day: int | None = None) -> Signer:
    require(settings, "secret_key", purpose="signing unsubscribe links")
    assert settings.secret_key is not None
    return Signer(settings.secret_key, issued_day)


def sign(settings: Settings | str, *args: Any, **kwargs: Any) -> str:
    """``sign(settings, subscriber_id, list_id)``: the unsubscribe token for one subscriber
    of one list. ``sign(purpose, settings, *values, issued_day=None)``: a token for
    ``purpose`` (``purpose_sign``)."""
    if isinstance(settings, str):
        return purpose_sign(settings, *args, **kwargs)
    subscriber_id, list_id = args
    return signer(settings).sign(subscriber_id, list_id)


def _label(purpose: str) -> bytes:
    if not re.fullmatch(r"[a-z][a-z0-9-]{0,39}", purpose):
        raise ValueError(f"a token purpose is a short lowercase word, not {purpose!r}")
    return PURPOSE if purpose == "unsubscribe" else f"newsletter/{purpose}/v1".encode() + b"\x00"


@dataclass(frozen=True)
class PurposeData:
    """What a purpose token carries: its values, the day it was issued, the key used."""

    purpose: str
    values: tuple[int, ...]
    issued_day: int
    key_index: int


def purpose_sign(purpose: str, settings: Settings, *values: int,
                 issued_day: int | None = None) -> str:
    """A token for ``purpose`` carrying ``values`` (non-negative integers, at most 8)."""
    require(settings, "secret_key", purpose=f"signing {purpose} links")
    assert settings.secret_key is not None
    if not 0 < len(values) <= MAX_VALUES:
        raise ValueError(f"a token carries 1 to {MAX_VALUES} values, not {len(values)}")
    day = today() if issued_day is None else issued_day
    payload = b"".join(_varint(_check_id("value", v)) for v in (*values, day))
    raw = payload + _tag(_key(settings.secret_key), payload, _label(purpose))
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode("ascii")


def purpose_verify(purpose: str, token: str, settings: Settings, *,
                   count: int | None = None, max_age_days: int | None = None,
                   now_day: int | None = None) -> PurposeData:
    """Check a ``purpose`` token; raise an ``InvalidToken`` subclass if it is not one (of
    ``count`` values, when given), or ``ExpiredToken`` past ``max_age_days``."""
    label = _label(purpose)
    raw = _decode(token, limit=MAX_TOKEN)
    index, key_index = _matching_key(raw, settings, label, purpose)
    payload = raw[:-TAG_BYTES]
    values = _read_all_varints(payload)
    if len(values) < 2 or (count is not None and len(values) != count + 1):
        raise MalformedToken(f"invalid {purpose} link")
    *carried, day = values
    current = today() if now_day is None else now_day
    if max_age_days is not None and current - day > max_age_days:
        raise ExpiredToken(f"this {purpose} link has expired")
    if key_index > 0 and current - day > settings.old_secret_days:
        raise ExpiredToken(f"this {purpose} link has expired")
    return PurposeData(purpose, tuple(carried), day, key_index)


def _read_all_varints(payload: bytes) -> list[int]:
    count = sum(1 for byte in payload if not byte & 0x80)
    if not 0 < count <= MAX_VALUES + 1:
        raise MalformedToken("invalid link")
    values = _read_varints(payload, count)
    if any(v > _MAX_ID for v in values):
        raise MalformedToken("invalid link")
    return values


def _matching_key(raw: bytes, settings: Settings, label: bytes, what: str) -> tuple[int, int]:
    """(index in the keys tried, key_index) of the key whose tag matches; BadSignature."""
    payload, tag = raw[:-TAG_BYTES], raw[-TAG_BYTES:]
    secrets = [settings.secret_key, *settings.old_secret_keys] if settings.secret_key else list(
        settings.old_secret_keys
    )
    if not secrets:
        require(settings, "secret_key", purpose=f"checking {what} links")
    index = -1
    for i, secret in enumerate(secrets):
        # compare against every key so timing does not tell which one matched
        if hmac.compare_digest(_tag(_key(secret), payload, label), tag) and index < 0:
            index = i
    if index < 0:
        raise BadSignature(f"invalid {what} link")
    return index, (index if settings.secret_key else index + 1)


def _decode(token: str, limit: int = 64) -> bytes:
    if not isinstance(token, str) or not 0 < len(token) <= limit or not token.isascii():
        raise MalformedToken("invalid unsubscribe link")
    if len(token) % 4 == 1:
        raise MalformedToken("invalid unsubscribe link")
    try:
        raw = base64.b64decode(
            token + "=" * (-len(token) % 4), altchars=b"-_", validate=True
        )
    except (binascii.Error, ValueError):
        raise MalformedToken("invalid unsubscribe link") from None
    # reject non-canonical encodings (stray low bits in the last character)
    if base64.urlsafe_b64encode(raw).rstrip(b"=").decode("ascii") != token:
        raise MalformedToken("invalid unsubscribe link")
    if len(raw) < TAG_BYTES + 3:
        raise MalformedToken("invalid unsubscribe link")
    return raw


def verify(token: str, settings: Settings | str, *args: Any, **kwargs: Any) -> Any:
    """``verify(token, settings, *, list_id=None, now_day=None) -> TokenData``: an
    unsubscribe token. ``verify(purpose, token, settings, **options) -> PurposeData``:
    a token for ``purpose`` (``purpose_verify``)."""
    if isinstance(settings, str):
        return purpose_verify(token, settings, *args, **kwargs)
    return verify_unsubscribe(token, settings, *args, **kwargs)


def verify_unsubscribe(
    token: str,
    settings: Settings,
    *,
    list_id: int | None = None,
    now_day: int | None = None,
) -> TokenData:
    """Check a token and return what it identifies, or raise an ``InvalidToken`` subclass.

    ``list_id``, when given, must be the token's list (a token for one list does not
    verify for another).
    """
    raw = _decode(token)
    payload = raw[:-TAG_BYTES]
    _, key_index = _matching_key(raw, settings, PURPOSE, "unsubscribe")
    subscriber, list_, day = _read_varints(payload, 3)
    if subscriber > _MAX_ID or list_ > _MAX_ID:
        raise MalformedToken("invalid unsubscribe link")
    if key_index > 0:
        current = today() if now_day is None else now_day
        if current - day > settings.old_secret_days:
            raise ExpiredToken("this unsubscribe link has expired")
    if list_id is not None and list_ != list_id:
        raise WrongList("invalid unsubscribe link")
    return TokenData(subscriber_id=subscriber, list_id=list_, issued_day=day, key_index=key_index)


# -- preference-centre tokens ----------------------------------------------------------------
# The same layout and HMAC as unsubscribe tokens, under a purpose label of their own, so a
# token of one purpose never verifies as the other: varint(subscriber_id) varint(0)
# varint(issued_day) tag[16]. Unlike an unsubscribe link (which must keep working), a
# preference link opens a page that can download or erase a subscriber's data, so it
# expires: ``settings.preferences_link_days`` after it was signed, whichever key signed it.

PREFERENCES_PURPOSE = b"newsletter/preferences/v1\x00"


class PreferencesSigner(Signer):
    purpose = PREFERENCES_PURPOSE


def preferences_signer(settings: Settings, issued_day: int | None = None
                       ) -> Callable[[Iterable[int]], list[str]]:
    """``sign_many(subscriber_ids) -> tokens`` for preference links (the unsubscribe
    signer's fast path, list id 0, this purpose)."""
    require(settings, "secret_key", purpose="signing preference links")
    assert settings.secret_key is not None
    return PreferencesSigner(settings.secret_key, issued_day).many_for_list(0)


def sign_preferences(settings: Settings, subscriber_id: int, issued_day: int | None = None
                     ) -> str:
    """The preference-centre token of one subscriber."""
    return preferences_signer(settings, issued_day)((subscriber_id,))[0]


def verify_preferences(token: str, settings: Settings, *, now_day: int | None = None) -> int:
    """The subscriber id a preference token names, or an ``InvalidToken`` subclass."""
    raw = _decode(token)
    payload, tag = raw[:-TAG_BYTES], raw[-TAG_BYTES:]
    secrets = [s for s in (settings.secret_key, *settings.old_secret_keys) if s]
    if not secrets:
        require(settings, "secret_key", purpose="checking preference links")
    found = False
    for secret in secrets:  # every key, so timing does not tell which one matched
        expected = hmac.digest(_key(secret), PREFERENCES_PURPOSE + payload, "sha256")
        found = hmac.compare_digest(expected[:TAG_BYTES], tag) or found
    if not found:
        raise BadSignature("invalid preference link")
    subscriber, zero, day = _read_varints(payload, 3)
    if zero != 0 or subscriber > _MAX_ID:
        raise MalformedToken("invalid preference link")
    current = today() if now_day is None else now_day
    if not 0 <= current - day <= settings.preferences_link_days:
        raise ExpiredToken("this preference link has expired")
    return subscriber
