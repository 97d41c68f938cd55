"""Checking a requested code against its lock and choosing its PIN: the caller's, the preferred
one where it fits, the one it has, or a generated one."""

from __future__ import annotations

import random
from dataclasses import replace
from datetime import datetime
from typing import TYPE_CHECKING

from bridge.engine.errors import EngineError, ErrorKind
from bridge.engine.issues import with_issue
from bridge.logs import REDACTOR
from bridge.model import AccessCodeType, AccessCodeWarningCode
from bridge.pins import generate_pin
from bridge.planner import permanent_problem, pin_conflict
from bridge.records import CodeRecord, DeviceRecord, replace_code

if TYPE_CHECKING:
    from bridge.engine.requests import CodeRequest


def validate_and_choose_pin(device: DeviceRecord, code: CodeRecord, request: CodeRequest,
                            others: list[CodeRecord], now: datetime,
                            rng: random.Random) -> CodeRecord:
    """The code with its PIN chosen, or EngineError for what the lock cannot take.

    `others` are the lock's other codes."""
    if not device.info.capabilities.programs_codes:
        raise EngineError(ErrorKind.INVALID_INPUT, f"{device.display_name} cannot be given PIN "
                          "codes by lockbridge: this lock's maker issues its passwords only "
                          "through its own app or cloud", "device_id")
    _check_window(code, now)
    if device.info.capabilities.algorithmic_pins:
        if request.code is not None:
            raise EngineError(ErrorKind.INVALID_INPUT, "This lock generates its own PINs; leave "
                              "code out and read it from the access_code.set_on_device "
                              "event", "code")
        return replace(code, code=None, requested_code=request.preferred_code)
    if request.code is not None:
        problem = permanent_problem(request.code, None, device)
        if problem:
            raise EngineError(ErrorKind.INVALID_INPUT, f"The lock can never take this code: "
                              f"{problem}", "code")
        other = pin_conflict(request.code, code, device, others)
        if other is not None:
            raise EngineError(ErrorKind.DUPLICATE_ACCESS_CODE, "Another code on this lock uses "
                              "this PIN (or one it would prefix) at the same time", "code")
        REDACTOR.remember(request.code)
        return replace_code(code, code=request.code, requested_code=request.code)
    preferred = request.preferred_code
    if preferred is not None:
        problem = permanent_problem(preferred, None, device) or (
            "the PIN is already in use on the lock"
            if pin_conflict(preferred, code, device, others) else None)
        if problem is None:
            REDACTOR.remember(preferred)
            return replace_code(code, code=preferred, requested_code=preferred)
        # Remembered as requested, so the warning stays once the generated PIN is set.
        code = replace(code, requested_code=preferred, warnings=with_issue(
            code.warnings, AccessCodeWarningCode.CODE_DIFFERS_FROM_REQUESTED,
            f"The requested PIN could not be used ({problem}); a compliant PIN was "
            "generated instead", now))
    if code.code is not None and not permanent_problem(code.code, None, device) \
            and not pin_conflict(code.code, code, device, others):
        return code
    return _generated(device, code, others, rng)


def _check_window(code: CodeRecord, now: datetime) -> None:
    """EngineError unless a time-bound code has a window that is valid and not over."""
    if code.type is not AccessCodeType.TIME_BOUND:
        return
    if code.starts_at is None or code.ends_at is None:
        raise EngineError(ErrorKind.INVALID_INPUT, "A time_bound code needs starts_at and "
                          "ends_at", "starts_at")
    if code.starts_at.tzinfo is None or code.ends_at.tzinfo is None:
        raise EngineError(ErrorKind.INVALID_INPUT, "Times must carry a time zone (UTC)",
                          "starts_at")
    if code.ends_at <= code.starts_at:
        raise EngineError(ErrorKind.INVALID_INPUT, "ends_at must be after starts_at", "ends_at")
    if code.ends_at <= now:
        raise EngineError(ErrorKind.INVALID_INPUT, "ends_at is in the past", "ends_at")


def _generated(device: DeviceRecord, code: CodeRecord, others: list[CodeRecord],
               rng: random.Random) -> CodeRecord:
    """The code with a generated PIN of its preferred length."""
    length = code.preferred_code_length
    lengths = device.info.constraints.allowed_lengths()
    if length is not None and length not in lengths:
        raise EngineError(ErrorKind.INVALID_INPUT, f"preferred_code_length must be within "
                          f"{lengths.start}..{lengths.stop - 1} on this lock",
                          "preferred_code_length")
    taken = [c.code for c in others if c.code and not c.deleted]
    pin = generate_pin(device.info.constraints, taken, rng, length)
    REDACTOR.remember(pin)
    return replace_code(code, code=pin)
