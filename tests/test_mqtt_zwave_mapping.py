"""Z-Wave JS UI MQTT gateway formats to lockbridge's values: tables of real-shaped payloads."""

from __future__ import annotations

import json

import pytest

from bridge.driver import Availability, CommandRejected, RejectReason, RetryLater, SlotState
from drivers.mqtt.common import MalformedPayload
from drivers.zwavejs_mqtt import mapping

KNOWN, EMPTY, UNREADABLE = SlotState.KNOWN, SlotState.EMPTY, SlotState.UNREADABLE


def test_topics() -> None:
    assert mapping.api_topic("zwave", "office", "writeValue") == \
        "zwave/_CLIENTS/ZWAVE_GATEWAY-office/api/writeValue"
    assert mapping.gateway_status_topic("zwave", "office") == \
        "zwave/_CLIENTS/ZWAVE_GATEWAY-office/status"


def test_write_and_clear_address_exactly_one_slot_with_a_string_pin() -> None:
    assert mapping.write_code_args(5, 3, "0155") == [
        {"nodeId": 5, "commandClass": 99, "endpoint": 0, "property": "userCode",
         "propertyKey": 3}, "0155"]
    assert mapping.clear_code_args(5, 3) == [
        {"nodeId": 5, "commandClass": 99, "endpoint": 0, "property": "userIdStatus",
         "propertyKey": 3}, 0]
    assert mapping.get_code_args(5, 3) == [
        {"nodeId": 5, "commandClass": 99, "endpoint": 0}, "get", [3]]
    request = json.loads(mapping.api_request(mapping.write_code_args(5, 3, "0155"), "id1"))
    assert request["args"][1] == "0155" and request["lockbridge_request"] == "id1"


@pytest.mark.parametrize("slot", [0, -1, True])
def test_slot_zero_never_reaches_the_wire(slot: int) -> None:
    # User Code CC with no slot (or 0) means "every code on the lock".
    for build in (lambda: mapping.clear_code_args(5, slot),
                  lambda: mapping.write_code_args(5, slot, "1234"),
                  lambda: mapping.get_code_args(5, slot)):
        with pytest.raises(ValueError):
            build()


@pytest.mark.parametrize(("payload", "success", "request_id"), [
    ({"success": True, "message": "Success zwave api call", "result": True,
      "origin": {"args": [], "lockbridge_request": "abc"}}, True, "abc"),
    ({"success": False, "message": "Node 5 is dead", "result": None}, False, None),
    ({"success": True, "result": None, "origin": "weird"}, True, None),
])
def test_api_answers(payload: object, success: bool, request_id: str | None) -> None:
    answer = mapping.parse_answer(payload)
    assert (answer.success, answer.request_id) == (success, request_id)


@pytest.mark.parametrize("payload", [{"message": "x"}, [], "ok", {"success": "yes"}])
def test_malformed_api_answers(payload: object) -> None:
    with pytest.raises(MalformedPayload):
        mapping.parse_answer(payload)


@pytest.mark.parametrize(("result", "state", "pin"), [
    ({"userIdStatus": 0, "userCode": ""}, EMPTY, None),
    ({"userIdStatus": 1, "userCode": "4711"}, KNOWN, "4711"),
    ({"userIdStatus": 1, "userCode": "0042"}, KNOWN, "0042"),
    ({"userIdStatus": 1, "userCode": {"type": "Buffer", "data": [48, 49, 53, 53]}}, KNOWN,
     "0155"),
    # Masked or missing: occupied but unreadable, never empty.
    ({"userIdStatus": 1, "userCode": "**********"}, UNREADABLE, None),
    ({"userIdStatus": 1}, UNREADABLE, None),
    ({"userIdStatus": 2, "userCode": "4711"}, UNREADABLE, None),
    ({"userIdStatus": 254, "userCode": ""}, UNREADABLE, None),
])
def test_user_code_report_to_slot_read(result: object, state: SlotState,
                                       pin: str | None) -> None:
    read = mapping.read_from_get(3, result)
    assert (read.slot, read.state, read.pin) == (3, state, pin)


def test_no_report_is_retry_later_and_garbage_is_malformed() -> None:
    with pytest.raises(RetryLater):
        mapping.read_from_get(3, None)
    with pytest.raises(MalformedPayload):
        mapping.read_from_get(3, [1])
    with pytest.raises(MalformedPayload):
        mapping.read_from_get(3, {"userIdStatus": "enabled"})


@pytest.mark.parametrize(("result", "error", "reason"), [
    (True, None, None), (None, None, None), ({"status": 255}, None, None),
    ({"status": 254}, None, None), ({"status": 1}, None, None),
    (False, RetryLater, None),
    ({"status": 5}, CommandRejected, RejectReason.INVALID_PIN),
    ({"status": 0}, CommandRejected, RejectReason.UNSUPPORTED),
    ({"status": 2, "message": "duplicate code"}, CommandRejected, RejectReason.DUPLICATE_PIN),
    ({"status": 2}, CommandRejected, RejectReason.OTHER),
])
def test_write_results(result: object, error: type[Exception] | None,
                       reason: RejectReason | None) -> None:
    if error is None:
        mapping.check_write(result)
        return
    with pytest.raises(error) as raised:
        mapping.check_write(result)
    if reason is not None:
        assert isinstance(raised.value, CommandRejected) and raised.value.reason is reason


@pytest.mark.parametrize(("message", "error", "reason"), [
    ("Unable to write value: Fail (duplicate user code)", CommandRejected,
     RejectReason.DUPLICATE_PIN),
    ("Node 5 is dead", RetryLater, None),
    ("Failed to send the command after 3 attempts (Status NoAck)", RetryLater, None),
    ("Timeout while waiting for a response from the node", RetryLater, None),
    ("Unable to write value: InvalidValue (user code length)", CommandRejected,
     RejectReason.INVALID_PIN),
    ("Unknown API fooBar", CommandRejected, RejectReason.UNSUPPORTED),
    ("Something else", CommandRejected, RejectReason.OTHER),
])
def test_failures(message: str, error: type[Exception], reason: RejectReason | None) -> None:
    failure = mapping.classify_failure(message)
    assert isinstance(failure, error)
    if reason is not None:
        assert isinstance(failure, CommandRejected) and failure.reason is reason


@pytest.mark.parametrize(("payload", "availability"), [
    ({"time": 1, "value": True, "status": "Alive", "nodeId": 5}, Availability.ONLINE),
    ({"time": 1, "value": True, "status": "Asleep", "nodeId": 5}, Availability.ONLINE),
    ({"time": 1, "value": True, "status": "Awake", "nodeId": 5}, Availability.ONLINE),
    ({"time": 1, "value": False, "status": "Dead", "nodeId": 5}, Availability.OFFLINE),
    (True, Availability.ONLINE), (False, Availability.OFFLINE),
    ({"time": 1, "value": "maybe"}, None), ("dead", None),
])
def test_node_status(payload: object, availability: Availability | None) -> None:
    assert mapping.node_status(payload) is availability


@pytest.mark.parametrize(("payload", "up"), [
    ({"time": 1, "value": True}, True), ({"time": 1, "value": False}, False), (False, False),
    ({"time": 1}, None), ("yes", None),
])
def test_gateway_status(payload: object, up: bool | None) -> None:
    assert mapping.gateway_status(payload) is up


def test_user_code_value_topics() -> None:
    value = mapping.user_code_value(["99", "0", "userCode", "3"], {"time": 1, "value": "1234"})
    assert value == mapping.UserCodeValue(3, "userCode", "1234")
    status = mapping.user_code_value(["99", "0", "userIdStatus", "3"], {"time": 1, "value": 0})
    assert status == mapping.UserCodeValue(3, "userIdStatus", 0)
    for parts in (["99", "0", "userCode"], ["99", "1", "userCode", "3"],
                  ["99", "0", "keypadMode"], ["98", "0", "userCode", "3"],
                  ["99", "0", "userCode", "0"], ["99", "0", "userCode", "x"]):
        assert mapping.user_code_value(parts, {"value": 1}) is None


@pytest.mark.parametrize(("event", "value", "kind", "slot"), [
    ("Keypad_unlock_operation", {"userId": 4}, "keypad_used", 4),
    ("New_user_code_added", {"userId": 2}, "slot_changed", 2),
    ("Single_user_code_deleted", {"userId": 2}, "slot_changed", 2),
    ("All_user_codes_deleted", {}, "all_slots_changed", None),
    ("Keypad_unlock_operation", {}, None, None),
    ("Keypad_unlock_operation", {"userId": 0}, None, None),
    ("Manual_unlock_operation", {"userId": 4}, None, None),
])
def test_access_control_notifications(event: str, value: object, kind: str | None,
                                      slot: int | None) -> None:
    note = mapping.notification(["113", "0", "Access_Control", event],
                                {"time": 1, "value": value})
    if kind is None:
        assert note is None
    else:
        assert note is not None and (note.kind, note.slot) == (kind, slot)
    assert mapping.notification(["113", "0", "Home_Security", event], {"value": value}) is None


def test_node_facts_from_get_nodes() -> None:
    nodes = [{"id": 4, "manufacturer": "Other"},
             {"id": 5, "manufacturer": "Kwikset", "productLabel": "916", "status": "Alive",
              "values": {"99-0-supportedUsers": {"commandClass": 99, "property": "supportedUsers",
                                                 "value": 30},
                         "99-0-userCode-1": {"commandClass": 99, "property": "userCode",
                                             "propertyKey": 1, "minLength": 4,
                                             "maxLength": 10},
                         "98-0-x": "junk"}},
             {"id": 6, "values": [{"commandClass": 99, "property": "supportedUsers",
                                   "value": 250}], "status": "Dead"}]
    facts = mapping.node_facts(nodes, 5)
    assert facts == mapping.NodeFacts("Kwikset", "916", 30, 4, 10, Availability.ONLINE)
    six = mapping.node_facts(nodes, 6)
    assert six is not None and six.slot_count == 250 and six.status is Availability.OFFLINE
    assert mapping.node_facts(nodes, 7) is None
    with pytest.raises(MalformedPayload):
        mapping.node_facts({"5": {}}, 5)
