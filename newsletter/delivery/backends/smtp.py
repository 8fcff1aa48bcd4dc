"""The SMTP backend: a pool of persistent connections to ``settings.smtp_url``.

URL forms (``smtp_url`` in newsletter.toml or ``NEWSLETTER_SMTP_URL``)::

    smtp://user:pass@host:587?starttls=true     STARTTLS (default port 587, else 25)
    smtps://user:pass@host:465                  implicit TLS (default port 465)
    smtp://127.0.0.1:1025                       plain, no login (a local relay)

Query options: ``starttls`` (true/false), ``timeout`` (seconds, default 30), ``pool``
(connections when the runner gives no worker count, default 4), ``cafile`` (a PEM file
of certificates to trust, for a private CA), ``verify`` (false turns certificate checks
off: local testing only), ``helo`` (the name to greet with). User and password are
percent-decoded (write ``%40`` for ``@``). SendGrid's relay is
``smtp://apikey:KEY@smtp.sendgrid.net:587?starttls=true``.

Each ``send_batch`` call checks out one connection and sends its messages one by one
(one envelope per recipient, as every message is personal); N calls at once use N
connections. Per message: a 421 reply or a dropped connection before the end of DATA
means "not accepted": the backend reconnects and tries again (at most 3 times), then
records a temporary failure. Other 4xx replies are temporary failures, 5xx replies
permanent ones, both with the server's reply. A connection lost after the whole message
was sent, before the server's answer, leaves that message ``uncertain``.

With a progress log (``journal.BatchLog``), each message is marked right before its end
of data goes out and again when the server answers, so a process killed mid-batch leaves
at most one message per connection whose fate is unknown.
"""

from __future__ import annotations

import contextlib
import queue
import smtplib
import ssl
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass
from email.utils import parseaddr
from functools import lru_cache
from urllib.parse import parse_qs, unquote, urlsplit

from ...config import Settings
from ...errors import ConfigError
from ..journal import BatchLog
from ..personalize import OutgoingMessage
from .base import BackendBase, BackendUnavailable, DeliveryResult, Status

_MAXLINE = 8192
ATTEMPTS = 3  # per message, for 421 and dropped connections
CONNECT_ATTEMPTS = 3
_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off"}
_OPTIONS = {"starttls", "timeout", "pool", "cafile", "verify", "helo"}


@dataclass(frozen=True)
class SMTPConfig:
    host: str
    port: int
    implicit_tls: bool = False
    starttls: bool = False
    username: str | None = None
    password: str | None = None
    timeout: float = 30.0
    pool: int = 4
    cafile: str | None = None
    verify: bool = True
    helo: str | None = None

    @property
    def tls(self) -> bool:
        return self.implicit_tls or self.starttls

    def ssl_context(self) -> ssl.SSLContext:
        context = ssl.create_default_context(cafile=self.cafile)
        if not self.verify:
            context.check_hostname = False
            context.verify_mode = ssl.CERT_NONE
        return context

    def describe(self) -> str:
        return f"{'smtps' if self.implicit_tls else 'smtp'}://{self.host}:{self.port}"


def _flag(name: str, value: str, where: str) -> bool:
    if value.lower() in _TRUE:
        return True
    if value.lower() in _FALSE:
        return False
    raise ConfigError(f"{where}: smtp_url option {name}={value!r} must be true or false")


# long: the URL's parts and options, checked one after another so that each mistake
# gets its own one-line error naming the fix.
def parse_smtp_url(url: str | None, where: str = "newsletter.toml") -> SMTPConfig:
    """Parse ``smtp_url``; any mistake is one ``ConfigError`` line saying how to fix it."""
    example = "smtp://user:pass@smtp.example.org:587?starttls=true"
    if not url:
        raise ConfigError(
            f"{where}: 'smtp_url' is not set, and the smtp backend needs it; add "
            f'smtp_url = "{example}" or set NEWSLETTER_SMTP_URL'
        )
    try:
        parts = urlsplit(url.strip())
        port = parts.port
    except ValueError as exc:
        raise ConfigError(f"{where}: smtp_url is not a valid URL ({exc}); write {example}") from None
    if parts.scheme not in ("smtp", "smtps"):
        raise ConfigError(
            f"{where}: smtp_url must start with smtp:// or smtps://, not "
            f"{parts.scheme + '://' if parts.scheme else repr(url[:20])}; write {example}"
        )
    if not parts.hostname:
        raise ConfigError(f"{where}: smtp_url has no host name; write {example}")
    if parts.path not in ("", "/"):
        raise ConfigError(f"{where}: smtp_url must not have a path ({parts.path!r}); write {example}")
    try:
        query = parse_qs(parts.query, keep_blank_values=True, strict_parsing=bool(parts.query))
    except ValueError:
        raise ConfigError(f"{where}: smtp_url query {parts.query!r} is malformed") from None
    unknown = sorted(set(query) - _OPTIONS)
    if unknown:
        raise ConfigError(
            f"{where}: smtp_url option {unknown[0]!r} is unknown; use "
            + ", ".join(sorted(_OPTIONS))
        )
    options = {key: values[-1] for key, values in query.items()}
    implicit = parts.scheme == "smtps"
    starttls = _flag("starttls", options["starttls"], where) if "starttls" in options else False
    if implicit and starttls:
        raise ConfigError(
            f"{where}: smtp_url uses smtps:// (TLS from the start) and starttls=true; choose one"
        )
    try:
        timeout = float(options.get("timeout", 30))
        pool = int(options.get("pool", 4))
    except ValueError:
        raise ConfigError(f"{where}: smtp_url timeout and pool must be numbers") from None
    if timeout <= 0 or not 1 <= pool <= 100:
        raise ConfigError(f"{where}: smtp_url needs timeout > 0 and 1 <= pool <= 100")
    username = unquote(parts.username) if parts.username else None
    password = unquote(parts.password) if parts.password is not None else None
    if username and password is None:
        raise ConfigError(f"{where}: smtp_url has a user but no password: write user:pass@host")
    return SMTPConfig(
        host=parts.hostname,
        port=port or (465 if implicit else 587 if starttls else 25),
        implicit_tls=implicit,
        starttls=starttls,
        username=username,
        password=password,
        timeout=timeout,
        pool=pool,
        cafile=options.get("cafile") or None,
        verify=_flag("verify", options["verify"], where) if "verify" in options else True,
        helo=options.get("helo") or None,
    )


@lru_cache(maxsize=64)
def envelope_sender(from_address: str) -> str:
    return parseaddr(from_address)[1]


def _sock(conn: smtplib.SMTP):
    if conn.sock is None:
        raise smtplib.SMTPServerDisconnected("not connected")
    return conn.sock


def _read_reply(conn: smtplib.SMTP) -> tuple[int, bytes]:
    """One (possibly multi-line) reply; leaner than smtplib's getreply for the hot path."""
    if conn.file is None:
        conn.file = _sock(conn).makefile("rb")
    lines: list[bytes] = []
    while True:
        line = conn.file.readline(_MAXLINE + 1)
        if not line:
            raise smtplib.SMTPServerDisconnected("connection closed by the server")
        lines.append(line[4:].strip())
        if line[3:4] != b"-":
            break
    try:
        code = int(line[:3])
    except ValueError:
        code = -1
    return code, b"\n".join(lines)


def _command(conn: smtplib.SMTP, line: bytes) -> tuple[int, bytes]:
    _sock(conn).sendall(line)
    return _read_reply(conn)


def _reply(code: int, message: bytes | str) -> str:
    text = message.decode("utf-8", "replace") if isinstance(message, bytes) else message
    return f"{code} {' '.join(text.split())}".strip()


class _Retry(Exception):
    """Not accepted, and the connection is gone or closing: reconnect and try again."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class SMTPBackend(BackendBase):
    name = "smtp"
    batch_size = 100
    logs_progress = True

    def __init__(self, config: SMTPConfig, *, workers: int | None = None) -> None:
        self.config = config
        self.concurrency = workers or config.pool
        self._idle: queue.LifoQueue[smtplib.SMTP] = queue.LifoQueue()
        self._lock = threading.Lock()
        self._all: set[smtplib.SMTP] = set()
        self.connections_made = 0
        self.verp: tuple[str, str] | None = None  # (secret_key, bounce_domain)

    @classmethod
    def from_settings(cls, settings: Settings, *, workers: int | None = None) -> SMTPBackend:
        backend = cls(parse_smtp_url(settings.smtp_url, str(settings.config_file)),
                      workers=workers)
        if settings.bounce_domain and settings.secret_key:
            backend.verp = (settings.secret_key, settings.bounce_domain)
        return backend

    def envelope_sender(self, message: OutgoingMessage) -> str:
        """MAIL FROM: the VERP return path of the send and subscriber (``bounce_domain``,
        ``feedback.verp``), else the From address."""
        if self.verp is not None and message.subscriber_id is not None \
                and not message.template.test:
            from ...feedback import verp

            return verp.address(*self.verp, int(message.send_id), message.subscriber_id)
        return envelope_sender(message.template.from_address)

    # -- connections ---------------------------------------------------------------------

    def _connect_once(self) -> smtplib.SMTP:
        cfg = self.config
        conn: smtplib.SMTP
        if cfg.implicit_tls:
            conn = smtplib.SMTP_SSL(
                cfg.host, cfg.port, local_hostname=cfg.helo, timeout=cfg.timeout,
                context=cfg.ssl_context(),
            )
        else:
            conn = smtplib.SMTP(cfg.host, cfg.port, local_hostname=cfg.helo, timeout=cfg.timeout)
        try:
            conn.ehlo()
            if cfg.starttls:
                if not conn.has_extn("starttls"):
                    raise BackendUnavailable(
                        f"{cfg.describe()} does not offer STARTTLS; use smtps:// or drop "
                        "starttls=true from smtp_url"
                    )
                conn.starttls(context=cfg.ssl_context())
                conn.ehlo()
            if cfg.username:
                conn.login(cfg.username, cfg.password or "")
        except BaseException:
            self._quit(conn)
            raise
        return conn

    def _connect(self) -> smtplib.SMTP:
        cfg = self.config
        delay = 0.2
        for attempt in range(1, CONNECT_ATTEMPTS + 1):
            try:
                conn = self._connect_once()
            except smtplib.SMTPAuthenticationError as exc:
                raise BackendUnavailable(
                    f"{cfg.describe()} refused the login ({_reply(exc.smtp_code, exc.smtp_error)}); "
                    "check the user and password in smtp_url"
                ) from None
            except smtplib.SMTPNotSupportedError:
                raise BackendUnavailable(
                    f"{cfg.describe()} offers no login (AUTH); remove user:pass from smtp_url "
                    "or use starttls=true"
                ) from None
            except ssl.SSLError as exc:
                raise BackendUnavailable(
                    f"{cfg.describe()}: TLS failed ({exc.reason or exc}); check the port, "
                    "smtps:// versus starttls=true, and cafile"
                ) from None
            except (OSError, smtplib.SMTPException) as exc:
                if attempt == CONNECT_ATTEMPTS:
                    raise BackendUnavailable(
                        f"cannot connect to {cfg.describe()}: {exc}; check host and port in "
                        "smtp_url and that the server is running"
                    ) from None
                time.sleep(delay)
                delay *= 4
            else:
                with self._lock:
                    self._all.add(conn)
                    self.connections_made += 1
                return conn
        raise AssertionError("unreachable")

    def _quit(self, conn: smtplib.SMTP) -> None:
        with self._lock:
            self._all.discard(conn)
        try:
            conn.quit()
        except (OSError, smtplib.SMTPException):
            with contextlib.suppress(OSError):
                conn.close()

    def _drop(self, conn: smtplib.SMTP) -> None:
        with self._lock:
            self._all.discard(conn)
        with contextlib.suppress(OSError):
            conn.close()

    def _checkout(self) -> smtplib.SMTP | None:
        try:
            return self._idle.get_nowait()
        except queue.Empty:
            return None

    def open(self) -> None:
        """Connect (and log in) once, so a wrong URL or password stops the send at once."""
        self._idle.put(self._connect())

    def close(self) -> None:
        while True:
            try:
                conn = self._idle.get_nowait()
            except queue.Empty:
                break
            self._quit(conn)

    # -- sending -------------------------------------------------------------------------

    def _transaction(
        self, conn: smtplib.SMTP, sender: str, message: OutgoingMessage,
        progress: BatchLog | None = None, index: int = 0,
    ) -> tuple[Status, str, str | None]:
        """One MAIL/RCPT/DATA exchange. Raises ``_Retry`` when worth another connection.

        ``progress`` is told right before the end of data leaves, and when the answer
        comes (not when the connection is lost before it: then the fate is unknown)."""
        recipient = message.email
        options: list[str] = []
        if not (sender.isascii() and recipient.isascii()):
            if not conn.has_extn("smtputf8"):
                return Status.PERMANENT, "the server does not support SMTPUTF8 addresses", None
            options.append("SMTPUTF8")
        data = message.as_smtp_data()  # dot-stuffed, ends with CRLF.CRLF
        extra = (" " + " ".join(options)) if options else ""
        try:
            code, reply = _command(conn, f"MAIL FROM:<{sender}>{extra}\r\n".encode())
            if code != 250:
                return self._refused(conn, code, reply)
            code, reply = _command(conn, f"RCPT TO:<{recipient}>\r\n".encode())
            if code not in (250, 251):
                return self._refused(conn, code, reply)
            code, reply = _command(conn, b"DATA\r\n")
            if code != 354:
                return self._refused(conn, code, reply)
            if progress is not None:
                progress.handing(index)
            _sock(conn).sendall(data)
        except (smtplib.SMTPServerDisconnected, OSError) as exc:
            raise _Retry(f"connection lost before the message was accepted: {exc}") from None
        try:
            code, reply = _read_reply(conn)
        except (smtplib.SMTPServerDisconnected, OSError) as exc:
            self._drop(conn)
            return Status.UNCERTAIN, f"connection lost after sending, before the reply: {exc}", None
        if progress is not None:
            progress.answered(index, code == 250)
        if code == 250:
            return Status.SENT, "", _reply(code, reply)
        if code == 421:
            raise _Retry(_reply(code, reply))
        status = Status.TEMPORARY if 400 <= code < 500 else Status.PERMANENT
        return status, _reply(code, reply), None

    def _refused(self, conn: smtplib.SMTP, code: int, reply: bytes) -> tuple[Status, str, None]:
        text = _reply(code, reply)
        if code == 421 or code == -1:
            raise _Retry(text)
        try:
            conn.rset()
        except (smtplib.SMTPServerDisconnected, OSError):
            raise _Retry(text) from None
        return (Status.TEMPORARY if 400 <= code < 500 else Status.PERMANENT), text, None

    def send_batch(self, messages: Sequence[OutgoingMessage], progress: BatchLog | None = None
                   ) -> list[DeliveryResult]:
        results: list[DeliveryResult] = []
        conn = self._checkout()
        unavailable: str | None = None  # once the server is unreachable, stop trying
        try:
            for index, message in enumerate(messages):
                if unavailable is not None:
                    results.append(DeliveryResult(Status.TEMPORARY, unavailable))
                    continue
                sender = self.envelope_sender(message)
                reason = ""
                outcome: tuple[Status, str, str | None] | None = None
                for _attempt in range(ATTEMPTS):
                    if conn is None:
                        try:
                            conn = self._connect()
                        except BackendUnavailable as exc:
                            if index == 0:
                                raise  # nothing of this batch was accepted: stop the send
                            unavailable = str(exc)
                            outcome = (Status.TEMPORARY, unavailable, None)
                            break
                    try:
                        outcome = self._transaction(conn, sender, message, progress, index)
                    except _Retry as retry:
                        reason = retry.reason
                        self._drop(conn)
                        conn = None
                        continue
                    if outcome[0] is Status.UNCERTAIN:
                        conn = None  # already dropped
                    break
                if outcome is None:
                    outcome = (Status.TEMPORARY, f"{reason} (after {ATTEMPTS} attempts)", None)
                results.append(DeliveryResult(*outcome))
        finally:
            if conn is not None:
                self._idle.put(conn)
        return results


def probe(config: SMTPConfig) -> str:
    """Connect, greet and log in, then quit: for ``newsletter send --dry-run``."""
    backend = SMTPBackend(config, workers=1)
    conn = backend._connect()
    try:
        return f"{config.describe()}: ready ({'TLS' if config.tls else 'no TLS'})"
    finally:
        backend._quit(conn)


__all__ = ["SMTPBackend", "SMTPConfig", "parse_smtp_url", "probe"]
