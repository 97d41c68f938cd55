"""A feed's bytes to bookings (pure: no I/O, no clock).

All-day events (DATE values, what Airbnb, Vrbo and Booking.com export) begin at the property's
check-in time on the start day and end at its check-out time on the DTEND day (DTEND of an
all-day event is exclusive, so it is the departure day), both in the property's time zone,
which makes a stay across a DST change come out right in UTC. Timed events keep their own
times; floating ones (no zone) are read in the property's zone.

An event that cannot become a stay is skipped and counted by reason; a body that is not one
iCalendar VCALENDAR at all is a `FeedFormatError` (the poller keeps its last good state).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator
from datetime import UTC, date, datetime, time, timedelta
from typing import Any

import icalendar

from bridge.ical.model import BookingKind, FeedBooking, ParsedFeed, SkipReason, StayRules
from bridge.ical.summaries import classify


class FeedFormatError(ValueError):
    """The body is not an iCalendar feed (an HTML login page, a truncated download, ...)."""


class _Skip(Exception):
    def __init__(self, reason: SkipReason) -> None:
        super().__init__(reason.value)
        self.reason = reason


def parse_feed(body: bytes, rules: StayRules, *,
               closed_means_booked: bool = False) -> ParsedFeed:
    """Every event of `body` as a booking, with the skipped ones counted by reason."""
    calendar = _calendar(body)
    bookings: list[FeedBooking] = []
    seen: set[str] = set()
    skipped: Counter[SkipReason] = Counter()
    for event in _events(calendar):
        try:
            booking = _booking(event, rules, closed_means_booked)
        except _Skip as skip:
            skipped[skip.reason] += 1
            continue
        if booking.uid in seen:
            # A UID names one stay; two events with it cannot both be right, keep the first.
            skipped[SkipReason.DUPLICATE_UID] += 1
            continue
        seen.add(booking.uid)
        bookings.append(booking)
    bookings.sort(key=lambda b: (b.starts_at, b.uid))
    return ParsedFeed(tuple(bookings), dict(skipped))


def _calendar(body: bytes) -> icalendar.Calendar:
    if not body.strip():
        raise FeedFormatError("the feed is empty")
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise FeedFormatError(f"the feed is not UTF-8 (byte {exc.start})") from None
    if text.lstrip().startswith("<"):
        raise FeedFormatError("an HTML page, not a calendar (a login or error page?)")
    try:
        component = icalendar.Calendar.from_ical(text)
    except ValueError:
        # icalendar's message quotes the feed's text, which may hold guests' names: not passed on.
        raise FeedFormatError("not an iCalendar feed (cut off, or not a VCALENDAR)") from None
    if not isinstance(component, icalendar.Calendar) or component.name != "VCALENDAR":
        raise FeedFormatError("the feed has no VCALENDAR")
    return component


def _events(calendar: icalendar.Calendar) -> Iterator[icalendar.Event]:
    for component in calendar.walk("VEVENT"):
        if isinstance(component, icalendar.Event):
            yield component


def _booking(event: icalendar.Event, rules: StayRules, closed_means_booked: bool) -> FeedBooking:
    uid = str(event.get("UID", "")).strip()
    if not uid:
        raise _Skip(SkipReason.MISSING_UID)
    if str(event.get("STATUS", "")).upper() == "CANCELLED":
        raise _Skip(SkipReason.CANCELLED)
    if "RRULE" in event or "RDATE" in event:
        # A stay happens once; a repeating event is no platform's booking.
        raise _Skip(SkipReason.RECURRING)
    broken = {name for name, _ in event.errors}
    if broken & {"DTSTART", "DTEND", "DURATION"}:
        raise _Skip(SkipReason.UNREADABLE_DATE)
    start = _value(event, "DTSTART")
    if start is None:
        raise _Skip(SkipReason.MISSING_START)
    starts_at, ends_at = _window(start, _value(event, "DTEND"), _value(event, "DURATION"), rules)
    if ends_at <= starts_at:
        raise _Skip(SkipReason.ENDS_BEFORE_START)
    summary = str(event.get("SUMMARY", "")).strip()
    kind: BookingKind = classify(summary, closed_means_booked=closed_means_booked)
    return FeedBooking(uid, kind, starts_at, ends_at, summary)


def _value(event: icalendar.Event, name: str) -> Any:
    prop = event.get(name)
    if prop is None:
        return None
    value = getattr(prop, "dt", None)
    if value is None:
        raise _Skip(SkipReason.UNREADABLE_DATE)
    return value


def _window(start: Any, end: Any, duration: Any,
            rules: StayRules) -> tuple[datetime, datetime]:
    if isinstance(start, datetime):
        starts_at = _instant(start, rules)
        if isinstance(end, datetime):
            return starts_at, _instant(end, rules)
        if end is not None:
            raise _Skip(SkipReason.MIXED_DATE_KINDS)
        if isinstance(duration, timedelta):
            return starts_at, starts_at + duration
        # RFC 5545 3.6.1: a timed event without an end lasts no time at all.
        return starts_at, starts_at
    if not isinstance(start, date):
        raise _Skip(SkipReason.UNREADABLE_DATE)
    if isinstance(end, datetime):
        raise _Skip(SkipReason.MIXED_DATE_KINDS)
    if isinstance(end, date):
        last_day = end
    elif isinstance(duration, timedelta):
        last_day = start + timedelta(days=duration.days)
    else:
        # RFC 5545 3.6.1: an all-day event without an end takes that one day (one night here).
        last_day = start + timedelta(days=1)
    return _local(start, rules.check_in, rules), _local(last_day, rules.check_out, rules)


def _local(day: date, at: time, rules: StayRules) -> datetime:
    # A time that does not exist on a spring-forward day (02:30) reads with the offset before
    # the change (fold=0), i.e. one hour later on the wall clock: still on the right day.
    return datetime.combine(day, at, tzinfo=rules.time_zone).astimezone(UTC)


def _instant(value: datetime, rules: StayRules) -> datetime:
    if value.tzinfo is None:
        return value.replace(tzinfo=rules.time_zone).astimezone(UTC)
    return value.astimezone(UTC)
