"""Shared fixtures: an engine over simulated locks with a fake clock and a real SQLite store
(a tests/harness.py `Harness`), and guards that fail a test which leaves tasks running or lets
a known PIN reach the logs."""

from __future__ import annotations

import asyncio
import logging
import os
import random
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest

from bridge.backup import PoolSettings
from bridge.clock import FakeClock
from bridge.config import DeviceOverride
from bridge.daemon import EngineSettings
from bridge.driver import LockDriver
from bridge.logs import REDACTOR
from bridge.model import Event
from bridge.planner import Policy
from bridge.secrets import PinCipher
from bridge.store import Store
from drivers.simulator import SimLockSpec, SimulatorDriver
from drivers.simulator.lock import SEEN_PINS
from tests.harness import START as START  # the harness's start; tests import it from here too
from tests.harness import Harness, run_engine


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
    events: list[Event] = []
    drivers: dict[str, LockDriver] = {"sim": driver}
    engine, task = await run_engine(store, clock, drivers, settings, events.extend)
    return Harness(clock, store, engine, drivers, task, events)


async def stop_harness(h: Harness) -> None:
    """Stop the engine, the simulator and the store."""
    await h.stop()


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
