"""Pure decisions of reservation automations: which PIN each lock of an access grant gets (and
which rule replaced a preferred one), and the window a lock with fixed time slots can take.
No I/O: values in, values out (tests/reservations/test_reservations_decide.py)."""

from __future__ import annotations

import random
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

from bridge.driver import PinConstraints
from bridge.pins import clash, generate_pin

# Tries at one PIN every lock of a grant accepts before each lock gets its own.
_COMMON_PIN_TRIES = 200


@dataclass(frozen=True, slots=True)
class SlotRule:
    """A lock that only takes windows on fixed time slots (Dormakaba-style): slots of
    `minutes` from local midnight; `widen` lets a window grow to the slots around it."""

    minutes: int
    widen: bool = True


@dataclass(frozen=True, slots=True)
class LockView:
    """What the PIN choice needs to know of one lock of a grant."""

    device_id: str
    constraints: PinConstraints
    # The lock makes its own PINs (an offline lock with pre-generated codes).
    generates_pins: bool = False
    # PINs of the lock's other codes (not this grant's).
    taken: tuple[str, ...] = ()
    # The PIN this grant's code has on the lock now, if it has one.
    current_pin: str | None = None
    slot_rule: SlotRule | None = None
    time_zone: str | None = None


@dataclass(frozen=True, slots=True)
class LockPlan:
    """What one lock of a grant should hold: a PIN (None: the lock picks it) and a window, or
    why it cannot hold the grant at all (`refused`: the access method's failed_to_issue)."""

    device_id: str
    pin: str | None
    starts_at: datetime
    ends_at: datetime
    # "<rule>: <why>" when a preferred PIN was replaced on this lock.
    substitution: str | None = None
    # "<rule>: <why>" when the window was widened to the lock's slots.
    widened: str | None = None
    refused: str | None = None


def pin_rule(pin: str, rules: PinConstraints, taken: Sequence[str]) -> tuple[str, str] | None:
    """(rule, why) of the lock rule that forbids `pin` here, or None when it may be used."""
    if not pin.isdigit():
        return "digits_only", "a PIN has digits only"
    lengths = rules.allowed_lengths()
    if len(pin) not in lengths:
        return "length", f"the lock takes PINs of {lengths.start} to {lengths.stop - 1} digits"
    if rules.no_leading_zero and pin.startswith("0"):
        return "leading_zero", "the lock does not take a PIN starting with 0"
    if any(d in rules.forbidden_digits for d in pin):
        return "forbidden_digit", "the lock does not take some of its digits"
    if any(pin.startswith(p) for p in rules.forbidden_prefixes):
        return "forbidden_sequence", "the PIN starts with digits the lock reserves"
    if clash(pin, taken, rules):
        return "in_use", "another code on the lock uses this PIN (or one it would prefix)"
    return None


def align_window(starts_at: datetime, ends_at: datetime, rule: SlotRule | None,
                 time_zone: str | None) -> tuple[datetime, datetime] | None:
    """The window on the lock's slots (start down, end up to a slot boundary in its local
    time); the window itself when the lock has no slots; None when it is off the slots and
    the rule forbids widening."""
    if rule is None:
        return starts_at, ends_at
    zone = ZoneInfo(time_zone or "UTC")
    start = _to_slot(starts_at, rule.minutes, zone, up=False)
    end = _to_slot(ends_at, rule.minutes, zone, up=True)
    if (start, end) != (starts_at, ends_at) and not rule.widen:
        return None
    return start, end


def _to_slot(when: datetime, minutes: int, zone: ZoneInfo, up: bool) -> datetime:
    local = when.astimezone(zone)
    midnight = local.replace(hour=0, minute=0, second=0, microsecond=0)
    into = (local - midnight).total_seconds()
    size = minutes * 60
    slots = into // size + (1 if up and into % size else 0)
    return (midnight + timedelta(seconds=slots * size)).astimezone(when.tzinfo)


def plan_locks(preferred: str | None, locks: Sequence[LockView], starts_at: datetime,
               ends_at: datetime, rng: random.Random,
               preferred_allowed: bool = True) -> list[LockPlan]:
    """Each lock's PIN and window for one grant.

    The preferred PIN goes on every lock that accepts it; a lock keeps the PIN it already has
    for this grant unless a new preferred one fits; the others share one generated PIN where
    their rules allow (one access method), else each gets its own. `preferred_allowed` False
    (the PIN source says generated) sets a preferred PIN aside on every lock."""
    plans: dict[str, LockPlan] = {}
    need_pin: list[LockView] = []
    reasons: dict[str, str] = {}
    for lock in locks:
        window = align_window(starts_at, ends_at, lock.slot_rule, lock.time_zone)
        if window is None:
            plans[lock.device_id] = LockPlan(
                lock.device_id, None, starts_at, ends_at,
                refused=f"time_slots: the lock only takes windows on {lock.slot_rule.minutes}"
                        "-minute slots and widening is off" if lock.slot_rule else "time_slots")
            continue
        widened = None if window == (starts_at, ends_at) else \
            f"time_slots: widened to the lock's {lock.slot_rule.minutes}-minute slots" \
            if lock.slot_rule else None
        base = LockPlan(lock.device_id, None, window[0], window[1], widened=widened)
        reason = _preferred_refusal(preferred, lock, preferred_allowed)
        if lock.generates_pins:
            plans[lock.device_id] = _with(base, None, reason)
        elif preferred is not None and reason is None:
            plans[lock.device_id] = _with(base, preferred, None)
        elif lock.current_pin is not None and pin_rule(lock.current_pin, lock.constraints,
                                                       lock.taken) is None:
            plans[lock.device_id] = _with(base, lock.current_pin, reason)
        else:
            plans[lock.device_id] = base
            need_pin.append(lock)
            if reason is not None:
                reasons[lock.device_id] = reason
    for device_id, pin in _generated(need_pin, rng).items():
        plans[device_id] = _with(plans[device_id], pin, reasons.get(device_id))
    return [plans[lock.device_id] for lock in locks]


def _with(plan: LockPlan, pin: str | None, substitution: str | None) -> LockPlan:
    return LockPlan(plan.device_id, pin, plan.starts_at, plan.ends_at, substitution,
                    plan.widened, plan.refused)


def _preferred_refusal(preferred: str | None, lock: LockView,
                       preferred_allowed: bool) -> str | None:
    """"<rule>: <why>" when the preferred PIN cannot go on this lock, else None."""
    if preferred is None:
        return None
    if not preferred_allowed:
        return "pin_source: this customer's or property's PINs are generated"
    if lock.generates_pins:
        return "generated_only: the lock makes its own PINs (an offline lock)"
    if preferred == lock.current_pin:
        return None
    found = pin_rule(preferred, lock.constraints, lock.taken)
    return f"{found[0]}: {found[1]}" if found else None


def _generated(locks: Sequence[LockView], rng: random.Random) -> dict[str, str]:
    """One PIN every lock accepts where one is found, else one per lock."""
    if not locks:
        return {}
    taken = tuple(pin for lock in locks for pin in lock.taken)
    first = locks[0]
    for _ in range(_COMMON_PIN_TRIES):
        try:
            pin = generate_pin(first.constraints, taken, rng)
        except ValueError:
            break
        if all(pin_rule(pin, lock.constraints, lock.taken) is None for lock in locks):
            return {lock.device_id: pin for lock in locks}
    return {lock.device_id: generate_pin(lock.constraints, lock.taken, rng) for lock in locks}


def group_by_pin(plans: Sequence[LockPlan]) -> list[list[LockPlan]]:
    """Plans that share a PIN together (one access method each group); a lock that picks its
    own PIN or is refused stands alone."""
    groups: dict[str, list[LockPlan]] = {}
    alone: list[list[LockPlan]] = []
    for plan in plans:
        if plan.pin is None:
            alone.append([plan])
        else:
            groups.setdefault(plan.pin, []).append(plan)
    return [*groups.values(), *alone]
