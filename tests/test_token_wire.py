"""Tokens already in readers' inboxes keep working: these were made by the code as it was
before the signers became one module (``audience.tokens`` per purpose, the preference
centre's, ``delivery.tracking.ClickSigner``), with fixed secrets and a fixed issue day.
Each must still verify to the same values, and signing the same values must still give
the same characters (a link in a new mail looks like one in an old mail)."""

from __future__ import annotations

import pytest

from newsletter import signing
from newsletter.audience import tokens
from newsletter.config import Settings
from newsletter.delivery.tracking import ClickSigner
from newsletter.web.preferences import nonce, nonce_ok

CURRENT = "wire-format-current-key---------"
OLD = "wire-format-old-key-------------"
DAY = 20_000  # the issue day the tokens below were signed on

UNSUBSCRIBE = [
    (1, 1, "AQGgnAETtLufaYiO08PpoZBk_u7X"),
    (123456, 7, "wMQHB6CcAXwfp2SdPuaqJmpfrxf7Fw4"),
    (2**40, 3, "gICAgIAgA6CcAXMd72OuDv0uj3kDnbcI-H4"),
    (0, 0, "AACgnAFg7FExSBF-HDDvaQcCNrFd"),
]
UNSUBSCRIBE_BATCH = (9, [1, 200, 30000, 5_000_000], [
    "AQmgnAE0sU1mCdZs22lWhznAgdxg", "yAEJoJwBh6iiguzVfMM-NMog2imA2g",
    "sOoBCaCcAemeguwCN0RzISND2XGvsVY", "wJaxAgmgnAGkPiEtNWckmA999WRGWlOy"])
UNSUBSCRIBE_OLD_KEY = (42, 5, "KgWgnAFLHhRoq65ZrMfHbncZfHdh")
PREFERENCES = [
    (1, "AQCgnAG_Zrhf3nFnjSlehchK3lqw"),
    (99999, "n40GAKCcAdAYTfZunT1AU_1_RMj6xrc"),
    (2**33, "gICAgCAAoJwBVe3Vz4zSfYYBqHGK1EEoVw"),
]
PREFERENCES_OLD_KEY = (77, "TQCgnAHyT_IIp5Yo3Bea2HTLOYar")
CONFIRM = ((5, 6), "BQagnAFGmUpa1JFAGIzIEiOzTwvh")
CONFIRM_OLD_KEY = ((8,), "CKCcAWpwEFHbNzFumDwUizhMJU0")
FORM = ((1_700_000_000,), "gOLPqgagnAGj8EUTxLqftMMdIdMcPT_-")
CLICKS = [
    (1, 1, 0, "AQEAjF-LrMLWwCpXgQ"),
    (77, 123456, 3, "TcDEBwMxFOvevfAz0Hb5"),
    (2**31, 2**40, 12, "gICAgAiAgICAgCAMDeLee1SrG1qaPw"),
]
CLICK_BATCH = (5, 6, ["BQYAzZP-JYw1hDhsgw", "BQYBGdJXAV1P6nK1Mg", "BQYCi46AnaDZleoXug",
                      "BQYD4dxiidH49ksixQ"])
OPEN = (77, 123456, 0, "TcDEBwATbyDZnF09DRYD")
CLICK_OLD_KEY = (3, 4, 5, "AwQFj1mFaVXb5dIV7w")
NONCE = ("sometoken", "f30872f220e203e9d0f2c3eb74a291d9")
# reader tokens (2026-11-30): one per recipient of a send, for all its tracked links
READERS = [(1, 1, "AQHtjELBNxM6gQ-W"), (77, 123456, "TcDEB-r3cV3pOaztYtM"),
           (2**31, 2**40, "gICAgAiAgICAgCCUz6XbVjzDyFAR")]


def current() -> Settings:
    return Settings(secret_key=CURRENT, old_secret_keys=[], old_secret_days=90,
                    preferences_link_days=3650)


def rotated() -> Settings:
    """After a rotation: the old key is kept for 90 days."""
    return Settings(secret_key="wire-format-next-key------------", old_secret_keys=[
        CURRENT, OLD], old_secret_days=90, preferences_link_days=3650)


@pytest.mark.parametrize(("subscriber", "list_id", "token"), UNSUBSCRIBE)
def test_unsubscribe_tokens_in_inboxes_verify_and_are_made_alike(
        subscriber: int, list_id: int, token: str) -> None:
    data = tokens.verify(token, current(), now_day=DAY + 1000)
    assert (data.subscriber_id, data.list_id, data.issued_day, data.key_index) == (
        subscriber, list_id, DAY, 0)
    assert tokens.Signer(CURRENT, DAY).sign(subscriber, list_id) == token
    assert tokens.signer(current(), DAY).sign(subscriber, list_id) == token


def test_a_send_batch_of_unsubscribe_tokens_is_made_alike() -> None:
    list_id, ids, made = UNSUBSCRIBE_BATCH
    assert tokens.Signer(CURRENT, DAY).many_for_list(list_id)(ids) == made
    assert [tokens.verify(t, current()).subscriber_id for t in made] == ids


def test_old_key_tokens_verify_for_the_configured_days_then_expire() -> None:
    subscriber, list_id, token = UNSUBSCRIBE_OLD_KEY
    settings = rotated()
    data = tokens.verify(token, settings, now_day=DAY + 90)
    assert (data.subscriber_id, data.list_id, data.key_index) == (subscriber, list_id, 2)
    with pytest.raises(tokens.ExpiredToken):
        tokens.verify(token, settings, now_day=DAY + 91)
    with pytest.raises(tokens.BadSignature):  # a key nobody keeps any more
        tokens.verify(token, current(), now_day=DAY)
    # a token of the key that was current before the rotation
    moved = tokens.verify(UNSUBSCRIBE[1][2], settings, now_day=DAY + 10)
    assert (moved.subscriber_id, moved.key_index) == (123456, 1)


@pytest.mark.parametrize(("subscriber", "token"), PREFERENCES)
def test_preference_tokens_in_inboxes_verify_and_are_made_alike(subscriber: int,
                                                                token: str) -> None:
    assert tokens.verify_preferences(token, current(), now_day=DAY + 30) == subscriber
    assert tokens.sign_preferences(current(), subscriber, DAY) == token
    assert tokens.preferences_signer(current(), DAY)([subscriber]) == [token]
    with pytest.raises(tokens.InvalidToken):  # never an unsubscribe token
        tokens.verify(token, current())


def test_preference_tokens_expire_and_old_keys_verify() -> None:
    subscriber, token = PREFERENCES_OLD_KEY
    settings = rotated()
    assert tokens.verify_preferences(token, settings, now_day=DAY + 5) == subscriber
    short = Settings(secret_key=CURRENT, old_secret_keys=[], preferences_link_days=30)
    with pytest.raises(tokens.ExpiredToken):
        tokens.verify_preferences(PREFERENCES[0][1], short, now_day=DAY + 31)
    assert tokens.verify_preferences(PREFERENCES[0][1], short, now_day=DAY + 30) == 1


# a send's preference tokens (2026-11-30): the second half of the HMAC whose first half
# is the recipient's unsubscribe token's tag (list 9, the UNSUBSCRIBE_BATCH's recipients)
PREFERENCES_OF_A_SEND = ["AQmgnAGzwtsv2rIlbm7eSxEIgevU", "yAEJoJwByBYfCZJky3dO_LUh-LjRfQ",
                         "sOoBCaCcASon6j9U2FvuULKrsiu4rD0",
                         "wJaxAgmgnAFCIOtENafk0qm870HI5IFI"]


def test_a_sends_unsubscribe_and_preference_tokens_come_from_one_hmac() -> None:
    """The unsubscribe tokens are the ones every send made before, character for
    character; the preference tokens verify to their subscribers; neither opens the
    other's page, nor does either with the two tags swapped or another list's id."""
    list_id, ids, unsubscribe = UNSUBSCRIBE_BATCH
    made = tokens.Signer(CURRENT, DAY).pairs_for_list(list_id)(ids)
    assert made == (unsubscribe, PREFERENCES_OF_A_SEND)
    assert [tokens.verify_preferences(t, current(), now_day=DAY + 30)
            for t in PREFERENCES_OF_A_SEND] == ids
    for mine, other in zip(unsubscribe, PREFERENCES_OF_A_SEND, strict=True):
        with pytest.raises(tokens.InvalidToken):
            tokens.verify(other, current())  # a preference link unsubscribes no one
        with pytest.raises(tokens.InvalidToken):
            tokens.verify_preferences(mine, current())  # and the reverse
    first = signing.decode(PREFERENCES_OF_A_SEND[0], 64)
    assert first is not None and first[:2] == bytes([1, list_id])  # subscriber 1, list 9
    with pytest.raises(tokens.InvalidToken):  # another list's id under the same tag
        tokens.verify_preferences(signing.encode(bytes([1, 10]) + first[2:]), current())


def test_a_sends_preference_tokens_expire_and_survive_a_rotation() -> None:
    token = PREFERENCES_OF_A_SEND[1]
    assert tokens.verify_preferences(token, rotated(), now_day=DAY + 5) == 200
    short = Settings(secret_key=CURRENT, old_secret_keys=[], preferences_link_days=30)
    assert tokens.verify_preferences(token, short, now_day=DAY + 30) == 200
    with pytest.raises(tokens.ExpiredToken):
        tokens.verify_preferences(token, short, now_day=DAY + 31)
    with pytest.raises(tokens.BadSignature):  # a key nobody keeps
        tokens.verify_preferences(token, Settings(secret_key=OLD), now_day=DAY)


def test_purpose_tokens_in_inboxes_verify_and_are_made_alike() -> None:
    for purpose, (values, token) in (("confirm", CONFIRM), ("signup-form", FORM)):
        data = tokens.verify(purpose, token, current(), now_day=DAY + 1)
        assert (data.values, data.issued_day, data.key_index) == (values, DAY, 0)
        assert tokens.sign(purpose, current(), *values, issued_day=DAY) == token
    values, token = CONFIRM_OLD_KEY
    data = tokens.verify("confirm", token, rotated(), now_day=DAY + 3, max_age_days=7)
    assert (data.values, data.key_index) == (values, 2)
    with pytest.raises(tokens.ExpiredToken):
        tokens.verify("confirm", token, rotated(), now_day=DAY + 8, max_age_days=7)
    with pytest.raises(tokens.InvalidToken):  # a confirmation is no sign-up form stamp
        tokens.verify("signup-form", CONFIRM[1], current())


@pytest.mark.parametrize(("send", "subscriber", "idx", "token"), CLICKS)
def test_click_tokens_in_inboxes_verify_and_are_made_alike(send: int, subscriber: int,
                                                           idx: int, token: str) -> None:
    signer = ClickSigner(current())
    assert signer.verify(token) == (send, subscriber, idx)
    assert signer.sign(send, subscriber, idx) == token
    assert ClickSigner(current(), opens=True).verify(token) is None  # not a pixel's


def test_click_batches_open_pixels_and_rotation() -> None:
    send, subscriber, made = CLICK_BATCH
    assert ClickSigner(current()).many(send, subscriber, len(made)) == made
    send, subscriber, idx, token = OPEN
    assert ClickSigner(current(), opens=True).verify(token) == (send, subscriber, idx)
    assert ClickSigner(current(), opens=True).sign(send, subscriber, idx) == token
    assert ClickSigner(current()).verify(token) is None
    send, subscriber, idx, token = CLICK_OLD_KEY
    assert ClickSigner(rotated()).verify(token) == (send, subscriber, idx)
    assert ClickSigner(rotated()).verify(CLICKS[1][3]) == CLICKS[1][:3]
    assert ClickSigner(current()).verify(token) is None


@pytest.mark.parametrize(("send", "subscriber", "reader"), READERS)
def test_reader_tokens_are_made_alike_and_open_each_link(send: int, subscriber: int,
                                                         reader: str) -> None:
    assert ClickSigner(current()).readers(send, [subscriber]) == [reader]
    assert ClickSigner(current()).verify(f"{reader}.3") == (send, subscriber, 3)
    assert ClickSigner(current(), opens=True).verify(reader) == (send, subscriber, 0)
    assert ClickSigner(rotated()).verify(f"{reader}.0") == (send, subscriber, 0)
    assert ClickSigner(current()).verify(reader) is None  # the pixel's URL is no link


def test_the_preference_form_nonce_is_made_alike() -> None:
    token, made = NONCE
    assert nonce(CURRENT, token, DAY) == made
    assert not nonce_ok(CURRENT, token, made)  # a page served on day 20,000 is long stale


def test_only_the_canonical_spelling_of_a_token_verifies() -> None:
    """Each token has one spelling: another last character (stray low bits), padding, the
    standard alphabet's + and /, or a character outside the alphabet is no token."""
    import string

    from newsletter import signing

    send, subscriber, idx, token = CLICKS[0]  # it has a "-"
    signer = ClickSigner(current())
    others = [token[:-1] + c for c in string.ascii_letters + string.digits + "-_"
              if c != token[-1]]
    for bad in [*others, token + "=", token + "==", token.replace("-", "+"), token + "\n",
                " " + token, token[:5] + "." + token[6:]]:
        assert signer.verify(bad) is None, bad
        assert signing.decode(bad, 64) is None or signing.encode(signing.decode(bad, 64)) == bad
    assert signer.verify(token) == (send, subscriber, idx)
    unsub = UNSUBSCRIBE[1][2]  # 31 characters: the last one carries 2 stray bits
    with pytest.raises(tokens.MalformedToken):
        tokens.verify(unsub[:-1] + "5", current())
