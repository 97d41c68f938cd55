"""Zigbee2MQTT's wire formats and what they mean to lockbridge: pure functions, no I/O.

Facts this module encodes (see docs/drivers/mqtt.md):

- Zigbee Door Lock users are numbered from 0; lockbridge uses the user number as the slot.
- Commands go to `<base>/<name>/set` and `<base>/<name>/get`; a PIN is always a JSON string, so
  `0155` stays `0155`.
- Answers arrive only in the `users` object of the device state, which Zigbee2MQTT caches and
  republishes with every state message. A PIN is shown only when the device option
  `expose_pin` is on; otherwise an occupied user is unreadable, never empty.
- Failures of a command are logged by Zigbee2MQTT on `<base>/bridge/logging` as
  `Publish 'set' 'pin_code' to '<name>' failed: '<error>'` (prefixed `z2m: ` since 2.x; an
  identical line twice in a row is published once). zigbee-herdsman's error names the ZCL
  command with its payload, so the user number, and for setPinCode the PIN in clear
  (`"pincodevalue":"1234"`): that text is redacted here before anything can log it.
- The lock's own answer to setPinCode (duplicate, memory full, general failure) is never
  checked by Zigbee2MQTT: a refused PIN is silent, and only a read shows it did not stick.
- Nothing on MQTT says how many users a lock has: the `pin_code` expose has no range, and the
  range Zigbee2MQTT enforces is the definition's pinCodeCount (a table). A user beyond the
  lock's own range simply does not answer a read.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Literal, TypedDict

from bridge.driver import (
    CommandRejected,
    DriverError,
    RejectReason,
    RetryLater,
    SlotRead,
    SlotState,
)
from drivers.mqtt.common import MalformedPayload, decode_json, encode_json, sanitized

# -- raw payloads -------------------------------------------------------------------------


class UserEntry(TypedDict, total=False):
    """One entry of a device state's `users` object."""

    status: str
    pin_code: str | int | None


class DeviceState(TypedDict, total=False):
    """The fields of a lock's state message that lockbridge reads."""

    users: dict[str, UserEntry]
    action: str | None
    action_user: int | None
    action_source: int | None
    action_source_name: str | None
    state: str
    lock_state: str


class PinCodeCommand(TypedDict, total=False):
    """The `pin_code` object of a set or get."""

    user: int
    user_type: str
    user_enabled: bool
    pin_code: str | None


class Expose(TypedDict, total=False):
    """One entry of a definition's `exposes`, possibly with nested features."""

    type: str
    name: str
    property: str
    features: list[Expose]


class Definition(TypedDict, total=False):
    """A device's definition in `bridge/devices`."""

    model: str
    vendor: str
    description: str
    exposes: list[Expose]


class BridgeDevice(TypedDict, total=False):
    """One device of the retained `bridge/devices` list."""

    ieee_address: str
    friendly_name: str
    type: str
    supported: bool
    disabled: bool
    definition: Definition | None


class BridgeInfoConfig(TypedDict, total=False):
    """The part of `bridge/info` that holds device options."""

    devices: dict[str, dict[str, object]]
    device_options: dict[str, object]


class BridgeInfo(TypedDict, total=False):
    """The retained `bridge/info` message."""

    config: BridgeInfoConfig


class LogMessage(TypedDict, total=False):
    """A `bridge/logging` message."""

    level: str
    message: str


# -- what they mean ----------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class DiscoveredLock:
    """A device of `bridge/devices` that takes PIN codes."""

    friendly_name: str
    ieee_address: str
    vendor: str
    model: str
    description: str
    slot_count: int | None


@dataclass(frozen=True, slots=True)
class LockAction:
    """What an `action` in a state message means: a keypad unlock or a change at the keypad."""

    kind: Literal["keypad_used", "slot_changed"]
    slot: int
    detail: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class CommandFailure:
    """A command Zigbee2MQTT reported as failed on `bridge/logging`."""

    device: str
    verb: Literal["set", "get"]
    key: str
    error: DriverError
    # The user the failed ZCL command was for, when the error text names it.
    user: int | None = None


class UserDidNotAnswer(RetryLater):
    """The lock gave no answer to a command for one user (zigbee-herdsman's timeout, or ours)."""


# Published PIN capacities (zigbee-herdsman-converters' pinCodeCount), by vendor and model.
_MODEL_SLOTS: dict[tuple[str, str], int] = {
    ("yale", "ymi70a"): 100,
}
_VENDOR_SLOTS: dict[str, int] = {
    "kwikset": 30,
    "yale": 250,
    "danalock": 20,
    "id lock": 109,
    "datek": 109,
}

_UNLOCK_ACTIONS = frozenset({"unlock", "keypad_unlock"})
_PROGRAMMING_ACTIONS = frozenset({"pin_code_added", "pin_code_deleted", "pin_code_changed"})
_TRANSIENT = re.compile(r"timeout|timed out|delivery failed|no network route|mac_no_ack|"
                        r"mac_channel_access|nwk_|did not respond|not respond")
_FAILURE = re.compile(r"^(?:z2m: )?Publish '(set|get)' '([^']*)' to '(.*)' failed: '(.*)'$",
                      re.DOTALL)
# zigbee-herdsman: `ZCL command <ieee>/<ep> closuresDoorLock.getPinCode({"userid":5}, ...)`.
_USERID = re.compile(r"closuresDoorLock\.\w+\(\{\"userid\":\"?(\d+)")
_PINCODE_VALUE = re.compile(r'("pincodevalue"\s*:\s*)("(?:[^"\\]|\\.)*"|[^,})\s]+)')
# Not `"timeout":10000`: zigbee-herdsman prints the command's options in every error.
_OPTIONS = re.compile(r', \{"timeout":[^{}]*\}')
_NO_ANSWER = re.compile(r"timeout after \d+|timed out|error: timeout\b")
# Fields of a lock's state that its own reports change; an answer to a `get` changes none.
_REPORT_FIELDS = ("state", "lock_state", "battery", "battery_low", "voltage",
                  "auto_relock_time", "sound_volume")


def set_pin_code(user: int, pin: str) -> bytes:
    """The `set` payload that puts `pin` (a string, always) on `user`, enabled."""
    command: PinCodeCommand = {"user": user, "user_type": "unrestricted", "user_enabled": True,
                               "pin_code": pin}
    return encode_json({"pin_code": command})


def clear_pin_code(user: int) -> bytes:
    """The `set` payload that clears `user`."""
    command: PinCodeCommand = {"user": user, "user_enabled": False, "pin_code": None}
    return encode_json({"pin_code": command})


def get_pin_code(user: int) -> bytes:
    """The `get` payload that asks the lock for `user` afresh."""
    command: PinCodeCommand = {"user": user}
    return encode_json({"pin_code": command})


def get_lock_state() -> bytes:
    """A cheap `get` (the lock's state attribute), used as a probe."""
    return encode_json({"state": ""})


def read_user(slot: int, entry: object) -> SlotRead:
    """One `users` entry as a slot read: `available` is empty; an occupied user whose PIN is
    withheld (no `expose_pin`), masked, numeric (leading zeros lost) or disabled is
    unreadable, never empty."""
    if not isinstance(entry, dict):
        raise MalformedPayload("a users entry is not an object")
    status = entry.get("status")
    if status == "available":
        return SlotRead(slot=slot, state=SlotState.EMPTY)
    if not isinstance(status, str):
        raise MalformedPayload("a users entry has no status")
    pin = entry.get("pin_code")
    if status == "enabled" and isinstance(pin, str) and pin.isascii() and pin.isdigit():
        return SlotRead(slot=slot, state=SlotState.KNOWN, pin=pin)
    return SlotRead(slot=slot, state=SlotState.UNREADABLE)


def is_event(state: Mapping[str, object]) -> bool:
    """True for a message that carries an event (`action`, not cached): it is never the answer
    to a `get`, whatever cached `users` it repeats."""
    return any(key == "action" or key.startswith("action_") for key in state)


def reported_fields(state: Mapping[str, object]) -> dict[str, object]:
    """The fields of a state that the lock's own reports change (a `get` answer changes none)."""
    return {key: state.get(key) for key in _REPORT_FIELDS}


def users_in(state: Mapping[str, object]) -> dict[int, SlotRead]:
    """Every well-formed entry of a state's `users` object; bad entries are skipped."""
    users = state.get("users")
    if users is None:
        return {}
    if not isinstance(users, dict):
        raise MalformedPayload("users is not an object")
    reads: dict[int, SlotRead] = {}
    for key, entry in users.items():
        if not isinstance(key, str) or not key.isdigit():
            continue
        try:
            reads[int(key)] = read_user(int(key), entry)
        except MalformedPayload:
            continue
    return reads


def action_in(state: Mapping[str, object]) -> LockAction | None:
    """A keypad unlock (`action` unlock from the keypad) or a code programmed at the lock."""
    action = state.get("action")
    user = state.get("action_user")
    if not isinstance(action, str) or not action or isinstance(user, bool) \
            or not isinstance(user, int) or user < 0:
        return None
    source = state.get("action_source_name")
    source_name = source if isinstance(source, str) else ""
    detail = {"action": action, "source": source_name} if source_name else {"action": action}
    if action in _PROGRAMMING_ACTIONS:
        return LockAction("slot_changed", user, detail)
    if action in _UNLOCK_ACTIONS and (source_name == "keypad" or action.startswith("keypad_")):
        return LockAction("keypad_used", user, detail)
    return None


def availability_of(payload: object) -> bool | None:
    """`{"state": "online"}` (or legacy `online`) as True/False; None when unrecognised."""
    value = payload.get("state") if isinstance(payload, dict) else payload
    if value == "online":
        return True
    if value == "offline":
        return False
    return None


def decode_plain_or_json(payload: bytes) -> object:
    """Availability and bridge state come as JSON or, in legacy mode, as a bare word."""
    text = payload.decode("utf-8", errors="replace").strip()
    if text in ("online", "offline"):
        return text
    return decode_json(payload)


def exposes_pin_code(definition: object) -> bool:
    """True when a definition exposes the `pin_code` composite (the device takes PINs)."""
    if not isinstance(definition, dict):
        return False
    stack: list[object] = list(definition.get("exposes") or [])
    while stack:
        item = stack.pop()
        if not isinstance(item, dict):
            continue
        if item.get("name") == "pin_code" or item.get("property") == "pin_code":
            return True
        features = item.get("features")
        if isinstance(features, list):
            stack.extend(features)
    return False


def slot_count_for(vendor: str, model: str) -> int | None:
    """The published number of PIN users for a vendor and model, when known."""
    v, m = vendor.strip().lower(), model.strip().lower()
    if (v, m) in _MODEL_SLOTS:
        return _MODEL_SLOTS[(v, m)]
    for name, count in _VENDOR_SLOTS.items():
        if name in v:
            return count
    return None


def locks_in(devices: object) -> list[DiscoveredLock]:
    """The devices of `bridge/devices` that take PIN codes (enabled, supported, named)."""
    if not isinstance(devices, list):
        raise MalformedPayload("bridge/devices is not a list")
    found: list[DiscoveredLock] = []
    for device in devices:
        # Every real entry names its device; anything else is not a device list at all, and
        # must not make lockbridge believe its locks were removed.
        if not isinstance(device, dict) or not isinstance(device.get("friendly_name"), str) \
                or not isinstance(device.get("ieee_address"), str):
            raise MalformedPayload("bridge/devices holds something that is not a device")
        if device.get("disabled") is True:
            continue
        definition = device.get("definition")
        name, ieee = device["friendly_name"], device["ieee_address"]
        if not name:
            continue
        if not isinstance(definition, dict) or not exposes_pin_code(definition):
            continue
        vendor = str(definition.get("vendor") or "")
        model = str(definition.get("model") or "")
        found.append(DiscoveredLock(
            friendly_name=name, ieee_address=ieee, vendor=vendor, model=model,
            description=str(definition.get("description") or ""),
            slot_count=slot_count_for(vendor, model)))
    return found


def expose_pin_options(info: object) -> tuple[dict[str, bool], bool | None]:
    """`expose_pin` per device (keyed by IEEE address and by friendly name) from `bridge/info`,
    and the global default from `device_options` (None when not set)."""
    if not isinstance(info, dict):
        raise MalformedPayload("bridge/info is not an object")
    config = info.get("config")
    if not isinstance(config, dict):
        return {}, None
    per_device: dict[str, bool] = {}
    devices = config.get("devices")
    if isinstance(devices, dict):
        for ieee, options in devices.items():
            if not isinstance(options, dict) or not isinstance(options.get("expose_pin"), bool):
                continue
            flag = bool(options["expose_pin"])
            per_device[str(ieee)] = flag
            name = options.get("friendly_name")
            if isinstance(name, str):
                per_device[name] = flag
    defaults = config.get("device_options")
    default = defaults.get("expose_pin") if isinstance(defaults, dict) else None
    return per_device, default if isinstance(default, bool) else None


def command_failure(payload: object) -> CommandFailure | None:
    """A failed set or get from a `bridge/logging` message, or None for any other line."""
    if not isinstance(payload, dict) or payload.get("level") != "error":
        return None
    message = payload.get("message")
    if not isinstance(message, str):
        return None
    match = _FAILURE.match(message.strip())
    if match is None:
        return None
    verb, key, device, error = match.groups()
    user = _USERID.search(error)
    return CommandFailure(device=device, verb="set" if verb == "set" else "get", key=key,
                          error=classify_failure(error),
                          user=int(user.group(1)) if user is not None else None)


def redacted(text: str) -> str:
    """Zigbee2MQTT's error text with the PIN of a failed setPinCode taken out (and the
    command's options, which say nothing), fit to log."""
    return sanitized(_OPTIONS.sub("", _PINCODE_VALUE.sub(r'\1"<redacted>"', text)), 300)


def classify_failure(error: str) -> DriverError:
    """Zigbee2MQTT's error text as what lockbridge must do about it."""
    text = error.lower()
    said = f" ({redacted(error)})"
    if "in range" in text:
        return CommandRejected(RejectReason.SLOT_OUT_OF_RANGE,
                               "Zigbee2MQTT: the user number is out of range for this lock" + said)
    if "duplicate" in text:
        return CommandRejected(RejectReason.DUPLICATE_PIN,
                               "Zigbee2MQTT: the lock already holds this PIN in another slot"
                               + said)
    if "memory full" in text or "no space" in text:
        return CommandRejected(RejectReason.NO_SPACE,
                               "Zigbee2MQTT: the lock has no free user" + said)
    if _NO_ANSWER.search(text):
        return UserDidNotAnswer("Zigbee2MQTT: the lock did not answer" + said)
    if _TRANSIENT.search(text):
        return RetryLater("Zigbee2MQTT: the lock could not be reached" + said)
    if "pin" in text and ("number" in text or "string" in text or "invalid" in text):
        return CommandRejected(RejectReason.INVALID_PIN,
                               "Zigbee2MQTT: the lock refused the PIN's format" + said)
    if "no converter" in text or "unsupported" in text:
        return CommandRejected(RejectReason.UNSUPPORTED,
                               "Zigbee2MQTT: this device does not take PIN codes" + said)
    return CommandRejected(RejectReason.OTHER, "Zigbee2MQTT reported the command as failed" + said)
