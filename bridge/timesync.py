"""Whether the system clock can be trusted for schedules (an RTC-less box boots in the past)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from bridge.clock import Clock

# No real clock reads earlier than this once the box has synchronised: the release date floor.
RELEASE_FLOOR = datetime(2026, 1, 1, tzinfo=UTC)
_TOLERANCE = timedelta(minutes=5)


def clock_plausible(now: datetime, last_seen: datetime | None,
                    floor: datetime = RELEASE_FLOOR) -> bool:
    """False when `now` is before the release floor or well before a time already seen."""
    if now < floor:
        return False
    return not (last_seen is not None and now < last_seen - _TOLERANCE)


class ClockGuard:
    """Tracks the latest trusted time so a clock that jumps back to boot time is noticed."""

    def __init__(self, clock: Clock, last_seen: datetime | None,
                 floor: datetime = RELEASE_FLOOR) -> None:
        self._clock = clock
        self._floor = floor
        self.last_seen = last_seen

    def synchronized(self) -> bool:
        """True when schedules may be acted on now."""
        now = self._clock.now()
        ok = clock_plausible(now, self.last_seen, self._floor)
        if ok and (self.last_seen is None or now > self.last_seen):
            self.last_seen = now
        return ok
