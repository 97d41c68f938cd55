"""Zigbee2MQTT wire formats to lockbridge's values: tables of real-shaped payloads."""

from __future__ import annotations

import json

import pytest

from bridge.driver import CommandRejected, RejectReason, RetryLater, SlotRead, SlotState
from drivers.mqtt.common import MalformedPayload, shows
from drivers.zigbee2mqtt import mapping

KNOWN, EMPTY, UNREADABLE = SlotState.KNOWN, SlotState.EMPTY, SlotState.UNREADABLE


def test_set_payload_keeps_the_pin_a_string_with_its_leading_zeros() -> None:
    doc = json.loads(mapping.set_pin_code(0, "0155"))
    assert doc == {"pin_code": {"user": 0, "user_type": "unrestricted", "user_enabled": True,
                                "pin_code": "0155"}}
    assert b'"pin_code":"0155"' in mapping.set_pin_code(0, "0155")


def test_clear_and_get_payloads() -> None:
    assert json.loads(mapping.clear_pin_code(7)) == {
        "pin_code": {"user": 7, "user_enabled": False, "pin_code": None}}
    assert json.loads(mapping.get_pin_code(7)) == {"pin_code": {"user": 7}}
    assert json.loads(mapping.get_lock_state()) == {"state": ""}


@pytest.mark.parametrize(("entry", "state", "pin"), [
    ({"status": "available"}, EMPTY, None),
    ({"status": "enabled", "pin_code": "4711"}, KNOWN, "4711"),
    ({"status": "enabled", "pin_code": "0042"}, KNOWN, "0042"),
    # expose_pin off: occupied, PIN withheld -> unreadable, never empty.
    ({"status": "enabled"}, UNREADABLE, None),
    ({"status": "enabled", "pin_code": None}, UNREADABLE, None),
    # Masked, or a number whose leading zeros may be lost: not to be trusted.
    ({"status": "enabled", "pin_code": "****"}, UNREADABLE, None),
    ({"status": "enabled", "pin_code": 4711}, UNREADABLE, None),
    # A disabled user still holds a code; statuses outside the map say nothing.
    ({"status": "disabled", "pin_code": "4711"}, UNREADABLE, None),
    ({"status": "not_supported_255"}, UNREADABLE, None),
])
def test_users_entry_to_slot_read(entry: dict[str, object], state: SlotState,
                                  pin: str | None) -> None:
    read = mapping.read_user(3, entry)
    assert (read.slot, read.state, read.pin) == (3, state, pin)


@pytest.mark.parametrize("entry", ["enabled", 3, None, {"pin_code": "1234"}, {"status": 1}])
def test_malformed_users_entry(entry: object) -> None:
    with pytest.raises(MalformedPayload):
        mapping.read_user(3, entry)


def test_users_object_skips_bad_keys_and_entries() -> None:
    state = {"users": {"0": {"status": "enabled", "pin_code": "1234"}, "x": {"status": "x"},
                       "2": "nonsense", "5": {"status": "available"}}}
    reads = mapping.users_in(state)
    assert reads == {0: SlotRead(0, KNOWN, "1234"), 5: SlotRead(5, EMPTY)}
    assert mapping.users_in({"battery": 90}) == {}
    with pytest.raises(MalformedPayload):
        mapping.users_in({"users": [1, 2]})


@pytest.mark.parametrize(("state", "kind", "slot"), [
    ({"action": "unlock", "action_user": 4, "action_source_name": "keypad"}, "keypad_used", 4),
    ({"action": "keypad_unlock", "action_user": 4}, "keypad_used", 4),
    ({"action": "unlock", "action_user": 4, "action_source_name": "rf"}, None, None),
    ({"action": "manual_unlock", "action_user": 0}, None, None),
    ({"action": "lock", "action_user": 4, "action_source_name": "keypad"}, None, None),
    ({"action": "pin_code_added", "action_user": 2, "action_source_name": "keypad"},
     "slot_changed", 2),
    ({"action": "pin_code_deleted", "action_user": 0}, "slot_changed", 0),
    ({"action": "pin_code_changed", "action_user": 9}, "slot_changed", 9),
    ({"action": "pin_code_added"}, None, None),
    ({"action": "pin_code_added", "action_user": "2"}, None, None),
    ({"action": "pin_code_added", "action_user": True}, None, None),
    ({"action": "", "action_user": 1}, None, None),
    ({"state": "LOCK"}, None, None),
])
def test_actions(state: dict[str, object], kind: str | None, slot: int | None) -> None:
    action = mapping.action_in(state)
    if kind is None:
        assert action is None
    else:
        assert action is not None and (action.kind, action.slot) == (kind, slot)


@pytest.mark.parametrize(("payload", "online"), [
    (b'{"state":"online"}', True), (b'{"state":"offline"}', False), (b"online", True),
    (b"offline", False), (b'{"state":"weird"}', None), (b"{}", None),
])
def test_availability(payload: bytes, online: bool | None) -> None:
    assert mapping.availability_of(mapping.decode_plain_or_json(payload)) is online


def _device(name: str, exposes: list[object], vendor: str = "Kwikset",
            model: str = "99140-002", **extra: object) -> dict[str, object]:
    return {"ieee_address": f"0x{abs(hash(name)) % 10**8:016x}", "friendly_name": name,
            "type": "EndDevice", "supported": True,
            "definition": {"vendor": vendor, "model": model, "description": "d",
                           "exposes": exposes}, **extra}


PIN_EXPOSE = {"type": "composite", "name": "pin_code", "property": "pin_code",
              "features": [{"type": "numeric", "name": "user"}]}


def test_locks_are_the_devices_that_expose_pin_code() -> None:
    devices = [
        {"ieee_address": "0x0", "friendly_name": "Coordinator", "type": "Coordinator",
         "definition": None},
        _device("front", [{"type": "lock", "features": []}, PIN_EXPOSE]),
        _device("yale", [PIN_EXPOSE], vendor="Yale", model="YRD256HA20BP"),
        _device("ymi", [PIN_EXPOSE], vendor="Yale", model="YMI70A"),
        _device("nested", [{"type": "lock", "features": [PIN_EXPOSE]}], vendor="Acme"),
        _device("bulb", [{"type": "light", "features": []}]),
        _device("off", [PIN_EXPOSE], disabled=True),
    ]
    locks = {lock.friendly_name: lock for lock in mapping.locks_in(devices)}
    assert sorted(locks) == ["front", "nested", "yale", "ymi"]
    assert locks["front"].slot_count == 30
    assert locks["yale"].slot_count == 250
    assert locks["ymi"].slot_count == 100
    assert locks["nested"].slot_count is None
    with pytest.raises(MalformedPayload):
        mapping.locks_in({"not": "a list"})
    # A list of anything but devices is not "no locks any more".
    with pytest.raises(MalformedPayload):
        mapping.locks_in([*devices, "garbage"])
    with pytest.raises(MalformedPayload):
        mapping.locks_in([1, 2, 3])


def test_expose_pin_from_bridge_info() -> None:
    info = {"config": {"devices": {"0xabc": {"friendly_name": "front", "expose_pin": True},
                                   "0xdef": {"friendly_name": "back"}},
                       "device_options": {"expose_pin": False}}}
    per_device, default = mapping.expose_pin_options(info)
    assert per_device == {"0xabc": True, "front": True}
    assert default is False
    assert mapping.expose_pin_options({"version": "1"}) == ({}, None)


@pytest.mark.parametrize(("message", "error", "reason"), [
    ("Publish 'set' 'pin_code' to 'front' failed: 'Error: user must be in range for device'",
     CommandRejected, RejectReason.SLOT_OUT_OF_RANGE),
    ("Publish 'set' 'pin_code' to 'front' failed: 'Error: setPinCode failed: duplicate'",
     CommandRejected, RejectReason.DUPLICATE_PIN),
    ("Publish 'set' 'pin_code' to 'front' failed: 'Error: Command 0x1 closuresDoorLock."
     "setPinCode failed (Delivery failed: MAC_NO_ACK)'", RetryLater, None),
    ("Publish 'get' 'pin_code' to 'front' failed: 'Error: Timeout - 12345 - 1 - 5'",
     RetryLater, None),
    ("Publish 'set' 'pin_code' to 'front' failed: 'Error: pinCode must be a number'",
     CommandRejected, RejectReason.INVALID_PIN),
    ("Publish 'set' 'pin_code' to 'front' failed: 'Error: something odd'",
     CommandRejected, RejectReason.OTHER),
])
def test_command_failures_from_bridge_logging(message: str, error: type[Exception],
                                              reason: RejectReason | None) -> None:
    failure = mapping.command_failure({"level": "error", "message": message})
    assert failure is not None and failure.device == "front" and failure.key == "pin_code"
    assert isinstance(failure.error, error)
    if reason is not None:
        assert isinstance(failure.error, CommandRejected) and failure.error.reason is reason


def test_failure_text_never_carries_digit_runs() -> None:
    failure = mapping.command_failure({"level": "error", "message":
                                       "Publish 'set' 'pin_code' to 'a' failed: 'bad 98765'"})
    assert failure is not None and "98765" not in str(failure.error)


@pytest.mark.parametrize("payload", [
    {"level": "info", "message": "Publish 'set' 'pin_code' to 'front' failed: 'x'"},
    {"level": "error", "message": "MQTT publish failed"},
    {"level": "error"}, "text", None,
])
def test_other_log_lines_are_not_failures(payload: object) -> None:
    assert mapping.command_failure(payload) is None


@pytest.mark.parametrize(("read", "pin", "consistent"), [
    (SlotRead(1, KNOWN, "1234"), "1234", True),
    (SlotRead(1, KNOWN, "1235"), "1234", False),
    (SlotRead(1, EMPTY), "1234", False),
    (SlotRead(1, UNREADABLE), "1234", True),
    (SlotRead(1, EMPTY), None, True),
    (SlotRead(1, UNREADABLE), None, False),
    (SlotRead(1, KNOWN, "1234"), None, False),
])
def test_what_confirms_our_own_command(read: SlotRead, pin: str | None,
                                       consistent: bool) -> None:
    assert shows(read, pin) is consistent


_ZH = ("z2m: Publish '{verb}' 'pin_code' to 'front' failed: 'Error: ZCL command "
       "0x000d6f00000000aa/2 closuresDoorLock.{cmd}({payload}, {{\"timeout\":10000,"
       "\"disableResponse\":false}}) failed ({why})'")


def test_zigbee2mqtt_2x_lines_name_the_user_and_a_timeout_is_no_answer() -> None:
    """Zigbee2MQTT 2.x prefixes `z2m: `; zigbee-herdsman's error names the user."""
    line = _ZH.format(verb="get", cmd="getPinCode", payload='{"userid":5}',
                      why="Timeout after 10000ms [address=170 endpoint=2 clusterId=257 "
                          "cmdId=6 tsn=3]")
    failure = mapping.command_failure({"level": "error", "message": line})
    assert failure is not None and failure.device == "front" and failure.verb == "get"
    assert failure.user == 5 and isinstance(failure.error, mapping.UserDidNotAnswer)


def test_a_radio_failure_is_not_taken_for_a_user_that_does_not_answer() -> None:
    # The options JSON holds `"timeout":10000` in every zigbee-herdsman error.
    line = _ZH.format(verb="set", cmd="setPinCode",
                      payload='{"userid":1,"userstatus":1,"usertype":0,"pincodevalue":"1234"}',
                      why="Data request failed with error: 'MAC_NO_ACK' (0xe9)")
    failure = mapping.command_failure({"level": "error", "message": line})
    assert failure is not None and failure.user == 1
    assert isinstance(failure.error, RetryLater)
    assert not isinstance(failure.error, mapping.UserDidNotAnswer)


@pytest.mark.parametrize("pin", ["1234", "12", "0"])
def test_the_pin_of_a_failed_set_never_reaches_the_error_text(pin: str) -> None:
    line = _ZH.format(verb="set", cmd="setPinCode",
                      payload=f'{{"userid":1,"userstatus":1,"usertype":0,"pincodevalue":"{pin}"}}',
                      why="Timeout after 10000ms [address=170]")
    failure = mapping.command_failure({"level": "error", "message": line})
    assert failure is not None
    assert f'"pincodevalue":"{pin}"' not in str(failure.error)
    assert '"pincodevalue":"<redacted>"' in mapping.redacted(line)


@pytest.mark.parametrize(("state", "event"), [
    ({"action": "pin_code_added", "action_user": 1, "users": {}}, True),
    ({"action_user": 1}, True),
    ({"users": {"1": {"status": "available"}}, "battery": 90}, False),
])
def test_events_are_never_answers(state: dict[str, object], event: bool) -> None:
    assert mapping.is_event(state) is event


def test_reported_fields_leave_users_and_link_quality_out() -> None:
    a = mapping.reported_fields({"state": "LOCK", "battery": 90, "linkquality": 10,
                                 "users": {"1": {"status": "available"}}})
    b = mapping.reported_fields({"state": "LOCK", "battery": 90, "linkquality": 99,
                                 "users": {"1": {"status": "enabled"}}})
    assert a == b
    assert a != mapping.reported_fields({"state": "UNLOCK", "battery": 90})
