"""What the Matter Door Lock cluster's values mean to lockbridge: pure functions, no I/O.

Facts (Matter 1.x Door Lock cluster 0x0101, as a Matter server's WebSocket carries them):
attribute paths are "endpoint/cluster/attribute"; FeatureMap bits PIN 0x1, WDSCH 0x10,
COTA 0x80, USR 0x100, YDSCH 0x400; users (17) and PIN slots (18) are separate index spaces;
credentials per user (28); PIN length max (23) and min (24); year-day schedules per user (21).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from bridge.driver import (
    Addressing,
    CommandRejected,
    DeviceInfo,
    DriverError,
    LockCapabilities,
    LockState,
    PinConstraints,
    RejectReason,
    RetryLater,
)

DOOR_LOCK = 0x0101
OPERATIONAL_CREDENTIALS = 0x003E
ATTR_LOCK_STATE = 0
ATTR_DOOR_STATE = 3
ATTR_TOTAL_USERS = 17
ATTR_PIN_USERS = 18
ATTR_YEAR_DAY_PER_USER = 21
ATTR_MAX_PIN = 23
ATTR_MIN_PIN = 24
ATTR_CREDENTIALS_PER_USER = 28
ATTR_FEATURE_MAP = 65532
ATTR_CURRENT_FABRIC = 5  # Operational Credentials' CurrentFabricIndex: ours on that node

FEATURE_PIN = 0x1
FEATURE_WDSCH = 0x10
FEATURE_COTA = 0x80
FEATURE_USR = 0x100
FEATURE_YDSCH = 0x400

CREDENTIAL_PIN = 1
OP_ADD, OP_CLEAR, OP_MODIFY = 0, 1, 2
USER_STATUS_ENABLED = 1
USER_TYPE_UNRESTRICTED = 0
USER_TYPE_YEAR_DAY = 6
# Door Lock events
EVENT_LOCK_OPERATION = 2
EVENT_LOCK_OPERATION_ERROR = 3
EVENT_LOCK_USER_CHANGE = 4
LOCK_DATA_USER = 2
LOCK_DATA_PIN = 6
SOURCE_KEYPAD = 3
SOURCE_REMOTE = 7
LOCK_OPERATION_UNLOCK = 1
# LockOperation's operationSource -> Seam's lock.unlocked method, when no PIN is named.
_UNLOCK_METHODS = {0: "unknown", 1: "manual", 2: "unknown", 3: "keycode", 4: "automatic",
                   5: "unknown", 6: "automatic", 7: "remote", 8: "unknown", 9: "unknown",
                   10: "unknown"}

# Interaction-model and Door Lock status codes.
STATUS_SUCCESS = 0x00
STATUS_FAILURE = 0x01
STATUS_DUPLICATE = 0x02
STATUS_OCCUPIED = 0x03
STATUS_INVALID_COMMAND = 0x85
STATUS_CONSTRAINT_ERROR = 0x87
STATUS_RESOURCE_EXHAUSTED = 0x89
STATUS_NOT_FOUND = 0x8B
STATUS_TIMEOUT = 0x94
STATUS_BUSY = 0x9C
STATUS_NEEDS_TIMED = 0xC6
RETRIED_STATUSES = frozenset({STATUS_BUSY, STATUS_TIMEOUT})

# Matter server error codes (its API's `error_code`).
SERVER_NODE_NOT_READY = 3
SERVER_NODE_NOT_RESOLVING = 4
SERVER_NODE_NOT_EXISTS = 5
OFFLINE_ERRORS = frozenset({SERVER_NODE_NOT_READY, SERVER_NODE_NOT_RESOLVING})

# A user name on a Matter lock holds at most 10 characters.
USER_NAME_MAX = 10
# Matter's epoch: year-day times count seconds from here, in the lock's local time.
MATTER_EPOCH = datetime(2000, 1, 1)
# Shown as the name of a slot whose PIN was changed at the lock (keypad, another fabric): it is
# not the name lockbridge gave, so the engine treats the code as changed outside lockbridge.
CHANGED_AT_LOCK = "(changed at the lock)"


def path(endpoint: int, cluster: int, attribute: int) -> str:
    """An attribute path as the Matter server writes it."""
    return f"{endpoint}/{cluster}/{attribute}"


def door_lock_endpoints(attributes: dict[str, Any]) -> list[int]:
    """Endpoints of a node that carry the Door Lock cluster (from its FeatureMap)."""
    found = set()
    for key in attributes:
        parts = key.split("/")
        if len(parts) == 3 and parts[1] == str(DOOR_LOCK) and parts[2] == str(ATTR_FEATURE_MAP):
            found.add(int(parts[0]))
    return sorted(found)


@dataclass(frozen=True, slots=True)
class LockProfile:
    """What one lock's attributes say it can do."""

    features: int
    total_users: int
    pin_slots: int
    credentials_per_user: int
    min_pin: int
    max_pin: int
    year_day_per_user: int

    @property
    def keeps_codes(self) -> bool:
        """Users with PIN credentials: the only code model the driver speaks."""
        return bool(self.features & FEATURE_PIN and self.features & FEATURE_USR
                    and self.pin_slots > 0 and self.total_users > 0)

    @property
    def year_day_schedules(self) -> bool:
        return bool(self.features & FEATURE_YDSCH) and self.year_day_per_user > 0


def profile(attributes: dict[str, Any], endpoint: int) -> LockProfile:
    """The lock's profile from its cached attributes (missing ones count as absent)."""
    def attr(attribute: int, default: int) -> int:
        value = attributes.get(path(endpoint, DOOR_LOCK, attribute))
        return value if isinstance(value, int) and not isinstance(value, bool) else default

    return LockProfile(features=attr(ATTR_FEATURE_MAP, 0),
                       total_users=attr(ATTR_TOTAL_USERS, 0),
                       pin_slots=attr(ATTR_PIN_USERS, 0),
                       credentials_per_user=attr(ATTR_CREDENTIALS_PER_USER, 1),
                       min_pin=attr(ATTR_MIN_PIN, 4), max_pin=attr(ATTR_MAX_PIN, 8),
                       year_day_per_user=attr(ATTR_YEAR_DAY_PER_USER, 0))


def external_id(node_id: int, endpoint: int) -> str:
    """A lock's stable id: its node and endpoint on the Matter server's fabric."""
    return f"matter-{node_id}-{endpoint}"


def describe(node_id: int, endpoint: int, attributes: dict[str, Any], *, name: str | None,
             time_zone: str | None, native_schedules: bool,
             command_spacing_s: float = 1.0) -> DeviceInfo:
    """A lock as lockbridge shows it."""
    lock = profile(attributes, endpoint)
    caps = LockCapabilities(
        addressing=Addressing.SLOT, first_slot=1, slot_count=lock.pin_slots,
        masks_pins_on_read=True,
        native_schedules=native_schedules and lock.year_day_schedules,
        name_max_length=USER_NAME_MAX, can_delete_unmanaged=False,
        programs_codes=lock.keeps_codes, min_command_spacing_s=command_spacing_s,
        # A write is confirmed by the credential status read right after it: any later read
        # shows what the lock holds, with no delay to allow for.
        confirmation_window_s=0.0)
    constraints = PinConstraints(min_length=max(1, lock.min_pin),
                                 max_length=max(lock.min_pin, lock.max_pin, 1))
    label = attributes.get("0/40/5") or attributes.get("0/40/3") or f"Matter lock {node_id}"
    return DeviceInfo(
        external_id=external_id(node_id, endpoint), display_name=name or str(label),
        manufacturer=str(attributes.get("0/40/1") or "Matter"),
        model=str(attributes.get("0/40/3") or "Door lock"), device_type="matter_lock",
        capabilities=caps, constraints=constraints, time_zone=time_zone,
        state=lock_state(attributes, endpoint))


def lock_state(attributes: dict[str, Any], endpoint: int) -> LockState:
    """Locked (LockState 1) and door open (DoorState 1), where the lock says."""
    locked = attributes.get(path(endpoint, DOOR_LOCK, ATTR_LOCK_STATE))
    door = attributes.get(path(endpoint, DOOR_LOCK, ATTR_DOOR_STATE))
    return LockState(locked=None if not isinstance(locked, int) else locked == 1,
                     door_open=None if not isinstance(door, int) else door == 1)


def check_pin(pin: str | None, constraints: PinConstraints) -> str:
    """The PIN if the lock's rules take it (locks may accept non-digits: lockbridge does not)."""
    if pin is None or not pin.isdigit() or not pin.isascii():
        raise CommandRejected(RejectReason.INVALID_PIN, "a Matter PIN is digits only")
    if not constraints.min_length <= len(pin) <= constraints.max_length:
        raise CommandRejected(RejectReason.INVALID_PIN,
                              f"the lock takes PINs of {constraints.min_length} to "
                              f"{constraints.max_length} digits")
    return pin


def check_slot(slot: int | None, caps: LockCapabilities) -> int:
    """The slot (PIN credential index) if the lock has it."""
    if not isinstance(slot, int) or slot not in caps.slots():
        raise CommandRejected(RejectReason.SLOT_OUT_OF_RANGE,
                              f"the lock has PIN slots {caps.first_slot}.."
                              f"{caps.first_slot + caps.slot_count - 1}")
    return slot


def local_epoch(moment: datetime) -> int:
    """A wall-clock time in the lock's zone as Matter's local epoch seconds (from 2000-01-01)."""
    return int((moment.replace(tzinfo=None) - MATTER_EPOCH).total_seconds())


def from_local_epoch(seconds: int) -> datetime:
    """The inverse of `local_epoch`: a naive wall-clock time."""
    from datetime import timedelta

    return MATTER_EPOCH + timedelta(seconds=seconds)


# -- errors ----------------------------------------------------------------------------------

_IM_ERROR = re.compile(r"InteractionModelError:\s*(?P<name>[A-Za-z_]+)?\s*"
                       r"\(0x(?P<status>[0-9a-fA-F]+)(?:,\s*clusterStatus:\s*(?P<cluster>\d+))?\)")


@dataclass(frozen=True, slots=True)
class ImError:
    """An interaction-model error as the server's text carries it."""

    status: int
    cluster_status: int | None = None


def parse_im_error(details: str | None) -> ImError | None:
    """`InteractionModelError: Failure (0x1, clusterStatus: 3)` -> ImError(1, 3); else None."""
    match = _IM_ERROR.search(details or "")
    if match is None:
        return None
    cluster = match.group("cluster")
    return ImError(int(match.group("status"), 16), int(cluster) if cluster else None)


def effective_status(error: ImError) -> int:
    """The status that decides: a Door Lock cluster status (DUPLICATE, OCCUPIED) when a
    FAILURE carries one, else the interaction-model status."""
    if error.status == STATUS_FAILURE and error.cluster_status is not None:
        return error.cluster_status
    return error.status


def refusal(status: int, what: str) -> DriverError | None:
    """A Door Lock status as the driver error it means (None: success or OCCUPIED, which the
    caller handles by modifying the slot instead)."""
    if status in (STATUS_SUCCESS, STATUS_OCCUPIED):
        return None
    if status == STATUS_DUPLICATE:
        return CommandRejected(RejectReason.DUPLICATE_PIN,
                               f"{what}: the lock holds this PIN in another slot (DUPLICATE)")
    if status == STATUS_RESOURCE_EXHAUSTED:
        return CommandRejected(RejectReason.NO_SPACE,
                               f"{what}: the lock has no room left (RESOURCE_EXHAUSTED)")
    if status in (STATUS_INVALID_COMMAND, STATUS_CONSTRAINT_ERROR):
        name = "INVALID_COMMAND" if status == STATUS_INVALID_COMMAND else "CONSTRAINT_ERROR"
        return CommandRejected(RejectReason.INVALID_PIN,
                               f"{what}: the code breaks the lock's rules ({name})")
    if status in RETRIED_STATUSES:
        return RetryLater(f"{what}: the lock is busy (0x{status:02x})")
    return CommandRejected(RejectReason.OTHER, f"{what}: the lock refused it (0x{status:02x})")


def server_error(error_code: int, details: str, what: str) -> DriverError:
    """A Matter server's error answer as the driver error it means."""
    if error_code in OFFLINE_ERRORS:
        return RetryLater(f"{what}: the lock is offline ({details})")
    if error_code == SERVER_NODE_NOT_EXISTS:
        return CommandRejected(RejectReason.OTHER, f"{what}: no such node ({details})")
    im = parse_im_error(details)
    if im is not None:
        status = effective_status(im)
        mapped = refusal(status, what)
        if mapped is not None:
            return mapped
        return CommandRejected(RejectReason.OTHER, f"{what}: {details}")
    return RetryLater(f"{what}: the Matter server answered {details or error_code}")


def retried(error_code: int, details: str) -> bool:
    """An answer worth sending the same command again for (BUSY, TIMEOUT)."""
    im = parse_im_error(details)
    return im is not None and im.status in RETRIED_STATUSES


# -- events ----------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class DoorEvent:
    """What one Door Lock event tells the bridge."""

    slot_changed: int | None = None
    keypad_slot: int | None = None
    unlock_method: str | None = None
    external: bool = False


def door_event(event_id: int, data: dict[str, Any] | None) -> DoorEvent | None:
    """A LockUserChange or LockOperation event as the bridge's news; None for others."""
    data = data or {}
    if event_id == EVENT_LOCK_USER_CHANGE:
        if data.get("lockDataType") != LOCK_DATA_PIN:
            return None
        index = data.get("dataIndex")
        if not isinstance(index, int):
            return None
        return DoorEvent(slot_changed=index,
                         external=data.get("operationSource") != SOURCE_REMOTE)
    if event_id == EVENT_LOCK_OPERATION:
        if data.get("lockOperationType") != LOCK_OPERATION_UNLOCK:
            return None
        for credential in data.get("credentials") or []:
            if isinstance(credential, dict) and \
                    credential.get("credentialType") == CREDENTIAL_PIN:
                index = credential.get("credentialIndex")
                if isinstance(index, int):
                    return DoorEvent(keypad_slot=index)
        source = data.get("operationSource")
        return DoorEvent(unlock_method=_UNLOCK_METHODS.get(source, "unknown")
                         if isinstance(source, int) else "unknown")
    return None
