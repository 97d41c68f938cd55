"""Child process of the startup scenario: open a full store and load the engine, then exit."""

from __future__ import annotations

from pathlib import Path

from bench.common import lock_specs
from bridge.clock import SystemClock
from bridge.engine import Engine
from bridge.planner import Policy
from bridge.secrets import PinCipher
from bridge.store import Store
from drivers.simulator import SimulatorDriver


async def main(folder: str, locks: int) -> None:
    """Time-to-ready: the store opened and checked, every lock and code loaded."""
    path = Path(folder)
    store = Store(path / "lockbridge.db", PinCipher((path / "key").read_bytes()))
    await store.open()
    clock = SystemClock()
    engine = Engine(store, clock, Policy(),
                    {"sim": SimulatorDriver("sim", lock_specs(locks), clock)})
    await engine.load()
    await store.close()
