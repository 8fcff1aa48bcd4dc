"""Unsubscribe tokens: round trip, forgery, alteration, truncation, rotation, lists."""

from __future__ import annotations

import base64
import re

import pytest
from hypothesis import given
from hypothesis import settings as hsettings
from hypothesis import strategies as st

from newsletter.audience import tokens
from newsletter.config import Settings
from newsletter.errors import ConfigError


def key(name: str) -> str:
    """A secret key named ``name``, padded to the 32 bytes a key must have."""
    return f"{name:-<32}"


def make(secret: str = "s3cret-key", old: list[str] | None = None, days: int = 90) -> Settings:
    return Settings(secret_key=key(secret), old_secret_keys=[key(k) for k in old or []],
                    old_secret_days=days)


def test_round_trip_is_compact_url_safe_and_has_no_address() -> None:
    settings = make()
    token = tokens.sign(settings, 123456, 7)
    assert re.fullmatch(r"[A-Za-z0-9_-]{20,40}", token), token
    assert "@" not in token
    data = tokens.verify(token, settings)
    assert (data.subscriber_id, data.list_id, data.key_index) == (123456, 7, 0)


@given(st.integers(0, 2**63 - 1), st.integers(0, 2**63 - 1))
@hsettings(max_examples=200, deadline=None)
def test_any_ids_round_trip(subscriber: int, list_id: int) -> None:
    settings = make()
    data = tokens.verify(tokens.sign(settings, subscriber, list_id), settings)
    assert (data.subscriber_id, data.list_id) == (subscriber, list_id)


def test_token_for_one_list_does_not_verify_for_another() -> None:
    settings = make()
    token = tokens.sign(settings, 5, 1)
    assert tokens.verify(token, settings, list_id=1).list_id == 1
    with pytest.raises(tokens.WrongList):
        tokens.verify(token, settings, list_id=2)


def test_changing_the_list_inside_the_token_breaks_the_signature() -> None:
    settings = make()
    raw = bytearray(base64.urlsafe_b64decode(tokens.sign(settings, 5, 1) + "=="))
    raw[1] = 2  # list id byte (subscriber 5 is one byte)
    forged = base64.urlsafe_b64encode(bytes(raw)).rstrip(b"=").decode()
    with pytest.raises(tokens.BadSignature):
        tokens.verify(forged, settings)


def test_forged_with_another_secret_is_rejected() -> None:
    forged = tokens.sign(make("attacker"), 1, 1)
    with pytest.raises(tokens.BadSignature):
        tokens.verify(forged, make())


@pytest.mark.parametrize("cut", [1, 2, 5, 10, 20])
def test_truncated_tokens_are_rejected(cut: int) -> None:
    settings = make()
    token = tokens.sign(settings, 99, 3)
    with pytest.raises(tokens.InvalidToken):
        tokens.verify(token[:-cut], settings)


def test_every_single_character_change_is_rejected() -> None:
    settings = make()
    token = tokens.sign(settings, 4242, 9)
    alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
    for i, char in enumerate(token):
        for other in alphabet:
            if other == char:
                continue
            altered = token[:i] + other + token[i + 1 :]
            with pytest.raises(tokens.InvalidToken):
                tokens.verify(altered, settings)


@pytest.mark.parametrize(
    "junk", ["", "a", "not a token", "%%%%", "é" * 30, "A" * 65, "AAAA" * 8, "../../etc/passwd"]
)
def test_garbage_is_malformed_or_bad_signature(junk: str) -> None:
    with pytest.raises(tokens.InvalidToken) as info:
        tokens.verify(junk, make())
    assert "invalid" in str(info.value)


def test_rotation_old_secret_still_verifies_within_the_period() -> None:
    before = make("old-one")
    token = tokens.Signer(key("old-one"), issued_day=20_000).sign(11, 2)
    assert tokens.verify(token, before).key_index == 0
    after = make("new-one", old=["older", "old-one"], days=30)
    data = tokens.verify(token, after, now_day=20_010)
    assert (data.subscriber_id, data.list_id, data.key_index) == (11, 2, 2)
    with pytest.raises(tokens.ExpiredToken):
        tokens.verify(token, after, now_day=20_031)
    # dropped from the list: a plain bad signature
    with pytest.raises(tokens.BadSignature):
        tokens.verify(token, make("new-one"), now_day=20_010)


def test_current_key_tokens_do_not_expire() -> None:
    token = tokens.Signer(key("k"), issued_day=1).sign(1, 1)
    assert tokens.verify(token, make("k", days=0), now_day=100_000).subscriber_id == 1


def test_missing_secret_is_a_config_error() -> None:
    with pytest.raises(ConfigError, match="secret_key"):
        tokens.sign(Settings(), 1, 1)
    with pytest.raises(ConfigError, match="secret_key"):
        tokens.verify("AAAAAAAAAAAAAAAAAAAAAAAAAAA", Settings())


def test_bad_ids_are_refused() -> None:
    with pytest.raises(ValueError):
        tokens.sign(make(), -1, 1)
    with pytest.raises(ValueError):
        tokens.sign(make(), 1, "2")  # type: ignore[arg-type]


@pytest.mark.parametrize("n", [0, 127, 128, 16_383, 16_384, 2_097_151, 2_097_152, 10**12])
def test_fast_signing_path_matches_the_format_at_varint_boundaries(n: int) -> None:
    settings = make()
    token = tokens.Signer(key("s3cret-key"), issued_day=20_000).sign(n, 300)
    raw = base64.urlsafe_b64decode(token + "==")
    assert raw[:-16] == tokens._varint(n) + tokens._varint(300) + tokens._varint(20_000)
    assert tokens.verify(token, settings).subscriber_id == n
