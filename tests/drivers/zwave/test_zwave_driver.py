"""The Z-Wave driver against the real zwave-js stack: discovery, writes read back from the lock,
refusals, keypad events, dead nodes without floods, and schedules in the lock's own time.

zwave-js's mock controller (our launcher in tests/zwave/) serves two mock locks to a real
zwave-js-server; the driver talks to that server exactly as on a gateway.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

from bridge.clock import SystemClock
from bridge.driver import (
    Availability,
    CodeWrite,
    CommandRejected,
    DriverEvent,
    DriverEventKind,
    LocalWindow,
    RejectReason,
    RetryLater,
    SlotState,
)
from drivers.simulator.lock import SEEN_PINS
from tests.zwave_stack import (
    ZWaveStack,
    fast_config,
    missing_node,
    running_stack,
    start_zwave_engine,
)

if TYPE_CHECKING:
    from drivers.zwave.driver import ZWaveDriver

Driven = tuple["ZWaveDriver", list[DriverEvent]]

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(missing_node() is not None, reason=missing_node() or ""),
]

ZONE = "America/Sao_Paulo"  # UTC-3 all year; the server itself runs in UTC
PINS = ["4711", "24681357", "90210", "55667788", "31337"]


@pytest.fixture
def stack(tmp_path: Path) -> Iterator[ZWaveStack]:
    """A fresh mock network and zwave-js-server in the test's temp folder."""
    with running_stack(tmp_path / "zwave") as zwave:
        yield zwave


@pytest.fixture
async def driver(stack: ZWaveStack, tmp_path: Path) -> AsyncIterator[Driven]:
    """A started driver on the stack, and the events it reported."""
    from drivers.zwave.driver import ZWaveDriver

    SEEN_PINS.update(PINS)  # the log guard fails the test if any of these reach a log line
    config = fast_config(stack.url, time_zone=ZONE)
    events: list[DriverEvent] = []

    async def sink(event: DriverEvent) -> None:
        events.append(event)

    zw = ZWaveDriver(config, SystemClock(), tmp_path / "state")
    await zw.start(sink)
    try:
        yield zw, events
    finally:
        await zw.stop()
        await zw.stop()  # safe twice


async def until(predicate: Callable[[], bool], timeout: float = 10.0) -> None:
    """Wait (real time, bounded) for something the stack does asynchronously."""
    for _ in range(int(timeout / 0.05)):
        if predicate():
            return
        await asyncio.sleep(0.05)
    raise AssertionError("condition not reached")


async def test_discovery_writes_reads_and_refusals(stack: ZWaveStack,
                                                   driver: Driven) -> None:
    zw, events = driver
    plain, scheduled = zw.devices()
    assert (plain.external_id, scheduled.external_id) == ("7e570001-2", "7e570001-3")
    assert plain.capabilities.slot_count == 10 and scheduled.capabilities.slot_count == 20
    assert plain.constraints.allowed_lengths() == range(4, 11)
    assert not plain.capabilities.native_schedules and scheduled.capabilities.native_schedules
    assert scheduled.time_zone == ZONE
    assert zw.availability(plain.external_id) is Availability.ONLINE
    a = plain.external_id
    await stack.control("received", node=2)

    # An empty lock is listed from its checksum alone: one frame, no walk over the slots.
    assert await zw.list_codes(a) == []
    assert await stack.control("received", node=2) == {"UserCodeCCUserCodeChecksumGet": 1}

    # A write is reported only once the lock itself holds the code.
    result = await zw.write_code(a, CodeWrite(slot=3, pin="4711", name="Guest"))
    assert (result.slot, result.pin, result.confirmed) == (3, "4711", True)
    assert await stack.slots(2) == {3: "4711"}
    sent = await stack.control("received", node=2)
    assert sent == {"UserCodeCCExtendedUserCodeSet": 1, "UserCodeCCGet": 1}
    reads = await zw.read_slots(a, [3, 4])
    assert [(r.slot, r.state, r.pin) for r in reads] == [(3, SlotState.KNOWN, "4711"),
                                                        (4, SlotState.EMPTY, None)]
    # The checksum now agrees with what the driver saw: still no walk.
    assert [(r.slot, r.pin) for r in await zw.list_codes(a)] == [(3, "4711")]

    # The lock refuses a PIN held in another slot, and says so: duplicate, never pending.
    await stack.control("keypad_silent_set", node=2, slot=6, code="90210")
    with pytest.raises(CommandRejected) as refused:
        await zw.write_code(a, CodeWrite(slot=7, pin="90210", name="Dup"))
    assert refused.value.reason is RejectReason.DUPLICATE_PIN
    assert 7 not in await stack.slots(2)
    # A PIN the driver has just seen in another slot is refused without a frame.
    await zw.read_slots(a, [6])
    await stack.control("received", node=2)
    with pytest.raises(CommandRejected):
        await zw.write_code(a, CodeWrite(slot=8, pin="90210", name="Dup"))
    assert await stack.control("received", node=2) == {}

    # Slots and PINs outside the lock's rules never reach it; slot 0 would clear every code.
    for slot, pin, reason in ((0, "1234", RejectReason.SLOT_OUT_OF_RANGE),
                              (11, "1234", RejectReason.SLOT_OUT_OF_RANGE),
                              (None, "1234", RejectReason.SLOT_OUT_OF_RANGE),
                              (2, "123", RejectReason.INVALID_PIN)):
        with pytest.raises(CommandRejected) as bad:
            await zw.write_code(a, CodeWrite(slot=slot, pin=pin, name="x"))
        assert bad.value.reason is reason
    with pytest.raises(CommandRejected):
        await zw.clear_code(a, 0)
    assert await stack.control("received", node=2) == {}

    # Clearing one slot clears exactly that slot.
    await zw.clear_code(a, 3)
    assert await stack.slots(2) == {6: "90210"}
    assert (await zw.read_slots(a, [3]))[0].state is SlotState.EMPTY

    # At the lock: an unlock with the code in slot 6, and a code typed in at the keypad.
    events.clear()
    await stack.control("keypad_unlock", node=2, slot=6)
    await stack.control("keypad_set", node=2, slot=5, code="31337")
    await until(lambda: len(events) >= 2)
    assert [(e.kind, e.slot) for e in events] == [(DriverEventKind.KEYPAD_USED, 6),
                                                 (DriverEventKind.SLOT_CHANGED, 5)]
    assert all(e.external_id == a for e in events)
    assert "31337" not in str(events)  # the event names the slot; the engine reads it
    # The driver's own commands are not reported back as changes.
    events.clear()
    await zw.write_code(a, CodeWrite(slot=5, pin="24681357", name="Back"))
    await asyncio.sleep(0.5)
    assert [e for e in events if e.kind is DriverEventKind.SLOT_CHANGED] == []

    assert await zw.probe(a)


async def test_disabled_and_missing_slots(stack: ZWaveStack, driver: Driven) -> None:
    """A disabled code is neither a working code nor empty; a slot reporting status 254 ("status
    not available") does not exist: it reads empty, is reserved and is never written."""
    zw, events = driver
    a = zw.devices()[0].external_id
    await stack.control("set_status", node=2, slot=5, status=2, code="24681357")
    reads = await zw.read_slots(a, [5])
    assert [(r.state, r.pin, r.reason, r.disabled) for r in reads] == [
        (SlotState.UNREADABLE, None, "disabled", True)]
    listed = {r.slot: (r.state, r.reason) for r in await zw.list_codes(a)}
    assert listed[5] == (SlotState.UNREADABLE, "disabled")

    events.clear()
    await stack.control("set_status", node=2, slot=8, status=254)
    assert [(r.state, r.pin) for r in await zw.read_slots(a, [8])] == [(SlotState.EMPTY, None)]
    assert 8 in zw.devices()[0].capabilities.reserved_slots
    await until(lambda: (DriverEventKind.DEVICES_CHANGED, a) in [(e.kind, e.external_id)
                                                                 for e in events])
    await stack.control("received", node=2)
    with pytest.raises(CommandRejected) as refused:
        await zw.write_code(a, CodeWrite(slot=8, pin="4711", name="Guest"))
    assert refused.value.reason is RejectReason.SLOT_OUT_OF_RANGE
    assert await stack.control("received", node=2) == {}
    # Found missing by the write's own read back: the lock ignored the Set.
    await stack.control("set_status", node=2, slot=9, status=254)
    with pytest.raises(CommandRejected) as refused:
        await zw.write_code(a, CodeWrite(slot=9, pin="4711", name="Guest"))
    assert refused.value.reason is RejectReason.SLOT_OUT_OF_RANGE
    assert 9 in zw.devices()[0].capabilities.reserved_slots


async def test_a_supervision_fail_is_judged_by_the_read_back(tmp_path: Path) -> None:
    """A lock with Supervision answers Fail: the slot read back and the lock's duplicate notice
    decide what it meant, not the Fail alone."""
    from drivers.zwave.driver import ZWaveDriver

    SEEN_PINS.update(PINS)
    supervised = [{"id": 2, "slots": 10, "supervision": True}]
    with running_stack(tmp_path / "zwave", supervised) as stack:
        zw = ZWaveDriver(fast_config(stack.url), SystemClock(), tmp_path / "state")

        async def sink(event: DriverEvent) -> None:
            pass

        try:
            await zw.start(sink)
            a = zw.devices()[0].external_id
            # Fail, yet the lock took the code: it is set.
            await stack.control("fail_sets", node=2, count=1, keep=True)
            result = await zw.write_code(a, CodeWrite(slot=3, pin="4711", name="Guest"))
            assert (result.slot, result.confirmed) == (3, True)
            assert await stack.slots(2) == {3: "4711"}
            # Fail, and the slot stayed empty with no notice: refused (failed_to_set_on_device).
            await stack.control("fail_sets", node=2, count=1, keep=False)
            with pytest.raises(CommandRejected) as refused:
                await zw.write_code(a, CodeWrite(slot=4, pin="90210", name="Other"))
            assert refused.value.reason is RejectReason.OTHER
            # Fail with the duplicate notice, which names no slot (some Yale locks): a duplicate.
            await stack.control("keypad_silent_set", node=2, slot=6, code="31337")
            await stack.control("duplicate_params", node=2, value=False)
            with pytest.raises(CommandRejected) as refused:
                await zw.write_code(a, CodeWrite(slot=7, pin="31337", name="Dup"))
            assert refused.value.reason is RejectReason.DUPLICATE_PIN
            # A clear answered Fail that emptied the slot is done.
            await stack.control("fail_sets", node=2, count=1, keep=True)
            await zw.clear_code(a, 3)
            assert await stack.slots(2) == {6: "31337"}
        finally:
            await zw.stop()


async def test_a_managed_code_disabled_at_the_lock_is_put_back(stack: ZWaveStack,
                                                               tmp_path: Path) -> None:
    """Through the engine: a code the lock keeps disabled does not open the door, so it is not
    the managed code as wanted; it is reported changed and written again, enabled."""
    from bridge.engine import CodeRequest
    from bridge.model import AccessCodeStatus, EventType

    SEEN_PINS.update(PINS)
    h, _ = await start_zwave_engine(stack.url, tmp_path)
    try:
        device_id = h.device_id("7e570001-2", driver="zw")
        made = await h.engine.create_code(device_id, CodeRequest(name="Staff",
                                                                 code="24681357"))
        cid = made.access_code_id
        await h.until(lambda: h.code(cid).status is AccessCodeStatus.SET, advance=0.5,
                      timeout=30, what="set")
        slot = h.code(cid).slot
        # Disabled at the lock, which reports it (a User Code Report nobody asked for).
        await stack.control("set_status", node=2, slot=slot, status=2, code="24681357")
        await stack.control("report", node=2, slot=slot)
        await h.until(lambda: bool(h.events_of(EventType.ACCESS_CODE_MODIFIED_EXTERNAL_TO_SEAM)),
                      advance=0.5, timeout=30, what="reported changed")
        await h.until(lambda: h.code(cid).status is AccessCodeStatus.SET
                      and h.code(cid).verified, advance=0.5, timeout=30, what="put back")
        assert (await stack.control("slots", node=2))[str(slot)] == {"status": 1,
                                                                    "code": "24681357"}
    finally:
        await h.stop()


async def test_native_schedule_in_the_locks_own_time(stack: ZWaveStack,
                                                     driver: Driven) -> None:
    zw, _ = driver
    b = zw.devices()[1].external_id
    window = LocalWindow(datetime(2026, 12, 1, 15, 0), datetime(2026, 12, 5, 11, 0, 30))
    result = await zw.write_code(b, CodeWrite(slot=2, pin="55667788", name="Guest",
                                              window=window))
    assert result.confirmed
    assert await stack.slots(3) == {2: "55667788"}
    schedules = await stack.control("schedules", node=3)
    # The lock's clock zone is ours (UTC-3), not the server's (UTC).
    assert schedules["ScheduleEntryLock_standardOffset"] == -180
    assert schedules["ScheduleEntryLock_dstOffset"] == -180
    assert schedules["ScheduleEntryLock_schedule_2_1_1"] == {
        "startYear": 26, "startMonth": 12, "startDay": 1, "startHour": 15, "startMinute": 0,
        "stopYear": 26, "stopMonth": 12, "stopDay": 5, "stopHour": 11, "stopMinute": 0,
    }
    # The clock is set once, not before every schedule.
    await stack.control("received", node=3)
    await zw.write_code(b, CodeWrite(slot=4, pin="4711", name="Guest 2", window=window))
    sent = await stack.control("received", node=3)
    assert "TimeParametersCCSet" not in sent and "ScheduleEntryLockCCTimeOffsetSet" not in sent
    assert sent["ScheduleEntryLockCCYearDayScheduleSet"] == 1
    # An ongoing code on such a lock turns the slot's schedules off.
    await zw.write_code(b, CodeWrite(slot=6, pin="90210", name="Staff"))
    assert (await stack.control("received", node=3)).get("ScheduleEntryLockCCEnableSet") == 1
    # A lock without the Schedule Entry Lock CC refuses a window rather than ignore it.
    with pytest.raises(CommandRejected):
        await zw.write_code(zw.devices()[0].external_id,
                            CodeWrite(slot=2, pin="4711", name="x", window=window))


async def test_a_dead_lock_is_not_flooded(stack: ZWaveStack, driver: Driven) -> None:
    zw, events = driver
    a = zw.devices()[0].external_id
    await stack.control("offline", node=2, value=True)
    await stack.control("received", node=2)
    with pytest.raises(RetryLater):
        await zw.write_code(a, CodeWrite(slot=3, pin="4711", name="Guest"))
    # zwave-js gives up after 3 attempts and declares the node dead (its event may trail the
    # command's error by a moment).
    await until(lambda: zw.availability(a) is Availability.OFFLINE)
    # The engine hears of it through the driver's event queue, a task turn later.
    await until(lambda: (DriverEventKind.AVAILABILITY, Availability.OFFLINE) in [
        (e.kind, e.availability) for e in events])
    await stack.control("received", node=2)
    # While dead: commands are refused here, and a probe is a single NOP.
    with pytest.raises(RetryLater):
        await zw.write_code(a, CodeWrite(slot=3, pin="4711", name="Guest"))
    assert await zw.probe(a) is False
    assert await stack.control("received", node=2) == {"NoOperationCC": 1}
    # No timer polls the lock behind the engine's back.
    await asyncio.sleep(2)
    assert await stack.control("received", node=2) == {}
    await stack.control("offline", node=2, value=False)
    assert await zw.probe(a) is True
    await until(lambda: zw.availability(a) is Availability.ONLINE)
    assert (await zw.write_code(a, CodeWrite(slot=3, pin="4711", name="Guest"))).confirmed


async def test_server_restart_reconnects_and_locks_come_back(stack: ZWaveStack,
                                                             driver: Driven) -> None:
    zw, _ = driver
    a, b = (d.external_id for d in zw.devices())
    await zw.write_code(a, CodeWrite(slot=1, pin="4711", name="Guest"))
    # The server goes away while a command is in flight (the lock is slow to answer): the
    # command fails with RetryLater; the caller's task is not cancelled.
    await stack.control("offline", node=3, value=True)
    pending = asyncio.create_task(zw.write_code(b, CodeWrite(slot=1, pin="90210", name="x")))
    await asyncio.sleep(0.5)
    await stack.stop_server_async()
    with pytest.raises(RetryLater):
        await pending
    await stack.control("offline", node=3, value=False)
    await until(lambda: zw.availability(a) is Availability.HUB_DISCONNECTED)
    assert zw.availability(b) is Availability.HUB_DISCONNECTED
    with pytest.raises(RetryLater):
        await zw.write_code(a, CodeWrite(slot=2, pin="90210", name="x"))
    assert not await zw.probe(a)
    # While the server is away a code is typed in at the lock; nobody hears of it.
    await stack.control("keypad_silent_set", node=2, slot=9, code="31337")
    stack.start_server()
    await until(lambda: zw.availability(a) is Availability.ONLINE
                and zw.availability(b) is Availability.ONLINE, timeout=30)
    # zwave-js's cache does not know slot 9; the checksum says so and the slots are read.
    codes = {r.slot: r.pin for r in await zw.list_codes(a)}
    assert codes == {1: "4711", 9: "31337"}


async def test_locks_are_remembered_while_the_server_is_down(stack: ZWaveStack,
                                                            tmp_path: Path) -> None:
    from drivers.zwave.driver import ZWaveDriver

    config = fast_config(stack.url)

    async def sink(event: DriverEvent) -> None:
        pass

    first = ZWaveDriver(config, SystemClock(), tmp_path / "state")
    await first.start(sink)
    known = [d.external_id for d in first.devices()]
    await first.stop()
    await stack.stop_server_async()
    # The daemon restarts while zwave-js-server is down: its locks are still known, and say why
    # they cannot be reached; start() does not wait out its whole timeout for the server.
    second = ZWaveDriver(config, SystemClock(), tmp_path / "state")
    started = asyncio.get_running_loop().time()
    await second.start(sink)
    try:
        assert asyncio.get_running_loop().time() - started < 5
        assert [d.external_id for d in second.devices()] == known
        assert {second.availability(e) for e in known} == {Availability.HUB_DISCONNECTED}
        with pytest.raises(RetryLater):
            await second.read_slots(known[0], [1])
        stack.start_server()
        await until(lambda: {second.availability(e) for e in known} == {Availability.ONLINE},
                    timeout=30)
    finally:
        await second.stop()


async def test_a_moved_stay_reaches_the_locks_schedule(stack: ZWaveStack, tmp_path: Path) -> None:
    """Through the engine: the end of a running stay moved later, then sooner, is written to
    the lock's year-day schedule; a rename sends nothing (Z-Wave keeps no names)."""
    from bridge.clock import FakeClock
    from bridge.engine import CodeRequest
    from bridge.model import AccessCodeStatus, AccessCodeType
    from drivers.zwave.driver import ZWaveDriver
    from tests.harness import start_engine

    SEEN_PINS.update(PINS)
    now = datetime.now(UTC).replace(second=0, microsecond=0)
    clock = FakeClock(now)
    config = fast_config(stack.url, time_zone=ZONE)
    zw = ZWaveDriver(config, clock, tmp_path / "state")
    h = await start_engine(tmp_path, {"zw": zw}, clock=clock)
    try:
        device_id = h.device_id("7e570001-3", driver="zw")
        made = await h.engine.create_code(device_id, CodeRequest(
            name="Guest", code="31337", type=AccessCodeType.TIME_BOUND,
            starts_at=now - timedelta(hours=2), ends_at=now + timedelta(days=2)))
        cid = made.access_code_id

        def status() -> AccessCodeStatus:
            return h.code(cid).status

        async def stop_on_lock() -> tuple[int, int, int, int]:
            slot = h.code(cid).slot
            entry = (await stack.control("schedules", node=3))[
                f"ScheduleEntryLock_schedule_{slot}_1_1"]
            return (entry["stopMonth"], entry["stopDay"], entry["stopHour"], entry["stopMinute"])

        def local(moment: datetime) -> tuple[int, int, int, int]:
            there = moment - timedelta(hours=3)  # UTC-3 all year
            return (there.month, there.day, there.hour, there.minute)

        await h.until(lambda: status() is AccessCodeStatus.SET, advance=0.5, timeout=30,
                      what="set")
        assert await stop_on_lock() == local(now + timedelta(days=2))
        for new_end in (now + timedelta(days=3), now + timedelta(hours=20)):
            updated = await h.engine.update_code(cid, CodeRequest(ends_at=new_end))
            assert updated.status is AccessCodeStatus.SETTING
            await h.until(lambda: status() is AccessCodeStatus.SET, advance=0.5, timeout=30,
                          what="set again")
            assert await stop_on_lock() == local(new_end)
        await stack.control("received", node=3)
        await h.engine.update_code(cid, CodeRequest(name="Guest Smith"))
        await h.until(lambda: h.engine.settled(), advance=0.5, timeout=30, what="settled")
        assert status() is AccessCodeStatus.SET
        assert "UserCodeCCSet" not in await stack.control("received", node=3)
    finally:
        await h.stop()


async def test_only_the_propertys_zone_schedules_in_the_locks_time(stack: ZWaveStack,
                                                                  tmp_path: Path) -> None:
    """Through the engine, with no zone in the driver's settings: the property's zone is the
    lock's (one rule for every driver), for the schedule and for the lock's clock."""
    from bridge.clock import FakeClock
    from bridge.engine import CodeRequest
    from bridge.model import AccessCodeType
    from drivers.zwave.driver import ZWaveDriver
    from tests.harness import start_engine

    SEEN_PINS.update(PINS)
    now = datetime.now(UTC).replace(second=0, microsecond=0)
    clock = FakeClock(now)
    config = fast_config(stack.url)
    zw = ZWaveDriver(config, clock, tmp_path / "state")
    h = await start_engine(tmp_path, {"zw": zw}, clock=clock, property_zone=ZONE)
    try:
        device_id = h.device_id("7e570001-3", driver="zw")
        assert h.engine.devices[device_id].time_zone == ZONE
        starts, ends = now + timedelta(days=1), now + timedelta(days=3)
        made = await h.engine.create_code(device_id, CodeRequest(
            name="Guest", code="31337", type=AccessCodeType.TIME_BOUND, starts_at=starts,
            ends_at=ends))
        await h.until(lambda: h.code(made.access_code_id).is_scheduled_on_device, advance=0.5,
                      timeout=30, what="scheduled on the lock")
        slot = h.code(made.access_code_id).slot
        schedules = await stack.control("schedules", node=3)
        assert schedules["ScheduleEntryLock_standardOffset"] == -180
        entry = schedules[f"ScheduleEntryLock_schedule_{slot}_1_1"]
        local_start, local_end = starts - timedelta(hours=3), ends - timedelta(hours=3)
        assert (entry["startDay"], entry["startHour"], entry["startMinute"]) == (
            local_start.day, local_start.hour, local_start.minute)
        assert (entry["stopDay"], entry["stopHour"], entry["stopMinute"]) == (
            local_end.day, local_end.hour, local_end.minute)
    finally:
        await h.stop()
