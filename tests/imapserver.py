"""A real IMAP server for the tests: Debian's dovecot, run as a non-daemon in a temp dir.

``DovecotServer()`` writes a config (IMAP over TLS only, on a free 127.0.0.1 port), a
passwd-file user ``bounces`` and a self-signed certificate, starts ``dovecot -F`` and
waits until it answers. Where dovecot is not installed the tests skip with the reason,
except under CI=true (``.ci/run`` installs ``dovecot-imapd``), where they fail.
"""

from __future__ import annotations

import datetime as dt
import imaplib
import os
import shutil
import socket
import ssl
import subprocess
import tempfile
import time
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

DOVECOT = shutil.which("dovecot") or "/usr/sbin/dovecot"
USER, PASSWORD = "bounces", "bounce-secret"


def require_dovecot() -> None:
    if not os.access(DOVECOT, os.X_OK):
        message = "dovecot is not installed (apt-get install dovecot-imapd)"
        if os.environ.get("CI") == "true":
            pytest.fail(f"{message}; under CI=true the IMAP tests must run")
        pytest.skip(message)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _certificate(folder: Path) -> tuple[Path, Path]:
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")])
    now = dt.datetime.now(dt.UTC)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name)
            .public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(now - dt.timedelta(days=1))
            .not_valid_after(now + dt.timedelta(days=7))
            .sign(key, hashes.SHA256()))
    cert_path, key_path = folder / "cert.pem", folder / "key.pem"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(key.private_bytes(serialization.Encoding.PEM,
                                           serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))
    key_path.chmod(0o600)
    return cert_path, key_path


class DovecotServer:
    def __init__(self) -> None:
        require_dovecot()
        self.dir = Path(tempfile.mkdtemp(prefix="dovecot-"))
        self.dir.chmod(0o755)
        self.port = _free_port()
        cert, key = _certificate(self.dir)
        (self.dir / "users").write_text(f"{USER}:{{PLAIN}}{PASSWORD}\n")
        mail = self.dir / "mail"
        mail.mkdir()
        shutil.chown(mail, "nobody", "nogroup")
        (self.dir / "dovecot.conf").write_text(f"""
protocols = imap
listen = 127.0.0.1
base_dir = {self.dir}/run
state_dir = {self.dir}/state
log_path = {self.dir}/dovecot.log
ssl = required
ssl_cert = <{cert}
ssl_key = <{key}
disable_plaintext_auth = yes
mail_location = maildir:{mail}/%u
passdb {{
  driver = passwd-file
  args = scheme=PLAIN username_format=%u {self.dir}/users
}}
userdb {{
  driver = static
  args = uid=nobody gid=nogroup home={mail}/%u
}}
service imap-login {{
  inet_listener imap {{
    port = 0
  }}
  inet_listener imaps {{
    port = {self.port}
    ssl = yes
  }}
}}
protocol imap {{
  mail_max_userip_connections = 50
}}
""")
        self.process = subprocess.Popen([DOVECOT, "-F", "-c", str(self.dir / "dovecot.conf")],
                                        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        self._wait()

    @property
    def url(self) -> str:
        return f"imaps://{USER}:{PASSWORD}@127.0.0.1:{self.port}/INBOX?verify=false"

    def _wait(self) -> None:
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                log = (self.dir / "dovecot.log")
                raise RuntimeError(f"dovecot exited: {self.process.stderr.read().decode()} "
                                   f"{log.read_text() if log.exists() else ''}")
            try:
                self.client().logout()
                return
            except OSError:
                time.sleep(0.1)
        raise RuntimeError("dovecot did not answer within 15 s")

    def client(self) -> imaplib.IMAP4_SSL:
        context = ssl.create_default_context()
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
        conn = imaplib.IMAP4_SSL("127.0.0.1", self.port, ssl_context=context, timeout=10)
        conn.login(USER, PASSWORD)
        return conn

    def deliver(self, messages: list[bytes], folder: str = "INBOX") -> None:
        conn = self.client()
        try:
            for raw in messages:
                conn.append(folder, None, None, raw.replace(b"\r\n", b"\n")
                            .replace(b"\n", b"\r\n"))
        finally:
            conn.logout()

    def count(self, folder: str) -> int:
        conn = self.client()
        try:
            status, data = conn.select(f'"{folder}"', readonly=True)
            return int(data[0]) if status == "OK" else 0
        finally:
            conn.logout()

    def close(self) -> None:
        self.process.terminate()
        try:
            self.process.wait(10)
        except subprocess.TimeoutExpired:
            self.process.kill()
        shutil.rmtree(self.dir, ignore_errors=True)

    def __enter__(self) -> DovecotServer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
