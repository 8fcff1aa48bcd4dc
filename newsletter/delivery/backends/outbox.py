"""The outbox backend: each message becomes an .eml file in ``settings.outbox_path``.

The zero-set-up default. File names are ``{send id}-{subscriber id}.eml``
(``{send id}-test-{hash of the address}.eml`` for a test address), so sending a message
again replaces its file instead of adding a second one. Each file is written to a
temporary name in the same folder and renamed into place, so a reader (or a crash) never
sees half a message. With a progress log, each file is marked before it is written and
after it is in place.
"""

from __future__ import annotations

import contextlib
import os
import re
import tempfile
from collections.abc import Sequence
from hashlib import sha256
from pathlib import Path

from ...private import private_folder
from ..journal import BatchLog
from ..personalize import OutgoingMessage
from .base import BackendBase, BackendUnavailable, DeliveryResult, Status

_UNSAFE = re.compile(r"[^A-Za-z0-9._-]+")


def file_name(message: OutgoingMessage) -> str:
    send = _UNSAFE.sub("_", str(message.send_id))
    if message.subscriber_id is not None:
        who = str(message.subscriber_id)
    else:
        who = "test-" + sha256(message.email.lower().encode("utf-8")).hexdigest()[:12]
    return f"{send}-{who}.eml"


class OutboxBackend(BackendBase):
    name = "outbox"
    batch_size = 500
    logs_progress = True

    def __init__(self, folder: Path, *, workers: int = 1) -> None:
        self.folder = Path(folder)
        self.concurrency = workers

    def open(self) -> None:
        try:
            private_folder(self.folder)  # 0700: its messages hold addresses (files 0600)
        except OSError as exc:
            raise BackendUnavailable(
                f"{self.folder}: cannot create the outbox folder: {exc.strerror}; "
                "check outbox_dir in newsletter.toml"
            ) from None

    def write(self, message: OutgoingMessage) -> Path:
        target = self.folder / file_name(message)
        fd, temp = tempfile.mkstemp(dir=self.folder, prefix=".tmp-", suffix=".eml")
        try:
            with os.fdopen(fd, "wb") as handle:
                handle.write(message.as_bytes())
            os.replace(temp, target)
        except BaseException:
            with contextlib.suppress(OSError):
                os.unlink(temp)
            raise
        return target

    def send_batch(self, messages: Sequence[OutgoingMessage], progress: BatchLog | None = None
                   ) -> list[DeliveryResult]:
        results: list[DeliveryResult] = []
        for index, message in enumerate(messages):
            if progress is not None:
                progress.handing(index)
            try:
                path = self.write(message)
            except OSError as exc:
                reason = f"cannot write to {self.folder}: {exc.strerror or exc}"
                results.append(DeliveryResult(Status.TEMPORARY, reason))
            else:
                results.append(DeliveryResult(Status.SENT, provider_id=str(path)))
            if progress is not None:
                progress.answered(index, results[-1].ok)
        return results
