"""The zigpy driver against a fake radio whose locks answer real ZCL frames (tests/fakes/
zigpy_radio.py, built from zigpy's source and the Door Lock cluster's published behaviour by
someone who had not read the driver). zigpy's own start-up, interview, request matching and
timeouts run unchanged; only the radio is fake."""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest

from bridge.clock import SystemClock
from bridge.driver import (
    Availability,
    CodeWrite,
    CommandRejected,
    DriverError,
    DriverEvent,
    DriverEventKind,
    LocalWindow,
    RejectReason,
    RetryLater,
    SlotState,
)
from drivers.simulator.lock import SEEN_PINS
from drivers.zigbee.config import Config
from drivers.zigbee.driver import ZigbeeDriver
from tests.contract import ContractSubject, DriverContract
from tests.fakes.zigpy_radio import (
    FakeDoorLock,
    FakeNetwork,
    zcl_local_time,
)
from tests.harness import until

_NETWORKS = itertools.count(1)
_IEEES = itertools.count(1)


@dataclass
class ZigbeeRig:
    """A driver on a fake network, with its locks."""

    driver: ZigbeeDriver
    network: FakeNetwork
    events: list[DriverEvent] = field(default_factory=list)

    async def join(self, lock: FakeDoorLock) -> str:
        """Pair a lock the way an installer does: open joining, the lock announces itself."""
        await self.driver.permit_join(60)
        await self.network.join(lock)
        ieee = str(lock.ieee)
        await until(lambda: any(d.external_id == ieee for d in self.driver.devices()),
                    what="the driver to adopt the lock")
        return ieee

    def truth(self, lock: FakeDoorLock) -> dict[int, str]:
        """What is on the lock: enabled users with their PINs."""
        return {user: slot.pin for user, slot in lock.slots.items() if slot.status == 1}


def _drop_reads_of(lock: FakeDoorLock, user: int) -> None:
    """The lock drops every Get PIN Code for one user (command 0x06, user id little-endian)."""
    original = lock.handle_cluster_command

    def handle(packet: Any, hdr: Any, rest: bytes) -> None:
        if packet.cluster_id == 0x0101 and hdr.command_id == 0x06 and \
                rest[:2] == user.to_bytes(2, "little"):
            return None
        return original(packet, hdr, rest)

    lock.handle_cluster_command = handle  # type: ignore[method-assign]


def new_lock(**kwargs: object) -> FakeDoorLock:
    n = next(_IEEES)
    kwargs.setdefault("end_device", False)  # zigpy waits 28 s per try on end devices
    return FakeDoorLock(ieee=f"00:0d:6f:00:0a:bc:{n // 256:02x}:{n % 256:02x}",
                        nwk=0x1000 + n, **kwargs)  # type: ignore[arg-type]


async def start_rig(tmp_path: Path, **settings: object) -> ZigbeeRig:
    name = f"lb{next(_NETWORKS)}"
    network = FakeNetwork(name)
    config = Config.model_validate({
        "kind": "zigbee", "name": "zb",
        "radio": {"type": "tests.fakes.zigpy_radio:FakeControllerApplication",
                  "path": f"fake://{name}"},
        "command_spacing_s": 0, "command_timeout_s": 2, "probe_timeout_s": 1,
        **settings})
    driver = ZigbeeDriver(config, SystemClock(), tmp_path / "state")
    rig = ZigbeeRig(driver, network)

    async def sink(event: DriverEvent) -> None:
        rig.events.append(event)

    await driver.start(sink)
    return rig


@pytest.fixture
async def rig(tmp_path: Path) -> AsyncIterator[ZigbeeRig]:
    made = await start_rig(tmp_path, time_zone="Europe/Berlin")
    try:
        yield made
    finally:
        await made.driver.stop()
        FakeNetwork.remove(made.network.name)


class TestZigbee(DriverContract):
    @pytest.fixture
    async def subject(self, rig: ZigbeeRig) -> AsyncIterator[ContractSubject]:
        lock = new_lock(profile="kwikset")
        ieee = await rig.join(lock)

        async def silence() -> None:
            lock.online = False
            lock.unreachable = "timeout"

        async def mute(slot: int) -> None:
            _drop_reads_of(lock, slot)

        yield ContractSubject(rig.driver, ieee, lambda: rig.truth(lock), silence,
                              answer_bound_s=8.0, events=rig.events, mute_slot=mute)


async def test_the_lock_describes_itself_from_its_own_attributes(rig: ZigbeeRig) -> None:
    lock = new_lock(profile="kwikset", num_pin_users=4, min_pin_len=5, max_pin_len=7)
    ieee = await rig.join(lock)
    [info] = rig.driver.devices()
    assert info.external_id == ieee and info.device_type == "zigbee_lock"
    assert "Kwikset" in info.display_name
    # The device's count wins over any table: users 1..3 (0 is the lock's own).
    assert list(info.capabilities.slots()) == [1, 2, 3]
    assert (info.constraints.min_length, info.constraints.max_length) == (5, 7)
    assert info.capabilities.native_schedules and info.time_zone == "Europe/Berlin"
    # Delivered by the driver's event pump from its own task: on a busy machine, a moment later.
    await until(lambda: any(e.kind is DriverEventKind.DEVICES_CHANGED for e in rig.events),
                what="devices_changed after the join")


async def test_a_code_goes_on_is_read_back_and_comes_off_one_user_at_a_time(
        rig: ZigbeeRig) -> None:
    lock = new_lock(profile="yale", slots={1: (1, 0, "11112222")})
    SEEN_PINS.update({"11112222", "482916"})
    ieee = await rig.join(lock)
    result = await rig.driver.write_code(ieee, CodeWrite(slot=2, pin="482916", name="Guest"))
    assert (result.slot, result.pin, result.confirmed) == (2, "482916", True)
    assert rig.truth(lock) == {1: "11112222", 2: "482916"}
    reads = await rig.driver.read_slots(ieee, [1, 2, 3])
    assert [(r.slot, r.state, r.pin) for r in reads] == [
        (1, SlotState.KNOWN, "11112222"), (2, SlotState.KNOWN, "482916"),
        (3, SlotState.EMPTY, None)]
    await rig.driver.clear_code(ieee, 2)
    assert rig.truth(lock) == {1: "11112222"}
    assert lock.clear_all_requests == 0
    assert ("clear_pin_code", 2) in lock.applied


async def test_a_time_bound_code_carries_its_year_day_schedule_in_local_time(
        rig: ZigbeeRig) -> None:
    lock = new_lock(profile="yale")
    ieee = await rig.join(lock)
    window = LocalWindow(datetime(2026, 7, 4, 15, 0), datetime(2026, 7, 9, 11, 0))
    await rig.driver.write_code(ieee, CodeWrite(slot=3, pin="739104", name="Stay",
                                                window=window))
    assert lock.slots[3].type == 1  # a year-day schedule user
    assert lock.year_day[3][0] == (zcl_local_time(window.starts_at),
                                   zcl_local_time(window.ends_at))


async def test_refusals_by_the_clusters_own_status_numbers(rig: ZigbeeRig) -> None:
    lock = new_lock(profile="yale", slots={1: (1, 0, "246810")})
    ieee = await rig.join(lock)
    with pytest.raises(CommandRejected) as duplicate:
        await rig.driver.write_code(ieee, CodeWrite(slot=2, pin="246810", name="Again"))
    assert duplicate.value.reason is RejectReason.DUPLICATE_PIN
    lock.memory_full = True
    with pytest.raises(CommandRejected) as full:
        await rig.driver.write_code(ieee, CodeWrite(slot=3, pin="135791", name="Full"))
    assert full.value.reason is RejectReason.NO_SPACE
    lock.memory_full = False
    lock.unsupported_commands = {"set_pin_code"}
    with pytest.raises(CommandRejected) as unsupported:
        await rig.driver.write_code(ieee, CodeWrite(slot=3, pin="135791", name="No"))
    assert unsupported.value.reason is RejectReason.UNSUPPORTED


async def test_a_retried_set_that_answers_duplicate_is_read_back_not_refused(
        rig: ZigbeeRig) -> None:
    # Yale YRD210 answers "duplicate" when the same PIN is rewritten into its own slot.
    lock = new_lock(profile="yale", slots={4: (1, 0, "918273")})
    lock.duplicate_on_rewrite = True
    ieee = await rig.join(lock)
    result = await rig.driver.write_code(ieee, CodeWrite(slot=4, pin="918273", name="Guest"))
    assert result.confirmed and rig.truth(lock)[4] == "918273"


async def test_a_lock_that_hides_pins_is_unreadable_never_empty(rig: ZigbeeRig) -> None:
    lock = new_lock(profile="yale", slots={1: (1, 0, "556677"), 2: (3, 0, "112233")},
                    send_pin_ota=False)
    ieee = await rig.join(lock)
    reads = {r.slot: r for r in await rig.driver.read_slots(ieee, [1, 2, 3])}
    assert reads[1].state is SlotState.UNREADABLE and reads[1].pin is None
    assert reads[2].state is SlotState.UNREADABLE and reads[2].reason == "disabled"
    assert reads[3].state is SlotState.EMPTY
    # Our own write on such a lock is taken as set: the slot was free and is now enabled.
    written = await rig.driver.write_code(ieee, CodeWrite(slot=3, pin="864200", name="G"))
    assert written.confirmed and lock.slots[3].pin == "864200"


async def test_keypad_changes_and_unlocks_reach_the_engine(rig: ZigbeeRig) -> None:
    lock = new_lock(profile="kwikset")
    ieee = await rig.join(lock)
    lock.keypad_set(5, "4040")
    SEEN_PINS.add("4040")
    await until(lambda: any(e.kind is DriverEventKind.SLOT_CHANGED and e.slot == 5
                            for e in rig.events), what="the keypad change")
    lock.keypad_unlock(5)
    await until(lambda: any(e.kind is DriverEventKind.KEYPAD_USED and e.slot == 5
                            for e in rig.events), what="the keypad unlock")
    reads = await rig.driver.read_slots(ieee, [5])
    assert reads[0].pin == "4040"


async def test_our_own_writes_are_not_reported_as_keypad_changes(rig: ZigbeeRig) -> None:
    lock = new_lock(profile="kwikset")
    lock.rf_programming_events = True
    ieee = await rig.join(lock)
    await rig.driver.write_code(ieee, CodeWrite(slot=2, pin="7531", name="G"))
    await asyncio.sleep(0.2)
    assert not [e for e in rig.events if e.kind is DriverEventKind.SLOT_CHANGED]


async def test_an_unreachable_lock_is_retried_later_and_comes_back(rig: ZigbeeRig) -> None:
    lock = new_lock(profile="kwikset")
    ieee = await rig.join(lock)
    lock.online, lock.unreachable = False, "delivery_error"
    with pytest.raises(RetryLater):
        await rig.driver.write_code(ieee, CodeWrite(slot=2, pin="1357", name="G"))
    assert rig.driver.availability(ieee) is Availability.OFFLINE
    assert not await rig.driver.probe(ieee)
    lock.online = True
    assert await rig.driver.probe(ieee)
    assert rig.driver.availability(ieee) is Availability.ONLINE


async def test_one_silent_user_does_not_blind_the_lock(rig: ZigbeeRig) -> None:
    lock = new_lock(profile="kwikset", slots={1: (1, 0, "2468"), 3: (1, 0, "1122")})
    ieee = await rig.join(lock)
    _drop_reads_of(lock, 2)
    reads = {r.slot: r for r in await rig.driver.read_slots(ieee, [1, 2, 3])}
    assert reads[1].pin == "2468" and reads[3].pin == "1122"
    assert reads[2].state is SlotState.UNREADABLE


async def test_the_radio_unplugged_and_back(tmp_path: Path) -> None:
    rig = await start_rig(tmp_path, reconnect_min_s=0.1, reconnect_max_s=0.2)
    try:
        lock = new_lock(profile="kwikset")
        ieee = await rig.join(lock)
        rig.network.unplug()
        await until(lambda: rig.driver.availability(ieee) is Availability.DISCONNECTED,
                    what="the locks to show the radio gone")
        rig.network.radio_present = True
        await until(lambda: rig.driver.availability(ieee) is Availability.ONLINE,
                    what="the network to come back", timeout=20)
        await rig.driver.write_code(ieee, CodeWrite(slot=1, pin="9090", name="Back"))
        assert rig.truth(lock) == {1: "9090"}
    finally:
        await rig.driver.stop()
        FakeNetwork.remove(rig.network.name)


async def test_known_locks_are_served_before_the_radio_answers(tmp_path: Path) -> None:
    rig = await start_rig(tmp_path)
    lock = new_lock(profile="yale")
    ieee = await rig.join(lock)
    await rig.driver.stop()
    rig.network.radio_present = False
    again = await start_rig(tmp_path)  # a second network name, same state directory
    try:
        infos = {d.external_id: d for d in again.driver.devices()}
        assert ieee in infos
        assert infos[ieee].capabilities.slot_count == 249
        assert again.driver.availability(ieee) is not Availability.ONLINE
    finally:
        await again.driver.stop()
        FakeNetwork.remove(rig.network.name)
        FakeNetwork.remove(again.network.name)



async def test_listing_again_reads_only_the_users_reported_changed(rig: ZigbeeRig) -> None:
    lock = new_lock(profile="kwikset", slots={2: (1, 0, "2222")})
    ieee = await rig.join(lock)
    assert [r.pin for r in await rig.driver.list_codes(ieee)] == ["2222"]
    lock.reset_counters()
    assert [r.pin for r in await rig.driver.list_codes(ieee)] == ["2222"]
    assert lock.frame_kinds == {}  # nothing reported changed: nothing read
    SEEN_PINS.add("5151")
    lock.keypad_set(5, "5151")
    await until(lambda: any(e.kind is DriverEventKind.SLOT_CHANGED and e.slot == 5
                            for e in rig.events), what="the keypad change")
    listed = await rig.driver.list_codes(ieee)
    assert {r.slot: r.pin for r in listed} == {2: "2222", 5: "5151"}
    assert lock.frame_kinds == {"zcl:get_pin_code": 1}


async def test_a_set_whose_answer_is_lost_is_read_again_at_the_next_listing(
        rig: ZigbeeRig) -> None:
    # The lock keeps the PIN but its answer comes after the driver gave up. Listed from the
    # session's memory, the user would look empty: a code deleted meanwhile would be forgotten
    # by lockbridge with its PIN still on the lock.
    lock = new_lock(profile="kwikset")
    ieee = await rig.join(lock)
    assert await rig.driver.list_codes(ieee) == []
    SEEN_PINS.add("2468")
    lock.latency = 3.0  # beyond the driver's command_timeout_s (2)
    with pytest.raises(DriverError):
        await rig.driver.write_code(ieee, CodeWrite(slot=5, pin="2468", name="G"))
    lock.latency = 0.0
    await until(lambda: rig.truth(lock).get(5) == "2468", what="the late Set on the lock")
    listed = await rig.driver.list_codes(ieee)
    assert {r.slot: r.pin for r in listed} == {5: "2468"}


async def test_a_master_code_changed_at_the_keypad_is_none_of_lockbridges_business(
        rig: ZigbeeRig) -> None:
    lock = new_lock(profile="kwikset", slots={2: (1, 0, "2222")})
    ieee = await rig.join(lock)
    await rig.driver.list_codes(ieee)
    SEEN_PINS.update({"9090", "5151"})
    lock.keypad_set(0, "9090")  # user 0: the master code, below lockbridge's first slot
    lock.keypad_set(5, "5151")  # events arrive in order: once 5's is in, 0's was handled
    await until(lambda: any(e.kind is DriverEventKind.SLOT_CHANGED and e.slot == 5
                            for e in rig.events), what="the keypad change")
    assert [e.slot for e in rig.events if e.kind is DriverEventKind.SLOT_CHANGED] == [5]
    lock.reset_counters()
    await rig.driver.list_codes(ieee)
    assert lock.frame_kinds == {"zcl:get_pin_code": 1}
