"""Booking-platform feeds (bridge/ical) as reservations: the sink their pollers hand stays to."""

from __future__ import annotations

import asyncio
from collections.abc import MutableMapping, Sequence
from typing import TYPE_CHECKING, Any

from bridge.reservations.service import Booking, ReservationService

if TYPE_CHECKING:
    from bridge.clock import Clock
    from bridge.ical import FeedBooking, IcalFeedConfig
    from bridge.reservations.records import AutomationRun

# Where the running feeds are kept in `Bridge.extras` (their statuses and warnings).
FEEDS_KEY = "ical_feeds"


class FeedReservations:
    """Each feed's stays (not the host's blocks) become the space's reservations, keyed by the
    feed and the event's UID; a stay gone from the feed (after the poller's grace) is revoked."""

    def __init__(self, service: ReservationService) -> None:
        self._service = service

    async def replace_feed_reservations(self, feed_key: str, space_key: str,
                                        bookings: Sequence[FeedBooking]) -> AutomationRun:
        # The summary is left out: on some platforms it is the guest's name, which has no
        # place in the reservation a log line or a portal shows.
        stays = [Booking(b.uid, b.starts_at, b.ends_at)
                 for b in bookings if b.kind.gives_access]
        return await self._service.replace_feed_reservations(feed_key, space_key, stays)


async def run_feeds(feeds: Sequence[tuple[str, IcalFeedConfig]], service: ReservationService,
                    clock: Clock, extras: MutableMapping[str, Any]) -> None:
    """Poll every space's feeds until cancelled (imported here: a box without feeds never
    loads the iCalendar parser)."""
    from bridge.ical.feeds import IcalFeeds

    async with IcalFeeds(feeds, FeedReservations(service), clock) as running:
        extras[FEEDS_KEY] = running
        try:
            await running.run()
        except asyncio.CancelledError:
            extras.pop(FEEDS_KEY, None)
            raise
