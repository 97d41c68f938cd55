"""Table tests of the pure decisions: no event loop, no store, times given explicitly."""

from __future__ import annotations

import random
from dataclasses import replace
from datetime import UTC, datetime, timedelta

import pytest

from bridge.driver import (
    Availability,
    DeviceInfo,
    LocalWindow,
    LockCapabilities,
    PinConstraints,
    SlotRead,
    SlotState,
)
from bridge.model import AccessCodeStatus, AccessCodeType
from bridge.pins import clash, generate_pin, is_trivial, pin_violation
from bridge.planner import (
    CommandKind,
    Policy,
    ReadVerdict,
    choose_slot,
    derive_status,
    foresee_problem,
    forgettable,
    held_after_read,
    holds_wanted,
    judge_read,
    local_window,
    needs_no_plan,
    next_command,
    next_wakeup,
    should_be_on_lock,
)
from bridge.records import CodeRecord, DeviceRecord, Held

T0 = datetime(2026, 3, 20, 12, 0, tzinfo=UTC)
H = timedelta(hours=1)
D = timedelta(days=1)
POLICY = Policy()


def device(native: bool = False, zone: str | None = "Europe/Lisbon", slots: int = 30,
           **rules: object) -> DeviceRecord:
    info = DeviceInfo("x", "X", "m", "m", "lock",
                      LockCapabilities(native_schedules=native, slot_count=slots),
                      PinConstraints(**rules))  # type: ignore[arg-type]
    return DeviceRecord("d", "sim", "x", info, T0, time_zone=zone)


def code(cid: str = "c", **kw: object) -> CodeRecord:
    base = CodeRecord(cid, "d", T0 - D, code="482915")
    return replace(base, **kw)  # type: ignore[arg-type]


def tb(start: timedelta, end: timedelta, **kw: object) -> CodeRecord:
    return code(type=AccessCodeType.TIME_BOUND, starts_at=T0 + start, ends_at=T0 + end, **kw)


@pytest.mark.parametrize(
    ("native", "start", "end", "expected"),
    [
        (True, 9 * D - H, 10 * D, True),     # native schedule: on up to 9 days ahead
        (True, 9 * D + H, 10 * D, False),    # ... not earlier
        (False, 2 * H, 5 * H, False),        # bridge-enforced: only 60 minutes ahead
        (False, 30 * timedelta(minutes=1), 5 * H, True),
        (False, -5 * H, -1 * H, False),      # window passed: comes off
        (True, -5 * H, timedelta(0), False),  # ends now: off
    ],
)
def test_should_be_on_lock(native: bool, start: timedelta, end: timedelta,
                           expected: bool) -> None:
    assert should_be_on_lock(tb(start, end), device(native=native), T0, POLICY) is expected


def test_native_schedule_needs_a_time_zone() -> None:
    c = tb(2 * D, 3 * D)
    assert should_be_on_lock(c, device(native=True, zone="UTC"), T0, POLICY)
    assert not should_be_on_lock(c, device(native=True, zone=None), T0, POLICY)


def test_local_window_is_wall_clock_time_across_dst() -> None:
    # Lisbon moves to summer time on 2026-03-29 at 01:00 UTC; a stay across it keeps 15:00/11:00.
    c = code(type=AccessCodeType.TIME_BOUND, starts_at=datetime(2026, 3, 27, 15, tzinfo=UTC),
             ends_at=datetime(2026, 3, 30, 10, tzinfo=UTC))
    window = local_window(c, device(native=True))
    assert window is not None
    assert (window.starts_at.hour, window.ends_at.hour) == (15, 11)


@pytest.mark.parametrize(
    ("kw", "status", "scheduled"),
    [
        ({"on_lock_pin": "482915", "verified": True}, AccessCodeStatus.SET, False),
        ({}, AccessCodeStatus.SETTING, False),
        ({"on_lock_pin": "482915", "verified": False}, AccessCodeStatus.SETTING, False),
        ({"deleted": True, "on_lock_pin": "482915"}, AccessCodeStatus.REMOVING, False),
    ],
)
def test_derive_status_ongoing(kw: dict[str, object], status: AccessCodeStatus,
                               scheduled: bool) -> None:
    assert derive_status(code(**kw), device(), T0, POLICY) == (status, scheduled)


def test_status_of_a_code_scheduled_on_the_lock() -> None:
    c = tb(2 * D, 3 * D, on_lock_pin="482915", verified=True)
    assert derive_status(c, device(native=True), T0, POLICY) == (AccessCodeStatus.UNSET, True)
    assert derive_status(c, device(native=True), T0 + 2 * D, POLICY) == (
        AccessCodeStatus.SET, False)
    assert derive_status(c, device(native=True), T0 + 3 * D, POLICY) == (
        AccessCodeStatus.REMOVING, False)


def test_next_command_orders_removals_then_soonest_start() -> None:
    dev = device()
    codes = [
        tb(30 * timedelta(minutes=1), 5 * H, access_code_id="later"),
        tb(10 * timedelta(minutes=1), 5 * H, access_code_id="sooner"),
        tb(-5 * H, -H, access_code_id="expired", on_lock_pin="482915", slot=4),
    ]
    first = next_command(dev, codes, T0, POLICY)
    assert first is not None and (first.kind, first.access_code_id) == (CommandKind.CLEAR,
                                                                        "expired")
    second = next_command(dev, codes[:2], T0, POLICY)
    assert second is not None and second.access_code_id == "sooner"


def test_next_command_skips_backoff_and_given_up_and_unsynced_clock() -> None:
    dev = device()
    assert next_command(dev, [code(next_attempt_at=T0 + H)], T0, POLICY) is None
    assert next_command(dev, [code(gave_up=True)], T0, POLICY) is None
    timed = tb(timedelta(minutes=10), H)
    assert next_command(dev, [timed], T0, POLICY, clock_synchronized=False) is None
    assert next_command(dev, [code()], T0, POLICY, clock_synchronized=False) is not None


def test_pending_reads_come_first() -> None:
    cmd = next_command(device(), [code()], T0, POLICY, pending_reads=[7, 3])
    assert cmd is not None and cmd.kind is CommandKind.READ and cmd.slots == (3, 7)


def test_next_wakeup_is_the_next_schedule_edge() -> None:
    c = tb(2 * H, 5 * H)
    assert next_wakeup(device(), [c], T0, POLICY) == T0 + H  # 60 min before start


@pytest.mark.parametrize(
    ("read", "fresh", "verdict"),
    [
        (SlotRead(1, SlotState.KNOWN, "482915"), False, ReadVerdict.CONFIRMED),
        (SlotRead(1, SlotState.UNREADABLE), False, ReadVerdict.TRUSTED),
        # A code the lock keeps disabled (Z-Wave) is not the working code, however fresh.
        (SlotRead(1, SlotState.UNREADABLE, reason="disabled", disabled=True), False,
         ReadVerdict.CHANGED),
        (SlotRead(1, SlotState.UNREADABLE, reason="disabled", disabled=True), True,
         ReadVerdict.CHANGED),
        # Only the flag says so: a masked code a simulated lock names "disabled" is trusted.
        (SlotRead(1, SlotState.UNREADABLE, reason="disabled"), False, ReadVerdict.TRUSTED),
        (SlotRead(1, SlotState.EMPTY), False, ReadVerdict.MISSING),
        (SlotRead(1, SlotState.EMPTY), True, ReadVerdict.STILL_PENDING),
        (SlotRead(1, SlotState.KNOWN, "111111"), False, ReadVerdict.CHANGED),
        (SlotRead(1, SlotState.KNOWN, "111111"), True, ReadVerdict.STILL_PENDING),
        # Listed with a change on its way: not on the lock yet, however old the write.
        (SlotRead(1, SlotState.KNOWN, "482915", pending=True), False, ReadVerdict.STILL_PENDING),
        (SlotRead(1, SlotState.KNOWN, "482915", failed=True), False, ReadVerdict.NOT_APPLIED),
        # A masked slot showing the name written (or the lock's cut of it) is ours; another
        # name is a code typed over ours at the keypad (found by the chaos soak).
        (SlotRead(1, SlotState.UNREADABLE, name="Guest Smi"), False, ReadVerdict.TRUSTED),
        (SlotRead(1, SlotState.UNREADABLE, name="keypad"), False, ReadVerdict.CHANGED),
        (SlotRead(1, SlotState.UNREADABLE, name="keypad"), True, ReadVerdict.STILL_PENDING),
    ],
)
def test_judge_read(read: SlotRead, fresh: bool, verdict: ReadVerdict) -> None:
    c = code(on_lock_pin="482915", slot=1, appearance_name="Guest Smith",
             last_write_at=T0 - timedelta(seconds=10 if fresh else 600))
    assert judge_read(c, read, T0, timedelta(seconds=60)) is verdict


def test_choose_slot_skips_taken_and_reserved() -> None:
    dev = device(slots=3)
    dev = replace(dev, info=replace(dev.info, capabilities=replace(
        dev.info.capabilities, reserved_slots=frozenset({1}))))
    assert choose_slot(dev, [code(slot=2)]) == 3
    assert choose_slot(dev, [code(slot=2), code("b", slot=3)]) is None


@pytest.mark.parametrize(
    ("pin", "rules", "problem"),
    [
        ("1234", {}, None),
        ("12a4", {}, "digits only"),
        ("123", {}, "4 to 8 digits"),
        ("12345", {"fixed_length": 4}, "must be 4 digits"),
        ("0123", {"no_leading_zero": True}, "starting with 0"),
        ("9912", {"forbidden_prefixes": ("99",)}, "starting with 99"),
        # A programming code's digits are not repeated back.
        ("99123", {"forbidden_prefixes": ("991",)}, "programming code"),
        ("45670", {"forbidden_digits": "0"}, "digit 0"),
    ],
)
def test_pin_violation(pin: str, rules: dict[str, object], problem: str | None) -> None:
    result = pin_violation(pin, PinConstraints(**rules))  # type: ignore[arg-type]
    assert (result is None) if problem is None else (result is not None and problem in result)


def test_clash_duplicates_and_prefixes() -> None:
    assert clash("1234", ["1234"], PinConstraints()) == "1234"
    assert clash("1234", ["12345"], PinConstraints()) is None
    assert clash("1234", ["12345"], PinConstraints(matches_prefixes=True)) == "12345"


@pytest.mark.parametrize(
    ("duplicates", "prefixes", "same", "prefix", "unrelated"),
    [
        (True, False, True, False, False),
        (True, True, True, True, False),
        (False, True, False, True, False),
        (False, False, False, False, False),
    ],
)
def test_clashes_under_each_combination_of_rules(duplicates: bool, prefixes: bool, same: bool,
                                                 prefix: bool, unrelated: bool) -> None:
    rules = PinConstraints(rejects_duplicates=duplicates, matches_prefixes=prefixes)

    def clashes(pin: str, other: str, rules: PinConstraints) -> bool:
        return clash(pin, [other], rules) is not None

    assert clashes("1234", "1234", rules) is same
    assert clashes("1234", "12345", rules) is prefix
    assert clashes("12345", "1234", rules) is prefix
    assert clashes("1234", "5678", rules) is unrelated


def test_generated_pins_follow_rules_and_avoid_trivial_and_taken() -> None:
    rules = PinConstraints(fixed_length=4, no_leading_zero=True)
    rng = random.Random(3)
    taken: list[str] = []
    for _ in range(200):
        pin = generate_pin(rules, taken, rng)
        assert pin_violation(pin, rules) is None and not is_trivial(pin) and pin not in taken
        taken.append(pin)
    assert is_trivial("1234") and is_trivial("0000") and is_trivial("4321")


def test_foresee_problem_warns_three_days_ahead_when_no_slot_will_be_free() -> None:
    dev = device(slots=1)
    occupant = code("ongoing", slot=1, on_lock_pin="111111", verified=True)
    guest = tb(2 * D, 3 * D, access_code_id="guest")
    assert foresee_problem(guest, dev, [occupant, guest], T0, POLICY) is not None
    assert foresee_problem(guest, dev, [guest], T0, POLICY) is None
    far = tb(5 * D, 6 * D, access_code_id="far")
    assert foresee_problem(far, dev, [occupant, far], T0, POLICY) is None  # not yet in horizon


def test_foresee_problem_warns_ahead_while_the_lock_is_unreachable() -> None:
    guest = tb(2 * D, 3 * D, access_code_id="guest")
    for availability in (Availability.OFFLINE, Availability.HUB_DISCONNECTED,
                         Availability.ACCOUNT_DISCONNECTED):
        problem = foresee_problem(guest, replace(device(), availability=availability),
                                  [guest], T0, POLICY)
        assert problem is not None and "reachable" in problem
    assert foresee_problem(guest, device(), [guest], T0, POLICY) is None
    far = tb(5 * D, 6 * D, access_code_id="far")
    assert foresee_problem(far, replace(device(), availability=Availability.OFFLINE), [far],
                           T0, POLICY) is None  # beyond the horizon: not yet a worry


def test_pin_rules_of_a_keypad_without_zero_that_reserves_12() -> None:
    # Nuki's keypad: six digits from 1 to 9, never starting with 12.
    rules = PinConstraints(fixed_length=6, forbidden_digits="0", forbidden_prefixes=("12",))
    assert pin_violation("456780", rules) == "this lock does not accept the digit 0"
    assert pin_violation("123456", rules) is not None
    assert pin_violation("456789", rules) is None
    rng = random.Random(3)
    taken: list[str] = []
    for _ in range(300):
        pin = generate_pin(rules, taken, rng)
        assert len(pin) == 6 and "0" not in pin and not pin.startswith("12")
        taken.append(pin)


def test_forgettable_only_long_ended_codes_off_the_lock() -> None:
    month = POLICY.forget_ended_after
    ended = tb(-40 * D, -35 * D)
    assert forgettable(ended, T0, POLICY)
    assert not forgettable(tb(-40 * D, -D), T0, POLICY)  # ended yesterday: still shown
    assert not forgettable(replace(ended, on_lock_pin="482915"), T0, POLICY)  # still on it
    assert not forgettable(replace(ended, deleted=True), T0, POLICY)  # the removal finishes it
    assert not forgettable(code("ongoing"), T0 + 10 * month, POLICY)
    assert not forgettable(replace(ended, is_managed=False), T0, POLICY)


def _keeping(native: bool = True, names: bool = True, zone: str = "Europe/Lisbon") -> DeviceRecord:
    dev = device(native=native, zone=zone)
    caps = replace(dev.info.capabilities, keeps_names=names, name_max_length=20)
    return replace(dev, info=replace(dev.info, capabilities=caps))


def _as_written(c: CodeRecord, dev: DeviceRecord) -> CodeRecord:
    """The code as the lock holds it right after lockbridge wrote it."""
    return replace(c, on_lock_pin=c.code, verified=True, on_lock_held=Held(
        local_window(c, dev), "Guest" if dev.info.capabilities.keeps_names else None))


M = timedelta(minutes=1)


@pytest.mark.parametrize(
    ("change", "names", "write"),
    [
        ({}, True, False),                                      # as written: nothing to do
        ({"ends_at": T0 + 4 * D}, True, True),                  # stay extended
        ({"ends_at": T0 + 2 * D}, True, True),                  # stay shortened
        ({"starts_at": T0 + D + H}, True, True),                # arrival moved
        ({"ends_at": T0 + 3 * D + timedelta(seconds=20)}, True, False),  # under a minute
        ({"name": "Guest Smith"}, True, True),                  # renamed, the lock keeps names
        ({"name": "Guest Smith"}, False, False),                # renamed, the lock keeps none
        ({"type": AccessCodeType.ONGOING, "starts_at": None, "ends_at": None}, True, True),
    ],
)
def test_a_change_to_what_the_lock_stores_is_a_write(change: dict[str, object], names: bool,
                                                     write: bool) -> None:
    dev = _keeping(names=names)
    stay = tb(D, 3 * D, name="Guest")
    held = _as_written(stay, dev)
    assert holds_wanted(held, dev)
    changed = replace(held, **change)  # type: ignore[arg-type]
    assert holds_wanted(changed, dev) is not write
    cmd = next_command(dev, [changed], T0, POLICY)
    assert (cmd is not None and cmd.kind is CommandKind.WRITE) is write
    # Seam's status: `setting` until the lock has the new values.
    expected = AccessCodeStatus.SETTING if write else AccessCodeStatus.UNSET
    assert derive_status(changed, dev, T0, POLICY)[0] is expected


def test_a_running_stay_moved_is_a_write_and_setting_until_the_lock_has_it() -> None:
    dev = _keeping()
    running = _as_written(tb(-D, D, name="Guest"), dev)
    assert derive_status(running, dev, T0, POLICY) == (AccessCodeStatus.SET, False)
    moved = replace(running, ends_at=T0 + 2 * D)
    assert derive_status(moved, dev, T0, POLICY) == (AccessCodeStatus.SETTING, False)
    cmd = next_command(dev, [moved], T0, POLICY)
    assert cmd is not None and cmd.kind is CommandKind.WRITE


def test_windows_compare_in_instants_whatever_zone_they_are_read_in() -> None:
    dev = _keeping(zone="Pacific/Auckland")
    stay = _as_written(tb(D, 3 * D, name="Guest"), dev)
    wanted = local_window(stay, dev)
    assert wanted is not None and wanted.zone == "Pacific/Auckland"
    assert stay.starts_at is not None and stay.ends_at is not None
    in_utc = LocalWindow(stay.starts_at.replace(tzinfo=None), stay.ends_at.replace(tzinfo=None),
                         zone="UTC")
    read = SlotRead(1, SlotState.KNOWN, "482915", name="Guest", window=in_utc)
    assert holds_wanted(replace(stay, on_lock_held=held_after_read(stay, read)), dev)
    # The same wall-clock times taken as UTC are 13 hours off: a write.
    shifted = replace(in_utc, starts_at=wanted.starts_at, ends_at=wanted.ends_at)
    read = replace(read, window=shifted)
    assert not holds_wanted(replace(stay, on_lock_held=held_after_read(stay, read)), dev)


def test_far_windows_compare_as_cut_to_what_locks_hold() -> None:
    dev = _keeping()
    forever = _as_written(code(type=AccessCodeType.TIME_BOUND, starts_at=T0 - D,
                               ends_at=datetime(9999, 12, 31, 23, 59, 59, tzinfo=UTC),
                               name="Guest"), dev)
    held = forever.on_lock_held
    assert held is not None and held.window is not None and held.window.ends_at.year == 2099
    assert holds_wanted(forever, dev)


def test_a_read_that_shows_nothing_beside_the_pin_keeps_what_was_written() -> None:
    dev = _keeping()
    stay = _as_written(tb(D, 3 * D, name="Guest"), dev)
    assert held_after_read(stay, SlotRead(1, SlotState.KNOWN, "482915")) == stay.on_lock_held
    renamed = held_after_read(stay, SlotRead(1, SlotState.KNOWN, "482915", name="Someone"))
    assert renamed is not None and renamed.name == "Someone"
    assert not holds_wanted(replace(stay, on_lock_held=renamed), dev)


def test_a_code_that_needs_no_plan_never_gives_a_command_or_a_wakeup() -> None:
    # The engine leaves such codes out of the planner's walk (EngineState.planning_codes):
    # whatever the time, the clock's trust and the lock, they may add nothing.
    rng = random.Random(11)
    held = (None, Held(), Held(name="Code c"), Held(name="Other"),
            Held(window=LocalWindow(datetime(2026, 3, 20), datetime(2026, 3, 21))))
    left_out = 0
    for _ in range(3000):
        lock = device(native=rng.random() < 0.5, zone=rng.choice((None, "Europe/Lisbon")))
        if rng.random() < 0.5:
            lock = replace(lock, info=replace(lock.info, capabilities=replace(
                lock.info.capabilities, keeps_names=True)))
        kind = rng.choice(("ongoing", "tb"))
        fields: dict[str, object] = {
            "is_managed": rng.random() < 0.9, "deleted": rng.random() < 0.2,
            "on_lock_pin": rng.choice((None, "482915", "111111")),
            "on_lock_held": rng.choice(held), "slot": rng.choice((None, 3)),
            "gave_up": rng.random() < 0.2, "name": rng.choice((None, "Other")),
            "next_attempt_at": rng.choice((None, T0 + H, T0 - H)),
            "pending_since": rng.choice((None, T0 - H)),
        }
        c = code(**fields) if kind == "ongoing" else tb(-D + rng.randrange(3) * D,
                                                         D + rng.randrange(3) * D, **fields)
        if not needs_no_plan(c, lock):
            continue
        left_out += 1
        for now in (T0 - 30 * D, T0, T0 + 30 * D):
            for synced in (True, False):
                assert next_command(lock, [c], now, POLICY, synced) is None
            assert next_wakeup(lock, [c], now, POLICY) is None
    assert left_out > 300
