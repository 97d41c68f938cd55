"""An engine over any drivers (not only the simulator), with a fake clock and a real store.

Every test engine is built and started by the daemon's own composition root (`make_engine`
and `start_drivers_then_load` in bridge/daemon.py) through `run_engine`: `EngineHarness` here
and the simulator's `Harness` in tests/conftest.py are two views of that one engine.

`until` waits for a condition on real I/O (brokers, fakes) while letting the fake clock move
through the short sleeps the engine and the drivers take, exactly as `Harness.settle` does.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import random
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

from bridge.clock import FakeClock
from bridge.daemon import EngineSettings, make_engine, start_drivers_then_load
from bridge.driver import LockDriver
from bridge.engine import Engine
from bridge.engine.state import EventListener
from bridge.model import Event, EventType
from bridge.planner import Policy
from bridge.records import CodeRecord
from bridge.secrets import PinCipher
from bridge.store import Store

# The fake clock's start in every harness.
START = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)


@dataclass
class EngineHarness:
    """An engine running over the given drivers."""

    clock: FakeClock
    store: Store
    engine: Engine
    drivers: dict[str, LockDriver]
    task: asyncio.Task[None] | None = None
    # Every event the engine committed, in order.
    events: list[Event] = field(default_factory=list)

    def device_id(self, driver: str, external_id: str) -> str:
        """The engine's id for one lock of one driver."""
        for device in self.engine.devices.values():
            if device.driver == driver and device.external_id == external_id:
                return device.device_id
        raise KeyError((driver, external_id))

    def events_of(self, kind: EventType, device_id: str | None = None) -> list[Event]:
        """Committed events of one type (for one device)."""
        return [e for e in self.events if e.event_type is kind
                and (device_id is None or e.device_id == device_id)]

    def code(self, access_code_id: str) -> CodeRecord:
        """A code as the engine has it now."""
        return self.engine.codes[access_code_id]

    async def until(self, predicate: Callable[[], bool], *, timeout: float = 10.0,
                    what: str = "condition", advance: float = 0.0) -> None:
        """Wait (bounded, in real time) until `predicate()` holds; wake short fake-clock
        sleepers as they come due, and move the clock by `advance` each round if asked."""
        await until(predicate, timeout=timeout, what=what, clock=self.clock, advance=advance)

    async def stop(self) -> None:
        """Stop the engine, the drivers and the store."""
        if self.task is not None:
            self.task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self.task
        for driver in self.drivers.values():
            await driver.stop()
        await self.store.close()


async def until(predicate: Callable[[], bool], *, timeout: float = 10.0,
                what: str = "condition", clock: FakeClock | None = None,
                advance: float = 0.0) -> None:
    """Wait until `predicate()` holds, at most `timeout` real seconds."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not predicate():
        if loop.time() > deadline:
            raise AssertionError(f"{what} not reached within {timeout} s")
        await asyncio.sleep(0.005)
        if clock is not None:
            wake = clock.next_wakeup()
            if wake is not None and wake <= 0.5:
                await clock.advance(wake)
            elif advance > 0:
                await clock.advance(advance)


async def start_engine(tmp_path: Path, drivers: dict[str, LockDriver], *,
                       clock: FakeClock | None = None, policy: Policy | None = None,
                       command_timeout_s: float = 10.0,
                       property_zone: str | None = None) -> EngineHarness:
    """Start the drivers (as the daemon does, before the engine loads), then the engine."""
    clock = clock or FakeClock(START)
    key_file = tmp_path / "engine.key"
    if not key_file.exists():
        key_file.write_bytes(os.urandom(32))
    store = Store(tmp_path / "lockbridge.db", PinCipher(key_file.read_bytes()))
    await store.open()
    settings = EngineSettings(
        policy=policy or Policy(), default_spacing_s=0.0, command_timeout_s=command_timeout_s,
        default_time_zone=lambda driver, external_id: property_zone)
    events: list[Event] = []
    engine, task = await run_engine(store, clock, drivers, settings, events.extend)
    return EngineHarness(clock, store, engine, drivers, task, events)


async def run_engine(store: Store, clock: FakeClock, drivers: dict[str, LockDriver],
                     settings: EngineSettings, listener: EventListener | None = None,
                     ) -> tuple[Engine, asyncio.Task[None]]:
    """An engine built and started by the daemon's own composition root (bridge/daemon.py),
    over an open store, a fake clock and the given drivers, running in a task; `listener`
    hears every commit from the first on. Every harness of the tests starts its engine here."""
    engine = make_engine(store, clock, drivers, settings, rng=random.Random(7))
    if listener is not None:
        engine.subscribe(listener)
    await start_drivers_then_load(engine, drivers, [])
    return engine, asyncio.create_task(engine.run(), name="engine")
