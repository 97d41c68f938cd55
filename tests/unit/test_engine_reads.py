"""Table tests of what one read of a slot means for a code (the engine's pure judgements)."""

from __future__ import annotations

import random
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from bridge.driver import SlotRead, SlotState
from bridge.engine.reads import changed_externally, not_applied, settle_intent
from bridge.model import AccessCodeErrorCode, AccessCodeWarningCode, Event, EventType
from bridge.planner import Policy, ReadVerdict
from bridge.records import CodeRecord
from bridge.store import Intent, IntentOp

T0 = datetime(2026, 3, 20, 12, 0, tzinfo=UTC)
PIN = "482915"


def code(**kw: Any) -> CodeRecord:
    return replace(CodeRecord("c", "d", T0 - timedelta(days=1), code=PIN, slot=3), **kw)


def event(kind: EventType, device_id: str | None, code_id: str | None,
          data: dict[str, Any]) -> Event:
    return Event("e", kind, T0, device_id, code_id, data)


@pytest.mark.parametrize(("op", "code_id", "read", "on_lock_pin", "settled"), [
    # A write in flight: it landed if the slot shows its PIN, or shows nothing readable.
    (IntentOp.WRITE, "c", SlotRead(3, SlotState.KNOWN, PIN), PIN, True),
    (IntentOp.WRITE, "c", SlotRead(3, SlotState.UNREADABLE), PIN, True),
    (IntentOp.WRITE, "c", SlotRead(3, SlotState.EMPTY), None, True),
    (IntentOp.WRITE, "c", SlotRead(3, SlotState.KNOWN, "111111"), None, True),
    # A write for another code is not this code's to settle.
    (IntentOp.WRITE, "other", SlotRead(3, SlotState.KNOWN, PIN), None, False),
    # A clear in flight: it landed if the slot is empty.
    (IntentOp.CLEAR, "c", SlotRead(3, SlotState.EMPTY), None, True),
])
def test_a_command_in_flight_at_a_restart_is_settled_by_the_read(
        op: IntentOp, code_id: str, read: SlotRead, on_lock_pin: str | None,
        settled: bool) -> None:
    intent = Intent("d", 3, op, code_id, PIN if op is IntentOp.WRITE else None)
    after, was_settled = settle_intent(code(), intent, read)
    assert (after.on_lock_pin, was_settled) == (on_lock_pin, settled)


def test_a_clear_in_flight_that_did_not_land_leaves_the_code_on() -> None:
    intent = Intent("d", 3, IntentOp.CLEAR, "c", None)
    after, settled = settle_intent(code(on_lock_pin=PIN), intent,
                                   SlotRead(3, SlotState.KNOWN, PIN))
    assert after.on_lock_pin == PIN and settled


@pytest.mark.parametrize(("attempts", "gave_up", "events"), [
    (0, False, []),
    (3, False, []),
    (4, True, [EventType.ACCESS_CODE_FAILED_TO_SET_ON_DEVICE]),  # the fifth attempt of five
])
def test_a_change_that_never_reached_the_lock_is_retried_then_given_up(
        attempts: int, gave_up: bool, events: list[EventType]) -> None:
    after, made = not_applied(code(attempts=attempts, verified=True), T0, Policy(),
                              random.Random(1), event)
    assert after.attempts == attempts + 1 and after.sync.not_applied and not after.verified
    assert after.next_attempt_at is not None and after.next_attempt_at > T0
    assert after.gave_up is gave_up
    assert after.has_error(AccessCodeErrorCode.FAILED_TO_SET_ON_DEVICE) is gave_up
    assert [e.event_type for e in made] == events


def test_a_code_being_deleted_is_not_retried_when_the_change_did_not_reach_the_lock() -> None:
    before = code(deleted=True)
    assert not_applied(before, T0, Policy(), random.Random(1), event) == (before, [])


@pytest.mark.parametrize(("allowed", "deleted", "verdict", "read", "expected"), [
    # Not allowed: put back (the next write overwrites the slot).
    (False, False, ReadVerdict.CHANGED, SlotRead(3, SlotState.KNOWN, "111111"),
     {"code": PIN, "on_lock_pin": None, "pending_since": T0, "external_hold": False}),
    (False, False, ReadVerdict.MISSING, SlotRead(3, SlotState.EMPTY),
     {"code": PIN, "on_lock_pin": None, "pending_since": T0, "external_hold": False}),
    # Allowed: a new PIN is kept as the lock has it; a removal holds the code off.
    (True, False, ReadVerdict.CHANGED, SlotRead(3, SlotState.KNOWN, "111111"),
     {"code": "111111", "on_lock_pin": "111111", "pending_since": None,
      "external_hold": False}),
    (True, False, ReadVerdict.MISSING, SlotRead(3, SlotState.EMPTY),
     {"code": PIN, "on_lock_pin": None, "pending_since": None, "external_hold": True}),
    # Being deleted: it is simply off.
    (False, True, ReadVerdict.MISSING, SlotRead(3, SlotState.EMPTY),
     {"code": PIN, "on_lock_pin": None, "pending_since": None, "external_hold": False}),
])
def test_a_code_changed_at_the_lock(allowed: bool, deleted: bool, verdict: ReadVerdict,
                                    read: SlotRead, expected: dict[str, Any]) -> None:
    before = code(on_lock_pin=PIN, verified=True, ever_set=True, deleted=deleted,
                  allow_external_modification=allowed)
    after, made = changed_externally(before, read, verdict, T0, event)
    assert {"code": after.code, "on_lock_pin": after.on_lock_pin,
            "pending_since": after.pending_since,
            "external_hold": after.sync.external_hold} == expected
    assert after.has_warning(AccessCodeWarningCode.CODE_MODIFIED_EXTERNAL_TO_SEAM)
    assert [(e.event_type, e.data["removed"]) for e in made] == [
        (EventType.ACCESS_CODE_MODIFIED_EXTERNAL_TO_SEAM, verdict is ReadVerdict.MISSING)]
