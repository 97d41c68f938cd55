"""Every feed under one supervisor: each polled on its own interval by the fake clock, one
feed's outage leaving the others alone."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from typing import Any

import pytest

from bridge.clock import FakeClock
from bridge.ical import FeedWarningCode, IcalFeedConfig, IcalFeeds
from tests.fakes.ical_server import FakeIcalServer, RecordingSink, wait_until

START = datetime(2026, 10, 1, 9, 0, tzinfo=UTC)


@pytest.fixture
async def server() -> AsyncIterator[FakeIcalServer]:
    fake = FakeIcalServer()
    await fake.start()
    yield fake
    await fake.stop()


def feed(key: str, url: str, interval_s: float, zone: str) -> IcalFeedConfig:
    values: dict[str, Any] = {"key": key, "url": url, "interval_s": interval_s,
                              "grace_period_s": 0, "time_zone": zone, "timeout_s": 5}
    return IcalFeedConfig.model_validate(values)


async def test_two_spaces_two_intervals_one_outage(server: FakeIcalServer) -> None:
    server.serve_fixture("villa", "airbnb.ics")
    server.serve_fixture("flat", "vrbo.ics")
    clock = FakeClock(START)
    sink = RecordingSink()
    feeds = IcalFeeds([("villa-1", feed("airbnb", server.url("villa"), 600, "America/New_York")),
                       ("flat-2", feed("vrbo", server.url("flat"), 1800, "Europe/Lisbon"))],
                      sink, clock)
    async with feeds:
        task = asyncio.create_task(feeds.run(), name="ical-feeds")
        try:
            await wait_until(lambda: clock.pending_sleepers() == 2, "both first polls")
            assert sorted((c[0], c[1], len(c[2])) for c in sink.calls) == [
                ("airbnb", "villa-1", 2), ("vrbo", "flat-2", 2)]
            server.feed("villa").status = 502
            await clock.advance(1800)
            await wait_until(lambda: len(server.requests_for("villa")) == 4
                             and len(server.requests_for("flat")) == 2
                             and clock.pending_sleepers() == 2, "the next polls")
        finally:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
    villa, flat = sorted(feeds.statuses(), key=lambda s: s.feed_key)
    assert villa.warning(FeedWarningCode.UNREACHABLE) is not None
    assert villa.failures_in_a_row == 3 and flat.warnings == ()
    assert flat.last_success_at == START.replace(hour=9, minute=30)
    assert len(sink.calls) == 2
    assert [s.feed_key for s in feeds.statuses("flat-2")] == ["vrbo"]


def test_feed_keys_are_unique_per_space() -> None:
    one = feed("airbnb", "https://www.airbnb.com/calendar/ical/1.ics?s=x", 900, "UTC")
    with pytest.raises(ValueError, match="share a key"):
        IcalFeeds([("villa-1", one), ("villa-1", one)], RecordingSink(), FakeClock(START))
    IcalFeeds([("villa-1", one), ("flat-2", one)], RecordingSink(), FakeClock(START))
