"""Email address normalisation: email-validator's syntax rules, no DNS.

``normalize_email(text)`` returns ``(email, key)``: ``email`` is email-validator's
normalised form (domain lower-cased and IDNA-decoded, Unicode NFC) and ``key`` its
lower-cased form, which is what makes two addresses the same subscriber.

Validating a million rows with email-validator costs most of an import, so plain
ASCII addresses take a fast path: a regular expression that accepts only addresses
email-validator accepts, and returns the identical normalised form (a property test
compares the two on generated addresses). Everything else goes to email-validator.
"""

from __future__ import annotations

import re

from email_validator import SPECIAL_USE_DOMAIN_NAMES, EmailNotValidError, validate_email
from email_validator.rfc_constants import CASE_INSENSITIVE_MAILBOX_NAMES

from ..errors import InvalidEmail

_ATEXT = r"A-Za-z0-9!#$%&'*+/=?^_`{|}~-"
_LABEL = r"[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?"
# Dot-atom local part; a domain of LDH labels ending in an alphabetic TLD of 2-63 letters.
_FAST = re.compile(
    rf"([{_ATEXT}]+(?:\.[{_ATEXT}]+)*)@((?:{_LABEL}\.)+([A-Za-z]{{2,63}}))"
).fullmatch
# Every special-use name is a single label, and fast-path domains have a dot: so a domain
# is special-use exactly when its last label is one of them.
_SPECIAL_TLDS = frozenset(SPECIAL_USE_DOMAIN_NAMES)
assert all("." not in name for name in _SPECIAL_TLDS)
_MAILBOX_NAMES = frozenset(CASE_INSENSITIVE_MAILBOX_NAMES)


def _fast(text: str) -> str | None:
    """The normalised form for a plain ASCII address, or None to ask email-validator."""
    match = _FAST(text)
    if match is None:
        return None
    local, domain, tld = match.groups()
    if len(local) > 64 or len(text) > 254 or "--" in domain or tld.lower() in _SPECIAL_TLDS:
        return None
    if local.lower() in _MAILBOX_NAMES:
        local = local.lower()
    return f"{local}@{domain.lower()}"


def _slow(text: str) -> str:
    try:
        return validate_email(text, check_deliverability=False).normalized
    except EmailNotValidError as exc:
        raise InvalidEmail(str(exc)) from None


def normalize(text: str) -> str:
    """email-validator's normalised form of ``text`` (surrounding spaces ignored)."""
    text = text.strip()
    if not text:
        raise InvalidEmail("no email address")
    return _fast(text) or _slow(text)


def normalize_email(text: str) -> tuple[str, str]:
    """``(normalised email, identity key)``; raises InvalidEmail with the reason.

    The fast path is repeated inline here: this runs once per row of an import.
    """
    match = _FAST(text)
    if match is not None:
        local, domain, tld = match.groups()
        if (
            len(local) <= 64
            and len(text) <= 254
            and "--" not in domain
            and tld.lower() not in _SPECIAL_TLDS
        ):
            if local.lower() in _MAILBOX_NAMES:
                local = local.lower()
            email = f"{local}@{domain.lower()}"
            return email, email.lower()
    email = normalize(text)
    return email, email.lower()
