"""Z-Wave JS UI's MQTT gateway formats and what they mean to lockbridge: pure functions, no I/O.

Facts this module encodes (see docs/drivers/mqtt.md):

- An API call is `{"args": [...]}` published to
  `<prefix>/_CLIENTS/ZWAVE_GATEWAY-<name>/api/<api>/set`; the answer comes on the same topic
  without `/set` as `{"success", "message", "result", "origin"}`, where `origin` echoes the
  request (lockbridge adds a request id to match answers to calls).
- User Code CC is command class 99 and its slots start at 1 (its rules, shared with the direct
  Z-Wave driver, are in drivers/zwave_usercode.py). A code is written with
  `writeValue` on property `userCode` (key = slot) and cleared by writing `userIdStatus` 0 for
  that one slot. The CC's own `clear` is never used: without a slot it wipes every code.
- `sendCommand` `get` with `[slot]` asks the lock itself (not the value cache); a slot the lock
  lacks reports User ID status 254 ("status not available"): it does not exist.
- `getNodes` carries no users count: after the interview the node's defined values are
  `userIdStatus`/`userCode` for every user id 1..N (zwave-js drops a slot's values once it reports
  254); `sendCommand` `getUsersCount` asks the lock for N.
- `writeValue` answers `success: true` with a SetValueResult `{status}` for nearly every outcome:
  2 (Fail) is both a refusal under Supervision and a lock that did not acknowledge; only 0, 3, 4
  and 5 are final by themselves.
- Value topics depend on the gateway's settings: ValueID topics are
  `<prefix>/[<loc>/]<node id or name>/<cc>/<endpoint>/<property>/<key>`, Named topics
  `<prefix>/[<loc>/]<name>/<cc name>/endpoint_<n>/<property>/<key>`; payloads are a time-value
  `{"time", "value"}` (no `value` while unknown), a ValueID object, or the bare value; node status
  is `<node topic>/status`.
"""

from __future__ import annotations

import enum
import re
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
)
from drivers import zwave_usercode as usercode
from drivers.mqtt.common import MalformedPayload, encode_json, sanitized
from drivers.zwave_usercode import AccessControlEvent, UserIdStatus
from drivers.zwave_usercode import SlotMissing as SlotMissing

USER_CODE_CC = usercode.USER_CODE_CC
NOTIFICATION_CC = usercode.NOTIFICATION_CC
REQUEST_KEY = "lockbridge_request"
STATUS_AVAILABLE = UserIdStatus.AVAILABLE
STATUS_NOT_AVAILABLE = UserIdStatus.NOT_AVAILABLE

# SetValueStatus of zwave-js, as `writeValue` may return it.
_SET_VALUE_OK = frozenset({1, 254, 255})  # working, success unsupervised, success
_SET_VALUE_FAIL = 2
_SET_VALUE_UNSUPPORTED = frozenset({0, 3, 4})
_SET_VALUE_INVALID = 5
# Z-Wave JS UI's command-class names in Named topics (Constants._commandClassMap).
_NAMED_CC = {"user_code": str(USER_CODE_CC), "notification": str(NOTIFICATION_CC)}
_SUPPORTED_USERS = re.compile(r"number of supported users (\d+)")

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
    # The node's name and location in the gateway ('' when unset), which its topics follow.
    name: str | None = None
    location: str | None = None
    # User ids within 1..slot_count that the lock reported as not available (status 254).
    missing_slots: tuple[int, ...] = ()


@dataclass(frozen=True, slots=True)
class UserCodeValue:
    """A User Code CC value topic update for one slot."""

    slot: int
    prop: Literal["userCode", "userIdStatus"]
    value: object


@dataclass(frozen=True, slots=True)
class NodeNotification:
    """An Access Control notification: a keypad unlock, codes changed at the lock, or a code
    not added because the lock holds it already (`duplicate`, whose slot may be unknown)."""

    kind: Literal["keypad_used", "slot_changed", "all_slots_changed", "duplicate"]
    slot: int | None
    detail: dict[str, str] = field(default_factory=dict)


class TopicType(enum.StrEnum):
    """Z-Wave JS UI's gateway setting "Topic type" (Manual topics are not supported)."""

    VALUEID = "valueid"
    NAMED = "named"


@dataclass(frozen=True, slots=True)
class TopicLayout:
    """The gateway settings that shape a node's topics."""

    topic_type: TopicType = TopicType.VALUEID
    # "Use nodes name instead of numeric nodeIDs" (ValueID topics only; Named topics always do).
    node_names: bool = True
    # "Ignore location": no `<loc>/` before the node.
    ignore_location: bool = False


class WriteAnswer(enum.Enum):
    """What a `writeValue` answer says by itself."""

    ACCEPTED = "accepted"
    # Supervision Fail, or the lock did not acknowledge: only what follows tells which.
    FAILED = "failed"


def sanitize_topic(part: str) -> str:
    """A topic part as the gateway writes it (utils.sanitizeTopic): whitespace becomes `_`,
    anything but letters, digits, `-`, `_`, Latin-1 letters and `/` is dropped."""
    part = re.sub(r"\s", "_", part)
    return re.sub(r"[^A-Za-z0-9\-_\u00c0-\u00d6\u00d8-\u00f6\u00f8-\u00ff/]", "", part)


def node_topic(layout: TopicLayout, node_id: int, name: str | None,
               location: str | None) -> str:
    """The node's topic under the prefix (Gateway.nodeTopic): `[<loc>/]` then the node id, or
    its name (`nodeID_<id>` when unnamed)."""
    parts = [location] if location and not layout.ignore_location else []
    if layout.topic_type is TopicType.VALUEID and not layout.node_names:
        parts.append(str(node_id))
    else:
        parts.append(name or f"nodeID_{node_id}")
    return "/".join(sanitize_topic(p) for p in parts)


def node_filters(node: str, layout: TopicLayout) -> list[str]:
    """Subscriptions for the status, User Code values and Access Control notifications of the
    nodes `node` (a topic or a filter such as `<prefix>/+/+`) matches."""
    if layout.topic_type is TopicType.NAMED:
        cc_parts = ("user_code/endpoint_0", "notification/endpoint_0")
    else:
        cc_parts = (f"{USER_CODE_CC}/0", f"{NOTIFICATION_CC}/0")
    return [f"{node}/status"] + [f"{node}/{cc}/+/+" for cc in cc_parts]


def value_parts(layout: TopicLayout, parts: list[str]) -> list[str]:
    """Parts after the node topic in ValueID form (`99`, `0`, property, key)."""
    if layout.topic_type is TopicType.NAMED and len(parts) >= 2 and parts[1] == "endpoint_0":
        cc = _NAMED_CC.get(parts[0])
        if cc is not None:
            return [cc, "0", *parts[2:]]
    return parts


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


def write_code_args(node_id: int, slot: int, pin: str) -> list[object]:
    """`writeValue` arguments that put `pin` (a string) in `slot`."""
    value_id: ValueId = {"nodeId": node_id, "commandClass": USER_CODE_CC, "endpoint": 0,
                         "property": "userCode", "propertyKey": usercode.user_id(slot)}
    return [value_id, pin]


def clear_code_args(node_id: int, slot: int) -> list[object]:
    """`writeValue` arguments that free exactly `slot` (userIdStatus = available)."""
    value_id: ValueId = {"nodeId": node_id, "commandClass": USER_CODE_CC, "endpoint": 0,
                         "property": "userIdStatus", "propertyKey": usercode.user_id(slot)}
    return [value_id, STATUS_AVAILABLE]


def get_code_args(node_id: int, slot: int) -> list[object]:
    """`sendCommand` arguments that read `slot` from the lock itself."""
    context: CommandContext = {"nodeId": node_id, "commandClass": USER_CODE_CC, "endpoint": 0}
    return [context, "get", [usercode.user_id(slot)]]


def users_count_args(node_id: int) -> list[object]:
    """`sendCommand` arguments that ask the lock how many user codes it supports."""
    context: CommandContext = {"nodeId": node_id, "commandClass": USER_CODE_CC, "endpoint": 0}
    return [context, "getUsersCount", []]


def users_count(result: object) -> int | None:
    """The result of `getUsersCount`: a positive number, else None."""
    if isinstance(result, int) and not isinstance(result, bool) and result > 0:
        return result
    return None


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


def user_code_text(raw: object) -> usercode.Code | None:
    """A user code as the gateway sends it: a string, or bytes for a serialised Buffer."""
    return usercode.decode_code(raw)


def read_from_report(slot: int, status: object, code: object) -> SlotRead:
    """A slot read from a User Code status and code (drivers/zwave_usercode.py decides);
    status 254 raises SlotMissing."""
    if isinstance(status, bool) or not isinstance(status, int):
        raise MalformedPayload("userIdStatus is not a number")
    return usercode.read_slot(slot, status, usercode.decode_code(code))


class NoAnswer(RetryLater):
    """One call went unanswered: the gateway within the answer timeout, or the lock (zwave-js
    gave up waiting for its report and returned nothing)."""


def read_from_get(slot: int, result: object) -> SlotRead:
    """The result of `sendCommand` `get` for one slot; no answer from the lock is NoAnswer,
    status 254 is SlotMissing."""
    if result is None:
        raise NoAnswer("the lock did not report the slot (asleep or unreachable)")
    if not isinstance(result, dict):
        raise MalformedPayload("a User Code report is not an object")
    return read_from_report(slot, result.get("userIdStatus"), result.get("userCode"))


def check_write(result: object) -> WriteAnswer:
    """What a `writeValue` result says (a bare boolean in older gateways, a SetValueResult
    `{"status", "message"?}` in newer ones); raises what a final answer means."""
    if result is True or result is None:
        return WriteAnswer.ACCEPTED
    if result is False:
        raise RetryLater("Z-Wave JS UI could not write the value")
    if isinstance(result, dict):
        status = result.get("status")
        message = result.get("message")
        text = message if isinstance(message, str) else ""
        if isinstance(status, bool) or not isinstance(status, int) or status in _SET_VALUE_OK:
            return WriteAnswer.ACCEPTED
        if status == _SET_VALUE_FAIL:
            return WriteAnswer.FAILED
        if status == _SET_VALUE_INVALID:
            said = f" ({sanitized(text)})" if text else ""
            if "user id" in text.lower():
                raise CommandRejected(RejectReason.SLOT_OUT_OF_RANGE,
                                      "the slot does not exist on this lock" + said)
            raise CommandRejected(RejectReason.INVALID_PIN,
                                  "the lock refused the value as invalid" + said)
        if status in _SET_VALUE_UNSUPPORTED:
            raise CommandRejected(RejectReason.UNSUPPORTED, "the lock does not support user codes")
        return WriteAnswer.FAILED
    raise MalformedPayload("an unexpected writeValue result")


def supported_users(result: object) -> int | None:
    """The users count an InvalidValue answer names ("... number of supported users 8.")."""
    message = result.get("message") if isinstance(result, dict) else None
    match = _SUPPORTED_USERS.search(message) if isinstance(message, str) else None
    return int(match.group(1)) if match and int(match.group(1)) > 0 else None


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
    """The value of a time-value payload `{"time", "value"}` or of a ValueID payload, None when
    such a payload has no `value` (the gateway does not know it yet), or the bare payload."""
    if isinstance(payload, dict) and ("time" in payload or "commandClass" in payload
                                      or set(payload) == {"value"}):
        return payload.get("value")
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


def _event_topic(event: AccessControlEvent) -> str:
    """An Access Control event as the last level of its topic, lower-case."""
    return usercode.EVENT_LABELS[event].lower().replace(" ", "_")


_KEYPAD_UNLOCK = _event_topic(AccessControlEvent.KEYPAD_UNLOCK)
_DUPLICATE = _event_topic(AccessControlEvent.CODE_DUPLICATE)
_CODE_CHANGES = (_event_topic(AccessControlEvent.CODE_ADDED),
                 _event_topic(AccessControlEvent.CODE_DELETED), "user_code_changed")
_ALL_CODES_DELETED = _event_topic(AccessControlEvent.ALL_CODES_DELETED)


def notification(parts: list[str], payload: object) -> NodeNotification | None:
    """An Access Control notification topic `113/0/Access_Control/<Event>` under a node. A
    report without event parameters has no `value`: only the duplicate notice means something
    then (the lock refused the code being written)."""
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
    if event == _DUPLICATE:
        return NodeNotification("duplicate", slot, detail)
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
    """What `getNodes` says of one node: maker, product, name, location, status, PIN lengths,
    and the slots its defined User Code values show (None when it shows none yet)."""
    if not isinstance(nodes, list):
        raise MalformedPayload("getNodes did not return a list")
    for node in nodes:
        if not isinstance(node, dict) or node.get("id") != node_id:
            continue
        slot_count = min_len = max_len = None
        defined: set[int] = set()
        for value in _values(node):
            if value.get("commandClass") != USER_CODE_CC or (value.get("endpoint") or 0) != 0:
                continue
            prop, key = value.get("property"), value.get("propertyKey")
            # Older gateways exposed the users count as a value; current ones do not.
            if prop == "supportedUsers" and _positive(value.get("value")):
                slot_count = int(str(value.get("value")))
            if prop in ("userIdStatus", "userCode") and _positive(key):
                defined.add(int(str(key)))
            if prop == "userCode":
                if _positive(value.get("minLength")):
                    min_len = int(str(value.get("minLength")))
                if _positive(value.get("maxLength")):
                    max_len = int(str(value.get("maxLength")))
        missing: tuple[int, ...] = ()
        if slot_count is None and defined:
            # zwave-js defines both values of every user id 1..N at the interview and drops
            # them for a slot that reports "status not available".
            slot_count = max(defined)
            missing = tuple(s for s in range(1, slot_count + 1) if s not in defined)
        manufacturer = node.get("manufacturer")
        product = node.get("productLabel") or node.get("productDescription")
        name, location = node.get("name"), node.get("loc")
        return NodeFacts(
            manufacturer=manufacturer if isinstance(manufacturer, str) else None,
            product=product if isinstance(product, str) else None,
            slot_count=slot_count, min_length=min_len, max_length=max_len,
            status=node_status({"status": node.get("status")}),
            name=name if isinstance(name, str) else None,
            location=location if isinstance(location, str) else None,
            missing_slots=missing)
    return None


def _positive(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value > 0
