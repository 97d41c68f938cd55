"""The values a booking-platform feed turns into: immutable, with aware UTC times."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, time
from enum import StrEnum
from zoneinfo import ZoneInfo


class BookingKind(StrEnum):
    """What an event on a platform's export calendar stands for."""

    # A guest's stay: it gives access for its window.
    RESERVATION = "reservation"
    # Dates the host closed ("not available", "blocked"): no guest, no access.
    BLOCKED = "blocked"

    @property
    def gives_access(self) -> bool:
        """True when a stay of this kind should get codes."""
        return self is BookingKind.RESERVATION


class SkipReason(StrEnum):
    """Why an event of a feed was left out (counted per poll, never fatal for the feed)."""

    MISSING_UID = "missing_uid"
    MISSING_START = "missing_start"
    UNREADABLE_DATE = "unreadable_date"
    MIXED_DATE_KINDS = "mixed_date_kinds"
    ENDS_BEFORE_START = "ends_before_start"
    DUPLICATE_UID = "duplicate_uid"
    CANCELLED = "cancelled"
    RECURRING = "recurring"


@dataclass(frozen=True, slots=True)
class StayRules:
    """The property's local rules that turn all-day events into access windows."""

    time_zone: ZoneInfo
    check_in: time
    check_out: time


@dataclass(frozen=True, slots=True)
class FeedBooking:
    """One event of a feed as a stay: its UID is the key that follows it across polls."""

    uid: str
    kind: BookingKind
    starts_at: datetime
    ends_at: datetime
    # The event's SUMMARY as the platform wrote it (a guest's name on some platforms).
    summary: str = ""


@dataclass(frozen=True, slots=True)
class ParsedFeed:
    """Every readable event of one feed, and how many were skipped for each reason."""

    bookings: tuple[FeedBooking, ...]
    skipped: dict[SkipReason, int]

    def giving_access(self) -> tuple[FeedBooking, ...]:
        """The bookings that should get codes (reservations, not blocks)."""
        return tuple(b for b in self.bookings if b.kind.gives_access)
