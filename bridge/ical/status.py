"""What a feed's poller shows: its warnings (Seam's shape: code, message, created_at) and when
it last read the feed. A warning is raised once per outage and cleared when the feed is good."""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from datetime import datetime
from enum import StrEnum
from typing import Any

from bridge.ical.model import SkipReason


class FeedWarningCode(StrEnum):
    """Warnings of a feed. None of them revokes anything: the last good state stays in force."""

    # The feed could not be fetched (HTTP error, timeout, no connection, unreadable url_file).
    UNREACHABLE = "ical_feed_unreachable"
    # The feed answered with something that is not an iCalendar feed.
    UNPARSABLE = "ical_feed_unparsable"
    # The feed was read, but handing its bookings on failed; retried at the next poll.
    NOT_APPLIED = "ical_feed_not_applied"


@dataclass(frozen=True, slots=True)
class FeedWarning:
    """One active warning of a feed."""

    warning_code: FeedWarningCode
    message: str
    created_at: datetime


@dataclass(frozen=True, slots=True)
class FeedStatus:
    """A feed's state as a user or the status page sees it (no URL: the host only)."""

    feed_key: str
    space_key: str
    host: str
    warnings: tuple[FeedWarning, ...] = ()
    last_attempt_at: datetime | None = None
    last_success_at: datetime | None = None
    failures_in_a_row: int = 0
    bookings: int = 0
    bookings_in_grace: int = 0
    skipped: dict[SkipReason, int] = field(default_factory=dict)

    def as_json(self) -> dict[str, Any]:
        """The status as JSON values (ISO 8601 times), warnings in Seam's shape."""
        return {
            "feed_key": self.feed_key,
            "space_key": self.space_key,
            "host": self.host,
            "warnings": [{"warning_code": w.warning_code.value, "message": w.message,
                          "created_at": _iso(w.created_at)} for w in self.warnings],
            "last_attempt_at": _iso(self.last_attempt_at),
            "last_success_at": _iso(self.last_success_at),
            "failures_in_a_row": self.failures_in_a_row,
            "bookings": self.bookings,
            "bookings_in_grace": self.bookings_in_grace,
            "skipped_events": {r.value: n for r, n in sorted(self.skipped.items())},
        }

    def warning(self, code: FeedWarningCode) -> FeedWarning | None:
        """The active warning with this code, if any."""
        return next((w for w in self.warnings if w.warning_code is code), None)

    def with_warning(self, code: FeedWarningCode, message: str, now: datetime) -> FeedStatus:
        """This status with `code` raised (its first `created_at` kept while it lasts)."""
        before = self.warning(code)
        raised = FeedWarning(code, message, before.created_at if before else now)
        rest = tuple(w for w in self.warnings if w.warning_code is not code)
        return replace(self, warnings=(*rest, raised))

    def without_warning(self, *codes: FeedWarningCode) -> FeedStatus:
        """This status with `codes` cleared."""
        return replace(self, warnings=tuple(w for w in self.warnings
                                            if w.warning_code not in codes))


def _iso(when: datetime | None) -> str | None:
    return None if when is None else when.isoformat().replace("+00:00", "Z")
