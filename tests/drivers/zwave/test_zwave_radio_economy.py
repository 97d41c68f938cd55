"""Radio economy on the real zwave-js mock: the frames each lock receives, counted by the mock
itself (not by lockbridge), per code converged and per hour and day of steady state.

Every frame wakes a battery lock's radio. Before, the engine re-read every managed slot of
every lock each reconcile (hourly): one User Code Get per code per hour. Now a lock with a User
Code checksum costs one checksum read per reconcile, and one without is swept once a day,
keypad changes in between arriving as the lock's own reports.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from bridge.clock import FakeClock
from bridge.engine import CodeRequest
from bridge.engine.worker import SWEEP_INTERVAL_S
from bridge.model import AccessCodeStatus
from drivers.simulator.lock import SEEN_PINS
from tests.harness import Harness, start_engine
from tests.zwave_stack import ZWaveStack, ensure_peers, missing_node

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(missing_node() is not None, reason=missing_node() or ""),
]

PLAIN, SUMMED = 2, 3  # node 2 keeps no User Code checksum, node 3 does
PINS = ["4711", "24681357", "90210"]
HOUR = 3600.0


@pytest.fixture
def stack(tmp_path: Path) -> Iterator[ZWaveStack]:
    ensure_peers()
    zwave = ZWaveStack(tmp_path / "zwave", [
        {"id": PLAIN, "slots": 10, "schedules": False, "checksum": False},
        {"id": SUMMED, "slots": 10, "schedules": False},
    ])
    try:
        zwave.start()
        zwave.wait_listening()
        yield zwave
    finally:
        zwave.close()
        print(zwave.server_log()[-4000:])


async def frames(stack: ZWaveStack, node: int) -> dict[str, Any]:
    """The commands the mock node received since the last call (the mock resets its count)."""
    received: dict[str, Any] = await stack.control("received", node=node)
    return received


async def quiet_for(h: Harness, seconds: float, step: float = 600.0) -> None:
    """Move the fake clock by `seconds` in steps, letting every lock finish what came due."""
    moved = 0.0
    while moved < seconds:
        hop = min(step, seconds - moved)
        await h.clock.advance(hop)
        moved += hop
        await h.until(h.engine.settled, timeout=60, what="settled")
        await asyncio.sleep(0.05)  # a read's answer on its way is counted before the next hop
        await h.until(h.engine.settled, timeout=60, what="settled")


async def test_steady_state_costs_a_checksum_an_hour_or_a_sweep_a_day(
        stack: ZWaveStack, tmp_path: Path) -> None:
    from drivers.zwave.config import Config
    from drivers.zwave.driver import ZWaveDriver

    SEEN_PINS.update(PINS)
    clock = FakeClock(datetime.now(UTC).replace(microsecond=0))
    config = Config.model_validate({"kind": "zwave", "name": "zw", "url": stack.url,
                                    "command_spacing_s": 0, "reconnect_min_s": 0.2,
                                    "reconnect_max_s": 1})
    zw = ZWaveDriver(config, clock, tmp_path / "state")
    h = await start_engine(tmp_path, {"zw": zw}, clock=clock)
    try:
        # The first scan (and zwave-js's interview) are not what is counted here.
        await quiet_for(h, 60, step=30)
        for node in (PLAIN, SUMMED):
            await frames(stack, node)
        created = []
        for node in (PLAIN, SUMMED):
            device_id = h.device_id(f"7e570001-{node}", driver="zw")
            for pin in PINS:
                made = await h.engine.create_code(device_id, CodeRequest(name="Guest", code=pin))
                created.append(made.access_code_id)
        await h.until(lambda: all(h.code(c).status is AccessCodeStatus.SET and h.code(c).verified
                                  for c in created), advance=0.5, timeout=60, what="converged")
        await quiet_for(h, 120, step=30)
        # Converging: two frames per code, the set and the read that verifies it.
        for node in (PLAIN, SUMMED):
            assert await frames(stack, node) == {"UserCodeCCExtendedUserCodeSet": len(PINS),
                                                 "UserCodeCCGet": len(PINS)}

        # One hour with no change: before, every managed slot was read again (3 frames a lock).
        await quiet_for(h, HOUR)
        assert await frames(stack, PLAIN) == {}
        assert await frames(stack, SUMMED) == {"UserCodeCCUserCodeChecksumGet": 1}

        # The rest of the day: the lock without a checksum is swept once (its managed slots),
        # the other answers one checksum read an hour. Before: 3 reads an hour each, 72 a day.
        await quiet_for(h, SWEEP_INTERVAL_S - HOUR, step=HOUR)
        assert await frames(stack, PLAIN) == {"UserCodeCCGet": len(PINS)}
        assert await frames(stack, SUMMED) == {"UserCodeCCUserCodeChecksumGet": 23}

        # A keypad change in between is not left for the sweep: the lock reports it, and the
        # code is put back within seconds, not a day.
        slot = h.code(created[0]).slot
        assert slot is not None
        await stack.control("keypad_clear", node=PLAIN, slot=slot)
        for _ in range(600):
            if (await stack.slots(PLAIN)).get(slot) == PINS[0]:
                break
            await h.clock.advance(0.5)
            await asyncio.sleep(0.05)
        else:
            raise AssertionError("the code cleared at the keypad was not put back")
    finally:
        await h.stop()
