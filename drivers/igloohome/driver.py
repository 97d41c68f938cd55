"""Igloohome locks through the iglooaccess cloud API: algoPINs, and custom PINs through bridges.

What Igloohome does, as published (docs/drivers/igloohome-api-facts.md), and what the driver
makes of it:

- `GET /devices` lists the account's locks and bridges; a lock's `linkedDevices` names its
  bridge. Nothing says whether a bridge or lock is online: a bridge is learnt offline from a
  job it refuses.
- A lock without a bridge takes algoPINs: the cloud gives a PIN the lock computes itself for a
  window (`windows.plan` picks hourly, daily or permanent), so "setting" a code is one request,
  the PIN is the lock's (`WriteResult.pin`), nothing can be read back, and nothing can be
  deleted before its end (Igloohome deletes one only from its app, over Bluetooth, at the lock):
  such a delete is refused with the reason, and succeeds once the PIN has expired. A PIN that
  lasts more than 24 hours must be used within 24 hours of its start: the code carries Seam's
  warning `igloo_algopin_must_be_used_within_24_hours`.
- A lock linked to a bridge takes custom PINs (4 to 6 digits) through bridge jobs (job 4
  creates, job 5 deletes), polled until done on the driver's clock; a bridge runs one job at a
  time, so the driver sends one at a time per bridge. A refused job names Seam's errors:
  `igloohome_bridge_offline` (the bridge is offline or the lock is not linked to it; the lock
  then counts as offline for `bridge_offline_hold_s`, after which the engine tries again) and
  `igloohome_bridge_too_many_pending_jobs` (asked again after `busy_retry_s`, doubling).
- The driver's records of what it made are in `records.CodeBook` (Igloohome lists no PINs).

The engine addresses codes by integers the driver hands out.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from bridge.clock import Clock
from bridge.driver import (
    Addressing,
    Availability,
    CodeWrite,
    CommandRejected,
    DeviceInfo,
    DeviceProblem,
    DriverError,
    DriverEvent,
    DriverEventKind,
    LockCapabilities,
    LockState,
    PinConstraints,
    Reauthenticate,
    RejectReason,
    RetryLater,
    SlotRead,
    SlotState,
    WriteResult,
)
from bridge.model import AccessCodeWarningCode
from drivers.account import AccountDriver
from drivers.igloohome import windows
from drivers.igloohome.api import Account, ApiRefusal, Unreachable
from drivers.igloohome.bridgejobs import BridgeJobs
from drivers.igloohome.config import Config
from drivers.igloohome.records import CUSTOM, CodeBook, CodeRecord

_LOG = logging.getLogger(__name__)
CAPACITY = 199  # PINs a lock holds, online and offline together
NAME_MAX = 60  # accessName
MAX_VARIANCE = 3  # PINs for one hourly, daily or permanent slot
ALGOPIN_CONSTRAINTS = PinConstraints(min_length=7, max_length=9, rejects_duplicates=True)
CUSTOM_CONSTRAINTS = PinConstraints(min_length=4, max_length=6, rejects_duplicates=True)
ACTIVATION_WARNING = DeviceProblem(
    AccessCodeWarningCode.IGLOO_ALGOPIN_MUST_BE_USED_WITHIN_24_HOURS,
    "Algopins must be used within 24 hours: this PIN lasts more than a day and works only if "
    "first entered on the keypad within 24 hours of its start")
_CLOCK_SKEW = timedelta(minutes=2)


@dataclass(slots=True)
class _Lock:
    device_id: str
    info: DeviceInfo
    availability: Availability
    bridge_id: str | None = None
    algopins: bool = True
    # Monotonic second until which the lock counts as offline (its bridge said so).
    offline_until: float = 0.0


class IgloohomeDriver(AccountDriver[_Lock]):
    """Every lock of one iglooaccess client."""

    label = "igloohome"
    account = "the Igloohome account"

    def __init__(self, config: Config, clock: Clock, records_file: Path) -> None:
        super().__init__(config.name, clock, config.poll_interval_s)
        self._config = config
        self._account = Account(config, clock)
        self._book = CodeBook(records_file)
        self._jobs = BridgeJobs(config, clock, self._account)

    async def _open(self) -> None:
        self._book.prepare()
        await self._account.open()

    async def _close(self) -> None:
        await self._account.close()

    # -- codes ----------------------------------------------------------------------------

    async def list_codes(self, external_id: str) -> list[SlotRead]:
        """The codes the driver made on the lock (Igloohome lists none): never readable."""
        lock = await self._fresh(external_id)
        return [_unreadable(r) for _, r in sorted(self._book.of(lock.device_id).items())]

    async def read_slots(self, external_id: str, slots: Sequence[int]) -> list[SlotRead]:
        """Unreadable where the driver made a code, empty elsewhere."""
        lock = await self._fresh(external_id)
        records = self._book.of(lock.device_id)
        return [_unreadable(records[s]) if s in records else SlotRead(s, SlotState.EMPTY)
                for s in slots]

    async def write_code(self, external_id: str, code: CodeWrite) -> WriteResult:
        """An algoPIN for the code's window, or a custom PIN through the lock's bridge."""
        lock = self._lock(external_id)
        if lock.algopins:
            return await self._write_algopin(lock, code)
        return await self._write_custom(lock, code)

    async def clear_code(self, external_id: str, slot: int) -> None:
        """Delete a custom PIN through the bridge; an algoPIN only once it has expired (before,
        the refusal says why)."""
        lock = await self._fresh(external_id)
        record = self._book.of(lock.device_id).get(slot)
        if record is None:
            return
        if record.kind != CUSTOM:
            end = record.ends_at()
            if end is None or end > self._clock.now():
                until = f"until {end.isoformat()}" if end else "for good"
                raise CommandRejected(
                    RejectReason.UNSUPPORTED,
                    f"an Igloohome algoPIN cannot be deleted before its end: the lock computes "
                    f"it offline and it keeps working {until}; only the igloohome app can "
                    "delete it, over Bluetooth at the lock")
            self._book.drop(lock.device_id, slot)
            return
        await self._bridge_job(lock, self._jobs.delete(lock, record, self._book), clear=True)
        self._book.drop(lock.device_id, slot)

    async def probe(self, external_id: str) -> bool:
        """Ask the cloud for the lock now."""
        try:
            await self._fresh(external_id)
        except DriverError:
            return False
        return True

    # -- algoPINs -------------------------------------------------------------------------

    async def _write_algopin(self, lock: _Lock, code: CodeWrite) -> WriteResult:
        zone = lock.info.time_zone or "UTC"
        try:
            plan = windows.plan(code.window, zone, self._clock.now())
        except windows.WindowRefused as exc:
            raise CommandRejected(RejectReason.UNSUPPORTED, str(exc)) from None
        records = self._book.of(lock.device_id)
        mine = records.get(code.slot) if code.slot is not None else None
        if mine is None and code.first_sent_at is not None:
            mine = next((r for r in records.values() if r.key == code.key
                         and _made_since(r, code.first_sent_at)), None)
        if mine is not None:
            if (mine.kind, mine.start, mine.end) == plan.key():
                return self._algopin_result(lock, mine, plan)
            if not _covers(plan, mine):
                raise CommandRejected(
                    RejectReason.UNSUPPORTED,
                    "an Igloohome algoPIN cannot be changed, and its PIN keeps working to its "
                    "end: a window that is shorter or moved would leave it working outside the "
                    "new one (delete the code once it has ended and create a new one)")
            # A longer stay: a new PIN for the new window; the old one ends inside it.
        used = {r.variance for r in records.values() if (r.kind, r.start, r.end) == plan.key()}
        variance = next((v for v in range(1, MAX_VARIANCE + 1) if v not in used), None)
        if variance is None:
            raise CommandRejected(RejectReason.NO_SPACE,
                                  f"Igloohome gives at most {MAX_VARIANCE} algoPINs for the same "
                                  "window of a lock: move this code's start by an hour")
        body: dict[str, Any] = {"variance": variance, "accessName": _access_name(code.name),
                                **plan.dates()}
        try:
            answer = await self._account.call(
                "POST", f"/devices/{lock.device_id}/algopin/{plan.kind}", body)
        except ApiRefusal as refusal:
            raise await self._refused(lock, refusal) from None
        except DriverError as exc:
            self._account_failed(exc)
            raise
        pin = answer.get("pin") if isinstance(answer, dict) else None
        if not isinstance(pin, str) or not pin.isdigit():
            raise RetryLater("Igloohome's algoPIN answer has no PIN")
        kind, start, end = plan.key()
        slot = mine.slot if mine is not None else self._book.new_slot()
        record = CodeRecord(slot=slot, kind=kind, start=start, end=end,
                            sealed_pin=self._book.seal(pin, lock.device_id), key=code.key,
                            variance=variance, pin_id=str(answer.get("pinId") or ""),
                            made_at=self._clock.now().isoformat())
        self._book.put(lock.device_id, record)
        if plan.widened:
            _LOG.info("igloohome %s: lock %s: the code's window was widened to what an "
                      "algoPIN takes (whole hours; a daily PIN ends at its start's hour)",
                      self.name, lock.device_id)
        return self._algopin_result(lock, record, plan)

    def _algopin_result(self, lock: _Lock, record: CodeRecord,
                        plan: windows.AlgoPinPlan) -> WriteResult:
        warnings = (ACTIVATION_WARNING,) if plan.must_be_used_within_24_hours else ()
        return WriteResult(record.slot, self._book.pin(record, lock.device_id),
                           confirmed=True, warnings=warnings)

    # -- custom PINs through a bridge -----------------------------------------------------

    async def _write_custom(self, lock: _Lock, code: CodeWrite) -> WriteResult:
        pin = code.pin
        if pin is None or not pin.isdigit() or not 4 <= len(pin) <= 6:
            raise CommandRejected(RejectReason.INVALID_PIN,
                                  "an Igloohome custom PIN has 4 to 6 digits")
        start, end = self._jobs.window(lock.info.time_zone, code.window)
        records = self._book.of(lock.device_id)
        mine = records.get(code.slot) if code.slot is not None else None
        same_pin = [r for r in records.values() if r is not mine and r.kind == CUSTOM
                    and self._book.pin(r, lock.device_id) == pin]
        if same_pin:
            earlier = same_pin[0]
            if mine is None and code.first_sent_at is not None and \
                    (code.key is None or earlier.key == code.key) and \
                    _made_since(earlier, code.first_sent_at):
                mine = earlier  # our earlier create, its answer lost
            else:
                raise CommandRejected(RejectReason.DUPLICATE_PIN,
                                      "another code lockbridge made on the lock has this PIN")
        if mine is not None and mine.pending:
            # An earlier attempt's job: see it through first (a command that gave up on it).
            await self._bridge_job(lock, self._jobs.create(lock, mine, code.name, self._book))
            mine = self._book.of(lock.device_id).get(mine.slot)
        if mine is not None and self._book.pin(mine, lock.device_id) == pin and \
                (mine.start, mine.end) == (start, end):
            return WriteResult(mine.slot, pin)
        if mine is not None:
            # A change: the lock takes a PIN's window only with the PIN, so off and on again.
            await self._bridge_job(lock, self._jobs.delete(lock, mine, self._book))
        record = CodeRecord(
            slot=mine.slot if mine is not None else self._book.new_slot(), kind=CUSTOM,
            start=start, end=end, sealed_pin=self._book.seal(pin, lock.device_id),
            key=code.key, made_at=self._clock.now().isoformat())
        await self._bridge_job(lock, self._jobs.create(lock, record, code.name, self._book))
        return WriteResult(record.slot, pin)

    async def _bridge_job(self, lock: _Lock, job: Any, *, clear: bool = False) -> None:
        """Run one job coroutine of `BridgeJobs`, turning its refusals into the engine's."""
        try:
            await job
        except ApiRefusal as refusal:
            raise await self._refused(lock, refusal, clear=clear) from None
        except DriverError as exc:
            self._account_failed(exc)
            raise

    async def _refused(self, lock: _Lock, refusal: ApiRefusal, *,
                       clear: bool = False) -> DriverError:
        """What a refusal of a call about one lock means for the engine."""
        if refusal.error in ("BridgeOffline", "LockNotLinkedToBridge"):
            lock.offline_until = self._clock.monotonic() + self._config.bridge_offline_hold_s
            self._note(lock, Availability.OFFLINE)
            self._poll_now.set()  # the lock may have a new bridge, or none
            if clear:
                return RetryLater("the lock's igloohome bridge is offline, or the lock is not "
                                  "linked to it")
            return self._jobs.offline_error(refusal)
        if refusal.status == 404:
            self._poll_now.set()
            return RetryLater(f"the Igloohome account no longer has lock {lock.device_id}")
        if refusal.status == 403:
            return CommandRejected(RejectReason.UNSUPPORTED, "the iglooaccess client lacks the "
                                   "scope this call needs (grant it in iglooaccess)")
        if clear:
            return RetryLater(f"Igloohome refused the delete: {refusal}")
        return CommandRejected(RejectReason.OTHER, f"Igloohome refused the code: {refusal}")

    def _account_failed(self, exc: DriverError) -> None:
        if isinstance(exc, Reauthenticate):
            self._note_all(Availability.ACCOUNT_DISCONNECTED)
        elif isinstance(exc, Unreachable):
            self._note_all(Availability.DISCONNECTED)

    # -- the account's locks ----------------------------------------------------------------

    async def _fresh(self, external_id: str) -> _Lock:
        """The lock, after asking the cloud for it now."""
        lock = self._lock(external_id)
        try:
            await self._account.call("GET", f"/devices/{lock.device_id}")
        except ApiRefusal as refusal:
            raise await self._refused(lock, refusal, clear=True) from None
        except DriverError as exc:
            self._account_failed(exc)
            raise
        return lock

    async def _refresh(self) -> None:
        """The account's devices: its locks, and which bridge each is linked to."""
        try:
            devices = await self._devices()
        except Reauthenticate:
            self._note_all(Availability.ACCOUNT_DISCONNECTED)
            raise
        except Unreachable:
            self._note_all(Availability.DISCONNECTED)
            raise
        except ApiRefusal as refusal:
            raise RetryLater(f"Igloohome refused listing the account: {refusal}") from None
        changed = False
        seen: set[str] = set()
        for item in devices:
            device_id = item.get("deviceId")
            if item.get("type") == "Bridge" or not isinstance(device_id, str):
                continue
            settings = self._config.lock(device_id)
            if settings.ignore:
                continue
            seen.add(device_id)
            bridge = next((d.get("deviceId") for d in item.get("linkedDevices") or []
                           if isinstance(d, dict) and d.get("type") == "Bridge"), None)
            algopins = bridge is None or settings.pins == "algopin"
            info = self._info(item, bridge if isinstance(bridge, str) else None, algopins)
            lock = self._locks.get(device_id)
            if lock is None or lock.availability is Availability.REMOVED or info != lock.info:
                changed = True
            if lock is None:
                lock = _Lock(device_id, info, Availability.ONLINE)
                self._locks[device_id] = lock
            lock.info, lock.algopins = info, algopins
            lock.bridge_id = bridge if isinstance(bridge, str) else None
            held = lock.offline_until > self._clock.monotonic()
            self._note(lock, Availability.OFFLINE if held else Availability.ONLINE)
        gone = [lock for lock_id, lock in self._locks.items()
                if lock_id not in seen and lock.availability is not Availability.REMOVED]
        if gone:
            self._gone(gone, empty=not seen)
            changed = True
        if changed:
            self._events.emit(DriverEvent(DriverEventKind.DEVICES_CHANGED, ""))

    async def _devices(self) -> list[dict[str, Any]]:
        """Every page of `GET /devices`."""
        items: list[dict[str, Any]] = []
        cursor = ""
        for _ in range(1000):
            answer = await self._account.call(
                "GET", "/devices" + (f"?cursor={cursor}" if cursor else ""))
            payload = answer.get("payload") if isinstance(answer, dict) else None
            items += [i for i in payload or [] if isinstance(i, dict)]
            after = answer.get("nextCursor") if isinstance(answer, dict) else None
            if not after or not isinstance(after, str):
                break
            cursor = after
        return items

    def _gone(self, locks: list[_Lock], *, empty: bool) -> None:
        """The account (logged in fine) no longer lists these locks: removed, not offline."""
        why = ("the account logs in but lists no device at all: it is most likely connected "
               "to another platform (disconnect it there first)") if empty else \
            "the lock was unpaired or moved to another account"
        for lock in locks:
            _LOG.warning("igloohome %s: the account no longer lists lock %s (%s); it is "
                         "reported removed", self.name, lock.device_id, why)
            self._note(lock, Availability.REMOVED)

    def _info(self, item: dict[str, Any], bridge: str | None, algopins: bool) -> DeviceInfo:
        device_id = str(item["deviceId"])
        settings = self._config.lock(device_id)
        battery = item.get("batteryLevel")
        job_wait = self._jobs.longest_job_s()
        return DeviceInfo(
            external_id=device_id,
            display_name=settings.name or str(item.get("deviceName") or device_id),
            manufacturer="igloohome",
            model=str(item.get("type") or "igloohome lock"),
            device_type="igloohome_lock",
            capabilities=LockCapabilities(
                addressing=Addressing.ID, first_slot=1, slot_count=CAPACITY, can_read=False,
                masks_pins_on_read=True, native_schedules=True, algorithmic_pins=algopins,
                confirmation_window_s=0.0, name_max_length=NAME_MAX,
                can_delete_unmanaged=False, keeps_names=False,
                min_command_spacing_s=self._config.command_spacing_s,
                command_timeout_s=(3 * self._config.request_timeout_s if algopins
                                   else 2 * job_wait + 6 * self._config.request_timeout_s)),
            constraints=ALGOPIN_CONSTRAINTS if algopins else CUSTOM_CONSTRAINTS,
            hub_id=f"igloohome:{self.name}:{bridge}" if bridge else f"igloohome:{self.name}",
            time_zone=settings.time_zone or self._config.time_zone,
            state=LockState(battery_percent=battery if isinstance(battery, int) else None),
        )


def _unreadable(record: CodeRecord) -> SlotRead:
    return SlotRead(record.slot, SlotState.UNREADABLE, pending=record.pending,
                    reason="igloohome lists no PINs")


def _access_name(name: str) -> str:
    return (name.strip() or "lockbridge")[:NAME_MAX]


def _covers(plan: windows.AlgoPinPlan, record: CodeRecord) -> bool:
    """Whether the plan's window holds all of the record's (the old PIN ends inside it)."""
    if plan.start > datetime.fromisoformat(record.start):
        return False
    old_end = record.ends_at()
    if plan.end is None:
        return True
    return old_end is not None and plan.end >= old_end


def _made_since(record: CodeRecord, first_sent_at: datetime) -> bool:
    """Whether the driver made this record since the create first went out."""
    if not record.made_at:
        return False
    made = datetime.fromisoformat(record.made_at)
    return made.astimezone(UTC) >= first_sent_at - _CLOCK_SKEW
