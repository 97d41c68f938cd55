"""What callers ask of the engine: create, update and delete managed codes, convert and delete
unmanaged ones, take a lock out of lockbridge and bring it back, switch a backup pool on,
generate a PIN. Each request is checked, committed with its event, and the lock's worker is
woken to bring the lock in line in the background."""

from __future__ import annotations

import asyncio
import logging
import random
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, replace
from datetime import datetime
from typing import Any, Protocol

from bridge.driver import DriverError
from bridge.engine.errors import EngineError, ErrorKind
from bridge.engine.gateway import DriverGateway
from bridge.engine.ids import new_id
from bridge.engine.issues import RETRYABLE_ERRORS, drop_codes, with_issue
from bridge.engine.outcomes import without_first_sent
from bridge.engine.pinchoice import validate_and_choose_pin
from bridge.engine.pool import POOL_ISSUES, pool_switched_on
from bridge.engine.state import EngineState
from bridge.logs import REDACTOR
from bridge.model import AccessCodeErrorCode, AccessCodeStatus, AccessCodeType, EventType
from bridge.pins import generate_pin
from bridge.planner import holds_wanted
from bridge.records import CodeRecord, DeviceRecord
from bridge.store import Tx

_LOG = logging.getLogger("bridge.engine")

# Fields of a CodeRequest an update copies onto the code when given.
_UPDATABLE = ("name", "starts_at", "ends_at", "preferred_code_length",
              "allow_external_modification", "common_code_key", "use_backup_access_code_pool")


class Receipt(Protocol):
    """What a caller keeps with its change, in the change's own transaction (an API action
    attempt, an upstream command's applied marker, an automation's rows): the engine asks it
    to write itself when it commits the change, so a caller never holds a store transaction
    and a crash keeps both or neither."""

    def record(self, tx: Tx) -> None:
        """Write the receipt's rows into the change's transaction."""


@dataclass(frozen=True, slots=True)
class CodeRequest:
    """What a caller asks for when creating or updating a managed code."""

    name: str | None = None
    code: str | None = None
    preferred_code: str | None = None
    type: AccessCodeType | None = None
    starts_at: datetime | None = None
    ends_at: datetime | None = None
    preferred_code_length: int | None = None
    allow_external_modification: bool | None = None
    common_code_key: str | None = None
    use_backup_access_code_pool: bool | None = None


class Requests:
    """Carries out callers' requests against the engine's state."""

    def __init__(self, state: EngineState, gateway: DriverGateway, rng: random.Random) -> None:
        self._state = state
        self._gateway = gateway
        self._rng = rng

    def _choose_pin(self, device: DeviceRecord, code: CodeRecord, request: CodeRequest,
                    now: datetime) -> CodeRecord:
        others = [c for c in self._state.codes_of(device.device_id)
                  if c.access_code_id != code.access_code_id]
        return validate_and_choose_pin(device, code, request, others, now, self._rng)

    # -- managed codes ------------------------------------------------------------------

    async def create_code(self, device_id: str, request: CodeRequest,
                          access_code_id: str | None = None,
                          receipt: Receipt | None = None) -> CodeRecord:
        """Create a managed code; it goes onto the lock in the background."""
        state = self._state
        async with state.lock_for(device_id):
            device = state.device(device_id)
            now = state.clock.now()
            code = CodeRecord(
                access_code_id=access_code_id or new_id(),
                device_id=device_id,
                created_at=now,
                type=request.type or (AccessCodeType.TIME_BOUND if request.starts_at
                                      else AccessCodeType.ONGOING),
                name=request.name,
                starts_at=request.starts_at,
                ends_at=request.ends_at,
                preferred_code_length=request.preferred_code_length,
                allow_external_modification=bool(request.allow_external_modification),
                common_code_key=request.common_code_key,
                use_backup_access_code_pool=bool(request.use_backup_access_code_pool),
                pending_since=now,
            )
            code = self._choose_pin(device, code, request, now)
            code = state.refresh(code, device, now)
            events = [state.event(EventType.ACCESS_CODE_CREATED, device_id,
                                  code.access_code_id, {})]
            devices: list[DeviceRecord] = []
            if request.use_backup_access_code_pool:
                enabled = pool_switched_on(device, "use_backup_access_code_pool")
                if enabled is not None:
                    devices.append(enabled)
            await state.commit(codes=[code], events=events, receipt=receipt, devices=devices)
        state.wake(device_id)
        return state.codes[code.access_code_id]

    async def update_code(self, access_code_id: str, request: CodeRequest,
                          receipt: Receipt | None = None) -> CodeRecord:
        """Change name, PIN, times or type; the lock is reprogrammed in the background."""
        state = self._state
        current = state.code(access_code_id)
        async with state.lock_for(current.device_id):
            current = state.code(access_code_id)
            if current.deleted:
                raise EngineError(ErrorKind.ACCESS_CODE_NOT_FOUND, "Access code is being deleted")
            device = state.device(current.device_id)
            now = state.clock.now()
            changes = _changes(request)
            updated = replace(current, **changes, revision=current.revision + 1, gave_up=False,
                              attempts=0, next_attempt_at=None,
                              errors=drop_codes(current.errors, RETRYABLE_ERRORS),
                              sync=replace(current.sync, external_hold=False,
                                           refused_for_good=None))
            pin_request = request.code is not None or request.preferred_code is not None
            if pin_request or changes.get("type") or "starts_at" in changes \
                    or "ends_at" in changes:
                try:
                    updated = self._choose_pin(
                        device, updated, request if pin_request else
                        CodeRequest(code=current.code if not device.info.capabilities
                                    .algorithmic_pins else None), now)
                except EngineError as exc:
                    if exc.kind is ErrorKind.DUPLICATE_ACCESS_CODE:
                        await self._prevented_duplicate(current, now)
                    raise
            updated = _pending_after_update(current, updated, device, "name" in changes, now)
            updated = state.refresh(updated, device, now)
            await state.commit(codes=[updated, *self._backup_follows(updated, device, now)],
                               events=[state.event(EventType.ACCESS_CODE_CHANGED,
                                                   current.device_id, access_code_id, {})],
                               receipt=receipt)
        state.wake(current.device_id)
        return state.codes[access_code_id]

    def _backup_follows(self, original: CodeRecord, device: DeviceRecord,
                        now: datetime) -> list[CodeRecord]:
        """The backup pulled for `original`, its end moved to the original's (or nothing)."""
        backup_id = original.pulled_backup_access_code_id
        pulled = self._state.codes.get(backup_id) if backup_id is not None else None
        if pulled is None or pulled.deleted or pulled.ends_at == original.ends_at \
                or original.ends_at is None:
            return []
        return [self._state.refresh(replace(pulled, ends_at=original.ends_at,
                                            revision=pulled.revision + 1), device, now)]

    async def _prevented_duplicate(self, code: CodeRecord, now: datetime) -> None:
        state = self._state
        message = ("An attempt to modify this access code was prevented: the new PIN would "
                   "duplicate another code on the lock")
        error = AccessCodeErrorCode.DUPLICATE_CODE_ATTEMPT_PREVENTED
        events = [] if code.has_error(error) else [state.event(
            EventType.ACCESS_CODE_DUPLICATE_CODE_ATTEMPT_PREVENTED, code.device_id,
            code.access_code_id, {"error_code": error.value, "message": message})]
        await state.commit(codes=[replace(code, errors=with_issue(code.errors, error, message,
                                                                  now))], events=events)

    async def delete_code(self, access_code_id: str,
                          receipt: Receipt | None = None) -> None:
        """Take a code off its lock and forget it."""
        state = self._state
        current = state.code(access_code_id)
        async with state.lock_for(current.device_id):
            current = state.code(access_code_id)
            device = state.device(current.device_id)
            if current.is_backup and not device.online:
                raise EngineError(
                    ErrorKind.DEVICE_DISCONNECTED,
                    "Backup codes can only be deleted while their lock is connected; the lock "
                    f"is {device.availability.value}. Reconnect the lock, then delete the "
                    "backup code again")
            now = state.clock.now()
            events = [state.event(EventType.ACCESS_CODE_DELETED, current.device_id,
                                  access_code_id, {})]
            # A backup pulled for this code ends with it: it follows the stay it covers.
            followers = self._backup_follows(replace(current, ends_at=now), device, now)
            if current.on_lock:
                updated = state.refresh(_leaving(current, now), device, now)
                await state.commit(codes=[updated, *followers], events=events,
                                   receipt=receipt)
            else:
                await state.commit(codes=followers, drop=[access_code_id], events=events,
                                   receipt=receipt)
        state.wake(current.device_id)

    async def restore_codes(self, codes: Sequence[CodeRecord],
                            receipt: Receipt) -> None:
        """Commit codes restored from the upstream (awaiting adoption) with `receipt`."""
        for code in codes:
            REDACTOR.remember(code.code)
        await self._state.commit(codes=list(codes), receipt=receipt)
        for device_id in {c.device_id for c in codes}:
            self._state.wake(device_id)

    # -- unmanaged codes ------------------------------------------------------------------

    async def convert_unmanaged(self, access_code_id: str, request: CodeRequest,
                                receipt: Receipt | None = None) -> CodeRecord:
        """Make an unmanaged code managed: the bridge keeps it on the lock from now on."""
        state = self._state
        current = state.code(access_code_id, managed=False)
        async with state.lock_for(current.device_id):
            current = state.code(access_code_id, managed=False)
            if current.code is None:
                await state.commit(events=[state.event(
                    EventType.ACCESS_CODE_UNMANAGED_FAILED_TO_CONVERT_TO_MANAGED,
                    current.device_id, access_code_id,
                    {"reason": "the lock does not reveal this code's PIN"})])
                raise EngineError(ErrorKind.CANNOT_CONVERT, "The lock hides this code's PIN, so it "
                                  "cannot be managed; delete it and create a managed code")
            converted = replace(
                current, is_managed=True, on_lock_pin=current.code, verified=True,
                ever_set=True, name=request.name or current.name,
                allow_external_modification=bool(request.allow_external_modification),
                status=AccessCodeStatus.SET, pending_since=None,
            )
            await state.commit(codes=[converted], events=[state.event(
                EventType.ACCESS_CODE_UNMANAGED_CONVERTED_TO_MANAGED, current.device_id,
                access_code_id, {})], receipt=receipt)
        state.wake(current.device_id)
        return state.codes[access_code_id]

    async def delete_unmanaged(self, access_code_id: str,
                               receipt: Receipt | None = None) -> None:
        """Remove an unmanaged code from its lock."""
        state = self._state
        current = state.code(access_code_id, managed=False)
        device = state.device(current.device_id)
        if not device.info.capabilities.can_delete_unmanaged or current.slot is None:
            raise EngineError(ErrorKind.NOT_SUPPORTED,
                              "This lock's driver cannot delete unmanaged codes")
        driver = self._gateway.driver_of(device)
        async with state.lock_for(current.device_id):
            try:
                async with asyncio.timeout(self._gateway.command_timeout(device)):
                    await driver.clear_code(device.external_id, current.slot)
            except (DriverError, TimeoutError) as exc:
                raise EngineError(ErrorKind.DEVICE_ERROR,
                                  f"The lock did not remove the code: {exc}") from exc
            await state.commit(drop=[access_code_id], events=[state.event(
                EventType.ACCESS_CODE_UNMANAGED_REMOVED, current.device_id, access_code_id, {})],
                receipt=receipt)

    # -- devices --------------------------------------------------------------------------

    async def unmanage_device(self, device_id: str,
                              receipt: Receipt | None = None) -> DeviceRecord:
        """Take a lock out of lockbridge: its backup codes come off and its pool is off.

        Refused while lockbridge still manages other codes on it (nobody would take a guest's
        code off afterwards) and, when backups are on it, while it is not connected (backup
        codes are only deleted from a connected lock: docs/seam-model.md)."""
        state = self._state
        async with state.lock_for(device_id):
            device = state.device(device_id)
            codes = state.codes_of(device_id)
            now = state.clock.now()
            backups = [c for c in codes if c.is_backup and not c.deleted]
            _check_unmanageable(device, codes, backups, now)
            events = [state.event(EventType.ACCESS_CODE_DELETED, device_id, c.access_code_id,
                                  {"is_backup": True}) for c in backups]
            events.append(state.event(EventType.DEVICE_CONVERTED_TO_UNMANAGED, device_id,
                                      None, {}))
            updated = replace(device, is_managed=False, backup_pool_enabled=False,
                              errors=drop_codes(device.errors, POOL_ISSUES),
                              warnings=drop_codes(device.warnings, POOL_ISSUES))
            leaving = [state.refresh(_leaving(c, now), updated, now)
                       for c in backups if c.on_lock]
            await state.commit(devices=[updated], codes=leaving, events=events,
                               drop=[c.access_code_id for c in backups if not c.on_lock],
                               receipt=receipt)
        _LOG.info("lock %s is no longer managed; %d backup code(s) come off it", device_id,
                  len(leaving))
        state.wake(device_id)
        return state.devices[device_id]

    async def manage_device(self, device_id: str,
                            receipt: Receipt | None = None) -> DeviceRecord:
        """Bring an unmanaged lock back; its backup pool starts off, as on a new lock."""
        state = self._state
        async with state.lock_for(device_id):
            device = state.device(device_id, managed=False)
            updated = replace(device, is_managed=True)
            await state.commit(devices=[updated], events=[state.event(
                EventType.DEVICE_UNMANAGED_CONVERTED_TO_MANAGED, device_id, None, {})],
                receipt=receipt)
        self.reconcile(device_id, full=True)
        return state.devices[device_id]

    async def enable_backup_pool(self, device_id: str,
                                 receipt: Receipt | None = None) -> DeviceRecord:
        """Switch a lock's backup pool on (for good, as a code asking for it would), with the
        caller's receipt in the same transaction (kept too when it already was on)."""
        state = self._state
        async with state.lock_for(device_id):
            enabled = pool_switched_on(state.device(device_id), "backup_access_code_pool_enabled")
            await state.commit(devices=[enabled] if enabled is not None else [],
                               receipt=receipt)
        state.wake(device_id)
        return state.devices[device_id]

    def reconcile(self, device_id: str, slots: Iterable[int] = (), full: bool = False) -> None:
        """Ask a lock's worker to re-read some slots, or the whole lock, and fix what differs."""
        worker = self._state.workers.get(device_id)
        if worker is None:
            raise EngineError(ErrorKind.DEVICE_NOT_FOUND, f"Device {device_id} not found",
                              "device_id")
        worker.pending_reads.update(slots)
        worker.full_read = worker.full_read or full
        worker.wake.set()

    def generate_code(self, device_id: str, length: int | None = None) -> str:
        """A PIN that fits the lock's rules and clashes with nothing on it."""
        device = self._state.device(device_id)
        taken = [c.code for c in self._state.codes_of(device_id) if c.code and not c.deleted]
        return generate_pin(device.info.constraints, taken, self._rng, length)


def _changes(request: CodeRequest) -> dict[str, Any]:
    """The fields an update sets on a code; type ongoing drops its times. (An ongoing code
    given times without a type becomes time-bound in the application layer,
    bridge/application.py, which every front calls.)"""
    changes: dict[str, Any] = {}
    for name in _UPDATABLE:
        value = getattr(request, name)
        if value is not None:
            changes[name] = value
    if request.type is not None:
        changes["type"] = request.type
        if request.type is AccessCodeType.ONGOING:
            changes["starts_at"] = None
            changes["ends_at"] = None
    return changes


def _pending_after_update(current: CodeRecord, updated: CodeRecord, device: DeviceRecord,
                          renamed: bool, now: datetime) -> CodeRecord:
    """The updated code, `setting` again from now when what the lock stores must change."""
    updated = replace(updated, errors=drop_codes(
        updated.errors, {AccessCodeErrorCode.DUPLICATE_CODE_ATTEMPT_PREVENTED}))
    if updated.code != current.code:
        # An earlier create was for the old PIN: it proves nothing about the new one.
        updated = without_first_sent(updated)
    if holds_wanted(current, device) and not holds_wanted(updated, device):
        # What the lock stores (PIN, window, name) must change: setting until it has.
        updated = replace(updated, pending_since=now)
    elif updated.code != current.code or renamed:
        updated = replace(updated, pending_since=now)
    return updated


def _leaving(code: CodeRecord, now: datetime) -> CodeRecord:
    """A code on its way off the lock: deleted, retried from scratch, pending from now."""
    return replace(code, deleted=True, gave_up=False, attempts=0, next_attempt_at=None,
                   pending_since=now, revision=code.revision + 1)


def _check_unmanageable(device: DeviceRecord, codes: list[CodeRecord],
                        backups: list[CodeRecord], now: datetime) -> None:
    """EngineError while the lock cannot leave lockbridge."""
    # Codes whose window is over and that are off the lock need nobody any more.
    guests = [c for c in codes if c.is_managed and not c.is_backup and not c.deleted
              and (c.on_lock or c.ends_at is None or c.ends_at > now)]
    if guests:
        raise EngineError(
            ErrorKind.DEVICE_HAS_ACCESS_CODES,
            f"lockbridge still manages {len(guests)} access code(s) on this device; "
            "delete them first, so that no code stays on the lock with nobody to take "
            "it off", "device_id")
    if any(c.on_lock for c in backups) and not device.online:
        raise EngineError(
            ErrorKind.DEVICE_DISCONNECTED,
            "The lock's backup codes must come off when it leaves lockbridge, and "
            f"backup codes can only be deleted while the lock is connected; it is "
            f"{device.availability.value}. Reconnect the lock, then remove it again")
