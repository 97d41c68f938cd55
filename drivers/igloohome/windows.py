"""Which algoPIN to ask Igloohome for, for a code's window: pure rules, no I/O.

Igloohome's rules (docs/drivers/igloohome-api-facts.md): algoPIN dates are whole hours with an
explicit offset; an hourly PIN lasts 1 to 672 hours; a daily PIN lasts 29 to 367 days and ends
at the time of day it starts; a permanent PIN has a start only. A PIN that lasts more than 24
hours (and every permanent one) works only if first used within 24 hours of its start.

What lockbridge makes of them: a window is widened to whole hours (the start back to its hour,
the end on to the next), since a guest let in a little early and out a little late is better than
one locked out; a window longer than 672 hours becomes a daily PIN whose end is moved on to the
start's time of day, at least 29 days on; a window longer than 367 days is refused (no algoPIN
lasts that long, and a permanent one could never be taken back); a code with no window is a
permanent PIN from the current hour.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

from bridge.driver import LocalWindow

HOURLY, DAILY, PERMANENT = "hourly", "daily", "permanent"
MAX_HOURLY = timedelta(hours=672)
DAILY_DAYS = (29, 367)
ACTIVATION = timedelta(hours=24)
_HOUR = timedelta(hours=1)


class WindowRefused(ValueError):
    """No algoPIN fits the window; the message says why."""


@dataclass(frozen=True, slots=True)
class AlgoPinPlan:
    """The algoPIN to ask for: its kind and its window as Igloohome takes it."""

    kind: str
    start: datetime  # aware, on the hour in the lock's zone
    end: datetime | None  # aware; None for a permanent PIN
    widened: bool

    @property
    def must_be_used_within_24_hours(self) -> bool:
        """Igloohome's activation rule: a PIN lasting more than 24 hours (or for good) works
        only if first used within 24 hours of its start."""
        return self.end is None or self.end - self.start > ACTIVATION

    def dates(self) -> dict[str, str]:
        """startDate (and endDate) as the algoPIN endpoints take them."""
        dates = {"startDate": algo_date(self.start)}
        if self.end is not None:
            dates["endDate"] = algo_date(self.end)
        return dates

    def key(self) -> tuple[str, str, str | None]:
        """What makes two requests give the same PIN (with the variance)."""
        return (self.kind, self.start.isoformat(), self.end.isoformat() if self.end else None)


def plan(window: LocalWindow | None, zone: str, now: datetime) -> AlgoPinPlan:
    """The algoPIN for a window in `zone` (its own zone when it names one); `now` (aware) starts
    a permanent PIN."""
    if window is None:
        tz = ZoneInfo(zone)
        start = _floor_hour(now.astimezone(tz).replace(tzinfo=None))
        return AlgoPinPlan(PERMANENT, _aware(start, tz), None, widened=False)
    tz = ZoneInfo(window.zone or zone)
    start_wall = _floor_hour(window.starts_at)
    end_wall = _ceil_hour(window.ends_at)
    if end_wall <= start_wall:
        end_wall = start_wall + _HOUR
    widened = (start_wall, end_wall) != (window.starts_at, window.ends_at)
    start, end = _aware(start_wall, tz), _aware(end_wall, tz)
    if end - start <= MAX_HOURLY:
        return AlgoPinPlan(HOURLY, start, end, widened)
    days = max(DAILY_DAYS[0], math.ceil((end_wall - start_wall) / timedelta(days=1)))
    if days > DAILY_DAYS[1]:
        raise WindowRefused(f"an Igloohome algoPIN lasts at most {DAILY_DAYS[1]} days; this "
                            "window is longer (split it into codes of at most a year)")
    daily_end = start_wall + timedelta(days=days)
    return AlgoPinPlan(DAILY, start, _aware(daily_end, tz),
                       widened or daily_end != window.ends_at)


def algo_date(moment: datetime) -> str:
    """`YYYY-MM-DDTHH:00:00+hh:mm`: on the hour, with the moment's own offset."""
    return moment.strftime("%Y-%m-%dT%H:00:00") + _offset(moment)


def job_date(moment: datetime) -> str:
    """A bridge job's date: to the minute, with the moment's own offset."""
    return moment.strftime("%Y-%m-%dT%H:%M:00") + _offset(moment)


def _offset(moment: datetime) -> str:
    offset = moment.utcoffset() or timedelta(0)
    sign = "-" if offset < timedelta(0) else "+"
    minutes = abs(int(offset.total_seconds())) // 60
    return f"{sign}{minutes // 60:02d}:{minutes % 60:02d}"


def _floor_hour(wall: datetime) -> datetime:
    return wall.replace(minute=0, second=0, microsecond=0)


def _ceil_hour(wall: datetime) -> datetime:
    floor = _floor_hour(wall)
    return floor if floor == wall else floor + _HOUR


def _aware(wall: datetime, tz: ZoneInfo) -> datetime:
    """A wall time in `tz`; one that a clock change skips is moved on past the gap."""
    moment = wall.replace(tzinfo=tz)
    round_trip = moment.astimezone(ZoneInfo("UTC")).astimezone(tz)
    if round_trip.replace(tzinfo=None) != wall:
        moment = round_trip
    return moment
