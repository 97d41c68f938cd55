"""Zigbee2MQTT locks end to end: engine -> driver -> real Mosquitto -> fake Zigbee2MQTT."""

from __future__ import annotations

import json
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

from bridge.clock import FakeClock
from bridge.driver import (
    Availability,
    CodeWrite,
    CommandRejected,
    DriverEvent,
    DriverEventKind,
    RejectReason,
    RetryLater,
    SlotRead,
    SlotState,
)
from bridge.engine import CodeRequest
from bridge.model import (
    AccessCodeErrorCode,
    AccessCodeStatus,
    AccessCodeWarningCode,
    DeviceErrorCode,
    EventType,
)
from tests.conftest import START
from tests.fakes.zigbee2mqtt import FakeZigbee2MQTT, FakeZigbeeLock
from tests.harness import Harness, start_engine, until
from tests.mqtt_env import make_z2m, running_z2m, unique

if TYPE_CHECKING:
    from tests.mosquitto import Mosquitto

pytest_plugins = ["tests.mosquitto"]


@asynccontextmanager
async def setup(broker: Mosquitto, tmp_path: Path, locks: list[FakeZigbeeLock],
                fake_options: dict[str, Any] | None = None,
                **driver: object) -> AsyncIterator[tuple[Harness, FakeZigbee2MQTT]]:
    base = unique("z2m-e2e")
    async with running_z2m(broker, base, locks, **(fake_options or {})) as fake:
        clock = FakeClock(START)
        h = await start_engine(tmp_path, {"z2m": make_z2m(broker, clock, tmp_path, base,
                                                          **driver)}, clock=clock)
        try:
            yield h, fake
        finally:
            await h.stop()


def status(h: Harness, code_id: str) -> AccessCodeStatus:
    return h.code(code_id).status


async def event_types(h: Harness, code_id: str) -> list[str]:
    events = await h.store.read(lambda r: r.events(access_code_id=code_id))
    return [e.event_type.value for e in events]


async def test_codes_are_set_verified_and_cleared_with_leading_zeros(
        mosquitto: Mosquitto, tmp_path: Path) -> None:
    locks = [FakeZigbeeLock("front", "0x0001"), FakeZigbeeLock("back", "0x0002")]
    async with setup(mosquitto, tmp_path, locks) as (h, fake):
        front, back = h.device_id("front", driver="z2m"), h.device_id("back", driver="z2m")
        a = await h.engine.create_code(front, CodeRequest(name="Staff", code="0155"))
        b = await h.engine.create_code(back, CodeRequest(name="Guest", code="90210"))
        await h.until(lambda: status(h, a.access_code_id) is AccessCodeStatus.SET
                      and status(h, b.access_code_id) is AccessCodeStatus.SET, what="both set")
        # Zigbee users start at 0: the first free slot is user 0, and the PIN kept its zero.
        assert fake.lock("front").table == {0: "0155"}
        assert fake.lock("back").table == {0: "90210"}
        assert await event_types(h, a.access_code_id) == [
            EventType.ACCESS_CODE_CREATED, EventType.ACCESS_CODE_SET_ON_DEVICE]
        # The stale cached `users` Zigbee2MQTT published after each set undid nothing.
        assert fake.lock("front").applied == [(0, "0155")]
        await h.engine.delete_code(a.access_code_id)
        await h.until(lambda: a.access_code_id not in h.engine.codes, what="deleted")
        assert fake.lock("front").table == {}
        assert fake.lock("front").applied == [(0, "0155"), (0, None)]
        assert fake.lock("back").applied == [(0, "90210")]


async def test_stale_cached_users_never_undo_a_fresh_write(mosquitto: Mosquitto,
                                                          tmp_path: Path) -> None:
    lock = FakeZigbeeLock("front", "0x0001", table={0: "1111"})
    async with setup(mosquitto, tmp_path, [lock]) as (h, fake):
        device = h.device_id("front", driver="z2m")
        await h.until(lambda: any(c.slot == 0 for c in h.engine.codes_of(device)),
                      what="the existing code imported as unmanaged")
        code = await h.engine.create_code(device, CodeRequest(name="Guest", code="2222"))
        await h.until(lambda: status(h, code.access_code_id) is AccessCodeStatus.SET,
                      what="set")
        slot = h.code(code.access_code_id).slot
        assert slot == 1 and lock.table == {0: "1111", 1: "2222"}
        # Zigbee2MQTT republishes its cache again and again: nothing changes, nothing is resent.
        for _ in range(3):
            await fake.republish_cached("front")
        await h.until(lambda: h.engine.settled(), what="settled")
        assert lock.applied == [(1, "2222")]
        assert EventType.ACCESS_CODE_MODIFIED_EXTERNAL_TO_SEAM not in \
            await event_types(h, code.access_code_id)


async def test_keypad_edit_is_detected_and_put_back(mosquitto: Mosquitto,
                                                   tmp_path: Path) -> None:
    async with setup(mosquitto, tmp_path, [FakeZigbeeLock("front", "0x0001")]) as (h, fake):
        device = h.device_id("front", driver="z2m")
        code = await h.engine.create_code(device, CodeRequest(name="Staff", code="4821"))
        await h.until(lambda: status(h, code.access_code_id) is AccessCodeStatus.SET,
                      what="set")
        await fake.keypad_set("front", 0, "7777")
        await h.until(lambda: fake.lock("front").table.get(0) == "4821"
                      and status(h, code.access_code_id) is AccessCodeStatus.SET,
                      what="the code put back")
        assert fake.lock("front").applied_sets(0) == ["4821", "4821"]
        events = await event_types(h, code.access_code_id)
        assert EventType.ACCESS_CODE_MODIFIED_EXTERNAL_TO_SEAM in events
        warnings = [w.code for w in h.code(code.access_code_id).warnings]
        assert AccessCodeWarningCode.CODE_MODIFIED_EXTERNAL_TO_SEAM.value in warnings


async def test_keypad_unlock_becomes_a_lock_unlocked_event(mosquitto: Mosquitto,
                                                          tmp_path: Path) -> None:
    async with setup(mosquitto, tmp_path, [FakeZigbeeLock("front", "0x0001")]) as (h, fake):
        device = h.device_id("front", driver="z2m")
        code = await h.engine.create_code(device, CodeRequest(name="Staff", code="4821"))
        await h.until(lambda: status(h, code.access_code_id) is AccessCodeStatus.SET,
                      what="set")
        await fake.keypad_unlock("front", 0)
        await h.until(lambda: bool(h.events_of(EventType.LOCK_UNLOCKED, device)),
                      what="lock.unlocked")
        [event] = h.events_of(EventType.LOCK_UNLOCKED, device)
        assert event.access_code_id == code.access_code_id
        assert event.data["slot"] == 0


async def test_lock_without_expose_pin_is_unreadable_not_empty(mosquitto: Mosquitto,
                                                              tmp_path: Path) -> None:
    # A code set at the keypad before lockbridge came: Zigbee2MQTT withholds its PIN.
    lock = FakeZigbeeLock("front", "0x0001", expose_pin=False, table={0: "5150"})
    async with setup(mosquitto, tmp_path, [lock]) as (h, _fake):
        device = h.device_id("front", driver="z2m")
        caps = h.engine.devices[device].info.capabilities
        assert caps.masks_pins_on_read
        await h.until(lambda: any(c.slot == 0 for c in h.engine.codes_of(device)),
                      what="the occupied user imported")
        [unmanaged] = [c for c in h.engine.codes_of(device) if c.slot == 0]
        assert not unmanaged.is_managed and unmanaged.code is None
        code = await h.engine.create_code(device, CodeRequest(name="Guest", code="2468"))
        await h.until(lambda: status(h, code.access_code_id) is AccessCodeStatus.SET,
                      what="set")
        # User 0 was never taken for empty: the new code went to user 1.
        assert lock.table == {0: "5150", 1: "2468"}
        assert lock.applied == [(1, "2468")]


async def test_refusal_is_reported_not_retried_forever(mosquitto: Mosquitto,
                                                      tmp_path: Path) -> None:
    lock = FakeZigbeeLock("front", "0x0001")
    lock.refuse.append("setPinCode failed: duplicate code")
    async with setup(mosquitto, tmp_path, [lock]) as (h, _):
        device = h.device_id("front", driver="z2m")
        code = await h.engine.create_code(device, CodeRequest(name="Guest", code="1357"))
        await h.until(lambda: h.code(code.access_code_id).has_error(
            AccessCodeErrorCode.DUPLICATE_CODE_ON_DEVICE), what="duplicate error")
        assert lock.applied == [] and lock.table == {}
        assert EventType.ACCESS_CODE_DUPLICATE_CODE_ON_DEVICE in \
            await event_types(h, code.access_code_id)


async def test_offline_lock_waits_then_converges(mosquitto: Mosquitto, tmp_path: Path) -> None:
    async with setup(mosquitto, tmp_path, [FakeZigbeeLock("front", "0x0001")]) as (h, fake):
        device = h.device_id("front", driver="z2m")
        await h.until(lambda: h.engine.settled(), what="first read done")
        await fake.set_online("front", False)
        await h.until(lambda: h.engine.devices[device].availability is Availability.OFFLINE,
                      what="offline")
        assert any(e.code == DeviceErrorCode.DEVICE_OFFLINE for e in
                   h.engine.devices[device].errors)
        code = await h.engine.create_code(device, CodeRequest(name="Guest", code="8642"))
        await h.until(lambda: True)
        assert fake.lock("front").applied == []
        await fake.set_online("front", True)
        await h.until(lambda: status(h, code.access_code_id) is AccessCodeStatus.SET,
                      what="set once back online")
        assert fake.lock("front").applied == [(0, "8642")]


# Zigbee2MQTT reports a user that does not answer after zigbee-herdsman's timeout (10 s on a
# real network); here it is short, and shorter than the driver's own wait.
QUICK_TIMEOUTS = {"command_timeout_s": 0.2}


def unmanaged_in(h: Harness, device: str, slot: int) -> list[str | None]:
    return [c.code for c in h.engine.codes_of(device) if not c.is_managed and c.slot == slot]


async def test_a_user_that_does_not_answer_blinds_nothing_and_is_never_written(
        mosquitto: Mosquitto, tmp_path: Path) -> None:
    """Issue 16: the whole-lock read goes past a silent user (kept as unreadable), the read a
    keypad programming event asks for runs, and the next code goes to a checked empty user."""
    lock = FakeZigbeeLock("front", "0x0001", no_answer={2})
    async with setup(mosquitto, tmp_path, [lock], QUICK_TIMEOUTS) as (h, fake):
        device = h.device_id("front", driver="z2m")
        await fake.keypad_set("front", 0, "5150")
        code = await h.engine.create_code(device, CodeRequest(name="Guest", code="2468"))
        await h.until(lambda: status(h, code.access_code_id) is AccessCodeStatus.SET,
                      what="set")
        assert lock.table == {0: "5150", 1: "2468"} and lock.applied == [(1, "2468")]
        assert h.code(code.access_code_id).slot == 1
        await h.until(lambda: unmanaged_in(h, device, 0) == ["5150"],
                      what="the keypad code seen as unmanaged")
        # The silent user is taken for occupied (content unknown), never for empty.
        assert unmanaged_in(h, device, 2) == [None]
        code3 = await h.engine.create_code(device, CodeRequest(name="Next", code="3579"))
        await h.until(lambda: status(h, code3.access_code_id) is AccessCodeStatus.SET,
                      what="set")
        assert h.code(code3.access_code_id).slot == 3 and 2 not in lock.table


async def test_the_range_the_lock_answers_for_beats_the_table(mosquitto: Mosquitto,
                                                             tmp_path: Path) -> None:
    """Issue 16: a Kwikset that holds 5 codes (Zigbee2MQTT allows users 0..29 from its
    definition): users from 5 on do not answer; the sixth code is no_space at once, and the
    range is remembered for the next start."""
    lock = FakeZigbeeLock("front", "0x0001", slots=5)
    async with setup(mosquitto, tmp_path, [lock], QUICK_TIMEOUTS) as (h, _fake):
        device = h.device_id("front", driver="z2m")
        await h.until(lambda: h.engine.settled(), what="the first read done")
        codes = [await h.engine.create_code(device, CodeRequest(name=f"G{i}", code=f"{i}482"))
                 for i in range(1, 7)]
        await h.until(lambda: all(status(h, c.access_code_id) is AccessCodeStatus.SET
                                  for c in codes[:5]), what="five set")
        await h.until(lambda: h.code(codes[5].access_code_id).has_error(
            AccessCodeErrorCode.NO_SPACE_FOR_ACCESS_CODE_ON_DEVICE), what="no space")
        assert not h.code(codes[5].access_code_id).has_error(
            AccessCodeErrorCode.FAILED_TO_SET_ON_DEVICE)
        assert EventType.ACCESS_CODE_NO_SPACE_ON_DEVICE in \
            await event_types(h, codes[5].access_code_id)
        assert sorted(lock.table) == [0, 1, 2, 3, 4]
        assert all(user < 5 for user, _ in lock.applied)
        memory = json.loads((tmp_path / "zigbee2mqtt-z2m.json").read_text())
        assert memory["device_users"] == {"front": 5}
        assert [d.capabilities.slot_count for d in h.drivers["z2m"].devices()] == [5]


async def test_a_silent_duplicate_on_a_lock_that_hides_pins_is_a_duplicate(
        mosquitto: Mosquitto, tmp_path: Path) -> None:
    """Issue 16: the lock refuses a PIN set at its keypad before (setPinCodeRsp 3, which
    Zigbee2MQTT never looks at); the user reads back empty twice, user 0's PIN is hidden."""
    lock = FakeZigbeeLock("front", "0x0001", expose_pin=False, table={0: "1357"})
    async with setup(mosquitto, tmp_path, [lock], QUICK_TIMEOUTS) as (h, _fake):
        device = h.device_id("front", driver="z2m")
        await h.until(lambda: unmanaged_in(h, device, 0) == [None], what="user 0 imported")
        code = await h.engine.create_code(device, CodeRequest(name="Guest", code="1357"))
        await h.until(lambda: h.code(code.access_code_id).has_error(
            AccessCodeErrorCode.DUPLICATE_CODE_ON_DEVICE), what="duplicate error")
        [error] = [e for e in h.code(code.access_code_id).errors
                   if e.code == AccessCodeErrorCode.DUPLICATE_CODE_ON_DEVICE.value]
        assert "user 0" in error.message and "duplicate" in error.message
        assert "no answer" not in error.message
        assert lock.table == {0: "1357"} and lock.answers == [("setPinCode", 1, 3)]
        assert EventType.ACCESS_CODE_DUPLICATE_CODE_ON_DEVICE in \
            await event_types(h, code.access_code_id)


async def test_a_stale_republish_after_a_set_does_not_make_it_a_refusal(
        mosquitto: Mosquitto, tmp_path: Path) -> None:
    """A device report right after the set repeats the cached (empty) user: the answer to a
    second read decides, so a hidden PIN elsewhere does not turn the write into a duplicate."""
    lock = FakeZigbeeLock("front", "0x0001", expose_pin=False, table={0: "1111"},
                          program_event_on_rf=False)
    async with setup(mosquitto, tmp_path, [lock],
                     {**QUICK_TIMEOUTS, "republish_stale": True}) as (h, _fake):
        device = h.device_id("front", driver="z2m")
        await h.until(lambda: unmanaged_in(h, device, 0) == [None], what="user 0 imported")
        code = await h.engine.create_code(device, CodeRequest(name="Guest", code="2222"))
        await h.until(lambda: status(h, code.access_code_id) is AccessCodeStatus.SET,
                      what="set")
        assert not h.code(code.access_code_id).errors
        assert lock.table == {0: "1111", 1: "2222"} and lock.applied == [(1, "2222")]


async def test_a_user_nobody_told_us_about_is_read_before_and_never_overwritten(
        mosquitto: Mosquitto, tmp_path: Path) -> None:
    """Straight to the driver (no whole-lock read first): a write into a user with no answer
    yet reads it; a code there stays, unless the lock's write_unread_users allows it."""
    base = unique("z2m-unread")
    lock = FakeZigbeeLock("front", "0x0001", table={0: "9999"}, program_event_on_rf=False)
    async with running_z2m(mosquitto, base, [lock], **QUICK_TIMEOUTS):
        events: list[DriverEvent] = []

        async def sink(event: DriverEvent) -> None:
            events.append(event)

        for allowed in (False, True):
            driver = make_z2m(mosquitto, FakeClock(START), tmp_path, base, locks=[
                {"friendly_name": "front", "write_unread_users": allowed}])
            await driver.start(sink)
            try:
                write = CodeWrite(slot=0, pin="4321", name="Guest")
                if allowed:
                    await driver.write_code("front", write)
                    assert lock.table == {0: "4321"}
                else:
                    with pytest.raises(RetryLater, match="did not put there"):
                        await driver.write_code("front", write)
                    assert lock.table == {0: "9999"} and lock.applied == []
                    await until(lambda: any(e.kind is DriverEventKind.SLOT_CHANGED
                                            and e.slot == 0 for e in events))
            finally:
                await driver.stop()


async def test_a_failed_set_is_logged_without_its_pin(mosquitto: Mosquitto, tmp_path: Path,
                                                     caplog: pytest.LogCaptureFixture) -> None:
    """zigbee-herdsman's error for a setPinCode names `"pincodevalue":"<PIN>"`; Zigbee2MQTT
    publishes it on bridge/logging. The driver logs that line with the PIN cut out (and the
    autouse no_pin_in_logs guard fails the test on any PIN in any log line)."""
    caplog.set_level(logging.INFO, logger="drivers.zigbee2mqtt")
    base = unique("z2m-redact")
    lock = FakeZigbeeLock("front", "0x0001")
    async with running_z2m(mosquitto, base, [lock], **QUICK_TIMEOUTS) as fake:
        driver = make_z2m(mosquitto, FakeClock(START), tmp_path, base)

        async def sink(_event: DriverEvent) -> None:
            return None

        await driver.start(sink)
        try:
            await driver.read_slots("front", [1])
            lock.online = False  # off the mesh; Zigbee2MQTT has not noticed yet
            with pytest.raises(RetryLater):
                await driver.write_code("front", CodeWrite(slot=1, pin="8642", name="Guest"))
        finally:
            await driver.stop()
        [line] = [m for _, m in fake.logged if "setPinCode" in m]
        assert '"pincodevalue":"8642"' in line and "MAC_NO_ACK" in line
    logged = [r.getMessage() for r in caplog.records if "set pin_code failed" in r.getMessage()]
    assert logged and all("8642" not in m and '"pincodevalue":"<redacted>"' in m
                          for m in logged)


@pytest.mark.parametrize("write_unread", [False, True])
async def test_a_write_beyond_the_locks_range_is_no_space_before_any_whole_lock_read(
        mosquitto: Mosquitto, tmp_path: Path, write_unread: bool) -> None:
    """Straight to the driver: user 3 of a Kwikset holding 3 codes does not answer (read
    before the write, or after the set the lock refused without a word): no_space, and from
    then on at once, with nothing sent."""
    base = unique("z2m-range")
    lock = FakeZigbeeLock("front", "0x0001", slots=3, program_event_on_rf=False)
    async with running_z2m(mosquitto, base, [lock], **QUICK_TIMEOUTS):
        allowed = {"write_unread_users": True} if write_unread else {}
        driver = make_z2m(mosquitto, FakeClock(START), tmp_path, base,
                          locks=[{"friendly_name": "front", **allowed}])

        async def sink(_event: DriverEvent) -> None:
            return None

        await driver.start(sink)
        try:
            with pytest.raises(CommandRejected) as raised:
                await driver.write_code("front", CodeWrite(slot=3, pin="1470", name="Guest"))
            assert raised.value.reason is RejectReason.NO_SPACE
            assert [d.capabilities.slot_count for d in driver.devices()] == [3]
            gets = lock.gets
            with pytest.raises(CommandRejected) as again:
                await driver.write_code("front", CodeWrite(slot=4, pin="1470", name="Guest"))
            assert again.value.reason is RejectReason.NO_SPACE and lock.gets == gets
            assert await driver.read_slots("front", [5]) == [SlotRead(5, SlotState.EMPTY)]
            assert lock.table == {} and lock.applied == []
        finally:
            await driver.stop()
