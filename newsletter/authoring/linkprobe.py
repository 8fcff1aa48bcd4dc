"""Fetching links and images for ``newsletter check``: what each URL answers, concurrently.

Every URL is fetched once with GET (many sites refuse HEAD), redirects followed, at most
``per_host`` requests at a time to one host and ``concurrency`` in all, each within
``timeout`` seconds from connecting to the last byte read. A link's body is never read.
An image's body is read only until Pillow can tell its format and size from the first
bytes (a JPEG's or PNG's header is in its first few KB), plus, when the server does not
say ``Content-Length``, up to 1 MB to tell whether it is larger than that.
"""

from __future__ import annotations

import asyncio
import io
import time
from collections.abc import Iterable
from dataclasses import asdict, dataclass, fields
from typing import Any

import httpx

IMAGE_LIMIT = 1024 * 1024  # bytes: an email image larger than this is slow on phones
MAX_FOLLOWED = 10  # redirects followed before giving up (a loop, say)
USER_AGENT = "newsletter-linkcheck/0.1 (+https://github.com/; checks an issue's links)"


@dataclass
class Probe:
    """What one URL answered; stored in the cache as a dict."""

    url: str
    kind: str  # "link" or "image"
    checked_at: float
    status: int | None = None  # the final answer's HTTP status
    reason: str = ""  # its reason phrase
    final_url: str | None = None
    hops: int = 0  # redirects followed
    downgrade: str | None = None  # the http: URL an https: one redirected to
    failure: str | None = None  # "timeout", "redirects", "connect": no final answer
    error: str = ""  # the failure in words
    content_type: str = ""
    size: int | None = None  # bytes; at least IMAGE_LIMIT + 1 when "over 1 MB"
    width: int | None = None
    height: int | None = None
    image_format: str | None = None  # Pillow's name; None: not an image

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Probe | None:
        names = {f.name for f in fields(cls)}
        try:
            return cls(**{k: v for k, v in data.items() if k in names})
        except TypeError:
            return None  # an entry from another version: fetch it again

    @property
    def definitive(self) -> bool:
        """An answer worth caching: a status, not a network failure that may pass."""
        return self.failure is None or self.failure == "redirects"


@dataclass(frozen=True)
class FetchOptions:
    timeout: float = 10.0  # seconds per URL, all included
    per_host: int = 6  # requests at a time to one host
    concurrency: int = 48  # requests at a time in all
    verify: Any = True  # httpx's: True, a CA file path or an ssl.SSLContext (tests)


def _image_header(data: bytes, probe: Probe) -> bool:
    """Fill the probe's format and size from an image's first bytes; False: not yet."""
    from PIL import Image

    try:
        with Image.open(io.BytesIO(data)) as image:
            probe.image_format = image.format
            probe.width, probe.height = image.size
            if image.getexif().get(0x0112) in (5, 6, 7, 8):  # shown rotated a quarter turn
                probe.width, probe.height = probe.height, probe.width
    except Exception:  # truncated or not an image: Pillow raises many kinds  # noqa: BLE001
        return False
    return True


async def _read_image(response: httpx.Response, probe: Probe) -> None:
    declared = response.headers.get("content-length", "")
    probe.size = int(declared) if declared.isdigit() else None
    data = bytearray()
    async for chunk in response.aiter_bytes():
        data += chunk
        if probe.image_format is None and not _image_header(bytes(data), probe):
            if len(data) > IMAGE_LIMIT:
                break  # a megabyte and still no image header: it is not one
            continue
        if probe.size is not None or len(data) > IMAGE_LIMIT:
            break  # enough known: size declared, or over the limit by counting
    else:
        if probe.size is None:
            probe.size = len(data)
    if probe.size is None:
        probe.size = len(data)


def _record(response: httpx.Response, probe: Probe) -> None:
    chain = [r.url for r in response.history] + [response.url]
    probe.status = response.status_code
    probe.reason = response.reason_phrase
    probe.final_url = str(response.url)
    probe.hops = len(response.history)
    probe.content_type = response.headers.get("content-type", "").split(";")[0].strip().lower()
    for before, after in zip(chain, chain[1:], strict=False):
        if before.scheme == "https" and after.scheme == "http":
            probe.downgrade = str(after)
            break


async def probe_url(client: httpx.AsyncClient, url: str, kind: str, timeout: float) -> Probe:
    probe = Probe(url=url, kind=kind, checked_at=time.time())
    try:
        async with asyncio.timeout(timeout):
            async with client.stream("GET", url) as response:
                _record(response, probe)
                if kind == "image" and response.status_code < 400:
                    await _read_image(response, probe)
    except (TimeoutError, httpx.TimeoutException):
        probe.failure, probe.error = "timeout", f"no complete answer within {timeout:g} s"
    except httpx.TooManyRedirects:
        probe.failure = "redirects"
        probe.error = f"more than {MAX_FOLLOWED} redirects (a redirect loop?)"
    except httpx.HTTPError as exc:
        probe.failure, probe.error = "connect", _describe(exc)
    except (ValueError, UnicodeError) as exc:  # httpx refuses some URLs outright
        probe.failure, probe.error = "connect", f"not a URL that can be fetched ({exc})"
    return probe


def _describe(exc: httpx.HTTPError) -> str:
    text = str(exc).strip() or type(exc).__name__
    if isinstance(exc, httpx.ConnectError):
        return f"cannot connect: {text[:120]}"
    return f"{type(exc).__name__}: {text[:120]}"


async def fetch_all(
    wanted: Iterable[tuple[str, str]], options: FetchOptions
) -> dict[tuple[str, str], Probe]:
    """Probe every (kind, url) once, concurrently; the answers by (kind, url)."""
    wanted = list(dict.fromkeys(wanted))
    hosts: dict[str, asyncio.Semaphore] = {}
    overall = asyncio.Semaphore(options.concurrency)
    limits = httpx.Limits(max_connections=options.concurrency,
                          max_keepalive_connections=options.concurrency)
    async with httpx.AsyncClient(
        follow_redirects=True, max_redirects=MAX_FOLLOWED, timeout=options.timeout,
        limits=limits, verify=options.verify, headers={"User-Agent": USER_AGENT},
    ) as client:

        async def one(kind: str, url: str) -> Probe:
            try:
                host = httpx.URL(url).host
            except (httpx.InvalidURL, ValueError, UnicodeError):
                host = ""  # probe_url reports it
            gate = hosts.setdefault(host, asyncio.Semaphore(options.per_host))
            async with gate, overall:
                return await probe_url(client, url, kind, options.timeout)

        probes = await asyncio.gather(*(one(kind, url) for kind, url in wanted))
    return {(p.kind, p.url): p for p in probes}
