"""Exceptions the library raises for problems a user can fix.

The CLI prints ``str(error)`` as one line and exits with ``error.exit_code``;
it never shows a traceback for these.
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
