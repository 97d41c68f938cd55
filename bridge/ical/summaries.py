"""Which events of a platform's export are host blocks rather than guests' stays (pure).

The export calendars carry no machine-readable "blocked" flag; the SUMMARY is all there is.
What the platforms write, as seen in public exports and the parsers built on them:

* Airbnb (www.airbnb.com/calendar/ical/<listing>.ics?s=<secret>): a guest's stay is
  "Reserved"; dates the host closed, or that Airbnb closes around a stay (preparation time,
  availability window), are "Airbnb (Not available)". Some exports say "Not available" alone.
* Vrbo (www.vrbo.com/icalendar/<id>.ics, `?nonTentative` to leave out inquiries): a stay is
  "Reserved - <guest>" or just the guest's name ("Sarah J."); host-created blocks, mixed in
  with the stays, are "Blocked".
* Booking.com (ical.booking.com/v1/export?t=<secret>): every unavailable night is
  "CLOSED - Not available", booked or closed by hand alike (UIDs ending "@booking.com", no
  STATUS or DESCRIPTION). That is why `closed_means_booked` exists: with it, a Booking.com
  feed's closures give access like stays; without it they give none.

Matching is on the whole summary, case-insensitive and with dashes and spaces normalised
("CLOSED \u2013 Not available", with an en dash, is the same), so a guest named "Blocked Smith" on
Vrbo is still a guest.
"""

from __future__ import annotations

import re

from bridge.ical.model import BookingKind

# Summaries of host blocks, normalised (see `_normalised`).
BLOCKED_SUMMARIES: frozenset[str] = frozenset({
    "airbnb (not available)",
    "not available",
    "blocked",
    "unavailable",
})
# Booking.com's one summary for every unavailable night (see the module docstring).
CLOSED_SUMMARIES: frozenset[str] = frozenset({"closed - not available"})

_DASHES = re.compile(r"\s*[-\u2010-\u2015]\s*")
_SPACES = re.compile(r"\s+")


def classify(summary: str, *, closed_means_booked: bool = False) -> BookingKind:
    """The kind of stay an event's SUMMARY stands for."""
    normal = _normalised(summary)
    if normal in CLOSED_SUMMARIES:
        return BookingKind.RESERVATION if closed_means_booked else BookingKind.BLOCKED
    if normal in BLOCKED_SUMMARIES:
        return BookingKind.BLOCKED
    return BookingKind.RESERVATION


def _normalised(summary: str) -> str:
    text = _SPACES.sub(" ", summary.strip().casefold())
    return _DASHES.sub(" - ", text)
