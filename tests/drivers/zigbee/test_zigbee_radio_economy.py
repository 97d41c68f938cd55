"""Radio economy on Zigbee: the frames a Door Lock receives, counted by the zigpy fake's lock
itself (not by lockbridge), per code converged and per hour and day of steady state, under the
engine on a fake clock.

Every frame wakes a battery lock's radio. The Door Lock cluster keeps no checksum of its PINs,
so before, the engine re-read every managed user of the lock each reconcile (hourly): one Get
PIN Code per code per hour. Now the managed users are swept once a day, and a PIN added,
changed or deleted at the keypad is read at once from the lock's programming event, also when
the event names the user with its bytes swapped or names no user at all.
"""

from __future__ import annotations

import itertools
from collections import Counter
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import pytest

from bridge.clock import FakeClock
from bridge.engine import CodeRequest
from bridge.engine.worker import SWEEP_INTERVAL_S
from bridge.model import AccessCodeStatus
from drivers.simulator.lock import SEEN_PINS
from drivers.zigbee.config import Config
from drivers.zigbee.driver import ZigbeeDriver
from tests.fakes.zigpy_radio import FakeDoorLock, FakeNetwork
from tests.harness import Harness, start_engine
from tests.zwave_stack import quiet_for

HOUR = 3600.0
CODES = 30
PINS = [f"{4000 + 7 * index:04d}" for index in range(CODES)]
_NETWORKS = itertools.count(1)


@dataclass
class Rig:
    """lockbridge's engine over the Zigbee driver, one lock paired, its codes converged."""

    h: Harness
    lock: FakeDoorLock
    device_id: str
    created: list[str]

    def frames(self, pin_commands_only: bool = False) -> Counter[str]:
        """What the lock received since the last call, by kind (the lock's own count); zigpy's
        interview of a lock that just joined is left out when asked."""
        kinds = Counter({kind: count for kind, count in self.lock.frame_kinds.items()
                         if not pin_commands_only or kind.endswith("_pin_code")})
        self.lock.reset_counters()
        return kinds

    def slot_of(self, index: int) -> int:
        slot = self.h.code(self.created[index]).slot
        assert slot is not None
        return slot

    async def put_back(self, slot: int, pin: str, what: str) -> None:
        """Wait (bounded) until the lock holds `pin` in `slot` again, the clock moving in
        half-second steps: a read the engine makes at once lands within seconds."""
        await self.h.until(lambda: slot in self.lock.slots and self.lock.slots[slot].pin == pin,
                           advance=0.5, timeout=30, what=what)
        await quiet_for(self.h, 60, step=30)


async def start(tmp_path: Path, *, users: int = 40, codes: int = CODES) -> Rig:
    name = f"economy{next(_NETWORKS)}"
    network = FakeNetwork(name)
    # A router, not a sleepy end device: zigpy waits 28 s per try on an end device whatever
    # the timeout asked; the frames are the same.
    lock = FakeDoorLock(ieee="00:0d:6f:00:0e:c0:00:01", nwk=0x3B01, profile="yale",
                        num_pin_users=users, first_user_id=0, end_device=False)
    config = Config.model_validate({
        "kind": "zigbee", "name": "zb",
        "radio": {"type": "tests.fakes.zigpy_radio:FakeControllerApplication",
                  "path": f"fake://{name}"},
        "command_spacing_s": 0, "command_timeout_s": 5, "probe_timeout_s": 2})
    clock = FakeClock(datetime(2026, 3, 1, 12, 0, tzinfo=UTC))
    driver = ZigbeeDriver(config, clock, tmp_path / "state")
    h = await start_engine(tmp_path, {"zb": driver}, clock=clock)
    await driver.permit_join(60)
    await network.join(lock)
    await h.until(lambda: len(h.engine.devices) == 1, timeout=30, what="the lock")
    await quiet_for(h, 60, step=30)
    device_id = h.device_id(str(lock.ieee))
    SEEN_PINS.update(PINS)
    created = []
    for pin in PINS[:codes]:
        made = await h.engine.create_code(device_id, CodeRequest(name="Guest", code=pin))
        created.append(made.access_code_id)
    await h.until(lambda: all(h.code(c).status is AccessCodeStatus.SET and h.code(c).verified
                              for c in created), advance=0.5, timeout=120, what="converged")
    await quiet_for(h, 120, step=30)
    return Rig(h, lock, device_id, created)


@pytest.fixture
async def rig(tmp_path: Path) -> AsyncIterator[Rig]:
    made = await start(tmp_path)
    try:
        yield made
    finally:
        await made.h.stop()
        if made.lock.network is not None:
            FakeNetwork.remove(made.lock.network.name)


async def test_two_frames_a_code_then_one_sweep_a_day(rig: Rig) -> None:
    # The first scan (every user id the lock has, but its master code's user 0) and the
    # converge: a Set PIN Code and the Get PIN Code that verifies it, per code.
    assert rig.frames(pin_commands_only=True) == {"zcl:get_pin_code": 39 + CODES,
                                                  "zcl:set_pin_code": CODES}

    # One hour with no change: before, every managed user was read again (30 frames).
    await quiet_for(rig.h, HOUR)
    assert rig.frames() == {}

    # The rest of the day: the managed users once, 30 frames a day instead of 720.
    await quiet_for(rig.h, SWEEP_INTERVAL_S - HOUR, step=HOUR)
    assert rig.frames() == {"zcl:get_pin_code": CODES}

    # A PIN deleted at the keypad after a day is not left for the next sweep: the lock's
    # programming event has that user read at once, and the code put back.
    slot = rig.slot_of(0)
    rig.lock.keypad_clear(slot)
    await rig.put_back(slot, PINS[0], "the code cleared at the keypad put back")
    assert rig.frames() == {"zcl:get_pin_code": 2, "zcl:set_pin_code": 1}


async def test_a_programming_event_with_the_user_id_bytes_swapped_is_read_at_once(
        rig: Rig) -> None:
    rig.frames()
    rig.lock.user_id_byte_swapped = True  # user 3 arrives as 0x0300
    slot = rig.slot_of(2)
    rig.lock.keypad_clear(slot)
    await rig.put_back(slot, PINS[2], "the code cleared at the keypad put back")
    assert rig.frames() == {"zcl:get_pin_code": 2, "zcl:set_pin_code": 1}


async def test_a_programming_event_without_a_user_id_reads_the_users_holding_codes(
        rig: Rig, monkeypatch: pytest.MonkeyPatch) -> None:
    rig.frames()
    no_user: Callable[[int], int] = lambda user: 0xFFFF  # noqa: E731
    monkeypatch.setattr(rig.lock, "_event_user", no_user)
    slot = rig.slot_of(5)
    rig.lock.keypad_clear(slot)
    await rig.put_back(slot, PINS[5], "the code cleared at the keypad put back")
    # Every user seen holding a code is read (it is one of them), not every user id.
    assert rig.frames() == {"zcl:get_pin_code": CODES + 1, "zcl:set_pin_code": 1}


async def test_a_lock_that_sends_no_programming_events_is_put_right_by_the_daily_sweep(
        rig: Rig, monkeypatch: pytest.MonkeyPatch) -> None:
    silent: Callable[..., None] = lambda *args: None  # noqa: E731
    monkeypatch.setattr(rig.lock, "_programming_event", silent)
    slot = rig.slot_of(7)
    rig.lock.keypad_clear(slot)
    await quiet_for(rig.h, HOUR)
    assert slot not in rig.lock.slots  # nothing told lockbridge yet
    # The daily sweep reads the managed users, this one among them, and puts it back.
    await quiet_for(rig.h, SWEEP_INTERVAL_S - HOUR, step=HOUR)
    await rig.put_back(slot, PINS[7], "the sweep to put the code back")


async def test_the_first_scan_reads_the_lock_s_own_users_once(tmp_path: Path) -> None:
    rig = await start(tmp_path, users=250, codes=0)
    try:
        read = [args["user_id"] for name, args, _ in rig.lock.commands
                if name == "get_pin_code"]
        # NumberOfPINUsersSupported says 250 (ids 0 to 249): user 0 is the master code's,
        # every other id is read once, and none the lock does not have.
        assert sorted(read) == list(range(1, 250))
    finally:
        await rig.h.stop()
        FakeNetwork.remove(rig.lock.network.name if rig.lock.network else "")


async def _out_of_reach(rig: Rig, seconds: float) -> None:
    """The lock stops acknowledging frames (a write to it fails with a delivery error, so it
    is marked offline) for `seconds` of the fake clock, then answers again."""
    rig.lock.online, rig.lock.unreachable = False, "delivery_error"
    await rig.h.engine.create_code(rig.device_id, CodeRequest(name="Late", code="9876"))
    await rig.h.until(lambda: not rig.h.engine.devices[rig.device_id].online, advance=0.5,
                      timeout=30, what="the lock marked offline")
    await quiet_for(rig.h, seconds, step=60)
    rig.lock.online = True
    await rig.h.until(lambda: 9876 in {int(s.pin) for s in rig.lock.slots.values()},
                      advance=5, timeout=60, what="the lock back and the late code on it")
    await quiet_for(rig.h, 120, step=30)


async def test_a_short_outage_is_not_followed_by_a_walk_of_every_user(tmp_path: Path) -> None:
    rig = await start(tmp_path, users=250, codes=5)
    try:
        rig.frames()
        await _out_of_reach(rig, 300)
        # The engine re-reads a lock that comes back; what this session read of it still
        # stands: the probe that found it, the late code's user (its failed Set may have
        # landed, so the listing reads it again), and the late code's set and read-back.
        # Before, every user again: 249 Get PIN Code.
        assert rig.frames() == {"zcl:Read_Attributes": 1, "zcl:set_pin_code": 1,
                                "zcl:get_pin_code": 2}
    finally:
        await rig.h.stop()
        FakeNetwork.remove(rig.lock.network.name if rig.lock.network else "")


async def test_a_long_outage_has_every_user_read_again(tmp_path: Path) -> None:
    rig = await start(tmp_path, users=250, codes=5)
    try:
        rig.frames()
        await _out_of_reach(rig, 1800)
        # Keypad changes made while the lock was out of reach for half an hour may have been
        # lost with their events: the lock is listed again, every user read once.
        assert rig.frames(pin_commands_only=True) == {"zcl:set_pin_code": 1,
                                                      "zcl:get_pin_code": 249 + 1}
    finally:
        await rig.h.stop()
        FakeNetwork.remove(rig.lock.network.name if rig.lock.network else "")
