"""One feed polled on its interval: fetch, parse, track, hand the full set on to a sink.

The poller owns no reservations: it hands the sink, after every good read that changed
anything, the complete set of stays the feed gives access to now (vanished ones within their
grace included). A failed read changes nothing downstream; it raises a warning on the feed's
status and is logged once per outage, with the feed's host only.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import replace
from types import TracebackType
from typing import Protocol

import aiohttp

from bridge.clock import Clock
from bridge.ical.config import FeedUrlError, IcalFeedConfig, url_host
from bridge.ical.fetch import (
    FeedUnreachable,
    Fetched,
    NotModified,
    Validators,
    fetch_feed,
    read_file_feed,
)
from bridge.ical.model import FeedBooking, ParsedFeed
from bridge.ical.parse import FeedFormatError, parse_feed
from bridge.ical.status import FeedStatus, FeedWarningCode
from bridge.ical.tracker import TrackedFeed, track

log = logging.getLogger(__name__)

USER_AGENT = "lockbridge-ical/1"


class FeedSink(Protocol):
    """Where a feed's bookings go: the reservations side, which owns access.

    `bookings` is the feed's whole current set, never a delta: each a stay that gives access
    (kind RESERVATION), keyed by its `uid` within `feed_key`, with aware UTC `starts_at` and
    `ends_at`. A UID missing from the set is revoked; an empty set revokes all of the feed's
    stays. `summary` may hold a guest's name (Vrbo): keep it out of logs and the status page.
    Raising makes the poller offer the same set again at its next poll.
    """

    async def replace_feed_reservations(self, feed_key: str, space_key: str,
                                        bookings: Sequence[FeedBooking]) -> object:
        """Make the reservations from `feed_key` exactly `bookings` (add, move, revoke)."""


class FeedPoller:
    """Polls one feed of one space; `async with` it, then `await run()` (or `poll_once()`)."""

    def __init__(self, space_key: str, config: IcalFeedConfig, sink: FeedSink, clock: Clock,
                 session: aiohttp.ClientSession | None = None) -> None:
        self._config = config
        self._sink = sink
        self._clock = clock
        self._session = session
        self._own_session = session is None
        self._validators = Validators()
        self._parsed: ParsedFeed | None = None
        self._tracked = TrackedFeed.empty()
        self._handed: tuple[FeedBooking, ...] | None = None
        # What the server last asked us to wait (Retry-After), honoured by `run` once.
        self._retry_after_s: float | None = None
        self._status = FeedStatus(config.key, space_key, config.source_name())

    async def __aenter__(self) -> FeedPoller:
        """Open the poller's own HTTP session unless one was given."""
        if self._session is None:
            self._session = aiohttp.ClientSession(headers={"User-Agent": USER_AGENT})
        return self

    async def __aexit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                        tb: TracebackType | None) -> None:
        """Close the session the poller opened."""
        if self._own_session and self._session is not None:
            await self._session.close()
            self._session = None

    @property
    def status(self) -> FeedStatus:
        """The feed's current warnings and counters."""
        return self._status

    async def run(self) -> None:
        """Poll now and then every `interval_s` of the clock, until cancelled; a poll's
        unexpected failure is contained (logged, shown as a warning) and retried next time."""
        while True:
            try:
                await self.poll_once()
            except Exception as exc:  # a bug must not end the feed, nor its siblings' TaskGroup
                log.exception("iCal feed %s of space %s: the poll failed", self._config.key,
                              self._status.space_key)
                self._failed(FeedWarningCode.UNREACHABLE, f"the poll failed "
                             f"({type(exc).__name__})")
            await self._clock.sleep(self.next_delay_s())

    def next_delay_s(self) -> float:
        """Seconds until the next poll: the interval, or longer when the server asked."""
        asked, self._retry_after_s = self._retry_after_s, None
        return max(self._config.interval_s, asked or 0.0)

    async def poll_once(self) -> None:
        """One read of the feed and, when it was good, the sink told of any change."""
        now = self._clock.now()
        self._status = replace(self._status, last_attempt_at=now)
        seen = await self._read()
        if seen is None:
            return
        self._tracked = track(self._tracked, seen, now, self._config.grace_period)
        self._status = replace(
            self._status, last_success_at=now, failures_in_a_row=0,
            bookings=len(self._tracked.by_uid),
            bookings_in_grace=len(self._tracked.missing()),
        )
        self._recovered(FeedWarningCode.UNREACHABLE, FeedWarningCode.UNPARSABLE)
        await self._hand_on()

    async def _read(self) -> tuple[FeedBooking, ...] | None:
        """The feed's stays that give access, or None after a failure (already reported)."""
        try:
            result = await self._fetch()
        except (FeedUrlError, FeedUnreachable) as exc:
            if isinstance(exc, FeedUnreachable):
                self._retry_after_s = exc.retry_after_s
            self._failed(FeedWarningCode.UNREACHABLE, _reason(exc))
            return None
        if isinstance(result, Fetched):
            parsed = self._parse(result.body)
            if parsed is None:
                return None
            self._parsed = parsed
            # Validators are kept only with a body that parsed, so a bad one is fetched again.
            self._validators = result.validators
            self._note_skipped(parsed)
        elif self._parsed is None:
            # A 304 to a request that sent no validators: nothing good to keep.
            self._failed(FeedWarningCode.UNREACHABLE, "HTTP 304 with no feed held")
            return None
        return self._parsed.giving_access()

    async def _fetch(self) -> Fetched | NotModified:
        if self._config.ics_file is not None:
            return await read_file_feed(self._config.ics_file, self._validators)
        assert self._session is not None, "use the poller as an async context manager"
        url = self._config.resolved_url()
        self._status = replace(self._status, host=url_host(url))
        return await fetch_feed(self._session, url, self._validators, self._config.timeout_s)

    def _parse(self, body: bytes) -> ParsedFeed | None:
        try:
            return parse_feed(body, self._config.stay_rules(),
                              closed_means_booked=self._config.closed_means_booked)
        except FeedFormatError as exc:
            self._failed(FeedWarningCode.UNPARSABLE, str(exc))
        except Exception as exc:  # a parser bug must not stop the poller; the feed is the cause
            log.exception("iCal feed %s of space %s: the parser failed", self._config.key,
                          self._status.space_key)
            self._failed(FeedWarningCode.UNPARSABLE, f"the parser failed ({type(exc).__name__})")
        return None

    async def _hand_on(self) -> None:
        current = self._tracked.current()
        if current == self._handed:
            return
        try:
            await self._sink.replace_feed_reservations(self._config.key,
                                                       self._status.space_key, current)
        except Exception as exc:  # the sink's own failure; the same set is offered next poll
            log.warning("iCal feed %s of space %s: handing on %d bookings failed (%s); "
                        "retrying at the next poll", self._config.key, self._status.space_key,
                        len(current), type(exc).__name__)
            self._status = self._status.with_warning(
                FeedWarningCode.NOT_APPLIED, f"handing on the bookings failed "
                f"({type(exc).__name__})", self._clock.now())
            return
        self._handed = current
        self._recovered(FeedWarningCode.NOT_APPLIED)

    def _failed(self, code: FeedWarningCode, reason: str) -> None:
        first = self._status.warning(code) is None
        self._status = replace(
            self._status.with_warning(code, reason, self._clock.now()),
            failures_in_a_row=self._status.failures_in_a_row + 1,
        )
        if first:
            log.warning("iCal feed %s of space %s (%s): %s: %s; keeping the last good state",
                        self._config.key, self._status.space_key, self._status.host,
                        code.value, reason)

    def _recovered(self, *codes: FeedWarningCode) -> None:
        ended = [c for c in codes if self._status.warning(c) is not None]
        if not ended:
            return
        self._status = self._status.without_warning(*ended)
        log.info("iCal feed %s of space %s (%s): %s cleared", self._config.key,
                 self._status.space_key, self._status.host, ", ".join(c.value for c in ended))

    def _note_skipped(self, parsed: ParsedFeed) -> None:
        if parsed.skipped != self._status.skipped and parsed.skipped:
            counts = ", ".join(f"{r.value}={n}" for r, n in sorted(parsed.skipped.items()))
            log.warning("iCal feed %s of space %s: events skipped: %s", self._config.key,
                        self._status.space_key, counts)
        self._status = replace(self._status, skipped=dict(parsed.skipped))


def _reason(exc: FeedUrlError | FeedUnreachable) -> str:
    return exc.reason if isinstance(exc, FeedUnreachable) else str(exc)
