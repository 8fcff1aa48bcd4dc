"""What the backends' row paths share (``send_rows``, see ``base``): a usual batch's
per-recipient values, computed in bulk straight from the ledger's claimed rows.

``row_values(template, rows)`` gives each row's unsubscribe URL, Message-ID,
preference-centre URL and reader token (what its tracked links carry; the tokens signed a
batch at a time), exactly as ``template.messages(rows)`` would make them, or None when the batch needs the general
path: a test send (no subscriber ids), an address ``messages`` refuses, a name it would
clean, an address twice (``unique=True``: one request cannot name it twice), too many
rows for one request.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, NamedTuple

from ..headersafe import is_clean, sendable_address
from ..personalize import MessageTemplate

if TYPE_CHECKING:
    from ..claims import ClaimedRow


class RowValues(NamedTuple):
    urls: list[str]  # the unsubscribe URL of each row
    message_ids: list[str]
    preferences: list[str]  # the preference centre's URL ("" when no part links to it)
    readers: list[str]  # reader tokens (template.readers); "" each when not asked


def row_values(template: MessageTemplate, rows: Sequence[ClaimedRow], *, limit: int = 0,
               unique: bool = False, readers: bool = True) -> RowValues | None:
    """The rows' values, or None for a batch the general path must take (see above);
    ``limit``: the most rows one request takes (0: any number, split by the backend)."""
    if not rows or (limit and len(rows) > limit):
        return None
    try:
        if unique and len({row.email.lower() for row in rows}) != len(rows):
            return None
    except AttributeError:  # not an address at all: the general path refuses that one
        return None
    ids = [row.subscriber_id for row in rows]
    for row in rows:
        name = row.name
        if type(row.subscriber_id) is not int or not sendable_address(row.email):
            return None  # messages() refuses the address: the general path fails it alone
        if name is not None and not (type(name) is str and is_clean(name)):
            return None  # cleaned by messages(): the general path
    url_head, msgid_head, msgid_tail = template.urls_and_ids()
    tokens, preferences = template.tokens_and_preferences(ids)
    return RowValues(
        [url_head + token for token in tokens],
        [f"{msgid_head}{subscriber}{msgid_tail}" for subscriber in ids],
        preferences,
        template.readers(ids) if readers else [""] * len(rows))
