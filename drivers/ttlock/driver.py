"""Custom passcodes on TTLock locks through the TTLock Open API and each lock's gateway.

What TTLock does, as it publishes it (docs/drivers/ttlock-api-facts.md), and what the driver
makes of it:

- `lock/list` gives the account's locks (only those it is top administrator of), each with
  `hasGateway`, `electricQuantity` (battery) and `timezoneRawOffset`; `lock/detail` gives the
  same for one lock. `gateway/list` gives the gateways and `isOnline`, `gateway/listLock` which
  locks each one reaches (with the signal, `rssi`).
- A lock with no gateway cannot be reached from the cloud: it is reported offline with the device
  error `ttlock_lock_not_paired_to_gateway`. A lock whose gateways are all offline is offline.
  TTLock keeps listing an unplugged gateway online for minutes: once a command found it offline
  (-3002), it counts as offline for `gateway_offline_hold_s`, or until the list says so too.
- Custom passcodes (4 to 9 digits) are added, changed and deleted with `addType`,
  `changeType`, `deleteType` = 2, "via gateway": TTLock's default (1) only records the change in
  the cloud and never reaches the lock. A gateway call answers once the lock has the change, so
  a write is confirmed by its answer. A gateway does one command at a time (a second one meanwhile
  is -3003, "busy"): the driver sends one command at a time per gateway and asks a busy gateway
  again after a doubling pause.
- A passcode's window is `startDate` / `endDate` in UTC milliseconds, kept by the lock to the
  minute (`native_schedules`): the driver sends both floored to the minute, which is what the
  lock keeps. A change of the window always sends both dates (without `startDate` TTLock
  ignores it and still answers success).
- `lock/listKeyboardPwd` is the cloud's record of the lock's passcodes; the driver writes only
  through the gateway and records nothing else, so for lockbridge's codes the record is the lock.
- A command whose caller gave up (timeout) still completes on the lock; the engine sends the
  create again with `first_sent_at`, and the driver takes a listed passcode with that PIN as its
  own only when TTLock sent it since then (`sendDate`); any other is someone else's
  (`duplicate_code_on_device`).

The engine addresses codes by integers: TTLock's `keyboardPwdId`.
"""

from __future__ import annotations

import asyncio
import logging
import re
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

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
    LocalWindow,
    LockCapabilities,
    PinConstraints,
    Reauthenticate,
    RejectReason,
    RetryLater,
    SlotRead,
    SlotState,
    WriteResult,
)
from bridge.model import DeviceErrorCode
from drivers.account import AccountDriver
from drivers.ttlock.api import Account, ApiRefusal, Unreachable
from drivers.ttlock.config import Config

_LOG = logging.getLogger(__name__)
# At most 250 custom passcodes a lock ([pwd-add]).
CAPACITY = 250
CONSTRAINTS = PinConstraints(min_length=4, max_length=9, rejects_duplicates=True)
NAME_MAX = 32
PERMANENT, PERIOD = 2, 3
VIA_GATEWAY = 2
# Page sizes within TTLock's maxima (lock list 1000, passcodes and gateways 200).
_LOCK_PAGE, _PAGE = 1000, 200
_MINUTE_MS = 60_000
_PIN = re.compile(r"[0-9]{4,9}")
# TTLock's clock and ours may differ by this much when a passcode's sendDate is compared with
# the moment our create first went out.
_CLOCK_SKEW = timedelta(minutes=2)
NOT_PAIRED = DeviceProblem(DeviceErrorCode.TTLOCK_LOCK_NOT_PAIRED_TO_GATEWAY,
                           "Lock is not paired with a Gateway.")

# errcodes about one passcode or one command ([errors]).
_NO_GATEWAY = -2012
_GATEWAY_OFFLINE = -3002
_GATEWAY_BUSY = -3003
_LOCK_OFFLINE, _LOCK_BUSY = -3036, -3037
_LOCK_UNKNOWN = -1003
_PASSCODE_UNKNOWN = -2009
_FAILED = 1
_REJECTED = {
    -3006: (RejectReason.INVALID_PIN, "TTLock refused the PIN: a custom passcode has 4 to 9 "
            "digits"),
    -3007: (RejectReason.DUPLICATE_PIN, "the PIN is already on the lock"),
    -3009: (RejectReason.NO_SPACE, "the lock has no room for another custom passcode"),
    -4056: (RejectReason.NO_SPACE, "the lock's memory is full"),
}


@dataclass(slots=True)
class _Lock:
    lock_id: int
    info: DeviceInfo
    availability: Availability
    battery: int | None = None
    paired: bool = True
    # Gateways that reach the lock, with their signal (the cloud picks the best one).
    gateways: dict[int, int] = field(default_factory=dict)

    @property
    def external_id(self) -> str:
        return self.info.external_id


class TTLockDriver(AccountDriver[_Lock]):
    """Every lock of one TTLock app account, reached through the locks' gateways."""

    label = "ttlock"
    account = "the TTLock account"

    def __init__(self, config: Config, clock: Clock) -> None:
        super().__init__(config.name, clock, config.poll_interval_s)
        self._config = config
        self._account = Account(config, clock)
        self._gateway_online: dict[int, bool] = {}
        # lockId -> what lock/detail adds (model, time zone offset); never its noKeyPwd.
        self._details: dict[int, dict[str, Any]] = {}
        # gatewayId -> monotonic second until which a -3002 outweighs the list's isOnline.
        self._gateway_held_offline: dict[int, float] = {}
        # One command at a time per gateway (a gateway does one thing at a time).
        self._queues: dict[str, asyncio.Lock] = {}
        # One listing of the account at a time; probes of several locks at once share one.
        self._listing = asyncio.Lock()
        self._listings_done = 0

    # -- lifecycle ------------------------------------------------------------------------

    async def _open(self) -> None:
        """Log in (the first listing needs a token)."""
        await self._account.open()

    async def _close(self) -> None:
        await self._account.close()

    def battery(self, external_id: str) -> int | None:
        """The lock's battery level in percent, as TTLock last listed it."""
        lock = self._locks.get(external_id)
        return lock.battery if lock is not None else None

    # -- codes ----------------------------------------------------------------------------

    async def list_codes(self, external_id: str) -> list[SlotRead]:
        """Every passcode TTLock lists for the lock."""
        lock = self._lock(external_id)
        return [self._read(p) for p in await self._passcodes(lock)]

    async def read_slots(self, external_id: str, slots: Sequence[int]) -> list[SlotRead]:
        """The passcodes under these ids, from a fresh listing; an id not listed is empty."""
        lock = self._lock(external_id)
        found = {r.slot: r for r in (self._read(p) for p in await self._passcodes(lock))}
        return [found.get(slot, SlotRead(slot, SlotState.EMPTY)) for slot in slots]

    async def write_code(self, external_id: str, code: CodeWrite) -> WriteResult:
        """Change the passcode under `code.slot`, or add one, through the lock's gateway; a
        listed passcode with this PIN that lockbridge did not make is a duplicate, never taken
        over."""
        lock = self._lock(external_id)
        pin = code.pin
        if pin is None or not _PIN.fullmatch(pin):
            raise CommandRejected(RejectReason.INVALID_PIN,
                                  "a TTLock custom passcode has 4 to 9 digits")
        listed = await self._passcodes(lock)
        mine = next((p for p in listed if _int(p.get("keyboardPwdId")) == code.slot), None) \
            if code.slot is not None else None
        same_pin = [p for p in listed if str(p.get("keyboardPwd")) == pin and p is not mine]
        if same_pin:
            passcode = same_pin[0]
            if mine is None and _sent_since(passcode, code.first_sent_at):
                # Our earlier add: its answer was lost, the gateway finished it.
                pwd_id = _int(passcode.get("keyboardPwdId")) or 0
                if self._holds(passcode, lock, code):
                    return WriteResult(pwd_id, pin, confirmed=True)
                mine = passcode
            else:
                raise CommandRejected(RejectReason.DUPLICATE_PIN,
                                      "the PIN is already on the lock in a passcode lockbridge "
                                      "did not make")
        start, end = self._window_ms(lock, code.window)
        if mine is not None:
            pwd_id = _int(mine.get("keyboardPwdId")) or 0
            if (code.window is None) == (_int(mine.get("endDate")) in (None, 0)):
                await self._change(lock, pwd_id, mine, pin, code.name, start, end)
                return WriteResult(pwd_id, pin, confirmed=True)
            # Permanent <-> period: a change only takes dates, so the passcode is made anew.
            await self._gateway(lock, "/v3/keyboardPwd/delete", {
                "lockId": lock.lock_id, "keyboardPwdId": pwd_id, "deleteType": VIA_GATEWAY},
                missing_ok=True)
        params: dict[str, Any] = {"lockId": lock.lock_id, "keyboardPwd": pin,
                                  "keyboardPwdName": code.name[:NAME_MAX],
                                  "addType": VIA_GATEWAY}
        if code.window is None:
            params["keyboardPwdType"] = PERMANENT
        else:
            params |= {"keyboardPwdType": PERIOD, "startDate": start, "endDate": end}
        answer = await self._gateway(lock, "/v3/keyboardPwd/add", params)
        added = _int(answer.get("keyboardPwdId"))
        if added is None:
            raise RetryLater("TTLock added the passcode but gave no keyboardPwdId")
        return WriteResult(added, pin, confirmed=True)

    async def clear_code(self, external_id: str, slot: int) -> None:
        """Delete the passcode under one id through the gateway; one already gone is fine."""
        lock = self._lock(external_id)
        await self._gateway(lock, "/v3/keyboardPwd/delete", {
            "lockId": lock.lock_id, "keyboardPwdId": slot, "deleteType": VIA_GATEWAY},
            missing_ok=True)

    async def probe(self, external_id: str) -> bool:
        """Ask TTLock about the lock and its gateways now."""
        lock = self._lock(external_id)
        try:
            await self._refresh(asked_after=self._listings_done)
        except DriverError:
            return False
        return lock.availability is Availability.ONLINE

    # -- commands ---------------------------------------------------------------------------

    async def _change(self, lock: _Lock, pwd_id: int, listed: dict[str, Any], pin: str,
                      name: str, start: int, end: int) -> None:
        params: dict[str, Any] = {"lockId": lock.lock_id, "keyboardPwdId": pwd_id,
                                  "changeType": VIA_GATEWAY}
        touches_lock = False
        if str(listed.get("keyboardPwd")) != pin:
            params["newKeyboardPwd"] = pin
            touches_lock = True
        if end and (_int(listed.get("startDate")), _int(listed.get("endDate"))) != (start, end):
            # Both dates, always: without startDate TTLock ignores the change.
            params |= {"startDate": start, "endDate": end}
            touches_lock = True
        if touches_lock:
            await self._gateway(lock, "/v3/keyboardPwd/change", params)
        if listed.get("keyboardPwdName") != name[:NAME_MAX]:
            # A rename is the cloud's only (the lock keeps no names).
            await self._cloud(lock, "/v3/keyboardPwd/change", {
                "lockId": lock.lock_id, "keyboardPwdId": pwd_id,
                "keyboardPwdName": name[:NAME_MAX]}, write=True)

    async def _gateway(self, lock: _Lock, path: str, params: dict[str, Any], *,
                       missing_ok: bool = False) -> dict[str, Any]:
        """One command through the lock's gateway, one at a time per gateway; a busy gateway
        is asked again after a doubling pause."""
        if not lock.paired:
            raise RetryLater(f"TTLock lock {lock.lock_id} is not paired to a gateway: pair one "
                             "in the TTLock app")
        async with self._queue(lock):
            for attempt in range(self._config.busy_retries + 1):
                try:
                    return await self._account.call(path, params,
                                                    timeout_s=self._config.gateway_timeout_s)
                except ApiRefusal as refusal:
                    if refusal.errcode == _GATEWAY_BUSY and attempt < self._config.busy_retries:
                        await self._clock.sleep(self._config.busy_retry_s * 2 ** attempt)
                        continue
                    if missing_ok and refusal.errcode == _PASSCODE_UNKNOWN:
                        return {}
                    raise await self._refused(lock, refusal, write=True) from None
                except DriverError as exc:
                    await self._account_failed(exc)
                    raise
        raise AssertionError("unreachable")  # pragma: no cover

    async def _cloud(self, lock: _Lock, path: str, params: dict[str, Any], *,
                     write: bool = False) -> dict[str, Any]:
        """One call that stays in the cloud (a read, a rename)."""
        try:
            return await self._account.call(path, params)
        except ApiRefusal as refusal:
            raise await self._refused(lock, refusal, write=write) from None
        except DriverError as exc:
            await self._account_failed(exc)
            raise

    def _queue(self, lock: _Lock) -> asyncio.Lock:
        """The queue of the gateway TTLock will use for the lock: the online one with the best
        signal (TTLock picks it; nobody can choose)."""
        usable = [(rssi, gid) for gid, rssi in lock.gateways.items() if self._online(gid)] \
            or [(rssi, gid) for gid, rssi in lock.gateways.items()]
        key = f"gateway:{max(usable)[1]}" if usable else f"lock:{lock.lock_id}"
        return self._queues.setdefault(key, asyncio.Lock())

    async def _refused(self, lock: _Lock, refusal: ApiRefusal, *, write: bool) -> DriverError:
        """What an errcode about a lock, a gateway or a passcode means for the engine."""
        code = refusal.errcode
        if code in _REJECTED and write:
            reason, message = _REJECTED[code]
            return CommandRejected(reason, f"{message} (errcode {code})")
        if code == _NO_GATEWAY:
            _LOG.warning("ttlock %s: lock %s is not paired to any gateway (errcode -2012): "
                         "pair one in the TTLock app", self.name, lock.lock_id)
            await self._describe(lock, paired=False)
            return RetryLater(f"TTLock lock {lock.lock_id} is not paired to a gateway")
        if code == _GATEWAY_OFFLINE:
            until = self._clock.monotonic() + self._config.gateway_offline_hold_s
            for gid in lock.gateways:
                self._gateway_held_offline[gid] = until
            self._note(lock, Availability.OFFLINE)
            return RetryLater("the lock's gateway is offline (errcode -3002)")
        if code == _GATEWAY_BUSY:
            return RetryLater("the lock's gateway stayed busy (errcode -3003)")
        if code in (_LOCK_OFFLINE, _LOCK_BUSY):
            return RetryLater(f"TTLock cannot reach the lock now (errcode {code})")
        if code == _FAILED:
            return RetryLater("the gateway could not reach the lock (errcode 1: out of range, "
                              "or its battery is flat?)")
        if code == _LOCK_UNKNOWN:
            await self._gone(lock)
            return RetryLater(f"the TTLock account no longer has lock {lock.lock_id}")
        if write:
            return CommandRejected(RejectReason.OTHER, f"TTLock refused the command: {refusal}")
        return RetryLater(f"TTLock refused the read: {refusal}")

    async def _account_failed(self, exc: DriverError) -> None:
        if isinstance(exc, Reauthenticate):
            self._note_all(Availability.ACCOUNT_DISCONNECTED)

    # -- reading ----------------------------------------------------------------------------

    async def _passcodes(self, lock: _Lock) -> list[dict[str, Any]]:
        """The lock's passcodes as TTLock lists them, every page."""
        rows: list[dict[str, Any]] = []
        page = 1
        while True:
            answer = await self._cloud(lock, "/v3/lock/listKeyboardPwd", {
                "lockId": lock.lock_id, "pageNo": page, "pageSize": _PAGE, "orderBy": 1})
            items = answer.get("list")
            rows += [i for i in items if isinstance(i, dict)] if isinstance(items, list) else []
            pages = _int(answer.get("pages")) or 1
            if page >= pages:
                return rows
            page += 1

    def _read(self, passcode: dict[str, Any]) -> SlotRead:
        """One listed passcode; its window in UTC, as TTLock keeps it."""
        slot = _int(passcode.get("keyboardPwdId")) or 0
        pin = passcode.get("keyboardPwd")
        if not isinstance(pin, str | int) or not str(pin):
            return SlotRead(slot, SlotState.UNREADABLE, reason="no passcode listed")
        start, end = _int(passcode.get("startDate")), _int(passcode.get("endDate"))
        window = None
        if start and end:
            window = LocalWindow(_utc(start), _utc(end), zone="UTC")
        name = passcode.get("keyboardPwdName")
        return SlotRead(slot, SlotState.KNOWN, pin=str(pin),
                        name=name if isinstance(name, str) else None, window=window)

    def _holds(self, passcode: dict[str, Any], lock: _Lock, code: CodeWrite) -> bool:
        """Whether a listed passcode already has the wanted window."""
        start, end = self._window_ms(lock, code.window)
        return (_int(passcode.get("startDate")) or 0, _int(passcode.get("endDate")) or 0) == (
            start, end)

    def _window_ms(self, lock: _Lock, window: LocalWindow | None) -> tuple[int, int]:
        """The window as TTLock takes it: UTC ms, floored to the minute the lock keeps."""
        if window is None:
            return 0, 0
        # The window names its zone (the engine's rule); the lock's own is a fallback.
        zone = ZoneInfo(window.zone or lock.info.time_zone or "UTC")
        start = int(window.starts_at.replace(tzinfo=zone).timestamp() * 1000)
        end = int(window.ends_at.replace(tzinfo=zone).timestamp() * 1000)
        return start - start % _MINUTE_MS, end - end % _MINUTE_MS

    # -- the account's locks ----------------------------------------------------------------

    async def _refresh(self, asked_after: int | None = None) -> None:
        """The account's locks, their gateways and whether TTLock can reach each. With
        `asked_after` (the count of listings ended when the caller asked), a listing that
        ended since then (one under way when the caller asked) answers the caller too."""
        async with self._listing:
            if asked_after is not None and self._listings_done > asked_after:
                return
            try:
                await self._list_account()
            finally:
                self._listings_done += 1

    async def _list_account(self) -> None:
        try:
            locks = await self._pages("/v3/lock/list", _LOCK_PAGE)
            gateways = await self._pages("/v3/gateway/list", _PAGE)
            links: dict[int, dict[int, int]] = {}
            for gateway in gateways:
                gid = _int(gateway.get("gatewayId"))
                if gid is None:
                    continue
                self._gateway_online[gid] = gateway.get("isOnline") == 1
                if gateway.get("isOnline") != 1:
                    # TTLock lists it offline too: follow the list from now on.
                    self._gateway_held_offline.pop(gid, None)
                answer = await self._account.call("/v3/gateway/listLock", {"gatewayId": gid})
                for item in answer.get("list") or []:
                    lock_id = _int(item.get("lockId")) if isinstance(item, dict) else None
                    if lock_id is not None:
                        links.setdefault(lock_id, {})[gid] = _int(item.get("rssi")) or -100
        except Reauthenticate:
            self._note_all(Availability.ACCOUNT_DISCONNECTED)
            raise
        except Unreachable:
            self._note_all(Availability.DISCONNECTED)
            raise
        except ApiRefusal as refusal:
            raise RetryLater(f"TTLock refused listing the account: {refusal}") from None
        seen: set[str] = set()
        changed = False
        for item in locks:
            lock_id = _int(item.get("lockId"))
            if lock_id is None:
                continue
            settings = self._config.lock(lock_id)
            if settings.ignore:
                continue
            item = {**item, **await self._detail(lock_id)}
            external_id = str(lock_id)
            seen.add(external_id)
            lock = self._locks.get(external_id)
            if lock is None or lock.availability is Availability.REMOVED:
                if lock is not None:
                    _LOG.info("ttlock %s: the account lists lock %s again", self.name, lock_id)
                lock = _Lock(lock_id, self._info(item, settings.name, settings.time_zone,
                                                 paired=True), Availability.ONLINE)
                self._locks[external_id] = lock
                changed = True
            lock.battery = _int(item.get("electricQuantity"))
            lock.gateways = links.get(lock_id, {})
            paired = item.get("hasGateway") == 1 or bool(lock.gateways)
            info = self._info(item, settings.name, settings.time_zone, paired=paired)
            if info != lock.info or paired != lock.paired:
                lock.info, lock.paired = info, paired
                changed = True
            self._note(lock, self._reachable(lock))
        for external_id in set(self._locks) - seen:
            lock = self._locks[external_id]
            if lock.availability is not Availability.REMOVED:
                await self._gone(lock)
        if changed:
            self._events.emit(DriverEvent(DriverEventKind.DEVICES_CHANGED, ""))

    async def _detail(self, lock_id: int) -> dict[str, Any]:
        """The model and time zone offset from lock/detail, fetched once per lock; a failure
        leaves them to the list (the next listing asks again)."""
        if lock_id not in self._details:
            try:
                answer = await self._account.call("/v3/lock/detail", {"lockId": lock_id})
            except (ApiRefusal, RetryLater) as exc:
                _LOG.debug("ttlock %s: no detail of lock %s: %s", self.name, lock_id, exc)
                return {}
            # Only these: the detail also carries the lock's super passcode (noKeyPwd).
            self._details[lock_id] = {k: answer[k] for k in ("modelNum", "timezoneRawOffset")
                                      if k in answer}
        return self._details[lock_id]

    async def _pages(self, path: str, size: int) -> list[dict[str, Any]]:
        rows: list[dict[str, Any]] = []
        page = 1
        while True:
            answer = await self._account.call(path, {"pageNo": page, "pageSize": size})
            items = answer.get("list")
            rows += [i for i in items if isinstance(i, dict)] if isinstance(items, list) else []
            if page >= (_int(answer.get("pages")) or 1):
                return rows
            page += 1

    def _online(self, gateway_id: int) -> bool:
        held = self._gateway_held_offline.get(gateway_id)
        if held is not None and held > self._clock.monotonic():
            return False
        return self._gateway_online.get(gateway_id, False)

    def _reachable(self, lock: _Lock) -> Availability:
        if not lock.paired:
            return Availability.OFFLINE
        if any(self._online(gid) for gid in lock.gateways):
            return Availability.ONLINE
        return Availability.OFFLINE

    def _info(self, item: dict[str, Any], name: str | None, zone: str | None, *,
              paired: bool) -> DeviceInfo:
        lock_id = item["lockId"]
        alias = item.get("lockAlias") or item.get("lockName") or lock_id
        # The gateway answers once the lock has the change; each command may wait its turn on
        # the gateway: listing, a busy gateway's pauses, and the command itself.
        busy_wait = sum(self._config.busy_retry_s * 2 ** n
                        for n in range(self._config.busy_retries))
        return DeviceInfo(
            external_id=str(lock_id),
            display_name=name or str(alias),
            manufacturer="TTLock",
            model=str(item.get("modelNum") or item.get("lockName") or "TTLock lock"),
            device_type="ttlock_lock",
            capabilities=LockCapabilities(
                addressing=Addressing.ID, first_slot=1, slot_count=CAPACITY,
                can_read=True, masks_pins_on_read=False, native_schedules=True,
                confirmation_window_s=self._config.confirmation_window_s,
                name_max_length=NAME_MAX, can_delete_unmanaged=True,
                min_command_spacing_s=self._config.command_spacing_s, keeps_names=True,
                command_timeout_s=2 * self._config.gateway_timeout_s + busy_wait
                + 3 * self._config.request_timeout_s),
            constraints=CONSTRAINTS,
            hub_id=f"ttlock:{self.name}",
            time_zone=zone or self._config.time_zone or _offset_zone(
                item.get("timezoneRawOffset")),
            errors=() if paired else (NOT_PAIRED,),
        )

    async def _describe(self, lock: _Lock, *, paired: bool) -> None:
        """A command learned the lock's gateway pairing before the next listing did."""
        if lock.paired != paired:
            lock.paired = paired
            lock.info = replace(lock.info, errors=() if paired else (NOT_PAIRED,))
            self._events.emit(DriverEvent(DriverEventKind.DEVICES_CHANGED, ""))
        self._note(lock, self._reachable(lock))

    async def _gone(self, lock: _Lock) -> None:
        """The account (logged in fine) no longer lists the lock: transferred, deleted in the
        app, or the account is connected elsewhere. Removed, not offline."""
        _LOG.warning("ttlock %s: the account no longer lists lock %s (transferred to another "
                     "account, deleted in the TTLock app, or the lock's account is now another "
                     "one); it is reported removed", self.name, lock.lock_id)
        self._note(lock, Availability.REMOVED)
        self._events.emit(DriverEvent(DriverEventKind.DEVICES_CHANGED, ""))

def _sent_since(passcode: dict[str, Any], first_sent_at: datetime | None) -> bool:
    """Whether TTLock sent this passcode since our first attempt at adding it went out."""
    sent = _int(passcode.get("sendDate"))
    if first_sent_at is None or sent is None:
        return False
    return _utc(sent).replace(tzinfo=UTC) >= first_sent_at - _CLOCK_SKEW


def _offset_zone(raw_offset_ms: object) -> str | None:
    """The lock's own zone from `timezoneRawOffset` (ms from UTC, without daylight saving), as
    a fixed `Etc/GMT` zone when it is whole hours; None otherwise."""
    offset = _int(raw_offset_ms)
    if offset is None or offset % 3_600_000:
        return None
    hours = offset // 3_600_000
    if hours == 0:
        return "UTC"
    # POSIX sign: Etc/GMT-1 is one hour ahead of UTC.
    return f"Etc/GMT{'-' if hours > 0 else '+'}{abs(hours)}"


def _utc(ms: int) -> datetime:
    """Naive UTC wall time of a TTLock instant (ms)."""
    return datetime.fromtimestamp(ms / 1000, UTC).replace(tzinfo=None)


def _int(value: object) -> int | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, str):
        try:
            return int(value)
        except ValueError:
            return None
    return None
