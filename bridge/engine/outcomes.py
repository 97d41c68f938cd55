"""Pure functions from a driver's answer to the next state of a code: no I/O, no clock, no
store; the caller passes `now` and, where events are made, the factory that stamps them."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import replace
from datetime import datetime, timedelta
from typing import Any

from bridge.driver import CodeWrite, LockCapabilities, RejectReason, WriteResult
from bridge.engine.issues import RETRYABLE_ERRORS, SET_ERRORS, drop_codes, with_issue
from bridge.model import (
    VENDOR_WRITE_WARNINGS,
    AccessCodeErrorCode,
    AccessCodeType,
    AccessCodeWarningCode,
    Event,
    EventType,
    Issue,
)
from bridge.planner import holds_wanted, outcome_known, uses_native_schedule
from bridge.records import CodeRecord, CodeSync, DeviceRecord, Held, replace_code

# Makes one event: (kind, device_id, access_code_id, data).
EventMaker = Callable[[EventType, str | None, str | None, dict[str, Any]], Event]

# How soon a code waiting for the same PIN to leave the lock looks again.
BLOCKED_RETRY = timedelta(minutes=1)
# Refusals that sending the same code again cannot change: say so and stop retrying
# (docs/seam-model.md).
REFUSED_FOR_GOOD = frozenset({RejectReason.INVALID_PIN, RejectReason.SLOT_OUT_OF_RANGE,
                              RejectReason.UNSUPPORTED})
# A lock's refusal of a write, as the code's error and the event that reports it.
_REJECTIONS = {
    RejectReason.DUPLICATE_PIN: (AccessCodeErrorCode.DUPLICATE_CODE_ON_DEVICE,
                                 EventType.ACCESS_CODE_DUPLICATE_CODE_ON_DEVICE),
    RejectReason.NO_SPACE: (AccessCodeErrorCode.NO_SPACE_FOR_ACCESS_CODE_ON_DEVICE,
                            EventType.ACCESS_CODE_NO_SPACE_ON_DEVICE),
}
_REJECTED_OTHERWISE = (AccessCodeErrorCode.FAILED_TO_SET_ON_DEVICE,
                       EventType.ACCESS_CODE_FAILED_TO_SET_ON_DEVICE)


def rejection(reason: RejectReason) -> tuple[AccessCodeErrorCode, EventType]:
    """The error and event of a write the lock refused for `reason`."""
    return _REJECTIONS.get(reason, _REJECTED_OTHERWISE)


def without_first_sent(code: CodeRecord) -> CodeRecord:
    """The code with no record of an earlier create (the same record when it has none)."""
    if code.sync.first_sent_at is None:
        return code
    return replace(code, sync=replace(code.sync, first_sent_at=None))


def confirmed(code: CodeRecord, device: DeviceRecord, now: datetime,
              event: EventMaker) -> tuple[CodeRecord, list[Event]]:
    """A code just verified on the lock: clear delay warnings, emit set or scheduled."""
    events: list[Event] = []
    scheduled = (code.type is AccessCodeType.TIME_BOUND and uses_native_schedule(device)
                 and code.starts_at is not None and now < code.starts_at)
    if not holds_wanted(code, device):
        return code, events
    kind = (EventType.ACCESS_CODE_SCHEDULED_ON_DEVICE if scheduled
            else EventType.ACCESS_CODE_SET_ON_DEVICE)
    if not code.verified or not code.ever_set:
        events.append(event(kind, code.device_id, code.access_code_id, {"code": code.code}))
    warnings = drop_codes(code.warnings, {AccessCodeWarningCode.DELAY_IN_SETTING_ON_DEVICE,
                                          AccessCodeWarningCode.CODE_DIFFERS_FROM_REQUESTED}
                          if not code.requested_code else
                          {AccessCodeWarningCode.DELAY_IN_SETTING_ON_DEVICE})
    errors = drop_codes(code.errors, SET_ERRORS)
    if (code.verified and code.ever_set and code.pending_since is None and code.attempts == 0
            and warnings is code.warnings and errors is code.errors):
        # Confirmed again as it was (a reconcile's read): the same record, no copy to make.
        return code, events
    updated = replace_code(code, verified=True, ever_set=True, pending_since=None, attempts=0,
                      warnings=warnings, errors=errors)
    return updated, events


def retry_no_space(codes: Iterable[CodeRecord], exclude: str) -> list[CodeRecord]:
    """A slot was freed: codes that found the lock full try again."""
    error = AccessCodeErrorCode.NO_SPACE_FOR_ACCESS_CODE_ON_DEVICE
    return [replace(c, gave_up=False, attempts=0, next_attempt_at=None)
            for c in codes
            if c.access_code_id != exclude and c.is_managed and c.gave_up
            and c.has_error(error)]


def written(code: CodeRecord, request: CodeWrite, result: WriteResult,
            caps: LockCapabilities, now: datetime) -> tuple[CodeRecord, bool]:
    """The code after the lock accepted its write, and whether that acceptance verifies it
    (a lock that cannot be read back, or answers only once the code is on it)."""
    verified = result.confirmed and (not caps.can_read or caps.masks_pins_on_read or
                                     caps.confirmation_window_s == 0)
    held = Held(window=request.window, name=request.name if caps.keeps_names else None)
    changed: dict[str, Any] = dict(slot=result.slot, on_lock_pin=result.pin, on_lock_held=held,
                                   last_write_at=now, verified=verified,
                                   # Sent again after a change that never reached the lock:
                                   # it counts until the lock has it.
                                   attempts=code.attempts if code.sync.not_applied
                                   and not verified else 0,
                                   next_attempt_at=None,
                                   errors=drop_codes(code.errors, RETRYABLE_ERRORS),
                                   sync=_answered(code.sync))
    if caps.algorithmic_pins and result.pin != code.code:
        changed["code"] = result.pin
        changed["warnings"] = with_issue(
            code.warnings, AccessCodeWarningCode.CODE_DIFFERS_FROM_REQUESTED,
            "This lock generates its own PINs; the code set is the lock's",
            now) if code.requested_code else code.warnings
    changed["warnings"] = _vendor_warnings(changed.get("warnings", code.warnings), result, now)
    return outcome_known(replace_code(code, **changed)), verified


def _answered(sync: CodeSync) -> CodeSync:
    """The marks once the lock answered a write: no earlier create to remember, nothing left
    not applied (the same object when neither is set: NO_SYNC for nearly every code)."""
    if sync.first_sent_at is None and not sync.not_applied:
        return sync
    return replace(sync, first_sent_at=None, not_applied=False)


def _vendor_warnings(warnings: tuple[Issue, ...], result: WriteResult,
                     now: datetime) -> tuple[Issue, ...]:
    """The maker's warnings the write named, in place of those an earlier write named."""
    named = {str(p.code) for p in result.warnings}
    warnings = drop_codes(warnings, {str(c) for c in VENDOR_WRITE_WARNINGS} - named)
    for problem in result.warnings:
        warnings = with_issue(warnings, problem.code, problem.message, now)
    return warnings


def cleared(code: CodeRecord, slot: int, keep_slot: bool, now: datetime) -> CodeRecord:
    """The code after the lock took it off `slot`; it keeps the slot when it goes back on."""
    return replace(code, on_lock_pin=None, verified=False, attempts=0,
                   next_attempt_at=None, slot=slot if keep_slot else None,
                   pending_since=now if keep_slot else None,
                   errors=drop_codes(code.errors, RETRYABLE_ERRORS),
                   warnings=drop_codes(code.warnings, {
                       AccessCodeWarningCode.DELAY_IN_REMOVING_FROM_DEVICE}))


def with_problem(code: CodeRecord, error: AccessCodeErrorCode, message: str, now: datetime, *,
                 give_up: bool, free_slot: bool = False, attempts: int | None = None,
                 next_attempt_at: datetime | None = None,
                 refused_for_good: str | None = None) -> CodeRecord:
    """The code carrying `error`, given up on or to be retried."""
    if refused_for_good is not None:
        # Sending the same code again cannot help: only a change to it (or a delete) does,
        # not a reconnect of the lock.
        code = replace(code, sync=replace(code.sync, refused_for_good=refused_for_good))
    return replace(
        code, errors=with_issue(code.errors, error, message, now), gave_up=give_up,
        attempts=code.attempts if attempts is None else attempts,
        slot=None if free_slot and not code.on_lock else code.slot,
        next_attempt_at=next_attempt_at if next_attempt_at is not None
        else code.next_attempt_at,
    )
