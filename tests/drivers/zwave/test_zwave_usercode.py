"""The User Code CC rules both Z-Wave drivers share (drivers/zwave_usercode.py), from reports of
the real zwave-js stack (tests/zwave/recorded: zwave-js 15.29, zwave-js-server 3.10.2) and the
payload shapes Z-Wave JS UI's `sendCommand` `get` returns (tests/fakes/zwavejs_ui.py)."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import pytest

from bridge.driver import CommandRejected, RejectReason, SlotRead, SlotState
from drivers import zwave_usercode as usercode
from drivers.zwave import mapping as zwave
from drivers.zwave_usercode import AccessControlEvent, SlotMissing, Unreadable, UserIdStatus
from drivers.zwavejs_mqtt import mapping as zwavejs_ui
from tests.paths import TESTS

RECORDED = TESTS / "zwave" / "recorded"
KNOWN, EMPTY, UNREADABLE = SlotState.KNOWN, SlotState.EMPTY, SlotState.UNREADABLE
BUFFER_0155 = {"type": "Buffer", "data": [48, 49, 53, 53]}

# (userIdStatus, userCode as it comes on the wire) -> (state, pin, name)
REPORTS: list[tuple[Any, Any, SlotState, str | None, str | None]] = [
    # Recorded from the real stack: node 2, slot 3 holds "4711"; its empty slots.
    (1, "4711", KNOWN, "4711", None),
    (0, "", EMPTY, None, None),
    (1, "0155", KNOWN, "0155", None),  # a string keeps its leading zero
    # Disabled (status 2): the code does not open the door. Neither a working code nor empty.
    (2, "0155", UNREADABLE, None, "disabled"),
    (2, "", UNREADABLE, None, "disabled"),
    # Messaging, passage mode: not a plain enabled code either.
    (3, "1234", UNREADABLE, None, "not enabled"),
    (4, "1234", UNREADABLE, None, "not enabled"),
    # Masked (Z-Wave JS UI fake `masks`: "*" per digit; Schlage: ten of them).
    (1, "****", UNREADABLE, None, "masked"),
    (1, "**********", UNREADABLE, None, "masked"),
    (1, "12a4", UNREADABLE, None, "masked"),
    (1, "\u0661\u0662\u0663\u0664", UNREADABLE, None, "masked"),  # digits, but not ASCII
    # zwave-js sends a Buffer only when the bytes are not printable ASCII: never a PIN.
    (1, BUFFER_0155, UNREADABLE, None, "binary"),
    (1, {"type": "Buffer", "data": [0, 0, 0, 0]}, UNREADABLE, None, "binary"),
    (1, {"type": "Buffer", "data": [0xFF, 0x31]}, UNREADABLE, None, "binary"),
    # Occupied without a code in the report.
    (1, "", UNREADABLE, None, "not reported"),
    (1, None, UNREADABLE, None, "not reported"),
]


@pytest.mark.parametrize(("status", "code", "state", "pin", "name"), REPORTS)
def test_one_decision_for_every_report(status: Any, code: Any, state: SlotState,
                                       pin: str | None, name: str | None) -> None:
    expected = SlotRead(slot=3, state=state, pin=pin, reason=name, disabled=name == "disabled")
    assert usercode.read_slot(3, status, usercode.decode_code(code)) == expected
    # Both drivers read a report the same way: zwave-js-server's `get` result directly, and
    # Z-Wave JS UI's `sendCommand` `get` answer.
    report = {"userIdStatus": status, "userCode": code}
    assert zwave.slot_read(3, zwave.report_value(report)) == expected
    assert zwavejs_ui.read_from_get(3, report) == expected


@pytest.mark.parametrize("code", ["", None, "4711"])
def test_status_not_available_means_the_slot_does_not_exist(code: Any) -> None:
    # Not "occupied, unreadable": a slot the lock lacks (the Z-Wave JS UI fake reports 254 "").
    report = {"userIdStatus": 254, "userCode": code}
    for read in (lambda: zwave.slot_read(9, zwave.report_value(report)),
                 lambda: zwavejs_ui.read_from_get(9, report)):
        with pytest.raises(SlotMissing) as missing:
            read()
        assert missing.value.slot == 9
    assert not usercode.is_occupied(UserIdStatus.NOT_AVAILABLE)
    assert not usercode.is_occupied(UserIdStatus.AVAILABLE)
    assert usercode.is_occupied(UserIdStatus.DISABLED)


def test_the_fake_gateways_reports_read_alike_in_both_drivers() -> None:
    # The User Code Reports the Z-Wave JS UI fake builds (FakeNode.report: a masked lock, a
    # disabled slot, a slot the lock lacks), as zwave-js hands them to either driver.
    pytest.importorskip("aiomqtt")
    from tests.fakes.zwavejs_ui import FakeNode

    plain = FakeNode(5, slot_count=6, codes={1: "4711", 2: "0155"}, statuses={2: 2},
                     unavailable_slots={4})
    masked = FakeNode(6, slot_count=6, codes={1: "4711"}, masks=True)
    expected = [
        (plain, 1, SlotRead(1, KNOWN, pin="4711")),
        (plain, 2, SlotRead(2, UNREADABLE, reason="disabled", disabled=True)),
        (plain, 3, SlotRead(3, EMPTY)),
        (masked, 1, SlotRead(1, UNREADABLE, reason="masked")),
    ]
    for node, slot, read in expected:
        status, code = node.report(slot)
        report = {"userIdStatus": status, "userCode": code}
        assert zwavejs_ui.read_from_get(slot, report) == read
        assert zwave.slot_read(slot, zwave.report_value(report)) == read
    for slot in (4, 7):  # unavailable, and beyond the users count
        status, code = plain.report(slot)
        with pytest.raises(SlotMissing):
            zwavejs_ui.read_from_get(slot, {"userIdStatus": status, "userCode": code})


def test_a_slot_zwave_js_knows_nothing_of_is_unreadable() -> None:
    assert usercode.read_slot(3, None, None) == SlotRead(3, UNREADABLE, reason="not reported")


def test_the_recorded_locks_read_as_the_lock_holds_them() -> None:
    state = json.loads((RECORDED / "node-2.json").read_text())
    parts: dict[int, dict[str, Any]] = {}
    for value in state["values"]:
        if value.get("commandClass") == usercode.USER_CODE_CC and isinstance(
                value.get("propertyKey"), int):
            parts.setdefault(value["propertyKey"], {})[value["property"]] = value.get("value")
    reads = {slot: usercode.read_slot(slot, p.get("userIdStatus"),
                                      usercode.decode_code(p.get("userCode")))
             for slot, p in parts.items()}
    assert sorted(reads) == list(range(1, 11))
    assert reads[3] == SlotRead(3, KNOWN, pin="4711")
    # The others were never read (zwave-js does not query every code at the interview): what
    # they hold is not known, so they are not taken as empty.
    assert {r for s, r in reads.items() if s != 3} == {
        SlotRead(s, UNREADABLE, reason="not reported") for s in range(1, 11) if s != 3}


@pytest.mark.parametrize(("raw", "decoded"), [
    ("0155", "0155"),
    (b"\x00\x00", b"\x00\x00"),
    (BUFFER_0155, b"0155"),  # as zwave-js-server and the gateway serialise a Buffer
    ([48, 49], b"01"),  # a bare list of byte values
    ({"type": "Buffer", "data": [256]}, None),
    ({"data": [48]}, None),
    ([True, 1], None),
    (1234, None),
    (None, None),
])
def test_pin_decoding(raw: Any, decoded: str | bytes | None) -> None:
    assert usercode.decode_code(raw) == decoded


@pytest.mark.parametrize(("read", "pin", "refused", "done"), [
    (SlotRead(3, KNOWN, pin="4711"), "4711", False, True),
    (SlotRead(3, KNOWN, pin="4711"), "4711", True, True),
    (SlotRead(3, KNOWN, pin="4712"), "4711", False, False),
    (SlotRead(3, EMPTY), "4711", False, False),
    # A lock that hides its codes: the code we wrote is taken as there, unless it said Fail.
    (SlotRead(3, UNREADABLE, reason="masked"), "4711", False, True),
    (SlotRead(3, UNREADABLE, reason="binary"), "4711", False, True),
    (SlotRead(3, UNREADABLE, reason="masked"), "4711", True, False),
    # A disabled code is never our working code.
    (SlotRead(3, UNREADABLE, reason="disabled", disabled=True), "4711", False, False),
    (SlotRead(3, UNREADABLE, reason="not enabled"), "4711", False, False),
    # A clear is done when the slot is empty, and only then.
    (SlotRead(3, EMPTY), None, False, True),
    (SlotRead(3, EMPTY), None, True, True),
    (SlotRead(3, UNREADABLE, reason="disabled", disabled=True), None, False, False),
    (SlotRead(3, KNOWN, pin="4711"), None, False, False),
])
def test_what_a_read_back_confirms(read: SlotRead, pin: str | None, refused: bool,
                                   done: bool) -> None:
    assert usercode.holds(read, pin, refused=refused) is done


@pytest.mark.parametrize("slot", [0, -1, True, False, None, "3", 3.0])
def test_no_user_id_below_1_reaches_the_wire(slot: Any) -> None:
    # User Code clear of user id 0 clears every code on the lock.
    with pytest.raises(CommandRejected) as refused:
        usercode.user_id(slot)
    assert refused.value.reason is RejectReason.SLOT_OUT_OF_RANGE


@pytest.mark.parametrize("slot", [1, 30, 255, 300])
def test_real_user_ids_pass(slot: int) -> None:
    assert usercode.user_id(slot) == slot


def test_recorded_access_control_events_and_their_labels() -> None:
    events = json.loads((RECORDED / "events.json").read_text())["events"]
    seen = {(e["args"]["event"], e["args"]["eventLabel"]) for e in events
            if e["event"] == "notification" and e["args"]["type"] == usercode.ACCESS_CONTROL}
    assert seen == {(int(event), label) for event, label in usercode.EVENT_LABELS.items()
                    if event in (AccessControlEvent.CODE_ADDED, AccessControlEvent.KEYPAD_UNLOCK,
                                 AccessControlEvent.CODE_DELETED,
                                 AccessControlEvent.CODE_DUPLICATE)}
    # Z-Wave JS UI names its notification topics after the same labels.
    note = zwavejs_ui.notification(
        ["113", "0", "Access_Control", "New_user_code_not_added_due_to_duplicate_code"],
        {"time": 1, "value": {"userId": 4}})
    assert note is not None and (note.kind, note.slot) == ("duplicate", 4)


@pytest.mark.parametrize(("notices", "slot", "since", "noticed"), [
    ({}, 3, 0, False),
    ({3: 1}, 3, 0, True),
    ({3: 1}, 3, 1, False),  # came before the write was sent
    ({4: 2}, 3, 0, False),  # about another slot
    ({0: 2}, 3, 0, True),  # names no slot: about the write under way
    ({0: 1, 3: 5}, 3, 2, True),
])
def test_which_duplicate_notices_count(notices: dict[int, int], slot: int, since: int,
                                       noticed: bool) -> None:
    assert usercode.noticed_duplicate(notices, slot, since) is noticed


async def test_the_duplicate_wait_ends_with_the_notice() -> None:
    notices: dict[int, int] = {}
    seen = asyncio.Event()

    async def lock_says_duplicate() -> None:
        await asyncio.sleep(0)
        notices[0] = 1
        seen.set()

    task = asyncio.create_task(lock_says_duplicate())
    assert await usercode.wait_for_duplicate(
        lambda: usercode.noticed_duplicate(notices, 3, 0), seen, timeout_s=5)
    await task
    # No notice: the wait ends after its bound, and says so.
    assert not await usercode.wait_for_duplicate(
        lambda: usercode.noticed_duplicate(notices, 3, 1), seen, timeout_s=0.01)


def test_unreadable_reasons_are_the_reads_names() -> None:
    assert {r.value for r in Unreadable} == {"disabled", "masked", "binary", "not reported",
                                             "not enabled"}
