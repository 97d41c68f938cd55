"""Backup access code pools: pure decisions about support, size, availability and warnings."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

from bridge.driver import Addressing
from bridge.instants import shifted
from bridge.model import (
    AccessCodeErrorCode,
    AccessCodeStatus,
    AccessCodeType,
    AccessCodeWarningCode,
)
from bridge.planner import Policy, goes_on_at
from bridge.records import CodeRecord, DeviceRecord

# Every lock with access codes supports the pool, except these brands (docs/seam-model.md).
UNSUPPORTED_MANUFACTURERS = frozenset({"lockly", "salto"})
MIN_SLOTS = 10


@dataclass(frozen=True, slots=True)
class PoolSettings:
    """How big pools are and when lockbridge pulls a backup by itself."""

    size: int = 5
    reserve_slots: int = 2
    many_active_threshold: int = 2
    auto_pull: bool = False
    auto_pull_before: timedelta = timedelta(hours=36)


def supports_pool(device: DeviceRecord) -> bool:
    """`properties.supports_backup_access_code_pool`."""
    caps = device.info.capabilities
    if caps.algorithmic_pins or device.info.manufacturer.lower() in UNSUPPORTED_MANUFACTURERS:
        return False
    return caps.addressing is Addressing.ID or caps.slot_count - len(caps.reserved_slots) \
        >= MIN_SLOTS


def in_pool(code: CodeRecord) -> bool:
    """A backup waiting in the pool (not pulled, not being deleted)."""
    return code.is_backup and code.backup_pulled_for is None and not code.deleted


def available(codes: Sequence[CodeRecord]) -> list[CodeRecord]:
    """Backups that can be handed out now, oldest first: on the lock and confirmed."""
    ready = [c for c in codes if in_pool(c) and c.status is AccessCodeStatus.SET]
    return sorted(ready, key=lambda c: (c.created_at, c.access_code_id))


def pool_target(device: DeviceRecord, codes: Sequence[CodeRecord],
                settings: PoolSettings) -> int:
    """How many backups the pool should hold: the size, never more than free slots allow."""
    if not device.backup_pool_enabled or not supports_pool(device):
        return 0
    caps = device.info.capabilities
    if caps.addressing is Addressing.ID:
        return settings.size
    # Codes that hold a slot now or are headed for one; expired and deleted ones do not count.
    others = sum(1 for c in codes if not in_pool(c) and (
        c.on_lock or not c.is_managed or c.status is AccessCodeStatus.SETTING))
    free_for_pool = caps.slot_count - len(caps.reserved_slots) - others - settings.reserve_slots
    return max(0, min(settings.size, free_for_pool))


def missing(device: DeviceRecord, codes: Sequence[CodeRecord], settings: PoolSettings) -> int:
    """How many backups to create now to bring the pool to its target."""
    return max(0, pool_target(device, codes, settings) - sum(1 for c in codes if in_pool(c)))


def pulled_active(codes: Sequence[CodeRecord], now: datetime) -> int:
    """Backups handed out whose time has not ended."""
    return sum(1 for c in codes if c.is_backup and c.backup_pulled_for is not None
               and not c.deleted and (c.ends_at is None or c.ends_at > now))


def refill_failing(codes: Sequence[CodeRecord]) -> bool:
    """True when a backup meant for the pool could not be put on the lock."""
    return any(in_pool(c) and (c.gave_up or c.has_error(AccessCodeErrorCode
                                                        .FAILED_TO_SET_ON_DEVICE)
                               or c.has_error(AccessCodeErrorCode
                                              .NO_SPACE_FOR_ACCESS_CODE_ON_DEVICE))
               for c in codes)


def due_for_auto_pull(code: CodeRecord, device: DeviceRecord, now: datetime, policy: Policy,
                      settings: PoolSettings) -> bool:
    """A guest code that failed, or should be on the lock by now and still is not."""
    if (code.type is not AccessCodeType.TIME_BOUND or code.is_backup or code.deleted
            or not code.use_backup_access_code_pool or code.pulled_backup_access_code_id
            or code.starts_at is None or code.ends_at is None or now >= code.ends_at):
        return False
    if code.has_error(AccessCodeErrorCode.FAILED_TO_SET_ON_DEVICE) and code.gave_up:
        return True
    due = goes_on_at(code, device, policy)
    # "Still not set" means it was due and has been late long enough to carry a delay warning.
    late = code.has_warning(AccessCodeWarningCode.DELAY_IN_SETTING_ON_DEVICE)
    return (due is not None and due <= now and late and not code.verified
            and now >= shifted(code.starts_at, -settings.auto_pull_before))
