"""Z-Wave wire-to-domain rules, fed with payloads recorded from the real zwave-js stack.

`tests/zwave/recorded/` holds node state dumps (`node.get_state`) and events recorded from
zwave-js 15.29 / zwave-js-server 3.10.2 with our mock locks: node 2 a keypad lock with 10 slots
(code "4711" in slot 3), node 3 one with 20 slots and the Schedule Entry Lock CC.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, cast

import pytest

from bridge.driver import (
    Availability,
    CommandRejected,
    FixConfig,
    LocalWindow,
    LockCapabilities,
    PinConstraints,
    RejectReason,
    RetryLater,
    SlotRead,
    SlotState,
)
from drivers.registry import config_model
from drivers.zwave import mapping
from drivers.zwave.config import Config
from drivers.zwave.mapping import (
    LockSignal,
    NodeSettings,
    NodeState,
    NotificationArgs,
    SignalKind,
    SlotValue,
    ValueArgs,
)
from drivers.zwave_usercode import SlotMissing
from tests.paths import TESTS

RECORDED = TESTS / "zwave" / "recorded"
HOME = 0x7E570001


def recorded_node(node_id: int) -> NodeState:
    return cast(NodeState, json.loads((RECORDED / f"node-{node_id}.json").read_text()))


def recorded_events() -> list[dict[str, Any]]:
    events: list[dict[str, Any]] = json.loads((RECORDED / "events.json").read_text())["events"]
    return events


# -- discovery ---------------------------------------------------------------------------

def test_recorded_nodes_are_locks_with_their_slots_and_pin_rules() -> None:
    plain = mapping.snapshot(recorded_node(2))
    scheduled = mapping.snapshot(recorded_node(3))
    assert plain is not None and scheduled is not None
    assert (plain.node_id, plain.slot_count, plain.min_length, plain.max_length) == (2, 10, 4, 10)
    assert scheduled.slot_count == 20
    assert plain.slots[3] == SlotValue(status=1, code="4711")
    assert not plain.slots[4].occupied
    assert plain.supports(mapping.CC_USER_CODE) and not plain.supports(
        mapping.CC_SCHEDULE_ENTRY_LOCK)
    assert scheduled.cc_versions[mapping.CC_SCHEDULE_ENTRY_LOCK] == 3
    assert plain.manufacturer == "0x0090"


def test_a_node_without_user_code_is_no_lock() -> None:
    state = recorded_node(2)
    state["endpoints"] = [{"index": 0, "commandClasses": [{"id": 0x25, "version": 1}]}]
    assert not mapping.is_lock(state)
    assert mapping.snapshot(state) is None
    assert not mapping.is_lock(cast(NodeState, {**recorded_node(2), "isControllerNode": True}))


def test_a_lock_still_interviewed_without_code_values_is_not_described_yet() -> None:
    state = recorded_node(2)
    state["values"] = [v for v in state["values"] if v.get("commandClass") != 0x63]
    assert mapping.is_lock(state)
    assert mapping.snapshot(state) is None


def test_the_engine_waits_for_a_write_as_long_as_its_exchanges_may_take() -> None:
    """A write is a schedule, the Set, the wait a lock answering Supervision Working asks for
    (bounded by one exchange's limit) and the read back: the engine's timeout on the command
    must cover all four, or a slow lock's write is abandoned and sent again."""
    snap = mapping.snapshot(recorded_node(2))
    assert snap is not None
    info = mapping.device_info(snap, HOME, NodeSettings(), None, exchange_timeout_s=25.0)
    stated = info.capabilities.command_timeout_s
    assert stated is not None and stated > 4 * 25.0
    # Without the driver's limit the engine's own applies.
    assert mapping.device_info(snap, HOME, NodeSettings(), None).capabilities \
        .command_timeout_s is None


def test_device_info_from_the_recorded_lock() -> None:
    snap = mapping.snapshot(recorded_node(2))
    assert snap is not None
    info = mapping.device_info(snap, HOME, NodeSettings(name="Front door", reserved_slots=(1, 99),
                                                        fixed_length=6), None)
    assert info.external_id == "7e570001-2"
    assert info.display_name == "Front door"
    assert info.hub_id == "7e570001"
    caps = info.capabilities
    assert (caps.first_slot, caps.slot_count) == (1, 10)
    assert caps.reserved_slots == frozenset({1})  # 99 is not a slot of this lock
    assert caps.confirmation_window_s == 0  # every write is read back before it is reported
    assert not caps.native_schedules
    assert info.constraints.fixed_length == 6
    assert info.constraints.allowed_lengths() == range(6, 7)


@pytest.mark.parametrize(("zone", "year_day_slots", "enabled", "native"), [
    ("America/Sao_Paulo", 1, True, True),
    # No zone in the driver's settings: the engine's rule may still find one (the device's,
    # the property's); with none at all it keeps the times itself.
    (None, 1, True, True),
    ("America/Sao_Paulo", 0, True, False),  # no year-day slots
    ("America/Sao_Paulo", None, True, False),  # the lock never said
    ("America/Sao_Paulo", 1, False, False),  # turned off in the config
])
def test_native_schedules_need_the_cc_and_a_slot(zone: str | None, year_day_slots: int | None,
                                                enabled: bool, native: bool) -> None:
    snap = mapping.snapshot(recorded_node(3))
    assert snap is not None
    info = mapping.device_info(snap, HOME, NodeSettings(time_zone=zone, native_schedules=enabled),
                               year_day_slots)
    assert info.capabilities.native_schedules is native
    assert info.time_zone == zone


def test_a_plain_lock_never_gets_native_schedules() -> None:
    snap = mapping.snapshot(recorded_node(2))
    assert snap is not None
    info = mapping.device_info(snap, HOME, NodeSettings(time_zone="UTC"), 5)
    assert not info.capabilities.native_schedules


def test_fixed_length_outside_the_locks_limits_is_ignored() -> None:
    snap = mapping.snapshot(recorded_node(2))
    assert snap is not None
    info = mapping.device_info(snap, HOME, NodeSettings(fixed_length=3), None)
    assert info.constraints.fixed_length is None


def test_pin_lengths_default_when_metadata_is_silent() -> None:
    values: list[mapping.ValueState] = [
        {"commandClass": 0x63, "endpoint": 0, "property": "userCode", "propertyKey": 1,
         "metadata": {"type": "string"}},
    ]
    assert mapping.pin_lengths(values) == (4, 10)
    values[0]["metadata"] = {"type": "string", "minLength": 6, "maxLength": 8}
    assert mapping.pin_lengths(values) == (6, 8)


@pytest.mark.parametrize(("connected", "present", "status", "ready", "expected"), [
    (False, True, mapping.NODE_ALIVE, True, Availability.HUB_DISCONNECTED),
    (True, False, None, None, Availability.REMOVED),
    (True, True, mapping.NODE_DEAD, True, Availability.OFFLINE),
    (True, True, mapping.NODE_ASLEEP, True, Availability.OFFLINE),
    (True, True, mapping.NODE_ALIVE, False, Availability.OFFLINE),  # still interviewed
    (True, True, mapping.NODE_ALIVE, True, Availability.ONLINE),
    (True, True, mapping.NODE_AWAKE, True, Availability.ONLINE),
    (True, True, mapping.NODE_UNKNOWN, True, Availability.ONLINE),
])
def test_availability(connected: bool, present: bool, status: int | None, ready: bool | None,
                      expected: Availability) -> None:
    assert mapping.availability(connected=connected, present=present, status=status,
                                ready=ready) is expected


# -- reads --------------------------------------------------------------------------------

# The User Code rules themselves (statuses, PIN decoding) are tested in test_zwave_usercode.py.

def test_slot_reads_follow_the_shared_user_code_rules() -> None:
    assert mapping.slot_read(7, SlotValue(1, "4711")) == SlotRead(7, SlotState.KNOWN, pin="4711")
    assert mapping.slot_read(7, SlotValue(0, "")).state is SlotState.EMPTY
    assert mapping.slot_read(7, SlotValue(2, "0155")) == SlotRead(
        7, SlotState.UNREADABLE, reason="disabled", disabled=True)
    assert mapping.slot_read(7, SlotValue()).state is SlotState.UNREADABLE
    with pytest.raises(SlotMissing):
        mapping.slot_read(7, SlotValue(0xFE, None))
    assert mapping.report_value({"userIdStatus": 1, "userCode": "4711"}) == SlotValue(1, "4711")
    assert mapping.report_value({"userIdStatus": 1, "userCode": {"type": "Buffer",
                                                                 "data": [255, 0]}}) \
        == SlotValue(1, b"\xff\x00")
    assert mapping.report_value(None) == SlotValue()


def test_a_slot_without_values_between_others_is_missing() -> None:
    # zwave-js drops both values of a slot that reported "status not available" (254).
    state = recorded_node(2)
    state["values"] = [v for v in state["values"] if v.get("propertyKey") != 4]
    snap = mapping.snapshot(state)
    assert snap is not None and (snap.slot_count, snap.missing_slots) == (10, (4,))
    info = mapping.device_info(snap, HOME, NodeSettings(reserved_slots=(1,)), None)
    assert info.capabilities.reserved_slots == frozenset({1, 4})


def test_value_events_about_user_codes() -> None:
    changes = [mapping.user_code_change(cast(ValueArgs, e["args"])) for e in recorded_events()
               if e["event"] in ("value updated", "value added")]
    assert (3, "userIdStatus", 1) in changes
    assert (3, "userCode", "4711") in changes
    assert None in changes  # Notification and Door Lock values are not about codes
    assert mapping.user_code_change({"commandClass": 0x63, "property": "userCode",
                                     "propertyKey": 0, "newValue": "1"}) is None
    assert mapping.user_code_change({"commandClass": 0x63, "endpoint": 1,
                                     "property": "userCode", "propertyKey": 2}) is None
    assert mapping.user_code_change({"commandClass": 0x63, "property": "adminCode"}) is None


def test_a_slot_changes_one_value_at_a_time() -> None:
    slot = SlotValue(0, "")
    slot = mapping.with_change(slot, "userIdStatus", 1)
    assert slot == SlotValue(1, "")
    slot = mapping.with_change(slot, "userCode", "2580")
    assert slot == SlotValue(1, "2580")


def test_checksum_matches_what_the_real_lock_reported() -> None:
    recorded = json.loads((RECORDED / "events.json").read_text())["recorded_with"]
    slots = {3: SlotValue(1, "4711"), 4: SlotValue(0, ""), 5: SlotValue(None, None)}
    assert mapping.user_code_checksum(slots) == recorded["checksum_slot3_4711"] == 51768
    assert mapping.user_code_checksum({1: SlotValue(0, "")}) == 0
    assert mapping.user_code_checksum({}) == 0
    assert mapping.user_code_checksum({3: SlotValue(1, "4712")}) != 51768


# -- what a lock announces -------------------------------------------------------------------

def test_recorded_notifications() -> None:
    signals = [mapping.access_control_signal(cast(NotificationArgs, e["args"]))
               for e in recorded_events() if e["event"] == "notification"]
    assert signals == [
        LockSignal(SignalKind.CODE_ADDED, 5),
        LockSignal(SignalKind.KEYPAD_UNLOCK, 3),
        LockSignal(SignalKind.CODE_DELETED, 5),
        LockSignal(SignalKind.CODE_DUPLICATE, 4),
    ]


@pytest.mark.parametrize(("args", "expected"), [
    ({"type": 6, "event": 12}, LockSignal(SignalKind.ALL_CODES_DELETED)),
    ({"type": 6, "event": 6, "parameters": {}}, None),  # an unlock naming no code
    ({"type": 6, "event": 5, "parameters": {"userId": 3}}, None),  # keypad lock: not news
    ({"type": 6, "event": 1}, None),  # manual lock
    ({"type": 7, "event": 6, "parameters": {"userId": 3}}, None),  # not Access Control
    ({"type": 6, "event": 14, "parameters": {"userId": 0}},
     LockSignal(SignalKind.CODE_ADDED, None)),
])
def test_access_control_signals(args: dict[str, Any], expected: LockSignal | None) -> None:
    assert mapping.access_control_signal(cast(NotificationArgs, args)) == expected


@pytest.mark.parametrize(("alarm_type", "level", "expected"), [
    (19, 4, LockSignal(SignalKind.KEYPAD_UNLOCK, 4)),
    (112, 9, LockSignal(SignalKind.CODE_ADDED, 9)),
    (33, 2, LockSignal(SignalKind.CODE_DELETED, 2)),
    (113, 2, LockSignal(SignalKind.CODE_DUPLICATE, 2)),
    (19, 0, None),
    (21, 1, None),  # manual lock
    (0, 0, None),  # what Notification v8 locks leave in the legacy values
    (None, 3, None),
])
def test_legacy_alarm_signals(alarm_type: Any, level: Any, expected: LockSignal | None) -> None:
    assert mapping.alarm_signal(alarm_type, level) == expected


# -- writes -----------------------------------------------------------------------------------

CAPS = LockCapabilities(slot_count=30)


@pytest.mark.parametrize("slot", [None, 0, -1, 31, True])
def test_a_write_never_goes_without_one_real_slot(slot: Any) -> None:
    # User id 0 means "every code" to a Z-Wave lock.
    with pytest.raises(CommandRejected) as info:
        mapping.check_slot(slot, CAPS)
    assert info.value.reason is RejectReason.SLOT_OUT_OF_RANGE


def test_valid_slots_pass() -> None:
    assert mapping.check_slot(1, CAPS) == 1
    assert mapping.check_slot(30, CAPS) == 30


@pytest.mark.parametrize(("pin", "rules", "ok"), [
    ("0155", PinConstraints(4, 10), True),
    ("123", PinConstraints(4, 10), False),
    ("12345678901", PinConstraints(4, 10), False),
    ("12a4", PinConstraints(4, 10), False),
    ("١٢٣٤", PinConstraints(4, 10), False),  # non-ASCII digits
    (None, PinConstraints(4, 10), False),
    ("12345", PinConstraints(4, 8, fixed_length=4), False),
    ("0123", PinConstraints(4, 8, no_leading_zero=True), False),
])
def test_pins_are_checked_without_revealing_them(pin: str | None, rules: PinConstraints,
                                                 ok: bool) -> None:
    if ok:
        assert mapping.check_pin(pin, rules) == pin
        return
    with pytest.raises(CommandRejected) as info:
        mapping.check_pin(pin, rules)
    assert info.value.reason is RejectReason.INVALID_PIN
    assert pin is None or pin not in str(info.value)


def test_year_day_schedule_rounds_inwards_and_counts_years_from_2000() -> None:
    window = LocalWindow(datetime(2026, 12, 31, 15, 0, 1), datetime(2027, 1, 3, 11, 0, 59))
    assert mapping.year_day_schedule(window) == {
        "startYear": 26, "startMonth": 12, "startDay": 31, "startHour": 15, "startMinute": 1,
        "stopYear": 27, "stopMonth": 1, "stopDay": 3, "stopHour": 11, "stopMinute": 0,
    }


def test_year_day_schedule_refuses_what_the_cc_cannot_say() -> None:
    with pytest.raises(CommandRejected):
        mapping.year_day_schedule(LocalWindow(datetime(2026, 1, 1, 10, 0, 10),
                                              datetime(2026, 1, 1, 10, 0, 50)))
    with pytest.raises(CommandRejected):
        mapping.year_day_schedule(LocalWindow(datetime(2099, 12, 31, 10), datetime(2100, 1, 2)))


def test_zone_offsets_follow_daylight_saving() -> None:
    winter = datetime(2026, 1, 15, 12, tzinfo=UTC)
    summer = datetime(2026, 7, 15, 12, tzinfo=UTC)
    assert mapping.zone_offset_minutes("Europe/Berlin", winter) == 60
    assert mapping.zone_offset_minutes("Europe/Berlin", summer) == 120
    assert mapping.zone_offset_minutes("America/Sao_Paulo", summer) == -180
    assert mapping.local_clock("Europe/Berlin", summer) == (14, 0, 3)  # a Wednesday


def test_supervision_fail_is_seen() -> None:
    # Seen, not judged: the driver reads the slot back before it calls a Fail a refusal.
    assert mapping.supervision_failed({"status": 2})
    assert not mapping.supervision_failed({"status": 255})
    assert not mapping.supervision_failed(None)


@pytest.mark.parametrize(("result", "succeeded"), [
    ({"status": 255}, True),
    # Working carries the lock's remaining duration; its final report never reaches us.
    ({"status": 1, "remainingDuration": {"value": 2, "unit": "seconds"}}, False),
    ({"status": 2}, False),
    ({"status": 0}, False),
    (None, False),  # unsupervised: zwave-js-server answers `{}`, the library None
    ({}, False),
])
def test_only_a_supervision_success_confirms_a_set(result: object, succeeded: bool) -> None:
    assert mapping.supervision_succeeded(result) is succeeded


@pytest.mark.parametrize(("result", "seconds"), [
    ({"status": 1, "remainingDuration": {"value": 2, "unit": "seconds"}}, 2.0),
    ({"status": 1, "remainingDuration": {"value": 1, "unit": "minutes"}}, 60.0),
    ({"status": 1, "remainingDuration": "unknown"}, None),
    ({"status": 1, "remainingDuration": "default"}, None),
    ({"status": 1}, None),
    ({"status": 255}, None),
    (None, None),
])
def test_a_working_lock_says_how_long_it_needs(result: object, seconds: float | None) -> None:
    assert mapping.supervision_working_s(result) == seconds


# -- errors -----------------------------------------------------------------------------------

@pytest.mark.parametrize(("code", "message", "kind", "reason"), [
    (201, "Timed out while waiting for a response from the node", RetryLater, None),
    (204, "callback NOK", RetryLater, None),
    (202, "Message dropped", RetryLater, None),
    (1400, "no nonce", RetryLater, None),
    (302, "Node #2 does not support the command UserCodeChecksumGet!", CommandRejected,
     RejectReason.UNSUPPORTED),
    (322, "The user ID must be between 0 and the number of supported users 10.",
     CommandRejected, RejectReason.SLOT_OUT_OF_RANGE),
    (322, "The user code must consist of 4 to 10 of the following characters: 0123456789",
     CommandRejected, RejectReason.INVALID_PIN),
    (1100, "Supervision failed", CommandRejected, RejectReason.OTHER),
    (109, "no security keys", FixConfig, None),
])
def test_zwave_errors_become_what_the_engine_must_do(code: int, message: str, kind: type,
                                                     reason: RejectReason | None) -> None:
    error = mapping.zwave_error(code, message)
    assert isinstance(error, kind)
    if reason is not None:
        assert isinstance(error, CommandRejected) and error.reason is reason


def test_server_errors() -> None:
    assert isinstance(mapping.server_error("unknown_command", "x"), FixConfig)
    assert isinstance(mapping.server_error("node_not_found", "x"), RetryLater)
    assert mapping.is_gone(213) and not mapping.is_gone(201)


# -- configuration ------------------------------------------------------------------------------

def test_config_is_registered_and_strict() -> None:
    assert config_model("zwave") is Config
    config = Config.model_validate({"kind": "zwave", "time_zone": "Europe/Lisbon",
                                    "nodes": {5: {"name": "Front", "fixed_length": 4}}})
    assert config.url == "ws://127.0.0.1:3000"
    assert config.node(5).name == "Front" and config.node(6).name is None
    with pytest.raises(ValueError, match="loopback"):
        Config.model_validate({"kind": "zwave", "url": "ws://192.168.1.20:3000"})
    assert Config.model_validate({"kind": "zwave", "url": "ws://192.168.1.20:3000",
                                  "allow_remote": True}).allow_remote
    assert Config.model_validate({"kind": "zwave", "url": "ws://[::1]:3000"})
    bad: dict[str, Any]
    for bad in ({"url": "http://127.0.0.1:3000"}, {"time_zone": "Mars/Olympus"},
                {"nodes": {1: {}}}, {"unknown": 1}, {"reconnect_min_s": 9, "reconnect_max_s": 1}):
        with pytest.raises(ValueError):
            Config.model_validate({"kind": "zwave", **bad})


def test_without_the_extra_only_this_driver_is_lost(monkeypatch: pytest.MonkeyPatch,
                                                    tmp_path: Path) -> None:
    import asyncio
    import sys

    from bridge.clock import FakeClock
    from bridge.drivercontext import DriverContext
    from drivers.unavailable import UnavailableDriver
    from drivers.zwave.config import build

    monkeypatch.setitem(sys.modules, "drivers.zwave.driver", None)  # as if the extra is missing
    driver = build(Config.model_validate({"kind": "zwave"}), DriverContext(FakeClock(), tmp_path))
    assert isinstance(driver, UnavailableDriver)
    assert driver.devices() == []
    with pytest.raises(FixConfig, match=r"lockbridge\[zwave\]"):
        asyncio.run(driver.list_codes("x"))


def test_the_librarys_message_dumps_never_reach_the_logs(caplog: pytest.LogCaptureFixture) -> None:
    import logging

    from drivers.zwave.driver import _guard_library_logs

    _guard_library_logs()
    _guard_library_logs()  # once is enough; twice changes nothing
    library = logging.getLogger("zwave_js_server")
    assert len([f for f in library.filters if type(f).__name__ == "_WirePayloadGuard"]) == 1
    with caplog.at_level(logging.DEBUG, logger="zwave_js_server"):
        library.debug("Publishing message:\n%s\n", "{'args': [3, 1, '4711']}")
        library.debug("Received message:\n%s\n", "{'newValue': '4711'}")
        library.info("Connected to Home %s", 1)
    assert "4711" not in caplog.text
    assert caplog.text.count("payload withheld") == 2
    assert "Connected to Home 1" in caplog.text


def _entry(slot: int, status: int, code: str = "") -> dict[str, Any]:
    return {"userId": slot, "userIdStatus": status, "userCode": code}


def test_a_multi_code_read_shows_the_slots_it_points_past_empty() -> None:
    entries = [_entry(3, 1, "1234"), _entry(4, 0), _entry(5, 2, "9876")]
    read = mapping.bulk_read({"userCodes": entries, "nextUserId": 9}, first=3, last_slot=250)
    assert read is not None
    assert read.next_slot == 9
    assert sorted(read.values) == [3, 4, 5, 6, 7, 8]
    assert read.values[3] == SlotValue(status=1, code="1234")
    assert read.values[5].occupied and not read.values[4].occupied
    assert not read.values[8].occupied


def test_a_multi_code_read_with_nothing_after_it_ends_the_walk() -> None:
    read = mapping.bulk_read({"userCodes": [_entry(1, 0), _entry(2, 0)], "nextUserId": 0},
                             first=1, last_slot=30)
    assert read is not None
    assert read.next_slot is None
    assert sorted(read.values) == list(range(1, 31))


@pytest.mark.parametrize("report", [
    None,
    {"userCodes": [_entry(2, 0)], "nextUserId": 0},  # not the slot asked for
    {"userCodes": [_entry(1, 0), _entry(2, 0)], "nextUserId": 2},  # points back
    {"userCodes": "nonsense", "nextUserId": 0},
])
def test_a_multi_code_read_that_does_not_answer_is_read_slot_by_slot(
        report: dict[str, Any] | None) -> None:
    assert mapping.bulk_read(report, first=1, last_slot=30) is None
