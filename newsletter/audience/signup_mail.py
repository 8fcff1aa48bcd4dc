"""The confirmation email of a sign-up: its own small template in the newsletter's brand,
sent through the configured delivery backend's interface (``send_batch``).

The message is built as every message is (``delivery.personalize``): multipart text and
HTML, Message-ID, From/Reply-To. Its per-recipient link (the footer's "This was not me"
and ``List-Unsubscribe``, with one-click POST) is the sign-up's *cancel* link, so mail
software that "unsubscribes" from it cancels the pending sign-up and subscribes no one.
``Mailer`` keeps one opened backend per server process (``send_batch`` is thread-safe).
"""

from __future__ import annotations

import logging
import threading
from pathlib import Path
from secrets import token_hex

import jinja2

from ..authoring.render import UNSUBSCRIBE_MARK, Rendered
from ..config import Settings
from ..delivery.personalize import OutgoingMessage, Recipient, prepare

log = logging.getLogger("newsletter.signup")
_env = jinja2.Environment(loader=jinja2.FileSystemLoader(str(Path(__file__).parent / "templates")),
                          autoescape=jinja2.select_autoescape(["html.j2"]),
                          undefined=jinja2.StrictUndefined, trim_blocks=True, lstrip_blocks=True)


def lists_text(names: list[str]) -> str:
    quoted = [f"“{name}”" for name in names]
    if len(quoted) == 1:
        return f"the {quoted[0]} emails"
    return "the " + ", ".join(quoted[:-1]) + f" and {quoted[-1]} emails"


def build(settings: Settings, *, email: str, name: str | None, list_id: int,
          list_names: list[str], confirm_url: str | None, cancel_url: str) -> OutgoingMessage:
    """The confirmation (``confirm_url``) or "already subscribed" (None) message."""
    heading = "Confirm your subscription" if confirm_url else "You are already subscribed"
    subject = f"{heading} to {settings.name}"
    context = {"lang": settings.lang, "subject": subject, "heading": heading,
               "brand": settings.brand, "name": settings.name,
               "postal_address": settings.postal_address, "lists_text": lists_text(list_names),
               "confirm_url": confirm_url, "days": settings.signup_confirm_days,
               "cancel_mark": UNSUBSCRIBE_MARK}
    rendered = Rendered(html=_env.get_template("confirm.html.j2").render(context),
                        text=_env.get_template("confirm.txt.j2").render(context),
                        subject=subject, preheader=None)
    template = prepare(rendered, settings, send_id=f"signup-{token_hex(6)}", list_id=list_id,
                       list_name=list_names[0])
    recipient = Recipient(None, email, name)
    token = cancel_url.rsplit("/", 1)[-1]
    message = OutgoingMessage(template, None, email, name, token, cancel_url,
                              template.message_id(recipient))
    return message._replace(head=message.build_headers())


class Mailer:
    """Sends single messages through the configured backend, opened once and reused."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self._backend = None
        self._lock = threading.Lock()

    def _opened(self):
        with self._lock:
            if self._backend is None:
                from ..delivery.backends import get_backend

                backend = get_backend(self.settings)  # SMTP: smtp_url's pool
                backend.open()
                self._backend = backend
            return self._backend

    def send(self, message: OutgoingMessage) -> bool:
        """True when the backend accepted the message."""
        try:
            result = self._opened().send_batch([message])[0]
        except Exception:  # a backend that is down: the sign-up stays pending, logged
            log.exception("confirmation email to a sign-up could not be sent")
            return False
        if not result.ok:
            log.warning("confirmation email not accepted: %s %s", result.status, result.reason)
        return result.ok

    def close(self) -> None:
        with self._lock:
            if self._backend is not None:
                self._backend.close()
                self._backend = None
