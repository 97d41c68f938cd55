"""One conditional GET of a feed, its failures turned into a reason fit for logs (no URL).

aiohttp's exceptions print the whole URL, token included, so none of their text is passed on:
each failure is named here from its type and status only.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from pathlib import Path

import aiohttp

# A platform's export is a few hundred kilobytes at most; more is not a calendar.
MAX_FEED_BYTES = 8 * 1024 * 1024


# The longest Retry-After honoured: a platform asking for days is not asking for silence.
MAX_RETRY_AFTER_S = 6 * 3600.0


class FeedUnreachable(Exception):
    """The feed could not be read this time; `reason` is safe to log and show, and
    `retry_after_s` what the server asked us to wait (429/503 Retry-After), if anything."""

    def __init__(self, reason: str, retry_after_s: float | None = None) -> None:
        super().__init__(reason)
        self.reason = reason
        self.retry_after_s = retry_after_s


@dataclass(frozen=True, slots=True)
class Validators:
    """What the server said identifies the body we hold (sent back to get a 304)."""

    etag: str | None = None
    last_modified: str | None = None

    def headers(self) -> dict[str, str]:
        """The conditional request headers these validators make."""
        out: dict[str, str] = {}
        if self.etag:
            out["If-None-Match"] = self.etag
        if self.last_modified:
            out["If-Modified-Since"] = self.last_modified
        return out


@dataclass(frozen=True, slots=True)
class Fetched:
    """A new body, and the validators that came with it."""

    body: bytes
    validators: Validators


@dataclass(frozen=True, slots=True)
class NotModified:
    """The server's 304: the body we hold is still current."""


async def fetch_feed(session: aiohttp.ClientSession, url: str, validators: Validators,
                     timeout_s: float) -> Fetched | NotModified:
    """GET the feed, conditionally; raise `FeedUnreachable` on any failure."""
    timeout = aiohttp.ClientTimeout(total=timeout_s)
    try:
        async with session.get(url, headers=validators.headers(), timeout=timeout,
                               allow_redirects=True) as response:
            if response.status == 304:
                return NotModified()
            if response.status != 200:
                wait = _retry_after(response.headers.get("Retry-After"))
                raise FeedUnreachable(f"HTTP {response.status}", wait)
            body = await _body(response)
            return Fetched(body, Validators(response.headers.get("ETag"),
                                            response.headers.get("Last-Modified")))
    except TimeoutError:
        raise FeedUnreachable(f"no answer within {timeout_s:g} s") from None
    except aiohttp.TooManyRedirects:
        raise FeedUnreachable("too many redirects") from None
    except aiohttp.ClientConnectorError as exc:
        raise FeedUnreachable(f"cannot connect ({type(exc.os_error).__name__})") from None
    except aiohttp.ClientPayloadError:
        raise FeedUnreachable("the answer was cut short") from None
    except aiohttp.ClientError as exc:
        raise FeedUnreachable(f"request failed ({type(exc).__name__})") from None
    except ValueError as exc:
        # yarl's and aiohttp's URL errors quote the URL.
        raise FeedUnreachable(f"the URL cannot be used ({type(exc).__name__})") from None


def _retry_after(value: str | None) -> float | None:
    """Retry-After in seconds (RFC 9110 10.2.3; only the delay form: an HTTP date needs the
    wall clock, and the next poll is soon enough then)."""
    if value is None or not value.strip().isdigit():
        return None
    return min(float(value.strip()), MAX_RETRY_AFTER_S)


async def read_file_feed(path: Path, validators: Validators) -> Fetched | NotModified:
    """Read a local feed file, or say it has not changed (same modification time and size)."""
    return await asyncio.to_thread(_read_file, path, validators)


def _read_file(path: Path, validators: Validators) -> Fetched | NotModified:
    try:
        stat = path.stat()
        version = f"{stat.st_mtime_ns}-{stat.st_size}"
        if validators.etag == version:
            return NotModified()
        if stat.st_size > MAX_FEED_BYTES:
            raise FeedUnreachable(f"{path.name} is larger than {MAX_FEED_BYTES} bytes")
        return Fetched(path.read_bytes(), Validators(etag=version))
    except OSError as exc:
        raise FeedUnreachable(f"cannot read {path.name} ({exc.strerror or exc})") from None


async def _body(response: aiohttp.ClientResponse) -> bytes:
    chunks: list[bytes] = []
    size = 0
    async for chunk in response.content.iter_chunked(65536):
        size += len(chunk)
        if size > MAX_FEED_BYTES:
            raise FeedUnreachable(f"the answer is larger than {MAX_FEED_BYTES} bytes")
        chunks.append(chunk)
    return b"".join(chunks)
