"""A fake Z-Wave JS UI MQTT gateway: lock nodes with user code tables behind its MQTT API.

Everything here follows the published sources, never lockbridge's driver. Each behaviour cites
where it comes from; the tags mean (read at these commits, 2026-12-01):

- ZUI = github.com/zwave-js/zwave-js-ui @cd01655a (v11.22.2, zwave-js 15.27):
  `MqttClient` api/lib/MqttClient.ts, `Gateway` api/lib/Gateway.ts, `ZwaveClient`
  api/lib/ZwaveClient.ts, `utils` api/lib/utils.ts, `settings` src/stores/base.js (the defaults
  the UI saves), `docs/mqtt` docs/guide/mqtt.md, `docs/setup` docs/usage/setup.md.
- ZJS = github.com/zwave-js/node-zwave-js @13317212 (2025-03-01): `UserCodeCC`
  packages/cc/src/cc/UserCodeCC.ts, `NotificationCC` packages/cc/src/cc/NotificationCC.ts,
  `Notifications` packages/core/src/registries/Notifications.ts, `SetValueResult`
  packages/cc/src/lib/SetValueResult.ts, `Supervision` packages/core/src/definitions/
  Supervision.ts, `NodeStatus` packages/core/src/definitions/NodeStatus.ts, `Node`
  packages/zwave-js/src/lib/node/Node.ts, `Driver` packages/zwave-js/src/lib/driver/Driver.ts,
  `StateMachineShared` (same folder), `ScheduledPoll` packages/zwave-js/src/lib/node/mixins/
  60_ScheduledPoll.ts, `API` packages/cc/src/lib/API.ts, `ValueDB` packages/core/src/values/
  ValueDB.ts.

What the fake does (the awkward parts first):

- API calls on `<prefix>/_CLIENTS/ZWAVE_GATEWAY-<name>/api/<api>/set`, answered on the same
  topic without `/set` with `{success, message, result?, args, origin}`; `result` is absent
  when undefined (a failure, or a command that returned nothing).
- `writeValue` answers `success: true` for nearly every failure: the result is a
  SetValueResult `{status: N}` (0 NoDeviceSupport, 1 Working, 2 Fail, 3 EndpointNotFound,
  4 NotImplemented, 5 InvalidValue, 254 SuccessUnsupervised, 255 Success). A refusal under
  Supervision and a lock that did not acknowledge (zwave-js marks it Dead) both read
  `{status: 2}` with no message; only 3/4/5 carry one (e.g. a slot beyond the users count).
- `getNodes` carries the node's defined values only: after the interview these are
  `userIdStatus-N` / `userCode-N` for N = 1..supported users, defined by metadata, *without a
  value* (zwave-js does not query the codes unless `queryAllUserCodes`). `supportedUsers` is
  internal and never among them; ask `sendCommand` `getUsersCount`.
- Writes: supervised success publishes the written value only; anything else (unsupervised,
  Fail, NoDeviceSupport) is verified by a User Code Get about a second later, which publishes
  both values. Unsupervised writes are *also* published at once, optimistically, with the
  value's old timestamp (Z-Wave JS UI sets `emitValueUpdateAfterSetValue`), even when the lock
  then ignores them. Keypad programming publishes only the notification.
- User ID status 254 ("status not available") removes both values of the slot without a
  publication; a later write there is sent to the lock, which refuses it.
- Until the driver is ready every API answers `Z-Wave client not connected`; node status can be
  `Unknown` (its `value`, the node's `available`, is then true).

Not published, or the sources disagree (the fake's choice in brackets):

- How a lock answers a Get or Set for a user id it lacks: the Z-Wave User Code CC
  specification has it report status 0xFE, but that text is not among the sources read [report
  254 with no code; refuse a Set: Supervision Fail, or ignore it when unsupervised].
- A lock's own code rules (lengths beyond zwave-js' 4..10, digits only, duplicates) and whether
  it refuses under Supervision or notifies [refuse under Supervision; without Supervision (or
  `silent_duplicates`) ignore it and send event 0x0f a moment later].
- The wording of @validateArgs errors (generated code) [a short text of the fake's own, status
  InvalidValue]. Values other than User Code's userIdStatus/userCode, other CCs [Fail].
- Which endpoint-0 default the Named layout uses: docs/setup says `endpoint_<n>` only for
  endpoints other than 0; Gateway.valueTopic always adds it [the code].
- Node status value: docs/mqtt says `true` when the node is ready; Gateway publishes
  `available` [the code]. Default topic part: docs/setup says ValueID topics use the node id;
  the UI default `nodeNames: true` makes it the name, or `nodeID_<id>` [the defaults the UI
  saves; `node_names=False` gives the numeric id].
- The backend without saved settings has MQTT disabled (api/config/store.ts); the defaults are
  those the settings page saves (src/stores/base.js). Older releases (zwavejs2mqtt) named the
  client differently [current: `zwave-js-ui`].
- Fields of getNodes beyond id, name, loc, status, ready, available, values and the value
  metadata: trimmed; the controller node's entry is minimal.

Public helper API (what tests use):

- `FakeNode(node_id, slot_count=10, ...)`: one lock. Old fields keep their meaning where they
  still can: `codes`, `applied`, `applied_sets()`, `wiped`, `status`, `stall` (the gateway never
  answers calls for this node), `masks`, `rejects_duplicates`, `silent_duplicates`,
  `min_length`/`max_length` (the lock's own limits; zwave-js itself only checks 4..10),
  `refuse` (each entry makes the lock refuse one write: `{status: 2}` for writeValue, since a
  Fail carries no message the text is dropped; an entry `"noack"` makes it not acknowledge).
  New: `name`, `loc`, `supervised` (True: the lock answers Supervision), `cc_version`,
  `unavailable_slots` (slots <= slot_count reporting status 254), `reachable` (False: no ACK),
  `ready`, `statuses`, `duplicate_params` (False: event 15 without parameters, as some Yale
  locks send it), `next_results` (forced Supervision outcomes: "success", "working", "fail",
  "no_support", "noack"), `unanswered_slots` (users whose User Code Get gets no report: the
  API answers success without a result after `report_timeout_s`).
- `FakeZwaveJsUI(host, port, prefix="zwave", name="zwave-js-ui", nodes, *, ...)` with switches:
  `echo_origin` (True, as the gateway always does), `gateway_type` ("valueid" default, "named"),
  `node_names` (True, the UI default), `ignore_loc`, `payload_type` ("time_value" default,
  "valueid", "raw"), `include_node_info`, `ignore_status`, `retain` (True), `boot_s` (the
  driver is not ready for that long after the first connection), `query_all_user_codes`,
  `verify_delay_s` (1.0, zwave-js' refreshValueAfterTransition), `publish_values_on_ready`
  (True), `republish_on_reconnect` (False: the gateway publishes node states on change only),
  `include_controller` (True: getNodes lists controller node 1 as the gateway does).
- Helpers: `node()`, `keypad_set()`, `keypad_clear()`, `keypad_unlock()`, `keypad_duplicate()`,
  `notify()`, `set_status()`, `set_driver_ready()`, `publish_raw()`, `clears_without_slot()`,
  `node_topic()`, `value_topic()`, `notification_topic()`, `status_topic()`, `api_topic()`,
  `calls`, `after_apply`, `driver_ready`.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import math
import re
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, TypeGuard

import aiomqtt

from drivers.simulator.lock import SEEN_PINS
from drivers.tasks import cancel_and_wait
from tests.fakes.peer import MqttPeer

# ZUI settings (src/stores/base.js, `mqtt`): name 'zwave-js-ui', prefix 'zwave', qos 1,
# retain true. (docs/mqtt's examples use `zwave` as prefix too.)
DEFAULT_NAME = "zwave-js-ui"
DEFAULT_PREFIX = "zwave"
# ZUI package.json of the commit read; published on `<client>/version` (MqttClient.publishVersion).
VERSION = "11.22.2"

# ZJS SetValueResult: SetValueStatus.
NO_DEVICE_SUPPORT, WORKING, FAIL, ENDPOINT_NOT_FOUND = 0x00, 0x01, 0x02, 0x03
NOT_IMPLEMENTED, INVALID_VALUE, SUCCESS_UNSUPERVISED, SUCCESS = 0x04, 0x05, 0xFE, 0xFF
# ZJS UserCodeCC (lib/_Types.ts UserIDStatus): Available 0, Enabled 1, Disabled 2, Messaging 3,
# PassageMode 4, StatusNotAvailable 0xfe.
USER_ID_STATUSES = {0: "Available", 1: "Enabled", 2: "Disabled", 3: "Messaging",
                    4: "PassageMode"}
STATUS_NOT_AVAILABLE = 0xFE
# ZJS NodeStatus: Unknown, Asleep, Awake, Dead, Alive.
NODE_STATUSES = ("Unknown", "Asleep", "Awake", "Dead", "Alive")
# ZJS Notifications registry, Access Control (0x06) events used here.
ACCESS_CONTROL = "Access Control"
KEYPAD_LOCK = "Keypad lock operation"  # 0x05
KEYPAD_UNLOCK = "Keypad unlock operation"  # 0x06
ALL_CODES_DELETED = "All user codes deleted"  # 0x0c
CODE_DELETED = "Single user code deleted"  # 0x0d
CODE_ADDED = "New user code added"  # 0x0e
CODE_DUPLICATE = "New user code not added due to duplicate code"  # 0x0f
# ZUI ZwaveClient.callApi.
NOT_CONNECTED = "Z-Wave client not connected"
# ZJS StateMachineShared (callback NOK, TransmitStatus.NoAck), Driver default attempts.sendData 3.
NO_ACK = "Failed to send the command after 3 attempts (Status NoAck)"

_UNDEF: Any = object()  # JavaScript's undefined: omitted from JSON


@dataclass
class FakeNode:
    """One lock node: what the lock holds (`codes`, `statuses`) and how it answers."""

    node_id: int
    slot_count: int = 10
    min_length: int = 4
    max_length: int = 10
    manufacturer: str = "Kwikset"
    product: str = "916"
    masks: bool = False
    rejects_duplicates: bool = True
    # Take a duplicate PIN's write without a word, then say so only in a notification (as
    # locks without Supervision do): the write is answered as unsupervised (254).
    silent_duplicates: bool = False
    codes: dict[int, str] = field(default_factory=dict)
    status: str = "Alive"
    stall: bool = False
    refuse: deque[str] = field(default_factory=deque)
    # Every write the lock applied: (slot, pin or None for a clear).
    applied: list[tuple[int, str | None]] = field(default_factory=list)
    wiped: int = 0
    name: str = ""
    loc: str = ""
    supervised: bool = True
    cc_version: int = 1
    unavailable_slots: set[int] = field(default_factory=set)
    reachable: bool = True
    ready: bool = True
    # Non-default user ID statuses (Disabled, Messaging, ...); default: Enabled if a code is set.
    statuses: dict[int, int] = field(default_factory=dict)
    duplicate_params: bool = True
    next_results: deque[str] = field(default_factory=deque)
    # Users whose User Code Get the lock never answers (its report is lost every time).
    # zwave-js waits its report timeout (ZJS Driver: `timeouts.report`, 1000 ms by default)
    # and then `sendCommand` returns nothing ("If the command expects no response **or** the
    # response times out, nothing will be returned"), so UserCodeCCAPI.get returns undefined
    # (`if (!response) return;`) and no value is touched.
    unanswered_slots: set[int] = field(default_factory=set)
    report_timeout_s: float = 1.0

    def __post_init__(self) -> None:
        if self.status == "Dead":
            self.reachable = False  # as `set_status`: a node created Dead does not ACK

    def applied_sets(self, slot: int) -> list[str | None]:
        """What was applied to one slot, in order."""
        return [pin for s, pin in self.applied if s == slot]

    @property
    def topic(self) -> str:
        """The node's topic in the default layout (ValueID topics, node names on, location
        kept): `[<loc>/]<name or nodeID_<id>>` (ZUI Gateway.nodeTopic)."""
        parts = [self.loc] if self.loc else []
        parts.append(self.name or f"nodeID_{self.node_id}")
        return "/".join(sanitize_topic(p) for p in parts)

    @property
    def available(self) -> bool:
        """ZUI ZwaveClient (node status update): `available = status !== NodeStatus.Dead`."""
        return self.status != "Dead"

    def report(self, slot: int) -> tuple[int, str]:
        """The lock's User Code Report for `slot`: (status, code). A slot it lacks reports
        254 with no code (Z-Wave User Code CC spec; not in the sources read: see module notes)."""
        if slot in self.unavailable_slots or not 1 <= slot <= self.slot_count:
            return STATUS_NOT_AVAILABLE, ""
        pin = self.codes.get(slot)
        status = self.statuses.get(slot, 1 if pin else 0)
        if not pin or status == 0:
            return status, ""
        return status, "*" * len(pin) if self.masks else pin


@dataclass
class _Value:
    """The gateway's copy of one value (zwave-js' value DB as Z-Wave JS UI mirrors it)."""

    value: Any = _UNDEF
    ts: int | None = None


class FakeZwaveJsUI(MqttPeer):
    """The gateway `ZWAVE_GATEWAY-<name>` under `prefix`."""

    def __init__(self, host: str, port: int, prefix: str = DEFAULT_PREFIX,
                 name: str = DEFAULT_NAME, nodes: list[FakeNode] | None = None, *,
                 echo_origin: bool = True, gateway_type: str = "valueid",
                 node_names: bool = True, ignore_loc: bool = False,
                 payload_type: str = "time_value", include_node_info: bool = False,
                 ignore_status: bool = False, retain: bool = True, boot_s: float = 0.0,
                 query_all_user_codes: bool = False, verify_delay_s: float = 1.0,
                 publish_values_on_ready: bool = True, republish_on_reconnect: bool = False,
                 include_controller: bool = True) -> None:
        if gateway_type not in ("valueid", "named"):
            raise ValueError(f"gateway_type {gateway_type!r}: 'valueid' or 'named'")
        if payload_type not in ("time_value", "valueid", "raw"):
            raise ValueError(f"payload_type {payload_type!r}")
        self.prefix = prefix
        self.name = name
        # ZUI MqttClient._init: clientId = sanitizeTopic('ZWAVE_GATEWAY-' + name).
        self.client_id_name = sanitize_topic(f"ZWAVE_GATEWAY-{name}")
        self.client_topic = f"{prefix}/_CLIENTS/{self.client_id_name}"
        self.retain = retain
        # ZUI MqttClient._init: the will is `{value: false}` (no time) on the status topic, with
        # the configured qos and retain.
        will = aiomqtt.Will(f"{self.client_topic}/status", json.dumps({"value": False}),
                            qos=1, retain=retain)
        super().__init__(host, port, self.client_id_name, will=will)
        self.nodes = {node.node_id: node for node in (nodes or [])}
        self.echo_origin = echo_origin
        self.gateway_type = gateway_type
        self.node_names = node_names
        self.ignore_loc = ignore_loc
        self.payload_type = payload_type
        self.include_node_info = include_node_info
        self.ignore_status = ignore_status
        self.boot_s = boot_s
        self.query_all_user_codes = query_all_user_codes
        self.verify_delay_s = verify_delay_s
        self.publish_values_on_ready = publish_values_on_ready
        self.republish_on_reconnect = republish_on_reconnect
        self.include_controller = include_controller
        self.calls: list[tuple[str, list[Any]]] = []
        # Called after a node applied a write, before the gateway answers.
        self.after_apply: Callable[[int, int, str | None], None] | None = None
        self.driver_ready = False
        self._view: dict[int, dict[tuple[str, int], _Value]] = {}
        self._topic_values: dict[str, tuple[int, str, int]] = {}
        self._levels: set[int] = set()
        self._tasks: set[asyncio.Task[None]] = set()
        self._booted = False

    # -- what tests do --------------------------------------------------------------------

    def node(self, node_id: int) -> FakeNode:
        """A node by id."""
        return self.nodes[node_id]

    async def stop(self) -> None:
        """Disconnect for good, dropping pending verification reads."""
        for task in list(self._tasks):
            await cancel_and_wait(task)
        await super().stop()

    async def keypad_set(self, node_id: int, slot: int, pin: str) -> None:
        """A code programmed at the keypad: the lock stores it and sends Access Control event
        0x0e whose parameters are a User Code Report, which zwave-js turns into `{userId}`
        (ZJS NotificationCC.persistValues -> UserCodeCCReport.toNotificationEventParameters).
        The embedded report is parsed, not persisted, so no value topic changes."""
        node = self.nodes[node_id]
        SEEN_PINS.add(pin)
        node.codes[slot] = pin
        node.statuses.pop(slot, None)
        await self.notify(node_id, CODE_ADDED, {"userId": slot})

    async def keypad_clear(self, node_id: int, slot: int) -> None:
        """A code deleted at the keypad: event 0x0d `{userId}`, no value topic."""
        node = self.nodes[node_id]
        node.codes.pop(slot, None)
        node.statuses.pop(slot, None)
        await self.notify(node_id, CODE_DELETED, {"userId": slot})

    async def keypad_unlock(self, node_id: int, slot: int) -> None:
        """Someone opens the door with the code in `slot` (event 0x06 `{userId}`)."""
        await self.notify(node_id, KEYPAD_UNLOCK, {"userId": slot})

    async def keypad_duplicate(self, node_id: int, slot: int,
                               with_params: bool | None = None) -> None:
        """The lock says it did not add a code because it is a duplicate (event 0x0f). With
        `with_params` False (default: the node's `duplicate_params`) the report carries no
        event parameters, so `value` is missing from the payload (see `notify`)."""
        node = self.nodes[node_id]
        params = node.duplicate_params if with_params is None else with_params
        await self.notify(node_id, CODE_DUPLICATE, {"userId": slot} if params else _UNDEF)

    async def notify(self, node_id: int, event: str, parameters: Any = _UNDEF,
                     label: str = ACCESS_CONTROL) -> None:
        """A Notification CC event as the gateway publishes it.

        ZUI ZwaveClient._onNodeNotification: valueId {commandClass 113, property: label,
        propertyKey: eventLabel} with no endpoint, data = args.parameters; Gateway._onNotification
        publishes `{time: Date.now(), value: data}` (retain false) on the value topic. A report
        without event parameters leaves `parameters` undefined (ZJS NotificationCC.from only sets
        them when numEventParams > 0 and persistValues returns early for a non-buffer), and
        JSON.stringify drops an undefined member: the payload is then `{"time": ...}` alone.
        Pass no `parameters` for that case."""
        node = self.nodes[node_id]
        topic = self.notification_topic(node, event, label)
        data: Any
        if self.payload_type == "raw":
            data = parameters
        else:
            data = {"time": _now()}
            if parameters is not _UNDEF:
                data["value"] = parameters
        await self._publish(topic, data, retain=False)

    async def set_status(self, node_id: int, status: str) -> None:
        """The node goes Dead (or comes back Alive, or is Unknown...). Dead also makes the lock
        unreachable (it will not ACK) and Alive reachable again, as the previous fake implied."""
        if status not in NODE_STATUSES:
            raise ValueError(f"status {status!r}: one of {NODE_STATUSES}")
        node = self.nodes[node_id]
        node.status = status
        if status == "Dead":
            node.reachable = False
        elif status in ("Alive", "Awake"):
            node.reachable = True
        await self._node_status(node)

    async def set_driver_ready(self, ready: bool) -> None:
        """The Z-Wave driver becomes ready (nodes publish status and values) or goes away (API
        calls answer `Z-Wave client not connected`). Gateway._onDriverStatus publishes
        `<prefix>/driver/status` true/false."""
        self.driver_ready = ready
        await self._publish(f"{self.prefix}/driver/status", ready, retain=self.retain)
        if ready:
            for node in self.nodes.values():
                await self._node_ready(node)

    async def publish_raw(self, topic: str, payload: bytes | str) -> None:
        """Anything at all, for malformed-payload tests."""
        await self.publish(topic, payload)

    def clears_without_slot(self) -> int:
        """How often someone asked User Code CC `clear` for every code."""
        return sum(1 for api, args in self.calls if api == "sendCommand" and len(args) >= 2
                   and args[1] == "clear" and (len(args) < 3 or not args[2] or not args[2][0]))

    # -- topics ---------------------------------------------------------------------------

    def api_topic(self, api: str) -> str:
        """Where `api` is called (`.../set`) and answered (docs/mqtt, Z-Wave APIs)."""
        return f"{self.client_topic}/api/{api}"

    def node_topic(self, node: FakeNode | int) -> str:
        """ZUI Gateway.nodeTopic: `[loc/]` then, for ValueID topics, the node id, or with
        `nodeNames` the name (`nodeID_<id>` when unnamed); Named topics always use the name.
        Every part goes through utils.sanitizeTopic (which keeps `/`)."""
        node = self.nodes[node] if isinstance(node, int) else node
        parts: list[str] = []
        if node.loc and not self.ignore_loc:
            parts.append(node.loc)
        if self.gateway_type == "valueid" and not self.node_names:
            parts.append(str(node.node_id))
        else:
            parts.append(node.name or f"nodeID_{node.node_id}")
        return "/".join(sanitize_topic(p) for p in parts)

    def status_topic(self, node: FakeNode | int) -> str:
        """`<prefix>/<node topic>/status` (Gateway._onNodeStatus)."""
        return f"{self.prefix}/{self.node_topic(node)}/status"

    def value_topic(self, node: FakeNode | int, command_class: int, prop: str | int,
                    key: str | int | None = None, endpoint: int = 0) -> str:
        """ZUI Gateway.valueTopic. ValueID topics: `[loc/]<nodeId | name>/<cc>/<endpoint>/
        <property>[/<propertyKey>]`. Named topics: `[loc/]<name>/<cc name>/endpoint_<n>/
        <propertyName>[/<propertyKey>]`; docs/setup says the endpoint part is only there for
        endpoints other than 0, but the code always adds `endpoint_<n>`: the code wins here.
        Property and key go through removeSlash, then every part through sanitizeTopic."""
        node = self.nodes[node] if isinstance(node, int) else node
        parts: list[str | int] = []
        if self.gateway_type == "named":
            parts += [node.name or f"nodeID_{node.node_id}", _CC_NAMES.get(
                command_class, f"unknownClass_{command_class}"), f"endpoint_{endpoint}"]
        else:
            parts.append(node.name or f"nodeID_{node.node_id}" if self.node_names
                         else node.node_id)
            parts += [command_class, endpoint or "0"]
        parts.append(_remove_slash(prop))
        if key is not None:
            parts.append(_remove_slash(key))
        if node.loc and not self.ignore_loc:
            parts.insert(0, node.loc)
        return f"{self.prefix}/" + "/".join(sanitize_topic(p) for p in parts)

    def notification_topic(self, node: FakeNode | int, event: str,
                           label: str = ACCESS_CONTROL) -> str:
        """A Notification CC event's topic: property = notification label, key = event label
        (ZUI ZwaveClient._onNodeNotification, docs/mqtt 'Node notifications'), endpoint 0."""
        return self.value_topic(node, 113, label, event)

    # -- MQTT -----------------------------------------------------------------------------

    async def on_connected(self) -> None:
        # ZUI MqttClient._onConnect: subscribe `<prefix>/_CLIENTS/<id>/{broadcast,api,multicast}/#`
        # (and homeassistant/status), publish the version, then the status {value: true, time}.
        await self.subscribe(f"{self.client_topic}/api/#")
        # mqtt.js resubscribes on reconnect the value write topics (Gateway._onValueChanged).
        for levels in sorted(self._levels):
            await self.subscribe(f"{self.prefix}/" + "+/" * levels + "set")
        await self.publish(f"{self.client_topic}/version",
                           {"value": VERSION, "time": _now()}, retain=self.retain)
        await self.publish(f"{self.client_topic}/status", {"value": True, "time": _now()},
                           retain=self.retain)
        if not self._booted:
            self._booted = True
            if self.boot_s > 0:
                self._spawn(self._boot_later())
            else:
                await self.set_driver_ready(True)
        elif self.republish_on_reconnect and self.driver_ready:
            for node in self.nodes.values():
                await self._node_status(node)

    async def _later(self, delay: float, action: Callable[[], Any]) -> None:
        await asyncio.sleep(delay)
        await action()

    async def _boot_later(self) -> None:
        await asyncio.sleep(self.boot_s)
        await self.set_driver_ready(True)

    async def on_message(self, topic: str, payload: bytes) -> None:
        if not topic.endswith("/set"):
            return
        if topic.startswith(f"{self.client_topic}/api/"):
            await self._api_request(topic[:-len("/set")], _parse_mqtt_payload(payload))
        else:
            await self._write_request(topic[len(self.prefix) + 1:-len("/set")],
                                      _parse_mqtt_payload(payload))

    async def _api_request(self, topic: str, request: Any) -> None:
        # ZUI MqttClient._onMessageReceived: the API name is the part after `api/`.
        api = topic[len(f"{self.client_topic}/api/"):].split("/")[0]
        # ZUI Gateway._onApiRequest: `payload.args || []`; a JSON null payload throws there
        # (nothing is answered); an array must be an array, else 'Args must be an array'.
        if request is None:
            return
        args = request.get("args", _UNDEF) if isinstance(request, dict) else _UNDEF
        if args is _UNDEF or not _js_truthy(args):
            args = []
        if not isinstance(args, list):
            answer: dict[str, Any] = {"success": False, "message": "Args must be an array"}
            if self.echo_origin:
                answer["origin"] = request
            await self._publish(topic, answer, retain=False)
            return
        self.calls.append((api, args))
        node = self._node_of(api, args)
        if node is not None and node.stall:
            return
        # ZUI ZwaveClient.callApi: errors become {success: false, message}; success carries
        # 'Success zwave api call' and the result; `args` is always added.
        result: Any = _UNDEF
        try:
            if not self.driver_ready:
                raise _Failure(NOT_CONNECTED)
            result = await self._call(api, args)
        except _Failure as exc:
            answer = {"success": False, "message": str(exc)}
        else:
            answer = {"success": True, "message": "Success zwave api call"}
            if result is not _UNDEF:
                answer["result"] = result
        answer["args"] = args
        if self.echo_origin:
            answer["origin"] = request
        await self._publish(topic, answer, retain=False)

    async def _call(self, api: str, args: list[Any]) -> Any:
        if api == "getNodes":
            nodes = [self._node_json(n) for n in self.nodes.values()]
            if self.include_controller and 1 not in self.nodes:
                nodes.insert(0, _controller_json())
            return nodes
        if api == "writeValue":
            return await self._write_value(args)
        if api == "sendCommand":
            return await self._send_command(args)
        if api == "pingNode":
            return await self._ping(args)
        # ZUI ZwaveClient.callApi: a name outside allowedApis.
        raise _Failure("Unknown API")

    # -- writeValue (ZUI ZwaveClient.writeValue, ZJS Node.setValue) --------------------------

    async def _write_value(self, args: list[Any]) -> Any:
        value_id = args[0] if args else _UNDEF
        value = args[1] if len(args) > 1 else _UNDEF
        # ZwaveClient.writeValue computes the value id string before its try block, so a
        # missing value id is a thrown TypeError (success false) rather than a Fail result.
        if value_id is _UNDEF or value_id is None:
            kind = "undefined" if value_id is _UNDEF else "null"
            raise _Failure(f"Cannot read properties of {kind} (reading 'commandClass')")
        # Anything thrown inside (unknown node, NoAck, errors zwave-js does not map) is caught
        # and logged; the result stays {status: Fail}.
        if not isinstance(value_id, dict):
            return {"status": FAIL}
        node_id = value_id.get("nodeId")
        node = self.nodes.get(node_id) if _is_int(node_id) else None
        if node is None:
            return {"status": FAIL}
        # writeValue coerces strings for number-typed value ids, and 0x-hex strings to buffers.
        if value_id.get("type") == "number" and isinstance(value, str):
            value = _js_number(value)
        if isinstance(value, str) and re.fullmatch(r"0x([a-fA-F0-9]{2})+", value):
            value = bytes.fromhex(value[2:])
        try:
            return await self._set_value(node, value_id, value)
        except _NoAck:
            return {"status": FAIL}

    async def _set_value(self, node: FakeNode, value_id: dict[str, Any], value: Any) -> Any:
        endpoint = value_id.get("endpoint") or 0
        if endpoint != 0:
            # ZJS Node.setValue: no such endpoint.
            return {"status": ENDPOINT_NOT_FOUND,
                    "message": f"Endpoint {endpoint} does not exist on Node {node.node_id}"}
        if value_id.get("commandClass") != 99:
            # Other CCs are not modelled; the most conservative answer is a plain Fail.
            return {"status": FAIL}
        prop, key = value_id.get("property"), value_id.get("propertyKey")
        try:
            # ZJS UserCodeCCAPI[SET_VALUE]: the argument checks (throwMissingPropertyKey, ...)
            # raise Argument_Invalid, which Node.setValue maps to InvalidValue with the message.
            slot, status, code = self._user_code_set_args(node, prop, key, value)
            if status == 0:
                self._check_clear(node, slot)
            else:
                self._check_set(node, slot, status, code)
        except _InvalidValue as exc:
            return {"status": INVALID_VALUE, "message": str(exc)}
        except _Unhandled:
            return {"status": FAIL}
        prop = str(prop)
        result = await self._transmit_set(node, slot, status, code)
        succeeded = result is not None and result["status"] in (WORKING, SUCCESS)
        # ZJS Node.setValue: the value is updated optimistically when the call was unsupervised
        # or succeeded; with emitValueUpdateAfterSetValue (ZUI ZwaveClient sets it true) the
        # update is an event, published by the gateway. The timestamp only moves for a
        # supervised success (`updateTimestamp = supervisedCommandSucceeded(result)`).
        if result is None or succeeded:
            self._store(node, prop, slot, value if not isinstance(value, bytes)
                        else "0x" + value.hex(), touch=succeeded)
            await self._publish_value(node, prop, slot)
        # ZJS UserCodeCCAPI[SET_VALUE]: "Verify the change after a short delay, unless the
        # command was supervised and successful": schedulePoll(..., {transition: 'fast'}),
        # i.e. refreshValueAfterTransition = 1000 ms (Driver defaults); the poll is a User
        # Code Get whose report updates userIdStatus and userCode.
        if not succeeded:
            self._spawn(self._verify(node, slot))
        if result is None:
            return {"status": SUCCESS_UNSUPERVISED}  # ZJS supervisionResultToSetValueResult
        return result

    def _user_code_set_args(self, node: FakeNode, prop: Any, key: Any,
                            value: Any) -> tuple[int, int, Any]:
        """ZJS UserCodeCCAPI[SET_VALUE]: (slot, user id status, code) to send."""
        if prop not in ("userIdStatus", "userCode"):
            if prop in ("keypadMode", "adminCode", "masterCode"):
                raise _Unhandled  # V2 values: not modelled
            raise _InvalidValue(f'User Code: "{prop}" is not a supported property')
        if key is None:
            raise _InvalidValue(
                f'User Code: property "{prop}" requires a property key, but none was given')
        if not _is_int(key):
            raise _InvalidValue(
                f'User Code: "{key}" is not a supported property key for property "{prop}"')
        if prop == "userIdStatus":
            if not _is_number(value):
                raise _InvalidValue(f'User Code: "userIdStatus" must be of type "number", '
                                    f'received "{_js_typeof(value)}"')
            if value == 0:
                return key, 0, None
            # Any other status is set together with the code the gateway knows.
            known = self._view.get(node.node_id, {}).get(("userCode", key))
            code = known.value if known is not None else _UNDEF
            if int(value) not in USER_ID_STATUSES or not isinstance(code, str | bytes):
                # @validateArgs on UserCodeCCAPI.set rejects a status outside the enum (or
                # Available/StatusNotAvailable) and a missing code with Argument_Invalid; its
                # exact wording is generated, not published: this text is the fake's own.
                raise _InvalidValue("set(): invalid userIdStatus or userCode argument")
            return key, int(value), code
        if not isinstance(value, str | bytes):
            raise _InvalidValue(f'User Code: "userCode" must be of type "string or Buffer", '
                                f'received "{_js_typeof(value)}"')
        known = self._view.get(node.node_id, {}).get(("userIdStatus", key))
        status = known.value if known is not None else _UNDEF
        # Available (or unknown) becomes Enabled.
        if status is _UNDEF or status == 0 or status not in USER_ID_STATUSES:
            status = 1
        return key, status, value

    def _check_set(self, node: FakeNode, slot: int, status: int, code: Any) -> None:
        """ZJS UserCodeCCAPI.set / setMany and the UserCodeCCSet constructor checks."""
        if slot > 255:
            self._check_set_many(node, slot)
        elif slot > node.slot_count:
            raise _InvalidValue("The user ID must be between 0 and the number of supported "
                                f"users {node.slot_count}.")
        if slot < 0:
            raise _InvalidValue("UserCodeCCSet: The user ID must be between greater than 0.")
        if not 4 <= len(code) <= 10:
            unit = "characters" if isinstance(code, str) else "bytes"
            raise _InvalidValue(
                f"UserCodeCCSet: The user code must have a length of 4 to 10 {unit}")

    def _check_clear(self, node: FakeNode, slot: int) -> None:
        """ZJS UserCodeCCAPI.clear: V2 (or slot > 255) goes through setMany."""
        if node.cc_version > 1 or slot > 255:
            self._check_set_many(node, slot)
        elif slot > node.slot_count:
            raise _InvalidValue("The user ID must be between 0 and the number of supported "
                                f"users {node.slot_count}.")

    def _check_set_many(self, node: FakeNode, slot: int) -> None:
        if node.cc_version < 2:
            # assertSupportsCommand throws CC_NotSupported, which Node.setValue does not map:
            # rethrown, caught by ZUI -> {status: Fail}; sendCommand shows the message.
            raise _Unhandled(f"Node #{node.node_id} does not support the command "
                             "ExtendedUserCodeSet!")
        if slot < 0 or slot > node.slot_count:
            raise _InvalidValue("All User IDs must be between 0 and the number of supported "
                                f"users {node.slot_count}.")

    async def _transmit_set(self, node: FakeNode, slot: int, status: int,
                            code: Any) -> dict[str, Any] | None:
        """Send a User Code Set; the SupervisionResult (None when unsupervised)."""
        forced = node.next_results.popleft() if node.next_results else None
        if forced is None and node.refuse:
            entry = node.refuse.popleft()
            forced = "noack" if entry.lower() == "noack" else "fail"
        await self._reach(node, forced == "noack")
        if forced in ("fail", "no_support"):
            return {"status": FAIL if forced == "fail" else NO_DEVICE_SUPPORT}
        outcome = self._lock_apply(node, slot, status, code)
        supervised = node.supervised
        if outcome == "duplicate":
            if node.silent_duplicates or not node.supervised:
                # The lock ACKs, drops the code and says so in its own report a moment later.
                supervised = False
                self._spawn(self._later(0.05, lambda: self.keypad_duplicate(node.node_id, slot)))
            else:
                return {"status": FAIL}
        elif outcome == "refused":
            return {"status": FAIL} if supervised else None
        elif self.after_apply is not None:
            self.after_apply(node.node_id, slot, node.codes.get(slot))
        if not supervised:
            return None
        if forced == "working":
            # ZJS Supervision: Working carries remainingDuration (Duration.toJSON).
            return {"status": WORKING, "remainingDuration": {"value": 1, "unit": "seconds"}}
        return {"status": SUCCESS}

    def _lock_apply(self, node: FakeNode, slot: int, status: int, code: Any) -> str:
        """What the lock does with a User Code Set it received: 'applied', 'refused' or
        'duplicate'. A lock's own rules (lengths, slots it lacks, duplicates) are not in the
        sources; the lock refuses what it cannot store."""
        if slot != 0 and (slot in node.unavailable_slots or slot > node.slot_count):
            return "refused"
        if status == 0:
            if slot == 0:
                node.wiped += 1
                node.codes.clear()
                node.statuses.clear()
            else:
                node.codes.pop(slot, None)
                node.statuses.pop(slot, None)
                node.applied.append((slot, None))
            return "applied"
        pin = code if isinstance(code, str) else code.decode("latin-1")
        # (A masked code the gateway re-sends with a status change is not digits: refused.)
        if not pin.isdigit() or not node.min_length <= len(pin) <= node.max_length:
            return "refused"
        if node.rejects_duplicates and any(p == pin and s != slot
                                           for s, p in node.codes.items()):
            return "duplicate"
        SEEN_PINS.add(pin)
        node.codes[slot] = pin
        node.applied.append((slot, pin))
        if status == 1:
            node.statuses.pop(slot, None)
        else:
            node.statuses[slot] = status
        return "applied"

    async def _reach(self, node: FakeNode, noack: bool = False) -> None:
        """A frame to the node. No ACK: zwave-js marks a listening node Dead
        (ZJS Driver.handleMissingNodeACK -> markAsDead) and rejects with the NoAck error. An
        answer from a node that was Unknown or Dead marks it Alive (ZJS Driver, 'The node status
        was unknown or dead - in either case it must be alive because it answered')."""
        if noack or not node.reachable:
            if node.status != "Dead":
                node.status = "Dead"
                await self._node_status(node)
            raise _NoAck(NO_ACK)
        if node.status in ("Unknown", "Dead"):
            node.status = "Alive"
            await self._node_status(node)

    async def _verify(self, node: FakeNode, slot: int) -> None:
        await asyncio.sleep(self.verify_delay_s)
        # ZJS ScheduledPoll: maxSendAttempts 1, errors ignored.
        with contextlib.suppress(_NoAck):
            await self._reach(node)
            if slot not in node.unanswered_slots:
                await self._persist_report(node, slot)

    async def _persist_report(self, node: FakeNode, slot: int) -> tuple[int, str]:
        """A User Code Report reaches the driver: ZJS persistUserCode. Status 254 removes both
        values and their metadata (no publication: ZUI ZwaveClient._removeValue only tells the
        UI); otherwise both values are set and published (ZUI publishes every update, changed
        or not: ZwaveClient.emitValueChanged)."""
        status, code = node.report(slot)
        view = self._view.setdefault(node.node_id, {})
        if status == STATUS_NOT_AVAILABLE:
            view.pop(("userIdStatus", slot), None)
            view.pop(("userCode", slot), None)
            return status, code
        self._store(node, "userIdStatus", slot, status, touch=True)
        self._store(node, "userCode", slot, code, touch=True)
        await self._publish_value(node, "userIdStatus", slot)
        await self._publish_value(node, "userCode", slot)
        return status, code

    # -- sendCommand (ZUI ZwaveClient.sendCommand -> UserCodeCCAPI methods) ----------------

    async def _send_command(self, args: list[Any]) -> Any:
        ctx = args[0] if args else _UNDEF
        command = args[1] if len(args) > 1 else _UNDEF
        params = args[2] if len(args) > 2 else _UNDEF
        if ctx is _UNDEF or ctx is None:
            kind = "undefined" if ctx is _UNDEF else "null"
            raise _Failure(f"Cannot read properties of {kind} (reading 'nodeId')")
        node_id = ctx.get("nodeId") if isinstance(ctx, dict) else None
        if not _is_number(node_id):
            raise _Failure("nodeId must be a number")
        if params is not _UNDEF and not isinstance(params, list):
            raise _Failure("if args is given, it must be an array")
        node = self.nodes.get(node_id) if _is_int(node_id) else None
        if node is None:
            raise _Failure(f"Node {node_id} was not found!")
        endpoint = ctx.get("endpoint") or 0
        if endpoint != 0:
            raise _Failure(f"Endpoint {endpoint} does not exist on Node {node_id}!")
        cc = ctx.get("commandClass", _UNDEF)
        if cc not in (99, "User Code"):
            shown = "undefined" if cc is _UNDEF else cc
            raise _Failure(f"Node {node_id} does not support CC {shown} or it has not been "
                           "implemented yet")
        cc_shown = cc
        if not isinstance(command, str) or command not in _USER_CODE_API:
            raise _Failure(f"The command {_js_str(command)} does not exist for CC {cc_shown}")
        params = [] if params is _UNDEF else params
        try:
            return await self._user_code_command(node, command, params)
        except (_NoAck, _InvalidValue, _Unhandled) as exc:
            raise _Failure(str(exc)) from None

    async def _user_code_command(self, node: FakeNode, command: str,
                                 params: list[Any]) -> Any:
        if command == "getUsersCount":
            # UserCodeCCAPI.getUsersCount: UsersNumberGet -> supportedUsers (a number). The
            # report is persisted in an internal value: nothing is published.
            await self._reach(node)
            return node.slot_count
        if command == "get":
            slot = params[0] if params else _UNDEF
            if not _is_int(slot):
                # @validateArgs (generated wording, not published).
                raise _InvalidValue("get(): userId must be a number")
            multiple = len(params) > 1 and params[1] is True
            if (slot > 255 or multiple) and node.cc_version < 2:
                raise _Unhandled(f"Node #{node.node_id} does not support the command "
                                 "ExtendedUserCodeGet!")
            await self._reach(node)
            if slot in node.unanswered_slots:
                await asyncio.sleep(node.report_timeout_s)
                return _UNDEF
            status, code = await self._persist_report(node, slot)
            # UserCodeCCAPI.get: pick(response, ["userIdStatus", "userCode"]).
            return {"userIdStatus": status, "userCode": code}
        if command in ("set", "clear"):
            if command == "clear":
                slot = params[0] if params else 0
                status, code = 0, None  # type: ignore[assignment]
                if not _is_int(slot):
                    raise _InvalidValue("clear(): userId must be a number")
                self._check_clear(node, slot)
            else:
                slot, status, code = (list(params) + [_UNDEF] * 3)[:3]
                if not _is_int(slot) or status not in USER_ID_STATUSES or status == 0 \
                        or not isinstance(code, str):
                    raise _InvalidValue("set(): invalid arguments")
                self._check_set(node, slot, status, code)
            # The API sends and returns the SupervisionResult, or undefined when unsupervised;
            # no value is touched and nothing is verified (that is setValue's business).
            result = await self._transmit_set(node, slot, status, code)
            return _UNDEF if result is None else result
        raise _Failure(f"fake: User Code CC {command} is not modelled")

    async def _ping(self, args: list[Any]) -> Any:
        node_id = args[0] if args else _UNDEF
        node = self.nodes.get(node_id) if _is_int(node_id) else None
        if node is None:
            # ZwaveClient.pingNode calls getNode(nodeId).ping() on undefined.
            raise _Failure("Cannot read properties of undefined (reading 'ping')")
        # ZJS Node.ping: a NoOperation; any failure is `false`.
        try:
            await self._reach(node)
        except _NoAck:
            return False
        return True

    # -- value topic writes (Gateway._onWriteRequest) -------------------------------------

    async def _write_request(self, topic: str, payload: Any) -> None:
        target = self._topic_values.get(topic)
        if target is None:
            return
        node_id, prop, slot = target
        # Gateway.parsePayload: `{value}` objects give their value; MqttClient already turned
        # a payload starting like a number into a Number (so a PIN "0123" arrives as 123, which
        # User Code refuses as not a string).
        value = payload["value"] if isinstance(payload, dict) and "value" in payload else payload
        if isinstance(value, str) and _js_parse_int(value) is None:
            if re.search(r"\btrue\b|\bon\b|\block\b", value, re.IGNORECASE):
                value = True
            elif re.search(r"\bfalse\b|\boff\b|\bunlock\b", value, re.IGNORECASE):
                value = False
        value_id = {"nodeId": node_id, "commandClass": 99, "endpoint": 0, "property": prop,
                    "propertyKey": slot,
                    "type": "number" if prop == "userIdStatus" else "string"}
        if isinstance(value, bool) and prop == "userIdStatus":
            value = 0xFF if value else _UNDEF  # `payload ? 0xff : valueId.min` (min undefined)
        self.calls.append(("_writeRequest", [value_id, value]))
        await self._write_value([value_id, value])

    # -- node state -----------------------------------------------------------------------

    async def _node_ready(self, node: FakeNode) -> None:
        """ZJS UserCodeCC.interview: getUsersCount, then metadata for every user id 1..N; codes
        are only queried with the `queryAllUserCodes` interview option (default false, ZUI does
        not set it). ZUI ZwaveClient._onNodeReady then emits every writeable defined value, so
        each slot is published once, without `value` when none is known."""
        await self._node_status(node)
        if not node.ready:
            return
        view = self._view.setdefault(node.node_id, {})
        if not view:
            for slot in range(1, node.slot_count + 1):
                view[("userIdStatus", slot)] = _Value()
                view[("userCode", slot)] = _Value()
            if self.query_all_user_codes:
                for slot in range(1, node.slot_count + 1):
                    status, code = node.report(slot)
                    if status == STATUS_NOT_AVAILABLE:
                        del view[("userIdStatus", slot)], view[("userCode", slot)]
                    else:
                        self._store(node, "userIdStatus", slot, status, touch=True)
                        self._store(node, "userCode", slot, code, touch=True)
        for prop, slot in sorted(view, key=lambda k: (k[1], k[0] != "userIdStatus")):
            self._remember_topic(node, prop, slot)
            if self.publish_values_on_ready:
                await self._publish_value(node, prop, slot)
        for levels in sorted(self._levels):
            await self.subscribe(f"{self.prefix}/" + "+/" * levels + "set")

    async def _node_status(self, node: FakeNode) -> None:
        """ZUI Gateway._onNodeStatus: `{time, value: available, status, nodeId}` on
        `<node topic>/status` with the default publish options (retain from settings). The
        docs (docs/mqtt 'Node status') say the value is true when the node is *ready*; the code
        publishes `available` (not Dead), so an Unknown node reads true: the code wins. It is
        published when the status changes (ZwaveClient.emitNodeUpdate), not on reconnect."""
        if self.ignore_status or not self.driver_ready:
            return
        data: Any = node.available if self.payload_type == "raw" else {
            "time": _now(), "value": node.available, "status": node.status,
            "nodeId": node.node_id}
        await self._publish(self.status_topic(node), data, retain=self.retain)

    def _store(self, node: FakeNode, prop: str, slot: int, value: Any, *, touch: bool) -> None:
        view = self._view.setdefault(node.node_id, {})
        entry = view.setdefault((prop, slot), _Value())
        entry.value = value
        if touch or entry.ts is None:
            entry.ts = _now() if touch else None
        self._remember_topic(node, prop, slot)

    def _remember_topic(self, node: FakeNode, prop: str, slot: int) -> None:
        topic = self.value_topic(node, 99, prop, slot)[len(self.prefix) + 1:]
        if topic not in self._topic_values:
            self._topic_values[topic] = (node.node_id, prop, slot)
            self._levels.add(len(topic.split("/")))

    async def _publish_value(self, node: FakeNode, prop: str, slot: int) -> None:
        """ZUI Gateway._onValueChanged: payload by payload type; time-value is
        `{time: lastUpdate, value}` where lastUpdate is zwave-js' value timestamp or now
        (ZwaveClient.emitValueChanged); retain from settings."""
        entry = self._view.get(node.node_id, {}).get((prop, slot))
        if entry is None:
            return
        data: Any
        if self.payload_type == "raw":
            data = entry.value
        elif self.payload_type == "valueid":
            data = self._value_json(node, prop, slot, entry)
        else:
            data = {"time": entry.ts if entry.ts is not None else _now()}
            if entry.value is not _UNDEF:
                data["value"] = entry.value
        if self.include_node_info and isinstance(data, dict):
            data["nodeName"] = node.name
            data["nodeLocation"] = node.loc
        await self._publish(self.value_topic(node, 99, prop, slot), data, retain=self.retain)

    def _value_json(self, node: FakeNode, prop: str, slot: int, entry: _Value) -> dict[str, Any]:
        """A ZUIValueId (ZwaveClient._updateValueMetadata / _applyValueMetadataFields) with the
        metadata zwave-js gives user codes (UserCodeCC setUserCodeMetadata): userIdStatus is a
        number with the supported statuses as states; userCode a string of length 4..10 whatever
        the lock accepts."""
        out: dict[str, Any] = {
            "id": f"{node.node_id}-99-0-{prop}-{slot}", "nodeId": node.node_id,
            "commandClass": 99, "commandClassName": "User Code", "endpoint": 0,
            "property": prop, "propertyName": prop, "propertyKey": slot,
            "readable": True, "writeable": True, "stateless": False,
            "commandClassVersion": node.cc_version}
        if prop == "userIdStatus":
            statuses = [0, 1, 2] if node.cc_version == 1 else [0, 1, 2, 3, 4]
            out.update(type="number", label=f"User ID status ({slot})", list=True,
                       states=[{"text": USER_ID_STATUSES[s], "value": s} for s in statuses])
        else:
            out.update(type="string", label=f"User Code ({slot})", minLength=4, maxLength=10,
                       list=False)
        if entry.value is not _UNDEF:
            out["value"] = entry.value
        out["lastUpdate"] = entry.ts if entry.ts is not None else _now()
        return out

    def _node_json(self, node: FakeNode) -> dict[str, Any]:
        """A ZUINode as getNodes returns it (ZwaveClient.getNodes returns its node objects):
        name and loc from nodes.json ('' when unset), status the NodeStatus name, available =
        not Dead, values = defined value ids keyed `<cc>-<endpoint>-<property>-<key>`
        (ZwaveClient._getValueID); a node that is not ready has no values yet."""
        view = self._view.get(node.node_id, {}) if node.ready else {}
        values = {f"99-0-{prop}-{slot}": self._value_json(node, prop, slot, entry)
                  for (prop, slot), entry in sorted(view.items(), key=lambda kv: (
                      kv[0][1], kv[0][0] != "userIdStatus"))}
        return {"id": node.node_id, "name": node.name, "loc": node.loc,
                "manufacturer": node.manufacturer, "productLabel": node.product,
                "status": node.status, "ready": node.ready, "available": node.available,
                "failed": False, "interviewStage": "Complete" if node.ready else "ProtocolInfo",
                "isControllerNode": False, "values": values}

    # -- plumbing -------------------------------------------------------------------------

    async def _publish(self, topic: str, data: Any, *, retain: bool) -> None:
        # ZUI utils.stringifyJSON is JSON.stringify (buffers as {type, data}). A raw payload
        # of undefined stringifies to undefined; what mqtt.js then sends is not in the sources
        # read: the fake sends an empty payload.
        text = "" if data is _UNDEF else json.dumps(data, default=_json_default)
        await self.publish(topic, text, retain=retain)

    def _spawn(self, coro: Any) -> None:
        task = asyncio.create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def _node_of(self, api: str, args: list[Any]) -> FakeNode | None:
        if not args:
            return None
        first = args[0]
        node_id = first.get("nodeId") if isinstance(first, dict) else first
        return self.nodes.get(node_id) if _is_int(node_id) else None


class _Failure(Exception):
    """An API call that throws: `{success: false, message}`."""


class _NoAck(Exception):
    """The node did not acknowledge."""


class _InvalidValue(Exception):
    """ZWaveErrorCodes.Argument_Invalid: InvalidValue with its message for setValue."""


class _Unhandled(Exception):
    """A ZWaveError Node.setValue does not map (e.g. CC_NotSupported): Fail for setValue."""


# ZJS UserCodeCCAPI's public methods (a `command in api` check in ZUI sendCommand passes).
_USER_CODE_API = frozenset({
    "get", "set", "setMany", "clear", "getUsersCount", "getCapabilities", "getKeypadMode",
    "setKeypadMode", "getAdminCode", "setAdminCode", "getUserCodeChecksum", "supportsCommand",
    "isSupported", "withOptions", "withTXReport"})

# ZUI Constants._commandClassMap (the two CCs the fake publishes).
_CC_NAMES = {0x63: "user_code", 0x71: "notification"}


def sanitize_topic(part: str | int) -> str:
    """ZUI utils.sanitizeTopic: numbers as they are; whitespace to `_`, then drop anything but
    `A-Za-z0-9-_À-ÖØ-öø-ÿ/` (so a `/` in a name or location makes extra topic levels)."""
    if isinstance(part, int) or not part:
        return str(part)
    part = re.sub(r"\s", "_", part)
    return re.sub(r"[^A-Za-z0-9\-_À-ÖØ-öø-ÿ/]", "", part)


def _remove_slash(part: str | int) -> str:
    """ZUI utils.removeSlash."""
    return str(part) if isinstance(part, int) else part.replace("/", "-")


def _parse_mqtt_payload(payload: bytes) -> Any:
    """ZUI MqttClient._onMessageReceived: a payload `parseInt` reads as a number becomes
    `Number(payload)`; otherwise JSON if it parses, else the string."""
    text = payload.decode("utf-8", "replace")
    if _js_parse_int(text) is not None:
        return _js_number(text)
    try:
        return json.loads(text)
    except ValueError:
        return text


def _js_parse_int(text: str) -> int | None:
    match = re.match(r"\s*([+-]?)(0[xX][0-9a-fA-F]+|\d+)", text)
    if match is None:
        return None
    digits = match.group(2)
    value = int(digits, 16) if digits[:2] in ("0x", "0X") else int(digits)
    return -value if match.group(1) == "-" else value


def _js_number(text: str) -> float | int:
    text = text.strip()
    if re.fullmatch(r"0[xX][0-9a-fA-F]+", text):
        return int(text, 16)
    if re.fullmatch(r"[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?", text):
        number = float(text)
        return int(number) if number.is_integer() else number
    return math.nan


def _js_truthy(value: Any) -> bool:
    if isinstance(value, float) and math.isnan(value):
        return False
    if isinstance(value, list | dict):
        return True  # objects and arrays are truthy in JavaScript, even empty
    return bool(value)


def _js_typeof(value: Any) -> str:
    if value is _UNDEF:
        return "undefined"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int | float):
        return "number"
    if isinstance(value, str):
        return "string"
    return "object"


def _js_str(value: Any) -> str:
    if value is _UNDEF:
        return "undefined"
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, list | dict):
        return "[object Object]" if isinstance(value, dict) else ",".join(map(str, value))
    return str(value)


def _is_int(value: Any) -> TypeGuard[int]:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _json_default(value: Any) -> Any:
    if isinstance(value, bytes):
        return {"type": "Buffer", "data": list(value)}
    raise TypeError(f"not JSON: {value!r}")


def _controller_json() -> dict[str, Any]:
    """The controller is node 1 of `_nodes` too (ZwaveClient.getNodes lists every node)."""
    return {"id": 1, "name": "", "loc": "", "status": "Alive", "ready": True,
            "available": True, "failed": False, "interviewStage": "Complete",
            "isControllerNode": True, "values": {}}


def _now() -> int:
    return int(time.time() * 1000)
