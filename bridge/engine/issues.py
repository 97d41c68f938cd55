"""Errors and warnings on devices and codes: add, replace and drop them by their code."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import replace
from datetime import datetime, timedelta

from bridge.driver import DeviceInfo
from bridge.model import VENDOR_SET_ERRORS, AccessCodeErrorCode, AccessCodeWarningCode, Issue
from bridge.records import CodeRecord

# Errors a new attempt (a change to the code, a reconnect, a successful write) clears.
RETRYABLE_ERRORS = frozenset({
    AccessCodeErrorCode.FAILED_TO_SET_ON_DEVICE,
    AccessCodeErrorCode.FAILED_TO_REMOVE_FROM_DEVICE,
    AccessCodeErrorCode.NO_SPACE_FOR_ACCESS_CODE_ON_DEVICE,
    AccessCodeErrorCode.DUPLICATE_CODE_ON_DEVICE,
}) | VENDOR_SET_ERRORS
# Errors a code verified on the lock no longer has.
SET_ERRORS = RETRYABLE_ERRORS - {AccessCodeErrorCode.FAILED_TO_REMOVE_FROM_DEVICE}

# How long `code_modified_external_to_seam` stays on a code the bridge put back, so an operator
# sees it happened (the event stays in the history for good).
EXTERNAL_WARNING_KEPT = timedelta(hours=24)


def with_issue(issues: tuple[Issue, ...], code: str, message: str,
               now: datetime) -> tuple[Issue, ...]:
    """`issues` with `code` present: its message replaced if it was there, else added."""
    if any(i.code == code for i in issues):
        return tuple(Issue(i.code, message, i.created_at) if i.code == code else i
                     for i in issues)
    return (*issues, Issue(str(code), message, now))


def drop_codes(issues: tuple[Issue, ...], codes: Iterable[str]) -> tuple[Issue, ...]:
    """`issues` without those of the given codes (the same tuple when none is there)."""
    if not issues:
        return issues  # most codes carry none: no set of codes to build
    wanted = {str(c) for c in codes}
    if not any(i.code in wanted for i in issues):
        return issues
    return tuple(i for i in issues if i.code not in wanted)


def driver_errors(errors: tuple[Issue, ...], before: DeviceInfo | None, info: DeviceInfo,
                  now: datetime) -> tuple[Issue, ...]:
    """A device's errors with those its driver names (`DeviceInfo.errors`) brought up to date:
    one the driver no longer names is gone, one it still names keeps when it began."""
    named = {p.code for p in info.errors}
    errors = drop_codes(errors, {p.code for p in before.errors} - named if before else ())
    for problem in info.errors:
        errors = with_issue(errors, problem.code, problem.message, now)
    return errors


def expire_external_warning(code: CodeRecord, now: datetime) -> CodeRecord:
    """Drop the warning a day after the code was put back and verified on the lock again.

    A code that allows external changes keeps it: the lock's PIN is the one made there."""
    warning = AccessCodeWarningCode.CODE_MODIFIED_EXTERNAL_TO_SEAM
    issue = next((w for w in code.warnings if w.code == warning), None)
    if issue is None or code.allow_external_modification or not code.verified \
            or code.on_lock_pin != code.code or now - issue.created_at < EXTERNAL_WARNING_KEPT:
        return code
    return replace(code, warnings=drop_codes(code.warnings, {warning}))
