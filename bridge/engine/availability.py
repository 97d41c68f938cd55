"""A lock's availability: its device error, the connected/disconnected events, the statuses that
follow it, and what a reconnect restarts."""

from __future__ import annotations

import logging
from dataclasses import replace

from bridge.driver import Availability, DriverError, Reauthenticate, RetryLater
from bridge.engine.gateway import DriverGateway
from bridge.engine.issues import RETRYABLE_ERRORS, drop_codes, with_issue
from bridge.engine.state import EngineState
from bridge.model import DeviceErrorCode, Event, EventType
from bridge.records import CodeRecord, DeviceRecord

_LOG = logging.getLogger("bridge.engine")

AVAILABILITY_ERRORS = {
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


class AvailabilityTracker:
    """Records what the drivers and failed commands say about reaching each lock."""

    def __init__(self, state: EngineState, gateway: DriverGateway) -> None:
        self._state = state
        self._gateway = gateway

    async def set(self, device_id: str, availability: Availability) -> None:
        """Record a lock's new availability (nothing when it is unchanged)."""
        state = self._state
        async with state.lock_for(device_id):
            device = state.devices[device_id]
            if device.availability is availability:
                return
            now = state.clock.now()
            was_online = device.online
            errors = drop_codes(device.errors, {c for c, _ in AVAILABILITY_ERRORS.values()})
            if availability in AVAILABILITY_ERRORS:
                error_code, message = AVAILABILITY_ERRORS[availability]
                errors = with_issue(errors, error_code, message, now)
            updated = replace(device, availability=availability, errors=errors)
            events: list[Event] = []
            if was_online and not updated.online:
                events.append(state.event(EventType.DEVICE_DISCONNECTED, device_id, None,
                                          {"reason": availability.value}))
            elif updated.online and not was_online:
                events.append(state.event(EventType.DEVICE_CONNECTED, device_id, None, {}))
            # Statuses that depend on reaching the lock (`unknown`) follow its availability.
            codes: list[CodeRecord] = []
            for code in state.codes_of(device_id):
                if code.is_managed:
                    refreshed = state.refresh(code, updated, now)
                    if refreshed is not code:
                        codes.append(refreshed)
            if updated.online and not was_online:
                codes = self._reconnected(updated, codes)
            await state.commit(devices=[updated], codes=codes, events=events)
        if availability is not Availability.ONLINE:
            _LOG.warning("lock %s is %s", device_id, availability.value)
        else:
            _LOG.info("lock %s is online again", device_id)
        state.wake(device_id)

    def _reconnected(self, device: DeviceRecord, codes: list[CodeRecord]) -> list[CodeRecord]:
        """A reconnect is "something changed": retry given-up codes, re-read the lock."""
        device_id = device.device_id
        worker = self._state.workers[device_id]
        worker.full_read = True
        worker.probes.reset()
        worker.read_failures.reset()
        worker.reads_resume_at = 0.0
        latest = {c.access_code_id: c for c in codes}
        for code in self._state.codes_of(device_id):
            code = latest.get(code.access_code_id, code)
            if code.is_managed and (code.gave_up or code.attempts) \
                    and code.sync.refused_for_good is None:
                latest[code.access_code_id] = replace(
                    code, gave_up=False, attempts=0, next_attempt_at=None,
                    errors=drop_codes(code.errors, RETRYABLE_ERRORS))
        return list(latest.values())

    async def command_failed(self, device_id: str, exc: DriverError) -> None:
        """A command failed: a lost account or an unreachable lock shows on the device."""
        device = self._state.devices[device_id]
        driver = self._gateway.driver_of(device)
        if isinstance(exc, Reauthenticate):
            await self.set(device_id, Availability.ACCOUNT_DISCONNECTED)
        elif isinstance(exc, RetryLater | TimeoutError):
            reported = self._gateway.reported(driver, device.external_id)
            if reported is not Availability.ONLINE:
                await self.set(device_id, reported)
