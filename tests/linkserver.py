"""A local web server for link-check tests: fixed answers on 127.0.0.1, never the internet.

Paths: ``/ok``, ``/missing`` (404), ``/error`` (500), ``/forbidden`` (403), ``/slow``
(answers after ``slow_seconds``), ``/r/N`` (a chain of N redirects ending at /ok),
``/down`` (on the TLS server: redirects to the plain server's /ok, an https -> http
downgrade), ``/img/<name>`` (images made with Pillow, see ``IMAGES``; ``fake.jpg`` is text
sent as image/jpeg; ``huge.jpg`` is a real JPEG header followed by 20 MB).
``hits`` counts requests per path; ``sent`` counts the bytes of ``huge.jpg`` that left.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import io
import ipaddress
import os
import ssl
import threading
import time
from collections import Counter
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

from PIL import Image


def image_bytes(size: tuple[int, int], fmt: str = "JPEG", noise: bool = False) -> bytes:
    if noise:
        image = Image.frombytes("RGB", size, os.urandom(size[0] * size[1] * 3))
    else:
        image = Image.new("RGB", size, (180, 40, 40))
    out = io.BytesIO()
    image.save(out, fmt, **({"quality": 100} if fmt == "JPEG" else {}))
    return out.getvalue()


IMAGES = {
    "wide.jpg": ((1600, 900), "JPEG", False),  # 16:9, sharp enough
    "wide2.jpg": ((1800, 1000), "JPEG", False),
    "narrow.png": ((800, 450), "PNG", False),  # 16:9 but too narrow for retina
    "tall.jpg": ((1600, 2400), "JPEG", False),  # 2:3 among 16:9 ones
    "big.jpg": ((1400, 1000), "JPEG", True),  # random noise at quality 100: over 1 MB
}
HUGE = 20 * 1024 * 1024


class LinkServer:
    def __init__(self, slow_seconds: float = 3.0, tls_dir: Path | None = None,
                 latency: float = 0.0) -> None:
        self.latency = latency  # seconds added to every answer, as a distant site would
        self.hits: Counter[str] = Counter()
        self.sent = 0
        self.slow_seconds = slow_seconds
        self.images = {name: image_bytes(*spec) for name, spec in IMAGES.items()}
        self.images["fake.jpg"] = b"<html><body>Not a picture</body></html>" * 20
        self.huge_head = image_bytes((1600, 900))
        self.plain = self._serve(None)
        self.ca_file: ssl.SSLContext | None = None
        self.tls = None
        if tls_dir is not None:
            cert, key = self._certificate(tls_dir)
            context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
            context.load_cert_chain(cert, key)
            self.ca_file = ssl.create_default_context(cafile=cert)  # the client's trust
            self.cert_file = cert  # for SSL_CERT_FILE, which httpx reads
            self.tls = self._serve(context)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.plain.server_address[1]}"

    @property
    def tls_url(self) -> str:
        assert self.tls is not None
        return f"https://127.0.0.1:{self.tls.server_address[1]}"

    def close(self) -> None:
        for server in (self.plain, self.tls):
            if server is not None:
                server.shutdown()
                server.server_close()

    def _serve(self, context: ssl.SSLContext | None) -> ThreadingHTTPServer:
        owner = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args: object) -> None:
                pass

            def do_GET(self) -> None:  # noqa: N802
                owner.hits[self.path] += 1
                owner.answer(self)

        class Server(ThreadingHTTPServer):
            def handle_error(self, request: object, client_address: object) -> None:
                pass  # a checker hanging up early is expected

        server = Server(("127.0.0.1", 0), Handler)
        server.daemon_threads = True
        if context is not None:
            server.socket = context.wrap_socket(server.socket, server_side=True)
        threading.Thread(target=server.serve_forever, daemon=True).start()
        return server

    def answer(self, handler: BaseHTTPRequestHandler) -> None:  # noqa: C901 - one branch a path
        path = handler.path.split("?")[0]  # /ok?n=1, /ok?n=2 ...: distinct URLs, one answer
        if self.latency:
            time.sleep(self.latency)
        if path == "/ok":
            self._send(handler, 200, b"<html>fine</html>", "text/html")
        elif path == "/missing":
            self._send(handler, 404, b"gone", "text/plain")
        elif path == "/error":
            self._send(handler, 500, b"broken", "text/plain")
        elif path == "/forbidden":
            self._send(handler, 403, b"no robots", "text/plain")
        elif path == "/slow":
            time.sleep(self.slow_seconds)
            self._send(handler, 200, b"late", "text/plain")
        elif path.startswith("/r/") and path[3:].isdigit():
            left = int(path[3:])
            self._redirect(handler, "/ok" if left <= 1 else f"/r/{left - 1}")
        elif path == "/down":
            self._redirect(handler, f"{self.url}/ok")
        elif path == "/img/huge.jpg":
            self._huge(handler)
        elif path.startswith("/img/") and path[5:] in self.images:
            kind = "image/png" if path.endswith(".png") else "image/jpeg"
            self._send(handler, 200, self.images[path[5:]], kind)
        else:
            self._send(handler, 404, b"no such fixture", "text/plain")

    @staticmethod
    def _send(handler: BaseHTTPRequestHandler, status: int, body: bytes, kind: str) -> None:
        handler.send_response(status)
        handler.send_header("Content-Type", kind)
        handler.send_header("Content-Length", str(len(body)))
        handler.end_headers()
        with contextlib.suppress(OSError):  # the checker stops reading once it knows enough
            handler.wfile.write(body)

    @staticmethod
    def _redirect(handler: BaseHTTPRequestHandler, location: str) -> None:
        handler.send_response(302)
        handler.send_header("Location", location)
        handler.send_header("Content-Length", "0")
        handler.end_headers()

    def _huge(self, handler: BaseHTTPRequestHandler) -> None:
        handler.send_response(200)
        handler.send_header("Content-Type", "image/jpeg")
        handler.send_header("Content-Length", str(HUGE))
        handler.end_headers()
        body = self.huge_head + b"\0" * (HUGE - len(self.huge_head))
        try:
            for start in range(0, HUGE, 65536):
                handler.wfile.write(body[start:start + 65536])
                self.sent += min(65536, HUGE - start)
        except OSError:
            handler.close_connection = True

    @staticmethod
    def _certificate(folder: Path) -> tuple[str, str]:
        from cryptography import x509
        from cryptography.hazmat.primitives import hashes, serialization
        from cryptography.hazmat.primitives.asymmetric import ec
        from cryptography.x509.oid import NameOID

        key = ec.generate_private_key(ec.SECP256R1())
        name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")])
        now = dt.datetime.now(dt.UTC)
        cert = (
            x509.CertificateBuilder().subject_name(name).issuer_name(name)
            .public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(now - dt.timedelta(days=1))
            .not_valid_after(now + dt.timedelta(days=1))
            .add_extension(x509.SubjectAlternativeName(
                [x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]), critical=False)
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .sign(key, hashes.SHA256())
        )
        cert_path, key_path = folder / "cert.pem", folder / "key.pem"
        cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
        key_path.write_bytes(key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption()))
        return str(cert_path), str(key_path)
