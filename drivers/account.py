"""What every driver of an account shares: the locks one maker's cloud or one hub lists, polled.

A cloud or hub driver (Nuki Web, TTLock, Hubitat, ...) reaches every lock of one account
through one listing call. The lifecycle around that listing is the same for all of them and
lives here once: open the session, take a first look (a failure is retried by the poller, never
fatal: a box boots before its Wi-Fi), poll the listing on an interval or when woken, report
each lock's availability to the engine through the event pump, and close everything on stop.
What differs (the maker's calls, its answers, its codes) stays in the driver.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence
from typing import ClassVar, Generic, Protocol, TypeVar

from bridge.clock import Clock
from bridge.driver import (
    Availability,
    DeviceInfo,
    DriverError,
    DriverEventSink,
    FixConfig,
    RetryLater,
)
from drivers.events import EventPump
from drivers.tasks import cancel_and_wait

_LOG = logging.getLogger(__name__)


class AccountLock(Protocol):
    """What the base needs of a driver's per-lock record."""

    info: DeviceInfo
    availability: Availability


LockT = TypeVar("LockT", bound=AccountLock)


class AccountDriver(Generic[LockT]):
    """The shared lifecycle of a driver that lists an account's locks by polling.

    Subclasses set `label` (the name in logs and task names) and `account` (how a log line names
    the account: "the Nuki Web account"), and implement `_open`, `_close` and `_refresh`.
    """

    label: ClassVar[str]
    account: ClassVar[str]

    def __init__(self, name: str, clock: Clock, poll_interval_s: float) -> None:
        self.name = name
        self._clock = clock
        self._poll_interval_s = poll_interval_s
        self._locks: dict[str, LockT] = {}
        self._events = EventPump(f"{self.label} {name}")
        self._poller: asyncio.Task[None] | None = None
        # Set to have the poller look at the account now rather than at its next interval.
        self._poll_now = asyncio.Event()

    # -- what a driver implements ---------------------------------------------------------

    async def _open(self) -> None:
        """Open sessions and listeners before the first look."""

    async def _close(self) -> None:
        """Close what `_open` opened; safe to call twice."""

    async def _refresh(self) -> None:
        """List the account's locks and note what changed."""
        raise NotImplementedError

    async def _first_look(self) -> None:
        """What `start` does once the session is open (by default, one listing)."""
        await self._refresh()

    async def _poll_once(self) -> None:
        """What the poller does each time round (by default, one listing)."""
        await self._refresh()

    # -- lifecycle ------------------------------------------------------------------------

    async def start(self, sink: DriverEventSink) -> None:
        """Open the session and list the locks (a failure is retried by the poller), then keep
        polling."""
        self._events.start(sink)
        await self._open()
        try:
            await self._first_look()
        except DriverError as exc:
            _LOG.warning("%s %s: cannot list %s's locks yet: %s", self.label, self.name,
                         self.account, exc)
        self._poller = asyncio.create_task(self._poll(), name=f"{self.label}:{self.name}:poll")

    async def stop(self) -> None:
        """Stop polling, close the session, stop delivering events; safe to call twice."""
        poller, self._poller = self._poller, None
        await cancel_and_wait(poller)
        await self._close()
        await self._events.stop()

    def devices(self) -> Sequence[DeviceInfo]:
        """The account's locks as last listed."""
        return [lock.info for _, lock in sorted(self._locks.items())
                if lock.availability is not Availability.REMOVED]

    def availability(self, external_id: str) -> Availability:
        """Last known availability of one lock."""
        lock = self._locks.get(external_id)
        return lock.availability if lock is not None else Availability.REMOVED

    # -- helpers for the driver -----------------------------------------------------------

    def _lock(self, external_id: str) -> LockT:
        """The lock's record; a lock never listed is a configuration problem, one the account
        stopped listing a problem that may pass."""
        lock = self._locks.get(external_id)
        if lock is None:
            raise FixConfig(f"lock {external_id} is not in {self.account}")
        if lock.availability is Availability.REMOVED:
            raise RetryLater(f"{self.account} no longer lists lock {external_id}")
        return lock

    def _note(self, lock: LockT, state: Availability) -> None:
        """A lock's availability as last seen; a change is queued for the engine (this runs
        inside commands too, which the engine may be waiting on: it never awaits the sink)."""
        if lock.availability is state:
            return
        lock.availability = state
        _LOG.info("%s %s: lock %s is %s", self.label, self.name, lock.info.external_id,
                  state.value)
        self._events.availability(lock.info.external_id, state)

    def _note_all(self, state: Availability) -> None:
        """Every listed lock is now `state` (the account or hub as a whole changed)."""
        for lock in list(self._locks.values()):
            if lock.availability is not Availability.REMOVED:
                self._note(lock, state)

    async def _poll(self) -> None:
        while True:
            await self._next_poll()
            try:
                await self._poll_once()
            except DriverError as exc:
                _LOG.debug("%s %s: refresh failed: %s", self.label, self.name, exc)

    async def _next_poll(self) -> None:
        """Until the poll interval passed or someone asked for a look now."""
        woken = asyncio.create_task(self._poll_now.wait())
        sleep = asyncio.create_task(self._clock.sleep(self._poll_interval_s))
        try:
            await asyncio.wait({woken, sleep}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for task in (woken, sleep):
                task.cancel()
            await asyncio.gather(woken, sleep, return_exceptions=True)
        self._poll_now.clear()
