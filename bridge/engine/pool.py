"""A lock's backup access code pool: handing a backup out, refilling the pool, and the device
issues that say how full it is (the rules themselves are pure, in bridge/backup.py)."""

from __future__ import annotations

import logging
import random
from collections.abc import Sequence
from dataclasses import replace
from datetime import datetime
from typing import TYPE_CHECKING

from bridge import backup
from bridge.backup import PoolSettings
from bridge.engine.errors import EngineError, ErrorKind
from bridge.engine.ids import new_id
from bridge.engine.issues import drop_codes, with_issue
from bridge.engine.state import EngineState
from bridge.logs import REDACTOR
from bridge.model import (
    AccessCodeStatus,
    AccessCodeType,
    DeviceErrorCode,
    DeviceWarningCode,
    EventType,
)
from bridge.pins import generate_pin
from bridge.records import CodeRecord, DeviceRecord

if TYPE_CHECKING:
    # requests.py imports this module; the protocol is only a type here.
    from bridge.engine.requests import Receipt

_LOG = logging.getLogger("bridge.engine")

# The device issues a pool raises; all of them go when the pool is switched off with its lock.
POOL_ISSUES = frozenset({DeviceErrorCode.EMPTY_BACKUP_ACCESS_CODE_POOL,
                         DeviceWarningCode.PARTIAL_BACKUP_ACCESS_CODE_POOL,
                         DeviceWarningCode.MANY_ACTIVE_BACKUP_CODES})


def pool_switched_on(device: DeviceRecord, field: str) -> DeviceRecord | None:
    """The device with its backup pool on (once on, a pool stays on: docs/seam-model.md), None
    if it already was; EngineError naming `field` where the lock cannot hold a pool."""
    if device.backup_pool_enabled:
        return None
    if not backup.supports_pool(device):
        raise EngineError(ErrorKind.INVALID_INPUT, "This device does not support a backup "
                          "access code pool (properties.supports_backup_access_code_pool is "
                          "false)", field)
    return replace(device, backup_pool_enabled=True)


class BackupPool:
    """The backup pools of every lock."""

    def __init__(self, state: EngineState, rng: random.Random, settings: PoolSettings,
                 overrides: dict[str, PoolSettings]) -> None:
        self._state = state
        self._rng = rng
        self._defaults = settings
        self._overrides = overrides

    def settings(self, device: DeviceRecord) -> PoolSettings:
        """The pool settings of one device (its override, or the bridge's)."""
        return self._overrides.get(device.external_id, self._defaults)

    def backup_available(self, code: CodeRecord) -> bool | None:
        """`is_backup_access_code_available` for a code; None where it does not apply."""
        state = self._state
        device = state.devices.get(code.device_id)
        if (device is None or not device.backup_pool_enabled or code.is_backup
                or code.type is not AccessCodeType.TIME_BOUND or not code.is_managed):
            return None
        if code.pulled_backup_access_code_id is not None:
            return True
        return bool(backup.available(state.codes_of(code.device_id)))

    async def pull(self, access_code_id: str, automatic: bool = False,
                   receipt: Receipt | None = None,
                   ) -> tuple[CodeRecord, CodeRecord]:
        """Hand out a backup for a time-bound code: (backup, original). Repeats return the same."""
        state = self._state
        original = state.code(access_code_id)
        async with state.lock_for(original.device_id):
            original = state.code(access_code_id)
            device = state.device(original.device_id)
            _check_pullable(original, device)
            already = original.pulled_backup_access_code_id
            if already is not None and already in state.codes:
                return state.codes[already], original
            ready = backup.available(state.codes_of(device.device_id))
            if not ready:
                raise EngineError(ErrorKind.NO_BACKUP_ACCESS_CODE_AVAILABLE,
                                  "The backup access code pool is empty; it refills when the "
                                  "lock can take new codes")
            now = state.clock.now()
            chosen = ready[0]
            pulled = replace(chosen, backup_pulled_for=access_code_id, backup_pulled_at=now,
                             type=AccessCodeType.TIME_BOUND, starts_at=now,
                             ends_at=original.ends_at, revision=chosen.revision + 1)
            pulled = state.refresh(pulled, device, now)
            linked = replace(original, pulled_backup_access_code_id=chosen.access_code_id)
            event = state.event(EventType.ACCESS_CODE_BACKUP_PULLED, device.device_id,
                                access_code_id, {
                                    "original_access_code_id": access_code_id,
                                    "backup_access_code_id": chosen.access_code_id,
                                    "backup_code": chosen.code,
                                    "automatic": automatic,
                                })
            await state.commit(codes=[pulled, linked], events=[event], receipt=receipt)
            _LOG.info("lock %s: backup %s pulled for code %s%s", device.device_id,
                      chosen.access_code_id, access_code_id, " automatically" if automatic
                      else "")
        state.wake(device.device_id)
        return state.codes[chosen.access_code_id], state.codes[access_code_id]

    def refill(self, device: DeviceRecord, codes: Sequence[CodeRecord],
               now: datetime) -> list[CodeRecord]:
        """New backup records to bring the pool to its target; the worker puts them on."""
        count = backup.missing(device, codes, self.settings(device))
        taken = [c.code for c in codes if c.code and not c.deleted]
        made: list[CodeRecord] = []
        for _ in range(count):
            code_id = new_id()
            try:
                pin = generate_pin(device.info.constraints, taken, self._rng)
            except ValueError:
                break
            taken.append(pin)
            REDACTOR.remember(pin)
            made.append(CodeRecord(
                access_code_id=code_id, device_id=device.device_id, created_at=now,
                type=AccessCodeType.ONGOING, name=f"Backup {code_id}", code=pin,
                is_backup=True, pending_since=now, status=AccessCodeStatus.SETTING))
        return made

    def issues(self, device: DeviceRecord, codes: Sequence[CodeRecord],
               now: datetime) -> DeviceRecord:
        """The device with the pool's error and warnings brought up to date."""
        if not device.backup_pool_enabled:
            return device
        settings = self.settings(device)
        current = list({c.access_code_id: c for c in codes}.values())
        ready = len(backup.available(current))
        target = backup.pool_target(device, current, settings)
        errors, warnings = device.errors, device.warnings
        empty = ready == 0
        partial = 0 < ready < target and backup.refill_failing(current)
        many = backup.pulled_active(current, now) >= settings.many_active_threshold
        for active, code, message, is_error in (
            (empty, DeviceErrorCode.EMPTY_BACKUP_ACCESS_CODE_POOL,
             "The backup access code pool is empty", True),
            (partial, DeviceWarningCode.PARTIAL_BACKUP_ACCESS_CODE_POOL,
             "lockbridge is having trouble refilling the backup access code pool", False),
            (many, DeviceWarningCode.MANY_ACTIVE_BACKUP_CODES,
             "Multiple backup codes have been pulled from the device: codes may be failing to "
             "program; check that the lock is online and has free slots", False),
        ):
            target_list = errors if is_error else warnings
            has = any(i.code == code for i in target_list)
            if active and not has:
                target_list = with_issue(target_list, code, message, now)
            elif not active and has:
                target_list = drop_codes(target_list, {code})
            if is_error:
                errors = target_list
            else:
                warnings = target_list
        if errors is device.errors and warnings is device.warnings:
            return device
        return replace(device, errors=errors, warnings=warnings)


def _check_pullable(original: CodeRecord, device: DeviceRecord) -> None:
    """EngineError unless a backup can be pulled for `original`."""
    if original.is_backup:
        raise EngineError(ErrorKind.INVALID_INPUT, "This is a backup code itself", "access_code_id")
    if original.type is not AccessCodeType.TIME_BOUND:
        raise EngineError(ErrorKind.INVALID_INPUT, "Backup codes can only be pulled for "
                          "time_bound access codes", "access_code_id")
    if not device.backup_pool_enabled:
        raise EngineError(ErrorKind.BACKUP_ACCESS_CODE_POOL_NOT_ENABLED,
                          "The backup access code pool is not enabled on this device: "
                          "create a code with use_backup_access_code_pool first")
