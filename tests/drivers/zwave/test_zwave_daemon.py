"""The daemon with the Z-Wave driver, end to end against the real zwave-js stack.

Codes are set and verified in the mock locks' own memory, cleared, a keypad edit is detected
and put back, a keypad unlock is reported with its code, and zwave-js-server is restarted
mid-way while codes change: every lock converges afterwards.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable, Iterator
from datetime import timedelta
from pathlib import Path

import pytest

from bridge.config import load_config
from bridge.daemon import Bridge, serve
from bridge.driver import Availability
from bridge.engine import CodeRequest
from bridge.model import AccessCodeStatus, AccessCodeType, Event, EventType
from drivers.simulator.lock import SEEN_PINS
from tests.zwave_stack import ZWaveStack, missing_node, running_stack

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(missing_node() is not None, reason=missing_node() or ""),
]

PINS = ["246810", "13579", "97531", "999000", "808080", "4321"]

CONFIG = """\
bridge: {{id: zwave-e2e}}
state_dir: {state}
api: {{enabled: false}}
engine: {{default_command_spacing_s: 0, probe_base_s: 1, retry_base_s: 0.5, retry_cap_s: 2}}
schedule: {{require_synchronized_clock: false}}
drivers:
  - kind: zwave
    name: zw
    url: {url}
    time_zone: America/Sao_Paulo
    command_spacing_s: 0
    reconnect_min_s: 0.2
    reconnect_max_s: 1
    nodes:
      2: {{name: Front door}}
      3: {{name: Back door}}
"""


@pytest.fixture
def stack(tmp_path: Path) -> Iterator[ZWaveStack]:
    with running_stack(tmp_path / "zwave") as zwave:
        yield zwave


async def until(predicate: Callable[[], bool], timeout: float = 30.0) -> None:
    """Wait (real time, bounded) for the daemon to get somewhere."""
    for _ in range(int(timeout / 0.05)):
        if predicate():
            return
        await asyncio.sleep(0.05)
    raise AssertionError("condition not reached")


async def test_daemon_keeps_zwave_locks_right(stack: ZWaveStack, tmp_path: Path) -> None:
    SEEN_PINS.update(PINS)  # the log guard fails the test if any of these reach a log line
    config = tmp_path / "lockbridge.yaml"
    config.write_text(CONFIG.format(state=tmp_path / "state", url=stack.url))
    loaded = load_config(config)
    stop = asyncio.Event()
    ready: asyncio.Future[Bridge] = asyncio.get_running_loop().create_future()
    events: list[Event] = []

    async def on_ready(bridge: Bridge) -> None:
        bridge.engine.subscribe(events.extend)
        ready.set_result(bridge)

    daemon = asyncio.create_task(serve(loaded, on_ready=on_ready, stop=stop), name="daemon")
    try:
        bridge = await asyncio.wait_for(asyncio.shield(ready), 60)
        engine = bridge.engine
        by_name = {d.display_name: d for d in engine.devices.values()}
        front, back = by_name["Front door"], by_name["Back door"]
        assert back.info.capabilities.native_schedules and back.time_zone == "America/Sao_Paulo"

        def status(code_id: str) -> AccessCodeStatus | None:
            code = engine.codes.get(code_id)
            return code.status if code is not None else None

        # -- codes are set and verified from the lock -----------------------------------------
        staff = await engine.create_code(front.device_id, CodeRequest(name="Staff",
                                                                      code="246810"))
        cleaner = await engine.create_code(back.device_id, CodeRequest(name="Cleaner",
                                                                       code="13579"))
        # On a whole minute: the lock keeps schedules to the minute, so a start at hh:59:30
        # would round into the next hour and the hour compared below would differ.
        now = bridge.clock.now().replace(second=0, microsecond=0)
        guest = await engine.create_code(back.device_id, CodeRequest(
            name="Guest", code="97531", type=AccessCodeType.TIME_BOUND,
            starts_at=now + timedelta(hours=2), ends_at=now + timedelta(days=2)))
        await until(lambda: status(staff.access_code_id) is AccessCodeStatus.SET
                    and status(cleaner.access_code_id) is AccessCodeStatus.SET
                    and engine.codes[guest.access_code_id].is_scheduled_on_device)
        staff_slot = engine.codes[staff.access_code_id].slot
        assert staff_slot is not None
        assert await stack.slots(2) == {staff_slot: "246810"}
        assert set((await stack.slots(3)).values()) == {"13579", "97531"}
        kinds = [e.event_type for e in events]
        assert EventType.ACCESS_CODE_SET_ON_DEVICE in kinds
        assert EventType.ACCESS_CODE_SCHEDULED_ON_DEVICE in kinds
        # The guest's schedule is on the lock, in the lock's local time (UTC-3).
        schedules = await stack.control("schedules", node=3)
        guest_slot = engine.codes[guest.access_code_id].slot
        start_local = (guest.starts_at + timedelta(hours=-3))  # type: ignore[operator]
        entry = schedules[f"ScheduleEntryLock_schedule_{guest_slot}_1_1"]
        assert (entry["startDay"], entry["startHour"]) == (start_local.day, start_local.hour)

        # -- a keypad edit is detected and put back ------------------------------------------
        events.clear()
        await stack.control("keypad_set", node=2, slot=staff_slot, code="999000")
        await until(lambda: EventType.ACCESS_CODE_MODIFIED_EXTERNAL_TO_SEAM in
                    [e.event_type for e in events])
        await until(lambda: status(staff.access_code_id) is AccessCodeStatus.SET
                    and engine.codes[staff.access_code_id].verified)
        await until_async(lambda: stack.slots(2), {staff_slot: "246810"})

        # -- a keypad unlock is reported with its code ----------------------------------------
        events.clear()
        await stack.control("keypad_unlock", node=2, slot=staff_slot)
        await until(lambda: any(e.event_type is EventType.LOCK_UNLOCKED for e in events))
        unlocked = next(e for e in events if e.event_type is EventType.LOCK_UNLOCKED)
        assert unlocked.access_code_id == staff.access_code_id
        assert unlocked.device_id == front.device_id
        assert unlocked.data["slot"] == staff_slot

        # -- a code is cleared from its lock --------------------------------------------------
        cleaner_slot = engine.codes[cleaner.access_code_id].slot
        await engine.delete_code(cleaner.access_code_id)
        await until(lambda: cleaner.access_code_id not in engine.codes)
        assert cleaner_slot not in await stack.slots(3)

        # -- zwave-js-server restarts while codes change: every lock converges ---------------
        await stack.stop_server_async()
        await until(lambda: all(d.availability is Availability.HUB_DISCONNECTED
                                for d in engine.devices.values()))
        late = await engine.create_code(front.device_id, CodeRequest(name="Late",
                                                                     code="808080"))
        back_code = await engine.create_code(back.device_id, CodeRequest(name="Back",
                                                                         code="4321"))
        await engine.delete_code(guest.access_code_id)
        stack.start_server()
        await until(lambda: all(d.availability is Availability.ONLINE
                                for d in engine.devices.values()), timeout=45)
        await until(lambda: status(late.access_code_id) is AccessCodeStatus.SET
                    and status(back_code.access_code_id) is AccessCodeStatus.SET
                    and guest.access_code_id not in engine.codes, timeout=45)
        assert sorted((await stack.slots(2)).values()) == ["246810", "808080"]
        assert sorted((await stack.slots(3)).values()) == ["4321"]
        assert engine.outstanding() == 0
    finally:
        stop.set()
        with contextlib.suppress(asyncio.CancelledError):
            await asyncio.wait_for(daemon, 20)


async def until_async(read: Callable[[], Awaitable[object]], expected: object,
                      timeout: float = 20.0) -> None:
    """Wait until an async read returns `expected`."""
    last: object = None
    for _ in range(int(timeout / 0.1)):
        last = await read()
        if last == expected:
            return
        await asyncio.sleep(0.1)
    raise AssertionError(f"still {last!r}, expected {expected!r}")
