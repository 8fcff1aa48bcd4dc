"""A real SMTP server on 127.0.0.1 for tests and benchmarks (aiosmtpd in a thread).

    with SMTPTestServer(auth=("user", "pw"), tls="starttls") as server:
        server.url            # smtp://user:pw@127.0.0.1:PORT?starttls=true&cafile=...
        server.reject("a@example.com", 550, "5.1.1 no such user")        # every time
        server.reject("b@example.com", 451, "4.7.1 try later", times=1)  # once
        server.reject("c@example.com", 421, "4.3.2 shutting down", times=2)  # closes after
        server.drop_after_data("d@example.com", times=1)  # keeps it, never answers
        ...
        server.messages["a@example.com"]   # list of raw messages (bytes) received for it
        server.parsed("a@example.com")     # the same, parsed (EmailMessage)

``tls`` is None (plain), "starttls" (STARTTLS offered; required when ``auth`` is set) or
"implicit" (smtps://). The self-signed certificate (CN localhost, SAN 127.0.0.1) is made
with ``cryptography`` at start; ``server.cafile`` is its PEM for the client to trust.
``record=False`` keeps only counts (for benchmarks); ``server.counts`` always works.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import ipaddress
import socket
import ssl
import tempfile
import threading
from collections import Counter, defaultdict
from email import policy
from email.message import EmailMessage
from email.parser import BytesParser
from pathlib import Path
from typing import Any
from urllib.parse import quote

from aiosmtpd.controller import Controller
from aiosmtpd.smtp import AuthResult, LoginPassword


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def self_signed_cert(folder: Path) -> tuple[Path, Path]:
    """A throwaway certificate for localhost / 127.0.0.1: (cert.pem, key.pem)."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "localhost")])
    now = dt.datetime.now(dt.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=1))
        .add_extension(
            x509.SubjectAlternativeName(
                [x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]
            ),
            critical=False,
        )
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    cert_path, key_path = folder / "cert.pem", folder / "key.pem"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return cert_path, key_path


class _Fault:
    def __init__(self, stage: str, code: int, text: str, times: int | None) -> None:
        self.stage, self.code, self.text, self.times = stage, code, text, times


class _Handler:
    def __init__(self, server: SMTPTestServer) -> None:
        self.server = server

    def _take(self, address: str, stage: str) -> _Fault | None:
        with self.server.lock:
            for fault in self.server.faults.get(address.lower(), []):
                if fault.stage == stage and (fault.times is None or fault.times > 0):
                    if fault.times is not None:
                        fault.times -= 1
                    return fault
        return None

    @staticmethod
    def _close_soon(smtp: Any) -> None:
        loop = asyncio.get_running_loop()
        loop.call_later(0.01, smtp.transport.close)

    async def handle_MAIL(self, smtp, session, envelope, address, mail_options):  # noqa: N802
        envelope.mail_from = address
        envelope.mail_options.extend(mail_options)
        return "250 OK"

    async def handle_RCPT(self, smtp, session, envelope, address, rcpt_options):  # noqa: N802
        fault = self._take(address, "rcpt")
        if fault is not None:
            if fault.code == 0:  # drop the connection with no reply
                smtp.transport.close()
                return "421 closing"
            if fault.code == 421:
                self._close_soon(smtp)
            return f"{fault.code} {fault.text}"
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, smtp, session, envelope):  # noqa: N802
        server = self.server
        fault = None
        for address in envelope.rcpt_tos:
            fault = self._take(address, "data") or fault
        if fault is not None and fault.code not in (0, -1):
            if fault.code == 421:
                self._close_soon(smtp)
            return f"{fault.code} {fault.text}"
        content = envelope.original_content or envelope.content
        with server.lock:
            server.sessions.add(id(session))
            for address in envelope.rcpt_tos:
                key = address.lower()
                server.counts[key] += 1
                if server.record:
                    server.messages[key].append(content)
                    server.envelopes.append((envelope.mail_from, address))
            server.total += 1
        if fault is not None:  # stored, then the connection drops before the reply
            smtp.transport.abort()
            return "250 never seen"
        return f"250 2.0.0 Ok: queued as q{server.total}"


class SMTPTestServer:
    def __init__(
        self,
        *,
        auth: tuple[str, str] | None = None,
        tls: str | None = None,
        record: bool = True,
        port: int | None = None,
        smtputf8: bool = True,
    ) -> None:
        if tls not in (None, "starttls", "implicit"):
            raise ValueError("tls must be None, 'starttls' or 'implicit'")
        self.auth = auth
        self.tls = tls
        self.record = record
        self.smtputf8 = smtputf8
        self.port = port or free_port()
        self.host = "127.0.0.1"
        self.lock = threading.Lock()
        self.faults: dict[str, list[_Fault]] = defaultdict(list)
        self.messages: dict[str, list[bytes]] = defaultdict(list)
        self.counts: Counter[str] = Counter()
        self.envelopes: list[tuple[str, str]] = []
        self.sessions: set[int] = set()
        self.logins: list[str] = []
        self.total = 0
        self._folder = Path(tempfile.mkdtemp(prefix="smtpserver-"))
        self.cafile: Path | None = None
        self._controller: Controller | None = None

    # -- faults -------------------------------------------------------------------------

    def reject(
        self, address: str, code: int, text: str, *, times: int | None = None, stage: str = "rcpt"
    ) -> None:
        """Answer ``code text`` to RCPT (or, with stage="data", to the end of DATA)."""
        with self.lock:
            self.faults[address.lower()].append(_Fault(stage, code, text, times))

    def drop_at_rcpt(self, address: str, *, times: int | None = 1) -> None:
        """Close the connection without a reply when RCPT names ``address``."""
        self.reject(address, 0, "", times=times)

    def drop_after_data(self, address: str, *, times: int | None = 1) -> None:
        """Keep the message, then drop the connection before the final reply."""
        self.reject(address, -1, "", times=times, stage="data")

    def clear_faults(self) -> None:
        with self.lock:
            self.faults.clear()

    # -- what was received ---------------------------------------------------------------

    def parsed(self, address: str) -> list[EmailMessage]:
        parser = BytesParser(policy=policy.default)
        return [parser.parsebytes(data) for data in self.messages[address.lower()]]  # type: ignore[misc]

    def reset(self) -> None:
        with self.lock:
            self.messages.clear()
            self.counts.clear()
            self.envelopes.clear()
            self.total = 0

    @property
    def url(self) -> str:
        scheme = "smtps" if self.tls == "implicit" else "smtp"
        user = ""
        if self.auth:
            user = f"{quote(self.auth[0], safe='')}:{quote(self.auth[1], safe='')}@"
        query = []
        if self.tls == "starttls":
            query.append("starttls=true")
        if self.cafile is not None:
            query.append(f"cafile={quote(str(self.cafile))}")
        return f"{scheme}://{user}{self.host}:{self.port}" + ("?" + "&".join(query) if query else "")

    # -- life cycle ----------------------------------------------------------------------

    def _authenticate(self, server, session, envelope, mechanism, auth_data) -> AuthResult:
        if isinstance(auth_data, LoginPassword) and self.auth is not None:
            user = auth_data.login.decode()
            if (user, auth_data.password.decode()) == self.auth:
                self.logins.append(user)
                return AuthResult(success=True)
        return AuthResult(success=False, handled=False)

    def start(self) -> SMTPTestServer:
        kwargs: dict[str, Any] = {"data_size_limit": 64 * 1024 * 1024, "enable_SMTPUTF8": self.smtputf8}
        context = None
        if self.tls:
            cert, key = self_signed_cert(self._folder)
            self.cafile = cert
            context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
            context.load_cert_chain(cert, key)
        if self.tls == "starttls":
            kwargs["tls_context"] = context
            kwargs["require_starttls"] = self.auth is not None
        if self.auth:
            kwargs["authenticator"] = self._authenticate
            kwargs["auth_required"] = True
            # aiosmtpd does not notice implicit TLS, so only demand it with STARTTLS
            kwargs["auth_require_tls"] = self.tls == "starttls"
        if self.tls == "implicit":
            kwargs["ssl_context"] = context
        self._controller = Controller(
            _Handler(self), hostname=self.host, port=self.port, ready_timeout=10,
            **kwargs,
        )
        self._controller.start()
        return self

    def stop(self) -> None:
        if self._controller is not None:
            self._controller.stop()
            self._controller = None

    def __enter__(self) -> SMTPTestServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


try:  # a pytest fixture for test modules: ``from tests.smtpserver import smtp_server``
    import pytest

    @pytest.fixture
    def smtp_server():
        """A plain SMTP server on 127.0.0.1 recording every message; stopped after the test."""
        with SMTPTestServer() as server:
            yield server
except ImportError:  # benchmarks run without pytest installed
    pass
