"""Wire to domain for Z-Wave locks: pure functions over zwave-js-server payloads.

Nothing here does I/O or imports zwave-js-server-python; payloads are typed as the server sends
them (`TypedDict`s), so the rules are tested with recorded payloads of the real stack.
"""

from __future__ import annotations

import enum
import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, TypedDict
from zoneinfo import ZoneInfo

from bridge.driver import (
    Addressing,
    Availability,
    CommandRejected,
    DeviceInfo,
    DriverError,
    FixConfig,
    LocalWindow,
    LockCapabilities,
    PinConstraints,
    RejectReason,
    RetryLater,
    SlotRead,
)
from drivers import zwave_usercode as usercode
from drivers.zwave_usercode import AccessControlEvent, Code

# Command classes lockbridge uses (User Code's own rules are in drivers/zwave_usercode.py).
CC_USER_CODE = usercode.USER_CODE_CC
CC_DOOR_LOCK = 0x62
CC_NOTIFICATION = usercode.NOTIFICATION_CC
CC_SCHEDULE_ENTRY_LOCK = 0x4E
CC_TIME_PARAMETERS = 0x8B
CC_CLOCK = 0x81

USER_CODE = "userCode"
USER_ID_STATUS = "userIdStatus"
# zwave-js keeps what the lock's User Code Capabilities Report said as an internal value: not
# in the node's values, but `node.get_value` returns it.
MULTI_REPORT_VALUE = {"commandClass": CC_USER_CODE, "endpoint": 0,
                      "property": "supportsMultipleUserCodeReport"}

# Node status values of zwave-js.
NODE_UNKNOWN = 0
NODE_ASLEEP = 1
NODE_AWAKE = 2
NODE_DEAD = 3
NODE_ALIVE = 4

# zwave-js reports user code length limits of 4 to 10 when a lock says nothing else.
DEFAULT_MIN_LENGTH = 4
DEFAULT_MAX_LENGTH = 10
# SupervisionStatus of zwave-js (@zwave-js/core definitions/Supervision.ts; in the installed
# zwave-js 15.29: @zwave-js/core/build/esm/definitions/Supervision.js lines 3-9): NoSupport 0,
# Working 1, Fail 2, Success 255.
SUPERVISION_WORKING = 1
SUPERVISION_FAIL = 2
SUPERVISION_SUCCESS = 0xFF


# -- wire payloads -------------------------------------------------------------------------

class ValueMetadataState(TypedDict, total=False):
    """A value's metadata as zwave-js-server sends it."""

    type: str
    label: str
    minLength: int
    maxLength: int
    min: int
    max: int
    states: dict[str, str]


class ValueState(TypedDict, total=False):
    """One value in a node's state dump."""

    commandClass: int
    endpoint: int
    property: str | int
    propertyKey: str | int
    value: Any
    metadata: ValueMetadataState


class CommandClassState(TypedDict, total=False):
    """A command class an endpoint supports."""

    id: int
    name: str
    version: int
    isSecure: bool


class EndpointState(TypedDict, total=False):
    """One endpoint of a node."""

    index: int
    commandClasses: list[CommandClassState]


class DeviceConfigState(TypedDict, total=False):
    """The device database entry zwave-js matched."""

    manufacturer: str
    label: str
    description: str


class NodeState(TypedDict, total=False):
    """A node as `start_listening` or `node.get_state` dump it."""

    nodeId: int
    status: int
    ready: bool
    name: str
    location: str
    label: str
    manufacturerId: int
    productType: int
    productId: int
    isListening: bool
    isFrequentListening: bool | str
    isControllerNode: bool
    deviceConfig: DeviceConfigState
    endpoints: list[EndpointState]
    values: list[ValueState]


class ValueArgs(TypedDict, total=False):
    """The `args` of a `value added` / `value updated` / `value removed` event."""

    commandClass: int
    endpoint: int
    property: str | int
    propertyKey: str | int
    newValue: Any
    prevValue: Any


class NotificationArgs(TypedDict, total=False):
    """The `args` of a Notification CC `notification` event."""

    type: int
    event: int
    label: str
    eventLabel: str
    parameters: dict[str, Any]


class YearDaySchedule(TypedDict):
    """A Schedule Entry Lock year-day schedule; years count from 2000 on the wire."""

    startYear: int
    startMonth: int
    startDay: int
    startHour: int
    startMinute: int
    stopYear: int
    stopMonth: int
    stopDay: int
    stopHour: int
    stopMinute: int


# -- domain values -------------------------------------------------------------------------

@dataclass(frozen=True, slots=True)
class SlotValue:
    """What zwave-js knows of one user code slot; None where it knows nothing."""

    status: int | None = None
    code: Code | None = None

    @property
    def occupied(self) -> bool:
        """True when the slot holds a code (enabled or not)."""
        return usercode.is_occupied(self.status)


@dataclass(frozen=True, slots=True)
class LockSnapshot:
    """The parts of a node state that make it a lock lockbridge can manage."""

    node_id: int
    status: int
    ready: bool
    name: str | None
    manufacturer: str
    model: str
    cc_versions: Mapping[int, int]
    slot_count: int
    min_length: int
    max_length: int
    slots: Mapping[int, SlotValue] = field(default_factory=dict)
    # User ids within 1..slot_count without values: zwave-js drops a slot's values once the
    # lock reports it "status not available" (254), so the slot does not exist.
    missing_slots: tuple[int, ...] = ()

    def supports(self, cc: int) -> bool:
        """True when the node's root endpoint has this command class."""
        return cc in self.cc_versions


@dataclass(frozen=True, slots=True)
class NodeSettings:
    """What the configuration says about one node."""

    name: str | None = None
    time_zone: str | None = None
    reserved_slots: tuple[int, ...] = ()
    fixed_length: int | None = None
    no_leading_zero: bool = False
    native_schedules: bool = True
    command_spacing_s: float = 2.0


class SignalKind(enum.StrEnum):
    """Something a lock announced about its codes."""

    KEYPAD_UNLOCK = "keypad_unlock"
    CODE_ADDED = "code_added"
    CODE_DELETED = "code_deleted"
    CODE_DUPLICATE = "code_duplicate"
    ALL_CODES_DELETED = "all_codes_deleted"


@dataclass(frozen=True, slots=True)
class LockSignal:
    """A lock's announcement, with the slot (user id) it names, if any."""

    kind: SignalKind
    slot: int | None = None


# -- identities and discovery ----------------------------------------------------------------

def external_id(home_id: int, node_id: int) -> str:
    """The stable id of a lock: its network's home id and its node id."""
    return f"{home_id:08x}-{node_id}"


def cc_versions(state: NodeState) -> dict[int, int]:
    """Command classes of the root endpoint, with their versions."""
    for endpoint in state.get("endpoints", []):
        if endpoint.get("index", 0) == 0:
            return {cc["id"]: int(cc.get("version", 1)) for cc in endpoint.get("commandClasses", [])
                    if "id" in cc}
    return {}


def is_lock(state: NodeState) -> bool:
    """True for a node whose root endpoint has the User Code CC (the controller never is)."""
    return not state.get("isControllerNode", False) and CC_USER_CODE in cc_versions(state)


def user_code_slots(values: Iterable[ValueState]) -> dict[int, SlotValue]:
    """Every user code slot zwave-js has values for, with what it knows of each."""
    found: dict[int, dict[str, Any]] = {}
    for value in values:
        parsed = _user_code_value(value.get("commandClass"), value.get("endpoint", 0),
                                  value.get("property"), value.get("propertyKey"))
        if parsed is None:
            continue
        slot, prop = parsed
        found.setdefault(slot, {})[prop] = value.get("value")
    return {slot: _slot_value(parts.get(USER_ID_STATUS), parts.get(USER_CODE))
            for slot, parts in sorted(found.items())}


def pin_lengths(values: Iterable[ValueState]) -> tuple[int, int]:
    """The PIN length limits the `userCode` value metadata announces."""
    for value in values:
        parsed = _user_code_value(value.get("commandClass"), value.get("endpoint", 0),
                                  value.get("property"), value.get("propertyKey"))
        if parsed is None or parsed[1] != USER_CODE:
            continue
        meta = value.get("metadata", {})
        low = int(meta.get("minLength", DEFAULT_MIN_LENGTH))
        high = int(meta.get("maxLength", DEFAULT_MAX_LENGTH))
        if 1 <= low <= high:
            return low, high
    return DEFAULT_MIN_LENGTH, DEFAULT_MAX_LENGTH


def snapshot(state: NodeState) -> LockSnapshot | None:
    """The lock in a node state, or None when the node is no lock or has no code slots yet."""
    if not is_lock(state):
        return None
    values = state.get("values", [])
    slots = user_code_slots(values)
    if not slots:
        return None
    low, high = pin_lengths(values)
    config = state.get("deviceConfig") or {}
    manufacturer = config.get("manufacturer") or _hex_id(state.get("manufacturerId"))
    model = (config.get("label") or config.get("description") or state.get("label")
             or f"product {_hex_id(state.get('productType'))}:{_hex_id(state.get('productId'))}")
    return LockSnapshot(
        node_id=int(state["nodeId"]),
        status=int(state.get("status", NODE_UNKNOWN)),
        ready=bool(state.get("ready", False)),
        name=state.get("name") or None,
        manufacturer=manufacturer,
        model=model,
        cc_versions=cc_versions(state),
        slot_count=max(slots),
        min_length=low,
        max_length=high,
        slots=slots,
        missing_slots=tuple(s for s in range(1, max(slots)) if s not in slots),
    )


def device_info(lock: LockSnapshot, home_id: int, settings: NodeSettings,
                year_day_slots: int | None, *, exchange_timeout_s: float | None = None,
                ) -> DeviceInfo:
    """The lock as lockbridge sees it: slots, PIN rules, schedules, pacing.

    `exchange_timeout_s` is the driver's limit on one exchange with zwave-js; a write is up to
    four of them (a schedule, the User Code Set, the wait a lock answering Supervision Working
    asks for, the read back), and the engine must not give up on it sooner."""
    # The zone is not the driver's to require: the engine picks it by its one rule (device,
    # driver, property) and keeps the windows itself when there is none.
    native = (settings.native_schedules and lock.supports(CC_SCHEDULE_ENTRY_LOCK)
              and (year_day_slots or 0) >= 1)
    # Slots the lock lacks are reserved: no code can go there.
    reserved = frozenset(s for s in (*settings.reserved_slots, *lock.missing_slots)
                         if 1 <= s <= lock.slot_count)
    caps = LockCapabilities(
        addressing=Addressing.SLOT,
        first_slot=1,
        slot_count=lock.slot_count,
        reserved_slots=reserved,
        can_read=True,
        masks_pins_on_read=False,
        native_schedules=native,
        # The lock confirms every write before it is reported (its Supervision Success, or a
        # read back), so no window is needed.
        confirmation_window_s=0.0,
        # Z-Wave locks keep no names for codes.
        name_max_length=16,
        can_delete_unmanaged=True,
        min_command_spacing_s=settings.command_spacing_s,
        # A listing is User Code Gets (several a frame at best): managed slots go first.
        lists_slot_by_slot=True,
        command_timeout_s=None if exchange_timeout_s is None else 4 * (exchange_timeout_s + 1)
        + 5,
    )
    fixed = settings.fixed_length
    if fixed is not None and not lock.min_length <= fixed <= lock.max_length:
        fixed = None
    constraints = PinConstraints(
        min_length=lock.min_length,
        max_length=lock.max_length,
        fixed_length=fixed,
        no_leading_zero=settings.no_leading_zero,
        rejects_duplicates=True,
    )
    name = settings.name or lock.name or f"{lock.manufacturer} {lock.model} (node {lock.node_id})"
    return DeviceInfo(
        external_id=external_id(home_id, lock.node_id),
        display_name=name,
        manufacturer=lock.manufacturer,
        model=lock.model,
        device_type="zwave_lock",
        capabilities=caps,
        constraints=constraints,
        hub_id=f"{home_id:08x}",
        time_zone=settings.time_zone,
    )


def availability(*, connected: bool, present: bool, status: int | None,
                 ready: bool | None) -> Availability:
    """Availability from the server link, the node's status and its readiness."""
    if not connected:
        return Availability.HUB_DISCONNECTED
    if not present:
        return Availability.REMOVED
    if status in (NODE_DEAD, NODE_ASLEEP):
        return Availability.OFFLINE
    if not ready:
        # Still being interviewed: its values are not to be trusted yet.
        return Availability.OFFLINE
    return Availability.ONLINE


# -- reading codes ----------------------------------------------------------------------------

def slot_read(slot: int, value: SlotValue) -> SlotRead:
    """What a slot holds, as a tri-state read (drivers/zwave_usercode.py decides); status 254
    raises SlotMissing."""
    return usercode.read_slot(slot, value.status, value.code)


def report_value(report: Mapping[str, Any] | None) -> SlotValue:
    """A slot from the result of the User Code CC API `get` (`{userIdStatus, userCode}`)."""
    if not report:
        return SlotValue()
    return _slot_value(report.get(USER_ID_STATUS), report.get(USER_CODE))


@dataclass(frozen=True, slots=True)
class BulkRead:
    """What one Extended User Code Report (User Code v2, Report More) says of a lock's slots."""

    # Slots it reports, and those it shows empty without naming them: the slots between its
    # last reported one and `next_slot` (or the lock's last slot when it says none follows).
    values: Mapping[int, SlotValue]
    # The next occupied slot, where the next read starts; None when no slot after is occupied.
    next_slot: int | None


def bulk_read(report: Mapping[str, Any] | None, first: int, last_slot: int) -> BulkRead | None:
    """The slots one multi-code read (`get(first, true)`: `{userCodes, nextUserId}`) covers.

    None when the report does not answer for `first` or points back (read slot by slot then):
    a lock may only be taken at its word for slots after those it named.
    """
    if not report:
        return None
    entries = report.get("userCodes")
    following = report.get("nextUserId")
    if not isinstance(entries, list) or not isinstance(following, int):
        return None
    values: dict[int, SlotValue] = {}
    for entry in entries:
        slot = entry.get("userId") if isinstance(entry, Mapping) else None
        if isinstance(slot, int) and not isinstance(slot, bool) and 1 <= slot <= last_slot:
            values[slot] = _slot_value(entry.get(USER_ID_STATUS), entry.get(USER_CODE))
    if first not in values:
        return None
    named = max(values)
    if following != 0 and following <= named:
        return None
    end = last_slot if following == 0 or following > last_slot else following - 1
    for slot in range(named + 1, end + 1):
        values[slot] = SlotValue(status=usercode.UserIdStatus.AVAILABLE)
    return BulkRead(values=values,
                    next_slot=following if 0 < following <= last_slot else None)


def user_code_change(args: ValueArgs) -> tuple[int, str, Any] | None:
    """(slot, property, new value) when a value event is about a user code slot."""
    parsed = _user_code_value(args.get("commandClass"), args.get("endpoint", 0),
                              args.get("property"), args.get("propertyKey"))
    if parsed is None:
        return None
    slot, prop = parsed
    new = args.get("newValue")
    return slot, prop, usercode.decode_code(new) if prop == USER_CODE else new


def with_change(current: SlotValue, prop: str, new: Any) -> SlotValue:
    """A slot after one of its two values changed."""
    if prop == USER_ID_STATUS:
        return SlotValue(status=new if isinstance(new, int) else None, code=current.code)
    return SlotValue(status=current.status, code=new if isinstance(new, str | bytes) else None)


def user_code_checksum(slots: Mapping[int, SlotValue]) -> int:
    """The User Code CC v2 checksum of a set of slots (CRC-16/CCITT, start 0x1D0F).

    Every occupied slot contributes its user id (16 bits), its status and its code's bytes,
    in slot order; a lock without codes reports 0.
    """
    data = bytearray()
    for slot in sorted(slots):
        value = slots[slot]
        if not value.occupied or not value.code:
            continue
        code = value.code if isinstance(value.code, bytes) \
            else value.code.encode("ascii", "replace")
        data += slot.to_bytes(2, "big") + bytes([value.status or 0]) + code
    return crc16_ccitt(bytes(data)) if data else 0


def crc16_ccitt(data: bytes, start: int = 0x1D0F) -> int:
    """CRC-16/CCITT as Z-Wave computes it."""
    crc = start
    for byte in data:
        for bit in range(7, -1, -1):
            flip = bool(byte >> bit & 1) != bool(crc & 0x8000)
            crc = (crc << 1) & 0xFFFF
            if flip:
                crc ^= 0x1021
    return crc


# -- what a lock announces ----------------------------------------------------------------------

_ACCESS_CONTROL_EVENTS: dict[int, SignalKind] = {
    AccessControlEvent.KEYPAD_UNLOCK: SignalKind.KEYPAD_UNLOCK,
    AccessControlEvent.ALL_CODES_DELETED: SignalKind.ALL_CODES_DELETED,
    AccessControlEvent.CODE_DELETED: SignalKind.CODE_DELETED,
    AccessControlEvent.CODE_ADDED: SignalKind.CODE_ADDED,
    AccessControlEvent.CODE_DUPLICATE: SignalKind.CODE_DUPLICATE,
}

# Alarm (Notification v1) reports of locks that predate Notification v2:
# Kwikset, Yale and Schlage use these alarm types with the user id as the level.
_ALARM_TYPES = {
    19: SignalKind.KEYPAD_UNLOCK,
    33: SignalKind.CODE_DELETED,
    112: SignalKind.CODE_ADDED,
    113: SignalKind.CODE_DUPLICATE,
}


def access_control_signal(args: NotificationArgs) -> LockSignal | None:
    """A keypad unlock or a keypad code change from a Notification CC event."""
    if args.get("type") != usercode.ACCESS_CONTROL:
        return None
    kind = _ACCESS_CONTROL_EVENTS.get(int(args.get("event", -1)))
    if kind is None:
        return None
    params = args.get("parameters")
    slot: int | None = None
    if isinstance(params, dict):
        user = params.get("userId")
        if isinstance(user, int) and user >= 1:
            slot = user
    if kind is SignalKind.KEYPAD_UNLOCK and slot is None:
        # A keypad unlock that names no code (a master or one-touch code) says nothing useful.
        return None
    return LockSignal(kind, slot)


def alarm_signal(alarm_type: Any, alarm_level: Any) -> LockSignal | None:
    """A keypad unlock or code change from a legacy Alarm report (type, level = user id)."""
    if not isinstance(alarm_type, int) or not isinstance(alarm_level, int):
        return None
    kind = _ALARM_TYPES.get(alarm_type)
    if kind is None or alarm_level < 1:
        return None
    return LockSignal(kind, alarm_level)


# -- writing codes ----------------------------------------------------------------------------

def check_slot(slot: int | None, caps: LockCapabilities) -> int:
    """The slot to write, refusing anything that is not one real slot (0 would mean "all")."""
    if slot is None:
        raise CommandRejected(RejectReason.SLOT_OUT_OF_RANGE,
                              "Z-Wave user codes need an explicit slot number")
    slot = usercode.user_id(slot)
    if slot not in caps.slots():
        raise CommandRejected(RejectReason.SLOT_OUT_OF_RANGE,
                              f"slot {slot} does not exist on this lock (slots 1.."
                              f"{caps.first_slot + caps.slot_count - 1})")
    return slot


def check_pin(pin: str | None, rules: PinConstraints) -> str:
    """The PIN to send, or CommandRejected(invalid_pin) with the rule it breaks (never the PIN)."""
    if pin is None or not pin.isascii() or not pin.isdigit():
        raise CommandRejected(RejectReason.INVALID_PIN, "a Z-Wave user code is made of digits")
    if len(pin) not in rules.allowed_lengths():
        lengths = rules.allowed_lengths()
        raise CommandRejected(RejectReason.INVALID_PIN,
                              f"the lock takes codes of {lengths.start} to {lengths.stop - 1} "
                              f"digits, not {len(pin)}")
    if rules.no_leading_zero and pin.startswith("0"):
        raise CommandRejected(RejectReason.INVALID_PIN, "the lock refuses codes starting with 0")
    return pin


def year_day_schedule(window: LocalWindow) -> YearDaySchedule:
    """A year-day schedule for a local window, never wider than it (rounded inwards to minutes)."""
    start = _ceil_minute(window.starts_at)
    stop = window.ends_at.replace(second=0, microsecond=0)
    if stop <= start:
        raise CommandRejected(RejectReason.UNSUPPORTED,
                              "the lock schedules whole minutes; this window is shorter")
    for moment in (start, stop):
        if not 2000 <= moment.year <= 2099:
            raise CommandRejected(RejectReason.UNSUPPORTED,
                                  "Z-Wave schedules cover the years 2000 to 2099 only")
    return YearDaySchedule(
        startYear=start.year - 2000, startMonth=start.month, startDay=start.day,
        startHour=start.hour, startMinute=start.minute,
        stopYear=stop.year - 2000, stopMonth=stop.month, stopDay=stop.day,
        stopHour=stop.hour, stopMinute=stop.minute,
    )


def zone_offset_minutes(zone: str, now: datetime) -> int:
    """The zone's offset from UTC at `now`, in minutes."""
    offset = now.astimezone(ZoneInfo(zone)).utcoffset() or timedelta(0)
    return int(offset.total_seconds() // 60)


def local_clock(zone: str, now: datetime) -> tuple[int, int, int]:
    """(hour, minute, weekday 1=Monday..7=Sunday) of `now` in the zone, for the Clock CC."""
    local = now.astimezone(ZoneInfo(zone))
    return local.hour, local.minute, local.isoweekday()


# What a User Code `set` / `clear` through `invoke_cc_api` returns, in the sources installed
# under tests/zwave/node_modules (zwave-js 15.29.0, @zwave-js/server 3.10.2):
# - the CC API method returns what the driver's `sendCommand` returns
#   (@zwave-js/cc/build/esm/cc/UserCodeCC.js lines 327-345 `set`, 402-421 `clear`);
# - `sendCommand` (zwave-js/build/esm/lib/driver/Driver.js lines 5687-5732) returns the lock's
#   SupervisionResult `{status, remainingDuration?}` when the Set went under Supervision, and
#   nothing otherwise; a NoSupport answer is never returned, the Set is sent again unsupervised
#   (lines 5703-5708); an Application Status "rejected request" comes back as Fail (5714-5719);
# - only the first Supervision Report comes back: the CC API asks for no status updates
#   (`requestStatusUpdates` unset, lines 5662-5676), so a Working lock's final report is lost;
# - the server answers `{response}` (@zwave-js/server/dist-esm/lib/endpoint/message_handler.js
#   lines 37-39), `{}` when there is none, which zwave-js-server-python returns as None
#   (zwave_js_server/model/endpoint.py lines 217-227).
# `set_value` would not save the read: zwave-js verifies every User Code value it sets with a
# Get of its own, Supervision or not (UserCodeCC.js lines 241-252).
def supervision_succeeded(result: Any) -> bool:
    """True when the lock answered a supervised Set with Success: it has done it."""
    return isinstance(result, dict) and result.get("status") == SUPERVISION_SUCCESS


def supervision_working_s(result: Any) -> float | None:
    """Seconds a lock that answered Working said it still needs; None when it did not answer
    Working or named no duration (zwave-js's Duration as JSON: `{value, unit}` in seconds or
    minutes, or "default" / "unknown": @zwave-js/core/build/esm/values/Duration.js 137-146)."""
    if not isinstance(result, dict) or result.get("status") != SUPERVISION_WORKING:
        return None
    duration = result.get("remainingDuration")
    if not isinstance(duration, dict):
        return None
    value, unit = duration.get("value"), duration.get("unit")
    if isinstance(value, bool) or not isinstance(value, int | float) or value < 0:
        return None
    scale = {"seconds": 1.0, "minutes": 60.0}.get(unit) if isinstance(unit, str) else None
    return None if scale is None else float(value) * scale


def supervision_failed(result: Any) -> bool:
    """True when the lock answered a supervised command with Fail: a refusal, or not (only a
    read back and the lock's notices tell)."""
    return isinstance(result, dict) and result.get("status") == SUPERVISION_FAIL


# -- errors -------------------------------------------------------------------------------------

# zwave-js error codes (ZWaveErrorCodes) by what they mean for the caller.
_UNSUPPORTED = {105, 209, 218, 302, 303, 304}
_GONE = {211, 213}
_CONFIG = {108, 109}


def zwave_error(code: int | None, message: str) -> DriverError:
    """The driver error for a zwave-js error (`FailedZWaveCommand`), by its code."""
    text = f"zwave-js error {code}: {message}" if code is not None else message
    if code in _UNSUPPORTED:
        return CommandRejected(RejectReason.UNSUPPORTED, text)
    if code in _CONFIG:
        return FixConfig(text)
    if code == 322:
        lowered = message.lower()
        if "user id" in lowered:
            return CommandRejected(RejectReason.SLOT_OUT_OF_RANGE, text)
        if "user code" in lowered:
            return CommandRejected(RejectReason.INVALID_PIN, text)
        return CommandRejected(RejectReason.OTHER, text)
    if code == 1100:
        return CommandRejected(RejectReason.OTHER, f"the lock reported failure ({text})")
    # Timeouts, NAKs, jammed or resetting controllers, lost nonces, removed nodes: all pass.
    return RetryLater(text)


def server_error(error_code: str, message: str) -> DriverError:
    """The driver error for a zwave-js-server error (`FailedCommand`)."""
    text = f"zwave-js-server error {error_code}: {message}"
    if error_code in ("unknown_command", "schema_incompatible"):
        return FixConfig(f"{text}; zwave-js-server is too old or too new for this lockbridge")
    return RetryLater(text)


def is_gone(code: int | None) -> bool:
    """True when a zwave-js error says the node no longer exists."""
    return code in _GONE


# -- internals ------------------------------------------------------------------------------------

def _user_code_value(cc: Any, endpoint: Any, prop: Any, key: Any) -> tuple[int, str] | None:
    if cc != CC_USER_CODE or (endpoint or 0) != 0 or prop not in (USER_CODE, USER_ID_STATUS):
        return None
    if isinstance(key, bool):
        return None
    if isinstance(key, str) and key.isdigit():
        key = int(key)
    if not isinstance(key, int) or key < 1:
        return None
    return key, str(prop)


def _slot_value(status: Any, code: Any) -> SlotValue:
    return SlotValue(status=status if isinstance(status, int) and not isinstance(status, bool)
                     else None, code=usercode.decode_code(code))


def _hex_id(value: Any) -> str:
    return f"0x{value:04x}" if isinstance(value, int) else "unknown"


def _ceil_minute(moment: datetime) -> datetime:
    floor = moment.replace(second=0, microsecond=0)
    if floor == moment:
        return floor
    return floor + timedelta(minutes=math.ceil((moment - floor).total_seconds() / 60))
