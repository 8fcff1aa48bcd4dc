"""Delivery backends: one module per backend behind the small interface in ``base``.

``get_backend(settings, name=None, workers=None)`` returns the configured backend
(``settings.backend`` unless ``name`` is given): ``outbox`` writes .eml files,
``smtp`` talks to ``settings.smtp_url`` over a pool of persistent connections,
``sendgrid`` posts batches of up to 1,000 personalizations to the v3 Mail Send API,
``ses`` sends through Amazon SES v2 (SendBulkEmail, 50 a call, over a stored template),
``postmark`` posts batches of up to 500 messages to Postmark's broadcast stream, ``mailgun`` batches of up to 1,000 recipients
with recipient-variables.
See ``base`` for how the runner calls ``send_batch`` and what each outcome means.
"""

from __future__ import annotations

from ...config import BACKENDS, Settings
from ...errors import ConfigError
from .base import Backend, BackendBase, BackendUnavailable, DeliveryResult, Status

__all__ = [
    "BACKENDS",
    "Backend",
    "BackendBase",
    "BackendUnavailable",
    "DeliveryResult",
    "Status",
    "get_backend",
]


def get_backend(settings: Settings, name: str | None = None, *, workers: int | None = None) -> Backend:
    """The backend called ``name`` (default ``settings.backend``), not yet opened.

    ``workers`` is the number of ``send_batch`` calls the runner will run at once; the
    SMTP backend keeps that many connections, the SendGrid backend that many requests.
    """
    chosen = name or settings.backend
    if workers is not None and workers < 1:
        raise ConfigError(f"--workers must be at least 1, not {workers}")
    if chosen == "outbox":
        from .outbox import OutboxBackend

        return OutboxBackend(settings.outbox_path, workers=workers or 1)
    if chosen == "smtp":
        from .smtp import SMTPBackend

        return SMTPBackend.from_settings(settings, workers=workers)
    if chosen == "sendgrid":
        from .sendgrid import SendGridBackend

        return SendGridBackend.from_settings(settings, workers=workers)
    if chosen == "ses":
        from .ses import SESBackend

        return SESBackend.from_settings(settings, workers=workers)
    if chosen == "postmark":
        from .postmark import PostmarkBackend

        return PostmarkBackend.from_settings(settings, workers=workers)
    if chosen == "mailgun":
        from .mailgun import MailgunBackend

        return MailgunBackend.from_settings(settings, workers=workers)
    raise ConfigError(
        f"unknown backend {chosen!r}: choose one of {', '.join(BACKENDS)}"
    )
