"""One lock's fault stays with that lock: a driver that raises unexpected exceptions from every
call for one lock, for hours on a fake clock, while the other locks converge and the API answers.

The daemon runs in-process through its own composition root (`bridge.daemon.serve`) with a fake
clock, so hours pass in seconds; the API is the real aiohttp listener on a free port.
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from bridge.clock import FakeClock
from drivers.simulator import SimulatorDriver
from tests.conftest import START
from tests.harness import until
from tests.inprocess import RunningDaemon, running_daemon

CONFIG = """\
bridge: {{id: faults}}
state_dir: {state}
api: {{port: 0}}
engine: {{default_command_spacing_s: 0, command_timeout_s: 30}}
schedule: {{require_synchronized_clock: false}}
drivers:
  - kind: simulator
    name: sim
    locks:
      - {{id: buggy, name: Buggy door, faults: {{chaos: 0.5, chaos_seed: 11}}}}
      - {{id: good1, name: Good door one}}
      - {{id: good2, name: Good door two}}
"""


@dataclass
class Running:
    daemon: RunningDaemon
    clock: FakeClock

    @property
    def sim(self) -> SimulatorDriver:
        driver = self.daemon.bridge.drivers["sim"]
        assert isinstance(driver, SimulatorDriver)
        return driver

    @property
    def task(self) -> asyncio.Task[None]:
        return self.daemon.task

    def device_id(self, lock_id: str) -> str:
        return next(d.device_id for d in self.daemon.bridge.engine.devices.values()
                    if d.external_id == lock_id)

    async def run_for(self, seconds: float, step: float = 30.0) -> None:
        """Move the fake clock on in steps, giving the loop real time after each."""
        moved = 0.0
        while moved < seconds:
            await self.clock.advance(step)
            moved += step
            for _ in range(5):
                await asyncio.sleep(0.002)


@pytest.fixture
async def running(tmp_path: Path) -> AsyncIterator[Running]:
    config_file = tmp_path / "lockbridge.yaml"
    config_file.write_text(CONFIG.format(state=tmp_path / "state"))
    clock = FakeClock(START)
    async with running_daemon(config_file, clock) as daemon:
        yield Running(daemon, clock)


async def test_a_lock_whose_driver_keeps_raising_does_not_stop_the_others(
        running: Running, caplog: pytest.LogCaptureFixture) -> None:
    sim, engine = running.sim, running.daemon.bridge.engine
    good = ["good1", "good2"]
    created: dict[str, str] = {}
    for n, lock_id in enumerate([*good, "buggy"]):
        status, body = await running.daemon.post("/access_codes/create", {
            "device_id": running.device_id(lock_id), "name": f"Guest {n}",
            "code": f"{4821 + n * 1111}"})
        assert status == 200, body
        created[lock_id] = body["access_code"]["access_code_id"]

    # Hours of a driver raising assorted exception types on one lock.
    await running.run_for(4 * 3600, step=60.0)

    assert not running.task.done(), "the daemon stopped"
    for lock_id in good:
        slots = {s.pin for s in sim.lock(lock_id).slots.values()}
        assert engine.codes[created[lock_id]].code in slots
        assert str(engine.codes[created[lock_id]].status) == "set"
    # The API answers, and the buggy lock says what is wrong with it.
    status, body = await running.daemon.post("/devices/get",
                                      {"device_id": running.device_id("buggy")})
    assert status == 200
    warnings = {w["warning_code"]: w["message"] for w in body["device"]["warnings"]}
    assert "lock_worker_fault" in warnings, body["device"]["warnings"]
    assert "unexpected error" in warnings["lock_worker_fault"]
    status, metrics = await running.daemon.get("/metrics")
    buggy_id = re.escape(running.device_id("buggy"))
    faults = re.search(rf'lockbridge_lock_faults_total\{{device_id="{buggy_id}"\}} (\d+)',
                       metrics)
    assert faults is not None and int(faults.group(1)) > 10, metrics
    # A traceback per streak, not per fault: far fewer than the faults themselves.
    tracebacks = [r for r in caplog.records if r.exc_info and "unexpected error" in r.message]
    assert 0 < len(tracebacks) < int(faults.group(1))

    # The driver is mended: the lock converges, with its code exactly once, and the warning goes.
    sim.lock("buggy").chaos = 0.0
    await running.run_for(3600, step=60.0)
    buggy = sim.lock("buggy")
    code = engine.codes[created["buggy"]]
    assert [s.pin for s in buggy.slots.values()].count(code.code) == 1
    assert str(code.status) == "set"
    await until(lambda: not any(w.code == "lock_worker_fault"
                                for w in engine.devices[running.device_id("buggy")].warnings),
                what="the fault warning to clear", clock=running.clock, advance=60.0)


async def test_a_probe_that_raises_is_a_failed_probe_not_a_stopped_bridge(
        running: Running) -> None:
    sim, engine = running.sim, running.daemon.bridge.engine
    buggy = sim.lock("buggy")
    buggy.chaos = 0.0
    buggy.go_offline()
    buggy.chaos = 1.0  # every probe raises
    device_id = running.device_id("buggy")
    await until(lambda: not engine.devices[device_id].online, what="the lock to go offline",
                clock=running.clock, advance=30.0)
    await running.run_for(2 * 3600, step=60.0)
    assert not running.task.done(), "the daemon stopped"
    status, body = await running.daemon.post("/access_codes/create", {
        "device_id": running.device_id("good1"), "name": "Later guest", "code": "51739"})
    assert status == 200
    code_id = body["access_code"]["access_code_id"]
    await until(lambda: str(engine.codes[code_id].status) == "set",
                what="a code on a healthy lock", clock=running.clock, advance=5.0)
    buggy.chaos = 0.0
    buggy.come_online()
    await until(lambda: engine.devices[device_id].online, what="the lock to come back",
                clock=running.clock, advance=60.0, timeout=20.0)
