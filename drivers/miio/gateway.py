"""One Xiaomi/Aqara Zigbee gateway and the Aqara locks paired with it, watched by polling.

Each poll is one job in a thread, the gateway's only exchange at that time: list the
sub-devices (python-miio's `Gateway.discover_devices`: `get_device_prop ["lumi.0",
"device_list"]` on v3, `get_device_list` on mgl03), then read every lock's published
properties by name (`get_device_prop_exp`) and, where the model has no `bat_percent`, its
battery with `get_battery` (v3 only). Over miIO a client sees a lock's state, not who opened it
or how (docs/drivers/miio-gateway-facts.md): an unlock seen by polling is reported with method
`unknown`.

A gateway that does not answer leaves its locks `hub_disconnected`; a lock the gateway lost
(`alive` 0) is `offline`; a lock gone from the gateway's list was unpaired: `removed`.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass, field
from typing import Any

from miio.exceptions import DeviceError, DeviceException
from miio.gateway.gateway import Gateway

from bridge.driver import (
    Availability,
    DeviceInfo,
    DriverEvent,
    DriverEventKind,
    LockCapabilities,
    LockState,
    PinConstraints,
)
from drivers.events import EventPump
from drivers.miio.aqara import AQARA_LOCKS, AqaraLockModel
from drivers.miio.calls import one_at_a_time
from drivers.miio.config import GatewayConfig
from drivers.miio.token import describe_error, read_token, wrong_token

_LOG = logging.getLogger(__name__)
_V3 = "lumi.gateway.v3"


class _OncePerMessage(logging.Filter):
    """python-miio warns about every sub-device it cannot name (a sensor newer than it) at
    each `discover_devices`, so at every poll: say each such thing once per run."""

    def __init__(self) -> None:
        super().__init__()
        self._seen: set[str] = set()

    def filter(self, record: logging.LogRecord) -> bool:
        text = record.getMessage()
        if text in self._seen:
            return False
        if len(self._seen) < 1000:
            self._seen.add(text)
        return True


logging.getLogger("miio.gateway.gateway").addFilter(_OncePerMessage())


@dataclass(eq=False)
class SubLock:
    """One Aqara lock paired with the gateway, as last polled."""

    sid: str
    model: AqaraLockModel
    availability: Availability = Availability.HUB_DISCONNECTED
    state: LockState = field(default_factory=LockState)


@dataclass(frozen=True, slots=True)
class _Read:
    """What one poll learned of one lock; `values` empty when the gateway gave nothing."""

    model: AqaraLockModel
    values: dict[str, Any]
    battery: int | None
    problem: str | None = None


class GatewayWatch:
    """Polls one gateway; reports its locks' availability, state and unlocks."""

    def __init__(self, settings: GatewayConfig, driver_name: str, timeout_s: float,
                 events: EventPump, remembered: dict[str, str]) -> None:
        self.settings = settings
        self._driver = driver_name
        self._timeout_s = timeout_s
        self._events = events
        self.locks: dict[str, SubLock] = {
            sid: SubLock(sid, AQARA_LOCKS[model]) for sid, model in remembered.items()
            if model in AQARA_LOCKS}
        self._guard = asyncio.Lock()
        self._client: Any = None
        # The wrong-token hint was given in this outage (it is said once, not at every poll).
        self._token_hint_given = False

    def describe(self, lock: SubLock) -> DeviceInfo:
        """The lockbridge device of one sub-lock: watched, never given codes."""
        cfg = self.settings
        caps = LockCapabilities(slot_count=0, can_read=False, programs_codes=False,
                                can_delete_unmanaged=False, min_command_spacing_s=0.0)
        name = cfg.names.get(lock.sid) or f"Aqara {lock.model.name} {lock.sid[-4:]}"
        return DeviceInfo(external_id=lock.sid, display_name=name, manufacturer="Aqara",
                          model=lock.model.zigbee_id, device_type="aqara_lock",
                          capabilities=caps, constraints=PinConstraints(), hub_id=cfg.id,
                          time_zone=cfg.time_zone, state=lock.state)

    def remembered(self) -> dict[str, str]:
        """The locks to serve before the gateway answers after a restart: sid -> model."""
        return {sid: lock.model.zigbee_id for sid, lock in self.locks.items()}

    async def poll(self) -> bool:
        """Read the gateway once; True if it answered. Reports what changed."""
        bound = (self._timeout_s * 4 + 10) * (1 + 2 * max(1, len(self.locks)))
        try:
            reads = await one_at_a_time(self._guard, self._read, bound)
        except (DeviceException, TimeoutError, OSError) as exc:
            # A new client next time: the token file is read again, the handshake redone.
            self._client = None
            self._unreachable(exc)
            return False
        self._token_hint_given = False
        self._apply(reads)
        return True

    # -- in the thread ---------------------------------------------------------------------

    def _read(self) -> dict[str, _Read]:
        """List the gateway's sub-devices and read each Aqara lock among them."""
        cfg = self.settings
        if self._client is None:
            token = read_token(cfg.token_file)
            self._client = _gateway_class(self._timeout_s)(cfg.host, token, model=cfg.model)
        reads: dict[str, _Read] = {}
        for sid, sub in self._client.discover_devices().items():
            model = AQARA_LOCKS.get(sub.zigbee_model)
            if model is not None:
                reads[sid] = self._read_lock(sub, model)
        return reads

    def _read_lock(self, sub: Any, model: AqaraLockModel) -> _Read:
        try:
            values = dict(zip(model.props, sub.get_property_exp(list(model.props)),
                              strict=True))
            battery = None
            if model.battery_by_get_battery and self.settings.model == _V3:
                battery = sub.get_battery()
        except (DeviceException, IndexError) as exc:
            # python-miio wraps what went wrong in a GatewayException: a failed exchange is the
            # gateway's problem; an answer that was an error, empty or short is this lock's
            # (`get_battery` pops from an empty answer: IndexError).
            if isinstance(exc, DeviceException) and exc.__cause__ is not None \
                    and not isinstance(exc.__cause__, DeviceError):
                raise
            return _Read(model, {}, None, describe_error(exc))
        return _Read(model, values, battery if isinstance(battery, int) else None)

    # -- back in the event loop ------------------------------------------------------------

    def _apply(self, reads: dict[str, _Read]) -> None:
        changed = False
        for sid, read in reads.items():
            lock = self.locks.get(sid)
            if lock is None:
                lock = self.locks[sid] = SubLock(sid, read.model)
                _LOG.info("miio %s: gateway %s has lock %s (%s)", self._driver,
                          self.settings.id, sid, read.model.zigbee_id)
                changed = True
            if read.problem is not None:
                _LOG.debug("miio %s: gateway %s answered nothing usable for lock %s: %s",
                           self._driver, self.settings.id, sid, read.problem)
                self._set_availability(lock, Availability.OFFLINE)
                continue
            state = read.model.state(read.values, read.battery)
            if lock.state.locked is True and state.locked is False:
                # Opened at the door; who and how is not readable over miIO.
                self._events.emit(DriverEvent(DriverEventKind.UNLOCKED, sid,
                                              detail={"method": "unknown"}))
            if state != lock.state:
                lock.state = state
                changed = True
            self._set_availability(lock, Availability.ONLINE if read.model.reachable(
                read.values) else Availability.OFFLINE)
        for sid in [sid for sid in self.locks if sid not in reads]:
            _LOG.info("miio %s: lock %s is no longer paired with gateway %s", self._driver,
                      sid, self.settings.id)
            self._set_availability(self.locks.pop(sid), Availability.REMOVED)
        if changed:
            self._events.emit(DriverEvent(DriverEventKind.DEVICES_CHANGED, ""))

    def _unreachable(self, exc: BaseException) -> None:
        """Every lock hub_disconnected; once per outage a hint when the token is wrong."""
        cfg = self.settings
        if wrong_token(exc) and not self._token_hint_given:
            self._token_hint_given = True
            _LOG.warning("miio %s: gateway %s at %s answers its handshake but not our "
                         "requests: check its token in %s", self._driver, cfg.id, cfg.host,
                         cfg.token_file)
        else:
            _LOG.debug("miio %s: gateway %s did not answer: %s", self._driver, cfg.id,
                       describe_error(exc))
        for lock in self.locks.values():
            self._set_availability(lock, Availability.HUB_DISCONNECTED)

    def _set_availability(self, lock: SubLock, availability: Availability) -> None:
        if lock.availability is availability:
            return
        lock.availability = availability
        _LOG.info("miio %s: lock %s (gateway %s) is %s", self._driver, lock.sid,
                  self.settings.id, availability.value)
        self._events.availability(lock.sid, availability)


def _gateway_class(timeout_s: float) -> type[Gateway]:
    """python-miio's Gateway takes no timeout: its per-try timeout is a class attribute."""
    return type("TimedGateway", (Gateway,), {"timeout": max(0.2, timeout_s)})
