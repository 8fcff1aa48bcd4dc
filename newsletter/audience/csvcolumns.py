"""Which column of an import file is what: the header's names in any case and spelling
(``Email``, ``E-mail Address``, ``email_address``; ``Name`` or ``First Name`` + ``Last
Name``; ``status``, ``list_status``; every other column an attribute) and its delimiter."""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from ..errors import UsageError
from .emails import InvalidEmail, normalize_email

_EMAIL = {"email", "emailaddress", "mail", "emailadress", "emailaddr", "subscriberemail"}
_NAME = {"name", "fullname", "displayname", "subscribername"}
_FIRST = {"firstname", "first", "givenname", "fname", "forename"}
_LAST = {"lastname", "last", "surname", "familyname", "lname"}
_STATUS = {"status"}
_LIST_STATUS = {"liststatus"}
_NOT_IMPORTED = {"consent"}  # `export --consent`: sign-up records, not attributes


@dataclass
class Columns:
    header: list[str]
    email: int
    name: int | None
    first: int | None
    last: int | None
    status: int | None
    list_status: int | None
    attributes: list[tuple[int, str]]


def _norm_header(cell: str) -> str:
    return re.sub(r"[^a-z0-9]", "", cell.strip().lower())


def columns_of(path: Path, header: list[str]) -> Columns:
    found: dict[str, int] = {}
    attributes: list[tuple[int, str]] = []
    roles = (
        ("email", _EMAIL),
        ("name", _NAME),
        ("first", _FIRST),
        ("last", _LAST),
        ("status", _STATUS),
        ("list_status", _LIST_STATUS),
    )
    used: set[str] = set()
    for index, cell in enumerate(header):
        norm = _norm_header(cell)
        if norm in _NOT_IMPORTED:
            continue
        role = next((r for r, names in roles if norm in names), None)
        if role is not None and role not in found:
            found[role] = index
            continue
        key = cell.strip() or f"column_{index + 1}"
        if key in used:
            raise UsageError(
                f"{path}:1: column {key!r} appears twice in the header; rename one of them"
            )
        used.add(key)
        attributes.append((index, key))
    if "name" in found:  # then First Name and Last Name are attributes like any other
        for role in ("first", "last"):
            index = found.pop(role, None)
            if index is not None:
                attributes.append((index, header[index].strip()))
        attributes.sort()
    if "email" not in found:
        shown = ", ".join(repr(c) for c in header[:8]) or "nothing"
        raise UsageError(
            f"{path}:1: no email column in the header (found {shown}); name the column "
            "holding the addresses 'email'"
        )
    return Columns(
        header=header,
        email=found["email"],
        name=found.get("name"),
        first=found.get("first"),
        last=found.get("last"),
        status=found.get("status"),
        list_status=found.get("list_status"),
        attributes=attributes,
    )


def delimiter_of(header_line: str) -> str:
    counts = {d: header_line.count(d) for d in (",", ";", "\t")}
    best = max(counts, key=lambda d: counts[d])
    return best if counts[best] else ","


def row_test(columns: Columns) -> Callable[[list[str]], bool]:
    """Whether cells read on their own make a row: a valid address where the email goes."""
    width, email_at = len(columns.header), columns.email

    def is_row(cells: list[str]) -> bool:
        if len(cells) <= email_at or (len(cells) > width and "".join(cells[width:]).strip()):
            return False
        try:
            normalize_email(cells[email_at])
        except InvalidEmail:
            return False
        return True

    return is_row
