"""Pure decisions: what should be on a lock now, which command comes next, and what a read means.

Nothing here does I/O or reads the clock; every function takes `now` and returns values, so the
rules are tested with tables of cases.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from enum import StrEnum
from zoneinfo import ZoneInfo

from bridge.backoff import Backoff
from bridge.driver import Addressing, LocalWindow, SlotRead, SlotState
from bridge.instants import shifted
from bridge.model import AccessCodeStatus, AccessCodeType
from bridge.pins import clash_test, pin_violation
from bridge.records import CodeRecord, DeviceRecord, Held, replace_code


@dataclass(frozen=True, slots=True)
class Policy:
    """Timing rules for scheduling and retries."""

    native_lead: timedelta = timedelta(days=9)
    bridge_lead: timedelta = timedelta(minutes=60)
    errors_ahead: timedelta = timedelta(days=3)
    max_attempts: int = 5
    retry_base_s: float = 5.0
    retry_cap_s: float = 1800.0
    probe_base_s: float = 60.0
    probe_cap_s: float = 1800.0
    delay_warning_after: timedelta = timedelta(minutes=5)
    # A time-bound code that ended and is off the lock is forgotten this long after its end,
    # so the records of years of stays do not pile up in memory and on disk.
    forget_ended_after: timedelta = timedelta(days=30)

    @property
    def retry_backoff(self) -> Backoff:
        """The pause between attempts of a failing command or read."""
        return Backoff(self.retry_base_s, self.retry_cap_s)

    @property
    def probe_backoff(self) -> Backoff:
        """The pause between probes of a lock that is not online."""
        return Backoff(self.probe_base_s, self.probe_cap_s)


def uses_native_schedule(device: DeviceRecord) -> bool:
    """True when the lock itself switches time-bound codes on and off."""
    return device.info.capabilities.native_schedules and device.time_zone is not None


def should_be_on_lock(
    code: CodeRecord, device: DeviceRecord, now: datetime, policy: Policy
) -> bool:
    """Whether the code belongs in a slot of the lock at `now`."""
    if code.deleted or not code.is_managed:
        return False
    if code.type is AccessCodeType.ONGOING:
        return True
    assert code.starts_at is not None and code.ends_at is not None
    if now >= code.ends_at:
        return False
    lead = policy.native_lead if uses_native_schedule(device) else policy.bridge_lead
    return now >= shifted(code.starts_at, -lead)


def goes_on_at(code: CodeRecord, device: DeviceRecord, policy: Policy) -> datetime | None:
    """When a time-bound code is due on the lock, or None for ongoing codes."""
    if code.type is AccessCodeType.ONGOING or code.starts_at is None:
        return None
    lead = policy.native_lead if uses_native_schedule(device) else policy.bridge_lead
    return shifted(code.starts_at, -lead)


def local_window(code: CodeRecord, device: DeviceRecord) -> LocalWindow | None:
    """The code's window in the lock's wall-clock time, for locks that keep schedules.

    Locks keep dates in a few bytes (Z-Wave's year-day schedules count years 2000 to 2099), and
    booking systems write "for ever" as 9999-12-31: the window sent is cut to what every lock
    family can hold; the code is active over all of it either way."""
    if (code.type is not AccessCodeType.TIME_BOUND or not uses_native_schedule(device)
            or code.starts_at is None or code.ends_at is None):
        return None
    zone_name = device.time_zone or "UTC"
    zone = ZoneInfo(zone_name)
    starts_at = min(max(code.starts_at, LOCK_WINDOW_FLOOR), LOCK_WINDOW_CEILING)
    ends_at = min(max(code.ends_at, LOCK_WINDOW_FLOOR), LOCK_WINDOW_CEILING)
    # Each instant is converted on its own, so a DST change between them never shifts either.
    return LocalWindow(
        starts_at=starts_at.astimezone(zone).replace(tzinfo=None),
        ends_at=ends_at.astimezone(zone).replace(tzinfo=None),
        zone=zone_name,
    )


def wanted_name(code: CodeRecord, device: DeviceRecord) -> str:
    """The name written to the lock for a code, as the lock can show it."""
    return appearance_name(code.name or f"Code {code.access_code_id[:8]}",
                           device.info.capabilities.name_max_length)


def wanted_held(code: CodeRecord, device: DeviceRecord) -> Held:
    """What the lock should store for the code beside its PIN: the window where the lock keeps
    schedules, the name where it keeps names."""
    keeps_names = device.info.capabilities.keeps_names
    return Held(window=local_window(code, device),
                name=wanted_name(code, device) if keeps_names else None)


def same_window(held: LocalWindow | None, wanted: LocalWindow | None,
                zone: str | None) -> bool:
    """Whether two windows are the same to the lock's resolution (a minute); a window without a
    zone is in `zone`, the lock's."""
    if held is None or wanted is None:
        return held is None and wanted is None
    pairs = zip(_instants(held, zone), _instants(wanted, zone), strict=True)
    return all(abs(a - b) < WINDOW_RESOLUTION for a, b in pairs)


def holds_wanted(code: CodeRecord, device: DeviceRecord) -> bool:
    """True when the lock holds the code as wanted: its PIN and, as far as known, the window and
    name the lock stores for it. A difference in any of them needs a write."""
    if not code.code or code.on_lock_pin != code.code or code.sync.not_applied:
        return False
    held = code.on_lock_held
    if held is None:
        return True  # nothing known beyond the PIN (a record from before this was kept)
    # `wanted_held`, taken apart: the name is built only when it is compared. This runs for
    # every code of the lock at every step of its worker (the API's create-to-lock path).
    if code.type is not AccessCodeType.TIME_BOUND:
        # No window is wanted for it (`local_window` is None): the lock must hold none.
        if held.window is not None:
            return False
    elif not same_window(held.window, local_window(code, device), device.time_zone):
        return False
    if held.name is None or not device.info.capabilities.keeps_names:
        return True
    return held.name == wanted_name(code, device)


def held_after_read(code: CodeRecord, read: SlotRead) -> Held | None:
    """What the lock stores for the code once a read showed it: the window and name the read
    reports replace what was known (a driver that reads neither leaves it as it was)."""
    if read.state is not SlotState.KNOWN or (read.window is None and read.name is None):
        return code.on_lock_held
    held = code.on_lock_held or Held()
    return Held(window=read.window if read.window is not None else held.window,
                name=read.name if read.name is not None else held.name)


def _instants(window: LocalWindow, zone: str | None) -> tuple[datetime, datetime]:
    tz = ZoneInfo(window.zone or zone or "UTC")
    return (window.starts_at.replace(tzinfo=tz).astimezone(UTC),
            window.ends_at.replace(tzinfo=tz).astimezone(UTC))


# Locks keep schedules to the minute (Nuki, Z-Wave year-day schedules).
WINDOW_RESOLUTION = timedelta(minutes=1)


# The span of time a lock's own schedule can hold, in every lock family lockbridge drives.
LOCK_WINDOW_FLOOR = datetime(2000, 1, 2, tzinfo=UTC)
LOCK_WINDOW_CEILING = datetime(2099, 12, 30, tzinfo=UTC)
def outcome_known(code: CodeRecord) -> CodeRecord:
    """The code without the unknown-outcome mark (a read or an answer settled it)."""
    if not code.sync.outcome_unknown:
        return code
    return replace(code, sync=replace(code.sync, outcome_unknown=False))


def outcome_unknown(code: CodeRecord) -> CodeRecord:
    """The code marked: a write for it went out and no answer came back."""
    if code.sync.outcome_unknown:
        return code
    return replace(code, sync=replace(code.sync, outcome_unknown=True))


def forgettable(code: CodeRecord, now: datetime, policy: Policy) -> bool:
    """A managed time-bound code long past its end, off the lock, with nothing left to do."""
    return (code.is_managed and code.type is AccessCodeType.TIME_BOUND and not code.deleted
            and not code.on_lock and code.ends_at is not None
            and now >= shifted(code.ends_at, policy.forget_ended_after))


def derive_status(
    code: CodeRecord, device: DeviceRecord, now: datetime, policy: Policy
) -> tuple[AccessCodeStatus, bool]:
    """The code's `status` and `is_scheduled_on_device` from what is known of the lock."""
    if not code.is_managed:
        return AccessCodeStatus.SET, False
    wanted = should_be_on_lock(code, device, now, policy)
    holds_pin = holds_wanted(code, device)
    if wanted:
        if holds_pin and code.verified:
            future = code.starts_at is not None and now < code.starts_at
            if future and uses_native_schedule(device):
                return AccessCodeStatus.UNSET, True
            return AccessCodeStatus.SET, False
        if code.sync.external_hold:
            # Removed at the lock with external changes allowed: it stays off, nothing is
            # being set (an update of the code puts it back).
            return AccessCodeStatus.UNSET, False
        if code.sync.outcome_unknown and not device.online:
            # A write went out, no answer came back, and the lock cannot be asked: the code
            # may or may not be on it (Seam's `unknown`: an indeterminate state).
            return AccessCodeStatus.UNKNOWN, False
        return AccessCodeStatus.SETTING, False
    if code.on_lock:
        return AccessCodeStatus.REMOVING, False
    return AccessCodeStatus.UNSET, False


class CommandKind(StrEnum):
    """What the engine sends to a lock next."""

    WRITE = "write"
    CLEAR = "clear"
    READ = "read"


@dataclass(frozen=True, slots=True)
class Command:
    """One command for one lock."""

    kind: CommandKind
    slot: int | None
    access_code_id: str | None = None
    revision: int = 0
    slots: tuple[int, ...] = ()


def in_backoff(code: CodeRecord, now: datetime) -> bool:
    """True while a failed code waits before its next attempt."""
    return code.next_attempt_at is not None and now < code.next_attempt_at


def needs_no_plan(code: CodeRecord, device: DeviceRecord) -> bool:
    """True for a code that gives `next_command` nothing to send and `next_wakeup` no moment,
    at any time, as long as it and the lock's record stay as they are: an unmanaged code, or an
    ongoing one with nothing pending or retried that the lock holds as wanted (most codes of a
    converged lock). The engine keeps such codes out of the planner's walk at every step."""
    if not code.is_managed:
        return True
    return (code.type is AccessCodeType.ONGOING and not code.deleted
            and code.next_attempt_at is None and code.pending_since is None
            and code.starts_at is None and code.ends_at is None and holds_wanted(code, device))


def next_command(
    device: DeviceRecord,
    codes: Sequence[CodeRecord],
    now: datetime,
    policy: Policy,
    clock_synchronized: bool = True,
    pending_reads: Iterable[int] = (),
) -> Command | None:
    """The one command this lock should get next, or None when it is as it should be.

    Order: pending verification reads, then removals (expired first), then writes (soonest start
    first). A code waiting out a backoff or given up is skipped.
    """
    reads = tuple(sorted(set(pending_reads)))
    if reads:
        return Command(CommandKind.READ, None, slots=reads)
    clears: list[tuple[datetime, CodeRecord]] = []
    writes: list[tuple[datetime, CodeRecord]] = []
    # Every step of a lock's worker walks all of its codes (200 a lock is common): the checks
    # of `in_backoff` and `should_be_on_lock` are inlined for the ongoing codes most locks hold.
    ongoing = AccessCodeType.ONGOING
    for code in codes:
        if not code.is_managed or code.gave_up:
            continue
        retry_at = code.next_attempt_at
        if retry_at is not None and now < retry_at:
            continue
        if code.type is ongoing:
            wanted = not code.deleted
        elif not clock_synchronized and not code.deleted:
            continue
        else:
            wanted = should_be_on_lock(code, device, now, policy)
        if not wanted and code.on_lock:
            clears.append((code.ends_at or code.created_at, code))
        elif wanted and not holds_wanted(code, device):
            # awaiting_adoption: restored from the upstream, maybe on the lock already; the
            # first full read of the lock looks before anything is written.
            if code.sync.external_hold or code.sync.awaiting_adoption:
                continue
            writes.append((code.starts_at or code.created_at, code))
    if clears:
        clears.sort(key=lambda item: item[0])
        target = clears[0][1]
        return Command(CommandKind.CLEAR, target.slot, target.access_code_id, target.revision)
    if writes:
        writes.sort(key=lambda item: item[0])
        target = writes[0][1]
        return Command(CommandKind.WRITE, target.slot, target.access_code_id, target.revision)
    return None


def next_wakeup(
    device: DeviceRecord, codes: Sequence[CodeRecord], now: datetime, policy: Policy
) -> datetime | None:
    """The earliest future moment at which `next_command` or a status could change by itself."""
    moments: list[datetime] = []
    ongoing = AccessCodeType.ONGOING
    for code in codes:
        if not code.is_managed:
            continue
        if (code.type is ongoing and code.next_attempt_at is None and code.pending_since is None
                and code.starts_at is None and code.ends_at is None):
            # Nothing about it changes with time (every moment below is None): most codes of
            # a converged lock, walked after every step of its worker.
            continue
        if code.next_attempt_at is not None and code.next_attempt_at > now:
            moments.append(code.next_attempt_at)
        on_at = goes_on_at(code, device, policy)
        for moment in (on_at, code.starts_at, code.ends_at):
            if moment is not None and moment > now:
                moments.append(moment)
        if code.pending_since is not None:
            warn_at = shifted(code.pending_since, policy.delay_warning_after)
            if warn_at > now:
                moments.append(warn_at)
        ahead = shifted(code.starts_at, -policy.errors_ahead) if code.starts_at else None
        if ahead is not None and ahead > now:
            moments.append(ahead)
    return min(moments) if moments else None


def foresee_problem(
    code: CodeRecord, device: DeviceRecord, codes: Sequence[CodeRecord], now: datetime,
    policy: Policy,
) -> str | None:
    """For a time-bound code not yet due on the lock but within the errors-ahead horizon: why it
    will not fit when its time comes (lock unreachable now, no slot, PIN clash), or None."""
    due = goes_on_at(code, device, policy)
    if (due is None or due <= now or code.starts_at is None
            or now < shifted(code.starts_at, -policy.errors_ahead) or code.deleted
            or not code.is_managed):
        return None
    if not device.online:
        return (f"the lock is {device.availability.value.replace('_', ' ')}: the code cannot "
                "go on until it is reachable again")
    caps = device.info.capabilities
    if caps.addressing is Addressing.SLOT:
        usable = caps.slot_count - len(caps.reserved_slots)
        busy = sum(
            1 for other in codes
            if other.access_code_id != code.access_code_id and (
                not other.is_managed or should_be_on_lock(other, device, due, policy)
                or (other.on_lock and other.ends_at is not None and other.ends_at > due)
            )
        )
        if busy >= usable:
            return "no slot will be free on the lock when this code is due"
    if code.code is not None and pin_conflict(code.code, code, device, codes) is not None:
        return "another code on the lock will hold a clashing PIN when this code is due"
    return None


def choose_slot(device: DeviceRecord, codes: Sequence[CodeRecord],
                occupied: Iterable[int] = ()) -> int | None:
    """The lowest slot no code holds or is headed for, or None when the lock is full."""
    caps = device.info.capabilities
    if caps.addressing is Addressing.ID:
        return None
    taken = {c.slot for c in codes if c.slot is not None} | set(occupied) | caps.reserved_slots
    for slot in caps.slots():
        if slot not in taken:
            return slot
    return None


def windows_overlap(a: CodeRecord, b: CodeRecord) -> bool:
    """True when two codes can be valid at the same moment."""
    if a.type is AccessCodeType.ONGOING or b.type is AccessCodeType.ONGOING:
        return True
    assert a.starts_at and a.ends_at and b.starts_at and b.ends_at
    return a.starts_at < b.ends_at and b.starts_at < a.ends_at


def pin_conflict(
    pin: str, code: CodeRecord, device: DeviceRecord, codes: Sequence[CodeRecord]
) -> CodeRecord | None:
    """Another code on the lock whose PIN collides with `pin` while both are valid."""
    # The lock's clash rule chosen once: this runs over every code of the lock at every create.
    clashing = clash_test(device.info.constraints)
    if clashing is None:
        return None
    for other in codes:
        other_pin = other.code
        if not other_pin or other.deleted or other.access_code_id == code.access_code_id:
            continue
        if not clashing(pin, other_pin):
            continue
        if not other.is_managed or windows_overlap(code, other):
            return other
    return None


def pin_on_lock_conflict(
    pin: str, code: CodeRecord, device: DeviceRecord, codes: Sequence[CodeRecord]
) -> CodeRecord | None:
    """A code physically on the lock now whose PIN collides with `pin`."""
    # The lock's clash rule chosen once: this runs over every code of the lock before every
    # write.
    clashing = clash_test(device.info.constraints)
    if clashing is None:
        return None
    for other in codes:
        held = other.on_lock_pin if other.is_managed else other.code
        if held and other.access_code_id != code.access_code_id and clashing(pin, held):
            return other
    return None


def permanent_problem(pin: str | None, slot: int | None, device: DeviceRecord) -> str | None:
    """Why the lock can never take this PIN or slot, or None."""
    if pin is not None:
        problem = pin_violation(pin, device.info.constraints)
        if problem:
            return problem
    caps = device.info.capabilities
    if slot is not None and slot not in caps.slots():
        return f"slot {slot} does not exist on this lock (slots {caps.first_slot}.." \
               f"{caps.first_slot + caps.slot_count - 1})"
    return None


class ReadVerdict(StrEnum):
    """What one slot read means for the managed code that should be there."""

    CONFIRMED = "confirmed"
    STILL_PENDING = "still_pending"
    MISSING = "missing"
    CHANGED = "changed"
    TRUSTED = "trusted"
    # The lock lists the code but the change never reached it (a cloud's failed transfer).
    NOT_APPLIED = "not_applied"


def judge_read(
    code: CodeRecord, read: SlotRead, now: datetime, confirmation_window: timedelta
) -> ReadVerdict:
    """Compare a read with what the bridge believes is in the code's slot."""
    fresh = code.last_write_at is not None and now - code.last_write_at < confirmation_window
    if read.state is SlotState.UNREADABLE:
        if read.disabled:
            # The lock keeps a code there that does not open the door: not the working code.
            return ReadVerdict.CHANGED
        # Occupied but masked: never "empty". Our own write is trusted, unless the lock shows
        # another name in the slot: a code typed over ours at the keypad.
        if not _same_name(read.name, code.appearance_name):
            return ReadVerdict.STILL_PENDING if fresh else ReadVerdict.CHANGED
        return ReadVerdict.TRUSTED
    if read.pending:
        # Listed, but the lock may not have it yet: nothing is confirmed, nothing is lost.
        return ReadVerdict.STILL_PENDING
    if read.failed:
        return ReadVerdict.NOT_APPLIED
    if read.state is SlotState.KNOWN and read.pin == code.on_lock_pin:
        return ReadVerdict.CONFIRMED
    if fresh:
        return ReadVerdict.STILL_PENDING
    if read.state is SlotState.EMPTY:
        return ReadVerdict.MISSING
    return ReadVerdict.CHANGED


def _same_name(shown: str | None, written: str | None) -> bool:
    """A name read back matches the one written (a lock may keep only its start)."""
    if shown is None or written is None:
        return True
    return shown.startswith(written) or written.startswith(shown)


def appearance_name(name: str, limit: int) -> str:
    """The name as the lock can show it."""
    return name if len(name) <= limit else name[: max(1, limit)]


def with_status(code: CodeRecord, device: DeviceRecord, now: datetime,
                policy: Policy) -> CodeRecord:
    """The code with `status` and `is_scheduled_on_device` brought up to date."""
    status, scheduled = derive_status(code, device, now, policy)
    if status is code.status and scheduled == code.is_scheduled_on_device:
        return code
    return replace_code(code, status=status, is_scheduled_on_device=scheduled)
