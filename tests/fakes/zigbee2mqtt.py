"""A fake Zigbee2MQTT: Zigbee door locks with PIN tables, behind Zigbee2MQTT's MQTT API.

It answers like the real one: `users` entries only in the device state, PINs only with
`expose_pin`, a cached `users` object republished with every state message (so right after a
`set` it still shows the old entry), failures as `Publish 'set' 'pin_code' to '<name>' failed`
lines on `bridge/logging`. Tests reach in to edit codes at the keypad, take locks offline,
make them refuse or stop answering, and count every command applied.
"""

from __future__ import annotations

import asyncio
import json
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from drivers.simulator.lock import SEEN_PINS
from tests.fakes.peer import MqttPeer


@dataclass
class FakeZigbeeLock:
    """One lock: its real PIN table and what Zigbee2MQTT has cached of it."""

    friendly_name: str
    ieee_address: str
    vendor: str = "Kwikset"
    model: str = "99140-002"
    pin_code_count: int = 30
    expose_pin: bool = True
    rejects_duplicates: bool = True
    table: dict[int, str] = field(default_factory=dict)
    cache: dict[str, dict[str, Any]] = field(default_factory=dict)
    online: bool = True
    stall: bool = False
    refuse: deque[str] = field(default_factory=deque)
    # Every set and clear the lock applied: (user, pin or None).
    applied: list[tuple[int, str | None]] = field(default_factory=list)
    gets: int = 0

    def applied_sets(self, user: int) -> list[str | None]:
        """What was applied to one user, in order."""
        return [pin for u, pin in self.applied if u == user]

    def entry(self, user: int) -> dict[str, Any]:
        """The `users` entry the lock reports now for `user`."""
        pin = self.table.get(user)
        if pin is None:
            return {"status": "available"}
        entry: dict[str, Any] = {"status": "enabled"}
        if self.expose_pin:
            entry["pin_code"] = pin
        return entry


class FakeZigbee2MQTT(MqttPeer):
    """Zigbee2MQTT on `base_topic`, with the given locks."""

    def __init__(self, host: str, port: int, base_topic: str,
                 locks: list[FakeZigbeeLock], *, republish_stale: bool = True) -> None:
        super().__init__(host, port, f"fake-z2m-{base_topic}")
        self.base = base_topic
        self.locks = {lock.friendly_name: lock for lock in locks}
        self.republish_stale = republish_stale
        self.bridge_online = True
        self.extra_devices: list[dict[str, Any]] = []
        # Called after the lock applied a set or clear, before Zigbee2MQTT says anything more.
        self.after_apply: Callable[[str, int, str | None], None] | None = None

    # -- what tests do --------------------------------------------------------------------

    def lock(self, name: str) -> FakeZigbeeLock:
        """A lock by friendly name."""
        return self.locks[name]

    async def keypad_set(self, name: str, user: int, pin: str) -> None:
        """Someone programs a code at the keypad; the lock sends a programming event."""
        lock = self.locks[name]
        SEEN_PINS.add(pin)
        action = "pin_code_changed" if user in lock.table else "pin_code_added"
        lock.table[user] = pin
        await self._state(lock, {"action": action, "action_user": user,
                                 "action_source": 0, "action_source_name": "keypad"})

    async def keypad_clear(self, name: str, user: int) -> None:
        """Someone deletes a code at the keypad."""
        lock = self.locks[name]
        lock.table.pop(user, None)
        await self._state(lock, {"action": "pin_code_deleted", "action_user": user,
                                 "action_source": 0, "action_source_name": "keypad"})

    async def keypad_unlock(self, name: str, user: int) -> None:
        """Someone opens the door with the code of `user`."""
        await self._state(self.locks[name], {"action": "unlock", "action_user": user,
                                             "action_source": 0,
                                             "action_source_name": "keypad"})

    async def set_online(self, name: str, online: bool) -> None:
        """The lock drops off the mesh (or comes back); Zigbee2MQTT's availability says so."""
        lock = self.locks[name]
        lock.online = online
        await self.publish(f"{self.base}/{name}/availability",
                           {"state": "online" if online else "offline"}, retain=True)

    async def set_bridge_online(self, online: bool) -> None:
        """Zigbee2MQTT itself stops (or starts)."""
        self.bridge_online = online
        await self.publish(f"{self.base}/bridge/state",
                           {"state": "online" if online else "offline"}, retain=True)

    async def republish_cached(self, name: str) -> None:
        """Zigbee2MQTT republishes its cached state (e.g. on a battery report)."""
        await self._state(self.locks[name], {"battery": 87})

    async def publish_raw(self, topic: str, payload: bytes | str) -> None:
        """Anything at all, for malformed-payload tests."""
        await self.publish(topic, payload)

    # -- MQTT -----------------------------------------------------------------------------

    async def on_connected(self) -> None:
        await self.publish(f"{self.base}/bridge/state",
                           {"state": "online" if self.bridge_online else "offline"}, retain=True)
        await self.publish(f"{self.base}/bridge/info", self._info(), retain=True)
        await self.publish(f"{self.base}/bridge/devices", self._devices(), retain=True)
        for lock in self.locks.values():
            await self.publish(f"{self.base}/{lock.friendly_name}/availability",
                               {"state": "online" if lock.online else "offline"}, retain=True)
        await self.subscribe(f"{self.base}/+/set", f"{self.base}/+/get")

    async def on_message(self, topic: str, payload: bytes) -> None:
        name, _, verb = topic[len(self.base) + 1:].rpartition("/")
        lock = self.locks.get(name)
        if lock is None:
            await self._log(f"Entity '{name}' is unknown")
            return
        try:
            message = json.loads(payload)
        except ValueError:
            await self._log(f"Invalid message '{payload!r}', skipping...")
            return
        if not self.bridge_online or lock.stall or not isinstance(message, dict):
            return
        if "pin_code" in message:
            await (self._set(lock, message["pin_code"]) if verb == "set"
                   else self._get(lock, message["pin_code"]))
        elif verb == "get" and "state" in message and lock.online:
            await self._state(lock, {})

    async def _set(self, lock: FakeZigbeeLock, command: Any) -> None:
        def fail(error: str) -> Any:
            return self._log(f"Publish 'set' 'pin_code' to '{lock.friendly_name}' failed: "
                             f"'Error: {error}'")

        if not isinstance(command, dict) or not isinstance(command.get("user"), int):
            await fail("user must be numbers")
            return
        user = command["user"]
        if not 0 <= user < lock.pin_code_count:
            await fail("user must be in range for device")
            return
        if not lock.online:
            await fail("Command 0x1 closuresDoorLock.setPinCode failed (Delivery failed: "
                       "MAC_NO_ACK)")
            return
        if lock.refuse:
            await fail(lock.refuse.popleft())
            return
        pin = command.get("pin_code")
        if pin is None:
            lock.table.pop(user, None)
            lock.applied.append((user, None))
        else:
            if not isinstance(pin, str):
                await fail('pin_code must be a string (e.g. "0123") to preserve leading zeros')
                return
            others = {u for u, p in lock.table.items() if p == pin and u != user}
            if lock.rejects_duplicates and others:
                await fail("setPinCode failed: status duplicate_code")
                return
            SEEN_PINS.add(pin)
            lock.table[user] = pin
            lock.applied.append((user, pin))
        if self.after_apply is not None:
            self.after_apply(lock.friendly_name, user, pin)
        if self.republish_stale:
            # The state Zigbee2MQTT publishes now still carries the cached, old entry.
            await self._state(lock, {})

    async def _get(self, lock: FakeZigbeeLock, command: Any) -> None:
        if not isinstance(command, dict) or not isinstance(command.get("user"), int):
            return
        user = command["user"]
        if not 0 <= user < lock.pin_code_count:
            await self._log(f"Publish 'get' 'pin_code' to '{lock.friendly_name}' failed: "
                            "'Error: user must be in range for device'")
            return
        if not lock.online:
            return
        lock.gets += 1
        lock.cache[str(user)] = lock.entry(user)
        await self._state(lock, {})

    async def _state(self, lock: FakeZigbeeLock, extra: dict[str, Any]) -> None:
        state: dict[str, Any] = {"state": "LOCK", "lock_state": "locked", "battery": 90,
                                 "linkquality": 120, "users": dict(lock.cache), **extra}
        await self.publish(f"{self.base}/{lock.friendly_name}", state)

    async def _log(self, message: str) -> None:
        await self.publish(f"{self.base}/bridge/logging", {"level": "error", "message": message})

    def _devices(self) -> list[dict[str, Any]]:
        devices: list[dict[str, Any]] = [{
            "ieee_address": "0x00124b0000000000", "friendly_name": "Coordinator",
            "type": "Coordinator", "supported": True, "definition": None}]
        for lock in self.locks.values():
            devices.append({
                "ieee_address": lock.ieee_address, "friendly_name": lock.friendly_name,
                "type": "EndDevice", "supported": True, "disabled": False,
                "definition": {
                    "model": lock.model, "vendor": lock.vendor, "description": "Keypad lock",
                    "exposes": [
                        {"type": "lock", "features": [
                            {"type": "binary", "name": "state", "property": "state"}]},
                        {"type": "numeric", "name": "battery", "property": "battery"},
                        {"type": "composite", "name": "pin_code", "property": "pin_code",
                         "features": [
                             {"type": "numeric", "name": "user", "property": "user"},
                             {"type": "enum", "name": "user_type", "property": "user_type"},
                             {"type": "binary", "name": "user_enabled",
                              "property": "user_enabled"},
                             {"type": "numeric", "name": "pin_code", "property": "pin_code"}]},
                    ]}})
        return devices + self.extra_devices

    def _info(self) -> dict[str, Any]:
        return {"version": "1.40.0", "config": {
            "devices": {lock.ieee_address: {"friendly_name": lock.friendly_name,
                                            "expose_pin": lock.expose_pin}
                        for lock in self.locks.values()},
            "device_options": {}}}


async def wait_applied(lock: FakeZigbeeLock, count: int, timeout: float = 5.0) -> None:
    """Wait until the lock has applied `count` commands."""
    async with asyncio.timeout(timeout):
        while len(lock.applied) < count:
            await asyncio.sleep(0.005)
