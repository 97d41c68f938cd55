"""Parsing platform exports (pure): fixtures shaped like Airbnb's, Vrbo's and Booking.com's
exports, the property's zone and check-in/check-out times, DST, skipped events, bad feeds."""

from __future__ import annotations

from datetime import UTC, datetime, time
from zoneinfo import ZoneInfo

import pytest

from bridge.ical import BookingKind, FeedFormatError, SkipReason, StayRules, classify, parse_feed
from tests.paths import TESTS

FIXTURES = TESTS / "fixtures" / "ical"


def rules(zone: str, check_in: time = time(16), check_out: time = time(11)) -> StayRules:
    return StayRules(ZoneInfo(zone), check_in, check_out)


def utc(year: int, month: int, day: int, hour: int = 0, minute: int = 0) -> datetime:
    return datetime(year, month, day, hour, minute, tzinfo=UTC)


def windows(name: str, zone: str, **kwargs: bool) -> list[tuple[str, BookingKind, datetime,
                                                                   datetime]]:
    parsed = parse_feed((FIXTURES / name).read_bytes(), rules(zone), **kwargs)
    assert parsed.skipped == {}
    return [(b.uid.split("@")[0][-8:], b.kind, b.starts_at, b.ends_at) for b in parsed.bookings]


# (fixture, property zone, options, expected (uid tail, kind, starts_at, ends_at))
PLATFORM_CASES = [
    pytest.param("airbnb.ics", "America/New_York", {}, [
        # Check-in before the US spring-forward (8 March 2026), check-out after it.
        ("e0f1", BookingKind.RESERVATION, utc(2026, 3, 6, 21), utc(2026, 3, 10, 15)),
        ("d5e6f7", BookingKind.BLOCKED, utc(2026, 3, 10, 20), utc(2026, 3, 13, 15)),
        ("33001122", BookingKind.RESERVATION, utc(2026, 3, 17, 20), utc(2026, 3, 20, 15)),
    ], id="airbnb-dst-start"),
    pytest.param("vrbo.ics", "Europe/Lisbon", {}, [
        # Check-in in summer time (+01), check-out after the fall-back (25 October 2026).
        ("5e6f", BookingKind.RESERVATION, utc(2026, 10, 23, 15), utc(2026, 10, 27, 11)),
        ("7a8b9c0d", BookingKind.BLOCKED, utc(2026, 10, 27, 16), utc(2026, 10, 29, 11)),
        ("82716", BookingKind.RESERVATION, utc(2026, 10, 30, 16), utc(2026, 11, 1, 11)),
    ], id="vrbo-dst-end"),
    pytest.param("booking_com.ics", "Europe/Rome", {}, [
        ("c7d8e", BookingKind.BLOCKED, utc(2026, 6, 12, 14), utc(2026, 6, 15, 9)),
        ("d8e9f", BookingKind.BLOCKED, utc(2026, 6, 20, 14), utc(2026, 6, 21, 9)),
    ], id="booking-com-closed-is-blocked"),
    pytest.param("booking_com.ics", "Europe/Rome", {"closed_means_booked": True}, [
        ("c7d8e", BookingKind.RESERVATION, utc(2026, 6, 12, 14), utc(2026, 6, 15, 9)),
        ("d8e9f", BookingKind.RESERVATION, utc(2026, 6, 20, 14), utc(2026, 6, 21, 9)),
    ], id="booking-com-closed-means-booked"),
]


@pytest.mark.parametrize(("fixture", "zone", "options", "expected"), PLATFORM_CASES)
def test_platform_exports(fixture: str, zone: str, options: dict[str, bool],
                          expected: list[tuple[str, BookingKind, datetime, datetime]]) -> None:
    got = windows(fixture, zone, **options)
    assert [(tail[-len(e[0]):], *rest) for (tail, *rest), e in zip(got, expected, strict=True)] \
        == expected


@pytest.mark.parametrize(("summary", "closed_means_booked", "kind"), [
    ("Reserved", False, BookingKind.RESERVATION),
    ("Airbnb (Not available)", False, BookingKind.BLOCKED),
    ("AIRBNB (NOT AVAILABLE)", False, BookingKind.BLOCKED),
    ("Not available", False, BookingKind.BLOCKED),
    ("Blocked", False, BookingKind.BLOCKED),
    ("  blocked ", False, BookingKind.BLOCKED),
    ("Blocked Smith", False, BookingKind.RESERVATION),
    ("Reserved - Sarah J.", False, BookingKind.RESERVATION),
    ("Sarah J.", False, BookingKind.RESERVATION),
    ("CLOSED - Not available", False, BookingKind.BLOCKED),
    ("CLOSED\u2013Not available", False, BookingKind.BLOCKED),
    ("CLOSED - Not available", True, BookingKind.RESERVATION),
    ("Not available", True, BookingKind.BLOCKED),
    ("", False, BookingKind.RESERVATION),
])
def test_summaries(summary: str, closed_means_booked: bool, kind: BookingKind) -> None:
    assert classify(summary, closed_means_booked=closed_means_booked) is kind


def test_malformed_events_are_skipped_and_counted() -> None:
    parsed = parse_feed((FIXTURES / "malformed_events.ics").read_bytes(), rules("Europe/Lisbon"))
    assert parsed.skipped == {
        SkipReason.MISSING_UID: 1, SkipReason.MISSING_START: 1, SkipReason.UNREADABLE_DATE: 1,
        SkipReason.ENDS_BEFORE_START: 2, SkipReason.MIXED_DATE_KINDS: 1,
        SkipReason.CANCELLED: 1, SkipReason.RECURRING: 1, SkipReason.DUPLICATE_UID: 1,
    }
    got = {b.uid: (b.starts_at, b.ends_at) for b in parsed.bookings}
    assert got == {
        # A TZID event keeps its own zone (Berlin, +02 in July).
        "timed-berlin": (utc(2026, 7, 4, 13), utc(2026, 7, 6, 8)),
        "timed-utc": (utc(2026, 7, 10, 14), utc(2026, 7, 12, 9)),
        # A floating time is the property's (Lisbon, +01 in July).
        "floating": (utc(2026, 7, 20, 15), utc(2026, 7, 22, 10)),
        # An all-day event without an end is one day, so one night.
        "one-night": (utc(2026, 8, 1, 15), utc(2026, 8, 2, 10)),
        "duration": (utc(2026, 8, 10, 15), utc(2026, 8, 13, 10)),
    }
    assert [b.uid for b in parsed.giving_access()] == [b.uid for b in parsed.bookings]


def _feed(*event_lines: str) -> bytes:
    lines = ["BEGIN:VCALENDAR", "VERSION:2.0", "PRODID:-//t//t//EN", "BEGIN:VEVENT",
             *event_lines, "END:VEVENT", "END:VCALENDAR"]
    return ("\r\n".join(lines) + "\r\n").encode()


@pytest.mark.parametrize(("zone", "check_in", "check_out", "start", "end", "expected"), [
    # Check-in at 02:30 on the US spring-forward night does not exist: read an hour later.
    ("America/New_York", time(2, 30), time(11), "20260308", "20260309",
     (utc(2026, 3, 8, 7, 30), utc(2026, 3, 9, 15))),
    # 01:30 on the fall-back night exists twice: the first (summer time) one is taken.
    ("America/New_York", time(1, 30), time(11), "20261101", "20261102",
     (utc(2026, 11, 1, 5, 30), utc(2026, 11, 2, 16))),
    # Southern hemisphere: Sydney leaves summer time on 5 April 2026.
    ("Australia/Sydney", time(15), time(10), "20260403", "20260406",
     (utc(2026, 4, 3, 4), utc(2026, 4, 6, 0))),
    # A zone with a half-hour offset.
    ("Asia/Kolkata", time(14), time(12), "20260101", "20260102",
     (utc(2026, 1, 1, 8, 30), utc(2026, 1, 2, 6, 30))),
])
def test_all_day_times_in_the_property_zone(zone: str, check_in: time, check_out: time,
                                            start: str, end: str,
                                            expected: tuple[datetime, datetime]) -> None:
    body = _feed("UID:x", f"DTSTART;VALUE=DATE:{start}", f"DTEND;VALUE=DATE:{end}",
                 "SUMMARY:Reserved")
    (booking,) = parse_feed(body, rules(zone, check_in, check_out)).bookings
    assert (booking.starts_at, booking.ends_at) == expected
    assert booking.starts_at.tzinfo is UTC


@pytest.mark.parametrize("body", [
    b"",
    b"   \r\n",
    (FIXTURES / "not_a_calendar.html").read_bytes(),
    (FIXTURES / "truncated.ics").read_bytes(),
    b"BEGIN:VEVENT\r\nUID:a\r\nEND:VEVENT\r\n",
    b"BEGIN:VCALENDAR\r\nEND:VCALENDAR\r\nBEGIN:VCALENDAR\r\nEND:VCALENDAR\r\n",
    "BEGIN:VCALENDAR\r\nX:caf\u00e9\r\nEND:VCALENDAR\r\n".encode("latin-1"),
], ids=["empty", "blank", "html", "truncated", "bare-vevent", "two-calendars", "latin-1"])
def test_a_body_that_is_no_feed_is_an_error(body: bytes) -> None:
    with pytest.raises(FeedFormatError):
        parse_feed(body, rules("UTC"))


def test_an_empty_calendar_has_no_bookings() -> None:
    body = b"BEGIN:VCALENDAR\r\nVERSION:2.0\r\nPRODID:-//t//t//EN\r\nEND:VCALENDAR\r\n"
    parsed = parse_feed(body, rules("UTC"))
    assert parsed.bookings == () and parsed.skipped == {}


def test_the_error_quotes_nothing_of_the_feed() -> None:
    """The message goes to logs and warnings; a feed's text may hold guests' names."""
    body = (FIXTURES / "truncated.ics").read_bytes().replace(b"Reserved", b"Reserved - Ana Lopes")
    with pytest.raises(FeedFormatError) as caught:
        parse_feed(body, rules("UTC"))
    assert "Ana" not in str(caught.value) and "VEVENT" not in str(caught.value)
    with pytest.raises(FeedFormatError, match="HTML page"):
        parse_feed((FIXTURES / "not_a_calendar.html").read_bytes(), rules("UTC"))
