"""A booking platform's calendar export server for tests, on loopback.

It serves feeds at Airbnb's URL shape, /calendar/ical/<name>.ics?s=<secret>, and answers the
way an HTTP server that supports conditional requests does (RFC 9110 / 9111): a strong ETag
and a Last-Modified with each body; 304 when If-None-Match names the current ETag, or, when no
If-None-Match was sent, when If-Modified-Since is not older than Last-Modified. A wrong or
missing secret is answered like a missing feed, 404 (what a platform answers then is
unpublished; any error status takes the same path in the poller). Faults per feed: an HTTP
status instead of the body (with a Retry-After, if set), a delay before answering, a body
that is not a calendar, validators switched off, the port closed (connection refused).

Public helpers: `FakeIcalServer(secret)`; `await start()` -> base URL; `await stop()`;
`url(name)`; `serve(name, body)` / `serve_fixture(name, file)` (a new version: new ETag and
Last-Modified); `feed(name)` -> the `FakeFeed` whose fault switches tests set;
`await set_reachable(False/True)`; `requests`, every request as a `SeenRequest`.

Also here for the feed tests: `RecordingSink`, a FeedSink that remembers what it was handed
(the reservations side is another package), and `wait_until`, a bounded wait on real I/O.
"""

from __future__ import annotations

import asyncio
import hashlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime, parsedate_to_datetime
from pathlib import Path

from aiohttp import web

from bridge.ical import FeedBooking

FIXTURES = Path(__file__).resolve().parent.parent / "fixtures" / "ical"
# Last-Modified dates of the versions: the first at this instant, each next one a minute on.
_FIRST_VERSION_AT = datetime(2026, 1, 1, tzinfo=UTC)


@dataclass
class FakeFeed:
    """One feed's current body and its fault switches."""

    body: bytes = b""
    version: int = 0
    # Answer this status (with a short text body) instead of the feed.
    status: int | None = None
    # Sent as Retry-After with `status` (a 429 or 503 that asks for a pause).
    retry_after: str | None = None
    # Seconds to wait before answering (real time: it is the network).
    delay_s: float = 0.0
    # Send no ETag / no Last-Modified (and so never answer 304 on that validator).
    etag_enabled: bool = True
    last_modified_enabled: bool = True

    @property
    def etag(self) -> str:
        """The strong ETag of the current version."""
        return '"' + hashlib.sha256(self.body).hexdigest()[:16] + f'-{self.version}"'

    @property
    def last_modified(self) -> datetime:
        """When the current version was made (whole seconds, as HTTP dates are)."""
        return _FIRST_VERSION_AT + timedelta(minutes=self.version)


@dataclass(frozen=True)
class SeenRequest:
    """A request the server received, and what it answered."""

    name: str
    if_none_match: str | None
    if_modified_since: str | None
    status: int


@dataclass
class FakeIcalServer:
    """The export server; see the module docstring."""

    secret: str = "s3cr3t-t0ken-4f1e9c"
    feeds: dict[str, FakeFeed] = field(default_factory=dict)
    requests: list[SeenRequest] = field(default_factory=list)
    port: int = 0
    _runner: web.AppRunner | None = None
    _site: web.TCPSite | None = None

    async def start(self) -> str:
        """Listen on a free loopback port; the base URL."""
        app = web.Application()
        app.router.add_get("/calendar/ical/{name}.ics", self._export)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        await self._open_site()
        return self.base

    async def stop(self) -> None:
        """Close the port and every connection."""
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None
            self._site = None

    @property
    def base(self) -> str:
        """http://127.0.0.1:<port>"""
        return f"http://127.0.0.1:{self.port}"

    def url(self, name: str, secret: str | None = None) -> str:
        """The export URL of a feed, with the secret (or another one)."""
        return f"{self.base}/calendar/ical/{name}.ics?s={secret or self.secret}"

    def feed(self, name: str) -> FakeFeed:
        """The feed called `name` (made empty on first use)."""
        return self.feeds.setdefault(name, FakeFeed())

    def serve(self, name: str, body: bytes) -> None:
        """Publish a new version of a feed."""
        feed = self.feed(name)
        feed.body = body
        feed.version += 1

    def serve_fixture(self, name: str, fixture: str) -> None:
        """Publish a fixture file from tests/fixtures/ical as the feed's new version."""
        self.serve(name, (FIXTURES / fixture).read_bytes())

    def requests_for(self, name: str) -> list[SeenRequest]:
        """The requests a feed received, in order."""
        return [r for r in self.requests if r.name == name]

    async def set_reachable(self, reachable: bool) -> None:
        """Unreachable: the port closes (connection refused); back on the same port."""
        if not reachable and self._site is not None:
            await self._site.stop()
            self._site = None
            # A client's kept-alive connection would still reach the old listener's handlers.
            assert self._runner is not None and self._runner.server is not None
            for handler in self._runner.server.connections:
                handler.force_close()
        elif reachable and self._site is None:
            await self._open_site()

    async def _open_site(self) -> None:
        assert self._runner is not None
        self._site = web.TCPSite(self._runner, "127.0.0.1", self.port)
        await self._site.start()
        if not self.port:
            self.port = int(self._runner.addresses[0][1])

    async def _export(self, request: web.Request) -> web.StreamResponse:
        name = request.match_info["name"]
        inm = request.headers.get("If-None-Match")
        ims = request.headers.get("If-Modified-Since")
        feed = self.feeds.get(name)
        response = await self._answer(request, feed)
        self.requests.append(SeenRequest(name, inm, ims, response.status))
        return response

    async def _answer(self, request: web.Request, feed: FakeFeed | None) -> web.StreamResponse:
        if request.query.get("s") != self.secret or feed is None or not feed.version:
            return web.Response(status=404, text="Not Found")
        if feed.delay_s:
            await asyncio.sleep(feed.delay_s)
        if feed.status is not None:
            extra = {"Retry-After": feed.retry_after} if feed.retry_after is not None else {}
            return web.Response(status=feed.status, text="Service Unavailable", headers=extra)
        headers = {"Content-Type": "text/calendar; charset=utf-8"}
        if feed.etag_enabled:
            headers["ETag"] = feed.etag
        if feed.last_modified_enabled:
            headers["Last-Modified"] = format_datetime(feed.last_modified, usegmt=True)
        if _not_modified(request, feed):
            return web.Response(status=304, headers=headers)
        return web.Response(status=200, body=feed.body, headers=headers)


def _not_modified(request: web.Request, feed: FakeFeed) -> bool:
    inm = request.headers.get("If-None-Match")
    if inm is not None:
        # RFC 9110 13.1.2: If-None-Match decides alone when present.
        return feed.etag_enabled and feed.etag in [t.strip() for t in inm.split(",")]
    ims = request.headers.get("If-Modified-Since")
    if ims is None or not feed.last_modified_enabled:
        return False
    try:
        since = parsedate_to_datetime(ims)
    except (TypeError, ValueError):
        return False
    return feed.last_modified <= since


@dataclass
class RecordingSink:
    """A FeedSink that remembers every set it was handed (and can be made to fail)."""

    calls: list[tuple[str, str, tuple[FeedBooking, ...]]] = field(default_factory=list)
    failing: bool = False

    async def replace_feed_reservations(self, feed_key: str, space_key: str,
                                        bookings: Sequence[FeedBooking]) -> object:
        if self.failing:
            raise RuntimeError("reservations store unavailable")
        self.calls.append((feed_key, space_key, tuple(bookings)))
        return None

    @property
    def last_uids(self) -> list[str]:
        return [b.uid for b in self.calls[-1][2]]


async def wait_until(condition: Callable[[], bool], what: str, bound_s: float = 20.0) -> None:
    """Real waiting for real I/O, bounded (generous: the machine is shared)."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + bound_s
    while not condition():
        if loop.time() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.01)
