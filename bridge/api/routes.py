"""The routes: one handler per Seam endpoint, each validating its input with a model."""

from __future__ import annotations

import uuid
from collections.abc import Awaitable, Callable, Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime
from functools import partial
from typing import Any
from uuid import UUID

from yarl import URL

from bridge.api import models as m
from bridge.api.attempts import ActionAttempts, ActionType, Attempt
from bridge.api.errors import ApiError, not_found
from bridge.api.paging import page
from bridge.application import Application, CodeChanges
from bridge.driver import DriverError, LockDriver, NetworkCommands, RetryLater
from bridge.engine import CodeRequest
from bridge.logs import REDACTOR
from bridge.model import AccessCodeStatus, AccessCodeType, Event, EventType
from bridge.records import CodeRecord, DeviceRecord
from bridge.serialize import (
    access_code_json,
    connected_account_id,
    device_json,
    event_json,
    unmanaged_code_json,
)
from bridge.store import Reader, Store

Body = dict[str, Any]
_ISSUE_LISTS = ("connected_account_errors", "connected_account_warnings", "device_errors",
                "device_warnings", "access_code_errors", "access_code_warnings")
_ISSUE_LIST_EVENTS = ("failed_to_set_on_device", "failed_to_remove_from_device",
                      "delay_in_setting_on_device", "delay_in_removing_from_device",
                      "failed_to_convert_to_managed", "device.disconnected")
# Events read from the store per round while filtering in memory.
_EVENT_BATCH = 1000


@dataclass(frozen=True, slots=True)
class Call:
    """What a handler gets: the validated parameters and the request URL (for pagination)."""

    params: Any
    url: URL


@dataclass(frozen=True, slots=True)
class Route:
    """One endpoint: path, accepted methods, its request model and handler."""

    path: str
    methods: tuple[str, ...]
    model: type[m.Request]
    handler: Callable[[Call], Awaitable[Body]]
    response_keys: tuple[str, ...]
    summary: str


class Api:
    """The handlers, over the application layer, the store and the action attempts.

    A handler validates its input (the models), finds what the request names, calls the
    application layer (bridge/application.py, where the domain rules live) and shapes Seam's
    answer. An `EngineError` it lets through becomes an error answer in one place, the errors
    middleware (bridge/api/errors.py)."""

    def __init__(self, app: Application, drivers: Mapping[str, LockDriver], store: Store,
                 bridge_id: str, attempts: ActionAttempts) -> None:
        self.app = app
        self.state = app.state
        self.drivers = drivers
        self.store = store
        self.bridge_id = bridge_id
        self.attempts = attempts
        # Route groups kept in their own modules (the automations' bridge/api/automations.py).
        self.extensions: list[Callable[[], list[Route]]] = []

    def routes(self) -> list[Route]:
        """Every endpoint with the method Seam's SDK uses and POST, which other clients use."""
        return [*self._core_routes(), *(r for more in self.extensions for r in more())]

    def _core_routes(self) -> list[Route]:
        get, patch, delete = ("GET", "POST"), ("PATCH", "POST", "PUT"), ("DELETE", "POST")
        return [
            Route("/devices/list", get, m.DevicesList, self.devices_list,
                  ("devices", "pagination"), "List devices"),
            Route("/devices/get", get, m.DevicesGet, self.devices_get, ("device",),
                  "Get a device"),
            Route("/devices/update", patch, m.DevicesUpdate, self.devices_update, (),
                  "Unmanage a device (its backup codes come off) or enable its backup pool"),
            Route("/devices/unmanaged/list", get, m.DevicesList, self.unmanaged_devices_list,
                  ("devices", "pagination"), "List unmanaged devices"),
            Route("/devices/unmanaged/get", get, m.DevicesGet, self.unmanaged_devices_get,
                  ("device",), "Get an unmanaged device"),
            Route("/devices/unmanaged/update", patch, m.UnmanagedDevicesUpdate,
                  self.unmanaged_devices_update, (), "Convert an unmanaged device to managed"),
            Route("/access_codes/create", ("POST",), m.AccessCodesCreate, self.codes_create,
                  ("access_code", "action_attempt"), "Create an access code"),
            Route("/access_codes/list", get, m.AccessCodesList, self.codes_list,
                  ("access_codes", "pagination"), "List access codes"),
            Route("/access_codes/get", get, m.AccessCodesGet, self.codes_get,
                  ("access_code",), "Get an access code"),
            Route("/access_codes/update", patch, m.AccessCodesUpdate, self.codes_update,
                  ("action_attempt",), "Update an access code"),
            Route("/access_codes/delete", delete, m.AccessCodesDelete, self.codes_delete,
                  ("action_attempt",), "Delete an access code"),
            Route("/access_codes/generate_code", get, m.GenerateCode, self.generate_code,
                  ("generated_code",), "Generate a PIN that fits a lock"),
            Route("/access_codes/pull_backup_access_code", ("POST",), m.PullBackup,
                  self.pull_backup, ("backup_access_code", "access_code"),
                  "Pull a backup access code"),
            Route("/access_codes/unmanaged/list", get, m.UnmanagedList, self.unmanaged_list,
                  ("access_codes", "pagination"), "List unmanaged access codes"),
            Route("/access_codes/unmanaged/get", get, m.AccessCodesGet, self.unmanaged_get,
                  ("access_code",), "Get an unmanaged access code"),
            Route("/access_codes/unmanaged/convert_to_managed", patch, m.ConvertToManaged,
                  self.unmanaged_convert, (), "Convert an unmanaged access code to managed"),
            Route("/access_codes/unmanaged/delete", delete, m.UnmanagedDelete,
                  self.unmanaged_delete, ("action_attempt",), "Delete an unmanaged access code"),
            Route("/events/list", get, m.EventsList, self.events_list, ("events",),
                  "List events"),
            Route("/events/get", get, m.EventsGet, self.events_get, ("event",), "Get an event"),
            Route("/action_attempts/get", get, m.ActionAttemptsGet, self.attempts_get,
                  ("action_attempt",), "Get an action attempt"),
            Route("/action_attempts/list", get, m.ActionAttemptsList, self.attempts_list,
                  ("action_attempts", "pagination"), "List action attempts"),
            Route("/lockbridge/networks/permit_join", ("POST",), m.NetworkPermitJoin,
                  self.networks_permit_join, ("driver", "open_for_s"),
                  "Let new locks join a network the bridge runs (lockbridge's own)"),
            Route("/lockbridge/networks/remove_device", ("POST",), m.NetworkRemoveDevice,
                  self.networks_remove_device, (),
                  "Make a lock leave the network the bridge runs (lockbridge's own)"),
        ]

    # -- networks a driver runs (lockbridge's own routes) ----------------------------------

    async def networks_permit_join(self, call: Call) -> Body:
        """Open one driver's network to new locks; the only such driver when none is named."""
        p: m.NetworkPermitJoin = call.params
        runners = {name: d for name, d in self.drivers.items()
                   if isinstance(d, NetworkCommands)}
        if p.driver is not None:
            driver = runners.get(p.driver)
            if driver is None:
                raise ApiError(400, "invalid_input", f"no driver {p.driver!r} runs a network "
                               f"(those that do: {', '.join(sorted(runners)) or 'none'})")
            name = p.driver
        elif len(runners) == 1:
            name, driver = next(iter(runners.items()))
        else:
            raise ApiError(400, "invalid_input", "name the driver: "
                           + (", ".join(sorted(runners)) if runners
                              else "no configured driver runs a network"))
        granted = await _network_call(driver.permit_join(p.seconds))
        return {"driver": name, "open_for_s": granted}

    async def networks_remove_device(self, call: Call) -> Body:
        """Make a lock leave its driver's network."""
        p: m.NetworkRemoveDevice = call.params
        device = self._find_device(p.device_id, None)
        driver = self.drivers.get(device.driver)
        if not isinstance(driver, NetworkCommands):
            raise ApiError(400, "invalid_input", f"{device.display_name} is not on a network "
                           "lockbridge runs")
        await _network_call(driver.remove_device(device.external_id))
        return {}

    # -- devices ----------------------------------------------------------------------------

    async def devices_list(self, call: Call, managed: bool = True) -> Body:
        """Devices, filtered."""
        p: m.DevicesList = call.params
        devices = [d for d in self.state.devices.values()
                   if d.is_managed == managed and self._device_wanted(d, p)]
        chosen, pagination = page(devices, p.limit, p.page_cursor, call.url)
        return {"devices": [self._device(d) for d in chosen], "pagination": pagination}

    async def devices_get(self, call: Call) -> Body:
        """One device by id or name."""
        p: m.DevicesGet = call.params
        return {"device": self._device(self._find_device(p.device_id, p.name))}

    async def devices_update(self, call: Call) -> Body:
        """`is_managed: false` takes the lock out (backups off); the pool can only go on."""
        p: m.DevicesUpdate = call.params
        device = self._find_device(p.device_id, None)
        if p.is_managed is not None or p.backup_access_code_pool_enabled is not None:
            # No receipt: Seam answers devices.update with no action attempt, so the API keeps
            # nothing with the change (the upstream keeps its applied marker).
            await self.app.update_device(device.device_id, is_managed=p.is_managed,
                                         backup_pool_enabled=p.backup_access_code_pool_enabled)
        return {}

    async def unmanaged_devices_list(self, call: Call) -> Body:
        """Locks taken out of lockbridge."""
        return await self.devices_list(call, managed=False)

    async def unmanaged_devices_get(self, call: Call) -> Body:
        """One unmanaged lock by id or name."""
        p: m.DevicesGet = call.params
        return {"device": self._device(self._find_device(p.device_id, p.name, managed=False))}

    async def unmanaged_devices_update(self, call: Call) -> Body:
        """`is_managed: true` brings the lock back (its pool starts off)."""
        p: m.UnmanagedDevicesUpdate = call.params
        device = self._find_device(p.device_id, None, managed=False)
        if p.is_managed:
            await self.app.update_device(device.device_id, is_managed=True)
        return {}

    # -- access codes -----------------------------------------------------------------------

    async def codes_create(self, call: Call) -> Body:
        """Create a managed code; a pending CREATE_ACCESS_CODE attempt tracks it onto the lock."""
        p: m.AccessCodesCreate = call.params
        device = self._find_device(p.device_id, None)
        request = CodeRequest(
            name=p.name, code=p.code, starts_at=p.starts_at, ends_at=p.ends_at,
            preferred_code_length=p.preferred_code_length,
            allow_external_modification=_either(p.allow_external_modification,
                                                p.is_external_modification_allowed),
            common_code_key=p.common_code_key,
            use_backup_access_code_pool=p.use_backup_access_code_pool,
        )
        now = self.app.clock.now()
        placeholder = CodeRecord(access_code_id=_new_id(), device_id=device.device_id,
                                 created_at=now)
        attempt = self.attempts.started(ActionType.CREATE_ACCESS_CODE, placeholder, now)
        code = await self.app.create_code(device.device_id, request,
                                          access_code_id=placeholder.access_code_id,
                                          receipt=attempt.receipt())
        attempt = await self.attempts.adopt(attempt)
        return {"access_code": self._code(code), "action_attempt": self.attempts.to_json(attempt)}

    async def codes_list(self, call: Call) -> Body:
        """Managed codes (backup codes only once pulled), oldest first."""
        p: m.AccessCodesList = call.params
        if p.device_id is not None:
            self._find_device(p.device_id, None)
            pool: Iterable[CodeRecord] = self.state.codes_of(str(p.device_id))
        else:
            managed = {d.device_id for d in self.state.devices.values() if d.is_managed}
            pool = [c for c in self.state.codes.values() if c.device_id in managed]
        wanted = {str(i) for i in p.access_code_ids} if p.access_code_ids is not None else None
        codes = [c for c in pool if _listed(c)
                 and (wanted is None or c.access_code_id in wanted)
                 and _matches(p.search, c.name, c.access_code_id, c.code)]
        chosen, pagination = page(codes, p.limit, p.page_cursor, call.url)
        return {"access_codes": [self._code(c) for c in chosen], "pagination": pagination}

    async def codes_get(self, call: Call) -> Body:
        """One managed code by id, or by device and PIN."""
        p: m.AccessCodesGet = call.params
        return {"access_code": self._code(self._find_code(p, managed=True))}

    async def codes_update(self, call: Call) -> Body:
        """Change a code; an UPDATE_ACCESS_CODE attempt tracks the change onto the lock."""
        p: m.AccessCodesUpdate = call.params
        changes = CodeChanges(
            name=p.name, code=p.code, type=AccessCodeType(p.type) if p.type else None,
            starts_at=p.starts_at, ends_at=p.ends_at,
            allow_external_modification=_either(p.allow_external_modification,
                                                p.is_external_modification_allowed),
            use_backup_access_code_pool=p.use_backup_access_code_pool,
        )
        updated = await self.app.update_code(str(p.access_code_id), changes,
                                             device_id=_id(p.device_id))
        attempt = self.attempts.started(ActionType.UPDATE_ACCESS_CODE, updated,
                                        self.app.clock.now())
        attempt = await self.attempts.adopt(attempt, persisted=False)
        return {"action_attempt": self.attempts.to_json(attempt)}

    async def codes_delete(self, call: Call) -> Body:
        """Take a code off its lock; repeating the call while it is being removed is harmless."""
        p: m.AccessCodesDelete = call.params
        deletion = await self.app.delete_code(str(p.access_code_id), device_id=_id(p.device_id))
        current = deletion.code
        if deletion.repeated:
            # A retried DELETE: answer with the attempt already under way.
            for existing in reversed(self.attempts.all()):
                if existing.access_code_id == current.access_code_id and \
                        existing.action_type is ActionType.DELETE_ACCESS_CODE:
                    existing = await self.attempts.refresh(existing)
                    return {"action_attempt": self.attempts.to_json(existing)}
        attempt = self.attempts.started(ActionType.DELETE_ACCESS_CODE, current,
                                        self.app.clock.now())
        attempt = await self.attempts.adopt(attempt, persisted=False)
        return {"action_attempt": self.attempts.to_json(attempt)}

    async def generate_code(self, call: Call) -> Body:
        """A PIN that fits the lock's rules and clashes with none of its codes."""
        p: m.GenerateCode = call.params
        device = self._find_device(p.device_id, None)
        pin = self.app.generate_code(device.device_id)
        REDACTOR.remember(pin)
        # Seam answers with an access_code object; this one is a draft, stored nowhere.
        draft = CodeRecord(access_code_id=_new_id(), device_id=device.device_id,
                           created_at=self.app.clock.now(), code=pin,
                           status=AccessCodeStatus.UNSET)
        return {"generated_code": self._code(draft)}

    async def pull_backup(self, call: Call) -> Body:
        """Hand out a backup for a time-bound code; asking again returns the same backup."""
        p: m.PullBackup = call.params
        backup, original = await self.app.pull_backup(str(p.access_code_id))
        return {"backup_access_code": self._code(backup), "access_code": self._code(original)}

    # -- unmanaged access codes -------------------------------------------------------------

    async def unmanaged_list(self, call: Call) -> Body:
        """Codes found on a lock that the bridge did not put there."""
        p: m.UnmanagedList = call.params
        device = self._find_device(p.device_id, None)
        codes = [c for c in self.state.codes_of(device.device_id) if not c.is_managed
                 and _matches(p.search, c.name, c.access_code_id, c.code)]
        chosen, pagination = page(codes, p.limit, p.page_cursor, call.url)
        return {"access_codes": [self._unmanaged(c) for c in chosen],
                "pagination": pagination}

    async def unmanaged_get(self, call: Call) -> Body:
        """One unmanaged code."""
        p: m.AccessCodesGet = call.params
        return {"access_code": self._unmanaged(self._find_code(p, managed=False))}

    async def unmanaged_convert(self, call: Call) -> Body:
        """Make an unmanaged code managed: the bridge keeps it on the lock from now on."""
        p: m.ConvertToManaged = call.params
        await self.app.convert_unmanaged(str(p.access_code_id), allow_external_modification=(
            _either(p.allow_external_modification, p.is_external_modification_allowed)))
        return {}

    async def unmanaged_delete(self, call: Call) -> Body:
        """Remove an unmanaged code from its lock (done before the answer)."""
        p: m.UnmanagedDelete = call.params
        code = await self.app.delete_unmanaged(str(p.access_code_id))
        attempt = self.attempts.started(ActionType.DELETE_ACCESS_CODE, code,
                                        self.app.clock.now())
        attempt = await self.attempts.adopt(attempt, persisted=False)
        return {"action_attempt": self.attempts.to_json(attempt)}

    # -- events -----------------------------------------------------------------------------

    async def events_list(self, call: Call) -> Body:
        """Events, oldest first, filtered."""
        p: m.EventsList = call.params
        wanted = _EventFilter(p)
        offset, limit = p.unstable_offset or 0, p.limit or 500
        single_device = str(p.device_id) if p.device_id and not p.device_ids else None
        single_code = (str(p.access_code_id) if p.access_code_id and not p.access_code_ids
                       else None)
        types = wanted.types
        found: list[Event] = []
        after = 0
        while len(found) < offset + limit:
            batch = await self.store.read(partial(
                Reader.events, after_seq=after, limit=_EVENT_BATCH, device_id=single_device,
                access_code_id=single_code, event_types=types))
            found.extend(e for e in batch if wanted(e))
            if len(batch) < _EVENT_BATCH:
                break
            after = batch[-1].sequence or after
        return {"events": [self._event(e) for e in found[offset:offset + limit]]}

    async def events_get(self, call: Call) -> Body:
        """One event by id, or the latest of a type on a device."""
        p: m.EventsGet = call.params
        event: Event | None
        if p.event_id is not None:
            event_id = str(p.event_id)
            event = await self.store.read(lambda r: r.event(event_id))
        else:
            device_id, kind = str(p.device_id), p.event_type or ""
            matches = await self.store.read(lambda r: r.events(
                device_id=device_id, event_types=[kind], limit=1_000_000))
            event = matches[-1] if matches else None
        if event is None:
            raise not_found("event_not_found", "Event not found")
        return {"event": self._event(event)}

    # -- action attempts --------------------------------------------------------------------

    async def attempts_get(self, call: Call) -> Body:
        """One action attempt, judged against the lock's state now."""
        p: m.ActionAttemptsGet = call.params
        attempt = self.attempts.get(str(p.action_attempt_id))
        if attempt is None:
            raise not_found("action_attempt_not_found", "Action attempt not found")
        attempt = await self.attempts.refresh(attempt)
        return {"action_attempt": self.attempts.to_json(attempt)}

    async def attempts_list(self, call: Call) -> Body:
        """Action attempts, oldest first."""
        p: m.ActionAttemptsList = call.params
        wanted = ({str(i) for i in p.action_attempt_ids} if p.action_attempt_ids is not None
                  else None)
        device_id = str(p.device_id) if p.device_id else None
        chosen: list[Attempt] = [
            a for a in self.attempts.all()
            if (wanted is None or a.action_attempt_id in wanted)
            and (device_id is None or a.device_id == device_id)]
        chosen, pagination = page(chosen, p.limit, p.page_cursor, call.url)
        refreshed = [await self.attempts.refresh(a) for a in chosen]
        return {"action_attempts": [self.attempts.to_json(a) for a in refreshed],
                "pagination": pagination}

    # -- helpers ----------------------------------------------------------------------------

    def _device(self, device: DeviceRecord) -> Body:
        return device_json(device, self.bridge_id)

    def _code(self, code: CodeRecord) -> Body:
        return access_code_json(code, self.state, self.bridge_id)

    def _event(self, event: Event) -> Body:
        body = event_json(event, self.bridge_id)
        device = self.state.devices.get(event.device_id or "")
        if device is not None:
            body.setdefault("connected_account_id",
                            connected_account_id(self.bridge_id, device.driver))
        # Fields Seam's event schema requires that the engine's events do not carry.
        if event.event_type.value.endswith(_ISSUE_LIST_EVENTS):
            for key in _ISSUE_LISTS:
                body.setdefault(key, [])
        if event.event_type is EventType.ACCESS_CODE_DELETED:
            body.setdefault("code", None)
        if event.event_type is EventType.DEVICE_DISCONNECTED:
            body.setdefault("error_code", "device_disconnected")
        return body

    def _unmanaged(self, code: CodeRecord) -> Body:
        return unmanaged_code_json(code, self.bridge_id)

    def code_json(self, code: CodeRecord) -> Body:
        """A code as Seam shows it, managed or not (for action attempt results)."""
        return self._code(code) if code.is_managed else self._unmanaged(code)

    def _find_device(self, device_id: UUID | None, name: str | None,
                     managed: bool = True) -> DeviceRecord:
        if device_id is not None:
            device = self.state.devices.get(str(device_id))
        else:
            device = next((d for d in self.state.devices.values()
                           if d.display_name == name and d.is_managed == managed), None)
        if device is None or device.is_managed != managed:
            raise not_found("device_not_found", "Device not found")
        return device

    def _find_code(self, p: m.AccessCodesGet, managed: bool) -> CodeRecord:
        if p.access_code_id is not None:
            code = self.state.code(str(p.access_code_id), managed=managed)
            if p.device_id is not None and code.device_id != str(p.device_id):
                raise not_found("access_code_not_found", "Access code not found")
            return code
        device = self._find_device(p.device_id, None)
        for code in self.state.codes_of(device.device_id):
            if code.is_managed == managed and code.code == p.code and (
                    not managed or _listed(code)):
                return code
        raise not_found("access_code_not_found", "Access code not found")

    def _device_wanted(self, d: DeviceRecord, p: m.DevicesList) -> bool:
        if p.device_ids is not None and d.device_id not in {str(i) for i in p.device_ids}:
            return False
        types = set(p.device_types or []) | ({p.device_type} if p.device_type else set())
        if types and d.info.device_type not in types:
            return False
        if p.manufacturer and d.info.manufacturer.lower() != p.manufacturer.lower():
            return False
        accounts = {str(i) for i in (p.connected_account_ids or [])}
        if p.connected_account_id:
            accounts.add(str(p.connected_account_id))
        if accounts and connected_account_id(self.bridge_id, d.driver) not in accounts:
            return False
        if p.created_before and not d.created_at < p.created_before:
            return False
        return _matches(p.search, d.display_name, d.device_id)


class _EventFilter:
    """The filters of /events/list that the store cannot apply itself."""

    def __init__(self, p: m.EventsList) -> None:
        self.devices = _ids(p.device_id, p.device_ids)
        self.codes = _ids(p.access_code_id, p.access_code_ids)
        self.event_ids = {str(i) for i in p.event_ids} if p.event_ids is not None else None
        kinds = list(p.event_types or []) + ([p.event_type] if p.event_type else [])
        self.types = kinds or None
        self.since: datetime | None = p.since
        self.between = p.between

    def __call__(self, event: Event) -> bool:
        if self.devices is not None and event.device_id not in self.devices:
            return False
        if self.codes is not None and event.access_code_id not in self.codes:
            return False
        if self.event_ids is not None and event.event_id not in self.event_ids:
            return False
        if self.since is not None and event.occurred_at < self.since:
            return False
        return self.between is None or \
            self.between[0] <= event.occurred_at <= self.between[1]


async def _network_call(call: Awaitable[Any]) -> Any:
    """A network command's driver errors as API errors: the radio away is worth a retry."""
    try:
        return await call
    except RetryLater as exc:
        raise ApiError(503, "service_unavailable", str(exc)) from exc
    except DriverError as exc:
        raise ApiError(400, "invalid_input", str(exc)) from exc


def _ids(one: UUID | None, many: list[UUID] | None) -> set[str] | None:
    if one is None and many is None:
        return None
    return {str(i) for i in (many or [])} | ({str(one)} if one else set())


def _listed(code: CodeRecord) -> bool:
    """A managed code that /access_codes/list shows: not gone, not an unpulled backup."""
    if not code.is_managed or (code.deleted and not code.on_lock):
        return False
    return not code.is_backup or code.backup_pulled_for is not None


def _matches(search: str | None, *fields: str | None) -> bool:
    if not search:
        return True
    needle = search.lower()
    return any(f is not None and needle in f.lower() for f in fields)


def _id(value: UUID | None) -> str | None:
    return str(value) if value is not None else None


def _either(a: bool | None, b: bool | None) -> bool | None:
    return a if a is not None else b


def _new_id() -> str:
    return str(uuid.uuid4())
