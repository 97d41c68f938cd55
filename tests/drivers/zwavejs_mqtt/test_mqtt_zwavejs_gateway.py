"""Z-Wave JS UI as the gateway really behaves (issue 27), one section per finding: the driver
(alone or under the engine) against the fake gateway on a real Mosquitto."""

from __future__ import annotations

import asyncio
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
    SlotState,
)
from bridge.engine import CodeRequest
from bridge.model import AccessCodeErrorCode, AccessCodeStatus, EventType
from drivers.zwavejs_mqtt.driver import ZwaveJsMqttDriver
from tests.conftest import START
from tests.fakes.zwavejs_ui import FakeNode, FakeZwaveJsUI
from tests.harness import Harness, start_engine
from tests.mqtt_env import make_zui, running_zui, unique

if TYPE_CHECKING:
    from tests.mosquitto import Mosquitto

pytest_plugins = ["tests.mosquitto"]


def lock_config(nodes: list[FakeNode]) -> list[dict[str, Any]]:
    return [{"node_id": n.node_id, "id": f"lock{n.node_id}"} for n in nodes]


@asynccontextmanager
async def engine(broker: Mosquitto, tmp_path: Path, nodes: list[FakeNode],
                 locks: list[dict[str, Any]] | None = None, gateway: str | None = "home",
                 fake: dict[str, Any] | None = None, **driver: Any,
                 ) -> AsyncIterator[tuple[Harness, FakeZwaveJsUI]]:
    """The engine over the driver over the fake; `gateway` None leaves both at their
    defaults."""
    prefix = unique("zw-i27")
    fake_args: dict[str, Any] = {"verify_delay_s": 0.3, **(fake or {})}
    name = gateway or "zwave-js-ui"
    async with running_zui(broker, prefix, name, nodes, **fake_args) as gw:
        clock = FakeClock(START)
        driver_ = make_zui(broker, clock, tmp_path, prefix, gateway,
                           locks or lock_config(nodes), **driver)
        h = await start_engine(tmp_path, {"zwave": driver_}, clock=clock)
        try:
            yield h, gw
        finally:
            await h.stop()


@asynccontextmanager
async def alone(broker: Mosquitto, tmp_path: Path, nodes: list[FakeNode],
                locks: list[dict[str, Any]] | None = None, **driver: Any,
                ) -> AsyncIterator[tuple[ZwaveJsMqttDriver, FakeZwaveJsUI, list[DriverEvent]]]:
    """The driver alone, started, with the events it reported."""
    prefix = unique("zw-i27d")
    async with running_zui(broker, prefix, "home", nodes, verify_delay_s=0.3) as gw:
        driver_ = make_zui(broker, FakeClock(), tmp_path, prefix, "home",
                           locks or lock_config(nodes), **driver)
        events: list[DriverEvent] = []

        async def sink(event: DriverEvent) -> None:
            events.append(event)

        await driver_.start(sink)
        try:
            yield driver_, gw, events
        finally:
            await driver_.stop()


def status(h: Harness, code_id: str) -> AccessCodeStatus:
    return h.code(code_id).status


def all_set(h: Harness, codes: list[Any]) -> bool:
    return all(status(h, c.access_code_id) is AccessCodeStatus.SET for c in codes)


# -- 1. the slot count comes from the gateway ------------------------------------------------


async def test_an_8_slot_lock_has_8_slots_and_no_phantom_codes(mosquitto: Mosquitto,
                                                               tmp_path: Path) -> None:
    async with engine(mosquitto, tmp_path, [FakeNode(5, slot_count=8)]) as (h, _):
        device = h.device_id("lock5", driver="zwave")
        assert h.engine.devices[device].info.capabilities.slot_count == 8
        await h.until(lambda: h.engine.settled(), what="first full read")
        assert h.engine.codes_of(device) == []


async def test_a_code_beyond_slot_30_of_a_250_slot_lock_is_seen(mosquitto: Mosquitto,
                                                                tmp_path: Path) -> None:
    node = FakeNode(5, slot_count=250, codes={200: "2580"})
    async with engine(mosquitto, tmp_path, [node]) as (h, _):
        device = h.device_id("lock5", driver="zwave")
        assert h.engine.devices[device].info.capabilities.slot_count == 250
        await h.until(lambda: any(c.slot == 200 for c in h.engine.codes_of(device)),
                      what="the code in slot 200 imported", timeout=30.0)
        [unmanaged] = h.engine.codes_of(device)
        assert not unmanaged.is_managed


async def test_a_node_not_yet_interviewed_is_asked_its_users_count(mosquitto: Mosquitto,
                                                                  tmp_path: Path) -> None:
    # Until the interview ends getNodes shows no User Code values: getUsersCount asks the lock.
    async with alone(mosquitto, tmp_path, [FakeNode(5, slot_count=8, ready=False)]) as (
            driver, gw, _):
        [info] = driver.devices()
        assert info.capabilities.slot_count == 8
        assert any(api == "sendCommand" and args[1] == "getUsersCount" for api, args in gw.calls)


async def test_a_dead_node_not_yet_interviewed_is_not_asked(mosquitto: Mosquitto,
                                                             tmp_path: Path) -> None:
    node = FakeNode(5, slot_count=8, ready=False, status="Dead")
    async with alone(mosquitto, tmp_path, [node]) as (driver, gw, _):
        [info] = driver.devices()
        assert info.capabilities.slot_count == 30  # nothing known yet: the last resort
        assert driver.availability("lock5") is Availability.OFFLINE
        assert not any(api == "sendCommand" for api, _ in gw.calls)


# -- 2. status 254: the slot does not exist ---------------------------------------------------


async def test_a_slot_not_available_holds_no_code_and_is_never_used(mosquitto: Mosquitto,
                                                                   tmp_path: Path) -> None:
    node = FakeNode(5, slot_count=4, unavailable_slots={2})
    async with engine(mosquitto, tmp_path, [node]) as (h, _):
        device = h.device_id("lock5", driver="zwave")
        await h.until(lambda: h.engine.settled(), what="first full read")
        assert h.engine.codes_of(device) == []  # no phantom "occupied, unreadable" code
        assert 2 in h.engine.devices[device].info.capabilities.reserved_slots
        codes = [await h.engine.create_code(device, CodeRequest(name=f"g{i}", code=pin))
                 for i, pin in enumerate(("1470", "2581", "3692"))]
        await h.until(lambda: all_set(h, codes), what="three codes set")
        assert node.codes == {1: "1470", 3: "2581", 4: "3692"}


async def test_a_write_beyond_the_users_count_is_slot_out_of_range(mosquitto: Mosquitto,
                                                                   tmp_path: Path) -> None:
    # Configured larger than the lock: the gateway answers InvalidValue naming the range.
    async with alone(mosquitto, tmp_path, [FakeNode(5, slot_count=8)],
                     locks=[{"node_id": 5, "id": "lock5", "slot_count": 10}]) as (driver, _, _e):
        with pytest.raises(CommandRejected) as raised:
            await driver.write_code("lock5", CodeWrite(slot=9, pin="1234", name="x"))
        assert raised.value.reason is RejectReason.SLOT_OUT_OF_RANGE


async def test_a_code_written_into_a_disabled_slot_is_not_taken_as_set(mosquitto: Mosquitto,
                                                                     tmp_path: Path) -> None:
    # zwave-js's userCode setter keeps the status it knows for the slot: written into a slot
    # the lock reported disabled, the code stays disabled and does not open the door.
    node = FakeNode(5, codes={3: "1111"}, statuses={3: 2})
    async with alone(mosquitto, tmp_path, [node]) as (driver, _, _e):
        [read] = await driver.read_slots("lock5", [3])
        assert (read.state, read.pin, read.reason, read.disabled) == (
            SlotState.UNREADABLE, None, "disabled", True)
        with pytest.raises(RetryLater):
            await driver.write_code("lock5", CodeWrite(slot=3, pin="4711", name="x"))
        assert (node.codes[3], node.statuses[3]) == ("4711", 2)


# -- 3. writeValue: Fail is a refusal or a NoAck -----------------------------------------------


async def test_a_lock_that_does_not_acknowledge_is_offline_not_refusing(
        mosquitto: Mosquitto, tmp_path: Path) -> None:
    node = FakeNode(5)
    async with engine(mosquitto, tmp_path, [node]) as (h, gw):
        device = h.device_id("lock5", driver="zwave")
        await h.until(lambda: h.engine.settled(), what="first full read")
        node.reachable = False  # the gateway still thinks it Alive
        code = await h.engine.create_code(device, CodeRequest(name="Guest", code="8642"))
        await h.until(lambda: h.engine.devices[device].availability is Availability.OFFLINE,
                      what="offline after the NoAck")
        assert not h.code(code.access_code_id).errors
        await gw.set_status(5, "Alive")
        await h.until(lambda: status(h, code.access_code_id) is AccessCodeStatus.SET,
                      what="set once the lock answers")
        assert node.applied == [(1, "8642")]
        assert not h.code(code.access_code_id).has_error(
            AccessCodeErrorCode.FAILED_TO_SET_ON_DEVICE)


async def test_one_lost_acknowledgement_is_retried(mosquitto: Mosquitto,
                                                   tmp_path: Path) -> None:
    node = FakeNode(5)
    async with engine(mosquitto, tmp_path, [node]) as (h, _):
        device = h.device_id("lock5", driver="zwave")
        await h.until(lambda: h.engine.settled(), what="first full read")
        node.refuse.append("noack")
        code = await h.engine.create_code(device, CodeRequest(name="Guest", code="8642"))
        # The engine probes the offline lock after a backoff (on its fake clock).
        await h.until(lambda: status(h, code.access_code_id) is AccessCodeStatus.SET,
                      what="set after the retry", advance=1.0)
        assert node.applied == [(1, "8642")]
        # Never reported as refused (not even until the lock came back).
        assert not [e for e in h.events_of(EventType.ACCESS_CODE_FAILED_TO_SET_ON_DEVICE)
                    if e.access_code_id == code.access_code_id]


async def test_a_supervised_refusal_of_a_pin_held_elsewhere_is_a_duplicate(
        mosquitto: Mosquitto, tmp_path: Path) -> None:
    node = FakeNode(5, codes={4: "1357"})
    async with alone(mosquitto, tmp_path, [node]) as (driver, _, _e):
        [read] = await driver.read_slots("lock5", [4])
        assert (read.state, read.pin) == (SlotState.KNOWN, "1357")
        with pytest.raises(CommandRejected) as raised:
            await driver.write_code("lock5", CodeWrite(slot=1, pin="1357", name="x"))
        assert raised.value.reason is RejectReason.DUPLICATE_PIN
        assert node.codes == {4: "1357"}


# -- 4. a duplicate notice without parameters --------------------------------------------------


@pytest.mark.parametrize("payload_type", ["time_value", "raw"])
async def test_a_duplicate_notice_without_parameters_is_a_duplicate(
        mosquitto: Mosquitto, tmp_path: Path, payload_type: str) -> None:
    node = FakeNode(5, masks=True, silent_duplicates=True, duplicate_params=False,
                    codes={1: "5150"})
    async with engine(mosquitto, tmp_path, [node], fake={"payload_type": payload_type},
                      locks=[{"node_id": 5, "id": "lock5", "masks_pins": True}]) as (h, _):
        device = h.device_id("lock5", driver="zwave")
        await h.until(lambda: any(c.slot == 1 for c in h.engine.codes_of(device)),
                      what="the occupied slot imported")
        code = await h.engine.create_code(device, CodeRequest(name="Guest", code="5150"))
        await h.until(lambda: h.code(code.access_code_id).has_error(
            AccessCodeErrorCode.DUPLICATE_CODE_ON_DEVICE), what="duplicate error")
        assert node.codes == {1: "5150"}


# -- 5. defaults and topics --------------------------------------------------------------------


async def test_the_gateway_default_name_works_without_configuring_it(mosquitto: Mosquitto,
                                                                     tmp_path: Path) -> None:
    async with engine(mosquitto, tmp_path, [FakeNode(5)], gateway=None) as (h, _):
        device = h.device_id("lock5", driver="zwave")
        code = await h.engine.create_code(device, CodeRequest(name="Guest", code="1470"))
        await h.until(lambda: status(h, code.access_code_id) is AccessCodeStatus.SET,
                      what="set")


@pytest.mark.parametrize(("fake", "driver"), [
    ({}, {}),
    ({"node_names": False}, {"node_names": False}),
    ({"ignore_loc": True}, {"ignore_location": True}),
    ({"gateway_type": "named"}, {"topic_type": "named"}),
    ({"payload_type": "valueid", "include_node_info": True}, {}),
    ({"payload_type": "raw", "retain": False}, {}),
], ids=["default", "node-ids", "no-location", "named", "valueid-payloads", "raw-payloads"])
async def test_named_nodes_in_every_layout(mosquitto: Mosquitto, tmp_path: Path,
                                           fake: dict[str, Any], driver: dict[str, Any]) -> None:
    node = FakeNode(5, name="Front Door", loc="Main House")
    async with engine(mosquitto, tmp_path, [node], fake=fake, **driver) as (h, gw):
        device = h.device_id("lock5", driver="zwave")
        assert h.engine.devices[device].display_name == "Front Door"
        code = await h.engine.create_code(device, CodeRequest(name="Guest", code="4821"))
        await h.until(lambda: status(h, code.access_code_id) is AccessCodeStatus.SET,
                      what="set")
        await gw.keypad_unlock(5, 1)
        await h.until(lambda: bool(h.events_of(EventType.LOCK_UNLOCKED, device)),
                      what="the keypad unlock seen on the layout's topic")
        await gw.keypad_set(5, 1, "9999")
        await h.until(lambda: node.applied_sets(1) == ["4821", "4821"],
                      what="the keypad edit put back")
        await gw.set_status(5, "Dead")
        await h.until(lambda: h.engine.devices[device].availability is Availability.OFFLINE,
                      what="offline from the layout's status topic")


async def test_a_configured_topic_beside_derived_ones_is_handled_once(
        mosquitto: Mosquitto, tmp_path: Path) -> None:
    nodes = [FakeNode(5), FakeNode(6, name="Back")]
    locks = [{"node_id": 5, "id": "lock5", "topic": "nodeID_5"}, {"node_id": 6, "id": "lock6"}]
    async with alone(mosquitto, tmp_path, nodes, locks=locks) as (driver, gw, events):
        await gw.keypad_unlock(5, 1)
        await gw.keypad_unlock(6, 2)
        await gw.keypad_unlock(5, 3)  # in order after the first two
        for _ in range(200):
            await driver._pump.drain()
            if any(e.slot == 3 for e in events):
                break
            await asyncio.sleep(0.01)
        used = [(e.external_id, e.slot) for e in events
                if e.kind is DriverEventKind.KEYPAD_USED]
        assert used == [("lock5", 1), ("lock6", 2), ("lock5", 3)]


# -- 6. boot phase, unsupervised writes ---------------------------------------------------------


async def test_a_gateway_still_booting_is_waited_for(mosquitto: Mosquitto,
                                                     tmp_path: Path) -> None:
    # Every API answers "Z-Wave client not connected" until the Z-Wave driver is ready.
    async with engine(mosquitto, tmp_path, [FakeNode(5, slot_count=8)],
                      fake={"boot_s": 0.5}) as (h, _):
        device = h.device_id("lock5", driver="zwave")
        assert h.engine.devices[device].info.capabilities.slot_count == 8


async def test_nodes_are_learned_once_a_slow_gateway_is_ready(mosquitto: Mosquitto,
                                                              tmp_path: Path) -> None:
    node = FakeNode(5, slot_count=8, codes={8: "8080"})
    async with engine(mosquitto, tmp_path, [node], fake={"boot_s": 1.0},
                      startup_wait_s=0.2) as (h, _):
        device = h.device_id("lock5", driver="zwave")
        await h.until(lambda: h.engine.devices[device].info.capabilities.slot_count == 8,
                      what="the slot count learned after the boot")
        # Reads failed while the gateway booted and back off on the engine's fake clock.
        await h.until(lambda: any(c.slot == 8 for c in h.engine.codes_of(device)),
                      what="slot 8 read", advance=1.0)
        code = await h.engine.create_code(device, CodeRequest(name="Guest", code="1470"))
        await h.until(lambda: status(h, code.access_code_id) is AccessCodeStatus.SET,
                      what="set")


async def test_unsupervised_lock_set_verify_clear_and_keypad_edit(mosquitto: Mosquitto,
                                                                  tmp_path: Path) -> None:
    # Unsupervised writes are published at once (whatever the lock did), then both values
    # after the verification read; keypad programming publishes only the notification.
    node = FakeNode(5, supervised=False)
    async with engine(mosquitto, tmp_path, [node]) as (h, gw):
        device = h.device_id("lock5", driver="zwave")
        a = await h.engine.create_code(device, CodeRequest(name="a", code="1470"))
        b = await h.engine.create_code(device, CodeRequest(name="b", code="2581"))
        await h.until(lambda: all_set(h, [a, b]), what="both set")
        await h.engine.delete_code(a.access_code_id)
        await h.until(lambda: a.access_code_id not in h.engine.codes, what="deleted")
        assert node.codes == {2: "2581"}
        await gw.keypad_set(5, 2, "9999")
        await h.until(lambda: node.applied_sets(2) == ["2581", "2581"],
                      what="the keypad edit put back")
        events = [e for e in h.events if e.device_id == device
                  and e.event_type is EventType.ACCESS_CODE_FAILED_TO_SET_ON_DEVICE]
        assert events == []


async def test_devices_changed_reports_a_missing_slot(mosquitto: Mosquitto,
                                                      tmp_path: Path) -> None:
    node = FakeNode(5, slot_count=3, unavailable_slots={3})
    async with alone(mosquitto, tmp_path, [node]) as (driver, _, events):
        reads = await driver.read_slots("lock5", [3])
        assert [r.state for r in reads] == [SlotState.EMPTY]
        [info] = driver.devices()
        assert info.capabilities.reserved_slots == frozenset({3})
        await driver._pump.drain()
        assert [e.kind for e in events if e.kind is DriverEventKind.DEVICES_CHANGED] == [
            DriverEventKind.DEVICES_CHANGED]


async def test_what_the_gateway_said_is_remembered_for_the_next_start(
        mosquitto: Mosquitto, tmp_path: Path) -> None:
    # Slot count, slots not available, name and location serve a start while the gateway boots.
    node = FakeNode(5, slot_count=6, name="Front Door", loc="Main House", unavailable_slots={4})
    async with alone(mosquitto, tmp_path, [node]) as (driver, _, _e):
        await driver.read_slots("lock5", [4])
    again = make_zui(mosquitto, FakeClock(), tmp_path, unique("zw-none"), "home",
                     lock_config([node]))
    [info] = again.devices()
    assert (info.display_name, info.capabilities.slot_count) == ("Front Door", 6)
    assert info.capabilities.reserved_slots == frozenset({4})
    assert again._locks["lock5"].topic == "Main_House/Front_Door"
