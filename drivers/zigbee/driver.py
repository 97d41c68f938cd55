"""Zigbee door locks through zigpy: the radio library's ControllerApplication runs the network,
and each lock is a device with the Door Lock cluster (0x0101).

PIN codes go in with Set PIN Code and come out with Clear PIN Code, one user id at a time
(never Clear All PIN Codes); every write is read back with Get PIN Code before it counts as
set. Time-bound codes use the lock's year-day schedules where it has them. One command at a
time per lock, with long reply timeouts: battery locks are sleepy end devices whose parent
holds our frames until they poll.
"""

from __future__ import annotations

import asyncio
import contextlib
import importlib
import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import zigpy.exceptions
import zigpy.types as zigpy_types
from zigpy.application import ControllerApplication
from zigpy.zcl import foundation

from bridge.clock import Clock
from bridge.driver import (
    Addressing,
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
    RetryLater,
    SlotRead,
    SlotState,
    WriteResult,
)
from bridge.reconnect import Backoff, FailureKind, ReconnectSupervisor
from drivers.events import EventPump
from drivers.memory import load_memory, save_memory
from drivers.tasks import cancel_and_wait
from drivers.zigbee import doorlock
from drivers.zigbee.config import Config, LockConfig
from drivers.zigbee.doorlock import LockLimits, UserStatus, UserType

_LOG = logging.getLogger(__name__)
# zigpy hands listeners its BaseDevice; the locks among them are ZigbeeDevices (endpoints,
# model), reached by attribute.
Device = Any

# Door Lock client commands the lock sends on its own (ZCL Door Lock cluster).
_OPERATION_EVENT = 0x20
_PROGRAMMING_EVENT = 0x21
_SOURCE_KEYPAD = 0x00
_OPERATION_UNLOCK = 0x02
_PROGRAMMING_PIN_EVENTS = frozenset({0x02, 0x03, 0x04})  # added, deleted, changed
_NO_USER = 0xFFFF
# A lock out of reach longer than this may have been changed at its keypad with the event lost:
# its users are read again when the engine next lists it. A shorter blip (a missed poll, one
# frame not acknowledged) keeps what was read, so the engine's re-read after a reconnect does not
# walk every user of the lock again.
_OUTAGE_FORGETS_READS_S = 900.0
_YEAR_DAY_SCHEDULE_ID = 0
_CACHE_VERSION = 1


@dataclass(eq=False)
class _Lock:
    """One Zigbee lock: what zigpy has of it and what lockbridge learned."""

    ieee: str
    settings: LockConfig
    manufacturer: str = ""
    model: str = ""
    limits: LockLimits = field(default_factory=LockLimits)
    device: Device | None = None
    info: DeviceInfo | None = None
    availability: Availability = Availability.DISCONNECTED
    # One command at a time per lock: sleepy locks take one frame per poll of their parent.
    guard: asyncio.Lock = field(default_factory=asyncio.Lock)
    # User ids a command of ours is working on: the lock's programming events for them are
    # echoes of our own writes, not changes made at the keypad.
    busy: set[int] = field(default_factory=set)
    # User ids seen holding a code in this session (read, or written by us): what a keypad
    # programming event that names no usable user id may have changed.
    occupied: set[int] = field(default_factory=set)
    # Each user's last answered Get PIN Code in this session, until a programming event, a
    # rejoin or a long outage says it may be stale: `list_codes` reads only the others.
    seen: dict[int, SlotRead] = field(default_factory=dict)
    # When the lock stopped answering (clock.monotonic()), while it does not.
    unreachable_since: float | None = None
    removed: bool = False


class ZigbeeDriver:
    """Zigbee locks on one radio."""

    def __init__(self, config: Config, clock: Clock, state_dir: Path) -> None:
        _quiet_library_frames()
        self.name = config.name
        self._config = config
        self._clock = clock
        self._state_dir = state_dir
        self._database = config.database if config.database.is_absolute() \
            else state_dir / config.database
        self._cache_file = state_dir / f"zigbee-{config.name}.json"
        self._locks: dict[str, _Lock] = {}
        self._app: ControllerApplication | None = None
        self._lost = asyncio.Event()
        self._up = asyncio.Event()
        self._events = EventPump(f"zigbee {config.name}")
        self._supervisor = ReconnectSupervisor(
            f"zigbee radio {config.radio.path}", clock, self._session, classify=_classify,
            backoff=Backoff(config.reconnect_min_s, config.reconnect_max_s), logger=_LOG)
        self._task: asyncio.Task[None] | None = None

    # -- lifecycle -----------------------------------------------------------------------------

    async def start(self, sink: DriverEventSink) -> None:
        """Start the radio in the background; known locks are served from the remembered list
        until the network is up (a radio unplugged at boot must not hold up the bridge)."""
        self._load_cache()
        self._events.start(sink)
        self._task = asyncio.create_task(self._supervisor.run(), name=f"zigbee:{self.name}")
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(self._config.command_timeout_s):
                await self._up.wait()

    async def stop(self) -> None:
        """Stop the radio and event delivery; safe to call twice."""
        task, self._task = self._task, None
        await cancel_and_wait(task)
        await self._events.stop()

    def devices(self) -> Sequence[DeviceInfo]:
        """Locks known now, ignored ones left out."""
        return [lock.info for lock in self._locks.values()
                if lock.info is not None and not lock.settings.ignore and not lock.removed]

    def availability(self, external_id: str) -> Availability:
        """Last known availability of one lock."""
        lock = self._locks.get(external_id)
        if lock is None or lock.removed:
            return Availability.REMOVED
        return lock.availability

    # -- commands ------------------------------------------------------------------------------

    async def read_slots(self, external_id: str, slots: Sequence[int]) -> list[SlotRead]:
        """Get PIN Code for each slot; a slot that does not answer is unreadable, the others
        are kept (one silent user id must not blind the whole lock)."""
        lock, info = self._lock(external_id)
        async with lock.guard:
            return await self._read(lock, info, list(slots))

    async def codes_unchanged(self, external_id: str) -> bool | None:
        """Always None, and no frame sent: the Door Lock cluster keeps no checksum of its PINs.
        Having this at all tells the engine that reads wake a battery lock's radio, so it
        sweeps the managed slots once a day instead of every reconcile; keypad changes in
        between arrive as the lock's programming events (`on_lock_command`)."""
        self._lock(external_id)
        return None

    async def list_codes(self, external_id: str) -> list[SlotRead]:
        """Every slot that holds a code, or could (unreadable ones are listed as such).

        Only the lock's own users are read (its NumberOfPINUsersSupported), one Get PIN Code
        each: the cluster has no bulk read and no checksum. Users read earlier in this session
        and not reported changed since are not read again, so the engine's re-read after a
        short outage costs nothing, and a walk cut short by its timeout resumes where it
        stopped."""
        lock, info = self._lock(external_id)
        users = list(info.capabilities.slots())
        async with lock.guard:
            unread = [user for user in users if user not in lock.seen]
            fresh = {r.slot: r for r in await self._read(lock, info, unread)} if unread else {}
        reads = [fresh[user] if user in fresh else lock.seen[user] for user in users]
        _LOG.info("zigbee %s: listed %d users of %s (%d read now, the others known from this "
                  "session)", self.name, len(reads), lock.ieee, len(fresh))
        return [r for r in reads if r.state is not SlotState.EMPTY]

    async def write_code(self, external_id: str, code: CodeWrite) -> WriteResult:
        """Set PIN Code (and its year-day schedule), then read the user back."""
        lock, info = self._lock(external_id)
        slot = _check_slot(code.slot, info.capabilities)
        pin = _check_pin(code.pin, info.constraints)
        scheduled = code.window is not None
        if scheduled and not info.capabilities.native_schedules:
            raise CommandRejected(RejectReason.UNSUPPORTED,
                                  "this lock keeps no year-day schedules")
        cluster = self._cluster(lock)
        user_type = UserType.YEAR_DAY_SCHEDULE if scheduled else UserType.UNRESTRICTED
        async with lock.guard, self._working_on(lock, slot):
            # Whatever the answer, the user is no longer what this session read: a Set whose
            # answer is lost may still have landed, and a listing must read it again.
            lock.seen.pop(slot, None)
            answer = await self._call(lock, cluster.set_pin_code(
                slot, UserStatus.ENABLED, user_type, pin,
                timeout=self._config.command_timeout_s))
            status = _status(answer)
            if status == doorlock.SetPinStatus.DUPLICATE_CODE:
                # A retried set whose first try landed answers "duplicate" too: look first.
                read = await self._read_one(lock, cluster, slot)
                if not _holds(read, pin):
                    doorlock.set_pin_outcome(status, slot)
            else:
                doorlock.set_pin_outcome(status, slot)
            if scheduled and code.window is not None:
                await self._put_schedule(lock, cluster, slot, code.window.starts_at,
                                         code.window.ends_at)
            read = await self._read_one(lock, cluster, slot)
            if _holds(read, pin):
                return WriteResult(slot=slot, pin=pin, confirmed=True)
            if read.state is SlotState.EMPTY:
                raise CommandRejected(
                    RejectReason.DUPLICATE_PIN,
                    "the lock did not keep the code and said nothing: most likely the same "
                    "PIN is already in another slot, where this lock hides PINs")
            raise RetryLater(f"the lock did not keep the code for user {slot}")

    async def clear_code(self, external_id: str, slot: int) -> None:
        """Clear PIN Code for exactly one user id, then read it back empty."""
        lock, info = self._lock(external_id)
        slot = _check_slot(slot, info.capabilities)
        cluster = self._cluster(lock)
        async with lock.guard, self._working_on(lock, slot):
            lock.seen.pop(slot, None)  # as for a Set: a lost answer may hide a cleared user
            answer = await self._call(lock, cluster.clear_pin_code(
                slot, timeout=self._config.command_timeout_s))
            doorlock.clear_pin_outcome(_status(answer), slot)
            read = await self._read_one(lock, cluster, slot)
            if read.state is not SlotState.EMPTY:
                raise RetryLater(f"user {slot} still holds a code after clearing it")

    async def permit_join(self, seconds: int) -> int:
        """Let new devices join the network for `seconds` (zigpy caps it at 254)."""
        if self._app is None:
            raise RetryLater("the Zigbee radio is not running")
        granted = max(1, min(254, seconds))
        await self._app.permit(time_s=granted)
        _LOG.info("zigbee %s: joining open for %d s", self.name, granted)
        return granted

    async def remove_device(self, external_id: str) -> None:
        """Ask the lock to leave the network and forget it (zigpy sends a ZDO leave)."""
        lock = self._locks.get(external_id)
        if lock is None:
            raise FixConfig(f"no Zigbee lock {external_id!r} on {self.name}")
        if self._app is None:
            raise RetryLater("the Zigbee radio is not running")
        await self._app.remove(zigpy_types.EUI64.convert(external_id))

    async def probe(self, external_id: str) -> bool:
        """One attribute read (lock state): True if the lock answered."""
        lock = self._locks.get(external_id)
        if lock is None or lock.device is None or self._app is None:
            return False
        cluster = _door_lock(lock.device)
        if cluster is None:
            return False
        try:
            async with asyncio.timeout(self._config.probe_timeout_s):
                await cluster.read_attributes([doorlock.ATTR_LOCK_STATE], allow_cache=False)
        except asyncio.CancelledError:
            raise
        except (TimeoutError, zigpy.exceptions.ZigbeeException) as exc:
            _LOG.debug("zigbee %s: %s did not answer a probe: %s", self.name, lock.ieee, exc)
            return False
        self._set_availability(lock, Availability.ONLINE)
        return True

    # -- the radio session ---------------------------------------------------------------------

    async def _session(self, established: Callable[[], None]) -> None:
        app_class = _application_class(self._config.radio.application_path())
        self._lost.clear()
        app = await app_class.new(self._zigpy_config(), auto_form=True, start_radio=True)
        try:
            self._app = app
            app.add_listener(self)
            for device in list(app.devices.values()):
                await self._adopt(device)
            established()
            self._up.set()
            self._save_cache()
            _LOG.info("zigbee %s: network up on %s with %d locks", self.name,
                      self._config.radio.path, len(self.devices()))
            await self._lost.wait()
            raise RetryLater("the radio connection was lost")
        finally:
            self._up.clear()
            self._app = None
            for lock in self._locks.values():
                lock.device = None
                self._set_availability(lock, Availability.DISCONNECTED)
            with contextlib.suppress(Exception):
                async with asyncio.timeout(5):
                    await app.shutdown()

    def _zigpy_config(self) -> dict[str, Any]:
        """zigpy's configuration: the radio, its database, the network, and nothing that
        reaches beyond the box (no OTA downloads: firmware is never pushed to a door lock)."""
        radio = self._config.radio
        device: dict[str, Any] = {"path": radio.path}
        if radio.baudrate is not None:
            device["baudrate"] = radio.baudrate
        if radio.flow_control is not None:
            device["flow_control"] = radio.flow_control
        network: dict[str, Any] = {}
        net = self._config.network
        if net.channel is not None:
            network["channel"] = net.channel
        if net.pan_id is not None:
            network["pan_id"] = net.pan_id
        if net.key_file is not None:
            network["key"] = _network_key(net.key_file)
        self._database.parent.mkdir(parents=True, exist_ok=True)
        config: dict[str, Any] = {"device": device, "database_path": str(self._database),
                                  "ota": {"enabled": False},
                                  "topology_scan_enabled": False}
        if network:
            config["network"] = network
        return config

    # zigpy's application listener (called synchronously by zigpy).

    def device_initialized(self, device: Device) -> None:
        """A device finished its interview: a new lock is announced to the engine."""
        task = asyncio.ensure_future(self._adopt(device, announce=True))
        task.add_done_callback(_log_failure)

    def device_left(self, device: Device) -> None:
        """A lock left the network."""
        self._forget(device)

    def device_removed(self, device: Device) -> None:
        """A lock was removed from the network."""
        self._forget(device)

    def connection_lost(self, exc: BaseException | None) -> None:
        """The radio went away (unplugged, serial error)."""
        _LOG.warning("zigbee %s: radio connection lost: %s", self.name, exc)
        self._lost.set()

    # -- locks -----------------------------------------------------------------------------

    async def _adopt(self, device: Device, announce: bool = False) -> None:
        cluster = _door_lock(device)
        if cluster is None:
            return
        ieee = str(device.ieee)
        lock = self._locks.get(ieee)
        if lock is None:
            lock = _Lock(ieee=ieee, settings=self._config.lock(ieee))
            self._locks[ieee] = lock
        lock.device, lock.removed = device, False
        lock.seen.clear()  # a new session or a rejoin: what was read may be stale
        lock.manufacturer = str(device.manufacturer or lock.manufacturer or "")
        lock.model = str(device.model or lock.model or "")
        cluster.add_listener(_ClusterEvents(self, lock))
        limits = await self._read_limits(lock, cluster)
        if limits is not None:
            lock.limits = limits
        lock.info = self._describe(lock)
        self._set_availability(lock, Availability.ONLINE if limits is not None
                               else Availability.OFFLINE)
        if announce:
            self._save_cache()
            self._events.emit(DriverEvent(DriverEventKind.DEVICES_CHANGED, ieee))

    async def _read_limits(self, lock: _Lock, cluster: Any) -> LockLimits | None:
        """The lock's own counts and PIN lengths; None when it does not answer now."""
        wanted = [doorlock.ATTR_PIN_USERS, doorlock.ATTR_YEAR_DAY_SCHEDULES_PER_USER,
                  doorlock.ATTR_MIN_PIN_LENGTH, doorlock.ATTR_MAX_PIN_LENGTH]
        try:
            async with asyncio.timeout(self._config.command_timeout_s):
                values, _failed = await cluster.read_attributes(wanted, allow_cache=False)
        except asyncio.CancelledError:
            raise
        except (TimeoutError, zigpy.exceptions.ZigbeeException) as exc:
            _LOG.info("zigbee %s: %s did not tell its limits (%s); using what was known",
                      self.name, lock.ieee, exc)
            return None

        def value(attr: int) -> int | None:
            got = values.get(attr)
            return int(got) if got is not None else None

        return LockLimits(pin_users=value(doorlock.ATTR_PIN_USERS),
                          min_pin_length=value(doorlock.ATTR_MIN_PIN_LENGTH),
                          max_pin_length=value(doorlock.ATTR_MAX_PIN_LENGTH),
                          year_day_schedules=value(doorlock.ATTR_YEAR_DAY_SCHEDULES_PER_USER))

    def _describe(self, lock: _Lock) -> DeviceInfo:
        cfg = lock.settings
        first = cfg.first_slot if cfg.first_slot is not None else self._config.first_slot
        first, count = lock.limits.slot_range(first, cfg.slot_count)
        zone = cfg.time_zone or self._config.time_zone
        schedules = bool(lock.limits.year_day_schedules) and cfg.native_schedules
        caps = LockCapabilities(
            addressing=Addressing.SLOT, first_slot=first, slot_count=count,
            reserved_slots=frozenset(cfg.reserved_slots), can_read=True,
            native_schedules=schedules, confirmation_window_s=0.0,
            min_command_spacing_s=self._config.command_spacing_s,
            # Door Lock has no bulk read: a listing is a Get PIN Code per user.
            lists_slot_by_slot=True,
            # A write is up to three exchanges (set, schedule, read back), each allowed the
            # long reply time of a sleepy lock.
            command_timeout_s=3 * (self._config.command_timeout_s + 1) + 5)
        constraints = PinConstraints(
            min_length=lock.limits.min_pin_length or 4,
            max_length=lock.limits.max_pin_length or 8,
            fixed_length=cfg.fixed_length, no_leading_zero=cfg.no_leading_zero)
        name = cfg.name or " ".join(p for p in (lock.manufacturer, lock.model) if p) \
            or f"Zigbee lock {lock.ieee}"
        return DeviceInfo(external_id=lock.ieee, display_name=name,
                          manufacturer=lock.manufacturer or "unknown",
                          model=lock.model or "Zigbee door lock", device_type="zigbee_lock",
                          capabilities=caps, constraints=constraints, time_zone=zone)

    def _forget(self, device: Device) -> None:
        lock = self._locks.get(str(device.ieee))
        if lock is None:
            return
        lock.removed, lock.device = True, None
        lock.seen.clear()
        self._set_availability(lock, Availability.REMOVED)
        self._save_cache()

    async def _read(self, lock: _Lock, info: DeviceInfo, slots: list[int]) -> list[SlotRead]:
        cluster = self._cluster(lock)
        reads: list[SlotRead] = []
        answered = False
        for slot in slots:
            if slot not in info.capabilities.slots():
                reads.append(SlotRead(slot=slot, state=SlotState.UNREADABLE))
                continue
            try:
                reads.append(await self._read_one(lock, cluster, slot))
                answered = True
            except RetryLater as exc:
                _LOG.debug("zigbee %s: user %d of %s unreadable: %s", self.name, slot,
                           lock.ieee, exc)
                reads.append(SlotRead(slot=slot, state=SlotState.UNREADABLE))
        if slots and not answered:
            raise RetryLater(f"the lock {lock.ieee} answered none of {len(slots)} reads")
        return reads

    async def _read_one(self, lock: _Lock, cluster: Any, slot: int) -> SlotRead:
        answer = await self._call(lock, cluster.get_pin_code(
            slot, timeout=self._config.command_timeout_s))
        if _is_default_response(answer):
            # Not the command's own response: the lock has no such user (INVALID_VALUE and
            # the like; an unsupported command was refused in `_call`).
            return SlotRead(slot=slot, state=SlotState.UNREADABLE, reason="no such user")
        read = doorlock.slot_read(slot, int(answer.user_status), answer.code)
        if read.state is SlotState.EMPTY:
            lock.occupied.discard(slot)
        else:
            lock.occupied.add(slot)
        lock.seen[slot] = read
        return read

    async def _put_schedule(self, lock: _Lock, cluster: Any, slot: int, starts_at: datetime,
                            ends_at: datetime) -> None:
        """The year-day schedule in the lock's local time; a code the lock would not bind to
        its window comes off again, so a guest never holds an unbounded code."""
        answer = await self._call(lock, cluster.set_year_day_schedule(
            _YEAR_DAY_SCHEDULE_ID, slot, doorlock.local_time(starts_at),
            doorlock.local_time(ends_at), timeout=self._config.command_timeout_s))
        status = _status(answer)
        if status == 0:
            return
        with contextlib.suppress(RetryLater, CommandRejected):
            await self._call(lock, cluster.clear_pin_code(
                slot, timeout=self._config.command_timeout_s))
        raise CommandRejected(RejectReason.UNSUPPORTED,
                              f"the lock refused the year-day schedule (status {status})")

    async def _call(self, lock: _Lock, request: Any) -> Any:
        """One request to a lock; its failures become driver errors, and tell availability."""
        try:
            async with asyncio.timeout(self._config.command_timeout_s + 1):
                answer = await request
        except asyncio.CancelledError:
            raise
        except TimeoutError as exc:
            raise RetryLater(f"no answer within {self._config.command_timeout_s:.0f} s") \
                from exc
        except zigpy.exceptions.DeliveryError as exc:
            self._set_availability(lock, Availability.OFFLINE)
            raise RetryLater(f"the frame was not delivered: {exc}") from exc
        except zigpy.exceptions.ZigbeeException as exc:
            raise RetryLater(f"zigbee: {type(exc).__name__}: {exc}") from exc
        self._set_availability(lock, Availability.ONLINE)
        if _is_default_response(answer) and int(answer.status) in \
                doorlock.UNSUPPORTED_COMMANDS:
            raise CommandRejected(RejectReason.UNSUPPORTED,
                                  "the lock does not support this command")
        return answer

    @contextlib.asynccontextmanager
    async def _working_on(self, lock: _Lock, slot: int) -> Any:
        lock.busy.add(slot)
        try:
            yield
        finally:
            lock.busy.discard(slot)

    def _lock(self, external_id: str) -> tuple[_Lock, DeviceInfo]:
        lock = self._locks.get(external_id)
        if lock is None or lock.info is None:
            raise FixConfig(f"no Zigbee lock {external_id!r} on {self.name}")
        return lock, lock.info

    def _cluster(self, lock: _Lock) -> Any:
        """The lock's Door Lock cluster, if commands can go to it now; else RetryLater."""
        if self._app is None:
            raise RetryLater("the Zigbee radio is not running")
        if lock.device is None or lock.removed:
            raise RetryLater(f"lock {lock.ieee} is not in the network")
        cluster = _door_lock(lock.device)
        if cluster is None:
            raise FixConfig(f"{lock.ieee} has no Door Lock cluster")
        return cluster

    def _set_availability(self, lock: _Lock, availability: Availability) -> None:
        if lock.availability is availability or (lock.removed and \
                availability is not Availability.REMOVED):
            return
        now = self._clock.monotonic()
        if availability is Availability.ONLINE:
            since, lock.unreachable_since = lock.unreachable_since, None
            if since is not None and now - since > _OUTAGE_FORGETS_READS_S:
                lock.seen.clear()
        elif lock.unreachable_since is None:
            lock.unreachable_since = now
        lock.availability = availability
        if lock.info is not None:
            _LOG.info("zigbee %s: lock %s is %s", self.name, lock.ieee, availability.value)
            self._events.availability(lock.ieee, availability)

    # -- events from a lock --------------------------------------------------------------------

    def on_lock_command(self, lock: _Lock, command_id: int, args: Any) -> None:
        """An operation or programming event the lock sent on its own."""
        if lock.info is None:
            return
        raw_user = getattr(args, "user_id", None)
        user = doorlock.event_user(raw_user, lock.info.capabilities.slots())
        if command_id == _PROGRAMMING_EVENT:
            code = int(getattr(args, "program_event_code", -1))
            if code in _PROGRAMMING_PIN_EVENTS and (user is not None or _names_no_user(raw_user)):
                # (A user outside lockbridge's slots, a master code, is none of its business.)
                self._on_pin_programmed(lock, user,
                                        int(getattr(args, "program_event_source", -1)))
        elif command_id == _OPERATION_EVENT:
            source = int(getattr(args, "operation_event_source", -1))
            code = int(getattr(args, "operation_event_code", -1))
            if source == _SOURCE_KEYPAD and code == _OPERATION_UNLOCK:
                # A user outside lockbridge's slots (a master code) is still named.
                named = user
                if named is None and raw_user is not None and not _names_no_user(raw_user):
                    named = int(raw_user)
                self._events.emit(DriverEvent(DriverEventKind.KEYPAD_USED, lock.ieee,
                                              slot=named))
        self._set_availability(lock, Availability.ONLINE)

    def _on_pin_programmed(self, lock: _Lock, user: int | None, source: int) -> None:
        """A PIN was added, changed or deleted: the engine reads that user at once, so a
        keypad change is not left for the daily sweep (the lock keeps no checksum)."""
        if user is not None:
            if user not in lock.busy:  # else the echo of our own command on it
                lock.occupied.discard(user)
                lock.seen.pop(user, None)
                self._events.emit(DriverEvent(DriverEventKind.SLOT_CHANGED, lock.ieee,
                                              slot=user))
            return
        if source != _SOURCE_KEYPAD and lock.busy:
            return  # an echo of our own write that names no user
        # No usable user id: any code seen on the lock may be the one changed, and a code
        # added may be in any user, so the next listing reads every user again.
        lock.seen.clear()
        _LOG.info("zigbee %s: %s reported a PIN change without a user id; reading the %d "
                  "users seen holding a code", self.name, lock.ieee, len(lock.occupied))
        for slot in sorted(lock.occupied - lock.busy):
            self._events.emit(DriverEvent(DriverEventKind.SLOT_CHANGED, lock.ieee, slot=slot))

    # -- the remembered lock list --------------------------------------------------------------

    def _load_cache(self) -> None:
        doc = load_memory(self._cache_file)
        if doc.get("version") != _CACHE_VERSION:
            return
        items = doc.get("locks")
        for item in items if isinstance(items, list) else []:
            try:
                ieee = str(item["ieee"])
                lock = _Lock(ieee=ieee, settings=self._config.lock(ieee),
                             manufacturer=str(item.get("manufacturer", "")),
                             model=str(item.get("model", "")),
                             limits=LockLimits(**item.get("limits", {})))
            except (KeyError, TypeError, AttributeError) as exc:
                _LOG.warning("zigbee %s: ignoring a remembered lock (%s)", self.name, exc)
                continue
            lock.info = self._describe(lock)
            self._locks[ieee] = lock

    def _save_cache(self) -> None:
        locks = [{"ieee": lock.ieee, "manufacturer": lock.manufacturer, "model": lock.model,
                  "limits": {"pin_users": lock.limits.pin_users,
                             "min_pin_length": lock.limits.min_pin_length,
                             "max_pin_length": lock.limits.max_pin_length,
                             "year_day_schedules": lock.limits.year_day_schedules}}
                 for lock in self._locks.values() if not lock.removed]
        save_memory(self._cache_file, {"version": _CACHE_VERSION, "locks": locks})


class _ClusterEvents:
    """The listener zigpy calls for one lock's Door Lock cluster."""

    def __init__(self, driver: ZigbeeDriver, lock: _Lock) -> None:
        self._driver = driver
        self._lock = lock

    def cluster_command(self, tsn: int, command_id: int, args: Any) -> None:
        """A command the lock sent (zigpy's listener interface)."""
        self._driver.on_lock_command(self._lock, command_id, args)


def _names_no_user(user_id: int | None) -> bool:
    """An event's user id field is missing or says "no user" (0xFFFF)."""
    return user_id is None or int(user_id) == _NO_USER


def _door_lock(device: Device) -> Any:
    """The device's Door Lock server cluster, or None."""
    for endpoint_id, endpoint in device.endpoints.items():
        if endpoint_id == 0:
            continue
        cluster = getattr(endpoint, "in_clusters", {}).get(doorlock.CLUSTER_ID)
        if cluster is not None:
            return cluster
    return None


def _application_class(path: str) -> type[ControllerApplication]:
    module_name, _, class_name = path.partition(":")
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise FixConfig(f"the radio library {module_name} is not installed ({exc}); install "
                        "lockbridge's extra for your radio") from exc
    app_class: type[ControllerApplication] = getattr(module, class_name)
    return app_class


def _network_key(path: Path) -> list[int]:
    try:
        text = path.read_text().strip().splitlines()[0].replace(":", "").replace(" ", "")
        key = bytes.fromhex(text)
    except (OSError, IndexError, ValueError) as exc:
        raise FixConfig(f"cannot read the Zigbee network key from {path}: {exc}") from exc
    if len(key) != 16:
        raise FixConfig(f"the Zigbee network key in {path} must be 16 bytes")
    return list(key)


def _status(answer: Any) -> int:
    """The integer status of a response (zigpy's enum names are the generic ZCL ones)."""
    status = answer.status if hasattr(answer, "status") else answer[0]
    return int(status)


_DEFAULT_RESPONSE = foundation.GENERAL_COMMANDS[foundation.GeneralCommand.Default_Response].schema


def _is_default_response(answer: Any) -> bool:
    """The lock answered with a Default Response instead of the command's own response."""
    return isinstance(answer, _DEFAULT_RESPONSE)


def _holds(read: SlotRead, pin: str) -> bool:
    """The slot holds this PIN, or a hidden code where ours was just written."""
    if read.state is SlotState.KNOWN:
        return read.pin == pin
    return read.state is SlotState.UNREADABLE and read.reason is None


def _check_slot(slot: int | None, caps: LockCapabilities) -> int:
    if slot is None or slot not in caps.slots():
        raise CommandRejected(RejectReason.SLOT_OUT_OF_RANGE,
                              f"user {slot} is outside the lock's {caps.first_slot}.."
                              f"{caps.first_slot + caps.slot_count - 1}")
    return slot


def _check_pin(pin: str | None, constraints: PinConstraints) -> str:
    if pin is None or not pin.isdigit() or len(pin) not in constraints.allowed_lengths():
        raise CommandRejected(RejectReason.INVALID_PIN, "the PIN does not fit the lock's rules")
    return pin


def _quiet_library_frames() -> None:
    """zigpy logs every decoded frame at DEBUG, a Set PIN Code's PIN included, and aiosqlite
    logs zigpy's database statements, the network key among them: these loggers never go below
    INFO, whatever lockbridge's own level."""
    for name in ("zigpy", "zigpy_znp", "bellows", "zigpy_deconz", "zigpy_zigate", "zigpy_xbee",
                 "aiosqlite"):
        library = logging.getLogger(name)
        if library.getEffectiveLevel() < logging.INFO:
            library.setLevel(logging.INFO)


def _classify(error: BaseException) -> FailureKind:
    return FailureKind.REFUSED if isinstance(error, FixConfig) else FailureKind.TRANSIENT


def _log_failure(task: asyncio.Future[None]) -> None:
    if not task.cancelled() and task.exception() is not None:
        _LOG.warning("zigbee: adopting a device failed: %s", task.exception())
