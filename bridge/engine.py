"""The engine: applies the planner's decisions to locks through drivers, one worker per lock.

Every state change and the events it causes are committed in one store transaction before the
in-memory view changes; a command's intent is recorded before it is sent.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import time
import uuid
from collections.abc import Awaitable, Callable, Iterable, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from typing import Any

from bridge import backup
from bridge.backup import PoolSettings
from bridge.clock import Clock
from bridge.driver import (
    Addressing,
    Availability,
    CodeWrite,
    CommandRejected,
    DeviceInfo,
    DriverError,
    DriverEvent,
    DriverEventKind,
    FixConfig,
    LockDriver,
    Reauthenticate,
    RejectReason,
    RetryLater,
    SlotRead,
    SlotState,
)
from bridge.logs import REDACTOR
from bridge.model import (
    VENDOR_SET_ERRORS,
    AccessCodeErrorCode,
    AccessCodeStatus,
    AccessCodeType,
    AccessCodeWarningCode,
    DeviceErrorCode,
    DeviceWarningCode,
    Event,
    EventType,
    Issue,
)
from bridge.pins import generate_pin
from bridge.planner import (
    NOT_APPLIED,
    Command,
    CommandKind,
    Policy,
    ReadVerdict,
    backoff_delay,
    choose_slot,
    foresee_problem,
    forgettable,
    held_after_read,
    holds_wanted,
    judge_read,
    local_window,
    next_command,
    next_wakeup,
    outcome_known,
    outcome_unknown,
    permanent_problem,
    pin_conflict,
    pin_on_lock_conflict,
    should_be_on_lock,
    uses_native_schedule,
    wanted_name,
    with_status,
)
from bridge.records import CodeRecord, DeviceRecord, Held
from bridge.store import Intent, Store, StoreUnavailable, Tx
from bridge.zones import lock_zone

_LOG = logging.getLogger(__name__)
# How long a lock's worker waits before retrying a step the store could not record.
STORE_RETRY_S = 5.0
# CodeRecord.extra key of a code restored from the upstream (bridge/upstreamrestore.py).
_AWAITING_ADOPTION = "awaiting_adoption"
_DEVICE_NAMESPACE = uuid.UUID("6f1c3c52-7d4e-4c4b-9a53-2f0f8f6b1c11")

_AVAILABILITY_ERRORS = {
    Availability.OFFLINE: (DeviceErrorCode.DEVICE_OFFLINE, "Device is offline"),
    Availability.DISCONNECTED: (
        DeviceErrorCode.DEVICE_DISCONNECTED,
        "Device is disconnected: lockbridge cannot reach the lock's network (broker or server)",
    ),
    Availability.HUB_DISCONNECTED: (DeviceErrorCode.HUB_DISCONNECTED, "Hub is disconnected"),
    Availability.ACCOUNT_DISCONNECTED: (
        DeviceErrorCode.ACCOUNT_DISCONNECTED,
        "Account is disconnected: re-authenticate the lock's account",
    ),
    Availability.REMOVED: (DeviceErrorCode.DEVICE_REMOVED, "Device has been removed"),
}


class EngineError(Exception):
    """A request the engine refuses; `kind` is the API error type."""

    def __init__(self, kind: str, message: str, field_name: str | None = None) -> None:
        super().__init__(message)
        self.kind = kind
        self.field_name = field_name


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


@dataclass(slots=True)
class _Worker:
    device_id: str
    wake: asyncio.Event = field(default_factory=asyncio.Event)
    pending_reads: set[int] = field(default_factory=set)
    full_read: bool = True
    probe_attempts: int = 0
    next_probe_at: float = 0.0
    last_command_at: float | None = None
    intents: dict[int, Intent] = field(default_factory=dict)
    # Reads that fail while the lock still reports itself online (a marginal mesh, a lock that
    # cannot answer reads) back off here instead of being retried at every step.
    read_failures: int = 0
    reads_resume_at: float = 0.0
    # Reads in a row that found a change still on its way to the lock (see _judge_managed).
    pending_polls: int = 0
    busy: bool = False
    waiting: bool = False
    # Unexpected exceptions in a row on this lock (see Engine._run_worker), and when the last was.
    faults: int = 0
    last_fault_at: float = 0.0
    # Slot reads that showed something (a PIN, or empty) and that showed nothing at all: a lock
    # whose every read is unreadable cannot be read back (see Engine._note_readability).
    readable_reads: int = 0
    unreadable_reads: int = 0


EventListener = Callable[[list[Event]], Awaitable[None] | None]


class Engine:
    """Keeps every lock equal to what should be on it."""

    def __init__(
        self,
        store: Store,
        clock: Clock,
        policy: Policy,
        drivers: dict[str, LockDriver],
        *,
        rng: random.Random | None = None,
        device_overrides: dict[str, dict[str, Any]] | None = None,
        default_time_zone: Callable[[str, str], str | None] | None = None,
        clock_synchronized: Callable[[], bool] = lambda: True,
        command_timeout_s: float = 30.0,
        default_spacing_s: float = 2.0,
        reconcile_interval_s: float = 3600.0,
        concurrency_per_driver: int = 4,
        watch_clock: bool = False,
        pool: PoolSettings | None = None,
        pool_overrides: dict[str, PoolSettings] | None = None,
    ) -> None:
        self.store = store
        self.clock = clock
        self.policy = policy
        self.drivers = drivers
        self._rng = rng or random.Random()
        self._overrides = device_overrides or {}
        self._zone_for = default_time_zone or (lambda driver, external_id: None)
        self._clock_synchronized = clock_synchronized
        self._timeout = command_timeout_s
        self._default_spacing = default_spacing_s
        self._reconcile_interval = reconcile_interval_s
        self.devices: dict[str, DeviceRecord] = {}
        self.codes: dict[str, CodeRecord] = {}
        # device_id -> its codes, kept in step with `codes` so per-lock work is not O(all codes).
        self._by_device: dict[str, dict[str, CodeRecord]] = {}
        self._by_external: dict[tuple[str, str], str] = {}
        # Told (driver name, seconds, succeeded) after each driver call; metrics use it.
        self.command_observer: Callable[[str, float, bool], None] | None = None
        self._workers: dict[str, _Worker] = {}
        self._locks: dict[str, asyncio.Lock] = {}
        self._listeners: list[EventListener] = []
        self._group: asyncio.TaskGroup | None = None
        self._running: set[str] = set()
        self._clock_was_synced = True
        self._watch_clock = watch_clock
        self.pool = pool or PoolSettings()
        self._pool_overrides = pool_overrides or {}
        # A hub or cloud account takes only so many commands at once, whatever the lock count.
        self._budgets = {name: asyncio.Semaphore(concurrency_per_driver) for name in drivers}
        # device_id -> unexpected exceptions seen on that lock since start (for /metrics).
        self.fault_counts: dict[str, int] = {}

    # -- lifecycle ----------------------------------------------------------------------

    async def load(self) -> None:
        """Load the store into memory and register every driver's locks."""
        devices, codes, intents = await self.store.read(
            lambda r: (r.devices(), r.codes(), r.intents())
        )
        self.devices = {d.device_id: d for d in devices}
        self.codes = {c.access_code_id: c for c in codes}
        self._by_device = {}
        for code in codes:
            self._by_device.setdefault(code.device_id, {})[code.access_code_id] = code
        for code in codes:
            REDACTOR.remember(code.code)
            REDACTOR.remember(code.on_lock_pin)
        for device in devices:
            self._by_external[(device.driver, device.external_id)] = device.device_id
        for name, driver in self.drivers.items():
            for info in driver.devices():
                await self._register(name, info, self._reported(driver, info.external_id))
        for device in devices:
            if device.device_id not in self._workers and not device.removed:
                # In the store but no driver reports it any more.
                await self._set_availability(device.device_id, Availability.REMOVED)
        unsure: list[CodeRecord] = []
        for intent in intents:
            worker = self._workers.get(intent.device_id)
            if worker is not None:
                # Sent or about to be sent when the process stopped: read the slot back before
                # deciding anything, so the command is neither lost nor applied twice.
                worker.intents[intent.slot] = intent
                worker.pending_reads.add(intent.slot)
                unsure_code = self.codes.get(intent.access_code_id or "")
                if intent.op == "write" and unsure_code is not None:
                    # Until the slot is read, nobody knows whether that write landed.
                    unsure.append(self._refresh(outcome_unknown(unsure_code),
                                                self.devices[intent.device_id],
                                                self.clock.now()))
        if unsure:
            await self._commit(codes=unsure)

    async def run(self) -> None:
        """Run one worker per lock until cancelled."""
        async with asyncio.TaskGroup() as group:
            self._group = group
            for device_id in list(self._workers):
                self._start_worker(device_id)
            if self._watch_clock:
                group.create_task(self._clock_watch(), name="clock-watch")
            # Stay open until cancelled, even with no lock yet: a driver may find its first
            # lock later (a Zigbee lock paired, a lock added to a cloud account).
            await asyncio.Event().wait()

    def _start_worker(self, device_id: str) -> None:
        if self._group is None or device_id in self._running:
            return
        self._running.add(device_id)
        self._group.create_task(self._run_worker(device_id), name=f"lock:{device_id}")

    async def _discover(self, driver_name: str) -> None:
        """A driver found locks after start (a lock added to an account or a network)."""
        driver = self.drivers.get(driver_name)
        if driver is None:
            return
        for info in driver.devices():
            known = self._by_external.get((driver_name, info.external_id))
            if known in self._workers:
                assert known is not None
                await self._redescribe(known, info)
                continue
            await self._register(driver_name, info,
                                 self._reported(driver, info.external_id))
            device_id = self._by_external[(driver_name, info.external_id)]
            _LOG.info("lock %s (%s) found by driver %s", device_id, info.display_name,
                      driver_name)
            self._workers[device_id].full_read = True
            self._start_worker(device_id)

    async def _redescribe(self, device_id: str, info: DeviceInfo) -> None:
        """A driver learned more about a known lock (its slots, PIN rules): keep the new
        description; a changed slot range is read in full."""
        info = _with_pin_overrides(info, self._overrides.get(info.external_id, {}))
        async with self._lock_for(device_id):
            device = self.devices[device_id]
            if device.info == info:
                return
            before = device.info.capabilities.slots()
            await self._commit(devices=[replace(device, info=info, errors=_driver_errors(
                device.errors, device.info, info, self.clock.now()))])
        _LOG.info("lock %s: the driver describes it anew (%d slots)", device_id,
                  info.capabilities.slot_count)
        worker = self._workers[device_id]
        if info.capabilities.slots() != before:
            worker.full_read = True
        worker.wake.set()

    def subscribe(self, listener: EventListener) -> None:
        """Call `listener` with every batch of committed events."""
        self._listeners.append(listener)

    async def on_driver_event(self, driver_name: str, event: DriverEvent) -> None:
        """A driver's report: availability, a slot changed at the lock, or a keypad unlock."""
        if event.kind is DriverEventKind.DEVICES_CHANGED:
            await self._discover(driver_name)
            return
        device_id = self._by_external.get((driver_name, event.external_id))
        if device_id is None:
            return
        worker = self._workers[device_id]
        if event.kind is DriverEventKind.AVAILABILITY and event.availability is not None:
            await self._set_availability(device_id, event.availability)
        elif event.kind is DriverEventKind.SLOT_CHANGED and event.slot is not None:
            worker.pending_reads.add(event.slot)
        elif event.kind is DriverEventKind.KEYPAD_USED:
            code = self._code_in_slot(device_id, event.slot)
            data: dict[str, Any] = {"method": "keycode", "slot": event.slot}
            await self._commit(events=[self._event(
                EventType.LOCK_UNLOCKED, device_id,
                code.access_code_id if code else None, data)])
        elif event.kind is DriverEventKind.UNLOCKED:
            await self._commit(events=[self._event(
                EventType.LOCK_UNLOCKED, device_id, None,
                {"method": event.detail.get("method", "unknown")})])
        worker.wake.set()

    # -- requests -------------------------------------------------------------------------

    def device(self, device_id: str, managed: bool = True) -> DeviceRecord:
        """A managed (or, if asked, unmanaged) device, or EngineError device_not_found."""
        device = self.devices.get(device_id)
        if device is None or device.is_managed != managed:
            raise EngineError("device_not_found", f"Device {device_id} not found",
                              "device_id")
        return device

    def code(self, access_code_id: str, managed: bool = True) -> CodeRecord:
        """A code, or EngineError access_code_not_found."""
        code = self.codes.get(access_code_id)
        if code is None or code.is_managed != managed or (code.deleted and not code.on_lock
                                                          and managed):
            raise EngineError("access_code_not_found", f"Access code {access_code_id} not found",
                              "access_code_id")
        return code

    def clock_synchronized(self) -> bool:
        """False while schedules are held because the system clock is not synchronised."""
        return self._clock_synchronized()

    def codes_of(self, device_id: str) -> list[CodeRecord]:
        """Every code of one device, managed and unmanaged, oldest first."""
        return list(self._by_device.get(device_id, {}).values())

    async def create_code(self, device_id: str, request: CodeRequest,
                          access_code_id: str | None = None,
                          on_commit: Callable[[Tx], None] | None = None) -> CodeRecord:
        """Create a managed code; it goes onto the lock in the background."""
        async with self._lock_for(device_id):
            device = self.device(device_id)
            now = self.clock.now()
            code = CodeRecord(
                access_code_id=access_code_id or str(uuid.uuid4()),
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
            code = self._validate_and_choose_pin(device, code, request, now)
            code = self._refresh(code, device, now)
            events = [self._event(EventType.ACCESS_CODE_CREATED, device_id,
                                  code.access_code_id, {})]
            devices: list[DeviceRecord] = []
            if request.use_backup_access_code_pool:
                enabled = _pool_switched_on(device, "use_backup_access_code_pool")
                if enabled is not None:
                    devices.append(enabled)
            await self._commit(codes=[code], events=events, extra=on_commit, devices=devices)
        self._wake(device_id)
        return self.codes[code.access_code_id]

    async def update_code(self, access_code_id: str, request: CodeRequest,
                          on_commit: Callable[[Tx], None] | None = None) -> CodeRecord:
        """Change name, PIN, times or type; the lock is reprogrammed in the background."""
        current = self.code(access_code_id)
        async with self._lock_for(current.device_id):
            current = self.code(access_code_id)
            if current.deleted:
                raise EngineError("access_code_not_found", "Access code is being deleted")
            device = self.device(current.device_id)
            now = self.clock.now()
            changes: dict[str, Any] = {}
            for name in ("name", "starts_at", "ends_at", "preferred_code_length",
                         "allow_external_modification", "common_code_key",
                         "use_backup_access_code_pool"):
                value = getattr(request, name)
                if value is not None:
                    changes[name] = value
            if request.type is not None:
                changes["type"] = request.type
                if request.type is AccessCodeType.ONGOING:
                    changes["starts_at"] = None
                    changes["ends_at"] = None
            elif current.type is AccessCodeType.ONGOING and (
                    "starts_at" in changes or "ends_at" in changes):
                # Seam: an ongoing code given times becomes time-bound. Kept ongoing, its
                # window would show everywhere and be enforced nowhere.
                changes["type"] = AccessCodeType.TIME_BOUND
            updated = replace(current, **changes, revision=current.revision + 1, gave_up=False,
                              attempts=0, next_attempt_at=None,
                              errors=_drop_codes(current.errors, _RETRYABLE_ERRORS),
                              extra={k: v for k, v in current.extra.items()
                                     if k not in ("external_hold", "refused_for_good")})
            pin_request = request.code is not None or request.preferred_code is not None
            if pin_request or changes.get("type") or "starts_at" in changes \
                    or "ends_at" in changes:
                try:
                    updated = self._validate_and_choose_pin(
                        device, updated, request if pin_request else
                        CodeRequest(code=current.code if not device.info.capabilities
                                    .algorithmic_pins else None), now)
                except EngineError as exc:
                    if exc.kind == "duplicate_access_code":
                        await self._prevented_duplicate(current, now)
                    raise
            updated = replace(updated, errors=_drop_codes(
                updated.errors, {AccessCodeErrorCode.DUPLICATE_CODE_ATTEMPT_PREVENTED}))
            if updated.code != current.code and _FIRST_SENT_AT in updated.extra:
                # An earlier create was for the old PIN: it proves nothing about the new one.
                updated = replace(updated, extra={k: v for k, v in updated.extra.items()
                                                  if k != _FIRST_SENT_AT})
            if holds_wanted(current, device) and not holds_wanted(updated, device):
                # What the lock stores (PIN, window, name) must change: setting until it has.
                updated = replace(updated, pending_since=now)
            elif updated.code != current.code or "name" in changes:
                updated = replace(updated, pending_since=now)
            updated = self._refresh(updated, device, now)
            await self._commit(codes=[updated, *self._backup_follows(updated, device, now)],
                               events=[self._event(EventType.ACCESS_CODE_CHANGED,
                                                   current.device_id, access_code_id, {})],
                               extra=on_commit)
        self._wake(current.device_id)
        return self.codes[access_code_id]

    def _backup_follows(self, original: CodeRecord, device: DeviceRecord,
                        now: datetime) -> list[CodeRecord]:
        """The backup pulled for `original`, its end moved to the original's (or nothing)."""
        backup_id = original.pulled_backup_access_code_id
        pulled = self.codes.get(backup_id) if backup_id is not None else None
        if pulled is None or pulled.deleted or pulled.ends_at == original.ends_at \
                or original.ends_at is None:
            return []
        return [self._refresh(replace(pulled, ends_at=original.ends_at,
                                      revision=pulled.revision + 1), device, now)]

    async def _prevented_duplicate(self, code: CodeRecord, now: datetime) -> None:
        message = ("An attempt to modify this access code was prevented: the new PIN would "
                   "duplicate another code on the lock")
        error = AccessCodeErrorCode.DUPLICATE_CODE_ATTEMPT_PREVENTED
        events = [] if code.has_error(error) else [self._event(
            EventType.ACCESS_CODE_DUPLICATE_CODE_ATTEMPT_PREVENTED, code.device_id,
            code.access_code_id, {"error_code": error.value, "message": message})]
        await self._commit(codes=[replace(code, errors=_with_issue(code.errors, error, message,
                                                                    now))], events=events)

    async def delete_code(self, access_code_id: str,
                          on_commit: Callable[[Tx], None] | None = None) -> None:
        """Take a code off its lock and forget it."""
        current = self.code(access_code_id)
        async with self._lock_for(current.device_id):
            current = self.code(access_code_id)
            device = self.device(current.device_id)
            if current.is_backup and not device.online:
                raise EngineError(
                    "device_disconnected",
                    "Backup codes can only be deleted while their lock is connected; the lock "
                    f"is {device.availability.value}. Reconnect the lock, then delete the "
                    "backup code again")
            now = self.clock.now()
            events = [self._event(EventType.ACCESS_CODE_DELETED, current.device_id,
                                  access_code_id, {})]
            # A backup pulled for this code ends with it (seed 001: same schedule as the stay).
            followers = self._backup_follows(replace(current, ends_at=now), device, now)
            if current.on_lock:
                updated = self._refresh(replace(current, deleted=True, gave_up=False,
                                                attempts=0, next_attempt_at=None,
                                                pending_since=now,
                                                revision=current.revision + 1), device, now)
                await self._commit(codes=[updated, *followers], events=events,
                                   extra=on_commit)
            else:
                await self._commit(codes=followers, drop=[access_code_id], events=events,
                                   extra=on_commit)
        self._wake(current.device_id)

    async def convert_unmanaged(self, access_code_id: str, request: CodeRequest,
                                on_commit: Callable[[Tx], None] | None = None) -> CodeRecord:
        """Make an unmanaged code managed: the bridge keeps it on the lock from now on."""
        current = self.code(access_code_id, managed=False)
        async with self._lock_for(current.device_id):
            current = self.code(access_code_id, managed=False)
            if current.code is None:
                await self._commit(events=[self._event(
                    EventType.ACCESS_CODE_UNMANAGED_FAILED_TO_CONVERT_TO_MANAGED,
                    current.device_id, access_code_id,
                    {"reason": "the lock does not reveal this code's PIN"})])
                raise EngineError("cannot_convert", "The lock hides this code's PIN, so it "
                                  "cannot be managed; delete it and create a managed code")
            converted = replace(
                current, is_managed=True, on_lock_pin=current.code, verified=True,
                ever_set=True, name=request.name or current.name,
                allow_external_modification=bool(request.allow_external_modification),
                status=AccessCodeStatus.SET, pending_since=None,
            )
            await self._commit(codes=[converted], events=[self._event(
                EventType.ACCESS_CODE_UNMANAGED_CONVERTED_TO_MANAGED, current.device_id,
                access_code_id, {})], extra=on_commit)
        self._wake(current.device_id)
        return self.codes[access_code_id]

    async def delete_unmanaged(self, access_code_id: str,
                               on_commit: Callable[[Tx], None] | None = None) -> None:
        """Remove an unmanaged code from its lock."""
        current = self.code(access_code_id, managed=False)
        device = self.device(current.device_id)
        if not device.info.capabilities.can_delete_unmanaged or current.slot is None:
            raise EngineError("not_supported", "This lock's driver cannot delete unmanaged codes")
        driver = self.drivers[device.driver]
        async with self._lock_for(current.device_id):
            try:
                async with asyncio.timeout(self.command_timeout(device)):
                    await driver.clear_code(device.external_id, current.slot)
            except (DriverError, TimeoutError) as exc:
                raise EngineError("device_error", f"The lock did not remove the code: {exc}") \
                    from exc
            await self._commit(drop=[access_code_id], events=[self._event(
                EventType.ACCESS_CODE_UNMANAGED_REMOVED, current.device_id, access_code_id, {})],
                extra=on_commit)

    # -- devices --------------------------------------------------------------------------

    async def unmanage_device(self, device_id: str,
                              on_commit: Callable[[Tx], None] | None = None) -> DeviceRecord:
        """Take a lock out of lockbridge: its backup codes come off and its pool is off.

        Refused while lockbridge still manages other codes on it (nobody would take a guest's
        code off afterwards) and, when backups are on it, while it is not connected (seed 000:
        backup codes are only deleted from a connected lock)."""
        async with self._lock_for(device_id):
            device = self.device(device_id)
            codes = self.codes_of(device_id)
            now = self.clock.now()
            # Codes whose window is over and that are off the lock need nobody any more.
            guests = [c for c in codes if c.is_managed and not c.is_backup and not c.deleted
                      and (c.on_lock or c.ends_at is None or c.ends_at > now)]
            if guests:
                raise EngineError(
                    "device_has_access_codes",
                    f"lockbridge still manages {len(guests)} access code(s) on this device; "
                    "delete them first, so that no code stays on the lock with nobody to take "
                    "it off", "device_id")
            backups = [c for c in codes if c.is_backup and not c.deleted]
            if any(c.on_lock for c in backups) and not device.online:
                raise EngineError(
                    "device_disconnected",
                    "The lock's backup codes must come off when it leaves lockbridge, and "
                    f"backup codes can only be deleted while the lock is connected; it is "
                    f"{device.availability.value}. Reconnect the lock, then remove it again")
            events = [self._event(EventType.ACCESS_CODE_DELETED, device_id, c.access_code_id,
                                  {"is_backup": True}) for c in backups]
            events.append(self._event(EventType.DEVICE_CONVERTED_TO_UNMANAGED, device_id,
                                      None, {}))
            pool_issues = {DeviceErrorCode.EMPTY_BACKUP_ACCESS_CODE_POOL,
                           DeviceWarningCode.PARTIAL_BACKUP_ACCESS_CODE_POOL,
                           DeviceWarningCode.MANY_ACTIVE_BACKUP_CODES}
            updated = replace(device, is_managed=False, backup_pool_enabled=False,
                              errors=_drop_codes(device.errors, pool_issues),
                              warnings=_drop_codes(device.warnings, pool_issues))
            leaving = [self._refresh(replace(c, deleted=True, gave_up=False, attempts=0,
                                             next_attempt_at=None, pending_since=now,
                                             revision=c.revision + 1), updated, now)
                       for c in backups if c.on_lock]
            await self._commit(devices=[updated], codes=leaving, events=events,
                               drop=[c.access_code_id for c in backups if not c.on_lock],
                               extra=on_commit)
        _LOG.info("lock %s is no longer managed; %d backup code(s) come off it", device_id,
                  len(leaving))
        self._wake(device_id)
        return self.devices[device_id]

    async def manage_device(self, device_id: str,
                            on_commit: Callable[[Tx], None] | None = None) -> DeviceRecord:
        """Bring an unmanaged lock back; its backup pool starts off, as on a new lock."""
        async with self._lock_for(device_id):
            device = self.device(device_id, managed=False)
            updated = replace(device, is_managed=True)
            await self._commit(devices=[updated], events=[self._event(
                EventType.DEVICE_UNMANAGED_CONVERTED_TO_MANAGED, device_id, None, {})],
                extra=on_commit)
        self.reconcile(device_id, full=True)
        return self.devices[device_id]

    async def enable_backup_pool(self, device_id: str) -> DeviceRecord:
        """Switch a lock's backup pool on (for good, as a code asking for it would)."""
        async with self._lock_for(device_id):
            enabled = _pool_switched_on(self.device(device_id), "backup_access_code_pool_enabled")
            if enabled is not None:
                await self._commit(devices=[enabled])
        self._wake(device_id)
        return self.devices[device_id]

    def reconcile(self, device_id: str, slots: Iterable[int] = (), full: bool = False) -> None:
        """Ask a lock's worker to re-read some slots, or the whole lock, and fix what differs."""
        worker = self._workers.get(device_id)
        if worker is None:
            raise EngineError("device_not_found", f"Device {device_id} not found", "device_id")
        worker.pending_reads.update(slots)
        worker.full_read = worker.full_read or full
        worker.wake.set()

    def generate_code(self, device_id: str, length: int | None = None) -> str:
        """A PIN that fits the lock's rules and clashes with nothing on it."""
        device = self.device(device_id)
        taken = [c.code for c in self.codes_of(device_id) if c.code and not c.deleted]
        return generate_pin(device.info.constraints, taken, self._rng, length)

    def outstanding(self) -> int:
        """How many managed codes are not yet where they should be."""
        return sum(1 for c in self.codes.values() if c.is_managed and c.status in (
            AccessCodeStatus.SETTING, AccessCodeStatus.REMOVING))

    def settled(self) -> bool:
        """True when no lock has work pending (for tests, benchmarks and shutdown)."""
        now = self.clock.now()
        for device_id, device in self.devices.items():
            worker = self._workers.get(device_id)
            if worker is None or not device.online:
                continue
            reading = (worker.pending_reads or worker.full_read) and \
                self.clock.monotonic() >= worker.reads_resume_at
            if worker.busy or reading or not worker.waiting:
                return False
            codes = self.codes_of(device_id)
            if next_command(device, codes, now, self.policy, self._clock_synchronized()):
                return False
        return True

    # -- worker -----------------------------------------------------------------------------

    async def _run_worker(self, device_id: str) -> None:
        """One lock's worker under one fault boundary: whatever our code or the driver raises
        stays with this lock. It is logged, counted and shown on the lock, and the worker starts
        again after a capped, jittered pause; other locks, the API and the upstream carry on."""
        worker = self._workers[device_id]
        while True:
            try:
                await self._work_once(worker)
            except asyncio.CancelledError:
                raise
            except StoreUnavailable:
                # The store logs the outage once; nothing was committed, so the step is simply
                # planned again once the store can write.
                await self._wait(worker, STORE_RETRY_S)
            except Exception as exc:  # the boundary itself
                await self._note_fault(device_id, exc, "the lock's worker")
                await self.clock.sleep(backoff_delay(worker.faults, _FAULT_RESTART_BASE_S,
                                                     _FAULT_RESTART_CAP_S, self._rng))
                self._resume_after_fault(worker)
            else:
                if worker.faults and self.clock.monotonic() - worker.last_fault_at \
                        >= _FAULT_WARNING_HOLD_S:
                    await self._fault_cleared(device_id)

    async def _work_once(self, worker: _Worker) -> None:
        """One pass: probe an unreachable lock, or take one step and wait for the next."""
        device_id = worker.device_id
        device = self.devices[device_id]
        driver = self.drivers[device.driver]
        if not device.online:
            await self._housekeeping(device_id)
            await self._probe_step(worker, device, driver)
            return
        if await self._step(worker, device, driver):
            return
        now = self.clock.now()
        wake_at = next_wakeup(device, self.codes_of(device_id), now, self.policy)
        timeout = self._reconcile_interval
        if wake_at is not None:
            timeout = min(timeout, max(0.0, (wake_at - now).total_seconds()))
        if worker.full_read or worker.pending_reads:
            timeout = min(timeout, max(0.0, worker.reads_resume_at - self.clock.monotonic()))
        if not await self._wait(worker, timeout) and timeout >= self._reconcile_interval:
            # The slow period: re-read the slots we manage, never the whole lock.
            worker.pending_reads.update(
                c.slot for c in self.codes_of(device_id)
                if c.is_managed and c.slot is not None and c.on_lock)

    def _reported(self, driver: LockDriver, external_id: str) -> Availability:
        """What the driver says of a lock's availability; a driver that fails to say is taken
        as not reaching it, so the probe decides when it is back."""
        try:
            return driver.availability(external_id)
        except Exception as exc:  # a driver's bug stays with its lock
            _LOG.warning("lock %s: the driver could not tell its availability (%s: %s)",
                         external_id, type(exc).__name__, exc)
            device_id = self._by_external.get((driver.name, external_id))
            if device_id is not None:
                self.fault_counts[device_id] = self.fault_counts.get(device_id, 0) + 1
            return Availability.OFFLINE

    def _resume_after_fault(self, worker: _Worker) -> None:
        """Before working again, read back every slot a command was in flight for, as after a
        restart: the fault may have struck between sending a command and recording its answer."""
        worker.busy = False
        worker.waiting = False
        worker.pending_reads.update(slot for slot in worker.intents if slot >= 0)

    async def _note_fault(self, device_id: str, exc: BaseException, where: str) -> None:
        """An unexpected exception on one lock: logged (with its traceback the first time in a
        row), counted for /metrics, and shown on the lock as a device warning."""
        worker = self._workers.get(device_id)
        self.fault_counts[device_id] = self.fault_counts.get(device_id, 0) + 1
        if worker is None:
            _LOG.error("lock %s: unexpected error in %s", device_id, where, exc_info=exc)
            return
        worker.faults += 1
        worker.last_fault_at = self.clock.monotonic()
        what = f"{type(exc).__name__} in {where}"
        if worker.faults == 1:
            _LOG.error("lock %s: unexpected error (%s); its work restarts after a pause, other "
                       "locks carry on", device_id, what, exc_info=exc)
        else:
            _LOG.warning("lock %s: unexpected error again (%s, %d in a row): %s", device_id,
                         what, worker.faults, exc)
        message = (f"lockbridge hit an unexpected error working on this lock ({what}) and "
                   f"retries after a pause; other locks are not affected. The log has the "
                   f"details")
        try:
            async with self._lock_for(device_id):
                device = self.devices.get(device_id)
                if device is None or any(w.code == DeviceWarningCode.LOCK_WORKER_FAULT
                                         and w.message == message for w in device.warnings):
                    return
                warnings = _drop_codes(device.warnings, {DeviceWarningCode.LOCK_WORKER_FAULT})
                warnings = _with_issue(warnings, DeviceWarningCode.LOCK_WORKER_FAULT, message,
                                       self.clock.now())
                await self._commit(devices=[replace(device, warnings=warnings)])
        except Exception:  # a store that cannot write must not break the boundary
            _LOG.warning("lock %s: could not record the fault warning", device_id)

    async def _fault_cleared(self, device_id: str) -> None:
        """The lock's work has gone well for a while since its last fault: drop the warning."""
        self._workers[device_id].faults = 0
        async with self._lock_for(device_id):
            device = self.devices[device_id]
            if any(w.code == DeviceWarningCode.LOCK_WORKER_FAULT for w in device.warnings):
                _LOG.info("lock %s: working normally again", device_id)
                await self._commit(devices=[replace(device, warnings=_drop_codes(
                    device.warnings, {DeviceWarningCode.LOCK_WORKER_FAULT}))])

    async def _step(self, worker: _Worker, device: DeviceRecord, driver: LockDriver) -> bool:
        device_id = device.device_id
        await self._housekeeping(device_id)
        can_read = device.info.capabilities.can_read
        reads_allowed = can_read and self.clock.monotonic() >= worker.reads_resume_at
        if worker.full_read and reads_allowed:
            await self._pace(worker, device)
            worker.busy = True
            try:
                # A walk of every slot takes one radio round trip per slot on some locks.
                reads = await self._call(device, driver.list_codes(device.external_id),
                                         timeout=self.command_timeout(device)
                                         + _FULL_READ_S_PER_SLOT * device.info.capabilities
                                         .slot_count)
            except DriverError as exc:
                await self._read_failed(worker, device_id, exc)
                return True
            finally:
                worker.busy = False
            worker.full_read = False
            worker.read_failures = 0
            await self._apply_reads(device_id, reads, full=True)
            return True
        if not can_read:
            if worker.full_read:
                # Nothing to look for restored codes with: they are written.
                await self._commit(codes=self._end_adoption(device_id, ()))
            worker.full_read = False
        # While reads back off, writes and clears go on: a pending read never blocks them.
        command = next_command(device, self.codes_of(device_id), self.clock.now(), self.policy,
                               self._clock_synchronized(),
                               worker.pending_reads if reads_allowed else ())
        if command is None:
            if worker.pending_reads and not device.info.capabilities.can_read:
                await self._resolve_unreadable_intents(worker, device_id)
            return False
        await self._pace(worker, device)
        worker.busy = True
        try:
            if command.kind is CommandKind.READ:
                slots = command.slots
                worker.pending_reads.difference_update(slots)
                try:
                    reads = await self._call(device, driver.read_slots(device.external_id,
                                                                        list(slots)))
                except DriverError as exc:
                    worker.pending_reads.update(slots)
                    await self._read_failed(worker, device_id, exc)
                    return True
                worker.read_failures = 0
                await self._apply_reads(device_id, reads, full=False)
                for slot in slots:
                    worker.intents.pop(slot, None)
            elif command.kind is CommandKind.WRITE:
                await self._write(worker, device, driver, command)
            else:
                await self._clear(worker, device, driver, command)
        finally:
            worker.busy = False
        return True

    async def _write(self, worker: _Worker, device: DeviceRecord, driver: LockDriver,
                     command: Command) -> None:
        device_id = device.device_id
        assert command.access_code_id is not None
        async with self._lock_for(device_id):
            code = self.codes.get(command.access_code_id)
            if code is None or code.revision != command.revision:
                return
            codes = self.codes_of(device_id)
            caps = device.info.capabilities
            slot = code.slot
            if slot is None and caps.addressing is Addressing.SLOT:
                slot = choose_slot(device, codes, worker.intents)
                if slot is None:
                    await self._code_problem_locked(code, AccessCodeErrorCode
                                             .NO_SPACE_FOR_ACCESS_CODE_ON_DEVICE,
                                             "No free slot on the lock", give_up=True,
                                             event=EventType.ACCESS_CODE_NO_SPACE_ON_DEVICE)
                    return
            pin = None if caps.algorithmic_pins else code.code
            if pin is not None:
                blocker = pin_on_lock_conflict(pin, code, device, codes)
                if blocker is not None and blocker.is_managed:
                    # The same PIN for another window is still on the lock: wait for it to go.
                    # Its end may be past while its removal backs off: then look again in a
                    # minute, not at every step.
                    now = self.clock.now()
                    await self._commit(codes=[replace(code, next_attempt_at=max(
                        blocker.ends_at or now + _BLOCKED_RETRY, now + _BLOCKED_RETRY))])
                    return
                ours_maybe = (blocker is not None and code.slot is None
                              and _FIRST_SENT_AT in code.extra)
                if blocker is not None and not ours_maybe:
                    # (A code listed since our create went out, its answer lost, may be that
                    # create: the driver decides with its proof, never by the PIN alone.)
                    await self._code_problem_locked(
                        code, AccessCodeErrorCode.DUPLICATE_CODE_ON_DEVICE,
                        "The PIN is already on the lock as an unmanaged code",
                        give_up=True, event=EventType.ACCESS_CODE_DUPLICATE_CODE_ON_DEVICE)
                    return
            name = wanted_name(code, device)
            first_sent = code.extra.get(_FIRST_SENT_AT) if slot is None else None
            request = CodeWrite(slot=slot, pin=pin, name=name, key=code.access_code_id,
                                window=local_window(code, device),
                                first_sent_at=datetime.fromisoformat(first_sent)
                                if first_sent else None)
            intent_slot = slot if slot is not None else -1
            intent = Intent(device_id, intent_slot, "write", code.access_code_id, pin)
            before_call = replace(code, slot=slot, appearance_name=name)
            if slot is None and not first_sent:
                # A lock that numbers codes itself answers a create with no id: when this create
                # first went out is what later proves a code with its PIN is ours.
                before_call = replace(before_call, extra={
                    **code.extra, _FIRST_SENT_AT: self.clock.now().isoformat()})
            await self._commit(intents=[intent], codes=[before_call])
            worker.intents[intent_slot] = intent
        now_mono = self.clock.monotonic()
        worker.last_command_at = now_mono
        try:
            result = await self._call(device, driver.write_code(device.external_id, request))
        except CommandRejected as exc:
            worker.intents.pop(intent_slot, None)
            await self._write_rejected(command.access_code_id, intent_slot, exc)
            return
        except DriverError as exc:
            worker.intents.pop(intent_slot, None)
            await self._write_failed(command.access_code_id, intent_slot, exc)
            return
        worker.intents.pop(intent_slot, None)
        REDACTOR.remember(result.pin)
        async with self._lock_for(device_id):
            before = code
            code = self.codes.get(command.access_code_id)
            now = self.clock.now()
            if code is None or code.deleted:
                # Deleted while the write was in flight: the PIN is on the lock now and nobody
                # wants it there. Keep (or bring back) a deleted record so the worker clears it.
                gone = replace(code or before, deleted=True, slot=result.slot,
                               on_lock_pin=result.pin, verified=False, attempts=0,
                               next_attempt_at=None, gave_up=False, pending_since=now,
                               revision=(code or before).revision + 1)
                await self._commit(codes=[self._refresh(gone, device, now)],
                                   drop_intents=[(device_id, intent_slot)])
                return
            verified = result.confirmed and (not caps.can_read or caps.masks_pins_on_read or
                                             caps.confirmation_window_s == 0)
            held = Held(window=request.window,
                        name=request.name if caps.keeps_names else None)
            changed: dict[str, Any] = dict(slot=result.slot, on_lock_pin=result.pin,
                                           on_lock_held=held,
                                           last_write_at=now, verified=verified,
                                           # Sent again after a change that never reached
                                           # the lock: it counts until the lock has it.
                                           attempts=code.attempts if code.extra.get(
                                               NOT_APPLIED) and not verified else 0,
                                           next_attempt_at=None,
                                           errors=_drop_codes(code.errors, _RETRYABLE_ERRORS),
                                           extra={k: v for k, v in code.extra.items()
                                                  if k not in (_FIRST_SENT_AT, NOT_APPLIED)})
            events: list[Event] = []
            if caps.algorithmic_pins and result.pin != code.code:
                changed["code"] = result.pin
                changed["warnings"] = _with_issue(
                    code.warnings, AccessCodeWarningCode.CODE_DIFFERS_FROM_REQUESTED,
                    "This lock generates its own PINs; the code set is the lock's",
                    now) if code.requested_code else code.warnings
            updated = outcome_known(replace(code, **changed))
            if verified:
                updated, more = self._confirmed(updated, device, now)
                events.extend(more)
            else:
                self._workers[device_id].pending_reads.add(result.slot)
            updated = self._refresh(updated, device, now)
            # A code read as unmanaged in the slot the driver proved ours was our own create.
            ours = [c.access_code_id for c in self.codes_of(device_id)
                    if not c.is_managed and c.slot == result.slot]
            await self._commit(codes=[updated], events=events, drop=ours,
                               drop_intents=[(device_id, intent_slot)])

    async def _clear(self, worker: _Worker, device: DeviceRecord, driver: LockDriver,
                     command: Command) -> None:
        device_id = device.device_id
        assert command.access_code_id is not None and command.slot is not None
        slot = command.slot
        async with self._lock_for(device_id):
            code = self.codes.get(command.access_code_id)
            if code is None or not code.on_lock:
                return
            intent = Intent(device_id, slot, "clear", code.access_code_id, None)
            await self._commit(intents=[intent])
            worker.intents[slot] = intent
        worker.last_command_at = self.clock.monotonic()
        try:
            await self._call(device, driver.clear_code(device.external_id, slot))
        except DriverError as exc:
            worker.intents.pop(slot, None)
            await self._clear_failed(command.access_code_id, slot, exc)
            return
        worker.intents.pop(slot, None)
        await self._cleared(command.access_code_id, device_id, slot)

    async def _cleared(self, access_code_id: str, device_id: str, slot: int) -> None:
        async with self._lock_for(device_id):
            code = self.codes.get(access_code_id)
            device = self.devices[device_id]
            now = self.clock.now()
            if code is None:
                await self._commit(drop_intents=[(device_id, slot)])
                return
            events = [self._event(EventType.ACCESS_CODE_REMOVED_FROM_DEVICE, device_id,
                                  access_code_id, {})]
            if code.deleted:
                await self._commit(drop=[access_code_id], events=events,
                                   drop_intents=[(device_id, slot)],
                                   codes=self._retry_no_space(device_id, exclude=access_code_id))
                return
            retry = self._retry_no_space(device_id, exclude=access_code_id)
            if retry:
                await self._commit(codes=retry)
            keep_slot = should_be_on_lock(code, device, now, self.policy)
            updated = replace(code, on_lock_pin=None, verified=False, attempts=0,
                              next_attempt_at=None, slot=slot if keep_slot else None,
                              pending_since=now if keep_slot else None,
                              errors=_drop_codes(code.errors, _RETRYABLE_ERRORS),
                              warnings=_drop_codes(code.warnings, {
                                  AccessCodeWarningCode.DELAY_IN_REMOVING_FROM_DEVICE}))
            updated = self._refresh(updated, device, now)
            await self._commit(codes=[updated], events=events, drop_intents=[(device_id, slot)])

    def _retry_no_space(self, device_id: str, exclude: str) -> list[CodeRecord]:
        """A slot was freed: codes that found the lock full try again."""
        error = AccessCodeErrorCode.NO_SPACE_FOR_ACCESS_CODE_ON_DEVICE
        return [replace(c, gave_up=False, attempts=0, next_attempt_at=None)
                for c in self.codes_of(device_id)
                if c.access_code_id != exclude and c.is_managed and c.gave_up
                and c.has_error(error)]

    # -- outcomes -------------------------------------------------------------------------

    async def _write_rejected(self, access_code_id: str, slot: int,
                              exc: CommandRejected) -> None:
        if self.codes.get(access_code_id) is None:
            return
        mapping = {
            RejectReason.DUPLICATE_PIN: (AccessCodeErrorCode.DUPLICATE_CODE_ON_DEVICE,
                                         EventType.ACCESS_CODE_DUPLICATE_CODE_ON_DEVICE),
            RejectReason.NO_SPACE: (AccessCodeErrorCode.NO_SPACE_FOR_ACCESS_CODE_ON_DEVICE,
                                    EventType.ACCESS_CODE_NO_SPACE_ON_DEVICE),
        }
        error, event = mapping.get(exc.reason, (AccessCodeErrorCode.FAILED_TO_SET_ON_DEVICE,
                                                EventType.ACCESS_CODE_FAILED_TO_SET_ON_DEVICE))
        if exc.error_code is not None:
            error = AccessCodeErrorCode(exc.error_code)
        async with self._lock_for(self.codes[access_code_id].device_id):
            code = self.codes.get(access_code_id)
            if code is None:
                return
            # A refused create made nothing on the lock: no later code can be its result.
            code = replace(code, extra={k: v for k, v in code.extra.items()
                                        if k != _FIRST_SENT_AT})
            await self._code_problem_locked(code, error, f"The lock refused the code: {exc}",
                                            give_up=True, event=event, drop_intent=slot,
                                            free_slot=True,
                                            refused_for_good=exc.reason if exc.reason in
                                            _REFUSED_FOR_GOOD else None)

    async def _write_failed(self, access_code_id: str, slot: int, exc: DriverError) -> None:
        code = self.codes.get(access_code_id)
        if code is None:
            return
        device_id = code.device_id
        await self._command_failed_device(device_id, exc)
        # No answer (a timeout, the link gone): the write may or may not have reached the lock.
        mark = outcome_unknown if isinstance(exc, RetryLater) else outcome_known
        if not self.devices[device_id].online:
            async with self._lock_for(device_id):
                code = self.codes.get(access_code_id)
                if code is None:
                    return
                now = self.clock.now()
                await self._commit(codes=[self._refresh(mark(code), self.devices[device_id],
                                                        now)],
                                   drop_intents=[(device_id, slot)])
            return
        async with self._lock_for(device_id):
            code = self.codes.get(access_code_id)
            if code is None:
                return
            code = mark(code)
            attempts = code.attempts + 1
            if attempts >= self.policy.max_attempts or isinstance(exc, FixConfig):
                await self._code_problem_locked(
                    code, AccessCodeErrorCode.FAILED_TO_SET_ON_DEVICE,
                    f"Failed to set code on device after {attempts} attempts: {exc}",
                    give_up=True, event=EventType.ACCESS_CODE_FAILED_TO_SET_ON_DEVICE,
                    drop_intent=slot, attempts=attempts)
                return
            delay = backoff_delay(attempts, self.policy.retry_base_s, self.policy.retry_cap_s,
                                  self._rng)
            updated = replace(code, attempts=attempts,
                              next_attempt_at=self.clock.now() + timedelta(seconds=delay))
            await self._commit(codes=[updated], drop_intents=[(device_id, slot)])

    async def _clear_failed(self, access_code_id: str, slot: int, exc: DriverError) -> None:
        code = self.codes.get(access_code_id)
        if code is None:
            return
        device_id = code.device_id
        await self._command_failed_device(device_id, exc)
        async with self._lock_for(device_id):
            code = self.codes.get(access_code_id)
            if code is None:
                return
            if not self.devices[device_id].online:
                await self._commit(drop_intents=[(device_id, slot)])
                return
            attempts = code.attempts + 1
            if attempts >= self.policy.max_attempts or isinstance(exc, CommandRejected):
                # Never give up on taking a code off: a guest whose stay ended must not keep
                # access. Report it, and keep trying at the slowest backoff step.
                await self._code_problem_locked(
                    code, AccessCodeErrorCode.FAILED_TO_REMOVE_FROM_DEVICE,
                    f"Failed to remove code from device: {exc}; retrying every "
                    f"{self.policy.retry_cap_s / 60:.0f} min", give_up=False,
                    event=EventType.ACCESS_CODE_FAILED_TO_REMOVE_FROM_DEVICE, drop_intent=slot,
                    attempts=attempts, next_attempt_at=self.clock.now() + timedelta(
                        seconds=self.policy.retry_cap_s))
                return
            delay = backoff_delay(attempts, self.policy.retry_base_s, self.policy.retry_cap_s,
                                  self._rng)
            await self._commit(codes=[replace(
                code, attempts=attempts,
                next_attempt_at=self.clock.now() + timedelta(seconds=delay))],
                drop_intents=[(device_id, slot)])

    async def _code_problem(self, code: CodeRecord, error: AccessCodeErrorCode, message: str,
                            **kwargs: Any) -> None:
        async with self._lock_for(code.device_id):
            current = self.codes.get(code.access_code_id)
            if current is not None:
                await self._code_problem_locked(current, error, message, **kwargs)

    async def _code_problem_locked(
        self, code: CodeRecord, error: AccessCodeErrorCode, message: str, *,
        give_up: bool, event: EventType, drop_intent: int | None = None,
        free_slot: bool = False, attempts: int | None = None,
        next_attempt_at: datetime | None = None, refused_for_good: str | None = None,
    ) -> None:
        now = self.clock.now()
        device = self.devices[code.device_id]
        already = code.has_error(error)
        if refused_for_good is not None:
            # Sending the same code again cannot help: only a change to it (or a delete) does,
            # not a reconnect of the lock.
            code = replace(code, extra={**code.extra, "refused_for_good": refused_for_good})
        updated = replace(
            code, errors=_with_issue(code.errors, error, message, now), gave_up=give_up,
            attempts=code.attempts if attempts is None else attempts,
            slot=None if free_slot and not code.on_lock else code.slot,
            next_attempt_at=next_attempt_at if next_attempt_at is not None
            else code.next_attempt_at,
        )
        updated = self._refresh(updated, device, now)
        events = [] if already else [self._event(event, code.device_id, code.access_code_id,
                                                 {"error_code": error.value,
                                                  "message": message})]
        drops = [(code.device_id, drop_intent)] if drop_intent is not None else []
        await self._commit(codes=[updated], events=events, drop_intents=drops)
        _LOG.warning("lock %s code %s: %s", code.device_id, code.access_code_id, message)

    def _confirmed(self, code: CodeRecord, device: DeviceRecord,
                   now: datetime) -> tuple[CodeRecord, list[Event]]:
        """A code just verified on the lock: clear delay warnings, emit set or scheduled."""
        events: list[Event] = []
        scheduled = (code.type is AccessCodeType.TIME_BOUND and uses_native_schedule(device)
                     and code.starts_at is not None and now < code.starts_at)
        if not holds_wanted(code, device):
            return code, events
        kind = (EventType.ACCESS_CODE_SCHEDULED_ON_DEVICE if scheduled
                else EventType.ACCESS_CODE_SET_ON_DEVICE)
        if not code.verified or not code.ever_set:
            events.append(self._event(kind, code.device_id, code.access_code_id,
                                      {"code": code.code}))
        updated = replace(
            code, verified=True, ever_set=True, pending_since=None, attempts=0,
            warnings=_drop_codes(code.warnings, {AccessCodeWarningCode.DELAY_IN_SETTING_ON_DEVICE,
                                                 AccessCodeWarningCode.CODE_DIFFERS_FROM_REQUESTED}
                                 if not code.requested_code else
                                 {AccessCodeWarningCode.DELAY_IN_SETTING_ON_DEVICE}),
            errors=_drop_codes(code.errors, _SET_ERRORS),
        )
        return updated, events

    # -- reads ----------------------------------------------------------------------------

    async def _note_readability(self, device_id: str, reads: Sequence[SlotRead]) -> None:
        """A lock that answers writes but whose every slot read shows nothing, not even an empty
        slot, is write-only: say so on the device instead of taking it for a readable lock."""
        if self.devices[device_id].info.capabilities.masks_pins_on_read:
            return  # an occupied slot of such a lock reads unreadable by design
        worker = self._workers[device_id]
        for read in reads:
            if read.state is SlotState.UNREADABLE:
                worker.unreadable_reads += 1
            else:
                worker.readable_reads += 1
        write_only = worker.readable_reads == 0 and \
            worker.unreadable_reads >= _UNREADABLE_READS_FOR_WRITE_ONLY
        device = self.devices[device_id]
        flagged = any(w.code == DeviceWarningCode.WRITE_ONLY_LOCK for w in device.warnings)
        if write_only == flagged:
            return
        if write_only:
            _LOG.warning("lock %s: %d slot reads in a row showed nothing; treating it as a "
                         "lock whose codes cannot be read back", device_id,
                         worker.unreadable_reads)
            warnings = _with_issue(
                device.warnings, DeviceWarningCode.WRITE_ONLY_LOCK,
                "This lock takes codes but never shows what a slot holds: lockbridge cannot "
                "verify them or see codes changed at the keypad; a code counts as set when the "
                "lock accepted it", self.clock.now())
        else:
            warnings = _drop_codes(device.warnings, {DeviceWarningCode.WRITE_ONLY_LOCK})
        await self._commit(devices=[replace(device, warnings=warnings)])

    async def _apply_reads(self, device_id: str, reads: Sequence[SlotRead], full: bool) -> None:
        """Judge slot reads against what should be there; update codes, unmanaged codes, events."""
        async with self._lock_for(device_id):
            await self._note_readability(device_id, reads)
            device = self.devices[device_id]
            now = self.clock.now()
            window = timedelta(seconds=device.info.capabilities.confirmation_window_s)
            worker = self._workers[device_id]
            by_slot: dict[int, SlotRead] = {r.slot: r for r in reads}
            if full:
                for known in self.codes_of(device_id):
                    if known.slot is not None and known.slot not in by_slot:
                        by_slot[known.slot] = SlotRead(known.slot, SlotState.EMPTY)
            changed: list[CodeRecord] = []
            drops: list[str] = []
            events: list[Event] = []
            managed_slots = {c.slot: c for c in self.codes_of(device_id)
                             if c.is_managed and c.slot is not None}
            unmanaged_slots = {c.slot: c for c in self.codes_of(device_id)
                               if not c.is_managed and c.slot is not None}
            taken: set[str] = set()
            for slot, read in sorted(by_slot.items()):
                REDACTOR.remember(read.pin)
                empty = read.state is SlotState.EMPTY
                code = managed_slots.get(slot)
                intent = worker.intents.get(slot)
                if code is not None and intent is not None and intent.op == "write" \
                        and intent.access_code_id == code.access_code_id:
                    # A write was in flight when the process stopped: did it land?
                    landed = (read.state is SlotState.KNOWN and read.pin == intent.pin) or \
                        read.state is SlotState.UNREADABLE
                    if landed:
                        code = replace(code, on_lock_pin=intent.pin, last_write_at=None,
                                       on_lock_held=held_after_read(
                                           replace(code, on_lock_held=None), read))
                    drops.append(f"intent:{slot}")
                elif code is not None and intent is not None and intent.op == "clear":
                    if read.state is SlotState.EMPTY:
                        code = replace(code, on_lock_pin=None)
                    drops.append(f"intent:{slot}")
                if code is not None:
                    code = outcome_known(code)  # the slot was read: what is there is known
                if code is not None and code.deleted and not code.on_lock:
                    # Deleted, and the slot shows it is off the lock: nothing is left to do.
                    drops.append(code.access_code_id)
                    events.append(self._event(EventType.ACCESS_CODE_REMOVED_FROM_DEVICE,
                                              device_id, code.access_code_id, {}))
                    continue
                if code is not None and code.on_lock:
                    updated, more = self._judge_managed(code, read, device, now, window)
                    events.extend(more)
                    if updated != code or code is not managed_slots.get(slot):
                        changed.append(updated)
                    continue
                if code is not None:
                    if code is not managed_slots.get(slot):
                        changed.append(code)
                    if read.state is SlotState.EMPTY:
                        continue
                    if read.failed and read.pin == code.code:
                        # Listed but never on the lock: written again, deleted when it goes.
                        changed.append(replace(code, on_lock_pin=read.pin, verified=False,
                                               extra={**code.extra, NOT_APPLIED: True}))
                        continue
                    if read.state is SlotState.KNOWN and read.pin == code.code:
                        # Our code is there though we did not know it (a replayed intent), or
                        # on its way there (then read again until the lock has it).
                        updated = replace(code, on_lock_pin=read.pin, on_lock_held=held_after_read(
                            replace(code, on_lock_held=None), read))
                        if read.pending:
                            worker.pending_reads.add(slot)
                        else:
                            updated, more = self._confirmed(updated, device, now)
                            events.extend(more)
                        changed.append(updated)
                        continue
                unmanaged = unmanaged_slots.get(slot)
                if empty:
                    if unmanaged is not None:
                        changed.extend(self._retry_no_space(device_id, exclude=""))
                        drops.append(unmanaged.access_code_id)
                        events.append(self._event(EventType.ACCESS_CODE_UNMANAGED_REMOVED,
                                                  device_id, unmanaged.access_code_id, {}))
                    continue
                if code is not None:
                    # Our slot holds someone else's code: it is theirs until we overwrite it.
                    continue
                pin = read.pin if read.state is SlotState.KNOWN else None
                adopted = self._adopt(device_id, pin, device, now, taken)
                if adopted is not None:
                    # A restored code found where it already is: ours again, not written.
                    claimed, more = adopted
                    claimed = replace(claimed, slot=slot)
                    taken.add(claimed.access_code_id)
                    changed.append(claimed)
                    events.extend(more)
                    if unmanaged is not None:
                        drops.append(unmanaged.access_code_id)
                    continue
                if unmanaged is None:
                    new = CodeRecord(access_code_id=str(uuid.uuid4()), device_id=device_id,
                                     created_at=now, is_managed=False, name=read.name,
                                     code=pin, slot=slot, status=AccessCodeStatus.SET)
                    changed.append(new)
                    events.append(self._event(EventType.ACCESS_CODE_UNMANAGED_CREATED,
                                              device_id, new.access_code_id, {}))
                elif unmanaged.code != pin or unmanaged.name != read.name:
                    changed.append(replace(unmanaged, code=pin, name=read.name))
            if full:
                changed.extend(self._end_adoption(device_id, changed))
            changed = [self._refresh(c, device, now) for c in changed]
            intent_drops = [(device_id, int(d.split(":")[1])) for d in drops
                            if d.startswith("intent:")]
            code_drops = [d for d in drops if not d.startswith("intent:")]
            await self._commit(codes=changed, drop=code_drops, events=events,
                               drop_intents=intent_drops)
            for _, slot in intent_drops:
                worker.intents.pop(slot, None)

    def _adopt(self, device_id: str, pin: str | None, device: DeviceRecord, now: datetime,
               taken: set[str]) -> tuple[CodeRecord, list[Event]] | None:
        """The restored code awaiting adoption whose PIN a slot holds, confirmed there."""
        if pin is None:
            return None
        for code in self.codes_of(device_id):
            if code.is_managed and code.extra.get(_AWAITING_ADOPTION) and code.code == pin \
                    and code.access_code_id not in taken:
                extra = {k: v for k, v in code.extra.items() if k != _AWAITING_ADOPTION}
                found = replace(code, extra=extra, on_lock_pin=pin, last_write_at=None)
                return self._confirmed(found, device, now)
        return None

    def _end_adoption(self, device_id: str,
                      changed: Sequence[CodeRecord]) -> list[CodeRecord]:
        """After a full read, restored codes not found on the lock are written as usual."""
        done = {c.access_code_id for c in changed}
        return [replace(c, extra={k: v for k, v in c.extra.items() if k != _AWAITING_ADOPTION})
                for c in self.codes_of(device_id)
                if c.extra.get(_AWAITING_ADOPTION) and c.access_code_id not in done]

    async def restore_codes(self, codes: Sequence[CodeRecord],
                            on_commit: Callable[[Tx], None]) -> None:
        """Commit codes restored from the upstream (awaiting adoption) with `on_commit`."""
        for code in codes:
            REDACTOR.remember(code.code)
        await self._commit(codes=list(codes), extra=on_commit)
        for device_id in {c.device_id for c in codes}:
            self._wake(device_id)

    def _judge_managed(self, code: CodeRecord, read: SlotRead, device: DeviceRecord,
                       now: datetime, window: timedelta) -> tuple[CodeRecord, list[Event]]:
        verdict = judge_read(code, read, now, window)
        if verdict in (ReadVerdict.CONFIRMED, ReadVerdict.TRUSTED):
            self._workers[code.device_id].pending_polls = 0
            code = replace(code, on_lock_held=held_after_read(code, read))
            if code.on_lock_pin == code.code:
                return self._confirmed(code, device, now)
            return code, []
        worker = self._workers[code.device_id]
        if verdict is ReadVerdict.STILL_PENDING:
            worker.pending_reads.add(read.slot)
            if read.pending and (code.last_write_at is None
                                 or now - code.last_write_at >= window):
                # Listed but not yet on the lock past the confirmation window (a lock the
                # cloud cannot reach now): look again after a growing pause, not at every
                # step. The code stays `setting`, so the delay warning comes once it is late.
                worker.pending_polls += 1
                worker.reads_resume_at = max(worker.reads_resume_at, self.clock.monotonic()
                                             + backoff_delay(worker.pending_polls,
                                                             _PENDING_REREAD_BASE_S,
                                                             _PENDING_REREAD_CAP_S, self._rng))
            return code, []
        worker.pending_polls = 0
        if verdict is ReadVerdict.NOT_APPLIED:
            # The change never reached the lock (the lock keeps what it had): send it again
            # after a backoff, and give up as for any write that keeps failing.
            if code.deleted:
                return code, []
            attempts = code.attempts + 1
            failed = replace(code, verified=False, attempts=attempts,
                             extra={**code.extra, NOT_APPLIED: True},
                             next_attempt_at=now + timedelta(seconds=backoff_delay(
                                 attempts, self.policy.retry_base_s, self.policy.retry_cap_s,
                                 self._rng)))
            if attempts < self.policy.max_attempts:
                return failed, []
            error = AccessCodeErrorCode.FAILED_TO_SET_ON_DEVICE
            message = (f"Failed to set code on device after {attempts} attempts: the change "
                       "never reached the lock")
            events = [] if code.has_error(error) else [self._event(
                EventType.ACCESS_CODE_FAILED_TO_SET_ON_DEVICE, code.device_id,
                code.access_code_id, {"error_code": error.value, "message": message})]
            return replace(failed, gave_up=True, errors=_with_issue(code.errors, error, message,
                                                                    now)), events
        if not code.verified and not code.ever_set:
            # Never confirmed: the write did not take; try again.
            return replace(code, on_lock_pin=None, verified=False), []
        # Changed or removed behind our back.
        message = ("Code was modified or removed externally after lockbridge successfully set "
                   "it on the device")
        events = [self._event(EventType.ACCESS_CODE_MODIFIED_EXTERNAL_TO_SEAM, code.device_id,
                              code.access_code_id, {"slot": read.slot,
                                                    "removed": verdict is ReadVerdict.MISSING})]
        warnings = _with_issue(code.warnings, AccessCodeWarningCode.CODE_MODIFIED_EXTERNAL_TO_SEAM,
                               message, now)
        if code.deleted:
            return replace(code, on_lock_pin=None, verified=False, warnings=warnings), events
        if code.allow_external_modification:
            if verdict is ReadVerdict.CHANGED and read.pin is not None:
                return replace(code, code=read.pin, on_lock_pin=read.pin, verified=True,
                               warnings=warnings), events
            return replace(code, on_lock_pin=None, verified=False, warnings=warnings,
                           extra={**code.extra, "external_hold": True}), events
        # Put it back: the slot is ours, the next write overwrites whatever is there.
        return replace(code, on_lock_pin=None, verified=False, warnings=warnings,
                       pending_since=now), events

    async def _resolve_unreadable_intents(self, worker: _Worker, device_id: str) -> None:
        """On a lock that cannot be read, an interrupted write is replayed (it is idempotent)."""
        worker.pending_reads.clear()
        worker.intents.clear()

    # -- availability ---------------------------------------------------------------------

    async def _set_availability(self, device_id: str, availability: Availability) -> None:
        async with self._lock_for(device_id):
            device = self.devices[device_id]
            if device.availability is availability:
                return
            now = self.clock.now()
            was_online = device.online
            errors = _drop_codes(device.errors, {c for c, _ in _AVAILABILITY_ERRORS.values()})
            if availability in _AVAILABILITY_ERRORS:
                error_code, message = _AVAILABILITY_ERRORS[availability]
                errors = _with_issue(errors, error_code, message, now)
            updated = replace(device, availability=availability, errors=errors)
            events: list[Event] = []
            if was_online and not updated.online:
                events.append(self._event(EventType.DEVICE_DISCONNECTED, device_id, None,
                                          {"reason": availability.value}))
            elif updated.online and not was_online:
                events.append(self._event(EventType.DEVICE_CONNECTED, device_id, None, {}))
            # Statuses that depend on reaching the lock (`unknown`) follow its availability.
            codes: list[CodeRecord] = []
            for code in self.codes_of(device_id):
                if code.is_managed:
                    refreshed = self._refresh(code, updated, now)
                    if refreshed is not code:
                        codes.append(refreshed)
            if updated.online and not was_online:
                # A reconnect is "something changed": retry given-up codes, re-read the lock.
                worker = self._workers[device_id]
                worker.full_read = True
                worker.probe_attempts = 0
                worker.read_failures = 0
                worker.reads_resume_at = 0.0
                latest = {c.access_code_id: c for c in codes}
                for code in self.codes_of(device_id):
                    code = latest.get(code.access_code_id, code)
                    if code.is_managed and (code.gave_up or code.attempts) \
                            and "refused_for_good" not in code.extra:
                        latest[code.access_code_id] = replace(
                            code, gave_up=False, attempts=0, next_attempt_at=None,
                            errors=_drop_codes(code.errors, _RETRYABLE_ERRORS))
                codes = list(latest.values())
            await self._commit(devices=[updated], codes=codes, events=events)
        if availability is not Availability.ONLINE:
            _LOG.warning("lock %s is %s", device_id, availability.value)
        else:
            _LOG.info("lock %s is online again", device_id)
        self._wake(device_id)

    async def _read_failed(self, worker: _Worker, device_id: str, exc: DriverError) -> None:
        """A read failed: mark the lock if it is unreachable, and back off further reads."""
        await self._command_failed_device(device_id, exc)
        worker.read_failures += 1
        delay = backoff_delay(worker.read_failures, self.policy.retry_base_s,
                              self.policy.retry_cap_s, self._rng)
        worker.reads_resume_at = self.clock.monotonic() + delay
        if worker.read_failures == _READ_FAILURES_WORTH_A_WARNING:
            _LOG.warning("lock %s: %d reads in a row failed (%s); reading it less often, "
                         "codes are still written", device_id, worker.read_failures, exc)

    async def _command_failed_device(self, device_id: str, exc: DriverError) -> None:
        device = self.devices[device_id]
        driver = self.drivers[device.driver]
        if isinstance(exc, Reauthenticate):
            await self._set_availability(device_id, Availability.ACCOUNT_DISCONNECTED)
        elif isinstance(exc, RetryLater | TimeoutError):
            reported = self._reported(driver, device.external_id)
            if reported is not Availability.ONLINE:
                await self._set_availability(device_id, reported)

    async def _probe_step(self, worker: _Worker, device: DeviceRecord,
                          driver: LockDriver) -> None:
        """One probe per backoff step for a lock that is not online; never a flood."""
        if worker.next_probe_at <= self.clock.monotonic():
            delay = backoff_delay(worker.probe_attempts + 1, self.policy.probe_base_s,
                                  self.policy.probe_cap_s, self._rng)
            worker.next_probe_at = self.clock.monotonic() + delay
        # Requests wake the worker but do not bring the probe forward: an offline lock waits.
        remaining = worker.next_probe_at - self.clock.monotonic()
        now = self.clock.now()
        wake_at = next_wakeup(device, self.codes_of(device.device_id), now, self.policy)
        if wake_at is not None:
            remaining = min(remaining, (wake_at - now).total_seconds())
        if remaining > 0:
            await self._wait(worker, remaining)
        if self.devices[device.device_id].online or \
                worker.next_probe_at > self.clock.monotonic():
            return
        worker.probe_attempts += 1
        try:
            async with asyncio.timeout(self._timeout):
                ok = await driver.probe(device.external_id)
        except (DriverError, TimeoutError):
            ok = False
        except Exception as exc:  # a driver's bug is a failed probe
            await self._note_fault(device.device_id, exc, "the driver's probe")
            ok = False
        if ok:
            await self._set_availability(device.device_id, Availability.ONLINE)

    # -- housekeeping -----------------------------------------------------------------------

    async def _housekeeping(self, device_id: str) -> None:
        """Bring statuses and time-driven warnings up to date; commit only what changed."""
        async with self._lock_for(device_id):
            device = self.devices[device_id]
            now = self.clock.now()
            changed: list[CodeRecord] = []
            events: list[Event] = []
            codes = self.codes_of(device_id)
            ended = [c for c in codes if forgettable(c, now, self.policy)]
            for code in ended:
                events.append(self._event(EventType.ACCESS_CODE_DELETED, device_id,
                                          code.access_code_id, {"reason": "ended"}))
            forgotten = {c.access_code_id for c in ended}
            for code in codes:
                if not code.is_managed or code.access_code_id in forgotten:
                    continue
                updated = self._refresh(code, device, now)
                updated, more = self._delay_warnings(updated, now)
                updated = self._foresight(updated, device, codes, now)
                updated = _expire_external_warning(updated, now)
                events.extend(more)
                if updated != code:
                    changed.append(updated)
            if device.backup_pool_enabled:
                changed.extend(self._refill(device, codes, now))
            device_updated = self._device_warnings(device, now)
            device_updated = self._pool_issues(device_updated, [*codes, *changed], now)
            if changed or events or device_updated is not device:
                await self._commit(codes=changed, events=events, drop=sorted(forgotten),
                                   devices=[device_updated] if device_updated is not device
                                   else [])
        if device.backup_pool_enabled and self.pool_settings(device).auto_pull:
            for code in self.codes_of(device_id):
                if backup.due_for_auto_pull(code, self.devices[device_id], self.clock.now(),
                                            self.policy, self.pool_settings(device)):
                    with contextlib.suppress(EngineError):
                        await self.pull_backup(code.access_code_id, automatic=True)

    # -- backup pool ----------------------------------------------------------------------

    def pool_settings(self, device: DeviceRecord) -> PoolSettings:
        """The pool settings of one device (its override, or the bridge's)."""
        return self._pool_overrides.get(device.external_id, self.pool)

    def backup_available(self, code: CodeRecord) -> bool | None:
        """`is_backup_access_code_available` for a code; None where it does not apply."""
        device = self.devices.get(code.device_id)
        if (device is None or not device.backup_pool_enabled or code.is_backup
                or code.type is not AccessCodeType.TIME_BOUND or not code.is_managed):
            return None
        if code.pulled_backup_access_code_id is not None:
            return True
        return bool(backup.available(self.codes_of(code.device_id)))

    async def pull_backup(self, access_code_id: str, automatic: bool = False,
                          on_commit: Callable[[Tx], None] | None = None,
                          ) -> tuple[CodeRecord, CodeRecord]:
        """Hand out a backup for a time-bound code: (backup, original). Repeats return the same."""
        original = self.code(access_code_id)
        async with self._lock_for(original.device_id):
            original = self.code(access_code_id)
            device = self.device(original.device_id)
            if original.is_backup:
                raise EngineError("invalid_input", "This is a backup code itself",
                                  "access_code_id")
            if original.type is not AccessCodeType.TIME_BOUND:
                raise EngineError("invalid_input", "Backup codes can only be pulled for "
                                  "time_bound access codes", "access_code_id")
            if not device.backup_pool_enabled:
                raise EngineError("backup_access_code_pool_not_enabled",
                                  "The backup access code pool is not enabled on this device: "
                                  "create a code with use_backup_access_code_pool first")
            already = original.pulled_backup_access_code_id
            if already is not None and already in self.codes:
                return self.codes[already], original
            ready = backup.available(self.codes_of(device.device_id))
            if not ready:
                raise EngineError("no_backup_access_code_available",
                                  "The backup access code pool is empty; it refills when the "
                                  "lock can take new codes")
            now = self.clock.now()
            chosen = ready[0]
            pulled = replace(chosen, backup_pulled_for=access_code_id, backup_pulled_at=now,
                             type=AccessCodeType.TIME_BOUND, starts_at=now,
                             ends_at=original.ends_at, revision=chosen.revision + 1)
            pulled = self._refresh(pulled, device, now)
            linked = replace(original, pulled_backup_access_code_id=chosen.access_code_id)
            event = self._event(EventType.ACCESS_CODE_BACKUP_PULLED, device.device_id,
                                access_code_id, {
                                    "original_access_code_id": access_code_id,
                                    "backup_access_code_id": chosen.access_code_id,
                                    "backup_code": chosen.code,
                                    "automatic": automatic,
                                })
            await self._commit(codes=[pulled, linked], events=[event], extra=on_commit)
            _LOG.info("lock %s: backup %s pulled for code %s%s", device.device_id,
                      chosen.access_code_id, access_code_id, " automatically" if automatic
                      else "")
        self._wake(device.device_id)
        return self.codes[chosen.access_code_id], self.codes[access_code_id]

    def _refill(self, device: DeviceRecord, codes: Sequence[CodeRecord],
                now: datetime) -> list[CodeRecord]:
        """New backup records to bring the pool to its target; the worker puts them on."""
        settings = self.pool_settings(device)
        count = backup.missing(device, codes, settings)
        taken = [c.code for c in codes if c.code and not c.deleted]
        made: list[CodeRecord] = []
        for _ in range(count):
            code_id = str(uuid.uuid4())
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

    def _pool_issues(self, device: DeviceRecord, codes: Sequence[CodeRecord],
                     now: datetime) -> DeviceRecord:
        if not device.backup_pool_enabled:
            return device
        settings = self.pool_settings(device)
        latest = {c.access_code_id: c for c in codes}
        current = list(latest.values())
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
                target_list = _with_issue(target_list, code, message, now)
            elif not active and has:
                target_list = _drop_codes(target_list, {code})
            if is_error:
                errors = target_list
            else:
                warnings = target_list
        if errors is device.errors and warnings is device.warnings:
            return device
        return replace(device, errors=errors, warnings=warnings)

    def _foresight(self, code: CodeRecord, device: DeviceRecord, codes: Sequence[CodeRecord],
                   now: datetime) -> CodeRecord:
        problem = foresee_problem(code, device, codes, now, self.policy)
        warning = AccessCodeWarningCode.WILL_NOT_FIT_ON_DEVICE
        if problem and not code.has_warning(warning):
            code = replace(code, warnings=_with_issue(code.warnings, warning,
                                                      f"Checked ahead: {problem}", now))
        elif not problem and code.has_warning(warning):
            code = replace(code, warnings=_drop_codes(code.warnings, {warning}))
        # An operator must know when a guest's window depends on this box being up.
        enforced = AccessCodeWarningCode.SCHEDULE_ENFORCED_BY_BRIDGE
        by_bridge = (code.type is AccessCodeType.TIME_BOUND and not code.deleted
                     and not uses_native_schedule(device))
        if by_bridge and not code.has_warning(enforced):
            lead = self.policy.bridge_lead.total_seconds() / 60
            code = replace(code, warnings=_with_issue(
                code.warnings, enforced,
                "This lock cannot switch codes on and off by itself: lockbridge puts the code "
                f"on {lead:.0f} min before starts_at and takes it off at ends_at, so the "
                "bridge must be running at those times", now))
        elif not by_bridge and code.has_warning(enforced):
            code = replace(code, warnings=_drop_codes(code.warnings, {enforced}))
        return code

    def _delay_warnings(self, code: CodeRecord, now: datetime) -> tuple[CodeRecord, list[Event]]:
        events: list[Event] = []
        late = (code.pending_since is not None
                and now - code.pending_since >= self.policy.delay_warning_after)
        setting = code.status is AccessCodeStatus.SETTING and late
        removing = code.status is AccessCodeStatus.REMOVING and late
        warnings = code.warnings
        for active, warning, event in (
            (setting, AccessCodeWarningCode.DELAY_IN_SETTING_ON_DEVICE,
             EventType.ACCESS_CODE_DELAY_IN_SETTING_ON_DEVICE),
            (removing, AccessCodeWarningCode.DELAY_IN_REMOVING_FROM_DEVICE,
             EventType.ACCESS_CODE_DELAY_IN_REMOVING_FROM_DEVICE),
        ):
            has = any(w.code == warning for w in warnings)
            if active and not has:
                warnings = _with_issue(warnings, warning, "Delay in " + (
                    "setting code on device" if warning.endswith("setting_on_device")
                    else "removing code from device"), now)
                events.append(self._event(event, code.device_id, code.access_code_id, {}))
            elif not active and has:
                warnings = _drop_codes(warnings, {warning})
        if warnings is not code.warnings:
            code = replace(code, warnings=warnings)
        return code, events

    def _device_warnings(self, device: DeviceRecord, now: datetime) -> DeviceRecord:
        warnings = device.warnings
        needs_zone = device.info.capabilities.native_schedules and device.time_zone is None
        has_zone_warning = any(w.code == DeviceWarningCode.UNKNOWN_TIME_ZONE for w in warnings)
        if needs_zone and not has_zone_warning:
            warnings = _with_issue(warnings, DeviceWarningCode.UNKNOWN_TIME_ZONE,
                                   "The lock's time zone is unknown, so lockbridge enforces "
                                   "start and end times itself; set time_zone in the config",
                                   now)
        elif not needs_zone and has_zone_warning:
            warnings = _drop_codes(warnings, {DeviceWarningCode.UNKNOWN_TIME_ZONE})
        synced = self._clock_synchronized()
        has_sync = any(w.code == DeviceWarningCode.SYSTEM_CLOCK_UNSYNCHRONIZED for w in warnings)
        if not synced and not has_sync:
            warnings = _with_issue(warnings, DeviceWarningCode.SYSTEM_CLOCK_UNSYNCHRONIZED,
                                   "The system clock is not synchronised; time-bound codes wait "
                                   "until it is", now)
        elif synced and has_sync:
            warnings = _drop_codes(warnings, {DeviceWarningCode.SYSTEM_CLOCK_UNSYNCHRONIZED})
        return device if warnings is device.warnings else replace(device, warnings=warnings)

    async def _clock_watch(self) -> None:
        """Wake every lock when the system clock becomes synchronised (or stops being)."""
        while True:
            try:
                synced = self._clock_synchronized()
            except Exception:  # an unreadable clock state must not stop the locks
                _LOG.exception("cannot tell whether the system clock is synchronised")
                synced = False
            if synced != self._clock_was_synced:
                self._clock_was_synced = synced
                for device_id in self._workers:
                    self._wake(device_id)
            # Right after boot the clock jumps when NTP answers: look often until it is trusted.
            await self.clock.sleep(60.0 if synced else 5.0)

    # -- plumbing -------------------------------------------------------------------------

    async def _register(self, driver_name: str, info: DeviceInfo,
                        availability: Availability) -> None:
        device_id = str(uuid.uuid5(_DEVICE_NAMESPACE, f"{driver_name}:{info.external_id}"))
        override = self._overrides.get(info.external_id, {})
        info = _with_pin_overrides(info, override)
        zone = lock_zone(override.get("time_zone"), info.time_zone,
                         self._zone_for(driver_name, info.external_id))
        spacing = override.get("command_spacing_s")
        caps = info.capabilities
        if spacing is None and caps.min_command_spacing_s == 0:
            spacing = 0.0
        existing = self.devices.get(device_id)
        record = DeviceRecord(
            device_id=device_id, driver=driver_name, external_id=info.external_id, info=info,
            created_at=existing.created_at if existing else self.clock.now(),
            availability=existing.availability if existing else Availability.ONLINE,
            display_name=override.get("display_name") or info.display_name,
            time_zone=zone, errors=_driver_errors(existing.errors if existing else (),
                                                  existing.info if existing else None, info,
                                                  self.clock.now()),
            warnings=existing.warnings if existing else (),
            backup_pool_enabled=existing.backup_pool_enabled if existing else False,
            command_spacing_s=spacing,
            is_managed=existing.is_managed if existing else True,
        )
        self._by_external[(driver_name, info.external_id)] = device_id
        self._workers[device_id] = _Worker(device_id)
        await self._commit(devices=[record])
        if availability is not record.availability:
            await self._set_availability(device_id, availability)

    def _validate_and_choose_pin(self, device: DeviceRecord, code: CodeRecord,
                                 request: CodeRequest, now: datetime) -> CodeRecord:
        if not device.info.capabilities.programs_codes:
            raise EngineError("invalid_input", f"{device.display_name} cannot be given PIN "
                              "codes by lockbridge: this lock's maker issues its passwords only "
                              "through its own app or cloud", "device_id")
        if code.type is AccessCodeType.TIME_BOUND:
            if code.starts_at is None or code.ends_at is None:
                raise EngineError("invalid_input", "A time_bound code needs starts_at and "
                                  "ends_at", "starts_at")
            if code.starts_at.tzinfo is None or code.ends_at.tzinfo is None:
                raise EngineError("invalid_input", "Times must carry a time zone (UTC)",
                                  "starts_at")
            if code.ends_at <= code.starts_at:
                raise EngineError("invalid_input", "ends_at must be after starts_at", "ends_at")
            if code.ends_at <= now:
                raise EngineError("invalid_input", "ends_at is in the past", "ends_at")
        others = [c for c in self.codes_of(device.device_id)
                  if c.access_code_id != code.access_code_id]
        caps = device.info.capabilities
        if caps.algorithmic_pins:
            if request.code is not None:
                raise EngineError("invalid_input", "This lock generates its own PINs; leave "
                                  "code out and read it from the access_code.set_on_device "
                                  "event", "code")
            return replace(code, code=None, requested_code=request.preferred_code)
        if request.code is not None:
            problem = permanent_problem(request.code, None, device)
            if problem:
                raise EngineError("invalid_input", f"The lock can never take this code: "
                                  f"{problem}", "code")
            other = pin_conflict(request.code, code, device, others)
            if other is not None:
                raise EngineError("duplicate_access_code", "Another code on this lock uses "
                                  "this PIN (or one it would prefix) at the same time", "code")
            REDACTOR.remember(request.code)
            return replace(code, code=request.code, requested_code=request.code)
        preferred = request.preferred_code
        if preferred is not None:
            problem = permanent_problem(preferred, None, device) or (
                "the PIN is already in use on the lock"
                if pin_conflict(preferred, code, device, others) else None)
            if problem is None:
                REDACTOR.remember(preferred)
                return replace(code, code=preferred, requested_code=preferred)
            # Remembered as requested, so the warning stays once the generated PIN is set.
            code = replace(code, requested_code=preferred, warnings=_with_issue(
                code.warnings, AccessCodeWarningCode.CODE_DIFFERS_FROM_REQUESTED,
                f"The requested PIN could not be used ({problem}); a compliant PIN was "
                "generated instead", now))
        if code.code is not None and not permanent_problem(code.code, None, device) \
                and not pin_conflict(code.code, code, device, others):
            return code
        length = code.preferred_code_length
        lengths = device.info.constraints.allowed_lengths()
        if length is not None and length not in lengths:
            raise EngineError("invalid_input", f"preferred_code_length must be within "
                              f"{lengths.start}..{lengths.stop - 1} on this lock",
                              "preferred_code_length")
        taken = [c.code for c in others if c.code and not c.deleted]
        pin = generate_pin(device.info.constraints, taken, self._rng, length)
        REDACTOR.remember(pin)
        return replace(code, code=pin)

    def _refresh(self, code: CodeRecord, device: DeviceRecord, now: datetime) -> CodeRecord:
        updated = with_status(code, device, now, self.policy)
        if updated.status in (AccessCodeStatus.SETTING, AccessCodeStatus.REMOVING):
            if updated.pending_since is None:
                updated = replace(updated, pending_since=now)
        elif updated.pending_since is not None:
            updated = replace(updated, pending_since=None)
        return updated

    def _code_in_slot(self, device_id: str, slot: int | None) -> CodeRecord | None:
        for code in self.codes_of(device_id):
            if slot is not None and code.slot == slot:
                return code
        return None

    def _event(self, kind: EventType, device_id: str | None, access_code_id: str | None,
               data: dict[str, Any]) -> Event:
        return Event(event_id=str(uuid.uuid4()), event_type=kind, occurred_at=self.clock.now(),
                     device_id=device_id, access_code_id=access_code_id, data=data)

    async def _commit(
        self, *, codes: Iterable[CodeRecord] = (), devices: Iterable[DeviceRecord] = (),
        events: Iterable[Event] = (), drop: Iterable[str] = (),
        intents: Iterable[Intent] = (), drop_intents: Iterable[tuple[str, int]] = (),
        extra: Callable[[Tx], None] | None = None,
    ) -> list[Event]:
        """Persist changes and their events in one transaction, then update memory."""
        codes, devices, events = list(codes), list(devices), list(events)
        drop, intents, drop_intents = list(drop), list(intents), list(drop_intents)
        if not (codes or devices or events or drop or intents or drop_intents or extra):
            return []

        def apply(tx: Tx) -> None:
            for device in devices:
                tx.put_device(device)
            for code in codes:
                tx.put_code(code)
            for code_id in drop:
                tx.drop_code(code_id)
            for event in events:
                tx.add_event(event)
            for intent in intents:
                tx.put_intent(intent)
            for device_id, slot in drop_intents:
                tx.drop_intent(device_id, slot)
            if extra is not None:
                extra(tx)

        _, appended = await self.store.write(apply)
        for device in devices:
            self.devices[device.device_id] = device
        for code in codes:
            self.codes[code.access_code_id] = code
            self._by_device.setdefault(code.device_id, {})[code.access_code_id] = code
        for code_id in drop:
            gone = self.codes.pop(code_id, None)
            if gone is not None:
                self._by_device.get(gone.device_id, {}).pop(code_id, None)
        if appended:
            for listener in self._listeners:
                result = listener(appended)
                if result is not None:
                    await result
        return appended

    def _lock_for(self, device_id: str) -> asyncio.Lock:
        lock = self._locks.get(device_id)
        if lock is None:
            lock = self._locks[device_id] = asyncio.Lock()
        return lock

    def _wake(self, device_id: str) -> None:
        worker = self._workers.get(device_id)
        if worker is not None:
            worker.wake.set()

    async def _wait(self, worker: _Worker, seconds: float) -> bool:
        """Sleep on the clock until `seconds` pass or the worker is woken; True if woken."""
        if worker.wake.is_set():
            worker.wake.clear()
            return True
        worker.waiting = True
        waker = asyncio.ensure_future(worker.wake.wait())
        sleeper = asyncio.ensure_future(self.clock.sleep(seconds))
        try:
            done, _ = await asyncio.wait({waker, sleeper}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            # Cancelled, not awaited: awaiting here could swallow our own cancellation.
            for task in (waker, sleeper):
                task.cancel()
            worker.waiting = False
        woken = waker in done
        worker.wake.clear()
        return woken

    async def _pace(self, worker: _Worker, device: DeviceRecord) -> None:
        """One command at a time per lock, at least the lock's spacing apart."""
        spacing = device.command_spacing_s
        if spacing is None:
            spacing = max(self._default_spacing, device.info.capabilities.min_command_spacing_s)
        if worker.last_command_at is not None:
            remaining = worker.last_command_at + spacing - self.clock.monotonic()
            if remaining > 0:
                await self.clock.sleep(remaining)
        worker.last_command_at = self.clock.monotonic()

    def command_timeout(self, device: DeviceRecord) -> float:
        """How long one command to this lock may take: what its driver states (its own waits
        included), else the engine's command timeout."""
        stated = device.info.capabilities.command_timeout_s
        return self._timeout if stated is None else stated

    async def _call(self, device: DeviceRecord, op: Awaitable[Any],
                    timeout: float | None = None) -> Any:
        limit = self.command_timeout(device) if timeout is None else timeout
        ok = False
        async with self._budgets[device.driver]:
            # Measured from when the driver gets the call, so queueing for a budget is not
            # counted as the lock's latency.
            started = time.perf_counter()
            try:
                # asyncio.timeout, not wait_for: on 3.11 wait_for can swallow a cancellation
                # that arrives as the operation completes, leaving a task that will not stop.
                async with asyncio.timeout(limit):
                    result = await op
                ok = True
                return result
            except TimeoutError as exc:
                raise RetryLater(f"no answer from the lock within {limit:.0f} s") from exc
            except (DriverError, asyncio.CancelledError):
                raise
            except Exception as exc:  # the driver gateway's fault boundary
                # A driver's bug: nobody knows what reached the lock, exactly as with no answer.
                await self._note_fault(device.device_id, exc, "the driver")
                raise RetryLater(f"the driver failed unexpectedly ({type(exc).__name__})") \
                    from exc
            finally:
                if self.command_observer is not None:
                    self.command_observer(device.driver, time.perf_counter() - started, ok)


# A worker that hit an unexpected exception starts again after 1 s, doubling up to 5 minutes;
# its warning stays until it has worked for 10 minutes without one.
_FAULT_RESTART_BASE_S = 1.0
_FAULT_RESTART_CAP_S = 300.0
_FAULT_WARNING_HOLD_S = 600.0
# Time allowed per slot when a lock's every slot is read (one radio round trip each on Z-Wave
# and Zigbee locks reached over MQTT; the field notes measure 1.2 to 1.9 s).
_FULL_READ_S_PER_SLOT = 2.0
_READ_FAILURES_WORTH_A_WARNING = 3
# Slot reads that all showed nothing, with none showing a PIN or an empty slot, before a lock
# counts as write-only.
_UNREADABLE_READS_FOR_WRITE_ONLY = 5
# Refusals that sending the same code again cannot change (the field notes: "say so and stop").
_REFUSED_FOR_GOOD = frozenset({RejectReason.INVALID_PIN, RejectReason.SLOT_OUT_OF_RANGE,
                               RejectReason.UNSUPPORTED})
# How soon a change a cloud still has on its way to the lock is looked for again, once its
# confirmation window is over: from half a second, doubling, up to 30 s.
_PENDING_REREAD_BASE_S = 0.5
_PENDING_REREAD_CAP_S = 30.0
# Key in `CodeRecord.extra`: when the first create of a code on an id-addressed lock went out.
_FIRST_SENT_AT = "first_sent_at"
# How soon a code waiting for the same PIN to leave the lock looks again.
_BLOCKED_RETRY = timedelta(minutes=1)

_RETRYABLE_ERRORS = frozenset({
    AccessCodeErrorCode.FAILED_TO_SET_ON_DEVICE,
    AccessCodeErrorCode.FAILED_TO_REMOVE_FROM_DEVICE,
    AccessCodeErrorCode.NO_SPACE_FOR_ACCESS_CODE_ON_DEVICE,
    AccessCodeErrorCode.DUPLICATE_CODE_ON_DEVICE,
}) | VENDOR_SET_ERRORS


_SET_ERRORS = _RETRYABLE_ERRORS - {AccessCodeErrorCode.FAILED_TO_REMOVE_FROM_DEVICE}


def _with_issue(issues: tuple[Issue, ...], code: str, message: str,
                now: datetime) -> tuple[Issue, ...]:
    if any(i.code == code for i in issues):
        return tuple(Issue(i.code, message, i.created_at) if i.code == code else i
                     for i in issues)
    return (*issues, Issue(str(code), message, now))


# How long `code_modified_external_to_seam` stays on a code the bridge put back, so an operator
# sees it happened (the event stays in the history for good).
_EXTERNAL_WARNING_KEPT = timedelta(hours=24)


def _expire_external_warning(code: CodeRecord, now: datetime) -> CodeRecord:
    """Drop the warning a day after the code was put back and verified on the lock again.

    A code that allows external changes keeps it: the lock's PIN is the one made there."""
    warning = AccessCodeWarningCode.CODE_MODIFIED_EXTERNAL_TO_SEAM
    issue = next((w for w in code.warnings if w.code == warning), None)
    if issue is None or code.allow_external_modification or not code.verified \
            or code.on_lock_pin != code.code or now - issue.created_at < _EXTERNAL_WARNING_KEPT:
        return code
    return replace(code, warnings=_drop_codes(code.warnings, {warning}))


def _pool_switched_on(device: DeviceRecord, field: str) -> DeviceRecord | None:
    """The device with its backup pool on (once on, for good: seed 001), None if it already
    was; EngineError naming `field` where the lock cannot hold a pool."""
    if device.backup_pool_enabled:
        return None
    if not backup.supports_pool(device):
        raise EngineError("invalid_input", "This device does not support a backup access code "
                          "pool (properties.supports_backup_access_code_pool is false)", field)
    return replace(device, backup_pool_enabled=True)


def _with_pin_overrides(info: DeviceInfo, override: dict[str, Any]) -> DeviceInfo:
    """The lock's PIN rules with what the operator knows and the driver cannot read."""
    length = override.get("pin_length")
    prefixes = tuple(override.get("pin_forbidden_prefixes") or ())
    if length is None and not prefixes:
        return info
    rules = info.constraints
    rules = replace(rules, fixed_length=length if length is not None else rules.fixed_length,
                    forbidden_prefixes=tuple(dict.fromkeys((*rules.forbidden_prefixes,
                                                            *prefixes))))
    return replace(info, constraints=rules)


def _driver_errors(errors: tuple[Issue, ...], before: DeviceInfo | None, info: DeviceInfo,
                   now: datetime) -> tuple[Issue, ...]:
    """A device's errors with those its driver names (`DeviceInfo.errors`) brought up to date:
    one the driver no longer names is gone, one it still names keeps when it began."""
    named = {p.code for p in info.errors}
    errors = _drop_codes(errors, {p.code for p in before.errors} - named if before else ())
    for problem in info.errors:
        errors = _with_issue(errors, problem.code, problem.message, now)
    return errors


def _drop_codes(issues: tuple[Issue, ...], codes: Iterable[str]) -> tuple[Issue, ...]:
    wanted = {str(c) for c in codes}
    if not any(i.code in wanted for i in issues):
        return issues
    return tuple(i for i in issues if i.code not in wanted)
