"""Z-Wave locks end to end: engine -> driver -> real Mosquitto -> fake Z-Wave JS UI gateway."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

from bridge.clock import FakeClock
from bridge.driver import Availability
from bridge.engine import CodeRequest
from bridge.model import (
    AccessCodeErrorCode,
    AccessCodeStatus,
    AccessCodeWarningCode,
    DeviceErrorCode,
    EventType,
)
from tests.conftest import START
from tests.fakes.zwavejs_ui import FakeNode, FakeZwaveJsUI
from tests.harness import Harness, start_engine
from tests.mqtt_env import make_zui, running_zui, unique

if TYPE_CHECKING:
    from tests.mosquitto import Mosquitto

pytest_plugins = ["tests.mosquitto"]


@asynccontextmanager
async def setup(broker: Mosquitto, tmp_path: Path, nodes: list[FakeNode],
                locks: list[dict[str, Any]] | None = None, echo_origin: bool = True,
                **driver: object) -> AsyncIterator[tuple[Harness, FakeZwaveJsUI]]:
    prefix = unique("zw-e2e")
    locks = locks or [{"node_id": n.node_id, "id": f"lock{n.node_id}"} for n in nodes]
    async with running_zui(broker, prefix, "home", nodes, echo_origin=echo_origin) as fake:
        clock = FakeClock(START)
        driver_ = make_zui(broker, clock, tmp_path, prefix, "home", locks, **driver)
        h = await start_engine(tmp_path, {"zwave": driver_}, clock=clock)
        try:
            yield h, fake
        finally:
            await h.stop()


def status(h: Harness, code_id: str) -> AccessCodeStatus:
    return h.code(code_id).status


async def test_codes_are_set_verified_and_cleared_one_slot_at_a_time(
        mosquitto: Mosquitto, tmp_path: Path) -> None:
    async with setup(mosquitto, tmp_path, [FakeNode(5), FakeNode(7)]) as (h, fake):
        five, seven = h.device_id("lock5", driver="zwave"), h.device_id("lock7", driver="zwave")
        info = h.engine.devices[five].info
        # Facts from getNodes: maker, product, slot count, PIN lengths.
        assert (info.manufacturer, info.model) == ("Kwikset", "916")
        assert info.capabilities.first_slot == 1 and info.capabilities.slot_count == 10
        assert info.constraints.max_length == 10
        a = await h.engine.create_code(five, CodeRequest(name="Staff", code="0155"))
        b = await h.engine.create_code(five, CodeRequest(name="Guest", code="24680"))
        c = await h.engine.create_code(seven, CodeRequest(name="Guest", code="1357"))
        await h.until(lambda: all(status(h, x.access_code_id) is AccessCodeStatus.SET
                                  for x in (a, b, c)), what="all set")
        # Z-Wave user codes start at slot 1.
        assert fake.node(5).codes == {1: "0155", 2: "24680"}
        assert fake.node(7).codes == {1: "1357"}
        await h.engine.delete_code(a.access_code_id)
        await h.until(lambda: a.access_code_id not in h.engine.codes, what="deleted")
        assert fake.node(5).codes == {2: "24680"}
        assert fake.node(5).applied == [(1, "0155"), (2, "24680"), (1, None)]
        # Never the CC's clear-everything.
        assert fake.clears_without_slot() == 0 and fake.node(5).wiped == 0
        assert not any(api == "sendCommand" and args[1] == "clear" for api, args in fake.calls)


async def test_keypad_edit_is_detected_and_put_back(mosquitto: Mosquitto,
                                                   tmp_path: Path) -> None:
    async with setup(mosquitto, tmp_path, [FakeNode(5)]) as (h, fake):
        device = h.device_id("lock5", driver="zwave")
        code = await h.engine.create_code(device, CodeRequest(name="Staff", code="4821"))
        await h.until(lambda: status(h, code.access_code_id) is AccessCodeStatus.SET,
                      what="set")
        await fake.keypad_set(5, 1, "9999")
        await h.until(lambda: fake.node(5).codes.get(1) == "4821"
                      and status(h, code.access_code_id) is AccessCodeStatus.SET,
                      what="the code put back")
        assert fake.node(5).applied_sets(1) == ["4821", "4821"]
        warnings = [w.code for w in h.code(code.access_code_id).warnings]
        assert AccessCodeWarningCode.CODE_MODIFIED_EXTERNAL_TO_SEAM.value in warnings


async def test_keypad_unlock_becomes_a_lock_unlocked_event(mosquitto: Mosquitto,
                                                          tmp_path: Path) -> None:
    async with setup(mosquitto, tmp_path, [FakeNode(5)]) as (h, fake):
        device = h.device_id("lock5", driver="zwave")
        code = await h.engine.create_code(device, CodeRequest(name="Staff", code="4821"))
        await h.until(lambda: status(h, code.access_code_id) is AccessCodeStatus.SET,
                      what="set")
        await fake.keypad_unlock(5, 1)
        await h.until(lambda: bool(h.events_of(EventType.LOCK_UNLOCKED, device)),
                      what="lock.unlocked")
        [event] = h.events_of(EventType.LOCK_UNLOCKED, device)
        assert event.access_code_id == code.access_code_id and event.data["slot"] == 1


async def test_masked_codes_are_unreadable_not_empty(mosquitto: Mosquitto,
                                                    tmp_path: Path) -> None:
    node = FakeNode(5, masks=True, codes={1: "5150"})
    async with setup(mosquitto, tmp_path, [node],
                     locks=[{"node_id": 5, "id": "lock5", "masks_pins": True}]) as (h, _fake):
        device = h.device_id("lock5", driver="zwave")
        await h.until(lambda: any(c.slot == 1 for c in h.engine.codes_of(device)),
                      what="the occupied slot imported")
        code = await h.engine.create_code(device, CodeRequest(name="Guest", code="2468"))
        await h.until(lambda: status(h, code.access_code_id) is AccessCodeStatus.SET,
                      what="set")
        assert node.codes == {1: "5150", 2: "2468"}
        assert node.applied == [(2, "2468")]


async def test_refusal_is_reported(mosquitto: Mosquitto, tmp_path: Path) -> None:
    # Under Supervision a refusal is a bare Fail ({status: 2}, no reason: the text given to
    # `refuse` never reaches the wire); the node stays alive and the slot reads back empty.
    node = FakeNode(5)
    node.refuse.append("Unable to write value: Fail")
    async with setup(mosquitto, tmp_path, [node]) as (h, _):
        device = h.device_id("lock5", driver="zwave")
        code = await h.engine.create_code(device, CodeRequest(name="Guest", code="1357"))
        await h.until(lambda: h.code(code.access_code_id).has_error(
            AccessCodeErrorCode.FAILED_TO_SET_ON_DEVICE), what="failed_to_set_on_device")
        assert node.applied == []
        assert not h.code(code.access_code_id).has_error(
            AccessCodeErrorCode.DUPLICATE_CODE_ON_DEVICE)


async def test_a_duplicate_refused_only_by_notification_is_reported(
        mosquitto: Mosquitto, tmp_path: Path) -> None:
    # The lock masks PINs, so lockbridge cannot see that slot 1 already holds 5150; the lock
    # takes the write, keeps the slot empty, and sends "not added due to duplicate code".
    node = FakeNode(5, masks=True, silent_duplicates=True, codes={1: "5150"})
    async with setup(mosquitto, tmp_path, [node],
                     locks=[{"node_id": 5, "id": "lock5", "masks_pins": True}]) as (h, _):
        device = h.device_id("lock5", driver="zwave")
        await h.until(lambda: any(c.slot == 1 for c in h.engine.codes_of(device)),
                      what="the occupied slot imported")
        code = await h.engine.create_code(device, CodeRequest(name="Guest", code="5150"))
        await h.until(lambda: h.code(code.access_code_id).has_error(
            AccessCodeErrorCode.DUPLICATE_CODE_ON_DEVICE), what="duplicate error")
        assert node.codes == {1: "5150"}
        assert "already in another slot" in str(h.code(code.access_code_id).errors)


async def test_dead_node_waits_then_converges(mosquitto: Mosquitto, tmp_path: Path) -> None:
    async with setup(mosquitto, tmp_path, [FakeNode(5)]) as (h, fake):
        device = h.device_id("lock5", driver="zwave")
        await h.until(lambda: h.engine.settled(), what="first read done")
        await fake.set_status(5, "Dead")
        await h.until(lambda: h.engine.devices[device].availability is Availability.OFFLINE,
                      what="offline")
        assert any(e.code == DeviceErrorCode.DEVICE_OFFLINE
                   for e in h.engine.devices[device].errors)
        code = await h.engine.create_code(device, CodeRequest(name="Guest", code="8642"))
        await h.until(lambda: True)
        assert fake.node(5).applied == []
        await fake.set_status(5, "Alive")
        await h.until(lambda: status(h, code.access_code_id) is AccessCodeStatus.SET,
                      what="set once alive")
        assert fake.node(5).applied == [(1, "8642")]


async def test_gateway_without_origin_echo_still_matches_answers(mosquitto: Mosquitto,
                                                                tmp_path: Path) -> None:
    async with setup(mosquitto, tmp_path, [FakeNode(5), FakeNode(6)],
                     echo_origin=False) as (h, fake):
        codes = [await h.engine.create_code(h.device_id(f"lock{n}", driver="zwave"),
                                            CodeRequest(name="x", code=pin))
                 for n, pin in ((5, "1111"), (6, "2222"), (5, "3333"))]
        await h.until(lambda: all(status(h, c.access_code_id) is AccessCodeStatus.SET
                                  for c in codes), what="all set")
        assert fake.node(5).codes == {1: "1111", 2: "3333"} and fake.node(6).codes == {1: "2222"}
