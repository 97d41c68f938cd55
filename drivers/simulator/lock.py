"""One simulated lock: slots, PIN rules, latency, masked reads, schedules and injected faults."""

from __future__ import annotations

import hashlib
import random
from dataclasses import dataclass, field

from bridge.clock import Clock
from bridge.driver import (
    Addressing,
    Availability,
    CodeWrite,
    CommandRejected,
    DeviceInfo,
    LocalWindow,
    LockCapabilities,
    PinConstraints,
    Reauthenticate,
    RejectReason,
    RetryLater,
    SlotRead,
    SlotState,
    WriteResult,
)

# Every PIN any simulated lock has held in this process: the ground truth the test suite's log
# guard searches the logs for (it must not rely on the bridge's own list of PINs to redact).
SEEN_PINS: set[str] = set()


@dataclass(slots=True)
class SimSlot:
    """What a simulated slot holds."""

    pin: str
    name: str
    window: LocalWindow | None = None
    # The bridge's id of the code, kept with it as locks that pick their own slot keep a
    # reference: a replayed write finds its first landing instead of taking a second slot.
    key: str | None = None


@dataclass(slots=True)
class SimLockSpec:
    """How a simulated lock behaves; built from YAML or by tests."""

    lock_id: str
    name: str
    model: str = "Simulated keypad lock"
    first_slot: int = 1
    slot_count: int = 30
    reserved_slots: tuple[int, ...] = ()
    min_length: int = 4
    max_length: int = 8
    fixed_length: int | None = None
    no_leading_zero: bool = False
    matches_prefixes: bool = False
    masks_pins: bool = False
    can_read: bool = True
    native_schedules: bool = False
    algorithmic_pins: bool = False
    id_addressed: bool = False
    latency_s: float = 0.0
    command_spacing_s: float = 0.0
    # Declares a listing that walks slot by slot, as a radio lock's does (the engine's tests).
    lists_slot_by_slot: bool = False
    confirmation_window_s: float = 0.0
    time_zone: str | None = None
    refuses_sets: bool = False


@dataclass(slots=True)
class SimLock:
    """A lock in memory. Tests reach in through the fault methods; the driver through commands."""

    spec: SimLockSpec
    clock: Clock
    slots: dict[int, SimSlot] = field(default_factory=dict)
    availability: Availability = Availability.ONLINE
    offline_until: float | None = None
    fail_sets: int = 0
    fail_clears: int = 0
    fail_reason: RejectReason | None = None
    full: bool = False
    commands: int = 0
    writes: dict[int, int] = field(default_factory=dict)
    write_log: list[tuple[int, str]] = field(default_factory=list)
    # A buggy driver: the chance that any driver call for this lock raises an unexpected
    # exception (not a DriverError), before or after it did its work.
    chaos: float = 0.0
    # Slots whose reads get no answer (a marginal radio link, a lock that drops one request).
    unanswered_slots: set[int] = field(default_factory=set)
    # Made on first use (`chaos_random`): a generator's state is 2.5 KB, which 1,000 simulated
    # locks without chaos added to the daemon's RSS in the benchmarks.
    chaos_rng: random.Random | None = None

    def chaos_random(self) -> random.Random:
        """The generator of this lock's chaos."""
        if self.chaos_rng is None:
            self.chaos_rng = random.Random()
        return self.chaos_rng

    # -- what the driver sees -------------------------------------------------------------

    def info(self) -> DeviceInfo:
        """This lock as discovery reports it."""
        s = self.spec
        caps = LockCapabilities(
            addressing=Addressing.ID if s.id_addressed else Addressing.SLOT,
            first_slot=s.first_slot,
            slot_count=s.slot_count,
            reserved_slots=frozenset(s.reserved_slots),
            can_read=s.can_read,
            masks_pins_on_read=s.masks_pins,
            native_schedules=s.native_schedules,
            algorithmic_pins=s.algorithmic_pins,
            confirmation_window_s=s.confirmation_window_s,
            min_command_spacing_s=s.command_spacing_s,
            lists_slot_by_slot=s.lists_slot_by_slot,
        )
        cons = PinConstraints(
            min_length=s.min_length,
            max_length=s.max_length,
            fixed_length=s.fixed_length,
            no_leading_zero=s.no_leading_zero,
            matches_prefixes=s.matches_prefixes,
        )
        return DeviceInfo(
            external_id=s.lock_id,
            display_name=s.name,
            manufacturer="lockbridge",
            model=s.model,
            device_type="simulated_lock",
            capabilities=caps,
            constraints=cons,
            time_zone=s.time_zone,
        )

    def current_availability(self) -> Availability:
        """Availability now, ending a timed outage once its time has passed."""
        if self.offline_until is not None and self.clock.monotonic() >= self.offline_until:
            self.offline_until = None
            self.availability = Availability.ONLINE
        return self.availability

    async def read(self, slots: list[int]) -> list[SlotRead]:
        """Read slots as the lock would report them."""
        await self._round_trip()
        if not self.spec.can_read:
            return [SlotRead(slot=n, state=SlotState.UNREADABLE) for n in slots]
        return [SlotRead(slot=n, state=SlotState.UNREADABLE) if n in self.unanswered_slots
                else self._read_one(n) for n in slots]

    async def read_all(self) -> list[SlotRead]:
        """Every occupied slot."""
        await self._round_trip()
        if not self.spec.can_read:
            return []
        return [self._read_one(n) for n in sorted(self.slots)]

    async def write(self, code: CodeWrite) -> WriteResult:
        """Program one code, enforcing the lock's rules."""
        await self._round_trip()
        if self.spec.refuses_sets:
            raise CommandRejected(RejectReason.OTHER, "lock refused the code (simulated)")
        if self.fail_sets > 0:
            self.fail_sets -= 1
            if self.fail_reason is not None:
                raise CommandRejected(self.fail_reason, f"simulated rejection: {self.fail_reason}")
            raise RetryLater("simulated transient failure")
        slot = code.slot if code.slot is not None else self._slot_of(code.key)
        if slot is None or self.full:
            raise CommandRejected(RejectReason.NO_SPACE, "no free slot on the lock")
        if slot not in range(self.spec.first_slot, self.spec.first_slot + self.spec.slot_count):
            raise CommandRejected(RejectReason.SLOT_OUT_OF_RANGE, f"slot {slot} does not exist")
        pin = self._algorithmic_pin(slot) if self.spec.algorithmic_pins else code.pin
        if pin is None:
            raise CommandRejected(RejectReason.INVALID_PIN, "no PIN given")
        self._check_pin(pin)
        for other_slot, held in self.slots.items():
            if other_slot != slot and held.pin == pin:
                raise CommandRejected(RejectReason.DUPLICATE_PIN, "PIN already in another slot")
        SEEN_PINS.add(pin)
        self.slots[slot] = SimSlot(pin=pin, name=code.name[:16], window=code.window,
                                   key=code.key)
        self.writes[slot] = self.writes.get(slot, 0) + 1
        self.write_log.append((slot, "set"))
        return WriteResult(slot=slot, pin=pin)

    async def clear(self, slot: int) -> None:
        """Empty one slot."""
        await self._round_trip()
        if self.fail_clears > 0:
            self.fail_clears -= 1
            raise RetryLater("simulated transient failure")
        self.slots.pop(slot, None)
        self.write_log.append((slot, "clear"))

    async def probe(self) -> bool:
        """A no-op round trip."""
        try:
            await self._round_trip()
        except (RetryLater, Reauthenticate):
            return False
        return True

    # -- fault injection -----------------------------------------------------------------

    def go_offline(self, seconds: float | None = None) -> None:
        """Stop answering, for `seconds` of clock time or until `come_online`."""
        self.availability = Availability.OFFLINE
        self.offline_until = None if seconds is None else self.clock.monotonic() + seconds

    def come_online(self) -> None:
        """Answer again."""
        self.availability = Availability.ONLINE
        self.offline_until = None

    def disconnect_account(self) -> None:
        """The vendor account behind this lock refuses our credentials."""
        self.availability = Availability.ACCOUNT_DISCONNECTED

    def keypad_set(self, slot: int, pin: str, name: str = "keypad") -> None:
        """Someone programs a code at the keypad (bypassing our rules, as a real keypad does)."""
        SEEN_PINS.add(pin)
        self.slots[slot] = SimSlot(pin=pin, name=name)

    def keypad_clear(self, slot: int) -> None:
        """Someone deletes a code at the keypad."""
        self.slots.pop(slot, None)

    def wipe(self) -> None:
        """The lock was reset (batteries out, factory reset, account re-linked)."""
        self.slots.clear()

    # -- internals ------------------------------------------------------------------------

    async def _round_trip(self) -> None:
        self.commands += 1
        if self.spec.latency_s:
            await self.clock.sleep(self.spec.latency_s)
        state = self.current_availability()
        if state is Availability.ACCOUNT_DISCONNECTED:
            raise Reauthenticate("simulated account disconnected")
        if state is not Availability.ONLINE:
            raise RetryLater(f"lock is {state.value}")

    def _read_one(self, slot: int) -> SlotRead:
        held = self.slots.get(slot)
        if held is None:
            return SlotRead(slot=slot, state=SlotState.EMPTY)
        if self.spec.masks_pins:
            return SlotRead(slot=slot, state=SlotState.UNREADABLE, name=held.name)
        return SlotRead(
            slot=slot, state=SlotState.KNOWN, pin=held.pin, name=held.name, window=held.window
        )

    def _slot_of(self, key: str | None) -> int | None:
        """Where a code with this reference already is (a replayed write), else a free slot."""
        if key is not None:
            for slot, held in self.slots.items():
                if held.key == key:
                    return slot
        return self._free_slot()

    def _free_slot(self) -> int | None:
        for n in range(self.spec.first_slot, self.spec.first_slot + self.spec.slot_count):
            if n not in self.slots and n not in self.spec.reserved_slots:
                return n
        return None

    def _check_pin(self, pin: str) -> None:
        s = self.spec
        ok_len = (
            len(pin) == s.fixed_length
            if s.fixed_length is not None
            else s.min_length <= len(pin) <= s.max_length
        )
        if not pin.isdigit() or not ok_len or (s.no_leading_zero and pin.startswith("0")):
            raise CommandRejected(RejectReason.INVALID_PIN, "PIN does not meet the lock's rules")

    def _algorithmic_pin(self, slot: int) -> str:
        digest = hashlib.sha256(f"{self.spec.lock_id}:{slot}:{len(self.write_log)}".encode())
        length = self.spec.fixed_length or self.spec.max_length
        digits = str(int.from_bytes(digest.digest()[:8], "big")).rjust(length, "7")
        pin = digits[:length]
        return "9" + pin[1:] if pin.startswith("0") else pin
