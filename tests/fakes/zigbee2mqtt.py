"""A fake Zigbee2MQTT: Zigbee door locks with PIN tables, behind Zigbee2MQTT's MQTT API.

Every behaviour below is taken from the published sources, cited where it is implemented:

* Z2M = github Koenkk/zigbee2mqtt (2.12.x), lib/... ;
* ZHC = github Koenkk/zigbee-herdsman-converters, src/... ;
* ZH  = github Koenkk/zigbee-herdsman, src/... ;
* ST  = github SmartThingsCommunity/SmartThingsPublic,
  devicetypes/smartthings/zigbee-lock.src/zigbee-lock.groovy (how Kwikset/Yale/Schlage locks
  behave on the wire, as SmartThings' own lock handler works around them).

What a client sees (and the previous fake got wrong, see the notes at each place):

* `bridge/devices`: each lock's definition with ZHC's exposes. The `pin_code` composite's `user`
  feature has NO value_min/value_max: nothing on MQTT says how many slots a lock has. The range
  Zigbee2MQTT enforces is the definition's `meta.pinCodeCount` (30 for every Kwikset, Schlage
  BE468; 250 for Yale's lockExtend), never the lock's numOfPinUsersSupported attribute.
* Reading: `{"pin_code": {"user": N}}` to `<name>/get` sends getPinCode; the answer lands in the
  device state as `users: {"N": {"status": ...}}` (+ `pin_code` only with `expose_pin`). With
  `{"pin_code": ""}` (no user) every slot 0..count-1 is read, one state message per answer; the
  loop stops at the first slot that fails. A slot that does not answer gives, after the command
  timeout, `z2m: Publish 'get' 'pin_code' to '<name>' failed: 'Error: ZCL command ... failed
  (Timeout after 10000ms [...])'` on `bridge/logging`. Nothing ever goes to `bridge/response` for
  device get/set.
* `users` is part of the cached state, deep-merged (object-assign-deep), and re-sent with every
  state message of the device: after a set it still shows the old entry until a getPinCode answer
  updates it.
* Setting and clearing: `{"pin_code": {"user": N, "user_type": ..., "user_enabled": ..,
  "pin_code": "1234"}}` to `<name>/set`; `pin_code` null OR ABSENT clears the slot. Zigbee2MQTT
  itself publishes NOTHING after a set: not the state, not the lock's status. A lock's
  setPinCodeRsp status (0 success, 1 general failure, 2 memory full, 3 duplicate code) is never
  checked: a refused PIN is silent. What follows a set comes from the lock: Kwikset/Schlage send a
  programming event (source `rf`), Yale sends none (ST).
* Failures Zigbee2MQTT does report (validation, radio errors, timeouts) are `bridge/logging`
  lines `{"level":"error","message":"z2m: Publish 'set' 'pin_code' to '<name>' failed: 'Error:
  ...'"}`, and an identical line twice in a row is published once.
* Keypad programming (`action` pin_code_added/changed/deleted, `action_user`, `action_source`,
  `action_source_name`) and operation events (`action` unlock, ...), `action*` not cached.
* `<name>/availability` `{"state":"online|offline"}` (retained; legacy plain `online` with
  `legacy_availability_payload`), `bridge/state` likewise, with an MQTT will.

Switches (all default to the behaviour of a current Zigbee2MQTT with a Kwikset lock):

On `FakeZigbeeLock` (one lock, what it holds and how it answers):
  model / vendor          ZHC definition used for exposes, pinCodeCount and endpoint (table MODELS)
  pin_code_count          override the definition's meta.pinCodeCount (Zigbee2MQTT's range)
  slots                   the lock's real number of PIN users (numOfPinUsersSupported), smaller
                          than pin_code_count: a set beyond it is refused (status 1, silent), a get
                          beyond it is not answered (timeout)
  expose_pin              Zigbee2MQTT's per-device `expose_pin` option (default True here, as the
                          previous fake; Zigbee2MQTT's default is false)
  rejects_duplicates      the lock refuses a PIN another slot holds (status 3, silent)
  duplicate_same_slot     the lock answers 3 (duplicate) when the same PIN is written again into
                          the slot that holds it, and keeps it (Yale YRD210, keymaster#660)
  set_status              deque of statuses for the next sets/clears (non-zero: not applied, silent)
  no_answer               user ids whose getPinCode/setPinCode/clearPinCode get no answer (timeout)
  stall                   the lock answers nothing at all (every command times out)
  refuse                  deque of radio error texts for the next sets (logged as failures)
  send_pin_ota            False: the lock leaves the PIN out of its answers (empty octet string)
  masked_pin              what such a lock sends instead of the PIN (default "", i.e. nothing)
  program_event_on_rf     the lock sends a programming event after a set/clear over Zigbee
                          (None: by vendor, Yale does not, ST)
  silent_keypad_delete    no programming event when a code is deleted at the keypad (ST: "some
                          Kwikset locks")
  read_pin_on_program_event  Zigbee2MQTT reads the PIN back after a programming event (ZHC
                          modernExtend lock({readPinCodeOnProgrammingEvent}), e.g. Weiser)
  min_pin_len/max_pin_len PIN lengths the lock accepts (ZH closuresDoorLock defaults 4 and 8);
                          other PINs are refused with status 1 (silent)

On `FakeZigbee2MQTT`:
  republish_stale         also publish the cached state right after every set, as a device report
                          arriving then would (default False: Zigbee2MQTT itself does not)
  availability            publish `<name>/availability` (Zigbee2MQTT's `availability: true`)
  legacy_availability_payload  plain `online`/`offline` (Zigbee2MQTT 1.x default)
  log_namespace           prefix `z2m: ` of bridge/logging messages (2.x; False for 1.x)
  octet_pin_code          ZH >= 2025-12 parses getPinCodeRsp.pincodevalue as an octet string, so
                          an empty PIN is a truthy Buffer and shows as `"pin_code": ""` with
                          expose_pin; False: older ZH (CHAR_STR), an empty PIN is left out
  command_timeout_s       how long the fake waits before logging a timeout (the text still says
                          10000ms, ZH's default)

Test helpers: `lock(name)`, `keypad_set`, `keypad_clear`, `keypad_unlock`, `set_online`,
`set_bridge_online`, `republish_cached`, `publish_raw`, `after_apply`, `wait_applied`, the lock's
`table`, `applied`, `applied_sets`, `gets`, `entry`.

Not modelled: `user_status`, `auto_relock_time`, `sound_volume` converters (ignored), groups,
`bridge/request/*`, friendly names containing `/`, endpoint-suffixed keys.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import logging
import math
import re
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import aiomqtt

from drivers.simulator.lock import SEEN_PINS
from drivers.tasks import cancel_and_wait
from tests.fakes.peer import MqttPeer

_LOG = logging.getLogger("tests.fakes")
_ABSENT = object()

# ZHC src/lib/constants.ts lockUserStatus / lockSourceName.
USER_STATUS = {0: "available", 1: "enabled", 3: "disabled"}
SOURCE_NAME = {0: "keypad", 1: "rf", 2: "manual", 3: "rfid", 4: "fingerprint"}
# ZHC toZigbee.ts pincode_lock: typeLookup.
USER_TYPES = {"unrestricted": 0, "year_day_schedule": 1, "week_day_schedule": 2, "master": 3,
              "non_access": 4}
# ZHC fromZigbee.ts lock_programming_event / lock_operation_event lookups.
PROGRAM_EVENTS = {0: "unknown", 1: "master_code_changed", 2: "pin_code_added",
                  3: "pin_code_deleted", 4: "pin_code_changed", 5: "rfid_code_added",
                  6: "rfid_code_deleted"}
OPERATION_EVENTS = {0: "unknown", 1: "lock", 2: "unlock", 3: "lock_failure_invalid_pin_or_id",
                    4: "lock_failure_invalid_schedule", 5: "unlock_failure_invalid_pin_or_id",
                    6: "unlock_failure_invalid_schedule", 7: "one_touch_lock", 8: "key_lock",
                    9: "key_unlock", 10: "auto_lock", 11: "schedule_lock", 12: "schedule_unlock",
                    13: "manual_lock", 14: "manual_unlock",
                    15: "non_access_user_operational_event"}
# ZCL Door Lock setPinCodeRsp / clearPinCodeRsp status (ST zigbee-lock.groovy DOORLOCK_CMD_
# USER_CODE_SET: 0 success, 1 general failure, 2 memory full, 3 duplicate code).
SUCCESS, GENERAL_FAILURE, MEMORY_FULL, DUPLICATE_CODE = 0, 1, 2, 3
# ZH src/zspec/zcl/definition/cluster.ts closuresDoorLock (ID 0x0101) command ids.
CLUSTER_DOOR_LOCK = 257
CMD_SET_PIN, CMD_GET_PIN, CMD_CLEAR_PIN = 5, 6, 7


@dataclass(frozen=True)
class Model:
    """What a ZHC definition says of a lock."""

    vendor: str
    description: str
    pin_code_count: int
    endpoint: int
    style: str  # "plain": lock, battery, pincode, actions; "yale": ZHC yale.ts lockExtend


# ZHC src/devices/kwikset.ts, schlage.ts, yale.ts (meta.pinCodeCount, endpoint used in configure).
MODELS: dict[str, Model] = {
    "99140-002": Model("Kwikset", "SmartCode traditional electronic deadbolt", 30, 2, "plain"),
    "99140-031": Model("Kwikset", "SmartCode traditional electronic deadbolt", 30, 2, "plain"),
    "99100-045": Model("Kwikset", "910 SmartCode traditional electronic deadbolt", 30, 2,
                       "plain"),
    "99120-021": Model("Kwikset", "912 SmartCode traditional electronic lever", 30, 2, "plain"),
    "BE468": Model("Schlage", "Connect smart deadbolt", 30, 1, "plain"),
    "YRD256HA20BP": Model("Yale", "Assure lock SL", 250, 1, "yale"),
    "YRD226HA2619": Model("Yale", "Assure lock", 250, 1, "yale"),
    "YRD210-HA-605": Model("Yale", "Real living keyless push button deadbolt lock", 250, 1,
                           "yale"),
}

# Z2M lib/state.ts CACHE_IGNORE_PROPERTIES (the ones a lock can produce).
_NOT_CACHED = re.compile(r"^(action|action_.*)$")
# Z2M lib/extension/publish.ts STATE_VALUES.
_STATE_VALUES = ("on", "off", "toggle", "open", "close", "stop", "lock", "unlock")
# ZH endpoint.ts getOptionsWithDefaults for a command with a response (disableDefaultResponse).
_ZCL_OPTIONS = ('{"timeout":10000,"disableResponse":false,"disableRecovery":false,'
                '"disableDefaultResponse":true,"direction":0,"reservedBits":0,"writeUndiv":false}')


class _Fail(Exception):
    """A converter threw: Zigbee2MQTT logs `... failed: 'Error: <message>'`."""


# -- JavaScript value semantics the converters rely on ---------------------------------------


def js_number(value: Any) -> float:
    """JavaScript's ToNumber, as `value >= 0 && value <= max` applies it."""
    if value is None:
        return 0.0
    if isinstance(value, bool):
        return float(value)
    if isinstance(value, int | float):
        return float(value)
    if isinstance(value, str):
        text = value.strip()
        if not text:
            return 0.0
        try:
            return float(int(text, 16)) if text.lower().startswith("0x") else float(text)
        except ValueError:
            return math.nan
    if isinstance(value, list):
        return 0.0 if not value else js_number(js_string(value)) if len(value) == 1 else math.nan
    return math.nan


def js_string(value: Any) -> str:
    """JavaScript's String(value) / template literal."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    if isinstance(value, int | float):
        return str(value)
    if isinstance(value, str):
        return value
    if isinstance(value, list):
        return ",".join("" if v is None else js_string(v) for v in value)
    return "[object Object]"


def js_json(value: Any) -> str:
    """JSON.stringify (integral floats print as integers, as in JavaScript)."""
    def norm(v: Any) -> Any:
        if isinstance(v, float) and v.is_integer():
            return int(v)
        if isinstance(v, list):
            return [norm(x) for x in v]
        if isinstance(v, dict):
            return {k: norm(x) for k, x in v.items()}
        return v
    return json.dumps(norm(value), separators=(",", ":"), ensure_ascii=False)


def js_typeof(value: Any) -> str:
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int | float):
        return "number"
    if isinstance(value, str):
        return "string"
    return "object"


def js_truthy(value: Any) -> bool:
    if isinstance(value, float) and math.isnan(value):
        return False
    if isinstance(value, list | dict):
        return True
    return bool(value)


def stable_json(value: Any) -> str:
    """json-stable-stringify: keys sorted (Z2M publishes state, devices, logging with it)."""
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False)


def deep_merge(target: dict[str, Any], update: dict[str, Any]) -> None:
    """object-assign-deep, as Z2M lib/state.ts State.set merges an update into the cache:
    nested objects merge key by key, so a `users` entry keeps keys the update does not carry."""
    for key, value in update.items():
        if isinstance(value, dict) and isinstance(target.get(key), dict):
            deep_merge(target[key], value)
        elif isinstance(value, dict):
            target[key] = {}
            deep_merge(target[key], value)
        else:
            target[key] = value


# -- the lock ---------------------------------------------------------------------------------


@dataclass
class FakeZigbeeLock:
    """One lock: its real PIN table, how it answers, and what Zigbee2MQTT has cached of it."""

    friendly_name: str
    ieee_address: str
    vendor: str | None = None
    model: str = "99140-002"
    pin_code_count: int | None = None
    expose_pin: bool = True
    rejects_duplicates: bool = True
    table: dict[int, str] = field(default_factory=dict)
    # Zigbee2MQTT's cached `users` object (str(user) -> entry), deep-merged.
    cache: dict[str, dict[str, Any]] = field(default_factory=dict)
    online: bool = True
    stall: bool = False
    refuse: deque[str] = field(default_factory=deque)
    # Every set and clear the lock applied: (user, pin or None).
    applied: list[tuple[int, str | None]] = field(default_factory=list)
    gets: int = 0
    # -- switches added with the corrected fake (see the module docstring) --
    slots: int | None = None
    duplicate_same_slot: bool = False
    set_status: deque[int] = field(default_factory=deque)
    no_answer: set[int] = field(default_factory=set)
    send_pin_ota: bool = True
    masked_pin: str = ""
    program_event_on_rf: bool | None = None
    silent_keypad_delete: bool = False
    read_pin_on_program_event: bool = False
    min_pin_len: int = 4
    max_pin_len: int = 8
    disabled: set[int] = field(default_factory=set)
    user_types: dict[int, int] = field(default_factory=dict)
    # Every status the lock answered to a set/clear: (command, user, status).
    answers: list[tuple[str, int, int]] = field(default_factory=list)
    # The rest of Zigbee2MQTT's cached state (state, lock_state, battery ...).
    state: dict[str, Any] = field(default_factory=lambda: {
        "battery": 90, "lock_state": "locked", "state": "LOCK"})
    linkquality: int = 120

    def __post_init__(self) -> None:
        known = MODELS.get(self.model)
        self.definition = known or Model(
            self.vendor or "Kwikset", "Keypad lock", self.pin_code_count or 30, 1,
            "yale" if self.vendor == "Yale" else "plain")
        if self.vendor is None:
            self.vendor = self.definition.vendor
        if self.pin_code_count is None:
            self.pin_code_count = self.definition.pin_code_count
        if self.program_event_on_rf is None:
            # ST zigbee-lock.groovy: "Yale lock do not generate programming event while creating
            # a user code from the SmartApp"; other locks do (creation success comes from it).
            self.program_event_on_rf = self.vendor != "Yale"

    @property
    def capacity(self) -> int:
        """Slots the lock itself has (numOfPinUsersSupported)."""
        return self.slots if self.slots is not None else int(self.pin_code_count or 0)

    def applied_sets(self, user: int) -> list[str | None]:
        """What was applied to one user, in order."""
        return [pin for u, pin in self.applied if u == user]

    def entry(self, user: int) -> dict[str, Any]:
        """The `users` entry Zigbee2MQTT derives now from a getPinCode answer for `user`
        (octet-string parsing, current zigbee-herdsman)."""
        return _users_entry(self, user, octet=True)

    def _answer_pin(self, user: int) -> tuple[int, str]:
        """getPinCodeRsp (userstatus, pincodevalue) the lock sends."""
        pin = self.table.get(user)
        if pin is None:
            return 0, ""
        status = 3 if user in self.disabled else 1
        return status, pin if self.send_pin_ota else self.masked_pin


def _users_entry(lock: FakeZigbeeLock, user: int, *, octet: bool) -> dict[str, Any]:
    # ZHC fromZigbee.ts lock_pin_code_response: status from lockUserStatus (else
    # `not_supported_<n>`); pin_code only `if (options?.expose_pin && data.pincodevalue)`.
    # ZH >= 685a781b (2025-12) reads pincodevalue as OCTET_STR -> Buffer, truthy even when empty,
    # so an empty PIN shows as "" (zigbee2mqtt#32289: `"1":{"pin_code":"","status":"available"}`);
    # before, CHAR_STR -> "" is falsy and pin_code is absent (zigbee2mqtt#17242 answers show
    # `"10":{"status":"available"}` with expose_pin on).
    status, pin = lock._answer_pin(user)
    entry: dict[str, Any] = {"status": USER_STATUS.get(status, f"not_supported_{status}")}
    if lock.expose_pin and (octet or pin):
        entry["pin_code"] = pin
    return entry


# -- Zigbee2MQTT ------------------------------------------------------------------------------


class FakeZigbee2MQTT(MqttPeer):
    """Zigbee2MQTT on `base_topic`, with the given locks."""

    def __init__(self, host: str, port: int, base_topic: str,
                 locks: list[FakeZigbeeLock], *, republish_stale: bool = False,
                 availability: bool = True, legacy_availability_payload: bool = False,
                 log_namespace: bool = True, octet_pin_code: bool = True,
                 command_timeout_s: float = 10.0) -> None:
        # Z2M lib/mqtt.ts connect(): will `bridge/state` {"state":"offline"}, retained, qos 1.
        will = aiomqtt.Will(f"{base_topic}/bridge/state",
                            "offline" if legacy_availability_payload
                            else json.dumps({"state": "offline"}), qos=1, retain=True)
        super().__init__(host, port, f"fake-z2m-{base_topic}", will=will)
        self.base = base_topic
        self.locks = {lock.friendly_name: lock for lock in locks}
        self.republish_stale = republish_stale
        self.availability = availability
        self.legacy_availability_payload = legacy_availability_payload
        self.log_namespace = log_namespace
        self.octet_pin_code = octet_pin_code
        self.command_timeout_s = command_timeout_s
        self.bridge_online = True
        self.extra_devices: list[dict[str, Any]] = []
        # Called after the lock applied a set or clear, before Zigbee2MQTT says anything more.
        self.after_apply: Callable[[str, int, str | None], None] | None = None
        # Every bridge/logging message published (level, message).
        self.logged: list[tuple[str, str]] = []
        self._last_logging: str | None = None
        self._tsn = itertools.count(1)
        self._queues: dict[str, asyncio.Queue[tuple[str, str | None, bytes]]] = {}
        self._workers: list[asyncio.Task[None]] = []
        # Z2M lib/extension/publish.ts topicGetSetRegex.
        self._topic = re.compile(rf"^{re.escape(base_topic)}/(?!bridge)(.+?)/(get|set)(?:/(.+))?$")

    # -- what tests do --------------------------------------------------------------------

    def lock(self, name: str) -> FakeZigbeeLock:
        """A lock by friendly name."""
        return self.locks[name]

    async def keypad_set(self, name: str, user: int, pin: str) -> None:
        """Someone programs a code at the keypad; the lock sends a programming event."""
        lock = self.locks[name]
        SEEN_PINS.add(pin)
        code = 4 if user in lock.table else 2
        lock.table[user] = pin
        await self._programming_event(lock, code, user, source=0)

    async def keypad_clear(self, name: str, user: int) -> None:
        """Someone deletes a code at the keypad (silently with `silent_keypad_delete`)."""
        lock = self.locks[name]
        lock.table.pop(user, None)
        if not lock.silent_keypad_delete:
            await self._programming_event(lock, 3, user, source=0)

    async def keypad_unlock(self, name: str, user: int) -> None:
        """Someone opens the door with the code of `user`: an operation event, then the lock's
        lockState report (two messages; the first still carries the cached `state`)."""
        lock = self.locks[name]
        # ZHC fromZigbee.ts lock_operation_event.
        await self._state(lock, {"action": OPERATION_EVENTS[2], "action_user": user,
                                 "action_source": 0, "action_source_name": SOURCE_NAME[0]})
        # ZHC fromZigbee.ts lock (attributeReport lockState 2).
        await self._state(lock, {"state": "UNLOCK", "lock_state": "unlocked"})

    async def set_online(self, name: str, online: bool) -> None:
        """The lock drops off the mesh (or comes back); Zigbee2MQTT's availability says so."""
        lock = self.locks[name]
        lock.online = online
        if self.availability:
            await self._availability(lock)

    async def set_bridge_online(self, online: bool) -> None:
        """Zigbee2MQTT itself stops (or starts)."""
        self.bridge_online = online
        await self.publish(f"{self.base}/bridge/state", self._avail_payload(online), retain=True)

    async def republish_cached(self, name: str) -> None:
        """The lock reports its battery: Zigbee2MQTT republishes its cached state with it."""
        await self._state(self.locks[name], {"battery": 87})

    async def publish_raw(self, topic: str, payload: bytes | str) -> None:
        """Anything at all, for malformed-payload tests."""
        await self.publish(topic, payload)

    async def stop(self) -> None:
        """Zigbee2MQTT stops: it publishes bridge/state offline (Z2M lib/mqtt.ts disconnect)."""
        # Take no command from here on: one arriving while the last word goes out would start a
        # worker nobody stops.
        self.bridge_online = False
        for task in self._workers:
            await cancel_and_wait(task)
        self._workers.clear()
        self._queues.clear()
        # Not in the message loop: the last word may take its time to be acknowledged.
        await self.publish(f"{self.base}/bridge/state", self._avail_payload(False), retain=True,
                           timeout=3.0)
        await super().stop()

    # -- MQTT -----------------------------------------------------------------------------

    def _avail_payload(self, online: bool) -> str:
        # Z2M lib/extension/availability.ts publishAvailability: JSON {"state": ...}; 1.x
        # lib/util/utils.ts availabilityPayload: plain text with legacy_availability_payload.
        word = "online" if online else "offline"
        return word if self.legacy_availability_payload else json.dumps({"state": word})

    async def _availability(self, lock: FakeZigbeeLock) -> None:
        await self.publish(f"{self.base}/{lock.friendly_name}/availability",
                           self._avail_payload(lock.online), retain=True)

    async def on_connected(self) -> None:
        # Z2M lib/mqtt.ts onConnect: bridge/state online (retained), then extensions start:
        # bridge.ts publishInfo / publishDevices (retained), availability.ts
        # publishAvailabilityForAllEntities, controller.ts start: cached states.
        await self.publish(f"{self.base}/bridge/state", self._avail_payload(self.bridge_online),
                           retain=True)
        await self.subscribe(f"{self.base}/+/set", f"{self.base}/+/get",
                             f"{self.base}/+/set/+", f"{self.base}/+/get/+")
        await self.publish(f"{self.base}/bridge/info", stable_json(self._info()), retain=True)
        await self.publish(f"{self.base}/bridge/devices", stable_json(self._devices()),
                           retain=True)
        if self.availability:
            for lock in self.locks.values():
                await self._availability(lock)
        if self.sessions == 1:
            # Cached states go out once, at start (cache_state_send_on_startup); they are not
            # retained, so a broker reconnect (mqtt.ts republishes retained topics) skips them.
            for lock in self.locks.values():
                await self._state(lock, {})

    async def on_message(self, topic: str, payload: bytes) -> None:
        if not self.bridge_online:
            return
        match = self._topic.match(topic)
        if match is None:
            return
        name, verb, attribute = match.group(1), match.group(2), match.group(3)
        # One queue per device: the lock handles one command at a time, in order, and a
        # command waiting for its timeout holds only that lock's queue.
        queue = self._queues.get(name)
        if queue is None:
            queue = self._queues[name] = asyncio.Queue()
            self._workers.append(asyncio.create_task(self._worker(name, queue),
                                                     name=f"fake-z2m:{name}"))
        queue.put_nowait((verb, attribute, payload))

    async def _worker(self, name: str, queue: asyncio.Queue[tuple[str, str | None, bytes]]
                      ) -> None:
        while True:
            verb, attribute, payload = await queue.get()
            try:
                await self._handle(name, verb, attribute, payload)
            except Exception:
                # A fake must not die silently (see peer.py).
                _LOG.exception("fake z2m: handler failed")

    async def _handle(self, name: str, verb: str, attribute: str | None, payload: bytes) -> None:
        # Z2M lib/extension/publish.ts onMQTTMessage.
        lock = self.locks.get(name)
        if lock is None:
            await self._log(f"Entity '{name}' is unknown")
            return
        text = payload.decode("utf-8", "replace")
        message: Any
        if attribute:
            # parseMessage: {[attribute]: JSON.parse(message)} or the raw string.
            try:
                message = {attribute: json.loads(text)}
            except ValueError:
                message = {attribute: text}
        else:
            try:
                message = json.loads(text)
            except ValueError:
                message = {"state": text} if text.lower() in _STATE_VALUES else None
        if not js_truthy(message):
            # `Invalid message '${message}', skipping...` (message is the parsed value:
            # undefined when the text is neither JSON nor a state word).
            shown = "null" if text.strip() == "null" else (
                "undefined" if message is None else js_string(message))
            await self._log(f"Invalid message '{shown}', skipping...")
            return
        if isinstance(message, dict):
            entries = list(message.items())
        elif isinstance(message, list):
            entries = [(str(i), v) for i, v in enumerate(message)]
        elif isinstance(message, str):
            entries = [(str(i), c) for i, c in enumerate(message)]
        else:
            entries = []  # Object.entries(5) / Object.entries(true): nothing to do
        # publish.ts: `state` (and brightness) go first unless the state is "off".
        entries.sort(key=lambda item: 0 if item[0] == "state" else 1)
        for key, value in entries:
            await self._convert(lock, verb, key, value, message)

    async def _convert(self, lock: FakeZigbeeLock, verb: str, key: str, value: Any,
                       message: Any) -> None:
        # The converters ZHC prepareDefinition gives every device (read, write, command, ...)
        # and the lock's own (toZigbee of the definition).
        generic = {"read", "write", "command", "factory_reset", "zcl_command", "scene_store",
                   "scene_recall", "scene_add", "scene_remove", "scene_remove_all",
                   "scene_rename"}
        yale_only = {"user_status", "auto_relock_time", "sound_volume"}
        if key in generic or (key in yale_only and lock.definition.style == "yale"):
            return  # not modelled
        if key not in ("state", "pin_code"):
            await self._log(f"No converter available for '{key}' on '{lock.friendly_name}': "
                            f"({stable_json(value)})")
            return
        try:
            if key == "pin_code":
                if verb == "set":
                    await self._pincode_set(lock, value)
                else:
                    await self._pincode_get(lock, message)
            elif verb == "set":
                await self._lock_set(lock, value)
            else:
                await self._zcl(lock, "read", {}, None)
                await self._state(lock, {"state": lock.state.get("state"),
                                         "lock_state": lock.state.get("lock_state")})
        except _Fail as error:
            # publish.ts: `Publish '${type}' '${key}' to '${re.name}' failed: '${error}'`.
            await self._log(f"Publish '{verb}' '{key}' to '{lock.friendly_name}' failed: "
                            f"'Error: {error}'")

    # -- converters ---------------------------------------------------------------------------

    async def _pincode_set(self, lock: FakeZigbeeLock, value: Any) -> None:
        # ZHC toZigbee.ts pincode_lock.convertSet.
        if not isinstance(value, dict):
            # utils.assertObject
            raise _Fail(f"pin_code is not a object, got {js_typeof(value)} ({js_json(value)})")
        user = value.get("user")
        user_type = value.get("user_type") if js_truthy(value.get("user_type")) \
            else "unrestricted"
        user_enabled = value.get("user_enabled") if value.get("user_enabled") is not None \
            else True
        pin = value.get("pin_code")
        # `Number.isNaN(user)` never holds for a JSON value; the range check is a JavaScript
        # comparison against the definition's meta.pinCodeCount (utils.isInRange).
        number = js_number(user)
        if "user" not in value or not 0 <= number <= int(lock.pin_code_count or 0) - 1:
            raise _Fail("user must be in range for device")
        userid = int(number)  # Buffer.writeUInt16LE truncates, as ZH buffalo writeUInt16 does
        if pin is None:  # `pinCode == null`: null or absent clears
            status = await self._zcl(lock, "clearPinCode", {"userid": user}, userid)
            if status == SUCCESS:
                lock.table.pop(userid, None)
                lock.disabled.discard(userid)
                lock.applied.append((userid, None))
                await self._applied(lock, userid, None, code=3)
            return
        usertype = _lookup(user_type)
        pin_text = js_string(pin)  # `pincodevalue: pinCode.toString()`
        payload = {"userid": user, "userstatus": 1 if js_truthy(user_enabled) else 3,
                   "usertype": usertype, "pincodevalue": pin_text}
        SEEN_PINS.add(pin_text)
        previous = lock.table.get(userid)
        status = await self._zcl(lock, "setPinCode", payload, userid)
        if status == SUCCESS:
            lock.table[userid] = pin_text
            lock.user_types[userid] = usertype
            if payload["userstatus"] == 3:
                lock.disabled.add(userid)
            else:
                lock.disabled.discard(userid)
            lock.applied.append((userid, pin_text))
            await self._applied(lock, userid, pin_text, code=2 if previous is None else 4)

    async def _applied(self, lock: FakeZigbeeLock, user: int, pin: str | None, code: int
                       ) -> None:
        if self.after_apply is not None:
            self.after_apply(lock.friendly_name, user, pin)
        # Zigbee2MQTT publishes nothing for pincode_lock (publish.ts publishes only a
        # converter's `result.state`; convertSet returns nothing). What follows comes from the
        # lock: a programming event with source rf (ST: all but Yale locks).
        if lock.program_event_on_rf:
            await self._programming_event(lock, code, user, source=1)
        if self.republish_stale:
            await self._state(lock, {})

    async def _pincode_get(self, lock: FakeZigbeeLock, message: Any) -> None:
        # ZHC toZigbee.ts pincode_lock.convertGet: user from meta.message.pin_code.user.
        pin_code = message.get("pin_code") if isinstance(message, dict) else None
        user = pin_code.get("user", _ABSENT) if isinstance(pin_code, dict) else _ABSENT
        count = int(lock.pin_code_count or 0)
        if user is _ABSENT:
            # "Get all": getPinCode for 0..pinCodeCount-1, awaited one by one; the first that
            # fails throws out of the loop (zigbee2mqtt#17242: one state message per slot).
            for slot in range(count):
                await self._get_one(lock, slot, slot)
            return
        number = js_number(user)
        if not 0 <= number <= count - 1:
            raise _Fail("userId must be in range for device")
        await self._get_one(lock, user, int(number))

    async def _get_one(self, lock: FakeZigbeeLock, user: Any, userid: int) -> None:
        await self._zcl(lock, "getPinCode", {"userid": user}, userid)
        lock.gets += 1
        # fromZigbee lock_pin_code_response -> receive.ts publishEntityState.
        users = {str(userid): _users_entry(lock, userid, octet=self.octet_pin_code)}
        await self._state(lock, {"users": users})

    async def _lock_set(self, lock: FakeZigbeeLock, value: Any) -> None:
        # ZHC toZigbee.ts lock.convertSet.
        state = value.upper() if isinstance(value, str) else None
        if isinstance(value, dict) and isinstance(value.get("state"), str):
            state = value["state"].upper()
        if state not in ("LOCK", "UNLOCK", "TOGGLE"):
            raise _Fail(f"'{js_string(state)}' not allowed, choose between: LOCK,UNLOCK,TOGGLE")
        await self._zcl(lock, f"{state.lower()}Door",
                        {"pincodevalue": {"type": "Buffer", "data": []}}, None)
        if state == "TOGGLE":
            state = "UNLOCK" if lock.state.get("state") == "LOCK" else "LOCK"
        # The lock reports lockState (ZHC fromZigbee lock).
        await self._state(lock, {"state": state,
                                 "lock_state": "locked" if state == "LOCK" else "unlocked"})

    async def _zcl(self, lock: FakeZigbeeLock, command: str, payload: dict[str, Any],
                   userid: int | None) -> int:
        """Send one closuresDoorLock command and wait for the lock's answer (its status for
        set/clear). Radio failures and timeouts raise as ZH endpoint.ts zclCommand words them."""
        ids = {"setPinCode": CMD_SET_PIN, "getPinCode": CMD_GET_PIN,
               "clearPinCode": CMD_CLEAR_PIN}
        cmd_id = ids.get(command, 0)
        tsn = next(self._tsn) % 256
        head = (f"ZCL command {lock.ieee_address}/{lock.definition.endpoint} "
                f"closuresDoorLock.{command}({js_json(payload)}, {_ZCL_OPTIONS}) failed")
        if command == "read":
            head = (f"Read {lock.ieee_address}/{lock.definition.endpoint} "
                    "closuresDoorLock([\"lockState\"], {\"timeout\":10000}) failed")
        if not lock.online:
            # ZH z-stack adapter DataConfirmError after its retries.
            raise _Fail(f"{head} (Data request failed with error: 'MAC_NO_ACK' (0xe9))")
        if command == "setPinCode" and lock.refuse:
            raise _Fail(lock.refuse.popleft())
        beyond = userid is not None and userid >= lock.capacity
        silent = lock.stall or (userid is not None and userid in lock.no_answer) or (
            command == "getPinCode" and beyond)
        if silent:
            # ZH adapter.ts clusterWaitressTimeoutFormatter (z-stack, deconz, zboss, zigate ...).
            await asyncio.sleep(self.command_timeout_s)
            try:
                nwk = int(lock.ieee_address[-4:], 16)
            except ValueError:
                nwk = 0
            raise _Fail(f"{head} (Timeout after 10000ms [address={nwk} "
                        f"endpoint={lock.definition.endpoint} clusterId={CLUSTER_DOOR_LOCK} "
                        f"cmdId={cmd_id} tsn={tsn}])")
        if command not in ("setPinCode", "clearPinCode") or userid is None:
            return SUCCESS
        status = self._lock_answer(lock, command, payload, userid, beyond)
        lock.answers.append((command, userid, status))
        # ZH endpoint.ts command(): checkStatus=false, the response's status is not looked at.
        return status

    @staticmethod
    def _lock_answer(lock: FakeZigbeeLock, command: str, payload: dict[str, Any], userid: int,
                     beyond: bool) -> int:
        if lock.set_status:
            return lock.set_status.popleft()
        if beyond:
            return GENERAL_FAILURE  # a user id the lock does not have (chosen, see report)
        if command == "clearPinCode":
            return SUCCESS
        pin = str(payload["pincodevalue"])
        if not (lock.min_pin_len <= len(pin) <= lock.max_pin_len) or not pin.isdigit():
            return GENERAL_FAILURE  # ZCL: PIN outside minPinLen..maxPinLen (chosen)
        if lock.table.get(userid) == pin and lock.duplicate_same_slot:
            return DUPLICATE_CODE  # keymaster#660 (Yale YRD210): same code, same slot
        others = [u for u, p in lock.table.items() if p == pin and u != userid]
        if others and lock.rejects_duplicates:
            return DUPLICATE_CODE
        if userid not in lock.table and len(lock.table) >= lock.capacity:
            return MEMORY_FULL
        return SUCCESS

    async def _programming_event(self, lock: FakeZigbeeLock, code: int, user: int,
                                 source: int) -> None:
        # ZHC fromZigbee.ts lock_programming_event.
        await self._state(lock, {"action": PROGRAM_EVENTS[code], "action_user": user,
                                 "action_source": source,
                                 "action_source_name": SOURCE_NAME[source]})
        # ZHC fromZigbee.ts lock_programming_event_read_pincode (not for source rf).
        if lock.read_pin_on_program_event and source != 1:
            with contextlib.suppress(_Fail):
                await self._get_one(lock, user, user)

    async def _state(self, lock: FakeZigbeeLock, update: dict[str, Any]) -> None:
        """Z2M controller.ts publishEntityState: merge into the cache (state.ts, deep), publish
        the whole cached state (cache_state) + linkquality, keys sorted."""
        users = update.get("users")
        rest = {k: v for k, v in update.items() if k != "users"}
        if isinstance(users, dict):
            deep_merge(lock.cache, users)
        deep_merge(lock.state, rest)
        message = dict(lock.state)
        if lock.cache:
            message["users"] = json.loads(json.dumps(lock.cache))
        message["linkquality"] = lock.linkquality
        for key in [k for k in lock.state if _NOT_CACHED.match(k)]:
            del lock.state[key]
        await self.publish(f"{self.base}/{lock.friendly_name}", stable_json(message))

    async def _log(self, message: str, level: str = "error") -> None:
        # Z2M lib/util/logger.ts log(): winston gets `${namespace}: ${message}` ("z2m"), and
        # bridge.ts EventTransport publishes stringify({message, level, namespace}) with
        # namespace undefined (left out), skipping a payload equal to the last one.
        text = f"z2m: {message}" if self.log_namespace else message
        payload = stable_json({"level": level, "message": text})
        if payload == self._last_logging:
            return
        self._last_logging = payload
        self.logged.append((level, text))
        await self.publish(f"{self.base}/bridge/logging", payload)

    # -- bridge/devices -------------------------------------------------------------------------

    def _devices(self) -> list[dict[str, Any]]:
        # Z2M lib/extension/bridge.ts publishDevices / getDefinitionPayload.
        devices: list[dict[str, Any]] = [{
            "ieee_address": "0x00124b0000000000", "friendly_name": "Coordinator",
            "type": "Coordinator", "supported": True, "disabled": False,
            "interview_completed": True, "interview_state": "SUCCESSFUL", "endpoints": {}}]
        for lock in self.locks.values():
            devices.append({
                "ieee_address": lock.ieee_address, "friendly_name": lock.friendly_name,
                "type": "EndDevice", "supported": True, "disabled": False,
                "power_source": "Battery", "model_id": lock.model,
                "manufacturer": lock.vendor, "interview_completed": True,
                "interviewing": False, "interview_state": "SUCCESSFUL",
                "endpoints": {str(lock.definition.endpoint): {
                    "bindings": [], "configured_reportings": [], "scenes": [],
                    "clusters": {"input": ["genBasic", "genPowerCfg", "closuresDoorLock"],
                                 "output": ["genOta"]}}},
                "definition": {
                    "source": "native", "model": lock.model, "vendor": lock.vendor,
                    "description": lock.definition.description, "supports_ota": False,
                    "exposes": _exposes(lock.definition.style),
                    # fromZigbee lock_pin_code_response's options (index.ts prepareDefinition).
                    "options": [_EXPOSE_PIN_OPTION]}})
        return devices + self.extra_devices

    def _info(self) -> dict[str, Any]:
        return {"version": "2.12.1", "zigbee_herdsman": {"version": "10.0.7"},
                "zigbee_herdsman_converters": {"version": "26.46.0"}, "config": {
                    "mqtt": {"base_topic": self.base},
                    "availability": {"enabled": self.availability},
                    "devices": {lock.ieee_address: {"friendly_name": lock.friendly_name,
                                                    "expose_pin": lock.expose_pin}
                                for lock in self.locks.values()},
                    "device_options": {}}}


def _lookup(user_type: Any) -> int:
    # ZHC utils.getFromLookup(userType, typeLookup).
    if isinstance(user_type, str):
        for key in (user_type, user_type.lower(), user_type.upper()):
            if key in USER_TYPES:
                return USER_TYPES[key]
    elif js_typeof(user_type) != "number":
        raise _Fail(f"Expected string or number, got: {js_typeof(user_type)}")
    raise _Fail(f"Key '{js_string(user_type)}' not found in: [{', '.join(USER_TYPES)}]")


# ZHC src/lib/exposes.ts, serialized as Zigbee2MQTT publishes them (undefined fields left out).
_EXPOSE_PIN_OPTION = {"type": "binary", "name": "expose_pin", "label": "Expose PIN",
                      "property": "expose_pin", "access": 2, "value_on": True,
                      "value_off": False,
                      "description": "Expose pin of this lock in the published payload "
                                     "(default false)."}


def _exposes(style: str) -> list[dict[str, Any]]:
    lock = {"type": "lock", "features": [
        {"type": "binary", "name": "state", "label": "State", "property": "state", "access": 7,
         "value_on": "LOCK", "value_off": "UNLOCK", "description": "State of the lock"},
        {"type": "enum", "name": "lock_state", "label": "Lock state", "property": "lock_state",
         "access": 1, "values": ["not_fully_locked", "locked", "unlocked"],
         "description": "Actual state of the lock"}]}
    battery = {"type": "numeric", "name": "battery", "label": "Battery", "property": "battery",
               "access": 1, "unit": "%", "value_min": 0, "value_max": 100,
               "category": "diagnostic",
               "description": "Remaining battery in %, can take up to 24 hours before reported"}
    # exposes.ts presets.pincode(): `user` is a plain Numeric, no withValueMin/withValueMax.
    pincode = {"type": "composite", "name": "pin_code", "label": "Pin code",
               "property": "pin_code", "access": 7, "features": [
                   {"type": "numeric", "name": "user", "label": "User", "property": "user",
                    "access": 2, "description": "User ID to set or clear the pincode for"},
                   {"type": "enum", "name": "user_type", "label": "User type",
                    "property": "user_type", "access": 2, "values": list(USER_TYPES),
                    "description": "Type of user, unrestricted: owner (default), "
                                   "(year|week)_day_schedule: user has ability to open lock "
                                   "based on specific time period, master: user has ability to "
                                   "both program and operate the door lock, non_access: user is "
                                   "recognized by the lock but does not have the ability to "
                                   "open the lock"},
                   {"type": "binary", "name": "user_enabled", "label": "User enabled",
                    "property": "user_enabled", "access": 2, "value_on": True,
                    "value_off": False, "description": "Whether the user is enabled/disabled"},
                   {"type": "numeric", "name": "pin_code", "label": "PIN code",
                    "property": "pin_code", "access": 2,
                    "description": "Pincode to set, set pincode to null to clear"}]}
    action = {"type": "enum", "name": "action", "label": "Action", "property": "action",
              "access": 1, "values": list(OPERATION_EVENTS.values()),
              "description": "Triggered action on the lock"}
    source = {"type": "enum", "name": "action_source_name", "label": "Action source name",
              "property": "action_source_name", "access": 1,
              "values": ["keypad", "rfid", "manual", "rf"],
              "description": "Source of the triggered action on the lock"}
    action_user = {"type": "numeric", "name": "action_user", "label": "Action user",
                   "property": "action_user", "access": 1,
                   "description": "ID of user that triggered the action on the lock"}
    linkquality = {"type": "numeric", "name": "linkquality", "label": "Linkquality",
                   "property": "linkquality", "access": 1, "unit": "lqi", "value_min": 0,
                   "value_max": 255, "category": "diagnostic",
                   "description": "Link quality (signal strength)"}
    if style == "yale":
        relock = {"type": "numeric", "name": "auto_relock_time", "label": "Auto relock time",
                  "property": "auto_relock_time", "access": 7, "unit": "s", "value_min": 0,
                  "value_max": 3600,
                  "description": "The number of seconds to wait after unlocking a lock before "
                                 "it automatically locks again. 0=disabled"}
        volume = {"type": "enum", "name": "sound_volume", "label": "Sound volume",
                  "property": "sound_volume", "access": 7,
                  "values": ["silent_mode", "low_volume", "high_volume"],
                  "description": "Sound volume of the lock"}
        low = {"type": "binary", "name": "battery_low", "label": "Battery low",
               "property": "battery_low", "access": 1, "value_on": True, "value_off": False,
               "category": "diagnostic",
               "description": "Indicates if the battery of this device is almost empty"}
        return [lock, battery, pincode, action, source, action_user, relock, volume, low,
                linkquality]
    return [lock, battery, pincode, action, source, action_user, linkquality]


async def wait_applied(lock: FakeZigbeeLock, count: int, timeout: float = 5.0) -> None:
    """Wait until the lock has applied `count` commands."""
    async with asyncio.timeout(timeout):
        while len(lock.applied) < count:
            await asyncio.sleep(0.005)
