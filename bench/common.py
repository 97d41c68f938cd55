"""Helpers shared by the benchmark scenarios: resource usage from the OS, a throwaway engine."""

from __future__ import annotations

import asyncio
import os
import random
import resource
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bridge import daemon
from bridge.clock import SystemClock
from bridge.engine import Engine
from bridge.secrets import PinCipher
from bridge.store import Store
from drivers.simulator import SimLockSpec, SimulatorDriver


@dataclass
class Measured:
    """Wall and CPU seconds of a block, from the operating system."""

    wall: float = 0.0
    cpu: float = 0.0


@contextmanager
def measure() -> Iterator[Measured]:
    """Time a block: wall clock and this process's user+system CPU."""
    result = Measured()
    usage = resource.getrusage(resource.RUSAGE_SELF)
    cpu0 = usage.ru_utime + usage.ru_stime
    wall0 = time.perf_counter()
    yield result
    usage = resource.getrusage(resource.RUSAGE_SELF)
    result.wall = time.perf_counter() - wall0
    result.cpu = usage.ru_utime + usage.ru_stime - cpu0


def peak_rss_mb() -> float:
    """Peak resident set size of this process, in MiB.

    VmHWM, not getrusage's ru_maxrss: a process started from a big parent inherits the parent's
    ru_maxrss across fork and exec, which made a bare interpreter look 70 MB large.
    """
    return _status_kib("VmHWM") / 1024


def rss_mb() -> float:
    """Resident set size of this process now, in MiB."""
    return _status_kib("VmRSS") / 1024


def _status_kib(field: str) -> int:
    with open("/proc/self/status", encoding="ascii") as status:
        for line in status:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    raise RuntimeError(f"{field} missing from /proc/self/status")


def lock_specs(locks: int) -> list[SimLockSpec]:
    """Zero-latency simulated locks with room for the benchmark's codes."""
    return [SimLockSpec(lock_id=f"l{i}", name=f"Lock {i}", slot_count=250) for i in range(locks)]


async def make_engine(folder: Path, locks: int) -> tuple[Engine, Store, SimulatorDriver]:
    """An engine over zero-latency simulated locks with a real store, loaded and not yet run."""
    store = Store(folder / "lockbridge.db", PinCipher(os.urandom(32)))
    await store.open()
    clock = SystemClock()
    driver = SimulatorDriver("sim", lock_specs(locks), clock)
    # Built and started by the daemon's own composition root.
    engine = daemon.make_engine(store, clock, {"sim": driver}, daemon.EngineSettings(
        default_spacing_s=0.0, concurrency_per_driver=64), rng=random.Random(1))
    await daemon.start_drivers_then_load(engine, {"sim": driver}, [])
    return engine, store, driver


async def wait_settled(engine: Engine, timeout: float = 3600) -> None:
    """Poll until no lock has work left."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if engine.outstanding() == 0 and engine.settled():
            return
        await asyncio.sleep(0.01)
    raise TimeoutError("engine did not converge")


class EveryReconcile:
    """A driver as the engine saw every driver before its change check: nothing to ask, so
    each reconcile re-reads every managed slot (the radio benchmarks' baseline)."""

    def __init__(self, inner: Any) -> None:
        self._inner = inner

    def __getattr__(self, name: str) -> Any:
        if name == "codes_unchanged":
            raise AttributeError(name)
        return getattr(self._inner, name)
