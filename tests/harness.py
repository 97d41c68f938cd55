"""The tests' one harness: an engine over any drivers (the simulator's or a real driver over
a fake), with a fake clock and a real store.

Every test engine is built and started by the daemon's own composition root (`make_engine`
and `start_drivers_then_load` in bridge/daemon.py) through `run_engine`: `start_engine` here
starts one over any drivers, tests/conftest.py's `make_harness` one over simulated locks; both
return a `Harness`, whose simulator helpers (`driver`, `slots`) serve the latter.

`until` waits for a condition on real I/O (brokers, fakes) while letting the fake clock move
through the short sleeps the engine and the drivers take, as `Harness.settle` does.
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
from drivers.simulator import SimulatorDriver

# The fake clock's start in every harness.
START = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)


@dataclass
class Harness:
    """An engine running over the given drivers."""

    clock: FakeClock
    store: Store
    engine: Engine
    drivers: dict[str, LockDriver]
    task: asyncio.Task[None] | None = None
    # Every event the engine committed, in order.
    events: list[Event] = field(default_factory=list)

    def device_id(self, external_id: str, driver: str | None = None) -> str:
        """The engine's id for a lock, by the id its driver gives it; `driver` names the
        driver where more than one runs (None: the lock's id is enough)."""
        for device in self.engine.devices.values():
            if device.external_id == external_id and driver in (None, device.driver):
                return device.device_id
        raise KeyError((driver, external_id))

    def events_of(self, kind: EventType, device_id: str | None = None) -> list[Event]:
        """Committed events of one type (for one device)."""
        return [e for e in self.events if e.event_type is kind
                and (device_id is None or e.device_id == device_id)]

    def code(self, access_code_id: str) -> CodeRecord:
        """A code as the engine has it now."""
        return self.engine.codes[access_code_id]

    # -- over simulated locks ----------------------------------------------------------------

    @property
    def driver(self) -> SimulatorDriver:
        """The simulator driver of a harness over simulated locks."""
        sims = [d for d in self.drivers.values() if isinstance(d, SimulatorDriver)]
        assert len(sims) == 1, "not a harness over one simulator driver"
        return sims[0]

    def slots(self, lock_id: str) -> dict[int, str]:
        """What is physically on a simulated lock: {slot: pin}."""
        return {n: s.pin for n, s in self.driver.lock(lock_id).slots.items()}

    # -- waiting -----------------------------------------------------------------------------

    async def until(self, predicate: Callable[[], bool], *, timeout: float = 10.0,
                    what: str = "condition", advance: float = 0.0) -> None:
        """Wait (bounded, in real time) until `predicate()` holds; wake short fake-clock
        sleepers as they come due, and move the clock by `advance` each round if asked."""
        await until(predicate, timeout=timeout, what=what, clock=self.clock, advance=advance)

    async def settle(self, rounds: int = 2000) -> None:
        """Let the engine work until every lock is idle (real waits only for SQLite's thread)."""
        for _ in range(rounds):
            await asyncio.sleep(0.002)
            if self.engine.settled():
                await asyncio.sleep(0.005)
                if self.engine.settled():
                    return
            wake = self.clock.next_wakeup()
            if wake is not None and wake <= 0.5:
                await self.clock.advance(wake)
        raise AssertionError("engine did not settle")

    async def advance(self, seconds: float, step: float = 60.0) -> None:
        """Move the fake clock forward in steps, letting the engine settle after each."""
        remaining = seconds
        while remaining > 0:
            hop = min(step, remaining)
            await self.clock.advance(hop)
            remaining -= hop
            await self.settle()

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
                       property_zone: str | None = None) -> Harness:
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
    return Harness(clock, store, engine, drivers, task, events)


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
