"""The Door Lock cluster's (0x0101) PIN rules as lockbridge reads them: pure, table-tested.

zigpy decodes every command's status with the generic ZCL `Status` enum, whose names do not
match what the Door Lock cluster means by the same numbers (2 is "memory full" here, not a
generic status), so answers are judged by their integer value against the cluster's own table
(ZCL specification, Door Lock cluster, "Set PIN Code Response" and "Clear PIN Code Response").
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from datetime import datetime, timedelta

from bridge.driver import (
    CommandRejected,
    LocalWindow,
    RejectReason,
    RetryLater,
    SlotRead,
    SlotState,
)

CLUSTER_ID = 0x0101

# Attribute ids of the Door Lock cluster that describe what the lock can hold.
ATTR_PIN_USERS = 0x0012
ATTR_YEAR_DAY_SCHEDULES_PER_USER = 0x0015
ATTR_MAX_PIN_LENGTH = 0x0017
ATTR_MIN_PIN_LENGTH = 0x0018
ATTR_SEND_PIN_OTA = 0x0032
ATTR_LOCK_STATE = 0x0000


class SetPinStatus(enum.IntEnum):
    """Set PIN Code Response status, as the Door Lock cluster defines it."""

    SUCCESS = 0
    GENERAL_FAILURE = 1
    MEMORY_FULL = 2
    DUPLICATE_CODE = 3


class UserStatus(enum.IntEnum):
    """A user slot's status in Get PIN Code Response."""

    AVAILABLE = 0x00
    ENABLED = 0x01
    DISABLED = 0x03
    NOT_SUPPORTED = 0xFF


class UserType(enum.IntEnum):
    """A user slot's type: unrestricted, or bound to year-day schedules."""

    UNRESTRICTED = 0x00
    YEAR_DAY_SCHEDULE = 0x01


# ZCL general status of a Default Response: the lock does not know the command.
UNSUPPORTED_COMMANDS = frozenset({0x81, 0x82, 0x83, 0x84})  # UNSUP_CLUSTER/GENERAL/MANUF...

# Year-day schedule times are seconds since 2000-01-01 00:00 in the lock's local time.
_LOCAL_EPOCH = datetime(2000, 1, 1)


def set_pin_outcome(status: int, slot: int) -> None:
    """Raise what a non-success Set PIN Code status means; return on success."""
    if status == SetPinStatus.SUCCESS:
        return
    if status == SetPinStatus.MEMORY_FULL:
        raise CommandRejected(RejectReason.NO_SPACE, "the lock's memory for PIN codes is full")
    if status == SetPinStatus.DUPLICATE_CODE:
        raise CommandRejected(RejectReason.DUPLICATE_PIN,
                              "the lock refused the code: it already holds this PIN")
    if status == SetPinStatus.GENERAL_FAILURE:
        raise CommandRejected(RejectReason.OTHER,
                              f"the lock refused the code for user {slot} (general failure)")
    raise RetryLater(f"the lock answered set PIN code with unknown status {status}")


def clear_pin_outcome(status: int, slot: int) -> None:
    """Clear PIN Code Response: 0 pass, anything else fail (retry later)."""
    if status != 0:
        raise RetryLater(f"the lock failed to clear user {slot} (status {status})")


def slot_read(slot: int, user_status: int, code: bytes | str | None) -> SlotRead:
    """A Get PIN Code Response as a tri-state read.

    An enabled user whose PIN the lock does not send ("send PIN over the air" off, or masked)
    is occupied but unknown: UNREADABLE, never EMPTY. A disabled user still holds a PIN but is
    not a working code, so it is never taken as ours either; a status the lock does not support
    for that user id means the slot does not exist."""
    if user_status == UserStatus.AVAILABLE:
        return SlotRead(slot=slot, state=SlotState.EMPTY)
    if user_status == UserStatus.DISABLED:
        return SlotRead(slot=slot, state=SlotState.UNREADABLE, reason="disabled", disabled=True)
    if user_status != UserStatus.ENABLED:
        return SlotRead(slot=slot, state=SlotState.UNREADABLE, reason="not supported")
    pin = decode_pin(code)
    if pin is None:
        return SlotRead(slot=slot, state=SlotState.UNREADABLE)
    return SlotRead(slot=slot, state=SlotState.KNOWN, pin=pin)


def event_user(user_id: int | None, slots: range) -> int | None:
    """The user id an operation or programming event names, or None when it names none of
    the lock's users (0xFFFF or a missing field: some locks send no user for a keypad
    change).

    A user id outside the lock's users whose two bytes swapped are inside is taken swapped:
    a lock (or a reading of it) that sends the uint16 big-endian turns user 3 into 768."""
    if user_id is None:
        return None
    user = int(user_id)
    if user in slots:
        return user
    swapped = ((user & 0xFF) << 8) | ((user >> 8) & 0xFF)
    return swapped if swapped in slots else None


def decode_pin(code: bytes | str | None) -> str | None:
    """The PIN as digits, or None when the lock sent none, a mask or anything but digits."""
    if code is None:
        return None
    if isinstance(code, bytes | bytearray):
        try:
            code = bytes(code).decode("ascii")
        except UnicodeDecodeError:
            return None
    return code if code and code.isdigit() else None


def local_time(moment: datetime) -> int:
    """A naive local datetime as the cluster's LocalTime (seconds since 2000-01-01 local)."""
    seconds = int((moment - _LOCAL_EPOCH).total_seconds())
    return max(0, min(seconds, 0xFFFFFFFE))


def from_local_time(seconds: int) -> datetime:
    """The cluster's LocalTime as a naive local datetime."""
    return _LOCAL_EPOCH + timedelta(seconds=int(seconds))


def schedule_window(start: int, end: int) -> LocalWindow:
    """A year-day schedule as the window it allows."""
    return LocalWindow(from_local_time(start), from_local_time(end))


# PIN users assumed for a lock that does not say how many it holds, nor its config.
DEFAULT_PIN_USERS = 30


@dataclass(frozen=True, slots=True)
class LockLimits:
    """What a lock says it can hold (None where it did not answer)."""

    pin_users: int | None = None
    min_pin_length: int | None = None
    max_pin_length: int | None = None
    year_day_schedules: int | None = None

    def slot_range(self, first_slot: int, configured_count: int | None) -> tuple[int, int]:
        """(first slot, count): the device's own count wins, a configured one only fills in.

        Users are numbered from 0 on the wire; makers that keep user 0 for a master code have
        the first usable slot at 1, and the count shrinks by the slots skipped."""
        if self.pin_users:
            return first_slot, max(0, self.pin_users - first_slot)
        if configured_count:
            return first_slot, configured_count
        # Neither: assume the 30 PIN users of common locks (Kwikset, Schlage), user ids 0..29
        # (ZCL Door Lock; Zigbee2MQTT checks 0..count-1), so user id 30 is never sent.
        return first_slot, max(0, DEFAULT_PIN_USERS - first_slot)
