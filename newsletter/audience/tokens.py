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

The HMAC, the encodings, the keys and their rotation are ``newsletter.signing``'s (one
module for every kind of token); this module lays out these kinds' payloads and says
which error each problem raises.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

from .. import signing
from ..config import Settings, require
from ..errors import (
    BadSignature,
    ExpiredToken,
    MalformedToken,
    WrongList,
)
from ..errors import InvalidToken as InvalidToken  # what callers catch: tokens.InvalidToken
from ..signing import today as today

UNSUBSCRIBE = "unsubscribe"
PREFERENCES = "preferences"
PURPOSE = signing.label(UNSUBSCRIBE)
PREFERENCES_PURPOSE = signing.label(PREFERENCES)
TAG_BYTES = signing.TAG_BYTES
MAX_VALUES = 8  # values a purpose token may carry
MAX_TOKEN = 128  # characters of a purpose token at most
_LIMIT = 64  # characters of an unsubscribe or preference token at most
_varint = signing.varint


@dataclass(frozen=True)
class TokenData:
    subscriber_id: int
    list_id: int
    issued_day: int  # days since 1970-01-01 UTC
    key_index: int  # 0: the current secret, 1..: position in old_secret_keys + 1


def _head(n: int) -> bytes:
    """``varint(n)``, inline for the ids of most lists (up to three bytes)."""
    if type(n) is int and 0 <= n < 2_097_152:
        if n < 128:
            return bytes((n,))
        if n < 16_384:
            return bytes((n & 0x7F | 0x80, n >> 7))
        return bytes((n & 0x7F | 0x80, (n >> 7) & 0x7F | 0x80, n >> 14))
    return signing.varint(signing.check_value("subscriber_id", n))


class Signer:
    """Signs many tokens with one key: build once per send, call ``sign`` per recipient."""

    purpose = UNSUBSCRIBE  # the purpose signed with every token (a subclass: another)

    def __init__(self, secret_key: str, issued_day: int | None = None) -> None:
        self._mac = signing.Mac(secret_key, self.purpose)
        self._day = signing.varint(today() if issued_day is None else issued_day)

    def sign(self, subscriber_id: int, list_id: int) -> str:
        return self.for_list(list_id)(subscriber_id)

    def for_list(self, list_id: int) -> Callable[[int], str]:
        """A fast ``sign(subscriber_id)`` for one list (the key and suffix prepared once)."""
        many = self.many_for_list(list_id)
        return lambda subscriber_id: many((subscriber_id,))[0]

    def many_for_list(self, list_id: int) -> Callable[[Iterable[int]], list[str]]:
        """A fast ``sign_many(subscriber_ids) -> tokens`` for one list: one call per batch."""
        suffix = signing.varint(signing.check_value("list_id", list_id)) + self._day
        sign_all = self._mac.sign_many

        def sign_many(subscriber_ids: Iterable[int]) -> list[str]:
            return sign_all([_head(n) + suffix for n in subscriber_ids])

        return sign_many

    def pairs_for_list(self, list_id: int
                       ) -> Callable[[Iterable[int]], tuple[list[str], list[str]]]:
        """``(unsubscribe tokens, preference tokens)`` of one list's subscribers, one HMAC
        each: the unsubscribe tokens are ``many_for_list``'s, byte for byte; each
        preference token carries the same payload and the second half of that HMAC (a
        send's form of preference token, see below). For the unsubscribe purpose only."""
        if self.purpose != UNSUBSCRIBE:
            raise ValueError("pairs are signed under the unsubscribe purpose")
        suffix = signing.varint(signing.check_value("list_id", list_id)) + self._day
        halves = self._mac.sign_halves

        def sign_pairs(subscriber_ids: Iterable[int]) -> tuple[list[str], list[str]]:
            return halves([_head(n) + suffix for n in subscriber_ids])

        return sign_pairs


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
    ring = signing.key_ring(settings, purpose, signs=True)
    if not 0 < len(values) <= MAX_VALUES:
        raise ValueError(f"a token carries 1 to {MAX_VALUES} values, not {len(values)}")
    day = today() if issued_day is None else issued_day
    payload = b"".join(signing.varint(signing.check_value("value", v)) for v in (*values, day))
    return ring.sign(payload)


def _opened(purpose: str, token: str, settings: Settings, limit: int, what: str,
            half: int = 0) -> tuple[list[int], int]:
    """The values and key index of a token of ``purpose`` (``half`` 1: its tag the second
    half of the HMAC, ``signing.Mac.sign_halves``); MalformedToken when it is no token at
    all, BadSignature when no key kept signed it."""
    ring = signing.key_ring(settings, purpose)
    raw = signing.decode(token, limit)
    if raw is None or len(raw) < TAG_BYTES + 3:
        raise MalformedToken(f"invalid {what} link")
    opened = ring.check(raw, half)
    if opened is None:
        raise BadSignature(f"invalid {what} link")
    values = signing.read_varints(opened[0])
    if values is None:
        raise MalformedToken(f"invalid {what} link")
    return values, opened[1]


def purpose_verify(purpose: str, token: str, settings: Settings, *,
                   count: int | None = None, max_age_days: int | None = None,
                   now_day: int | None = None) -> PurposeData:
    """Check a ``purpose`` token; raise an ``InvalidToken`` subclass if it is not one (of
    ``count`` values, when given), or ``ExpiredToken`` past ``max_age_days``."""
    signing.label(purpose)
    values, key_index = _opened(purpose, token, settings, MAX_TOKEN, purpose)
    if not 2 <= len(values) <= MAX_VALUES + 1 or (
            count is not None and len(values) != count + 1):
        raise MalformedToken(f"invalid {purpose} link")
    *carried, day = values
    current = today() if now_day is None else now_day
    if max_age_days is not None and current - day > max_age_days:
        raise ExpiredToken(f"this {purpose} link has expired")
    if signing.old_key_expired(key_index, day, settings.old_secret_days, current):
        raise ExpiredToken(f"this {purpose} link has expired")
    return PurposeData(purpose, tuple(carried), day, key_index)


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
    values, key_index = _opened(UNSUBSCRIBE, token, settings, _LIMIT, "unsubscribe")
    if len(values) != 3:
        raise MalformedToken("invalid unsubscribe link")
    subscriber, list_, day = values
    if signing.old_key_expired(key_index, day, settings.old_secret_days, now_day):
        raise ExpiredToken("this unsubscribe link has expired")
    if list_id is not None and list_ != list_id:
        raise WrongList("invalid unsubscribe link")
    return TokenData(subscriber_id=subscriber, list_id=list_, issued_day=day, key_index=key_index)


# -- preference-centre tokens ----------------------------------------------------------------
# Two forms, both verified by ``verify_preferences``:
# - the first (any single preference link): the same layout as unsubscribe tokens, under
#   a purpose of its own, so a token of one purpose never verifies as the other:
#   varint(subscriber_id) varint(0) varint(issued_day) tag[16];
# - a send's (``Signer.pairs_for_list``): the payload of the recipient's unsubscribe
#   token, varint(subscriber_id) varint(list_id) varint(issued_day) with a list id of 1 or
#   more, and as tag the second 16 bytes of the HMAC whose first 16 are the unsubscribe
#   token's tag: one HMAC signs both links of a message (a third of a send's signing).
#   Neither tag tells anything of the other, so an unsubscribe link (in every message's
#   header, seen by mail providers) opens no preference page, and a preference link
#   unsubscribes no one.
# Unlike an unsubscribe link (which must keep working), a preference link opens a page
# that can download or erase a subscriber's data, so it expires:
# ``settings.preferences_link_days`` after it was signed, whichever key signed it.


class PreferencesSigner(Signer):
    purpose = PREFERENCES


def preferences_signer(settings: Settings, issued_day: int | None = None
                       ) -> Callable[[Iterable[int]], list[str]]:
    """``sign_many(subscriber_ids) -> tokens`` for preference links (the unsubscribe
    signer's fast path, list id 0, this purpose)."""
    require(settings, "secret_key", purpose="signing preference links")
    assert settings.secret_key is not None
    return PreferencesSigner(settings.secret_key, issued_day).many_for_list(0)


def _send_form(token: object) -> bool:
    """Whether ``token``'s payload (read before its tag is checked) names a list: a
    send's preference token. Anything else is checked as the first form."""
    raw = signing.decode(token, _LIMIT)
    if raw is None or len(raw) < TAG_BYTES + 3:
        return False
    values = signing.read_varints(raw[:-TAG_BYTES])
    return values is not None and len(values) == 3 and values[1] != 0


def sign_preferences(settings: Settings, subscriber_id: int, issued_day: int | None = None
                     ) -> str:
    """The preference-centre token of one subscriber."""
    return preferences_signer(settings, issued_day)((subscriber_id,))[0]


def verify_preferences(token: str, settings: Settings, *, now_day: int | None = None) -> int:
    """The subscriber id a preference token of either form names, or an
    ``InvalidToken`` subclass."""
    if _send_form(token):  # a list id: the second half of the unsubscribe HMAC
        values, _ = _opened(UNSUBSCRIBE, token, settings, _LIMIT, "preference", half=1)
        if len(values) != 3 or values[1] == 0:
            raise MalformedToken("invalid preference link")
    else:
        values, _ = _opened(PREFERENCES, token, settings, _LIMIT, "preference")
        if len(values) != 3 or values[1] != 0:
            raise MalformedToken("invalid preference link")
    subscriber, _, day = values
    current = today() if now_day is None else now_day
    if not 0 <= current - day <= settings.preferences_link_days:
        raise ExpiredToken("this preference link has expired")
    return subscriber


# -- the preference page's form nonce --------------------------------------------------------
# Every POST of the page carries it: hex HMAC (128 bits) of the token and the day the page
# was served, under a purpose of its own; valid that day and the next.

FORM_NONCE = "preferences-form"


def form_nonce(secret: str, token: str, day: int) -> str:
    """The form nonce of a page served on ``day`` for ``token``."""
    message = token.encode("ascii") + b"\x00" + str(day).encode("ascii")
    return signing.Mac(secret, FORM_NONCE)(message).hex()


def form_nonce_ok(secret: str, token: str, given: str) -> bool:
    """Whether ``given`` is the nonce of a page served for ``token`` today or yesterday
    (both compared, in constant time)."""
    current = today()
    return signing.any_equal([form_nonce(secret, token, day)
                              for day in (current, current - 1)], given)
