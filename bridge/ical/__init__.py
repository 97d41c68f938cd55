"""Booking-platform iCal feeds (Airbnb, Vrbo, Booking.com exports) turned into stays.

Pure parts: `parse_feed` (bytes to bookings), `classify` (a summary's kind), `track` (the
grace period for vanished bookings). The I/O shell: `FeedPoller`, which hands each feed's full
current set to a `FeedSink`, and `IcalFeeds`, which runs every configured feed. Nothing here
knows how a stay becomes codes.
"""

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from bridge.ical.config import FeedUrlError, IcalFeedConfig, url_host
    from bridge.ical.feeds import IcalFeeds
    from bridge.ical.fetch import FeedUnreachable
    from bridge.ical.model import BookingKind, FeedBooking, ParsedFeed, SkipReason, StayRules
    from bridge.ical.parse import FeedFormatError, parse_feed
    from bridge.ical.poller import FeedPoller, FeedSink
    from bridge.ical.status import FeedStatus, FeedWarning, FeedWarningCode
    from bridge.ical.summaries import classify
    from bridge.ical.tracker import TrackedFeed, track

# Imported on first use (PEP 562): the daemon's configuration reads `bridge.ical.config` on
# every start, and must not pay for the iCalendar parser and the HTTP client unless a space has
# feeds.
_WHERE = {
    "FeedUrlError": "config", "IcalFeedConfig": "config", "url_host": "config",
    "IcalFeeds": "feeds", "FeedUnreachable": "fetch",
    "BookingKind": "model", "FeedBooking": "model", "ParsedFeed": "model",
    "SkipReason": "model", "StayRules": "model",
    "FeedFormatError": "parse", "parse_feed": "parse",
    "FeedPoller": "poller", "FeedSink": "poller",
    "FeedStatus": "status", "FeedWarning": "status", "FeedWarningCode": "status",
    "classify": "summaries", "TrackedFeed": "tracker", "track": "tracker",
}
__all__ = [
    "BookingKind",
    "FeedBooking",
    "FeedFormatError",
    "FeedPoller",
    "FeedSink",
    "FeedStatus",
    "FeedUnreachable",
    "FeedUrlError",
    "FeedWarning",
    "FeedWarningCode",
    "IcalFeedConfig",
    "IcalFeeds",
    "ParsedFeed",
    "SkipReason",
    "StayRules",
    "TrackedFeed",
    "classify",
    "parse_feed",
    "track",
    "url_host",
]


def __getattr__(name: str) -> Any:
    module = _WHERE.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(f"{__name__}.{module}"), name)
