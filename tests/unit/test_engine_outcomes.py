"""Table tests of the engine's pure outcomes: a driver's answer to a code's next state. No event
loop, no store; times given explicitly."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from bridge.driver import (
    CodeWrite,
    DeviceInfo,
    LockCapabilities,
    PinConstraints,
    RejectReason,
    WriteResult,
)
from bridge.engine import outcomes
from bridge.model import (
    AccessCodeErrorCode,
    AccessCodeType,
    AccessCodeWarningCode,
    Event,
    EventType,
    Issue,
)
from bridge.records import CodeRecord, CodeSync, DeviceRecord

T0 = datetime(2026, 3, 20, 12, 0, tzinfo=UTC)
REQUEST = CodeWrite(slot=3, pin="482915", name="Guest")


def device(**caps: Any) -> DeviceRecord:
    info = DeviceInfo("x", "X", "m", "m", "lock", LockCapabilities(**caps), PinConstraints())
    return DeviceRecord("d", "sim", "x", info, T0, time_zone="Europe/Lisbon")


def code(**kw: Any) -> CodeRecord:
    return replace(CodeRecord("c", "d", T0 - timedelta(days=1), code="482915"), **kw)


def event(kind: EventType, device_id: str | None, code_id: str | None,
          data: dict[str, Any]) -> Event:
    return Event("e", kind, T0, device_id, code_id, data)


@pytest.mark.parametrize(("reason", "error", "kind"), [
    (RejectReason.DUPLICATE_PIN, AccessCodeErrorCode.DUPLICATE_CODE_ON_DEVICE,
     EventType.ACCESS_CODE_DUPLICATE_CODE_ON_DEVICE),
    (RejectReason.NO_SPACE, AccessCodeErrorCode.NO_SPACE_FOR_ACCESS_CODE_ON_DEVICE,
     EventType.ACCESS_CODE_NO_SPACE_ON_DEVICE),
    (RejectReason.INVALID_PIN, AccessCodeErrorCode.FAILED_TO_SET_ON_DEVICE,
     EventType.ACCESS_CODE_FAILED_TO_SET_ON_DEVICE),
    (RejectReason.UNSUPPORTED, AccessCodeErrorCode.FAILED_TO_SET_ON_DEVICE,
     EventType.ACCESS_CODE_FAILED_TO_SET_ON_DEVICE),
])
def test_a_refusal_is_reported_as_seam_names_it(reason: RejectReason,
                                                error: AccessCodeErrorCode,
                                                kind: EventType) -> None:
    assert outcomes.rejection(reason) == (error, kind)


@pytest.mark.parametrize(("caps", "confirmed", "verified"), [
    # A readable lock is read back before the code counts as verified...
    ({}, True, False),
    # ...unless it cannot be read, shows no PINs, or answers only once the code is on it.
    ({"can_read": False}, True, True),
    ({"masks_pins_on_read": True}, True, True),
    ({"confirmation_window_s": 0}, True, True),
    # An accepted-but-unconfirmed answer never verifies.
    ({"can_read": False}, False, False),
])
def test_an_accepted_write_verifies_the_code_only_where_a_read_cannot(
        caps: dict[str, Any], confirmed: bool, verified: bool) -> None:
    updated, was_verified = outcomes.written(
        code(sync=CodeSync(outcome_unknown=True, first_sent_at=T0)), REQUEST,
        WriteResult(slot=3, pin="482915", confirmed=confirmed),
        LockCapabilities(**caps), T0)
    assert was_verified is verified and updated.verified is verified
    assert (updated.slot, updated.on_lock_pin, updated.last_write_at) == (3, "482915", T0)
    # The answer settles the outcome and proves nothing about later creates.
    assert updated.sync == CodeSync()


@pytest.mark.parametrize(("not_applied", "can_read", "attempts"), [
    (False, True, 0),   # a first write: the count starts again
    (True, True, 2),    # sent again after a change that never reached the lock: it counts on
    (True, False, 0),   # ...until the answer itself verifies it
])
def test_attempts_after_an_accepted_write(not_applied: bool, can_read: bool,
                                          attempts: int) -> None:
    updated, _ = outcomes.written(code(attempts=2, sync=CodeSync(not_applied=not_applied)),
                                  REQUEST, WriteResult(slot=3, pin="482915"),
                                  LockCapabilities(can_read=can_read), T0)
    assert updated.attempts == attempts


def test_a_lock_that_chooses_its_pins_sets_the_code_and_says_it_differs() -> None:
    updated, _ = outcomes.written(code(requested_code="111111"), REQUEST,
                                  WriteResult(slot=3, pin="907153"),
                                  LockCapabilities(algorithmic_pins=True), T0)
    assert updated.code == "907153"
    assert updated.has_warning(AccessCodeWarningCode.CODE_DIFFERS_FROM_REQUESTED)


@pytest.mark.parametrize(("keep_slot", "slot", "pending_since"), [
    (True, 4, T0),      # it goes back on (a changed window): same slot, pending from now
    (False, None, None),
])
def test_a_cleared_code(keep_slot: bool, slot: int | None,
                        pending_since: datetime | None) -> None:
    before = code(slot=4, on_lock_pin="482915", verified=True, attempts=3, errors=(
        Issue(AccessCodeErrorCode.FAILED_TO_REMOVE_FROM_DEVICE, "m", T0),))
    after = outcomes.cleared(before, 4, keep_slot, T0)
    assert (after.slot, after.pending_since) == (slot, pending_since)
    assert not after.on_lock and not after.verified and after.attempts == 0
    assert after.errors == ()


@pytest.mark.parametrize(("on_lock", "free_slot", "slot"), [
    (False, True, None),  # a refused create frees the slot it was headed for
    (True, True, 5),      # one on the lock keeps its slot
    (False, False, 5),
])
def test_a_problem_frees_the_slot_only_of_a_code_off_the_lock(on_lock: bool, free_slot: bool,
                                                               slot: int | None) -> None:
    before = code(slot=5, on_lock_pin="482915" if on_lock else None)
    after = outcomes.with_problem(before, AccessCodeErrorCode.FAILED_TO_SET_ON_DEVICE, "m", T0,
                                  give_up=True, free_slot=free_slot,
                                  refused_for_good=RejectReason.INVALID_PIN)
    assert after.slot == slot and after.gave_up
    assert after.has_error(AccessCodeErrorCode.FAILED_TO_SET_ON_DEVICE)
    assert after.sync.refused_for_good == RejectReason.INVALID_PIN


@pytest.mark.parametrize(("starts_in", "native", "kind"), [
    (timedelta(days=2), True, EventType.ACCESS_CODE_SCHEDULED_ON_DEVICE),
    (timedelta(days=2), False, EventType.ACCESS_CODE_SET_ON_DEVICE),
    (-timedelta(hours=1), True, EventType.ACCESS_CODE_SET_ON_DEVICE),
])
def test_a_confirmed_code_is_set_or_scheduled(starts_in: timedelta, native: bool,
                                              kind: EventType) -> None:
    before = code(type=AccessCodeType.TIME_BOUND, starts_at=T0 + starts_in,
                  ends_at=T0 + timedelta(days=5), on_lock_pin="482915",
                  warnings=(Issue(AccessCodeWarningCode.DELAY_IN_SETTING_ON_DEVICE, "m", T0),))
    after, events = outcomes.confirmed(before, device(native_schedules=native), T0, event)
    assert [e.event_type for e in events] == [kind]
    assert after.verified and after.ever_set and after.pending_since is None
    assert after.warnings == ()


def test_a_code_confirmed_again_emits_nothing() -> None:
    before = code(on_lock_pin="482915", verified=True, ever_set=True)
    _, events = outcomes.confirmed(before, device(), T0, event)
    assert events == []


def test_a_freed_slot_retries_only_codes_that_found_the_lock_full() -> None:
    full = Issue(AccessCodeErrorCode.NO_SPACE_FOR_ACCESS_CODE_ON_DEVICE, "m", T0)
    other = Issue(AccessCodeErrorCode.FAILED_TO_SET_ON_DEVICE, "m", T0)
    codes = [code(gave_up=True, errors=(full,)),
             replace(code(gave_up=True, errors=(other,)), access_code_id="b"),
             replace(code(gave_up=True, errors=(full,)), access_code_id="freed")]
    retried = outcomes.retry_no_space(codes, exclude="freed")
    assert [(c.access_code_id, c.gave_up) for c in retried] == [("c", False)]
