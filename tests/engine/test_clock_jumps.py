"""The system clock stepped under a running daemon (NTP) or stale at start (an RTC-less box after
a power cut): time-bound codes go by true time once the clock is right, no stay that ended goes
back on a lock and no stay under way comes off it because of a wrong clock.

The daemon runs in-process through its composition root (`bridge.daemon.serve`) on a fake clock
whose wall time the test steps without moving monotonic time, as NTP does.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import datetime, timedelta
from pathlib import Path

from bridge.clock import FakeClock
from drivers.simulator import SimulatorDriver
from tests.conftest import START
from tests.inprocess import RunningDaemon, running_daemon

CONFIG = """\
bridge: {{id: clock}}
state_dir: {state}
api: {{port: 0}}
engine: {{default_command_spacing_s: 0, reconcile_interval_s: 10}}
schedule: {{require_synchronized_clock: true, bridge_lead_time_minutes: 0}}
drivers:
  - kind: simulator
    name: sim
    state_file: sim.json
    locks:
      - {{id: front, name: Front door}}
"""


class Door:
    """The daemon's API and what the simulated lock physically holds."""

    def __init__(self, daemon: RunningDaemon, clock: FakeClock) -> None:
        self.daemon = daemon
        self.clock = clock

    @property
    def device_id(self) -> str:
        return next(iter(self.daemon.bridge.engine.devices))

    def pins(self) -> set[str]:
        sim = self.daemon.bridge.drivers["sim"]
        assert isinstance(sim, SimulatorDriver)
        return {s.pin for s in sim.lock("front").slots.values()}

    async def stay(self, pin: str, starts: datetime, ends: datetime) -> None:
        status, body = await self.daemon.post("/access_codes/create", {
            "device_id": self.device_id, "name": f"Guest {pin}", "code": pin,
            "starts_at": starts.isoformat(), "ends_at": ends.isoformat()})
        assert status == 200, body

    async def warnings(self) -> set[str]:
        status, body = await self.daemon.post("/devices/get", {"device_id": self.device_id})
        assert status == 200, body
        return {w["warning_code"] for w in body["device"]["warnings"]}

    async def run_for(self, seconds: float, step: float = 5.0) -> None:
        """Move the fake clock on in steps, giving the loop real time after each (the store
        commits in a thread)."""
        moved = 0.0
        while moved < seconds:
            await self.clock.advance(step)
            moved += step
            for _ in range(5):
                await asyncio.sleep(0.005)


@asynccontextmanager
async def door(tmp_path: Path, clock: FakeClock) -> AsyncIterator[Door]:
    config = tmp_path / "lockbridge.yaml"
    config.write_text(CONFIG.format(state=tmp_path / "state"))
    async with running_daemon(config, clock) as daemon:
        yield Door(daemon, clock)


async def test_a_restart_on_a_stale_clock_holds_every_stay_until_ntp_sets_it_right(
        tmp_path: Path) -> None:
    async with door(tmp_path, FakeClock(START)) as d:
        await d.stay("482913", START - timedelta(hours=1), START + timedelta(days=2))
        await d.stay("731546", START + timedelta(minutes=10), START + timedelta(minutes=40))
        await d.run_for(3600, step=60)
        assert d.pins() == {"482913"}, "one stay under way, one ended"
        left_at = d.clock.now()

    # A power cut; the box boots at the time it last saved, three days back (after the
    # release floor, so only the time this bridge recorded shows the clock is wrong).
    async with door(tmp_path, FakeClock(left_at - timedelta(days=3))) as d:
        await d.run_for(120)
        assert d.pins() == {"482913"}, "a stale clock moved a stay"
        assert "system_clock_unsynchronized" in await d.warnings()
        # NTP steps the clock to the true time: nothing to change, and the warning goes.
        d.clock.set_wall(left_at + timedelta(minutes=2))
        await d.run_for(30)
        assert d.pins() == {"482913"}
        assert "system_clock_unsynchronized" not in await d.warnings()


async def test_an_ntp_step_back_neither_restores_an_ended_stay_nor_ends_one_under_way(
        tmp_path: Path) -> None:
    async with door(tmp_path, FakeClock(START)) as d:
        await d.stay("482913", START + timedelta(minutes=1), START + timedelta(minutes=2))
        await d.stay("731546", START + timedelta(minutes=3), START + timedelta(days=1))
        await d.run_for(210)
        assert d.pins() == {"731546"}, "the first stay ended, the second began"

        # The clock was 150 s fast (within what lockbridge tolerates): NTP steps it back, to
        # a time inside the first stay and before the second.
        d.clock.set_wall(d.clock.now() - timedelta(seconds=150))
        await d.run_for(45)
        assert d.pins() == {"731546"}, "a step back moved a stay"
        assert "system_clock_unsynchronized" not in await d.warnings()
        # The clock passes the moments it had shown already: still nothing moves.
        await d.run_for(150)
        assert d.pins() == {"731546"}
