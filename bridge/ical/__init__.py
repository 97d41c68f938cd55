"""Booking-platform iCal feeds (Airbnb, Vrbo, Booking.com exports) turned into stays.

Pure parts: `parse_feed` (bytes to bookings), `classify` (a summary's kind), `track` (the
grace period for vanished bookings). The I/O shell: `FeedPoller`, which hands each feed's full
current set to a `FeedSink`, and `IcalFeeds`, which runs every configured feed. Nothing here
knows how a stay becomes codes.
"""

from bridge.ical.config import FeedUrlError, IcalFeedConfig, url_host
from bridge.ical.feeds import IcalFeeds
from bridge.ical.fetch import FeedUnreachable
from bridge.ical.model import BookingKind, FeedBooking, ParsedFeed, SkipReason, StayRules
from bridge.ical.parse import FeedFormatError, parse_feed
from bridge.ical.poller import FeedPoller, FeedSink
from bridge.ical.status import FeedStatus, FeedWarning, FeedWarningCode
from bridge.ical.summaries import classify
from bridge.ical.tracker import TrackedFeed, track

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
