"""Lock codes on SmartThings locks (the `lockCodes` capability) through SmartThings' REST API.

What SmartThings does (docs/drivers/smartthings-api-facts.md has the sources), and what the
driver makes of it:

- The account's locks are the devices with the `lock` capability; a lock without `lockCodes`
  (one moved to `lockUsers`/`lockCredentials`) is listed but takes no codes, and a code request
  for it is refused as unsupported. A lock the account stops listing while the token works
  (deleted, its location no longer shared, the account connected elsewhere) is removed, never
  "offline". Device health OFFLINE is offline.
- `setCode` / `deleteCode` are only ACCEPTED by the cloud: the lock's outcome arrives later as
  `codeChanged` ("N set", "N changed", "N failed", "N deleted", "N unset") in the device's
  history, and in the `lockCodes` attribute, which maps slot to name and never shows a PIN. So
  the driver keeps its own slot -> PIN map of the codes it confirmed, verifies a code by slot
  and name, and reads occupied slots as unreadable (`masks_pins_on_read`) with the name.
- "N failed" is the lock refusing the code (a duplicate PIN among others):
  `smartthings_failed_to_set_access_code`. A setCode with no outcome in `confirm_wait_s` is sent
  again `set_retries` times, then given up with `smartthings_failed_to_set_after_multiple_retries`
  (and withdrawn with a deleteCode, so that a late hub does not leave a code the bridge counts as
  not set). A lock whose every slot up to `maxCodes` holds a code is
  `smartthings_no_free_slots_available`; a PIN another slot holds is refused before sending.
- No native schedules: the engine puts time-bound codes on and takes them off.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

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
from bridge.model import AccessCodeErrorCode
from drivers.account import AccountDriver
from drivers.smartthings.api import Account, NotVisible, Refused, Unreachable
from drivers.smartthings.codes import (
    Change,
    LockStatus,
    check_write,
    history_changes,
    outcome,
    parse_change,
    parse_status,
    sendable_name,
)
from drivers.smartthings.config import Config

_LOG = logging.getLogger(__name__)
_MIGRATED = ("lockCredentials", "lockUsers")
# Events read back from the history when looking for a command's outcome.
_HISTORY_LIMIT = "50"


@dataclass(slots=True)
class _Lock:
    info: DeviceInfo
    availability: Availability
    location_id: str
    takes_codes: bool
    # The lockCodes attributes as the poller last compared them.
    seen: LockStatus | None = None
    # The PINs this driver confirmed, by slot: lockCodes never shows them.
    pins: dict[int, str] = field(default_factory=dict)
    # The codeChanged events already seen (by a command or the poller).
    change_keys: set[str] = field(default_factory=set)
    # One command at a time per lock; the poller leaves a lock alone while one runs.
    busy: asyncio.Lock = field(default_factory=asyncio.Lock)


class SmartThingsDriver(AccountDriver[_Lock]):
    """Every lock one SmartThings account sees (in the configured locations)."""

    label = "smartthings"
    account = "the SmartThings account"

    def __init__(self, config: Config, clock: Clock, memory_file: Path | None) -> None:
        super().__init__(config.name, clock, config.poll_interval_s)
        self._config = config
        self._account = Account(config, clock, memory_file)
        self._warned_empty = False

    async def _open(self) -> None:
        await self._account.open()

    async def _close(self) -> None:
        await self._account.close()

    # -- codes ----------------------------------------------------------------------------

    async def read_slots(self, external_id: str, slots: Sequence[int]) -> list[SlotRead]:
        """These slots as lockCodes shows them now: an occupied one unreadable with its name
        (nothing for a lock without lockCodes: it keeps no codes lockbridge can see)."""
        lock = self._lock(external_id)
        if not lock.takes_codes:
            return []
        status = await self._fresh(lock)
        return [_read(slot, status) for slot in slots]

    async def list_codes(self, external_id: str) -> list[SlotRead]:
        lock = self._lock(external_id)
        if not lock.takes_codes:
            return []
        status = await self._fresh(lock)
        return [_read(slot, status) for slot in sorted(status.codes)]

    async def write_code(self, external_id: str, code: CodeWrite) -> WriteResult:
        """Send setCode and wait for the lock's outcome; sent again when none comes."""
        lock = self._codes_lock(external_id)
        if code.slot is None:
            raise CommandRejected(RejectReason.UNSUPPORTED, "a SmartThings lock code needs a slot")
        if code.pin is None:
            raise CommandRejected(RejectReason.INVALID_PIN, "a SmartThings lock code is digits")
        slot, pin = code.slot, code.pin
        async with lock.busy:
            before = await self._fresh(lock)
            name = sendable_name(code.name, slot, self._config.name_max_length)
            check_write(before, lock.pins, slot, pin, name)
            if before.codes.get(slot) == name and lock.pins.get(slot) == pin:
                return WriteResult(slot, pin)
            lock.pins.pop(slot, None)
            attempts = 1 + self._config.set_retries
            for attempt in range(1, attempts + 1):
                seen = await self._change_keys(lock)
                await self._command(lock, "setCode", [slot, pin, name])
                result = await self._outcome(lock, seen, slot, ("set", "changed", "failed"))
                if result == "failed":
                    raise CommandRejected(
                        RejectReason.OTHER,
                        f"the lock refused the code for slot {slot} (codeChanged \"failed\": "
                        "a duplicate of a code already on the lock, or a PIN it does not take)",
                        error_code=AccessCodeErrorCode.SMARTTHINGS_FAILED_TO_SET_ACCESS_CODE.value)
                if result is not None:
                    status = await self._status(lock)
                    if status.codes.get(slot) == name:
                        lock.pins[slot] = pin
                        lock.seen = status
                        return WriteResult(slot, pin)
                _LOG.info("smartthings %s: lock %s did not confirm the code for slot %d "
                          "(attempt %d of %d)", self.name, external_id, slot, attempt, attempts)
            if slot not in before.codes:
                # Withdrawn: a hub that runs it late must not leave a code the bridge gave up on.
                with contextlib.suppress(DriverError):
                    await self._command(lock, "deleteCode", [slot])
        raise CommandRejected(
            RejectReason.OTHER,
            f"SmartThings accepted the code for slot {slot} {attempts} times but the lock never "
            f"confirmed it (is it awake and in range of its hub?)",
            error_code=AccessCodeErrorCode.SMARTTHINGS_FAILED_TO_SET_AFTER_MULTIPLE_RETRIES.value)

    async def clear_code(self, external_id: str, slot: int) -> None:
        """Send deleteCode and wait for "N deleted"; a slot lockCodes does not list is empty."""
        lock = self._codes_lock(external_id)
        async with lock.busy:
            before = await self._fresh(lock)
            if slot not in before.codes:
                lock.pins.pop(slot, None)
                return
            seen = await self._change_keys(lock)
            await self._command(lock, "deleteCode", [slot])
            if await self._outcome(lock, seen, slot, ("deleted", "unset")) is None:
                raise RetryLater(f"SmartThings accepted the delete of slot {slot} but the lock "
                                 f"has not confirmed it in {self._config.confirm_wait_s:.0f} s")
            lock.pins.pop(slot, None)
            lock.seen = await self._status(lock)

    async def probe(self, external_id: str) -> bool:
        """Ask SmartThings for the lock's health."""
        lock = self._lock(external_id)
        try:
            return await self._healthy(lock)
        except DriverError:
            return False

    # -- one lock -------------------------------------------------------------------------

    def _codes_lock(self, external_id: str) -> _Lock:
        lock = self._lock(external_id)
        if not lock.takes_codes:
            raise CommandRejected(
                RejectReason.UNSUPPORTED,
                "this SmartThings lock has no lockCodes capability (its driver moved it to "
                "lockUsers/lockCredentials, which lockbridge does not program)")
        return lock

    async def _fresh(self, lock: _Lock) -> LockStatus:
        """The lock's code attributes, once its health says it is reachable (the cloud keeps
        showing an offline lock's last attributes)."""
        if not await self._healthy(lock):
            raise RetryLater(f"lock {lock.info.external_id} is offline (SmartThings health)")
        return await self._status(lock)

    async def _healthy(self, lock: _Lock) -> bool:
        answer = await self._call("GET", f"/devices/{lock.info.external_id}/health")
        state = answer.get("state") if isinstance(answer, dict) else None
        online = state != "OFFLINE"
        self._note(lock, Availability.ONLINE if online else Availability.OFFLINE)
        return online

    async def _status(self, lock: _Lock) -> LockStatus:
        status = parse_status(await self._call("GET", f"/devices/{lock.info.external_id}/status"))
        info = self._describe(lock.info, status, lock.takes_codes)
        if info != lock.info:
            lock.info = info
            self._events.emit(DriverEvent(DriverEventKind.DEVICES_CHANGED, ""))
        return status

    async def _command(self, lock: _Lock, command: str, arguments: list[Any]) -> None:
        """One lockCodes command; the cloud only says whether it took it."""
        answer = await self._call("POST", f"/devices/{lock.info.external_id}/commands", body={
            "commands": [{"component": "main", "capability": "lockCodes", "command": command,
                          "arguments": arguments}]})
        results = answer.get("results") if isinstance(answer, dict) else None
        status = results[0].get("status") if isinstance(results, list) and results and \
            isinstance(results[0], dict) else None
        if status == "FAILED":
            raise RetryLater(f"SmartThings did not take the {command} command")

    async def _read_changes(self, lock: _Lock) -> list[Change]:
        """The lock's recent codeChanged events (the history; the latest one from the status
        when the history cannot be read)."""
        try:
            answer = await self._call("GET", "/history/devices", params={
                "locationId": lock.location_id, "deviceId": lock.info.external_id,
                "limit": _HISTORY_LIMIT})
            return history_changes(answer)
        except Refused:
            status = await self._status(lock)
            parsed = parse_change(status.code_changed)
            if parsed is None:
                return []
            return [Change(parsed[0], parsed[1],
                           f"{status.code_changed_at}:{status.code_changed}")]

    async def _change_keys(self, lock: _Lock) -> set[str]:
        return {change.key for change in await self._changes(lock)}

    async def _changes(self, lock: _Lock) -> list[Change]:
        """The lock's recent codeChanged events, each then known to the poller (which reports
        only those it did not see before: changes made at the lock)."""
        changes = await self._read_changes(lock)
        if lock.busy.locked():
            lock.change_keys |= {change.key for change in changes}
        else:
            lock.change_keys = {change.key for change in changes}
        return changes

    async def _outcome(self, lock: _Lock, seen: set[str], slot: int,
                       wanted: tuple[str, ...]) -> str | None:
        """The first new codeChanged of `slot` among `wanted`, looked for every
        `confirm_poll_s` for `confirm_wait_s`; None when none came."""
        deadline = self._clock.monotonic() + self._config.confirm_wait_s
        while True:
            left = deadline - self._clock.monotonic()
            await self._clock.sleep(max(0.0, min(self._config.confirm_poll_s, left)))
            found = outcome(await self._changes(lock), seen, slot, wanted)
            if found is not None or self._clock.monotonic() >= deadline:
                return found

    # -- the account ----------------------------------------------------------------------

    async def _call(self, method: str, path: str, *, params: dict[str, str] | None = None,
                    body: Any = None) -> Any:
        """One call; what it says of the account is noted on every lock."""
        try:
            answer = await self._account.call(method, path, params=params, body=body)
        except Reauthenticate:
            self._note_all(Availability.ACCOUNT_DISCONNECTED)
            raise
        except Unreachable:
            self._note_all(Availability.DISCONNECTED)
            raise
        except NotVisible:
            self._poll_now.set()  # gone from the account? the listing decides
            raise
        if any(lock.availability in (Availability.DISCONNECTED, Availability.ACCOUNT_DISCONNECTED)
               for lock in self._locks.values()):
            # The account answers again: each lock's own health says what it is now.
            self._poll_now.set()
        return answer

    async def _refresh(self) -> None:
        """The account's locks, their health, and which slots changed since the last look."""
        items = await self._list()
        seen: set[str] = set()
        changed = False
        for item in items:
            external_id = str(item.get("deviceId") or "")
            capabilities = _capabilities(item)
            if not external_id or self._config.lock(external_id).ignore:
                continue
            takes_codes = "lockCodes" in capabilities
            if not takes_codes and not capabilities & set(_MIGRATED):
                continue  # a lock without a keypad
            seen.add(external_id)
            lock = self._locks.get(external_id)
            if lock is None or lock.availability is Availability.REMOVED:
                if not takes_codes:
                    _LOG.warning("smartthings %s: lock %s has no lockCodes capability (moved to "
                                 "lockUsers/lockCredentials): listed, but it takes no codes "
                                 "from lockbridge", self.name, external_id)
                lock = _Lock(self._describe(self._base_info(item), LockStatus(), takes_codes),
                             Availability.ONLINE, str(item.get("locationId") or ""),
                             takes_codes)
                self._locks[external_id] = lock
                changed = True
            try:
                await self._look(lock)
            except NotVisible:
                seen.discard(external_id)
        if not seen and not self._warned_empty:
            # The token works and shows nothing: most often the account (or its location) is
            # connected to another integration, which SmartThings does not say.
            _LOG.warning("smartthings %s: the account's token works but it lists no lock with "
                         "lockCodes (is the location shared with this app, or the account "
                         "connected elsewhere?)", self.name)
        self._warned_empty = not seen
        for external_id in set(self._locks) - seen:
            lock = self._locks[external_id]
            if lock.availability is not Availability.REMOVED:
                _LOG.warning("smartthings %s: the account no longer lists lock %s (removed "
                             "from the account, its location no longer shared, or the account "
                             "connected elsewhere); it is reported removed", self.name,
                             external_id)
                self._note(lock, Availability.REMOVED)
                changed = True
        if changed:
            self._events.emit(DriverEvent(DriverEventKind.DEVICES_CHANGED, ""))

    async def _list(self) -> list[dict[str, Any]]:
        """Every lock device of the configured locations (all of them by default), all pages."""
        locations = self._config.location_ids or (None,)
        items: list[dict[str, Any]] = []
        for location in locations:
            params = {"capability": "lock"}
            if location is not None:
                params["locationId"] = location
            path: str | None = "/devices"
            while path is not None:
                answer = await self._call("GET", path, params=params)
                params = {}
                rows = answer.get("items") if isinstance(answer, dict) else None
                items += [i for i in rows if isinstance(i, dict)] if isinstance(rows, list) \
                    else []
                links = answer.get("_links") if isinstance(answer, dict) else None
                following = links.get("next") if isinstance(links, dict) else None
                href = following.get("href") if isinstance(following, dict) else None
                path = href if isinstance(href, str) and href else None
        return items

    async def _look(self, lock: _Lock) -> None:
        """One lock's health and codes; each slot that changed is reported to the engine."""
        if not await self._healthy(lock) or not lock.takes_codes or lock.busy.locked():
            return
        status = await self._status(lock)
        before = lock.seen
        if before is None:
            await self._change_keys(lock)  # what happened before this driver looked
            lock.seen = status
            return
        slots = {s for s in set(before.codes) | set(status.codes)
                 if before.codes.get(s) != status.codes.get(s)}
        if (status.code_changed, status.code_changed_at) != \
                (before.code_changed, before.code_changed_at):
            # The status shows only the latest codeChanged: the history has each one.
            known = set(lock.change_keys)
            for change in await self._changes(lock):
                if change.key not in known and change.what in ("set", "changed", "deleted"):
                    # Changed at the lock (the keypad): the PIN this driver knew is no more.
                    lock.pins.pop(change.slot, None)
                    slots.add(change.slot)
        lock.seen = status
        for slot in sorted(slots):
            self._events.emit(DriverEvent(DriverEventKind.SLOT_CHANGED, lock.info.external_id,
                                          slot=slot))

    # -- descriptions ---------------------------------------------------------------------

    def _base_info(self, item: dict[str, Any]) -> DeviceInfo:
        external_id = str(item["deviceId"])
        hub = next((details.get("hubId") for key in ("zwave", "zigbee", "matter", "lan")
                    if isinstance(details := item.get(key), dict)), None)
        return DeviceInfo(
            external_id=external_id,
            display_name=self._config.lock(external_id).name or
            str(item.get("label") or item.get("name") or external_id),
            manufacturer=str(item.get("manufacturerName") or "SmartThings"),
            model=str(item.get("name") or "SmartThings lock"),
            device_type="smartthings_lock",
            capabilities=LockCapabilities(),
            constraints=PinConstraints(),
            hub_id=f"smartthings:{hub or self.name}",
        )

    def _describe(self, base: DeviceInfo, status: LockStatus, takes_codes: bool) -> DeviceInfo:
        config = self._config
        # A write: each attempt is a few calls and the wait for the lock's outcome.
        per_attempt = config.confirm_wait_s + config.confirm_poll_s + 4 * config.request_timeout_s
        return DeviceInfo(
            external_id=base.external_id, display_name=base.display_name,
            manufacturer=base.manufacturer, model=base.model, device_type=base.device_type,
            capabilities=LockCapabilities(
                addressing=Addressing.SLOT, first_slot=1,
                slot_count=status.max_codes if takes_codes else 0,
                can_read=takes_codes, masks_pins_on_read=True, native_schedules=False,
                # A write returns once the lock reported it: nothing left to wait for.
                confirmation_window_s=0.0, name_max_length=config.name_max_length,
                can_delete_unmanaged=True, programs_codes=takes_codes,
                min_command_spacing_s=config.command_spacing_s, keeps_names=True,
                command_timeout_s=(1 + config.set_retries) * per_attempt
                + 4 * config.request_timeout_s),
            constraints=PinConstraints(min_length=status.min_length,
                                       max_length=status.max_length, rejects_duplicates=True),
            hub_id=base.hub_id,
            state=LockState(locked=status.locked, battery_percent=status.battery),
        )


def _read(slot: int, status: LockStatus) -> SlotRead:
    name = status.codes.get(slot)
    if name is None:
        return SlotRead(slot, SlotState.EMPTY)
    return SlotRead(slot, SlotState.UNREADABLE, name=name, reason="masked")


def _capabilities(item: dict[str, Any]) -> set[str]:
    """The capabilities of a device's main component."""
    found: set[str] = set()
    for component in item.get("components") or []:
        if isinstance(component, dict) and component.get("id") == "main":
            for cap in component.get("capabilities") or []:
                if isinstance(cap, dict) and isinstance(cap.get("id"), str):
                    found.add(cap["id"])
    return found
