"""Purpose tokens (``tokens.sign(purpose, ...)``): single-purpose, signed, expiring."""

from __future__ import annotations

import pytest

from newsletter.audience import tokens
from newsletter.config import Settings

KEY = "k" * 40


def make(key: str = KEY, old: list[str] | None = None) -> Settings:
    return Settings(secret_key=key, old_secret_keys=old or [])


def test_round_trip_carries_values_and_day() -> None:
    token = tokens.sign("confirm", make(), 7, 3, 12, issued_day=20_000)
    data = tokens.verify("confirm", token, make(), now_day=20_001)
    assert data.values == (7, 3, 12) and data.issued_day == 20_000 and data.key_index == 0


def test_confirm_token_is_not_an_unsubscribe_token_and_the_reverse() -> None:
    settings = make()
    confirm = tokens.sign("confirm", settings, 5, 1)
    with pytest.raises(tokens.InvalidToken):
        tokens.verify(confirm, settings)  # as an unsubscribe link
    unsubscribe = tokens.sign(settings, 5, 1)
    with pytest.raises(tokens.InvalidToken):
        tokens.verify("confirm", unsubscribe, settings)
    with pytest.raises(tokens.InvalidToken):
        tokens.verify("preferences", confirm, settings)


def test_unsubscribe_purpose_is_the_unsubscribe_token() -> None:
    settings = make()
    same = tokens.sign("unsubscribe", settings, 5, 1, issued_day=tokens.today())
    assert same == tokens.sign(settings, 5, 1)


def test_forged_and_altered_tokens_are_refused() -> None:
    forged = tokens.sign("confirm", make("a" * 40), 1, 1)
    with pytest.raises(tokens.InvalidToken):
        tokens.verify("confirm", forged, make())
    token = tokens.sign("confirm", make(), 1, 1)
    for i in range(len(token)):
        altered = token[:i] + ("A" if token[i] != "A" else "B") + token[i + 1:]
        with pytest.raises(tokens.InvalidToken):
            tokens.verify("confirm", altered, make())


def test_expiry() -> None:
    token = tokens.sign("confirm", make(), 9, 1, issued_day=20_000)
    assert tokens.verify("confirm", token, make(), max_age_days=7, now_day=20_007)
    with pytest.raises(tokens.ExpiredToken):
        tokens.verify("confirm", token, make(), max_age_days=7, now_day=20_008)


def test_old_key_still_verifies_within_its_days() -> None:
    token = tokens.sign("confirm", make("o" * 40), 2, 1, issued_day=20_000)
    data = tokens.verify("confirm", token, make(old=["o" * 40]), now_day=20_001)
    assert data.key_index == 1


def test_count_is_checked() -> None:
    token = tokens.sign("confirm", make(), 2, 1)
    with pytest.raises(tokens.InvalidToken):
        tokens.verify("confirm", token, make(), count=3)
