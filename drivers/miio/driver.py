"""Xiaomi (MiOT) Wi-Fi locks on the LAN through python-miio: watched, never given codes.

python-miio has no PIN API for locks: Xiaomi issues lock passwords only through its app or
cloud. What a box on the LAN can do is read the lock's published MiOT properties: whether it is
locked, whether the door is open, its battery. The lock's events (who opened it, by which
method) are sent only to Xiaomi's gateway or cloud, and their fields cannot be read locally (the
spec gives them no read access), so an unlock seen by polling is reported with method
`unknown`. Locks appear with `can_program_online_access_codes: false`; a code request for one
is refused up front by the engine, naming why.

python-miio is blocking: every exchange runs in a thread, one at a time per lock, under a
timeout. Its handshake alone waits 5 s for a lock that does not answer.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
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
    PinConstraints,
    RejectReason,
    SlotRead,
    WriteResult,
)
from drivers.events import EventPump
from drivers.miio.config import Config, LockConfig
from drivers.miio.models import MODELS, LockModel

_LOG = logging.getLogger(__name__)
_REFUSAL = ("Xiaomi locks take passwords only from Xiaomi's app or cloud; lockbridge can watch "
            "this lock but cannot program its codes")


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
    """Every configured Xiaomi lock, each polled on its own."""

    def __init__(self, config: Config, clock: Clock) -> None:
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
        self._tasks: list[asyncio.Task[None]] = []

    async def start(self, sink: DriverEventSink) -> None:
        """Read every lock once (bounded), then poll each in its own task."""
        self._events.start(sink)
        await asyncio.gather(*(self._poll_once(lock) for lock in self._locks.values()))
        self._tasks = [asyncio.create_task(self._poll(lock), name=f"miio:{lock.settings.id}")
                       for lock in self._locks.values()]

    async def stop(self) -> None:
        """Stop polling; safe to call twice."""
        tasks, self._tasks = self._tasks, []
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        await self._events.stop()

    def devices(self) -> Sequence[DeviceInfo]:
        """Every configured lock."""
        return [self._describe(lock) for lock in self._locks.values()]

    def availability(self, external_id: str) -> Availability:
        """Whether the lock answered its last poll."""
        lock = self._locks.get(external_id)
        return lock.availability if lock is not None else Availability.REMOVED

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
        """One poll: True if the lock answered."""
        lock = self._locks.get(external_id)
        return lock is not None and await self._poll_once(lock)

    # -- polling -------------------------------------------------------------------------------

    async def _poll(self, lock: _Lock) -> None:
        while True:  # bounded by the driver's life: cancelled in stop()
            await self._clock.sleep(self._config.poll_interval_s)
            await self._poll_once(lock)

    async def _poll_once(self, lock: _Lock) -> bool:
        """Read the lock's state; report availability changes and an unlock seen."""
        async with lock.guard:
            try:
                async with asyncio.timeout(self._config.timeout_s * 4 + 10):
                    values = await asyncio.to_thread(self._read_state, lock)
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
        if locked is not None:
            lock.locked = locked
        lock.door_open, lock.battery = door_open, battery
        return True

    def _read_state(self, lock: _Lock) -> dict[tuple[int, int], Any]:
        """In a thread: one get_properties exchange for the readable properties."""
        if lock.client is None:
            token = _token(lock.settings)
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
        text = str(exc)
        wrong_token = "invalid token" in text or "No response from the device" in text
        if wrong_token and not lock.token_hint_given:
            lock.token_hint_given = True
            _LOG.warning("miio %s: lock %s at %s answers its handshake but not our requests: "
                         "check its token in %s", self.name, lock.settings.id,
                         lock.settings.host, lock.settings.token_file)
        else:
            _LOG.debug("miio %s: lock %s did not answer: %s", self.name, lock.settings.id,
                       _describe_error(exc))
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
                          constraints=PinConstraints(), time_zone=cfg.time_zone)


def _token(cfg: LockConfig) -> str:
    """The token from its file, read at each (re)connect so a changed token is picked up."""
    try:
        token = cfg.token_file.read_text().strip().splitlines()[0].strip()
    except (OSError, IndexError) as exc:
        raise DeviceException(f"cannot read the token file {cfg.token_file}: {exc}") from exc
    if len(token) != 32 or any(c not in "0123456789abcdefABCDEF" for c in token):
        raise DeviceException(f"the token in {cfg.token_file} is not 32 hex digits")
    return token


def _describe_error(exc: BaseException) -> str:
    """The error without anything secret: python-miio's messages carry no token."""
    return f"{type(exc).__name__}: {exc}"
