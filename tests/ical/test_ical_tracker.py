"""The grace period for bookings that vanish from a feed (pure)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from bridge.ical import BookingKind, FeedBooking, TrackedFeed, track

T0 = datetime(2026, 5, 1, tzinfo=UTC)
GRACE = timedelta(hours=2)


def booking(uid: str, day: int = 10) -> FeedBooking:
    return FeedBooking(uid, BookingKind.RESERVATION, datetime(2026, 5, day, 15, tzinfo=UTC),
                       datetime(2026, 5, day + 3, 10, tzinfo=UTC), "Reserved")


def uids(feed: TrackedFeed) -> list[str]:
    return [b.uid for b in feed.current()]


def test_a_vanished_booking_stays_for_the_grace_then_goes() -> None:
    seen = track(TrackedFeed.empty(), [booking("a"), booking("b", 12)], T0, GRACE)
    gone = track(seen, [booking("a")], T0 + timedelta(minutes=15), GRACE)
    assert uids(gone) == ["a", "b"] and [t.booking.uid for t in gone.missing()] == ["b"]
    # Its grace counts from the first read that missed it, not from the one after.
    still = track(gone, [booking("a")], T0 + timedelta(minutes=15) + GRACE - timedelta(seconds=1),
                  GRACE)
    assert uids(still) == ["a", "b"]
    assert uids(track(still, [booking("a")], T0 + timedelta(minutes=15) + GRACE, GRACE)) == ["a"]


def test_a_booking_back_within_the_grace_is_whole_again() -> None:
    seen = track(TrackedFeed.empty(), [booking("a")], T0, GRACE)
    gone = track(seen, [], T0 + timedelta(hours=1), GRACE)
    back = track(gone, [booking("a")], T0 + timedelta(hours=1, minutes=30), GRACE)
    assert back.missing() == () and back.current() == seen.current()
    # A later disappearance gets a whole new grace.
    again = track(back, [], T0 + timedelta(hours=3), GRACE)
    assert uids(track(again, [], T0 + timedelta(hours=4, minutes=59), GRACE)) == ["a"]


def test_a_changed_booking_replaces_the_old_one() -> None:
    seen = track(TrackedFeed.empty(), [booking("a")], T0, GRACE)
    moved = track(seen, [booking("a", 11)], T0 + timedelta(minutes=15), GRACE)
    assert moved.current() == (booking("a", 11),)


def test_no_grace_revokes_at_once() -> None:
    seen = track(TrackedFeed.empty(), [booking("a")], T0, timedelta(0))
    assert track(seen, [], T0 + timedelta(minutes=15), timedelta(0)).current() == ()
