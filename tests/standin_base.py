"""What the local provider stand-ins share (SendGrid, Postmark, Mailgun, SES): an HTTP server on
127.0.0.1 in a thread (tests) or its own process (benchmarks), switches for rate
limiting, injected failures and slow answers, and counters of what was accepted.

A stand-in subclass implements ``authorized(handler)`` (None, or the refusal),
``limited()`` (its provider's 429, with its headers), ``failure(status)`` and
``accept(handler, raw)``, which validates the request as the provider does and returns
the answer, calling ``self.accepted_one(email, message_id, item)`` per recipient taken.

``python -m tests.<provider>_standin --port 0 --key KEY --record counts`` prints
``READY http://127.0.0.1:PORT``; ``GET /_stats`` and ``GET /_reset`` work in both modes.
"""

from __future__ import annotations

import argparse
import json
import sys
import threading
import time
from collections import Counter, defaultdict
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

Reply = tuple[int, dict[str, str], bytes]


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    request_queue_size = 128

    def handle_error(self, request: Any, client_address: Any) -> None:
        if isinstance(sys.exc_info()[1], ConnectionError):
            return  # the client gave up (a timeout test): nothing to report
        super().handle_error(request, client_address)


class StandIn:
    content_type = "application/json"
    max_bytes = 50 * 1000 * 1000

    def __init__(self, *, api_key: str, record: str = "full", port: int = 0,
                 max_bytes: int | None = None) -> None:
        self.api_key = api_key
        self.record = record  # "full": each message kept; "counts": only counted
        if max_bytes is not None:
            self.max_bytes = max_bytes
        self.lock = threading.Lock()
        self.counts: Counter[str] = Counter()
        self.accepted: dict[str, list[Any]] = defaultdict(list)
        self.times: list[float] = []  # when each accepted message arrived (record "full")
        self.statuses: Counter[int] = Counter()
        self.requests = self.accepted_requests = self.bytes_received = 0
        self.in_flight = self.most_in_flight = 0  # POSTs being answered now, and at most
        self._limit: int | None = None
        self._window, self._window_start, self._window_count = 1.0, 0.0, 0
        self._fail: list[int] = []
        self._delay = 0.0
        self._port = port
        self._server: _Server | None = None

    # -- switches --------------------------------------------------------------------------

    def rate_limit(self, limit: int | None, window: float = 1.0) -> None:
        """Allow ``limit`` requests per ``window`` seconds, then 429 until the reset."""
        with self.lock:
            self._limit, self._window = limit, window
            self._window_start, self._window_count = time.time(), 0

    def fail_next(self, count: int, status: int = 500) -> None:
        with self.lock:
            self._fail.extend([status] * count)

    def delay(self, seconds: float) -> None:
        """Wait this long before answering each accepted request (to provoke timeouts)."""
        self._delay = seconds

    # -- counters --------------------------------------------------------------------------

    def accepted_one(self, email: str, item: Any) -> None:
        """Count one accepted message (call under ``self.lock``)."""
        key = email.lower()
        self.counts[key] += 1
        if self.record == "full":
            self.accepted[key].append(item)
            self.times.append(time.monotonic())

    def reset(self) -> None:
        with self.lock:
            self.counts.clear()
            self.accepted.clear()
            self.times.clear()
            self.statuses.clear()
            self.requests = self.accepted_requests = self.bytes_received = 0
            self.most_in_flight = 0

    def stats(self) -> dict[str, Any]:
        with self.lock:
            return {"requests": self.requests, "accepted_requests": self.accepted_requests,
                    "recipients": sum(self.counts.values()), "distinct": len(self.counts),
                    "duplicates": sum(1 for v in self.counts.values() if v > 1),
                    "statuses": dict(self.statuses), "bytes": self.bytes_received}

    # -- the provider's part ---------------------------------------------------------------

    def authorized(self, handler: BaseHTTPRequestHandler) -> Reply | None:
        raise NotImplementedError

    def limited(self, reset: float) -> Reply:
        raise NotImplementedError

    def failure(self, status: int) -> Reply:
        return status, {}, b'{"message": "Internal Server Error"}'

    def too_large(self) -> Reply:
        return 413, {}, b'{"message": "Request Entity Too Large"}'

    def not_found(self) -> Reply:
        return 404, {}, b'{"message": "Not Found"}'

    def answered(self, status: int, body: bytes) -> None:
        """Called with each POST's answer (a stand-in that keeps some of them)."""

    def accept(self, handler: BaseHTTPRequestHandler, raw: bytes) -> Reply:
        raise NotImplementedError

    def routes(self, path: str) -> bool:
        raise NotImplementedError

    # -- HTTP ------------------------------------------------------------------------------

    def _rate_limited(self) -> Reply | None:
        if self._limit is None:
            return None
        now = time.time()
        if now - self._window_start >= self._window:
            self._window_start, self._window_count = now, 0
        if self._window_count >= self._limit:
            return self.limited(self._window_start + self._window)
        self._window_count += 1
        return None

    def _answer(self, handler: BaseHTTPRequestHandler) -> Reply:
        length = int(handler.headers.get("Content-Length") or 0)
        if not self.routes(handler.path.split("?")[0]):
            handler.rfile.read(length)
            return self.not_found()
        refused = self.authorized(handler)
        if refused is not None:
            handler.rfile.read(length)
            return refused
        if length > self.max_bytes:
            while length > 0:  # drain it, so the client reads the answer
                length -= len(handler.rfile.read(min(length, 1 << 20)) or b"x" * length)
            return self.too_large()
        raw = handler.rfile.read(length)
        with self.lock:
            self.bytes_received += len(raw)
            if self._fail:
                return self.failure(self._fail.pop(0))
            limited = self._rate_limited()
            if limited is not None:
                return limited
        if self._delay:
            time.sleep(self._delay)
        return self.accept(handler, raw)

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        standin = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, format: str, *args: Any) -> None:  # noqa: A002
                return None

            def _send(self, status: int, headers: dict[str, str], body: bytes) -> None:
                self.send_response(status)
                content_type = headers.pop("Content-Type", standin.content_type)
                if body:
                    self.send_header("Content-Type", content_type)
                self.send_header("Content-Length", str(len(body)))
                for key, value in headers.items():
                    self.send_header(key, value)
                if self.close_connection:
                    self.send_header("Connection", "close")
                self.end_headers()
                self.wfile.write(body)

            def do_POST(self) -> None:  # noqa: N802
                with standin.lock:
                    standin.requests += 1
                    standin.in_flight += 1
                    standin.most_in_flight = max(standin.most_in_flight, standin.in_flight)
                try:
                    status, headers, body = standin._answer(self)
                finally:
                    with standin.lock:
                        standin.in_flight -= 1
                with standin.lock:
                    standin.statuses[status] += 1
                standin.answered(status, body)
                self._send(status, dict(headers), body)

            def do_GET(self) -> None:  # noqa: N802
                if self.path == "/_stats":
                    self._send(200, {}, json.dumps(standin.stats()).encode())
                elif self.path == "/_reset":
                    standin.reset()
                    self._send(200, {}, b'{"reset": true}')
                else:
                    self._send(405, {}, b'{"message": "Method Not Allowed"}')

        return Handler

    @property
    def port(self) -> int:
        assert self._server is not None
        return self._server.server_address[1]

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self):
        self._server = _Server(("127.0.0.1", self._port), self._handler())
        threading.Thread(target=self._server.serve_forever, kwargs={"poll_interval": 0.05},
                         daemon=True).start()
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


def serve_main(cls: type[StandIn], default_key: str) -> None:
    """Run a stand-in as its own process until stdin closes (benchmarks)."""
    parser = argparse.ArgumentParser(description=(cls.__doc__ or "").split("\n")[0])
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--key", default=default_key)
    parser.add_argument("--record", choices=("full", "counts"), default="counts")
    args = parser.parse_args()
    standin = cls(api_key=args.key, record=args.record, port=args.port).start()
    print(f"READY {standin.url}", flush=True)
    try:
        sys.stdin.read()
    finally:
        standin.stop()
