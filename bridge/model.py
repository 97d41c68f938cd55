"""Seam's objects as lockbridge keeps them: frozen values with Seam's field names and codes."""

from __future__ import annotations

import enum
from dataclasses import dataclass, field
from datetime import datetime


class AccessCodeType(enum.StrEnum):
    """`access_code.type`."""

    ONGOING = "ongoing"
    TIME_BOUND = "time_bound"


class AccessCodeStatus(enum.StrEnum):
    """`access_code.status`: where the code is in its lifecycle on the lock."""

    SETTING = "setting"
    SET = "set"
    REMOVING = "removing"
    UNSET = "unset"
    UNKNOWN = "unknown"


class AccessCodeErrorCode(enum.StrEnum):
    """Access code errors, named exactly as in the source documents."""

    FAILED_TO_SET_ON_DEVICE = "failed_to_set_on_device"
    FAILED_TO_REMOVE_FROM_DEVICE = "failed_to_remove_from_device"
    DUPLICATE_CODE_ON_DEVICE = "duplicate_code_on_device"
    DUPLICATE_CODE_ATTEMPT_PREVENTED = "duplicate_code_attempt_prevented"
    NO_SPACE_FOR_ACCESS_CODE_ON_DEVICE = "no_space_for_access_code_on_device"
    CODE_MODIFIED_EXTERNAL_TO_SEAM = "code_modified_external_to_seam"
    # A maker's own names for a refused write (a driver's `CommandRejected.error_code`).
    HUBITAT_DEVICE_PROGRAMMING_DELAY = "hubitat_device_programming_delay"
    HUBITAT_NO_FREE_POSITIONS_AVAILABLE = "hubitat_no_free_positions_available"
    IGLOOHOME_BRIDGE_OFFLINE = "igloohome_bridge_offline"
    IGLOOHOME_BRIDGE_TOO_MANY_PENDING_JOBS = "igloohome_bridge_too_many_pending_jobs"
    SMARTTHINGS_FAILED_TO_SET_ACCESS_CODE = "smartthings_failed_to_set_access_code"
    SMARTTHINGS_FAILED_TO_SET_AFTER_MULTIPLE_RETRIES = \
        "smartthings_failed_to_set_after_multiple_retries"
    SMARTTHINGS_NO_FREE_SLOTS_AVAILABLE = "smartthings_no_free_slots_available"


# The makers' own write errors: like the generic ones, a later successful write clears them.
VENDOR_SET_ERRORS = frozenset({AccessCodeErrorCode.HUBITAT_DEVICE_PROGRAMMING_DELAY,
                               AccessCodeErrorCode.HUBITAT_NO_FREE_POSITIONS_AVAILABLE,
                               AccessCodeErrorCode.IGLOOHOME_BRIDGE_OFFLINE,
                               AccessCodeErrorCode.IGLOOHOME_BRIDGE_TOO_MANY_PENDING_JOBS,
                               AccessCodeErrorCode.SMARTTHINGS_FAILED_TO_SET_ACCESS_CODE,
                               AccessCodeErrorCode.SMARTTHINGS_FAILED_TO_SET_AFTER_MULTIPLE_RETRIES,
                               AccessCodeErrorCode.SMARTTHINGS_NO_FREE_SLOTS_AVAILABLE})


class AccessCodeWarningCode(enum.StrEnum):
    """Access code warnings, named exactly as in the source documents."""

    CODE_MODIFIED_EXTERNAL_TO_SEAM = "code_modified_external_to_seam"
    DELAY_IN_SETTING_ON_DEVICE = "delay_in_setting_on_device"
    DELAY_IN_REMOVING_FROM_DEVICE = "delay_in_removing_from_device"
    THIRD_PARTY_INTEGRATION_DETECTED = "third_party_integration_detected"
    # lockbridge's own, where Seam's documents describe a condition but name no code (docs/api.md).
    CODE_DIFFERS_FROM_REQUESTED = "code_differs_from_requested"
    SCHEDULE_ENFORCED_BY_BRIDGE = "schedule_enforced_by_bridge"
    WILL_NOT_FIT_ON_DEVICE = "will_not_fit_on_device"
    # A maker's own warnings about the code a write set (a driver's `WriteResult.warnings`).
    IGLOO_ALGOPIN_MUST_BE_USED_WITHIN_24_HOURS = "igloo_algopin_must_be_used_within_24_hours"


# The warnings a driver names on a write: each write replaces them with the ones it names.
VENDOR_WRITE_WARNINGS = frozenset({
    AccessCodeWarningCode.IGLOO_ALGOPIN_MUST_BE_USED_WITHIN_24_HOURS})


class DeviceErrorCode(enum.StrEnum):
    """Device errors, named exactly as in the source documents."""

    DEVICE_OFFLINE = "device_offline"
    DEVICE_DISCONNECTED = "device_disconnected"
    HUB_DISCONNECTED = "hub_disconnected"
    ACCOUNT_DISCONNECTED = "account_disconnected"
    DEVICE_REMOVED = "device_removed"
    EMPTY_BACKUP_ACCESS_CODE_POOL = "empty_backup_access_code_pool"
    TTLOCK_LOCK_NOT_PAIRED_TO_GATEWAY = "ttlock_lock_not_paired_to_gateway"


class DeviceWarningCode(enum.StrEnum):
    """Device warnings: Seam's names, plus lockbridge's own where Seam's documents name none."""

    MANY_ACTIVE_BACKUP_CODES = "many_active_backup_codes"
    PARTIAL_BACKUP_ACCESS_CODE_POOL = "partial_backup_access_code_pool"
    UNKNOWN_TIME_ZONE = "unknown_time_zone"
    SYSTEM_CLOCK_UNSYNCHRONIZED = "system_clock_unsynchronized"
    LOCK_WORKER_FAULT = "lock_worker_fault"
    WRITE_ONLY_LOCK = "write_only_lock"


class EventType(enum.StrEnum):
    """Event types, named exactly as in the source documents."""

    ACCESS_CODE_CREATED = "access_code.created"
    ACCESS_CODE_CHANGED = "access_code.changed"
    ACCESS_CODE_SCHEDULED_ON_DEVICE = "access_code.scheduled_on_device"
    ACCESS_CODE_SET_ON_DEVICE = "access_code.set_on_device"
    ACCESS_CODE_REMOVED_FROM_DEVICE = "access_code.removed_from_device"
    ACCESS_CODE_FAILED_TO_SET_ON_DEVICE = "access_code.failed_to_set_on_device"
    ACCESS_CODE_FAILED_TO_REMOVE_FROM_DEVICE = "access_code.failed_to_remove_from_device"
    ACCESS_CODE_DELAY_IN_SETTING_ON_DEVICE = "access_code.delay_in_setting_on_device"
    ACCESS_CODE_DELAY_IN_REMOVING_FROM_DEVICE = "access_code.delay_in_removing_from_device"
    ACCESS_CODE_DELETED = "access_code.deleted"
    ACCESS_CODE_MODIFIED_EXTERNAL_TO_SEAM = "access_code.modified_external_to_seam"
    ACCESS_CODE_DUPLICATE_CODE_ON_DEVICE = "access_code.duplicate_code_on_device"
    ACCESS_CODE_DUPLICATE_CODE_ATTEMPT_PREVENTED = "access_code.duplicate_code_attempt_prevented"
    ACCESS_CODE_NO_SPACE_ON_DEVICE = "access_code.no_space_for_access_code_on_device"
    ACCESS_CODE_BACKUP_PULLED = "access_code.backup_access_code_pulled"
    ACCESS_CODE_UNMANAGED_CREATED = "access_code.unmanaged.created"
    ACCESS_CODE_UNMANAGED_REMOVED = "access_code.unmanaged.removed"
    ACCESS_CODE_UNMANAGED_CONVERTED_TO_MANAGED = "access_code.unmanaged.converted_to_managed"
    ACCESS_CODE_UNMANAGED_FAILED_TO_CONVERT_TO_MANAGED = (
        "access_code.unmanaged.failed_to_convert_to_managed"
    )
    DEVICE_CONNECTED = "device.connected"
    DEVICE_DISCONNECTED = "device.disconnected"
    DEVICE_CONVERTED_TO_UNMANAGED = "device.converted_to_unmanaged"
    DEVICE_UNMANAGED_CONVERTED_TO_MANAGED = "device.unmanaged.converted_to_managed"
    LOCK_UNLOCKED = "lock.unlocked"
    # Reservation automations (bridge/reservations/).
    ACCESS_GRANT_CREATED = "access_grant.created"
    ACCESS_GRANT_DELETED = "access_grant.deleted"
    ACCESS_GRANT_ACCESS_TIMES_CHANGED = "access_grant.access_times_changed"
    ACCESS_METHOD_ISSUED = "access_method.issued"
    ACCESS_METHOD_REISSUED = "access_method.reissued"
    ACCESS_METHOD_DELETED = "access_method.deleted"
    ACCESS_METHOD_FAILED_TO_ISSUE = "access_method.failed_to_issue"


@dataclass(frozen=True, slots=True)
class Issue:
    """One entry of an `errors` or `warnings` list: a code, a message and when it began."""

    code: str
    message: str
    created_at: datetime


@dataclass(frozen=True, slots=True)
class Event:
    """One event as stored in the outbox and shown by `/events/list`."""

    event_id: str
    event_type: EventType
    occurred_at: datetime
    device_id: str | None = None
    access_code_id: str | None = None
    data: dict[str, object] = field(default_factory=dict)
    sequence: int | None = None
