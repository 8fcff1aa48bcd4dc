"""The small interface every delivery backend implements, and its result types.

How the runner drives a backend
-------------------------------
- ``backend.open()`` once before the first batch, ``backend.close()`` at the end
  (or ``with backend:``). ``open`` checks the configuration and credentials it can check
  without sending (a missing API key or a bad SMTP URL is a ``ConfigError``).
- ``backend.send_batch(messages)`` takes the ``OutgoingMessage`` objects of one ledger
  batch (built by ``MessageTemplate.message(recipient)``) and returns one
  ``DeliveryResult`` per message, in the same order. It returns only when every message
  has an outcome; retries the backend can do by itself (SMTP 421 and dropped connections,
  SendGrid 429 and 5xx) happen inside the call, bounded.
- ``backend.send_rows(template, rows)``, optional (``BackendBase`` answers
  ``NOT_HANDLED``): the runner offers every claimed batch to it first, as the ledger's
  rows (``delivery.claims.ClaimedRow``: subscriber_id, email, name, seq). A backend that can send a
  usual batch faster straight from the rows, without a message object per recipient,
  provides it: it must then do exactly what ``send_batch(template.messages(rows))``
  would (the same request or messages, byte for byte) and return one ``DeliveryResult``
  per row, in the rows' order. For any batch it does not handle (a test send, a name or
  address that needs cleaning or refusing, anything unusual) it returns ``NOT_HANDLED``
  (None) having sent nothing, and the runner takes the general path. The SendGrid
  backend has one.
- ``backend.writes_mime`` (default True): whether the backend sends the MIME bytes of
  ``as_bytes()`` / ``as_smtp_data()``. The runner then has each recipient's headers built
  before the batch goes to the backend, so a recipient whose message cannot be built
  fails alone (``permanent``) and the rest of the batch goes out. SendGrid's API builds
  the MIME itself from JSON (False).
- Progress: a backend with ``logs_progress = True`` takes ``progress=`` (a
  ``journal.BatchLog``, or None) in ``send_batch`` and ``send_rows``, and calls
  ``progress.handing(i)`` right before message ``i`` leaves for good (the SMTP end of
  data, the API request: ``handing_group(indices)``), then ``progress.answered(i, ok)``
  when the answer comes; nothing when the connection is lost before it. A process killed
  mid-batch then leaves uncertain only the messages in flight. For other backends the
  engine marks the whole batch in flight before calling them.
- ``send_batch`` is thread-safe: the runner runs ``backend.concurrency`` calls at once
  (one per worker thread) to use N SMTP connections or N SendGrid requests in flight.
- Batch size: any length is accepted. ``backend.batch_size`` is the size the runner
  should claim: one SendGrid request carries up to 1,000 personalizations (the backend
  splits a longer batch, or one repeating an address, into several requests); SMTP and
  the outbox handle messages one at a time inside a batch, so their batch size only sets
  how much is at stake (possibly "uncertain") if the process dies mid-batch.

Outcomes (``Status``)
---------------------
- ``SENT``: accepted by the server or API (``provider_id``: queue id / X-Message-Id / file).
- ``TEMPORARY``: not accepted, try again later (SMTP 4xx, SendGrid 5xx or 429 after the
  bounded retries, a full disk); ``reason`` has the server's reply.
- ``PERMANENT``: refused for good (SMTP 5xx for that recipient, SendGrid 400 with its
  error body for the whole request): do not retry without a change.
- ``UNCERTAIN``: the data left us but no answer came back (connection lost or timed out
  after the SMTP end-of-data or while a SendGrid request was in flight). It may have been
  delivered; resend only when the user asks (``--resend-uncertain``).

Exceptions: ``BackendUnavailable`` (bad credentials, a server that refuses every
connection) means nothing in the batch was accepted and the send should stop, with the
batch still pending. Any other exception escaping ``send_batch`` is a bug; the runner must
treat that batch as uncertain.
"""

from __future__ import annotations

import threading
from collections.abc import Sequence
from enum import StrEnum
from types import TracebackType
from typing import TYPE_CHECKING, NamedTuple, Protocol, runtime_checkable

from ...errors import BackendUnavailable as BackendUnavailable  # imported from here
from ..personalize import MessageTemplate, OutgoingMessage

if TYPE_CHECKING:
    from ..claims import ClaimedRow
    from ..journal import BatchLog

#: what ``send_rows`` returns for a batch it leaves to ``send_batch`` (nothing was sent)
NOT_HANDLED = None


class Status(StrEnum):
    SENT = "sent"
    TEMPORARY = "temporary"
    PERMANENT = "permanent"
    UNCERTAIN = "uncertain"


class DeliveryResult(NamedTuple):
    """One message's outcome; ``send_batch`` returns them in the order of its messages.

    Immutable, so a backend whose answer covers many messages at once (a SendGrid request
    is accepted or refused whole) returns one result repeated: ``[result] * len(group)``,
    which the runner recognises and records in one statement.
    """

    status: Status
    reason: str = ""  # the server's reply or the API's error body, for the report
    provider_id: str | None = None  # SMTP queue id, SendGrid X-Message-Id, outbox file

    @property
    def ok(self) -> bool:
        return self.status is Status.SENT


@runtime_checkable
class Backend(Protocol):
    name: str
    batch_size: int  # how many messages the runner should claim per send_batch call
    concurrency: int  # how many send_batch calls may usefully run at once

    def open(self) -> None: ...

    def send_batch(self, messages: Sequence[OutgoingMessage]) -> list[DeliveryResult]: ...

    def send_rows(
        self, template: MessageTemplate, rows: Sequence[ClaimedRow]
    ) -> list[DeliveryResult] | None:
        """Optional row path (see the module docs); ``NOT_HANDLED`` to decline."""
        ...

    def close(self) -> None: ...


_SLOTS_LOCK = threading.Lock()


class BackendBase:
    """Context-manager plumbing shared by the backends."""

    name = "base"
    batch_size = 100
    concurrency = 1
    writes_mime = True  # see the module docstring
    logs_progress = False  # True: send_batch and send_rows take progress= (see above)
    prepares_ahead = 0  # runner threads beyond ``concurrency`` (see ``request_slot``)

    def request_slot(self) -> threading.BoundedSemaphore:
        """What each request holds from just before it is marked handed in the progress
        log until it is answered: ``concurrency`` requests are out at once, however many
        threads build them. A backend whose ``prepares_ahead`` is more than 0 gets that
        many more runner threads than ``concurrency``: they claim and build the next
        requests while the others are out, so the provider's latency never leaves one of
        the ``concurrency`` slots idle while a request is being built."""
        slots = self.__dict__.get("_request_slots")
        if slots is None:
            with _SLOTS_LOCK:
                slots = self.__dict__.setdefault(
                    "_request_slots", threading.BoundedSemaphore(self.concurrency))
        return slots

    def open(self) -> None:  # pragma: no cover - overridden where there is work to do
        return None

    def close(self) -> None:  # pragma: no cover - overridden where there is work to do
        return None

    def send_rows(
        self, template: MessageTemplate, rows: Sequence[ClaimedRow],
        progress: BatchLog | None = None,
    ) -> list[DeliveryResult] | None:
        """No row path: every batch goes through ``send_batch`` (see the module docs)."""
        return NOT_HANDLED

    def __enter__(self):
        self.open()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()
