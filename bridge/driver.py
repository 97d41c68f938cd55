"""The one interface every lock family implements, and the values that cross it."""

from __future__ import annotations

import enum
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Protocol, runtime_checkable


class Addressing(enum.StrEnum):
    """How a lock keeps codes: in numbered slots we choose, or under ids the lock assigns."""

    SLOT = "slot"
    ID = "id"


class Availability(enum.StrEnum):
    """Whether a lock can be reached now, and if not, which link is down."""

    ONLINE = "online"
    OFFLINE = "offline"
    # The bridge lost its link to the lock's network (broker, Z-Wave server); the lock may be fine.
    DISCONNECTED = "disconnected"
    HUB_DISCONNECTED = "hub_disconnected"
    ACCOUNT_DISCONNECTED = "account_disconnected"
    REMOVED = "removed"


class SlotState(enum.StrEnum):
    """What a read of one slot showed. UNREADABLE is never the same as EMPTY."""

    KNOWN = "known"
    EMPTY = "empty"
    UNREADABLE = "unreadable"


@dataclass(frozen=True, slots=True)
class PinConstraints:
    """What PINs a lock accepts."""

    min_length: int = 4
    max_length: int = 8
    # Schlage-style: every code on the lock must have this one length.
    fixed_length: int | None = None
    no_leading_zero: bool = False
    rejects_duplicates: bool = True
    # The lock opens as soon as the typed digits match a code, so no code may prefix another.
    matches_prefixes: bool = False
    forbidden_prefixes: tuple[str, ...] = ()
    # Digits the keypad does not have or refuses anywhere in a PIN (Nuki: no 0).
    forbidden_digits: str = ""

    def allowed_lengths(self) -> range:
        """Lengths a new PIN may have."""
        if self.fixed_length is not None:
            return range(self.fixed_length, self.fixed_length + 1)
        return range(self.min_length, self.max_length + 1)


@dataclass(frozen=True, slots=True)
class LockCapabilities:
    """What a lock and its driver can do; the core adapts to these instead of special-casing."""

    addressing: Addressing = Addressing.SLOT
    first_slot: int = 1
    slot_count: int = 30
    reserved_slots: frozenset[int] = frozenset()
    can_read: bool = True
    masks_pins_on_read: bool = False
    native_schedules: bool = False
    algorithmic_pins: bool = False
    # Seconds after a write during which a read may still show the old value.
    confirmation_window_s: float = 60.0
    name_max_length: int = 16
    can_delete_unmanaged: bool = True
    # False for locks whose PINs lockbridge cannot program at all (their maker issues them only
    # through its app or cloud): such a lock is shown and watched, and code requests are refused.
    programs_codes: bool = True
    # Seconds to leave between two commands to this lock.
    min_command_spacing_s: float = 2.0
    # The lock stores each code's name, so a rename is a write (Nuki); False where the name is
    # only lockbridge's (Z-Wave User Code has none).
    keeps_names: bool = False
    # The longest one command may take, the driver's own waits included (a cloud that applies a
    # code asynchronously); None: the engine's command timeout.
    command_timeout_s: float | None = None
    # Listing the whole lock costs a radio round trip per slot (Z-Wave, Zigbee: minutes on a
    # 250-slot battery lock), so the engine reads its managed codes' slots before the walk.
    # False where a listing is one call (a cloud, a hub, MQTT state): one more call would cost
    # a rate-limited cloud a request and gain nothing.
    lists_slot_by_slot: bool = False

    def slots(self) -> range:
        """Every slot number the lock has, including reserved ones."""
        return range(self.first_slot, self.first_slot + self.slot_count)


@dataclass(frozen=True, slots=True)
class LockState:
    """What a lock reports of itself beside its codes; None where it does not say."""

    locked: bool | None = None
    door_open: bool | None = None
    battery_percent: int | None = None


@dataclass(frozen=True, slots=True)
class DeviceProblem:
    """A condition of a lock only its driver can name (a vendor's device error, e.g. a TTLock
    lock paired to no gateway): `code` as the source documents spell it, and a message."""

    code: str
    message: str


@dataclass(frozen=True, slots=True)
class DeviceInfo:
    """A lock as a driver discovered it."""

    external_id: str
    display_name: str
    manufacturer: str
    model: str
    device_type: str
    capabilities: LockCapabilities
    constraints: PinConstraints
    hub_id: str | None = None
    time_zone: str | None = None
    # The lock's last reported state, shown in the device's properties. A driver that sees it
    # change says DEVICES_CHANGED, and the engine keeps the new description.
    state: LockState | None = None
    # Shown in the device's `errors` for as long as the driver describes the lock with them (it
    # says DEVICES_CHANGED when they change), beside the errors the engine derives itself.
    errors: tuple[DeviceProblem, ...] = ()


@dataclass(frozen=True, slots=True)
class LocalWindow:
    """A native schedule as wall-clock times (naive datetimes) in `zone`.

    The engine sends windows in the lock's zone and names it (`bridge.zones.lock_zone` decides
    which zone that is); a driver that reads windows back names the zone its times are in, or
    leaves it None for the lock's own."""

    starts_at: datetime
    ends_at: datetime
    zone: str | None = None


@dataclass(frozen=True, slots=True)
class SlotRead:
    """One slot as read from the lock."""

    slot: int
    state: SlotState
    pin: str | None = None
    name: str | None = None
    window: LocalWindow | None = None
    # Listed, but a change to it is still on its way to the lock (a cloud's copy): what the
    # lock holds is not known yet.
    pending: bool = False
    # The last change to it never reached the lock; the lock keeps whatever it had.
    failed: bool = False
    # The lock keeps a code here that does not open the door (Z-Wave's and Zigbee's "disabled"
    # status): neither a working code nor an empty slot. Read as UNREADABLE, reason "disabled".
    disabled: bool = False
    # Why a slot read is unreadable ("masked", "disabled", "binary", ...), for logs and tests;
    # never the name the lock keeps for the code (that is `name`).
    reason: str | None = None


@dataclass(frozen=True, slots=True)
class CodeWrite:
    """Everything a driver needs to put one code on a lock."""

    slot: int | None
    pin: str | None
    name: str
    window: LocalWindow | None = None
    # For a code the lock numbers itself (id-addressed): when an earlier attempt at this same
    # create was first sent, as recorded before that call. Only a code the lock lists with
    # this PIN and created since then may be taken as ours; any other is someone else's.
    first_sent_at: datetime | None = None
    # lockbridge's id of the code. A lock that picks its own slot and keeps a reference with the
    # code can tell a replayed write (outcome lost, sent again) from a new code by it.
    key: str | None = None


@dataclass(frozen=True, slots=True)
class WriteResult:
    """What the lock accepted: the slot used and the PIN actually set (algorithmic locks choose)."""

    slot: int
    pin: str
    confirmed: bool = True
    # What the maker says of the code just set (Igloohome: an algoPIN must be used within 24
    # hours of its start): `code` a value of `bridge.model.VENDOR_WRITE_WARNINGS`. Shown in the
    # code's warnings until a later write names other ones.
    warnings: tuple[DeviceProblem, ...] = ()


class DriverEventKind(enum.StrEnum):
    """What a driver reports without being asked."""

    AVAILABILITY = "availability"
    SLOT_CHANGED = "slot_changed"
    KEYPAD_USED = "keypad_used"
    # Unlocked at the door by something other than a code lockbridge can name (a fingerprint,
    # a card, the key, the maker's app); detail["method"] is Seam's lock.unlocked method.
    UNLOCKED = "unlocked"
    DEVICES_CHANGED = "devices_changed"


@dataclass(frozen=True, slots=True)
class DriverEvent:
    """A driver's report: availability changed, a slot changed at the lock, or a code was used."""

    kind: DriverEventKind
    external_id: str
    availability: Availability | None = None
    slot: int | None = None
    detail: dict[str, str] = field(default_factory=dict)


# The engine's handler of a driver's events. It may block: it waits on the engine (a commit,
# a discovery, the lock's turn), and the engine may itself be waiting on the driver's command.
# So a driver never awaits it from a command (read, list, write, clear, probe) or from a library
# callback a command waits on; it queues events and delivers them from its own task, in order
# (drivers.events.EventPump). The simulator alone awaits it directly (a test double whose
# fault hooks must have taken effect when they return; drivers/simulator/driver.py).
DriverEventSink = Callable[[DriverEvent], Awaitable[None]]


class LockDriver(Protocol):
    """A family of locks behind one connection (a radio, a broker, a cloud account)."""

    name: str

    async def start(self, sink: DriverEventSink) -> None:
        """Connect, discover locks, and begin reporting events to `sink`.

        `sink` may block for as long as the engine is busy, including on this driver's own
        command: events go to it from the driver's own task (drivers.events.EventPump), never
        from inside a command, so no command waits on it."""

    async def stop(self) -> None:
        """Disconnect and release everything; safe to call twice."""

    def devices(self) -> Sequence[DeviceInfo]:
        """Locks known now."""

    def availability(self, external_id: str) -> Availability:
        """Last known availability of one lock."""

    async def read_slots(self, external_id: str, slots: Sequence[int]) -> list[SlotRead]:
        """Read the given slots fresh from the lock (never from a cache known to be stale)."""

    async def list_codes(self, external_id: str) -> list[SlotRead]:
        """Every occupied slot on the lock; costly on radio locks, called rarely."""

    async def write_code(self, external_id: str, code: CodeWrite) -> WriteResult:
        """Put one code on the lock."""

    async def clear_code(self, external_id: str, slot: int) -> None:
        """Remove the code in one slot; never clears more than that slot."""

    async def probe(self, external_id: str) -> bool:
        """One cheap round trip to learn whether the lock answers."""


@runtime_checkable
class NetworkCommands(Protocol):
    """A driver that runs its locks' network itself (a Zigbee radio) lets the operator open it
    to a new lock and make a lock leave it."""

    async def permit_join(self, seconds: int) -> int:
        """Let new devices join for about `seconds`; the seconds actually granted."""

    async def remove_device(self, external_id: str) -> None:
        """Make one lock leave the network."""


class RejectReason(enum.StrEnum):
    """Why a lock refused a command for good."""

    DUPLICATE_PIN = "duplicate_pin"
    NO_SPACE = "no_space"
    INVALID_PIN = "invalid_pin"
    SLOT_OUT_OF_RANGE = "slot_out_of_range"
    UNSUPPORTED = "unsupported"
    OTHER = "other"


class DriverError(Exception):
    """Base of errors a driver raises; each subclass says what the caller must do."""


class RetryLater(DriverError):
    """A passing failure (timeout, lock asleep, link down): try again after a backoff."""


class Reauthenticate(DriverError):
    """Credentials were refused: do not retry until they change."""


class FixConfig(DriverError):
    """The configuration cannot work: retrying will not help."""


class CommandRejected(DriverError):
    """The lock refused this one command for good; other commands may still work.

    `error_code` names the refusal as the maker's integration does (a value of
    `bridge.model.AccessCodeErrorCode`, such as `hubitat_no_free_positions_available`); the
    code's error then carries it instead of the generic one `reason` maps to."""

    def __init__(self, reason: RejectReason, message: str,
                 error_code: str | None = None) -> None:
        super().__init__(message)
        self.reason = reason
        self.error_code = error_code
