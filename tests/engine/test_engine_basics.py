"""The engine puts codes on simulated locks, verifies them, and takes them off."""

from __future__ import annotations

from datetime import timedelta

from bridge.engine import CodeRequest
from bridge.model import AccessCodeStatus, AccessCodeType, EventType
from drivers.simulator import SimLockSpec
from tests.conftest import START


async def events_of(h, code_id: str) -> list[str]:  # type: ignore[no-untyped-def]
    events = await h.store.read(lambda r: r.events(access_code_id=code_id))
    return [e.event_type.value for e in events]


async def test_ongoing_code_is_set_and_verified(harness_factory) -> None:  # type: ignore[no-untyped-def]
    h = await harness_factory([SimLockSpec("front", "Front")])
    device_id = h.device_id("front")
    code = await h.engine.create_code(device_id, CodeRequest(name="Staff", code="4711"))
    await h.settle()
    assert h.slots("front") == {1: "4711"}
    assert h.engine.codes[code.access_code_id].status is AccessCodeStatus.SET
    assert await events_of(h, code.access_code_id) == [
        EventType.ACCESS_CODE_CREATED, EventType.ACCESS_CODE_SET_ON_DEVICE]
    await h.engine.delete_code(code.access_code_id)
    await h.settle()
    assert h.slots("front") == {}
    assert code.access_code_id not in h.engine.codes
    assert (await events_of(h, code.access_code_id))[-2:] == [
        EventType.ACCESS_CODE_DELETED, EventType.ACCESS_CODE_REMOVED_FROM_DEVICE]


async def test_time_bound_code_goes_on_before_start_and_off_at_end(harness_factory) -> None:  # type: ignore[no-untyped-def]
    h = await harness_factory([SimLockSpec("front", "Front")])
    device_id = h.device_id("front")
    code = await h.engine.create_code(device_id, CodeRequest(
        name="Guest", type=AccessCodeType.TIME_BOUND, starts_at=START + timedelta(hours=3),
        ends_at=START + timedelta(hours=5)))
    await h.settle()
    assert h.slots("front") == {}
    assert h.engine.codes[code.access_code_id].status is AccessCodeStatus.UNSET
    await h.advance(2 * 3600 + 60)  # past starts_at - 60 min
    assert list(h.slots("front").values()) == [h.engine.codes[code.access_code_id].code]
    await h.advance(3 * 3600)
    assert h.slots("front") == {}
    assert h.engine.codes[code.access_code_id].status is AccessCodeStatus.UNSET


async def test_a_lock_the_driver_describes_anew_keeps_the_new_description(
        harness_factory) -> None:  # type: ignore[no-untyped-def]
    # A driver that learns a lock's slots late (a gateway still booting, a slot the lock
    # reports as not available) says DEVICES_CHANGED for a lock the engine already runs.
    from dataclasses import replace

    from bridge.driver import DriverEvent, DriverEventKind

    h = await harness_factory([SimLockSpec("front", "Front", slot_count=3)])
    device_id = h.device_id("front")
    await h.settle()
    lock = h.driver.lock("front")
    lock.spec = replace(lock.spec, slot_count=4, reserved_slots=(1,))
    await h.engine.on_driver_event("sim", DriverEvent(DriverEventKind.DEVICES_CHANGED, "front"))
    caps = h.engine.devices[device_id].info.capabilities
    assert (caps.slot_count, caps.reserved_slots) == (4, frozenset({1}))
    code = await h.engine.create_code(device_id, CodeRequest(name="Staff", code="4711"))
    await h.settle()
    assert h.slots("front") == {2: "4711"}
    assert h.engine.codes[code.access_code_id].status is AccessCodeStatus.SET
    stored = await h.store.read(lambda r: r.devices())
    assert [d.info.capabilities.slot_count for d in stored] == [4]
