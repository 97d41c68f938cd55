"""The driver gateway: every call the engine makes to a driver goes through here, bounded in
time, within the driver's concurrency budget, timed for /metrics, and behind the fault boundary
(a driver's unexpected exception is an unknown outcome, `RetryLater`)."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from typing import Any, Protocol, runtime_checkable

from bridge.clock import stopwatch
from bridge.driver import Availability, DriverError, LockDriver, RetryLater
from bridge.engine.faults import Faults
from bridge.engine.state import EngineState
from bridge.records import DeviceRecord

_LOG = logging.getLogger("bridge.engine")


@runtime_checkable
class ChangeCheck(Protocol):
    """A driver whose reads wake a battery lock's radio, and that may tell cheaply whether a
    lock still holds what was last seen (a checksum: one frame instead of one per slot)."""

    async def codes_unchanged(self, external_id: str) -> bool | None:
        """True: nothing changed; False: something did; None: the lock cannot tell."""


class DriverGateway:
    """Makes driver calls for the engine's parts."""

    def __init__(self, state: EngineState, drivers: dict[str, LockDriver], faults: Faults, *,
                 command_timeout_s: float, concurrency_per_driver: int) -> None:
        self._state = state
        self.drivers = drivers
        self._faults = faults
        self.timeout = command_timeout_s
        # A hub or cloud account takes only so many commands at once, whatever the lock count.
        self._budgets = {name: asyncio.Semaphore(concurrency_per_driver) for name in drivers}
        # Told (driver name, seconds, succeeded) after each driver call; metrics use it.
        self.command_observer: Callable[[str, float, bool], None] | None = None

    def driver_of(self, device: DeviceRecord) -> LockDriver:
        """The driver that reaches one lock."""
        return self.drivers[device.driver]

    def command_timeout(self, device: DeviceRecord) -> float:
        """How long one command to this lock may take: the engine's command timeout, or what
        its driver states (its own waits included) where that is longer.

        The stated time is a floor, not a replacement: an operator who raised the engine's
        timeout for a slow mesh keeps it for every lock."""
        stated = device.info.capabilities.command_timeout_s
        return self.timeout if stated is None or stated < self.timeout else stated

    def reported(self, driver: LockDriver, external_id: str) -> Availability:
        """What the driver says of a lock's availability; a driver that fails to say is taken
        as not reaching it, so the probe decides when it is back."""
        try:
            return driver.availability(external_id)
        except Exception as exc:  # a driver's bug stays with its lock
            _LOG.warning("lock %s: the driver could not tell its availability (%s: %s)",
                         external_id, type(exc).__name__, exc)
            device_id = self._state.by_external.get((driver.name, external_id))
            if device_id is not None:
                self._faults.count(device_id)
            return Availability.OFFLINE

    async def call(self, device: DeviceRecord, op: Awaitable[Any],
                   timeout: float | None = None) -> Any:
        """Await one driver operation for `device`; no answer in time is `RetryLater`."""
        limit = self.command_timeout(device) if timeout is None else timeout
        ok = False
        async with self._budgets[device.driver]:
            # Measured from when the driver gets the call, so queueing for a budget is not
            # counted as the lock's latency.
            elapsed = stopwatch()
            try:
                # asyncio.timeout, not wait_for: on 3.11 wait_for can swallow a cancellation
                # that arrives as the operation completes, leaving a task that will not stop.
                async with asyncio.timeout(limit):
                    result = await op
                ok = True
                return result
            except TimeoutError as exc:
                raise RetryLater(f"no answer from the lock within {limit:.0f} s") from exc
            except (DriverError, asyncio.CancelledError):
                raise
            except Exception as exc:  # the driver gateway's fault boundary
                # A driver's bug: nobody knows what reached the lock, exactly as with no answer.
                await self._faults.note(device.device_id, exc, "the driver")
                raise RetryLater(f"the driver failed unexpectedly ({type(exc).__name__})") \
                    from exc
            finally:
                if self.command_observer is not None:
                    self.command_observer(device.driver, elapsed(), ok)
