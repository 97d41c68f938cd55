"""Whether the system clock can be trusted for schedules (an RTC-less box boots in the past),
and the time schedules go by: the clock, but never earlier than a trusted time already seen."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

from bridge.clock import Clock, Timer

if TYPE_CHECKING:
    from bridge.store import Reader

# No real clock reads earlier than this once the box has synchronised: the release date floor.
RELEASE_FLOOR = datetime(2026, 1, 1, tzinfo=UTC)
_TOLERANCE = timedelta(minutes=5)


def clock_plausible(now: datetime, last_seen: datetime | None,
                    floor: datetime = RELEASE_FLOOR) -> bool:
    """False when `now` is before the release floor or well before a time already seen."""
    if now < floor:
        return False
    return not (last_seen is not None and now < last_seen - _TOLERANCE)


def newest_event_time(reader: Reader) -> datetime | None:
    """When the newest event the store holds happened: a time this bridge's clock has shown."""
    last = reader.count("SELECT COALESCE(MAX(seq), 0) FROM events")
    events = reader.events(after_seq=last - 1, limit=1) if last else []
    return events[0].occurred_at if events else None


class ClockGuard:
    """Tracks the latest trusted time so a clock that jumps back to boot time is noticed."""

    def __init__(self, clock: Clock, last_seen: datetime | None,
                 floor: datetime = RELEASE_FLOOR) -> None:
        self._clock = clock
        self._floor = floor
        self.last_seen = last_seen

    def remember(self, seen: datetime | None) -> None:
        """A time the clock showed before (the newest event of the store, at start): a clock
        that boots well before it is not trusted."""
        if seen is not None and (self.last_seen is None or seen > self.last_seen):
            self.last_seen = seen

    def synchronized(self) -> bool:
        """True when schedules may be acted on now."""
        return self._look()[1]

    def now(self) -> datetime:
        """The time schedules go by: the clock, never earlier than the latest trusted time.
        A clock stepped back (NTP correcting it, or within the tolerance) so neither puts an
        ended stay back on a lock nor takes a begun one off; further back, `synchronized`
        holds schedules until the clock is right."""
        now, _ = self._look()
        return now if self.last_seen is None or now >= self.last_seen else self.last_seen

    def _look(self) -> tuple[datetime, bool]:
        now = self._clock.now()
        ok = clock_plausible(now, self.last_seen, self._floor)
        if ok and (self.last_seen is None or now > self.last_seen):
            self.last_seen = now
        return now, ok


class ScheduleClock:
    """The clock the engine plans by: `ClockGuard.now` for the time, the system's monotonic
    time and sleeping as they are."""

    def __init__(self, clock: Clock, guard: ClockGuard) -> None:
        self._clock = clock
        self._guard = guard

    def now(self) -> datetime:
        """The guarded time (never earlier than a trusted time already seen)."""
        return self._guard.now()

    def monotonic(self) -> float:
        """The underlying clock's monotonic seconds."""
        return self._clock.monotonic()

    async def sleep(self, seconds: float) -> None:
        """The underlying clock's sleep."""
        await self._clock.sleep(seconds)

    def call_later(self, seconds: float, callback: Callable[..., object], *args: Any) -> Timer:
        """The underlying clock's `call_later`."""
        return self._clock.call_later(seconds, callback, *args)
