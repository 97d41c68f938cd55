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
        with pytest.raises(CommandRejected) as refused:
            build()
        assert refused.value.reason is RejectReason.SLOT_OUT_OF_RANGE


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
    # zwave-js sends a Buffer only for a code that is not printable ASCII: never a PIN.
    ({"userIdStatus": 1, "userCode": {"type": "Buffer", "data": [48, 49, 53, 53]}}, UNREADABLE,
     None),
    # Masked or missing: occupied but unreadable, never empty.
    ({"userIdStatus": 1, "userCode": "**********"}, UNREADABLE, None),
    ({"userIdStatus": 1}, UNREADABLE, None),
    ({"userIdStatus": 2, "userCode": "4711"}, UNREADABLE, None),
])
def test_user_code_report_to_slot_read(result: object, state: SlotState,
                                       pin: str | None) -> None:
    read = mapping.read_from_get(3, result)
    assert (read.slot, read.state, read.pin) == (3, state, pin)


def test_status_not_available_means_no_such_slot() -> None:
    with pytest.raises(mapping.SlotMissing) as raised:
        mapping.read_from_get(3, {"userIdStatus": 254, "userCode": ""})
    assert raised.value.slot == 3


def test_no_report_is_retry_later_and_garbage_is_malformed() -> None:
    with pytest.raises(RetryLater):
        mapping.read_from_get(3, None)
    with pytest.raises(MalformedPayload):
        mapping.read_from_get(3, [1])
    with pytest.raises(MalformedPayload):
        mapping.read_from_get(3, {"userIdStatus": "enabled"})


ACCEPTED, FAILED = mapping.WriteAnswer.ACCEPTED, mapping.WriteAnswer.FAILED
SLOT_9 = "The user ID must be between 0 and the number of supported users 8."


@pytest.mark.parametrize(("result", "error", "reason"), [
    (True, ACCEPTED, None), (None, ACCEPTED, None), ({"status": 255}, ACCEPTED, None),
    ({"status": 254}, ACCEPTED, None), ({"status": 1}, ACCEPTED, None),
    # Fail is a refusal under Supervision or a NoAck: the answer alone does not tell.
    ({"status": 2}, FAILED, None),
    (False, RetryLater, None),
    ({"status": 5}, CommandRejected, RejectReason.INVALID_PIN),
    ({"status": 5, "message": "UserCodeCCSet: The user code must have a length of 4 to 10 "
      "characters"}, CommandRejected, RejectReason.INVALID_PIN),
    ({"status": 5, "message": SLOT_9}, CommandRejected, RejectReason.SLOT_OUT_OF_RANGE),
    ({"status": 0}, CommandRejected, RejectReason.UNSUPPORTED),
    ({"status": 3, "message": "Endpoint 1 does not exist on Node 5"}, CommandRejected,
     RejectReason.UNSUPPORTED),
])
def test_write_results(result: object, error: type[Exception] | mapping.WriteAnswer,
                       reason: RejectReason | None) -> None:
    if isinstance(error, mapping.WriteAnswer):
        assert mapping.check_write(result) is error
        return
    with pytest.raises(error) as raised:
        mapping.check_write(result)
    if reason is not None:
        assert isinstance(raised.value, CommandRejected) and raised.value.reason is reason


def test_supported_users_named_in_a_refusal() -> None:
    assert mapping.supported_users({"status": 5, "message": SLOT_9}) == 8
    assert mapping.supported_users({"status": 5, "message": "length"}) is None
    assert mapping.supported_users({"status": 2}) is None


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
    # zwave-js does not know yet; the gateway's value (not Dead) is true.
    ({"time": 1, "value": True, "status": "Unknown", "nodeId": 5}, Availability.ONLINE),
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
    ("New_user_code_not_added_due_to_duplicate_code", {"userId": 3}, "duplicate", 3),
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


def test_a_duplicate_notice_without_parameters_still_counts() -> None:
    # A report without event parameters is published as `{"time"}` alone (Yale, some Kwikset).
    parts = ["113", "0", "Access_Control", "New_user_code_not_added_due_to_duplicate_code"]
    note = mapping.notification(parts, {"time": 1})
    assert note is not None and (note.kind, note.slot) == ("duplicate", None)
    # Other events say nothing without the user id.
    assert mapping.notification([*parts[:3], "New_user_code_added"], {"time": 1}) is None


@pytest.mark.parametrize(("payload", "value"), [
    ({"time": 1, "value": "1234"}, "1234"), ({"time": 1}, None), (7, 7), ("x", "x"),
    ({"value": 0}, 0),
    # The "ValueID" payload type: the whole value id, with `value` only when known.
    ({"id": "5-99-0-userCode-1", "nodeId": 5, "commandClass": 99, "value": "4711",
      "lastUpdate": 1}, "4711"),
    ({"id": "5-99-0-userCode-1", "nodeId": 5, "commandClass": 99, "lastUpdate": 1}, None),
])
def test_payload_types(payload: object, value: object) -> None:
    assert mapping.unwrap(payload) == value


def uc_values(slots: list[int]) -> dict[str, object]:
    values: dict[str, object] = {}
    for slot in slots:
        for prop in ("userIdStatus", "userCode"):
            values[f"99-0-{prop}-{slot}"] = {
                "commandClass": 99, "endpoint": 0, "property": prop, "propertyKey": slot,
                **({"minLength": 4, "maxLength": 10} if prop == "userCode" else {})}
    return values


def test_slot_count_name_and_missing_slots_from_defined_values() -> None:
    # Current gateways: no supportedUsers; user ids 1..N defined, minus those that reported 254.
    nodes = [{"id": 1, "isControllerNode": True, "values": {}},
             {"id": 5, "name": "Front Door", "loc": "Main House", "status": "Unknown",
              "values": uc_values([1, 2, 4, 5, 6, 7, 8])},
             {"id": 6, "name": "", "loc": "", "status": "Alive", "values": {}}]
    facts = mapping.node_facts(nodes, 5)
    assert facts is not None
    assert (facts.slot_count, facts.missing_slots) == (8, (3,))
    assert (facts.name, facts.location, facts.status) == ("Front Door", "Main House", None)
    # Not interviewed yet: nothing to count (the driver asks getUsersCount).
    six = mapping.node_facts(nodes, 6)
    assert six is not None and six.slot_count is None and six.missing_slots == ()
    assert mapping.users_count_args(5) == [
        {"nodeId": 5, "commandClass": 99, "endpoint": 0}, "getUsersCount", []]
    assert mapping.users_count(250) == 250 and mapping.users_count(None) is None
    assert mapping.users_count(True) is None


LAYOUT = mapping.TopicLayout()
NAMED = mapping.TopicLayout(mapping.TopicType.NAMED)


@pytest.mark.parametrize(("layout", "name", "loc", "topic"), [
    (LAYOUT, "", "", "nodeID_5"),
    (LAYOUT, "Front Door", "Main House", "Main_House/Front_Door"),
    (mapping.TopicLayout(node_names=False), "Front Door", "Main House", "Main_House/5"),
    (mapping.TopicLayout(ignore_location=True), "Front Door", "Main House", "Front_Door"),
    (NAMED, "Front Door", "", "Front_Door"),
    (mapping.TopicLayout(mapping.TopicType.NAMED, node_names=False), "Back", "", "Back"),
    (LAYOUT, "Tür (1)", "", "Tür_1"),
])
def test_node_topics(layout: mapping.TopicLayout, name: str, loc: str, topic: str) -> None:
    assert mapping.node_topic(layout, 5, name, loc) == topic


def test_named_topics_read_as_value_ids() -> None:
    assert mapping.value_parts(NAMED, ["user_code", "endpoint_0", "userCode", "3"]) == [
        "99", "0", "userCode", "3"]
    assert mapping.value_parts(NAMED, ["notification", "endpoint_0", "Access_Control", "X"]) \
        == ["113", "0", "Access_Control", "X"]
    assert mapping.value_parts(NAMED, ["status"]) == ["status"]
    assert mapping.value_parts(LAYOUT, ["99", "0", "userCode", "3"]) == [
        "99", "0", "userCode", "3"]
    assert mapping.node_filters("z/+", NAMED) == [
        "z/+/status", "z/+/user_code/endpoint_0/+/+", "z/+/notification/endpoint_0/+/+"]
    assert mapping.node_filters("z/a/b", LAYOUT) == ["z/a/b/status", "z/a/b/99/0/+/+",
                                                     "z/a/b/113/0/+/+"]


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
