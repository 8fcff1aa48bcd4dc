"""Unsubscribe tokens: sign and verify (subscriber id, list id) with the project's secret.

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
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass

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


def _tag(key: bytes, payload: bytes) -> bytes:
    return hmac.digest(key, PURPOSE + payload, "sha256")[:TAG_BYTES]


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


def sign(settings: Settings, subscriber_id: int, list_id: int) -> str:
    """The unsubscribe token for one subscriber of one list."""
    return signer(settings).sign(subscriber_id, list_id)


def _decode(token: str) -> bytes:
    if not isinstance(token, str) or not 0 < len(token) <= 64 or not token.isascii():
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


def verify(
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
    payload, tag = raw[:-TAG_BYTES], raw[-TAG_BYTES:]
    secrets = [settings.secret_key, *settings.old_secret_keys] if settings.secret_key else list(
        settings.old_secret_keys
    )
    if not secrets:
        require(settings, "secret_key", purpose="checking unsubscribe links")
    index = -1
    for i, secret in enumerate(secrets):
        # compare against every key so timing does not tell which one matched
        if hmac.compare_digest(_tag(_key(secret), payload), tag) and index < 0:
            index = i
    if index < 0:
        raise BadSignature("invalid unsubscribe link")
    subscriber, list_, day = _read_varints(payload, 3)
    if subscriber > _MAX_ID or list_ > _MAX_ID:
        raise MalformedToken("invalid unsubscribe link")
    key_index = index if settings.secret_key else index + 1
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
