"""Every exception newsletter raises for a problem someone can fix, in one tree.

The CLI (``newsletter.cli.main``) catches ``NewsletterError`` in one place, prints
``str(error)`` as one line and exits with ``error.exit_code``; it never shows a
traceback for these. The web endpoints catch the ``RequestRefused`` kinds and answer
with a plain status line that says nothing about anyone.

::

    NewsletterError                  exit 1 unless said otherwise
    ├── UsageError                   wrong arguments, an unreadable input file (exit 2)
    ├── ConfigError                  newsletter.toml or a NEWSLETTER_* variable (exit 2)
    ├── RenderError                  the templates cannot be rendered
    ├── MediaError                   a local image that cannot be found, read or written
    ├── LinksBroken                  `check_links_before_send`: a broken link stops the send
    ├── InvalidEmail (+ ValueError)  not an email address
    ├── UnknownStatus (+ ValueError) not a subscriber or list status (a caller's bug)
    ├── NotFound                     no such ...
    │   ├── ListNotFound
    │   ├── SubscriberNotFound
    │   ├── SendNotFound
    │   └── ScheduleNotFound
    ├── SendExists                   another process just created this send
    ├── WorkerRefused                another worker already runs on this SQLite database
    ├── BackendUnavailable           the backend cannot send at all (key, login, server)
    ├── SchemaError                  the database's schema is not this version's
    ├── DatabaseFailure              full, damaged, not a database, read-only
    ├── InvalidToken                 an unsubscribe token that is not one of ours
    │   ├── MalformedToken
    │   ├── BadSignature
    │   ├── WrongList
    │   └── ExpiredToken
    └── RequestRefused               a web request answered with a 4xx status
        ├── BodyTooLarge             413
        ├── WebhookRejected          403: not signed by SendGrid, or stale
        ├── Replayed                 403: this signed request was seen before
        ├── WebhookMalformed         400: signed, but not a JSON array of events
        ├── MalformedEvent           one event of a request: skipped and counted
        ├── SignupRefused            400: a sign-up that cannot be taken as sent
        └── SignupRateLimited        429: too many sign-ups from one IP address

The modules that raise them import them from here and keep their old names importable
(``from newsletter.audience import ListNotFound`` still works).
"""

from __future__ import annotations


class NewsletterError(Exception):
    """A problem the user can fix: the message says what and how."""

    exit_code = 1


class UsageError(NewsletterError):
    """Wrong arguments or an unreadable input file (exit status 2)."""

    exit_code = 2


class ConfigError(NewsletterError):
    """A missing or wrong value in newsletter.toml or a NEWSLETTER_* variable."""

    exit_code = 2


class RenderError(NewsletterError):
    """The templates could not be rendered (a broken user template, say)."""


class MediaError(NewsletterError):
    """A local image (``images/photo.jpg``) that is missing, outside the project, not an
    image, or cannot be written under out/media/."""


class LinksBroken(NewsletterError):
    """``check_links_before_send = true`` and the link check found errors: not sent."""


# Also a ValueError: ``normalize_email`` parses a value the way int() does, and code
# using the library may catch a value that does not parse as ValueError.
class InvalidEmail(NewsletterError, ValueError):
    """Not an email address; the message says why."""


# Also a ValueError: a wrong argument value (callers check user input first).
class UnknownStatus(NewsletterError, ValueError):
    """Not a status of this kind (a programming error: callers check user input first)."""


# -- things asked for by name or id that do not exist ----------------------------------


class NotFound(NewsletterError):
    """No list, subscriber, send or schedule by that name or id."""


class ListNotFound(NotFound):
    pass


class SubscriberNotFound(NotFound):
    pass


class SendNotFound(NotFound):
    pass


class ScheduleNotFound(NotFound):
    pass


# -- sending ---------------------------------------------------------------------------


class SendExists(NewsletterError):
    """Another process has just created the unfinished send of this issue and list."""


class WorkerRefused(NewsletterError):
    """Another worker already runs on this SQLite database (PostgreSQL takes any number)."""


class BackendUnavailable(NewsletterError):
    """The backend cannot send at all (bad key, failed login, server unreachable).

    Nothing in the batch was accepted; stop the send and keep the batch pending.
    """


# -- the database ----------------------------------------------------------------------


class SchemaError(NewsletterError):
    """The database's schema is not the one this version of newsletter needs."""


class DatabaseFailure(NewsletterError):
    """The database cannot do what was asked: full, damaged, not a database, read-only."""


# -- unsubscribe tokens ----------------------------------------------------------------


class InvalidToken(NewsletterError):
    """An unsubscribe token that is not one of ours (forged, altered, truncated, expired)."""


class MalformedToken(InvalidToken):
    """Not a token at all: bad characters, wrong length or bad encoding."""


class BadSignature(InvalidToken):
    """Well formed, but the tag does not match any configured secret (forged or altered)."""


class WrongList(InvalidToken):
    """A valid token, but for another list than the one asked about."""


class ExpiredToken(InvalidToken):
    """Signed with a retired secret more than ``old_secret_days`` days ago."""


# -- web requests ----------------------------------------------------------------------


class RequestRefused(NewsletterError):
    """A web request that is answered with a 4xx status and a plain line, nothing more."""


class BodyTooLarge(RequestRefused):
    """The request body passed the endpoint's limit (413)."""


class WebhookRejected(RequestRefused):
    """The request is not from SendGrid, or too old: answer 403 and say nothing more."""


class Replayed(RequestRefused):
    """This exact signed request was already received (403)."""


class WebhookMalformed(RequestRefused):
    """Signed correctly but not a JSON array of events: answer 400."""


class MalformedEvent(RequestRefused):
    """One event of a signed request cannot be applied: it is skipped and counted."""


class SignupRefused(RequestRefused):
    """A sign-up that cannot be taken as sent (not an address, a disposable domain, a list
    that is not public, a form filled by a bot): answered 400 with a page saying what to
    change, which reveals nothing about any subscriber."""


class SignupRateLimited(RequestRefused):
    """Too many sign-ups from one IP address within the hour (429)."""
