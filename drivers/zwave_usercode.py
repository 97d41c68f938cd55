"""The Z-Wave User Code command class as lockbridge reads and writes it, for every Z-Wave path.

Both Z-Wave drivers (zwave-js-server directly, and Z-Wave JS UI over MQTT) see the same lock
through the same zwave-js, so one set of rules serves both; this module imports neither
driver's library. What it decides:

- A slot (user id) starts at 1. User Code clear of user id 0 clears every code on the lock, so
  no user id below 1 ever reaches the wire (`user_id`).
- User ID status 0 is an empty slot; 254 ("status not available") means the slot does not exist
  (`SlotMissing`), never "occupied, unreadable".
- Only an enabled slot whose code is text of digits is a known PIN. Anything else that occupies
  a slot is unreadable, never empty, and the read says why in its `name` (`Unreadable`): a
  disabled code (status 2) does not open the door, so it is neither a working code nor empty
  (the engine's planner takes it as changed, and puts a managed code back);
  zwave-js sends a code as a Buffer only when its bytes are not printable ASCII, so a Buffer is
  never taken for a PIN (`binary`); text that is not digits is a masked code (`masked`).
- The lock's "new user code not added due to duplicate code" notice may come only after the
  write (locks without Supervision) and may name no slot: one command at a time goes to a lock,
  so such a notice belongs to the write under way (`noticed_duplicate`, `wait_for_duplicate`).
"""

from __future__ import annotations

import asyncio
import contextlib
import enum
from collections.abc import Callable, Mapping

from bridge.driver import CommandRejected, RejectReason, SlotRead, SlotState

USER_CODE_CC = 0x63
NOTIFICATION_CC = 0x71
# Notification type Access Control.
ACCESS_CONTROL = 0x06
# How long a write the lock did not keep waits for its duplicate notice (Kwikset, Yale send it a
# moment after taking the command).
DUPLICATE_WAIT_S = 1.5


class UserIdStatus(enum.IntEnum):
    """User ID status of the User Code CC."""

    AVAILABLE = 0
    ENABLED = 1
    DISABLED = 2
    MESSAGING = 3
    PASSAGE_MODE = 4
    NOT_AVAILABLE = 0xFE


class AccessControlEvent(enum.IntEnum):
    """Access Control notification events about user codes."""

    KEYPAD_UNLOCK = 0x06
    ALL_CODES_DELETED = 0x0C
    CODE_DELETED = 0x0D
    CODE_ADDED = 0x0E
    CODE_DUPLICATE = 0x0F


# zwave-js's labels of those events (Z-Wave JS UI's topics use them with `_` for spaces).
EVENT_LABELS = {
    AccessControlEvent.KEYPAD_UNLOCK: "Keypad unlock operation",
    AccessControlEvent.ALL_CODES_DELETED: "All user codes deleted",
    AccessControlEvent.CODE_DELETED: "Single user code deleted",
    AccessControlEvent.CODE_ADDED: "New user code added",
    AccessControlEvent.CODE_DUPLICATE: "New user code not added due to duplicate code",
}


class Unreadable(enum.StrEnum):
    """Why an occupied slot's PIN is not known; an unreadable read's `name`."""

    DISABLED = "disabled"
    MASKED = "masked"
    BINARY = "binary"
    NOT_REPORTED = "not reported"
    OTHER_STATUS = "not enabled"


class SlotMissing(Exception):
    """The lock reported the slot as "status not available" (254): it does not exist."""

    def __init__(self, slot: int) -> None:
        super().__init__(f"slot {slot} does not exist on the lock (User ID status 254)")
        self.slot = slot


Code = str | bytes
# An enabled code the lock does not show: what a lock that masks its codes reports.
_HIDDEN = frozenset({Unreadable.MASKED, Unreadable.BINARY, Unreadable.NOT_REPORTED})


def user_id(slot: object) -> int:
    """The user id to put on the wire: a whole number from 1; 0 or none would mean every code."""
    if isinstance(slot, bool) or not isinstance(slot, int) or slot < 1:
        raise CommandRejected(RejectReason.SLOT_OUT_OF_RANGE,
                              "User Code slots start at 1 (0 would address every code)")
    return slot


def decode_code(raw: object) -> Code | None:
    """A user code as zwave-js sends it: text, or bytes for a Buffer (JSON `{"type": "Buffer",
    "data": [...]}`, or a list of byte values); None for anything else."""
    if isinstance(raw, str | bytes):
        return raw
    data = raw.get("data") if isinstance(raw, dict) and raw.get("type") == "Buffer" else raw
    if isinstance(data, list) and all(isinstance(b, int) and not isinstance(b, bool)
                                      and 0 <= b < 256 for b in data):
        return bytes(data)
    return None


def is_occupied(status: object) -> bool:
    """True when a status says the slot holds a code (enabled or not)."""
    return isinstance(status, int) and not isinstance(status, bool) \
        and status not in (UserIdStatus.AVAILABLE, UserIdStatus.NOT_AVAILABLE)


def read_slot(slot: int, status: int | None, code: Code | None) -> SlotRead:
    """A slot as a tri-state read; status 254 raises SlotMissing. An occupied slot is known
    only when enabled with a code of digits, else unreadable, naming why."""
    if status == UserIdStatus.NOT_AVAILABLE:
        raise SlotMissing(slot)
    if status == UserIdStatus.AVAILABLE:
        return SlotRead(slot=slot, state=SlotState.EMPTY)
    if status is None:
        return _unreadable(slot, Unreadable.NOT_REPORTED)
    if status == UserIdStatus.DISABLED:
        return SlotRead(slot=slot, state=SlotState.UNREADABLE, reason=Unreadable.DISABLED.value,
                        disabled=True)
    if status != UserIdStatus.ENABLED:
        return _unreadable(slot, Unreadable.OTHER_STATUS)
    if isinstance(code, bytes):
        return _unreadable(slot, Unreadable.BINARY)
    if not code:
        return _unreadable(slot, Unreadable.NOT_REPORTED)
    if not (code.isascii() and code.isdigit()):
        return _unreadable(slot, Unreadable.MASKED)
    return SlotRead(slot=slot, state=SlotState.KNOWN, pin=code)


def holds(read: SlotRead, pin: str | None, *, refused: bool = False) -> bool:
    """Whether a read back shows our command done: empty after a clear (`pin` None); after a
    write the PIN, or an enabled code the lock hides, but never a disabled one. After the lock
    answered Fail (`refused`) only the PIN itself shows the code is there."""
    if pin is None:
        return read.state is SlotState.EMPTY
    if read.state is SlotState.KNOWN:
        return read.pin == pin
    return not refused and read.state is SlotState.UNREADABLE and not read.disabled \
        and read.reason in _HIDDEN


def noticed_duplicate(notices: Mapping[int, int], slot: int, since: int) -> bool:
    """Whether a duplicate notice counted after `since` names `slot`, or names none (key 0:
    one command at a time per lock, so it is about the write under way)."""
    return max(notices.get(slot, -1), notices.get(0, -1)) > since


async def wait_for_duplicate(noticed: Callable[[], bool], seen: asyncio.Event,
                             timeout_s: float = DUPLICATE_WAIT_S) -> bool:
    """Whether the lock's duplicate notice came (`noticed`), waiting up to `timeout_s` for it;
    the driver sets `seen` whenever a notice arrives."""
    with contextlib.suppress(TimeoutError):
        async with asyncio.timeout(timeout_s):
            while not noticed():
                seen.clear()
                await seen.wait()
    return noticed()


def _unreadable(slot: int, why: Unreadable) -> SlotRead:
    return SlotRead(slot=slot, state=SlotState.UNREADABLE, reason=why.value)
