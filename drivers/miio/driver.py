"""Xiaomi and Aqara locks on the LAN through python-miio: watched, never given codes.

python-miio has no PIN API for locks: Xiaomi and Aqara issue lock passwords only through their
app or cloud. What a box on the LAN can do is read what the locks publish: whether each is
locked, whether the door is open, its battery. Two kinds of lock: Xiaomi (MiOT) Wi-Fi locks,
each its own miIO device (below), and Aqara Zigbee locks paired with a Xiaomi/Aqara gateway,
read through the gateway (`drivers.miio.gateway`). Neither tells a miIO client who opened it
or how (a MiOT lock's event fields have no read access; a gateway publishes its locks' events
only outside miIO), so an unlock seen by polling is reported with method `unknown`. Locks
appear with `can_program_online_access_codes: false`; a code request for one is refused up
front by the engine, naming why.

python-miio is blocking: every exchange runs in a thread, one at a time per device, under a
bound. Its handshake alone waits 5 s for a device that does not answer.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from miio.exceptions import DeviceException
from miio.miot_device import MiotDevice

from bridge.clock import Clock
from bridge.driver import (
    Availability,
    CodeWrite,
    CommandRejected,
    DeviceInfo,
    DriverEvent,
    DriverEventKind,
    DriverEventSink,
    FixConfig,
    LockCapabilities,
    LockState,
    PinConstraints,
    RejectReason,
    SlotRead,
    WriteResult,
)
from drivers.events import EventPump
from drivers.memory import load_memory, save_memory
from drivers.miio.calls import one_at_a_time
from drivers.miio.config import Config, LockConfig
from drivers.miio.gateway import GatewayWatch
from drivers.miio.models import MODELS, LockModel
from drivers.miio.token import describe_error, read_token, wrong_token
from drivers.tasks import cancel_and_wait

_LOG = logging.getLogger(__name__)
_REFUSAL = ("Xiaomi and Aqara locks take passwords only from their maker's app or cloud; "
            "lockbridge can watch this lock but cannot program its codes")


@dataclass(eq=False)
class _Lock:
    settings: LockConfig
    spec: LockModel
    availability: Availability = Availability.OFFLINE
    locked: bool | None = None
    door_open: bool | None = None
    battery: int | None = None
    guard: asyncio.Lock = field(default_factory=asyncio.Lock)
    client: Any = None
    # The wrong-token hint was given in this outage (it is said once, not at every poll).
    token_hint_given: bool = False


class MiioDriver:
    """Every configured Xiaomi lock and gateway, each polled on its own."""

    def __init__(self, config: Config, clock: Clock, memory_file: Path | None = None) -> None:
        self.name = config.name
        self._config = config
        self._clock = clock
        self._locks: dict[str, _Lock] = {}
        for cfg in config.locks:
            spec = MODELS.get(cfg.model)
            if spec is None:
                raise FixConfig(f"miio lock {cfg.id}: model {cfg.model!r} has no published "
                                f"MiOT lock spec lockbridge knows ({', '.join(sorted(MODELS))})")
            self._locks[cfg.id] = _Lock(cfg, spec)
        self._events = EventPump(f"miio {config.name}")
        # The gateways' locks as last seen, so they are served before their gateway answers.
        self._memory_file = memory_file
        remembered = load_memory(memory_file).get("gateways")
        remembered = remembered if isinstance(remembered, dict) else {}
        self._gateways = [
            GatewayWatch(cfg, config.name, config.timeout_s, self._events,
                         _sub_locks(remembered.get(cfg.id)))
            for cfg in config.gateways]
        self._tasks: list[asyncio.Task[None]] = []

    async def start(self, sink: DriverEventSink) -> None:
        """Read every lock and gateway once (bounded), then poll each in its own task."""
        self._events.start(sink)
        await asyncio.gather(*(self._poll_once(lock) for lock in self._locks.values()),
                             *(self._poll_gateway(watch) for watch in self._gateways))
        self._tasks = [asyncio.create_task(self._poll(lock), name=f"miio:{lock.settings.id}")
                       for lock in self._locks.values()]
        self._tasks += [asyncio.create_task(self._poll_gateway_forever(watch),
                                            name=f"miio-gateway:{watch.settings.id}")
                        for watch in self._gateways]

    async def stop(self) -> None:
        """Stop polling; safe to call twice."""
        tasks, self._tasks = self._tasks, []
        for task in tasks:
            await cancel_and_wait(task)
        await self._events.stop()

    def devices(self) -> Sequence[DeviceInfo]:
        """Every configured Wi-Fi lock, and every lock paired with a configured gateway."""
        return [self._describe(lock) for lock in self._locks.values()] + [
            watch.describe(sub) for watch in self._gateways for sub in watch.locks.values()]

    def availability(self, external_id: str) -> Availability:
        """Whether the lock (its gateway) answered its last poll."""
        lock = self._locks.get(external_id)
        if lock is not None:
            return lock.availability
        watch = self._gateway_of(external_id)
        return watch.locks[external_id].availability if watch else Availability.REMOVED

    async def read_slots(self, external_id: str, slots: Sequence[int]) -> list[SlotRead]:
        """Nothing to read: the lock keeps no codes lockbridge can see."""
        return []

    async def list_codes(self, external_id: str) -> list[SlotRead]:
        """Nothing to list (see the module's docstring)."""
        return []

    async def write_code(self, external_id: str, code: CodeWrite) -> WriteResult:
        """Refused for good: see the module's docstring."""
        raise CommandRejected(RejectReason.UNSUPPORTED, _REFUSAL)

    async def clear_code(self, external_id: str, slot: int) -> None:
        """Refused for good: see the module's docstring."""
        raise CommandRejected(RejectReason.UNSUPPORTED, _REFUSAL)

    async def probe(self, external_id: str) -> bool:
        """One poll (of the lock's gateway): True if the lock answered."""
        lock = self._locks.get(external_id)
        if lock is not None:
            return await self._poll_once(lock)
        watch = self._gateway_of(external_id)
        if watch is None:
            return False
        await self._poll_gateway(watch)
        sub = watch.locks.get(external_id)
        return sub is not None and sub.availability is Availability.ONLINE

    def _gateway_of(self, external_id: str) -> GatewayWatch | None:
        return next((w for w in self._gateways if external_id in w.locks), None)

    # -- gateways ------------------------------------------------------------------------------

    async def _poll_gateway_forever(self, watch: GatewayWatch) -> None:
        while True:  # bounded by the driver's life: cancelled in stop()
            await self._clock.sleep(self._config.poll_interval_s)
            await self._poll_gateway(watch)

    async def _poll_gateway(self, watch: GatewayWatch) -> None:
        before = watch.remembered()
        await watch.poll()
        if watch.remembered() != before:
            save_memory(self._memory_file, {"gateways": {
                w.settings.id: w.remembered() for w in self._gateways}})

    # -- polling -------------------------------------------------------------------------------

    async def _poll(self, lock: _Lock) -> None:
        while True:  # bounded by the driver's life: cancelled in stop()
            await self._clock.sleep(self._config.poll_interval_s)
            await self._poll_once(lock)

    async def _poll_once(self, lock: _Lock) -> bool:
        """Read the lock's state; report availability changes and an unlock seen."""
        try:
            values = await one_at_a_time(lock.guard, lambda: self._read_state(lock),
                                         self._config.timeout_s * 4 + 10)
        except (DeviceException, TimeoutError, OSError) as exc:
            # A new client next time: the token file is read again, the handshake redone.
            lock.client = None
            self._failed(lock, exc)
            return False
        self._set_availability(lock, Availability.ONLINE)
        lock.token_hint_given = False
        locked, door_open, battery = lock.spec.state(values)
        if lock.locked is True and locked is False:
            # Opened at the door; how and by whom only Xiaomi's cloud learns.
            self._events.emit(DriverEvent(DriverEventKind.UNLOCKED, lock.settings.id,
                                          detail={"method": "unknown"}))
        before = (lock.locked, lock.door_open, lock.battery)
        if locked is not None:
            lock.locked = locked
        lock.door_open, lock.battery = door_open, battery
        if (lock.locked, lock.door_open, lock.battery) != before:
            # The engine keeps the lock's new description, state included.
            self._events.emit(DriverEvent(DriverEventKind.DEVICES_CHANGED, ""))
        return True

    def _read_state(self, lock: _Lock) -> dict[tuple[int, int], Any]:
        """In a thread: one get_properties exchange for the readable properties."""
        if lock.client is None:
            token = read_token(lock.settings.token_file)
            lock.client = MiotDevice(lock.settings.host, token,
                                     timeout=int(max(1, self._config.timeout_s)),
                                     model=lock.spec.model,
                                     mapping={name: {"siid": siid, "piid": piid}
                                              for name, (siid, piid) in
                                              lock.spec.readable.items()})
        rows = lock.client.get_properties_for_mapping()
        return {(int(row["siid"]), int(row["piid"])): row.get("value")
                for row in rows if row.get("code") == 0}

    def _failed(self, lock: _Lock, exc: BaseException) -> None:
        """Offline, and once per outage a hint when the lock answers but not to our token."""
        if wrong_token(exc) and not lock.token_hint_given:
            lock.token_hint_given = True
            _LOG.warning("miio %s: lock %s at %s answers its handshake but not our requests: "
                         "check its token in %s", self.name, lock.settings.id,
                         lock.settings.host, lock.settings.token_file)
        else:
            _LOG.debug("miio %s: lock %s did not answer: %s", self.name, lock.settings.id,
                       describe_error(exc))
        self._set_availability(lock, Availability.OFFLINE)

    def _set_availability(self, lock: _Lock, availability: Availability) -> None:
        if lock.availability is availability:
            return
        lock.availability = availability
        _LOG.info("miio %s: lock %s is %s", self.name, lock.settings.id, availability.value)
        self._events.availability(lock.settings.id, availability)

    def _describe(self, lock: _Lock) -> DeviceInfo:
        cfg = lock.settings
        caps = LockCapabilities(slot_count=0, can_read=False, programs_codes=False,
                                can_delete_unmanaged=False, min_command_spacing_s=0.0)
        return DeviceInfo(external_id=cfg.id, display_name=cfg.name or f"Xiaomi lock {cfg.id}",
                          manufacturer=lock.spec.manufacturer, model=cfg.model,
                          device_type="xiaomi_lock", capabilities=caps,
                          constraints=PinConstraints(), time_zone=cfg.time_zone,
                          state=LockState(locked=lock.locked, door_open=lock.door_open,
                                          battery_percent=lock.battery))


def _sub_locks(remembered: object) -> dict[str, str]:
    """A gateway's remembered locks (sid -> model) from the memory file, leniently."""
    if not isinstance(remembered, dict):
        return {}
    return {str(sid): model for sid, model in remembered.items() if isinstance(model, str)}
