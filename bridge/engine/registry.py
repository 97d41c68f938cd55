"""The locks the drivers report: registered with a stable id, described anew when a driver
learns more, found after start, and what the drivers report about them routed in."""

from __future__ import annotations

import logging
import uuid
from collections.abc import Callable
from dataclasses import replace
from typing import Any

from bridge.config import DeviceOverride
from bridge.driver import Availability, DeviceInfo, DriverEvent, DriverEventKind
from bridge.engine.availability import AvailabilityTracker
from bridge.engine.gateway import DriverGateway
from bridge.engine.issues import driver_errors
from bridge.engine.state import EngineState
from bridge.engine.worker import LockWorker
from bridge.model import EventType
from bridge.records import DeviceRecord
from bridge.zones import lock_zone

_LOG = logging.getLogger("bridge.engine")

_DEVICE_NAMESPACE = uuid.UUID("6f1c3c52-7d4e-4c4b-9a53-2f0f8f6b1c11")

# A lock the configuration says nothing about: everything as the driver reports it.
_NO_OVERRIDE = DeviceOverride()


class LockRegistry:
    """Turns what drivers report into device records and workers."""

    def __init__(self, state: EngineState, gateway: DriverGateway,
                 availability: AvailabilityTracker, start_worker: Callable[[str], None], *,
                 overrides: dict[str, DeviceOverride],
                 default_time_zone: Callable[[str, str], str | None]) -> None:
        self._state = state
        self._gateway = gateway
        self._availability = availability
        self._start_worker = start_worker
        self._overrides = overrides
        self._zone_for = default_time_zone

    async def register_all(self) -> None:
        """Register every lock every driver reports; mark the others removed."""
        state = self._state
        records: list[DeviceRecord] = []
        # (driver, lock, its device id, its availability): the id is a UUIDv5, made once here.
        reported: list[tuple[str, str, str, Availability]] = []
        for name, driver in self._gateway.drivers.items():
            for info in driver.devices():
                record = self._describe(name, info)
                if record != state.devices.get(record.device_id):
                    records.append(record)
                reported.append((name, info.external_id, record.device_id,
                                 self._gateway.reported(driver, info.external_id)))
        # One transaction for every lock (a restart of a 1,000-lock bridge rewrote each alone).
        await state.commit(devices=records)
        for name, external_id, device_id, _ in reported:
            self._adopt(name, external_id, device_id)
        for _, _, device_id, availability in reported:
            if availability is not state.devices[device_id].availability:
                await self._availability.set(device_id, availability)
        for device in list(state.devices.values()):
            if device.device_id not in state.workers and not device.removed:
                # In the store but no driver reports it any more.
                await self._availability.set(device.device_id, Availability.REMOVED)

    async def register(self, driver_name: str, info: DeviceInfo,
                       availability: Availability) -> None:
        """Record one lock a driver reports, and give it a worker."""
        state = self._state
        record = self._describe(driver_name, info)
        await state.commit(devices=[record])
        self._adopt(driver_name, info.external_id)
        if availability is not record.availability:
            await self._availability.set(record.device_id, availability)

    def _describe(self, driver_name: str, info: DeviceInfo) -> DeviceRecord:
        """The record of a lock a driver reports (kept as far as the store has it); nothing
        committed, nothing indexed."""
        state = self._state
        device_id = _device_id(driver_name, info.external_id)
        override = self._overrides.get(info.external_id, _NO_OVERRIDE)
        info = _with_pin_overrides(info, override)
        zone = lock_zone(override.time_zone, info.time_zone,
                         self._zone_for(driver_name, info.external_id))
        spacing = override.command_spacing_s
        caps = info.capabilities
        if spacing is None and caps.min_command_spacing_s == 0:
            spacing = 0.0
        existing = state.devices.get(device_id)
        record = DeviceRecord(
            device_id=device_id, driver=driver_name, external_id=info.external_id, info=info,
            created_at=existing.created_at if existing else state.clock.now(),
            availability=existing.availability if existing else Availability.ONLINE,
            display_name=override.display_name or info.display_name,
            time_zone=zone, errors=driver_errors(existing.errors if existing else (),
                                                 existing.info if existing else None, info,
                                                 state.clock.now()),
            warnings=existing.warnings if existing else (),
            backup_pool_enabled=existing.backup_pool_enabled if existing else False,
            command_spacing_s=spacing,
            is_managed=existing.is_managed if existing else True,
        )
        return record

    def _adopt(self, driver_name: str, external_id: str, device_id: str | None = None) -> None:
        """Index a lock whose record is committed, and give it a worker (once): a driver's
        event about it may look it up from now on. `device_id`: its id, if already made."""
        state = self._state
        device_id = device_id or _device_id(driver_name, external_id)
        state.by_external[(driver_name, external_id)] = device_id
        if device_id not in state.workers:
            state.workers[device_id] = LockWorker.for_lock(device_id, state.policy)

    async def discover(self, driver_name: str) -> None:
        """A driver found locks after start (a lock added to an account or a network)."""
        state = self._state
        driver = self._gateway.drivers.get(driver_name)
        if driver is None:
            return
        for info in driver.devices():
            known = state.by_external.get((driver_name, info.external_id))
            if known in state.workers:
                assert known is not None
                await self._redescribe(known, info)
                continue
            await self.register(driver_name, info,
                                self._gateway.reported(driver, info.external_id))
            device_id = state.by_external[(driver_name, info.external_id)]
            _LOG.info("lock %s (%s) found by driver %s", device_id, info.display_name,
                      driver_name)
            state.workers[device_id].full_read = True
            self._start_worker(device_id)

    async def _redescribe(self, device_id: str, info: DeviceInfo) -> None:
        """A driver learned more about a known lock (its slots, PIN rules): keep the new
        description; a changed slot range is read in full."""
        state = self._state
        info = _with_pin_overrides(info, self._overrides.get(info.external_id, _NO_OVERRIDE))
        async with state.lock_for(device_id):
            device = state.devices[device_id]
            if device.info == info:
                return
            before = device.info.capabilities.slots()
            await state.commit(devices=[replace(device, info=info, errors=driver_errors(
                device.errors, device.info, info, state.clock.now()))])
        _LOG.info("lock %s: the driver describes it anew (%d slots)", device_id,
                  info.capabilities.slot_count)
        worker = state.workers[device_id]
        if info.capabilities.slots() != before:
            worker.full_read = True
        worker.wake.set()

    async def on_driver_event(self, driver_name: str, event: DriverEvent) -> None:
        """A driver's report: availability, a slot changed at the lock, or a keypad unlock."""
        state = self._state
        if event.kind is DriverEventKind.DEVICES_CHANGED:
            await self.discover(driver_name)
            return
        device_id = state.by_external.get((driver_name, event.external_id))
        if device_id is None:
            return
        worker = state.workers[device_id]
        if event.kind is DriverEventKind.AVAILABILITY and event.availability is not None:
            await self._availability.set(device_id, event.availability)
        elif event.kind is DriverEventKind.SLOT_CHANGED and event.slot is not None:
            worker.pending_reads.add(event.slot)
        elif event.kind is DriverEventKind.KEYPAD_USED:
            code = state.code_in_slot(device_id, event.slot)
            data: dict[str, Any] = {"method": "keycode", "slot": event.slot}
            await state.commit(events=[state.event(
                EventType.LOCK_UNLOCKED, device_id,
                code.access_code_id if code else None, data)])
        elif event.kind is DriverEventKind.UNLOCKED:
            await state.commit(events=[state.event(
                EventType.LOCK_UNLOCKED, device_id, None,
                {"method": event.detail.get("method", "unknown")})])
        worker.wake.set()


def _with_pin_overrides(info: DeviceInfo, override: DeviceOverride) -> DeviceInfo:
    """The lock's PIN rules with what the operator knows and the driver cannot read."""
    length = override.pin_length
    prefixes = tuple(override.pin_forbidden_prefixes)
    if length is None and not prefixes:
        return info
    rules = info.constraints
    rules = replace(rules, fixed_length=length if length is not None else rules.fixed_length,
                    forbidden_prefixes=tuple(dict.fromkeys((*rules.forbidden_prefixes,
                                                            *prefixes))))
    return replace(info, constraints=rules)


def _device_id(driver_name: str, external_id: str) -> str:
    """A lock's stable id: the same for the same driver and lock across restarts."""
    return str(uuid.uuid5(_DEVICE_NAMESPACE, f"{driver_name}:{external_id}"))
