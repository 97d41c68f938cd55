"""The pure decisions of reservation automations, as tables: which PIN each lock gets and the
rule that replaced a preferred one, and windows on locks with fixed time slots."""

from __future__ import annotations

import random
from datetime import UTC, datetime

import pytest

from bridge.driver import PinConstraints
from bridge.reservations.decide import (
    LockView,
    SlotRule,
    align_window,
    group_by_pin,
    pin_rule,
    plan_locks,
)

PLAIN = PinConstraints(min_length=4, max_length=8)
FOUR = PinConstraints(min_length=4, max_length=4, fixed_length=4)
NO_ZERO = PinConstraints(min_length=4, max_length=8, no_leading_zero=True)
PREFIX = PinConstraints(min_length=4, max_length=8, forbidden_prefixes=("12",))
STARTS = datetime(2026, 7, 1, 15, 10, tzinfo=UTC)
ENDS = datetime(2026, 7, 4, 10, 50, tzinfo=UTC)


@pytest.mark.parametrize(("pin", "rules", "taken", "rule"), [
    ("735193", PLAIN, (), None),
    ("735193", FOUR, (), "length"),
    ("0735", NO_ZERO, (), "leading_zero"),
    ("1234", PREFIX, (), "forbidden_sequence"),
    ("735193", PLAIN, ("735193",), "in_use"),
    ("73a5", PLAIN, (), "digits_only"),
])
def test_pin_rules(pin: str, rules: PinConstraints, taken: tuple[str, ...],
                   rule: str | None) -> None:
    found = pin_rule(pin, rules, taken)
    assert (found[0] if found else None) == rule


@pytest.mark.parametrize(("lock", "preferred", "pin", "rule"), [
    (LockView("a", PLAIN), "735193", "735193", None),
    (LockView("a", FOUR), "735193", None, "length"),
    (LockView("a", NO_ZERO), "0735", None, "leading_zero"),
    (LockView("a", PREFIX), "1299", None, "forbidden_sequence"),
    (LockView("a", PLAIN, taken=("735193",)), "735193", None, "in_use"),
    (LockView("a", PLAIN, generates_pins=True), "735193", None, "generated_only"),
    # A lock keeps the PIN it has for the grant when the preferred one cannot be used.
    (LockView("a", FOUR, current_pin="4821"), "735193", "4821", "length"),
    # A new preferred PIN that fits replaces the one the lock has.
    (LockView("a", PLAIN, current_pin="4821"), "735193", "735193", None),
    (LockView("a", PLAIN, current_pin="4821"), None, "4821", None),
])
def test_pin_choice_per_lock(lock: LockView, preferred: str | None, pin: str | None,
                             rule: str | None) -> None:
    [plan] = plan_locks(preferred, [lock], STARTS, ENDS, random.Random(1))
    if pin is not None:
        assert plan.pin == pin
    elif lock.generates_pins:
        assert plan.pin is None
    else:
        assert plan.pin is not None and plan.pin != preferred
        assert pin_rule(plan.pin, lock.constraints, lock.taken) is None
    assert (plan.substitution.split(":")[0] if plan.substitution else None) == rule


def test_locks_that_cannot_take_the_preferred_pin_share_one_generated_pin() -> None:
    locks = [LockView("a", PLAIN), LockView("b", FOUR), LockView("c", FOUR)]
    plans = plan_locks("735193", locks, STARTS, ENDS, random.Random(2))
    assert plans[0].pin == "735193"
    assert plans[1].pin == plans[2].pin and len(plans[1].pin or "") == 4
    assert [len(g) for g in group_by_pin(plans)] == [1, 2]


def test_a_generated_pin_source_sets_the_preferred_pin_aside() -> None:
    [plan] = plan_locks("735193", [LockView("a", PLAIN)], STARTS, ENDS, random.Random(3),
                        preferred_allowed=False)
    assert plan.pin != "735193" and (plan.substitution or "").startswith("pin_source")


@pytest.mark.parametrize(("rule", "zone", "window"), [
    (None, None, (STARTS, ENDS)),
    (SlotRule(240), None, (datetime(2026, 7, 1, 12, tzinfo=UTC),
                           datetime(2026, 7, 4, 12, tzinfo=UTC))),
    (SlotRule(60), None, (datetime(2026, 7, 1, 15, tzinfo=UTC),
                          datetime(2026, 7, 4, 11, tzinfo=UTC))),
    # Slots run from local midnight: Lisbon is UTC+1 in July (16:10 -> 16:00 local).
    (SlotRule(240), "Europe/Lisbon", (datetime(2026, 7, 1, 15, tzinfo=UTC),
                                      datetime(2026, 7, 4, 11, tzinfo=UTC))),
    (SlotRule(240, widen=False), None, None),
])
def test_slot_aligned_windows(rule: SlotRule | None, zone: str | None,
                              window: tuple[datetime, datetime] | None) -> None:
    assert align_window(STARTS, ENDS, rule, zone) == window


def test_a_window_on_the_slots_needs_no_widening() -> None:
    on = (datetime(2026, 7, 1, 16, tzinfo=UTC), datetime(2026, 7, 2, 8, tzinfo=UTC))
    assert align_window(*on, SlotRule(240, widen=False), None) == on


def test_a_lock_whose_slots_forbid_the_window_is_refused_and_the_others_are_not() -> None:
    locks = [LockView("a", PLAIN), LockView("b", PLAIN, slot_rule=SlotRule(240, widen=False))]
    plans = plan_locks(None, locks, STARTS, ENDS, random.Random(4))
    assert plans[0].pin is not None and plans[0].refused is None
    assert plans[1].pin is None and (plans[1].refused or "").startswith("time_slots")
    widened = plan_locks(None, [LockView("c", PLAIN, slot_rule=SlotRule(240))], STARTS, ENDS,
                         random.Random(5))[0]
    assert widened.widened and widened.starts_at == datetime(2026, 7, 1, 12, tzinfo=UTC)
