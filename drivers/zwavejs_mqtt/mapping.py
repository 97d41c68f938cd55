"""Z-Wave JS UI's MQTT gateway formats and what they mean to lockbridge: pure functions, no I/O.

Facts this module encodes (see docs/drivers/mqtt.md):

- An API call is `{"args": [...]}` published to
  `<prefix>/_CLIENTS/ZWAVE_GATEWAY-<name>/api/<api>/set`; the answer comes on the same topic
  without `/set` as `{"success", "message", "result", "origin"}`, where `origin` echoes the
  request (lockbridge adds a request id to match answers to calls).
- User Code CC is command class 99 and its slots start at 1. A code is written with
  `writeValue` on property `userCode` (key = slot) and cleared by writing `userIdStatus` 0 for
  that one slot. The CC's own `clear` is never used: without a slot it wipes every code.
- `sendCommand` `get` with `[slot]` asks the lock itself (not the value cache).
- Value topics are `<prefix>/<node topic>/<cc>/<endpoint>/<property>/<key>` with a time-value
  payload `{"time", "value"}` (or the bare value); node status is `<node topic>/status`.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Literal, TypedDict

from bridge.driver import (
    Availability,
    CommandRejected,
    DriverError,
    RejectReason,
    RetryLater,
    SlotRead,
    SlotState,
)
from drivers.mqtt.common import MalformedPayload, encode_json, sanitized

USER_CODE_CC = 99
NOTIFICATION_CC = 113
REQUEST_KEY = "lockbridge_request"

# User ID status values of User Code CC.
STATUS_AVAILABLE = 0
STATUS_ENABLED = 1
STATUS_DISABLED = 2
STATUS_NOT_AVAILABLE = 0xFE

# SetValueStatus of zwave-js, as `writeValue` may return it.
_SET_VALUE_OK = frozenset({1, 254, 255})  # working, success unsupervised, success
_SET_VALUE_UNSUPPORTED = frozenset({0, 3, 4})
_SET_VALUE_INVALID = 5

# -- raw payloads -------------------------------------------------------------------------


class ValueId(TypedDict):
    """A Z-Wave value address, as `writeValue` takes it."""

    nodeId: int
    commandClass: int
    endpoint: int
    property: str
    propertyKey: int


class CommandContext(TypedDict):
    """The first argument of `sendCommand`."""

    nodeId: int
    commandClass: int
    endpoint: int


class ApiRequest(TypedDict, total=False):
    """What lockbridge publishes to an API topic."""

    args: list[object]
    lockbridge_request: str


class ApiResponse(TypedDict, total=False):
    """The gateway's answer to an API call."""

    success: bool
    message: str
    result: object
    origin: ApiRequest


class UserCodeReport(TypedDict, total=False):
    """The result of `sendCommand` User Code `get`."""

    userIdStatus: int
    userCode: str | dict[str, object]


class TimeValue(TypedDict, total=False):
    """The gateway's default payload for values and statuses."""

    time: int
    value: object
    status: str
    nodeId: int


class NodeValue(TypedDict, total=False):
    """One value of a node in the `getNodes` result."""

    commandClass: int
    endpoint: int
    property: str | int
    propertyKey: str | int
    value: object
    minLength: int
    maxLength: int


class Node(TypedDict, total=False):
    """One node of the `getNodes` result (only the fields lockbridge reads)."""

    id: int
    name: str
    loc: str
    manufacturer: str
    productLabel: str
    productDescription: str
    status: str
    values: dict[str, NodeValue] | list[NodeValue]


# -- what they mean ----------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class ApiAnswer:
    """One answer of the gateway's API."""

    success: bool
    message: str
    result: object
    request_id: str | None


@dataclass(frozen=True, slots=True)
class NodeFacts:
    """What `getNodes` says about one lock node."""

    manufacturer: str | None = None
    product: str | None = None
    slot_count: int | None = None
    min_length: int | None = None
    max_length: int | None = None
    status: Availability | None = None


@dataclass(frozen=True, slots=True)
class UserCodeValue:
    """A User Code CC value topic update for one slot."""

    slot: int
    prop: Literal["userCode", "userIdStatus"]
    value: object


@dataclass(frozen=True, slots=True)
class NodeNotification:
    """An Access Control notification: a keypad unlock or codes changed at the lock."""

    kind: Literal["keypad_used", "slot_changed", "all_slots_changed"]
    slot: int | None
    detail: dict[str, str] = field(default_factory=dict)


def api_topic(prefix: str, gateway: str, api: str) -> str:
    """The topic an API's answers arrive on; requests go to it plus `/set`."""
    return f"{prefix}/_CLIENTS/ZWAVE_GATEWAY-{gateway}/api/{api}"


def gateway_status_topic(prefix: str, gateway: str) -> str:
    """The gateway's own MQTT status topic."""
    return f"{prefix}/_CLIENTS/ZWAVE_GATEWAY-{gateway}/status"


def api_request(args: list[object], request_id: str) -> bytes:
    """The payload of one API call, tagged so its answer can be told from others."""
    request: ApiRequest = {"args": args, "lockbridge_request": request_id}
    return encode_json(request)


def _slot(slot: int) -> int:
    if isinstance(slot, bool) or not isinstance(slot, int) or slot < 1:
        # Slot 0 or none would address every code on the lock.
        raise ValueError("User Code CC slots start at 1")
    return slot


def write_code_args(node_id: int, slot: int, pin: str) -> list[object]:
    """`writeValue` arguments that put `pin` (a string) in `slot`."""
    value_id: ValueId = {"nodeId": node_id, "commandClass": USER_CODE_CC, "endpoint": 0,
                         "property": "userCode", "propertyKey": _slot(slot)}
    return [value_id, pin]


def clear_code_args(node_id: int, slot: int) -> list[object]:
    """`writeValue` arguments that free exactly `slot` (userIdStatus = available)."""
    value_id: ValueId = {"nodeId": node_id, "commandClass": USER_CODE_CC, "endpoint": 0,
                         "property": "userIdStatus", "propertyKey": _slot(slot)}
    return [value_id, STATUS_AVAILABLE]


def get_code_args(node_id: int, slot: int) -> list[object]:
    """`sendCommand` arguments that read `slot` from the lock itself."""
    context: CommandContext = {"nodeId": node_id, "commandClass": USER_CODE_CC, "endpoint": 0}
    return [context, "get", [_slot(slot)]]


def parse_answer(payload: object) -> ApiAnswer:
    """An API answer, or MalformedPayload."""
    if not isinstance(payload, dict) or not isinstance(payload.get("success"), bool):
        raise MalformedPayload("an API answer without success")
    origin = payload.get("origin")
    request_id = origin.get(REQUEST_KEY) if isinstance(origin, dict) else None
    message = payload.get("message")
    return ApiAnswer(success=bool(payload["success"]),
                     message=message if isinstance(message, str) else "",
                     result=payload.get("result"),
                     request_id=request_id if isinstance(request_id, str) else None)


def user_code_text(raw: object) -> str | None:
    """A user code as text: a string, or a serialised Buffer `{"type": "Buffer", "data": [...]}`."""
    if isinstance(raw, str):
        return raw
    if isinstance(raw, dict) and raw.get("type") == "Buffer" and isinstance(raw.get("data"), list):
        data = raw["data"]
        if all(isinstance(b, int) and 0 <= b < 256 for b in data):
            return bytes(data).decode("latin-1")
    return None


def read_from_report(slot: int, status: object, code: object) -> SlotRead:
    """A slot read from a User Code status and code: available is empty; an occupied slot whose
    code is masked (`****`), missing or not digits is unreadable, never empty."""
    if isinstance(status, bool) or not isinstance(status, int):
        raise MalformedPayload("userIdStatus is not a number")
    if status == STATUS_AVAILABLE:
        return SlotRead(slot=slot, state=SlotState.EMPTY)
    text = user_code_text(code)
    if status == STATUS_ENABLED and text is not None and text.isascii() and text.isdigit():
        return SlotRead(slot=slot, state=SlotState.KNOWN, pin=text)
    return SlotRead(slot=slot, state=SlotState.UNREADABLE)


def read_from_get(slot: int, result: object) -> SlotRead:
    """The result of `sendCommand` `get` for one slot; no answer from the lock is RetryLater."""
    if result is None:
        raise RetryLater("the lock did not report the slot (asleep or unreachable)")
    if not isinstance(result, dict):
        raise MalformedPayload("a User Code report is not an object")
    return read_from_report(slot, result.get("userIdStatus"), result.get("userCode"))


def check_write(result: object) -> None:
    """Raise what a `writeValue` result means when it is not success (a bare boolean in older
    gateways, a SetValueResult `{"status"}` in newer ones)."""
    if result is True or result is None:
        return
    if result is False:
        raise RetryLater("Z-Wave JS UI could not write the value")
    if isinstance(result, dict):
        status = result.get("status")
        if isinstance(status, bool) or not isinstance(status, int) or status in _SET_VALUE_OK:
            return
        if status == _SET_VALUE_INVALID:
            raise CommandRejected(RejectReason.INVALID_PIN, "the lock refused the value as invalid")
        if status in _SET_VALUE_UNSUPPORTED:
            raise CommandRejected(RejectReason.UNSUPPORTED, "the lock does not support user codes")
        message = result.get("message")
        raise classify_failure(message if isinstance(message, str) else "Fail")
    raise MalformedPayload("an unexpected writeValue result")


def classify_failure(message: str) -> DriverError:
    """A failed API call's message as what lockbridge must do about it."""
    text = message.lower()
    said = f" ({sanitized(message)})" if message else ""
    if "duplicate" in text:
        return CommandRejected(RejectReason.DUPLICATE_PIN,
                               "the lock already holds this PIN in another slot" + said)
    if "out of range" in text or "must be between" in text or "invalid user" in text:
        return CommandRejected(RejectReason.SLOT_OUT_OF_RANGE,
                               "the slot does not exist on this lock" + said)
    if any(word in text for word in ("dead", "timeout", "timed out", "no ack", "noack",
                                     "not ready", "asleep", "not connected", "failed to send")):
        return RetryLater("the lock did not answer" + said)
    if "invalid" in text or "length" in text:
        return CommandRejected(RejectReason.INVALID_PIN, "the lock refused the PIN" + said)
    if "not supported" in text or "unsupported" in text or "unknown api" in text:
        return CommandRejected(RejectReason.UNSUPPORTED, "the gateway cannot do this" + said)
    return CommandRejected(RejectReason.OTHER, "Z-Wave JS UI reported a failure" + said)


def unwrap(payload: object) -> object:
    """The value of a time-value payload `{"time", "value"}`, or the payload itself."""
    if isinstance(payload, dict) and "value" in payload and ("time" in payload
                                                             or len(payload) == 1):
        return payload["value"]
    return payload


def node_status(payload: object) -> Availability | None:
    """A node status message: Dead is offline, Alive/Awake/Asleep online; None if unknown."""
    status = payload.get("status") if isinstance(payload, dict) else None
    if isinstance(status, str):
        lowered = status.lower()
        if lowered == "dead":
            return Availability.OFFLINE
        if lowered in ("alive", "awake", "asleep"):
            return Availability.ONLINE
    value = unwrap(payload)
    if value is True:
        return Availability.ONLINE
    if value is False:
        return Availability.OFFLINE
    return None


def gateway_status(payload: object) -> bool | None:
    """The gateway's MQTT status (`{"value": true}` or a bare boolean); None if unknown."""
    value = unwrap(payload)
    return value if isinstance(value, bool) else None


def user_code_value(parts: list[str], payload: object) -> UserCodeValue | None:
    """A value topic under a node, split after the node topic: `99/0/userCode/<slot>`."""
    if len(parts) != 4 or parts[0] != str(USER_CODE_CC) or parts[1] != "0":
        return None
    prop, key = parts[2], parts[3]
    if prop not in ("userCode", "userIdStatus") or not key.isdigit() or int(key) < 1:
        return None
    return UserCodeValue(slot=int(key), prop="userCode" if prop == "userCode"
                         else "userIdStatus", value=unwrap(payload))


_KEYPAD_UNLOCK = "keypad_unlock_operation"
_CODE_CHANGES = ("new_user_code_added", "single_user_code_deleted", "user_code_changed",
                 "new_user_code_not_added_due_to_duplicate_code")
_ALL_CODES_DELETED = "all_user_codes_deleted"


def notification(parts: list[str], payload: object) -> NodeNotification | None:
    """An Access Control notification topic `113/0/Access_Control/<Event>` under a node."""
    if len(parts) != 4 or parts[0] != str(NOTIFICATION_CC) or parts[1] != "0" \
            or parts[2].lower() != "access_control":
        return None
    event = parts[3].lower()
    value = unwrap(payload)
    user = value.get("userId") if isinstance(value, dict) else None
    slot = user if isinstance(user, int) and not isinstance(user, bool) and user >= 1 else None
    detail = {"event": parts[3]}
    if event == _ALL_CODES_DELETED:
        return NodeNotification("all_slots_changed", None, detail)
    if slot is None:
        return None
    if event == _KEYPAD_UNLOCK:
        return NodeNotification("keypad_used", slot, {**detail, "source": "keypad"})
    if event in _CODE_CHANGES:
        return NodeNotification("slot_changed", slot, detail)
    return None


def _values(node: Mapping[str, object]) -> list[Mapping[str, object]]:
    values = node.get("values")
    if isinstance(values, dict):
        items = list(values.values())
    elif isinstance(values, list):
        items = values
    else:
        return []
    return [v for v in items if isinstance(v, dict)]


def node_facts(nodes: object, node_id: int) -> NodeFacts | None:
    """What `getNodes` says of one node: maker, product, slot count, PIN lengths, status."""
    if not isinstance(nodes, list):
        raise MalformedPayload("getNodes did not return a list")
    for node in nodes:
        if not isinstance(node, dict) or node.get("id") != node_id:
            continue
        slot_count = min_len = max_len = None
        for value in _values(node):
            if value.get("commandClass") != USER_CODE_CC:
                continue
            if value.get("property") == "supportedUsers" and _positive(value.get("value")):
                slot_count = int(str(value.get("value")))
            if value.get("property") == "userCode":
                if _positive(value.get("minLength")):
                    min_len = int(str(value.get("minLength")))
                if _positive(value.get("maxLength")):
                    max_len = int(str(value.get("maxLength")))
        manufacturer = node.get("manufacturer")
        product = node.get("productLabel") or node.get("productDescription")
        return NodeFacts(
            manufacturer=manufacturer if isinstance(manufacturer, str) else None,
            product=product if isinstance(product, str) else None,
            slot_count=slot_count, min_length=min_len, max_length=max_len,
            status=node_status({"status": node.get("status")}))
    return None


def _positive(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value > 0
