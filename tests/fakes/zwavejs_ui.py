"""A fake Z-Wave JS UI MQTT gateway: lock nodes with user code tables behind its MQTT API.

It answers API calls on `<prefix>/_CLIENTS/ZWAVE_GATEWAY-<name>/api/<api>` with
`{"success", "message", "result", "origin"}`, publishes value topics in the default ValueID
layout with time-value payloads, node status on `<node>/status`, and Access Control
notifications. Like zwave-js, User Code CC `clear` without a slot wipes every code: the fake
does it too, and records it, so a test can prove lockbridge never asks for it.
"""

from __future__ import annotations

import json
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import aiomqtt

from drivers.simulator.lock import SEEN_PINS
from tests.fakes.peer import MqttPeer


@dataclass
class FakeNode:
    """One lock node."""

    node_id: int
    slot_count: int = 10
    min_length: int = 4
    max_length: int = 10
    manufacturer: str = "Kwikset"
    product: str = "916"
    masks: bool = False
    rejects_duplicates: bool = True
    # Take a duplicate PIN's write without a word, then say so only in a notification (as
    # locks without Supervision do).
    silent_duplicates: bool = False
    codes: dict[int, str] = field(default_factory=dict)
    status: str = "Alive"
    stall: bool = False
    refuse: deque[str] = field(default_factory=deque)
    # Every write the lock applied: (slot, pin or None for a clear).
    applied: list[tuple[int, str | None]] = field(default_factory=list)
    wiped: int = 0

    def applied_sets(self, slot: int) -> list[str | None]:
        """What was applied to one slot, in order."""
        return [pin for s, pin in self.applied if s == slot]

    @property
    def topic(self) -> str:
        """The node's topic (the gateway's default `nodeID_<id>`)."""
        return f"nodeID_{self.node_id}"


class FakeZwaveJsUI(MqttPeer):
    """The gateway `ZWAVE_GATEWAY-<name>` under `prefix`."""

    def __init__(self, host: str, port: int, prefix: str, name: str,
                 nodes: list[FakeNode], *, echo_origin: bool = True) -> None:
        self.prefix = prefix
        self.name = name
        self.client_topic = f"{prefix}/_CLIENTS/ZWAVE_GATEWAY-{name}"
        will = aiomqtt.Will(f"{self.client_topic}/status",
                            json.dumps({"time": 0, "value": False}), qos=1, retain=True)
        super().__init__(host, port, f"ZWAVE_GATEWAY-{name}", will=will)
        self.nodes = {node.node_id: node for node in nodes}
        self.echo_origin = echo_origin
        self.calls: list[tuple[str, list[Any]]] = []
        # Called after a node applied a write, before the gateway answers.
        self.after_apply: Callable[[int, int, str | None], None] | None = None

    # -- what tests do --------------------------------------------------------------------

    def node(self, node_id: int) -> FakeNode:
        """A node by id."""
        return self.nodes[node_id]

    async def keypad_set(self, node_id: int, slot: int, pin: str) -> None:
        """A code programmed at the keypad: the lock reports it and notifies."""
        node = self.nodes[node_id]
        SEEN_PINS.add(pin)
        node.codes[slot] = pin
        await self._values(node, slot)
        await self._notify(node, "New_user_code_added", {"userId": slot})

    async def keypad_unlock(self, node_id: int, slot: int) -> None:
        """Someone opens the door with the code in `slot`."""
        await self._notify(self.nodes[node_id], "Keypad_unlock_operation", {"userId": slot})

    async def set_status(self, node_id: int, status: str) -> None:
        """The node goes Dead (or comes back Alive)."""
        node = self.nodes[node_id]
        node.status = status
        await self._node_status(node)

    async def publish_raw(self, topic: str, payload: bytes | str) -> None:
        """Anything at all, for malformed-payload tests."""
        await self.publish(topic, payload)

    def clears_without_slot(self) -> int:
        """How often someone asked User Code CC `clear` for every code."""
        return sum(1 for api, args in self.calls if api == "sendCommand" and len(args) >= 2
                   and args[1] == "clear" and (len(args) < 3 or not args[2] or not args[2][0]))

    # -- MQTT -----------------------------------------------------------------------------

    async def on_connected(self) -> None:
        await self.publish(f"{self.client_topic}/status", {"time": _now(), "value": True},
                           retain=True)
        for node in self.nodes.values():
            await self._node_status(node)
        await self.subscribe(f"{self.client_topic}/api/+/set")

    async def on_message(self, topic: str, payload: bytes) -> None:
        api = topic.split("/")[-2]
        try:
            request = json.loads(payload)
        except ValueError:
            return
        args = request.get("args") if isinstance(request, dict) else None
        if not isinstance(args, list):
            await self._answer(api, request, False, "Args must be an array", None)
            return
        self.calls.append((api, args))
        node = self._node_of(api, args)
        if node is not None and node.stall:
            return
        try:
            result = await self._call(api, args, node)
        except _Failure as exc:
            await self._answer(api, request, False, str(exc), None)
            return
        await self._answer(api, request, True, "Success zwave api call", result)

    async def _call(self, api: str, args: list[Any], node: FakeNode | None) -> Any:
        if api == "getNodes":
            return [self._node_json(n) for n in self.nodes.values()]
        if node is None:
            raise _Failure(f"Unknown node or API {api}")
        if node.status == "Dead":
            raise _Failure(f"Node {node.node_id} is dead")
        if api == "pingNode":
            return True
        if api == "writeValue":
            return await self._write(node, args)
        if api == "sendCommand":
            return await self._command(node, args)
        raise _Failure(f"Unknown API {api}")

    async def _write(self, node: FakeNode, args: list[Any]) -> Any:
        value_id, value = args[0], args[1]
        slot = value_id.get("propertyKey")
        if value_id.get("commandClass") != 99 or not isinstance(slot, int) \
                or not 1 <= slot <= node.slot_count:
            raise _Failure("Unable to write value: InvalidValue (no such user id)")
        if node.refuse:
            raise _Failure(node.refuse.popleft())
        if value_id.get("property") == "userIdStatus":
            if value != 0:
                raise _Failure("Unable to write value: only 0 is supported here")
            node.codes.pop(slot, None)
            node.applied.append((slot, None))
        elif value_id.get("property") == "userCode":
            if not isinstance(value, str) or not value.isdigit() \
                    or not node.min_length <= len(value) <= node.max_length:
                raise _Failure("Unable to write value: InvalidValue (user code length)")
            if node.rejects_duplicates and any(p == value and s != slot
                                               for s, p in node.codes.items()):
                if node.silent_duplicates:
                    await self._notify(node, "New_user_code_not_added_due_to_duplicate_code",
                                       {"userId": slot})
                    return {"status": 255}
                raise _Failure("Unable to write value: Fail (duplicate user code)")
            SEEN_PINS.add(value)
            node.codes[slot] = value
            node.applied.append((slot, value))
        else:
            raise _Failure("Unable to write value: NotImplemented")
        if self.after_apply is not None:
            self.after_apply(node.node_id, slot, node.codes.get(slot))
        await self._values(node, slot)
        return {"status": 255}

    async def _command(self, node: FakeNode, args: list[Any]) -> Any:
        context, command = args[0], args[1]
        params = args[2] if len(args) > 2 else []
        if not isinstance(context, dict) or context.get("commandClass") != 99:
            raise _Failure("Unsupported command class")
        if command == "clear":
            slot = params[0] if params else 0
            if not slot:
                node.wiped += 1
                node.codes.clear()
            else:
                node.codes.pop(slot, None)
            return None
        if command == "get":
            slot = params[0]
            pin = node.codes.get(slot)
            if pin is None:
                return {"userIdStatus": 0, "userCode": ""}
            return {"userIdStatus": 1, "userCode": "*" * len(pin) if node.masks else pin}
        raise _Failure(f"Unknown command {command}")

    async def _answer(self, api: str, request: Any, success: bool, message: str,
                      result: Any) -> None:
        answer: dict[str, Any] = {"success": success, "message": message, "result": result}
        if self.echo_origin:
            answer["origin"] = request
        await self.publish(f"{self.client_topic}/api/{api}", answer)

    async def _values(self, node: FakeNode, slot: int) -> None:
        pin = node.codes.get(slot)
        base = f"{self.prefix}/{node.topic}/99/0"
        await self.publish(f"{base}/userIdStatus/{slot}",
                           {"time": _now(), "value": 1 if pin else 0})
        await self.publish(f"{base}/userCode/{slot}",
                           {"time": _now(), "value": ("*" * len(pin) if node.masks else pin)
                            if pin else ""})

    async def _notify(self, node: FakeNode, event: str, params: dict[str, Any]) -> None:
        await self.publish(f"{self.prefix}/{node.topic}/113/0/Access_Control/{event}",
                           {"time": _now(), "value": params})

    async def _node_status(self, node: FakeNode) -> None:
        await self.publish(f"{self.prefix}/{node.topic}/status",
                           {"time": _now(), "value": node.status != "Dead",
                            "status": node.status, "nodeId": node.node_id}, retain=True)

    def _node_of(self, api: str, args: list[Any]) -> FakeNode | None:
        if not args:
            return None
        first = args[0]
        node_id = first.get("nodeId") if isinstance(first, dict) else first
        return self.nodes.get(node_id) if isinstance(node_id, int) else None

    def _node_json(self, node: FakeNode) -> dict[str, Any]:
        values = {
            "99-0-supportedUsers": {"commandClass": 99, "endpoint": 0,
                                    "property": "supportedUsers", "value": node.slot_count},
            "99-0-userCode-1": {"commandClass": 99, "endpoint": 0, "property": "userCode",
                                "propertyKey": 1, "minLength": node.min_length,
                                "maxLength": node.max_length, "value": ""},
        }
        return {"id": node.node_id, "name": "", "loc": "", "manufacturer": node.manufacturer,
                "productLabel": node.product, "status": node.status, "ready": True,
                "available": node.status != "Dead", "values": values}


class _Failure(Exception):
    pass


def _now() -> int:
    return int(time.time() * 1000)
