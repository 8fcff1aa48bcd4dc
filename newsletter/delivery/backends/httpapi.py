"""What the HTTP API backends (Postmark, Mailgun) share: one POST with bounded retries.

``HttpApi.post`` sends a pre-built body and returns the final ``Answer``: 429 waits
(``Retry-After`` or ``X-RateLimit-Reset``, else exponential) and 5xx or a refused
connection back off with full jitter, both bounded by ``max_attempts``. A timeout or a
connection lost after the request left is status ``LOST`` (the provider may have
accepted it: its recipients are uncertain); a host never reached after the retries is
``UNREACHABLE``. ``halves`` splits a refused request to find the messages at fault.
``ApiBackend`` and ``each_call``: the backends' shared plumbing and their loop over a
batch's calls.
"""

from __future__ import annotations

import ctypes
import random
import threading
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from email.utils import formataddr
from typing import Any, NamedTuple, TypeVar

import httpx

from ..personalize import MessageTemplate
from .base import BackendBase, BackendUnavailable, DeliveryResult, Status

LOST = -1  # the request left; no answer came back
UNREACHABLE = -2  # never reached the host (refused, name not found) after the retries
T = TypeVar("T")


class Answer(NamedTuple):
    status: int
    text: str  # the body (one line, bounded) or what went wrong
    body: bytes = b""


def one_line(data: bytes | str, limit: int = 2000) -> str:
    if isinstance(data, bytes):
        data = data.decode("utf-8", "replace")
    return " ".join(data.split())[:limit]


def _wait_for(headers: Mapping[str, str], now: float) -> float | None:
    """Seconds to wait from a 429's headers (``Retry-After``, ``X-RateLimit-Reset``)."""
    try:
        return max(0.0, float(headers["Retry-After"]))
    except (KeyError, ValueError):
        pass
    try:
        reset = float(headers["X-RateLimit-Reset"])
    except (KeyError, ValueError):
        return None
    if reset > 1e12:  # milliseconds since the epoch
        reset /= 1000
    return max(0.0, reset - now)


class HttpApi:
    """A provider's API through one pooled ``httpx.Client`` shared by the workers."""

    def __init__(self, base_url: str, headers: Mapping[str, str], *, label: str,
                 auth: tuple[str, str] | None = None, timeout: float = 60.0, pool: int = 4,
                 max_attempts: int = 6, backoff: float = 1.0, max_wait: float = 120.0,
                 sleep: Callable[[float], None] = time.sleep) -> None:
        self.base_url = base_url.rstrip("/")
        self.headers, self.label, self.auth = dict(headers), label, auth
        self.timeout, self.max_attempts = timeout, max_attempts
        self.backoff, self.max_wait, self.sleep = backoff, max_wait, sleep
        self.pool = pool
        self._client: httpx.Client | None = None
        self._lock = threading.Lock()
        self.requests_made = 0
        self.waits: list[tuple[int, float]] = []  # (status, seconds) of each back-off

    def client(self) -> httpx.Client:
        """The one pooled client (thread-safe), made on first use: one TLS context and
        connection pool for every worker, ``pool`` connections at most."""
        with self._lock:
            if self._client is None:
                limits = httpx.Limits(max_connections=self.pool,
                                      max_keepalive_connections=self.pool)
                self._client = httpx.Client(base_url=self.base_url, headers=self.headers,
                                            auth=self.auth, timeout=self.timeout,
                                            limits=limits)
            return self._client

    def close(self) -> None:
        with self._lock:
            client, self._client = self._client, None
        if client is not None:
            client.close()

    def _backoff(self, status: int, attempt: int, wait: float | None = None) -> None:
        if wait is None:
            wait = random.uniform(0, min(self.max_wait, self.backoff * 2 ** (attempt - 1)))
        else:
            wait = min(self.max_wait, wait) + random.uniform(0, 0.25)
        with self._lock:
            self.waits.append((status, wait))
        self.sleep(wait)

    def post(self, path: str, content: bytes | list[bytes], content_type: str) -> Answer:
        """The final answer to one request, after the bounded retries. ``content`` may be
        a list of pieces: they are written one after the other (with their total as the
        Content-Length), never joined into one more copy of a large body."""
        client = self.client()
        headers = {"Content-Type": content_type}
        if isinstance(content, list):
            headers["Content-Length"] = str(sum(map(len, content)))
        for attempt in range(1, self.max_attempts + 1):
            with self._lock:
                self.requests_made += 1
            try:
                response = client.post(path, content=content, headers=headers)
            except (httpx.ConnectError, httpx.ConnectTimeout, httpx.PoolTimeout) as exc:
                if attempt >= self.max_attempts:
                    return Answer(UNREACHABLE, f"cannot reach {self.base_url}: {exc}")
                self._backoff(0, attempt)
                continue
            except httpx.TimeoutException:
                return Answer(LOST, f"no answer from {self.label} within {self.timeout:g} s")
            except (httpx.TransportError, OSError) as exc:
                return Answer(LOST, f"connection to {self.label} lost during the request: "
                                    f"{exc or type(exc).__name__}")
            status = response.status_code
            retry = status == 429 or status >= 500
            if not retry or attempt >= self.max_attempts:
                return Answer(status, one_line(response.content), response.content)
            wait = _wait_for(response.headers, time.time()) if status == 429 else None
            self._backoff(status, attempt, wait if status == 429 else None)
        raise AssertionError("unreachable")  # pragma: no cover


def halves(items: Sequence[T], indices: Sequence[int] | None
           ) -> tuple[tuple[list[T], Sequence[int]], tuple[list[T], Sequence[int]]]:
    """``items`` and their batch positions (None: 0..n-1), cut in two."""
    where = range(len(items)) if indices is None else indices
    half = len(items) // 2
    return (list(items[:half]), where[:half]), (list(items[half:]), where[half:])


def display_to(name: str | None, email: str) -> str:
    """The recipient as a ``To`` address: ``name <email>``, the name quoted or encoded
    as needed (``formataddr``); the address alone without a name."""
    if not name:
        return email
    if name.replace(" ", "").isalnum() and name.isascii():  # nothing to quote or encode
        return f"{name} <{email}>"
    # the name quoted or encoded; the address as it is (formataddr refuses a non-ASCII
    # one, which Mailgun takes in its UTF-8 form)
    return formataddr((name, "x@x")).removesuffix("<x@x>") + f"<{email}>"


class ApiBackend(BackendBase):
    """What the Postmark and Mailgun backends share: their ``HttpApi``, a send's content
    built once per template (``build_content``), and the loop over a batch's calls."""

    api: HttpApi
    # the provider's request pieces for one template, made once per send: each subclass
    # (MailgunBackend, PostmarkBackend) defines it as a method
    build_content: Callable[[MessageTemplate], Any]

    def __init__(self) -> None:
        self._contents: dict[int, tuple[MessageTemplate, Any]] = {}

    def open(self) -> None:
        keep_freed_memory()

    @property
    def requests_made(self) -> int:
        return self.api.requests_made

    def close(self) -> None:
        self.api.close()
        self._contents.clear()

    def content_for(self, template: MessageTemplate) -> Any:
        entry = self._contents.get(id(template))
        if entry is None or entry[0] is not template:
            entry = (template, self.build_content(template))
            self._contents[id(template)] = entry
        return entry[1]


KEEP_FREED = 64 * 1024 * 1024
_kept: list[bool] = []


def keep_freed_memory() -> None:
    """Have glibc keep up to 64 MB of freed heap rather than hand it back to the kernel
    at once (above 128 KB by default, raised only for mmap-sized blocks). A call's
    messages (Postmark: a hundred 50 KB messages) are freed when it is answered and the
    next call's built in fresh pages: faulting them in again cost more than building the
    JSON (31 against 3 microseconds a message, benchmarks/README.md). The peak stays the
    same: only what one call held is kept. Once per process; nothing where the C library
    is not glibc."""
    if _kept:
        return
    _kept.append(True)
    try:
        libc = ctypes.CDLL("libc.so.6")
        libc.mallopt(-1, KEEP_FREED)  # M_TRIM_THRESHOLD
    except (OSError, AttributeError):  # not glibc: its allocator has its own rules
        return


def each_call(count: int, calls: Iterable[tuple[Sequence[int], T]],
              call: Callable[[T, Sequence[int]], list[DeliveryResult]]
              ) -> list[DeliveryResult]:
    """The results of a batch of ``count`` messages sent in several calls: ``calls``
    gives each call's positions in the batch and what it sends, ``call`` sends one.
    ``BackendUnavailable`` before any call was accepted is raised (the batch stays
    pending); after, the rest of the batch is temporary."""
    results: list[DeliveryResult] = [DeliveryResult(Status.TEMPORARY, "not sent")] * count
    accepted = False
    for indices, group in calls:
        try:
            got = call(group, indices)
        except BackendUnavailable as exc:
            if not accepted:
                raise  # nothing of the batch went out: it stays pending
            got = [DeliveryResult(Status.TEMPORARY, str(exc))] * len(indices)
        accepted = accepted or any(r.ok for r in got)
        for i, result in zip(indices, got, strict=True):
            results[i] = result
        del group  # freed before the next call is built (a Postmark call holds 5 MB)
    return results
