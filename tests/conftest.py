"""Shared fixtures: a fake clock, an engine over simulated locks with a real SQLite store,
and guards that fail a test which leaves tasks running or lets a known PIN reach the logs."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import random
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from bridge.backup import PoolSettings
from bridge.clock import FakeClock
from bridge.config import DeviceOverride
from bridge.daemon import EngineSettings
from bridge.engine import Engine
from bridge.logs import REDACTOR
from bridge.planner import Policy
from bridge.secrets import PinCipher
from bridge.store import Store
from drivers.simulator import SimLockSpec, SimulatorDriver
from drivers.simulator.lock import SEEN_PINS
from tests.harness import START as START  # the harness's start; tests import it from here too
from tests.harness import run_engine


@dataclass
class Harness:
    """An engine running over simulated locks with a fake clock."""

    clock: FakeClock
    store: Store
    driver: SimulatorDriver
    engine: Engine
    task: asyncio.Task[None] | None = None

    def device_id(self, lock_id: str) -> str:
        """The engine's device id for a simulated lock."""
        for device in self.engine.devices.values():
            if device.external_id == lock_id:
                return device.device_id
        raise KeyError(lock_id)

    def slots(self, lock_id: str) -> dict[int, str]:
        """What is physically on a simulated lock: {slot: pin}."""
        return {n: s.pin for n, s in self.driver.lock(lock_id).slots.items()}

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


async def make_harness(tmp_path: Path, specs: list[SimLockSpec], *, policy: Policy | None = None,
                       clock: FakeClock | None = None, time_zone: str | None = None,
                       key: bytes | None = None, state_file: Path | None = None,
                       pool: PoolSettings | None = None,
                       offline: tuple[str, ...] = (),
                       device_overrides: dict[str, DeviceOverride] | None = None) -> Harness:
    """Build and start an engine over the given simulated locks (`offline` ones unreachable
    from the start)."""
    clock = clock or FakeClock(START)
    key = key or (tmp_path / "key").read_bytes() if (tmp_path / "key").exists() else key
    if key is None:
        key = os.urandom(32)
        (tmp_path / "key").write_bytes(key)
    store = Store(tmp_path / "lockbridge.db", PinCipher(key))
    await store.open()
    driver = SimulatorDriver("sim", specs, clock, state_file)
    for lock_id in offline:
        driver.lock(lock_id).go_offline()
    settings = EngineSettings(
        policy=policy or Policy(), default_time_zone=lambda d, e: time_zone,
        default_spacing_s=0.0, command_timeout_s=30.0, pool=pool or PoolSettings(),
        device_overrides=device_overrides or {})
    engine, task = await run_engine(store, clock, {"sim": driver}, settings)
    return Harness(clock, store, driver, engine, task)


async def stop_harness(h: Harness) -> None:
    """Cancel the engine and close the store."""
    if h.task is not None:
        h.task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await h.task
    await h.store.close()


@pytest.fixture
async def harness_factory(tmp_path: Path) -> AsyncIterator[object]:
    """Make harnesses that are stopped when the test ends."""
    made: list[Harness] = []

    async def factory(specs: list[SimLockSpec], **kwargs: object) -> Harness:
        h = await make_harness(tmp_path, specs, **kwargs)  # type: ignore[arg-type]
        made.append(h)
        return h

    yield factory
    for h in made:
        await stop_harness(h)


class _Capture(logging.Handler):
    def __init__(self) -> None:
        super().__init__()
        self.lines: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        # The tests' own HTTP client (httpx over httpcore) logs raw response headers at DEBUG,
        # where a Content-Length of 1234 reads as a PIN; lockbridge serves and calls with
        # aiohttp, whose lines are kept.
        if record.name.startswith(("httpcore", "httpx")):
            return
        self.lines.append(self.format(record))


@pytest.fixture(autouse=True)
def no_pin_in_logs() -> Iterator[None]:
    """Fail any test in which a PIN the bridge knows reaches a log line."""
    handler = _Capture()
    handler.addFilter(REDACTOR)
    handler.setLevel(logging.DEBUG)
    root = logging.getLogger()
    root.addHandler(handler)
    old = root.level
    root.setLevel(logging.DEBUG)
    yield
    root.removeHandler(handler)
    root.setLevel(old)
    pins = [p for p in SEEN_PINS if len(p) >= 4]
    for line in handler.lines:
        for pin in pins:
            assert not _contains_pin(line, pin), f"a PIN reached the logs: {line!r}"


def _contains_pin(line: str, pin: str) -> bool:
    import re

    # Random hex ids (request ids, uuids) hold digit runs by chance: "req_f2468a8..." is not
    # the PIN 2468. A run counts when it is not part of such an id.
    # A uuid's 4-digit groups ("...-9753-...") are not a PIN either.
    line = re.sub(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}", "<uuid>", line)
    line = re.sub(r"[0-9a-f]{12,}", "<id>", line)
    return re.search(rf"(?<!\d){re.escape(pin)}(?!\d)", line) is not None


@pytest.fixture(autouse=True)
async def no_leaked_tasks() -> AsyncIterator[None]:
    """Fail a test that leaves tasks running on the loop."""
    before = asyncio.all_tasks()
    yield
    await asyncio.sleep(0)
    leaked = [t for t in asyncio.all_tasks() - before
              if not t.done() and t is not asyncio.current_task()]
    for task in leaked:
        task.cancel()
    assert not leaked, f"tasks left running: {[t.get_name() for t in leaked]}"


def rng() -> random.Random:
    """A seeded RNG for table tests."""
    return random.Random(1)
