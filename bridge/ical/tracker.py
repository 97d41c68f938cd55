"""Which of a feed's bookings still give access, across polls (pure).

A platform's export drops a stay the moment it is cancelled, but a feed also loses events for
reasons that are no cancellation (a platform's hiccup, Vrbo deleting and re-adding a changed
stay). So a booking that vanished keeps its access, as last seen, for a grace period: if it
comes back within it, nothing changes on the locks; if not, it is revoked when the grace ends.
A failed poll changes nothing here: only a feed that was read (or answered "not modified") can
make a booking vanish or run out its grace, so an outage never revokes.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, replace
from datetime import datetime, timedelta

from bridge.ical.model import FeedBooking


@dataclass(frozen=True, slots=True)
class TrackedBooking:
    """A booking as last seen in the feed, and since when it has been missing from it."""

    booking: FeedBooking
    missing_since: datetime | None = None


@dataclass(frozen=True, slots=True)
class TrackedFeed:
    """The bookings of one feed that still give access, keyed by UID."""

    by_uid: dict[str, TrackedBooking]

    @classmethod
    def empty(cls) -> TrackedFeed:
        """No bookings yet (before the first good poll)."""
        return cls({})

    def current(self) -> tuple[FeedBooking, ...]:
        """The bookings to hand on, missing ones within their grace included, in time order."""
        return tuple(sorted((t.booking for t in self.by_uid.values()),
                            key=lambda b: (b.starts_at, b.uid)))

    def missing(self) -> tuple[TrackedBooking, ...]:
        """The bookings kept only by their grace period."""
        return tuple(t for t in self.by_uid.values() if t.missing_since is not None)


def track(previous: TrackedFeed, seen: Iterable[FeedBooking], now: datetime,
          grace: timedelta) -> TrackedFeed:
    """The feed's bookings after a good poll that read `seen` at `now`."""
    out: dict[str, TrackedBooking] = {b.uid: TrackedBooking(b) for b in seen}
    for uid, before in previous.by_uid.items():
        if uid in out:
            continue
        since = before.missing_since or now
        if now - since < grace:
            out[uid] = replace(before, missing_since=since)
    return TrackedFeed(out)

