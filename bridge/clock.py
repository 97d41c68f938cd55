"""The only module that reads the wall clock or sleeps; everything else takes a `Clock`."""

from __future__ import annotations

import asyncio
import heapq
import itertools
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any, Protocol


class Timer(Protocol):
    """A callback scheduled on a clock (`Clock.call_later`)."""

    def cancel(self) -> object:
        """Do not call it (a no-op once it ran)."""


class Clock(Protocol):
    """Source of the current time and of sleeping, injectable for tests."""

    def now(self) -> datetime:
        """Current time, timezone-aware UTC."""

    def monotonic(self) -> float:
        """Seconds on a clock that never goes backwards."""

    async def sleep(self, seconds: float) -> None:
        """Suspend the caller for `seconds` of this clock's time."""

    def call_later(self, seconds: float, callback: Callable[..., object], *args: Any) -> Timer:
        """Call `callback(*args)` on the running loop once `seconds` of this clock's time
        passed: a wait without a task of its own (a sleeping lock worker)."""


def stopwatch() -> Callable[[], float]:
    """Real seconds since the call, each time the result is called: for measuring how long
    something took (metrics), never for deciding when something happens (a FakeClock does not
    move it)."""
    started = time.perf_counter()
    return lambda: time.perf_counter() - started


class SystemClock:
    """The real clock."""

    def now(self) -> datetime:
        """Current UTC time from the system."""
        return datetime.now(UTC)

    def monotonic(self) -> float:
        """`time.monotonic()`."""
        return time.monotonic()

    async def sleep(self, seconds: float) -> None:
        """`asyncio.sleep`."""
        await asyncio.sleep(max(0.0, seconds))

    def call_later(self, seconds: float, callback: Callable[..., object], *args: Any) -> Timer:
        """`loop.call_later`."""
        return asyncio.get_running_loop().call_later(max(0.0, seconds), callback, *args)


class FakeClock:
    """A clock that only moves when a test calls `advance`; sleepers wake in time order."""

    def __init__(self, start: datetime | None = None) -> None:
        self._now = start or datetime(2026, 1, 1, tzinfo=UTC)
        self._mono = 0.0
        self._sleepers: list[tuple[float, int, asyncio.Future[None]]] = []
        self._ids = itertools.count()

    def now(self) -> datetime:
        """The fake current time."""
        return self._now

    def monotonic(self) -> float:
        """Fake monotonic seconds since construction."""
        return self._mono

    async def sleep(self, seconds: float) -> None:
        """Wait until `advance` has moved the clock past `seconds` from now."""
        if seconds <= 0:
            await asyncio.sleep(0)
            return
        fut: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        heapq.heappush(self._sleepers, (self._mono + seconds, next(self._ids), fut))
        await fut

    def call_later(self, seconds: float, callback: Callable[..., object], *args: Any) -> Timer:
        """Call `callback(*args)` once `advance` moved the clock past `seconds` from now (on
        the next loop turn when `seconds` <= 0, as `sleep` does); it counts as a sleeper."""
        loop = asyncio.get_running_loop()
        if seconds <= 0:
            return loop.call_soon(callback, *args)
        fut: asyncio.Future[None] = loop.create_future()
        heapq.heappush(self._sleepers, (self._mono + seconds, next(self._ids), fut))

        def fire(done: asyncio.Future[None]) -> None:
            if not done.cancelled():
                callback(*args)

        fut.add_done_callback(fire)
        return fut

    def pending_sleepers(self) -> int:
        """How many tasks are asleep on this clock."""
        return sum(1 for _, _, f in self._sleepers if not f.done())

    def next_wakeup(self) -> float | None:
        """Seconds until the earliest sleeper wakes, or None."""
        live = [d for d, _, f in self._sleepers if not f.done()]
        return (min(live) - self._mono) if live else None

    async def advance(self, seconds: float) -> None:
        """Move time forward, waking each sleeper at its own deadline and letting it run."""
        target = self._mono + seconds
        await _settle()
        while self._sleepers and self._sleepers[0][0] <= target:
            deadline, _, fut = heapq.heappop(self._sleepers)
            if fut.done():
                continue
            step = max(0.0, deadline - self._mono)
            self._mono += step
            self._now += timedelta(seconds=step)
            fut.set_result(None)
            await _settle()
        step = target - self._mono
        self._mono = target
        self._now += timedelta(seconds=step)
        await _settle()

    def set_wall(self, when: datetime) -> None:
        """Jump the wall clock without moving monotonic time (an NTP step)."""
        self._now = when


async def _settle(rounds: int = 50) -> None:
    """Let ready callbacks run so work triggered by a wake-up completes before time moves on."""
    for _ in range(rounds):
        await asyncio.sleep(0)
