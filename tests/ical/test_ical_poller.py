"""The feed poller against a fake export server on loopback, with a fake clock: first fetch,
304s, changes, vanished bookings and their grace, outages that keep the last good state and
raise a warning, recovery, and the secret URL kept out of the logs."""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import re
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from bridge.clock import FakeClock
from bridge.ical import FeedPoller, FeedWarningCode, IcalFeedConfig, SkipReason
from tests.fakes.ical_server import FIXTURES, FakeIcalServer, RecordingSink, wait_until

START = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)
INTERVAL = 900.0
GRACE = 7200.0
GRACE_TD = timedelta(seconds=GRACE)
AIRBNB_FIRST = "1418fb94e984-5f1d2c3b4a5968778695a4b3c2d1e0f1@airbnb.com"
AIRBNB_SECOND = "1418fb94e984-99aa88bb77cc66dd55ee44ff33001122@airbnb.com"


@dataclass
class Rig:
    server: FakeIcalServer
    clock: FakeClock
    sink: RecordingSink
    poller: FeedPoller


def feed_config(**overrides: Any) -> IcalFeedConfig:
    values: dict[str, Any] = {"key": "airbnb", "interval_s": INTERVAL,
                              "grace_period_s": GRACE, "timeout_s": 5.0,
                              "time_zone": "America/New_York"}
    values.update(overrides)
    return IcalFeedConfig.model_validate(values)


@pytest.fixture
async def server() -> AsyncIterator[FakeIcalServer]:
    fake = FakeIcalServer()
    await fake.start()
    yield fake
    await fake.stop()


@contextlib.asynccontextmanager
async def rig(server: FakeIcalServer, **overrides: Any) -> AsyncIterator[Rig]:
    clock = FakeClock(START)
    sink = RecordingSink()
    config = feed_config(**{"url": server.url("listing"), **overrides})
    async with FeedPoller("villa-1", config, sink, clock) as poller:
        yield Rig(server, clock, sink, poller)


def without(body: bytes, uid: str) -> bytes:
    """A feed body with the event of `uid` left out."""
    events = re.findall(rb"BEGIN:VEVENT\r\n.*?END:VEVENT\r\n", body, flags=re.S)
    (gone,) = [e for e in events if f"UID:{uid}".encode() in e]
    return body.replace(gone, b"")


AIRBNB = (FIXTURES / "airbnb.ics").read_bytes()


async def test_first_fetch_hands_on_the_stays_not_the_blocks(server: FakeIcalServer) -> None:
    server.serve("listing", AIRBNB)
    async with rig(server) as r:
        await r.poller.poll_once()
    ((feed_key, space_key, bookings),) = r.sink.calls
    assert (feed_key, space_key) == ("airbnb", "villa-1")
    assert [(b.uid, b.starts_at, b.ends_at) for b in bookings] == [
        (AIRBNB_FIRST, datetime(2026, 3, 6, 21, tzinfo=UTC), datetime(2026, 3, 10, 15, tzinfo=UTC)),
        (AIRBNB_SECOND, datetime(2026, 3, 17, 20, tzinfo=UTC),
         datetime(2026, 3, 20, 15, tzinfo=UTC)),
    ]
    (seen,) = server.requests_for("listing")
    assert (seen.if_none_match, seen.if_modified_since, seen.status) == (None, None, 200)
    status = r.poller.status
    assert status.warnings == () and status.last_success_at == START
    assert (status.bookings, status.bookings_in_grace, status.host) == (2, 0, "127.0.0.1")


async def test_the_interval_drives_polls_and_304_keeps_the_state(server: FakeIcalServer) -> None:
    server.serve("listing", AIRBNB)
    async with rig(server) as r:
        task = asyncio.create_task(r.poller.run(), name="ical-poller")
        try:
            await wait_until(lambda: r.clock.pending_sleepers() == 1, "the first poll")
            await r.clock.advance(INTERVAL - 1)
            assert len(server.requests_for("listing")) == 1
            await r.clock.advance(1)
            await wait_until(lambda: len(server.requests_for("listing")) == 2
                             and r.clock.pending_sleepers() == 1, "the second poll")
        finally:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
    first, second = server.requests_for("listing")
    assert first.status == 200 and first.if_none_match is None
    assert second.if_none_match == server.feed("listing").etag
    assert second.if_modified_since is not None and second.status == 304
    # The 304 is a good read: the same set stays, so the sink hears nothing new.
    assert len(r.sink.calls) == 1
    assert r.poller.status.last_success_at == START.replace(minute=15)


async def test_last_modified_alone_gets_a_304(server: FakeIcalServer) -> None:
    server.serve("listing", AIRBNB)
    server.feed("listing").etag_enabled = False
    async with rig(server) as r:
        await r.poller.poll_once()
        await r.poller.poll_once()
    first, second = server.requests_for("listing")
    assert first.status == 200
    assert second.if_none_match is None and second.if_modified_since is not None
    assert second.status == 304 and len(r.sink.calls) == 1


async def test_a_changed_booking_is_handed_on(server: FakeIcalServer) -> None:
    server.serve("listing", AIRBNB)
    async with rig(server) as r:
        await r.poller.poll_once()
        # The guest extends the first stay by two nights.
        server.serve("listing", AIRBNB.replace(b"DTEND;VALUE=DATE:20260310",
                                               b"DTEND;VALUE=DATE:20260312"))
        await r.clock.advance(INTERVAL)
        await r.poller.poll_once()
    assert len(r.sink.calls) == 2
    moved = {b.uid: b for b in r.sink.calls[-1][2]}[AIRBNB_FIRST]
    assert moved.ends_at == datetime(2026, 3, 12, 15, tzinfo=UTC)
    assert server.requests_for("listing")[-1].status == 200


async def test_a_vanished_booking_is_revoked_only_after_the_grace(server: FakeIcalServer) -> None:
    server.serve("listing", AIRBNB)
    async with rig(server) as r:
        await r.poller.poll_once()
        server.serve("listing", without(AIRBNB, AIRBNB_SECOND))
        await r.clock.advance(INTERVAL)
        await r.poller.poll_once()
        noticed = r.clock.now()
        while r.clock.now() - noticed < GRACE_TD:
            # Within the grace nothing changes downstream.
            assert len(r.sink.calls) == 1
            assert r.poller.status.bookings_in_grace == 1
            await r.clock.advance(INTERVAL)
            await r.poller.poll_once()
        assert len(r.sink.calls) == 2
        assert r.sink.last_uids == [AIRBNB_FIRST]
        assert r.poller.status.bookings_in_grace == 0


async def test_a_booking_back_within_the_grace_makes_no_churn(server: FakeIcalServer) -> None:
    server.serve("listing", AIRBNB)
    async with rig(server) as r:
        await r.poller.poll_once()
        server.serve("listing", without(AIRBNB, AIRBNB_SECOND))
        await r.clock.advance(INTERVAL)
        await r.poller.poll_once()
        server.serve("listing", AIRBNB)
        await r.clock.advance(INTERVAL)
        await r.poller.poll_once()
        assert r.poller.status.bookings_in_grace == 0
        # Long after the first grace would have ended, it is still there, never re-handed.
        for _ in range(int(GRACE / INTERVAL) + 2):
            await r.clock.advance(INTERVAL)
            await r.poller.poll_once()
    assert len(r.sink.calls) == 1
    assert r.sink.last_uids == [AIRBNB_FIRST, AIRBNB_SECOND]


FAULTS = ["http-503", "http-404-bad-token", "timeout", "connection-refused", "not-a-calendar"]


async def _break(server: FakeIcalServer, fault: str) -> FeedWarningCode:
    feed = server.feed("listing")
    if fault == "http-503":
        feed.status = 503
    elif fault == "http-404-bad-token":
        server.secret = "rotated-token"
    elif fault == "timeout":
        feed.delay_s = 2.0
    elif fault == "connection-refused":
        await server.set_reachable(False)
    elif fault == "not-a-calendar":
        server.serve("listing", (FIXTURES / "not_a_calendar.html").read_bytes())
        return FeedWarningCode.UNPARSABLE
    return FeedWarningCode.UNREACHABLE


async def _repair(server: FakeIcalServer, fault: str, original_secret: str) -> None:
    feed = server.feed("listing")
    feed.status, feed.delay_s = None, 0.0
    server.secret = original_secret
    await server.set_reachable(True)
    if fault == "not-a-calendar":
        server.serve("listing", AIRBNB)


@pytest.mark.parametrize("fault", FAULTS)
async def test_a_failing_feed_keeps_the_last_good_state(server: FakeIcalServer, fault: str,
                                                        caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    secret = server.secret
    server.serve("listing", AIRBNB)
    grace = 2 * INTERVAL
    # Generous for the good polls on a loaded machine; short only where it is the fault.
    timeout_s = 1.0 if fault == "timeout" else 10.0
    async with rig(server, timeout_s=timeout_s, grace_period_s=grace) as r:
        await r.poller.poll_once()
        code = await _break(server, fault)
        # Fail for longer than the grace: an outage never revokes.
        for _ in range(int(grace / INTERVAL) + 2):
            await r.clock.advance(INTERVAL)
            await r.poller.poll_once()
        warning = r.poller.status.warning(code)
        assert warning is not None and warning.created_at == START.replace(minute=15)
        assert len(r.sink.calls) == 1
        assert r.poller.status.failures_in_a_row == int(grace / INTERVAL) + 2
        assert r.poller.status.last_success_at == START
        # Warned once per outage, not once per poll.
        warned = [rec for rec in caplog.records if code.value in rec.getMessage()]
        assert len(warned) == 1 and warned[0].levelno == logging.WARNING
        await _repair(server, fault, secret)
        await r.clock.advance(INTERVAL)
        await r.poller.poll_once()
        assert r.poller.status.warnings == () and r.poller.status.failures_in_a_row == 0
        assert r.sink.last_uids == [AIRBNB_FIRST, AIRBNB_SECOND]
    assert len(r.sink.calls) == 1
    assert any("cleared" in rec.getMessage() for rec in caplog.records)
    # The secret token and the URL's path are in no log line; the host is.
    assert secret not in caplog.text and "/calendar/ical" not in caplog.text
    assert "127.0.0.1" in caplog.text
    assert fault != "timeout" or warning.message == "no answer within 1 s"


async def test_a_first_poll_that_fails_hands_nothing_on(server: FakeIcalServer) -> None:
    server.serve("listing", AIRBNB)
    server.feed("listing").status = 500
    async with rig(server) as r:
        await r.poller.poll_once()
    assert r.sink.calls == []
    warning = r.poller.status.warning(FeedWarningCode.UNREACHABLE)
    assert warning is not None and warning.message == "HTTP 500"
    shown = r.poller.status.as_json()
    assert shown["warnings"] == [{"warning_code": "ical_feed_unreachable",
                                  "message": "HTTP 500", "created_at": "2026-03-01T12:00:00Z"}]
    assert (shown["host"], shown["last_success_at"], shown["bookings"]) == ("127.0.0.1", None, 0)
    json.dumps(shown)


async def test_skipped_events_are_counted(server: FakeIcalServer,
                                          caplog: pytest.LogCaptureFixture) -> None:
    server.serve_fixture("listing", "malformed_events.ics")
    async with rig(server) as r:
        await r.poller.poll_once()
    assert r.poller.status.skipped[SkipReason.DUPLICATE_UID] == 1
    assert sum(r.poller.status.skipped.values()) == 9
    assert r.poller.status.as_json()["skipped_events"]["ends_before_start"] == 2
    assert len(r.sink.calls[0][2]) == 5
    assert "events skipped" in caplog.text


async def test_a_sink_failure_is_retried_at_the_next_poll(server: FakeIcalServer) -> None:
    server.serve("listing", AIRBNB)
    async with rig(server) as r:
        r.sink.failing = True
        await r.poller.poll_once()
        assert r.poller.status.warning(FeedWarningCode.NOT_APPLIED) is not None
        r.sink.failing = False
        await r.clock.advance(INTERVAL)
        await r.poller.poll_once()
    assert r.poller.status.warnings == ()
    assert server.requests_for("listing")[-1].status == 304
    assert r.sink.last_uids == [AIRBNB_FIRST, AIRBNB_SECOND]


async def test_the_url_from_a_file(server: FakeIcalServer, tmp_path: Path,
                                   caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    server.serve("listing", AIRBNB)
    url_file = tmp_path / "airbnb.url"
    async with rig(server, url=None, url_file=url_file) as r:
        await r.poller.poll_once()
        warning = r.poller.status.warning(FeedWarningCode.UNREACHABLE)
        assert warning is not None and "cannot read url_file" in warning.message
        url_file.write_text(server.url("listing") + "\n")
        await r.clock.advance(INTERVAL)
        await r.poller.poll_once()
    assert r.poller.status.warnings == () and r.poller.status.host == "127.0.0.1"
    assert r.sink.last_uids == [AIRBNB_FIRST, AIRBNB_SECOND]
    assert server.secret not in caplog.text


async def test_an_unexpected_failure_is_contained_by_the_loop(
        server: FakeIcalServer, monkeypatch: pytest.MonkeyPatch,
        caplog: pytest.LogCaptureFixture) -> None:
    server.serve("listing", AIRBNB)

    async def broken(*args: Any, **kwargs: Any) -> Any:
        raise RuntimeError("a bug")

    async with rig(server) as r:
        monkeypatch.setattr("bridge.ical.poller.fetch_feed", broken)
        task = asyncio.create_task(r.poller.run(), name="ical-poller")
        try:
            await wait_until(lambda: r.clock.pending_sleepers() == 1, "the failed poll")
            warning = r.poller.status.warning(FeedWarningCode.UNREACHABLE)
            assert warning is not None and warning.message == "the poll failed (RuntimeError)"
            monkeypatch.undo()
            await r.clock.advance(INTERVAL)
            await wait_until(lambda: len(r.sink.calls) == 1, "the next poll")
        finally:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
    assert r.poller.status.warnings == ()
    assert "the poll failed" in caplog.text


async def test_a_local_ics_file(tmp_path: Path) -> None:
    """A feed kept in a file (the demo's sample feed): read when it changes, kept when it goes."""
    ics = tmp_path / "sample.ics"
    ics.write_bytes(without(AIRBNB, AIRBNB_SECOND))
    clock = FakeClock(START)
    sink = RecordingSink()
    config = feed_config(ics_file=ics, grace_period_s=0)
    async with FeedPoller("villa-1", config, sink, clock) as poller:
        assert poller.status.host == "file sample.ics"
        await poller.poll_once()
        assert sink.last_uids == [AIRBNB_FIRST]
        await clock.advance(INTERVAL)
        await poller.poll_once()
        assert len(sink.calls) == 1 and poller.status.last_success_at == clock.now()
        ics.write_bytes(AIRBNB)
        await clock.advance(INTERVAL)
        await poller.poll_once()
        assert sink.last_uids == [AIRBNB_FIRST, AIRBNB_SECOND]
        ics.unlink()
        await clock.advance(INTERVAL)
        await poller.poll_once()
    warning = poller.status.warning(FeedWarningCode.UNREACHABLE)
    assert warning is not None and warning.message.startswith("cannot read sample.ics")
    assert len(sink.calls) == 2


async def test_retry_after_is_honoured(server: FakeIcalServer) -> None:
    """A platform that rate-limits (429 with Retry-After) is left alone for as long as it asks,
    and the interval applies again after."""
    server.serve("listing", AIRBNB)
    feed = server.feed("listing")
    feed.status, feed.retry_after = 429, "3600"
    async with rig(server) as r:
        task = asyncio.create_task(r.poller.run(), name="ical-poller")
        try:
            await wait_until(lambda: r.clock.pending_sleepers() == 1, "the refused poll")
            assert r.clock.next_wakeup() == 3600
            feed.status = None
            await r.clock.advance(3600)
            await wait_until(lambda: len(r.sink.calls) == 1 and r.clock.pending_sleepers() == 1,
                             "the next poll")
            assert r.clock.next_wakeup() == INTERVAL
        finally:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
    assert [q.status for q in server.requests_for("listing")] == [429, 200]
