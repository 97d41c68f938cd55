"""Zigbee2MQTT locks as a `LockDriver`: PIN users over the broker, every write read back.

How one write goes: `set` the user (QoS 1), then `get` it, and return only when a fresh `users`
entry shows the new PIN. Zigbee2MQTT republishes its cached `users` with every state message,
so while our write is pending (up to `confirmation_window_s`) an entry that shows anything else
is taken for that stale cache, not for the lock's answer. A command whose outcome is unknown (the
broker went away after it was sent, no answer in time) is remembered: before it is sent again,
the slot is read, and if it already holds what we asked for nothing is sent twice.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Sequence
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
from drivers.mqtt.common import (
    EventPump,
    LogOnce,
    MalformedPayload,
    PendingWrites,
    checked_pin,
    decode_json,
    shows,
)
from drivers.mqtt.link import LinkDown, MqttLink
from drivers.mqtt.support import load_memory, save_memory
from drivers.zigbee2mqtt import mapping

_LOG = logging.getLogger(__name__)
_DEFAULT_SLOTS = 30


@dataclass(frozen=True, slots=True)
class LockOptions:
    """Per-lock settings from the configuration; None means "as discovered"."""

    friendly_name: str
    display_name: str | None = None
    slot_count: int | None = None
    reserved_slots: tuple[int, ...] = ()
    expose_pin: bool | None = None
    min_length: int | None = None
    max_length: int | None = None
    time_zone: str | None = None


@dataclass(frozen=True, slots=True)
class Options:
    """The driver's settings."""

    base_topic: str = "zigbee2mqtt"
    discover: bool = True
    locks: tuple[LockOptions, ...] = ()
    answer_timeout_s: float = 10.0
    startup_wait_s: float = 10.0
    confirmation_window_s: float = 60.0
    command_spacing_s: float = 2.0
    # Where the locks found in Zigbee2MQTT's device list are remembered between runs.
    memory_file: Path | None = None


@dataclass(slots=True)
class _Op:
    """A command in flight on one lock; Zigbee2MQTT's failure report for it lands here."""

    failed: asyncio.Future[DriverError]


@dataclass(slots=True)
class _Lock:
    name: str
    info: DeviceInfo
    ieee: str | None = None
    present: bool = True
    online_flag: bool | None = None
    op_lock: asyncio.Lock = field(default_factory=asyncio.Lock)
    ops: list[_Op] = field(default_factory=list)
    # Reads waiting for their answer: (user, answer, strict); see _fresh_read.
    waiters: list[tuple[int, asyncio.Future[SlotRead], bool]] = field(default_factory=list)
    heard: list[asyncio.Future[None]] = field(default_factory=list)
    # Commands sent whose outcome we never learned: slot -> PIN (None for a clear).
    uncertain: dict[int, str | None] = field(default_factory=dict)


class Zigbee2MqttDriver:
    """Locks behind one Zigbee2MQTT instance (one base topic on one broker)."""

    def __init__(self, name: str, options: Options, clock: Clock, link: MqttLink) -> None:
        self.name = name
        self.options = options
        self._clock = clock
        self._link = link
        self._base = options.base_topic.rstrip("/")
        self._overrides = {lock.friendly_name: lock for lock in options.locks}
        self._locks: dict[str, _Lock] = {}
        self._pump = EventPump(f"zigbee2mqtt {name}")
        self._once = LogOnce(_LOG)
        self._pending = PendingWrites(clock, options.confirmation_window_s)
        self._bridge_online: bool | None = None
        self._expose: dict[str, bool] = {}
        self._expose_default: bool | None = None
        self._devices_seen = asyncio.Event()
        self._info_seen = asyncio.Event()
        self._started = False
        self._discovered: dict[str, mapping.DiscoveredLock] = {}
        self._last_availability: dict[str, Availability] = {}
        self._remembered: dict[str, object] = {}
        self._recall()
        for override in options.locks:
            self._locks[override.friendly_name] = _Lock(override.friendly_name,
                                                        self._info(override.friendly_name))
        if options.discover:
            for name, found in self._discovered.items():
                if name not in self._locks:
                    self._locks[name] = _Lock(name, self._info(name), ieee=found.ieee_address)
        link.subscribe(f"{self._base}/bridge/+", self._on_bridge)
        link.subscribe(f"{self._base}/+", self._on_device)
        link.subscribe(f"{self._base}/+/availability", self._on_device)
        for override in options.locks:
            if "/" in override.friendly_name:
                link.subscribe(f"{self._base}/{override.friendly_name}", self._on_device)
                link.subscribe(f"{self._base}/{override.friendly_name}/availability",
                               self._on_device)
        link.add_listener(self._on_link)

    # -- LockDriver -----------------------------------------------------------------------

    async def start(self, sink: DriverEventSink) -> None:
        """Connect, learn the locks from `bridge/devices`, and begin reporting."""
        self._pump.start(sink)
        await self._link.start()
        wait = self.options.startup_wait_s
        try:
            async with asyncio.timeout(wait):
                await self._devices_seen.wait()
        except TimeoutError:
            _LOG.warning("zigbee2mqtt %s: no device list from %s within %.0f s; using the "
                         "configured locks only", self.name, self._link.config.describe(), wait)
        else:
            # bridge/info (for expose_pin) is retained next to bridge/devices; give it a moment.
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(min(2.0, wait)):
                    await self._info_seen.wait()
        self._refresh_infos()
        self._started = True
        for lock in self._locks.values():
            self._last_availability[lock.name] = self.availability(lock.name)
        _LOG.info("zigbee2mqtt %s: %d locks (%s)", self.name, len(self._locks),
                  ", ".join(sorted(self._locks)) or "none")

    async def stop(self) -> None:
        """Disconnect and release everything; safe to call twice."""
        await self._link.stop()
        await self._pump.stop()
        for lock in self._locks.values():
            self._fail_all(lock, LinkDown("driver stopped"))

    def devices(self) -> Sequence[DeviceInfo]:
        """The locks known now."""
        return [lock.info for lock in self._locks.values()]

    def availability(self, external_id: str) -> Availability:
        """Broker unreachable: disconnected; Zigbee2MQTT itself offline: hub disconnected; the
        lock offline in Zigbee2MQTT: offline; gone from its device list: removed."""
        lock = self._locks.get(external_id)
        if lock is None or not lock.present:
            return Availability.REMOVED
        if not self._link.connected:
            return Availability.DISCONNECTED
        if self._bridge_online is False:
            return Availability.HUB_DISCONNECTED
        if lock.online_flag is False:
            return Availability.OFFLINE
        return Availability.ONLINE

    async def read_slots(self, external_id: str, slots: Sequence[int]) -> list[SlotRead]:
        """Ask the lock for each slot afresh (`get`), never trusting the cached `users`.

        A user with a command of ours still unconfirmed reads as unreadable unless the answer
        shows that command done: any other entry may be Zigbee2MQTT's stale cache.
        """
        lock = self._lock(external_id)
        reads = []
        for slot in slots:
            self._check_slot(lock, slot)
            async with lock.op_lock, self._op(lock) as op:
                read = await self._fresh_read(lock, slot, op, strict=False)
            key = (lock.name, slot)
            expected = self._pending.active(key)
            if expected is not None and read.state is not SlotState.UNREADABLE:
                if shows(read, expected.pin):
                    # Our lost-answer command did land: it is no longer in doubt.
                    self._pending.end(key)
                    lock.uncertain.pop(slot, None)
                else:
                    read = SlotRead(slot=slot, state=SlotState.UNREADABLE)
            reads.append(read)
        return reads

    async def list_codes(self, external_id: str) -> list[SlotRead]:
        """Every occupied user, one `get` each: costly, the engine calls it rarely."""
        lock = self._lock(external_id)
        reads = await self.read_slots(external_id, list(lock.info.capabilities.slots()))
        return [r for r in reads if r.state is not SlotState.EMPTY]

    async def write_code(self, external_id: str, code: CodeWrite) -> WriteResult:
        """Set one user's PIN and return once a fresh read shows it."""
        lock = self._lock(external_id)
        if code.slot is None:
            raise CommandRejected(RejectReason.UNSUPPORTED, "Zigbee locks need a user number")
        slot = self._check_slot(lock, code.slot)
        pin = checked_pin(code.pin)
        async with lock.op_lock, self._op(lock) as op:
            if lock.uncertain.get(slot, "") == pin and await self._already(lock, slot, pin, op):
                return WriteResult(slot=slot, pin=pin)
            await self._send(lock, slot, pin, mapping.set_pin_code(slot, pin), op)
            return WriteResult(slot=slot, pin=pin)

    async def clear_code(self, external_id: str, slot: int) -> None:
        """Clear exactly one user and return once a fresh read shows it empty."""
        lock = self._lock(external_id)
        slot = self._check_slot(lock, slot)
        async with lock.op_lock, self._op(lock) as op:
            if slot in lock.uncertain and lock.uncertain[slot] is None \
                    and await self._already(lock, slot, None, op):
                return
            await self._send(lock, slot, None, mapping.clear_pin_code(slot), op)

    async def probe(self, external_id: str) -> bool:
        """One `get` of the lock's state; True if the lock's state comes back in time."""
        lock = self._locks.get(external_id)
        if lock is None or not self._link.connected or self._bridge_online is False:
            return False
        heard: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        lock.heard.append(heard)
        try:
            await self._link.publish(self._topic(lock.name, "get"), mapping.get_lock_state())
            async with asyncio.timeout(self.options.answer_timeout_s):
                await heard
        except (DriverError, TimeoutError):
            return False
        finally:
            with contextlib.suppress(ValueError):
                lock.heard.remove(heard)
        return True

    # -- commands -------------------------------------------------------------------------

    async def _send(self, lock: _Lock, slot: int, pin: str | None, payload: bytes,
                    op: _Op) -> None:
        key = (lock.name, slot)
        self._pending.begin(key, pin)
        lock.uncertain[slot] = pin
        try:
            await self._link.publish(self._topic(lock.name, "set"), payload)
            read = await self._fresh_read(lock, slot, op)
        except LinkDown as exc:
            if not exc.maybe_sent:
                lock.uncertain.pop(slot, None)
                self._pending.end(key)
            raise
        except CommandRejected:
            lock.uncertain.pop(slot, None)
            self._pending.end(key)
            raise
        if not shows(read, pin):
            # The window closed while we waited, so this entry was taken as the lock's answer;
            # it may still be the cache. The command stays uncertain: the next attempt reads
            # first and sends only if the lock really lacks it.
            self._pending.end(key)
            raise RetryLater(f"the lock does not show the change to user {slot} yet")
        lock.uncertain.pop(slot, None)
        self._pending.end(key)

    async def _already(self, lock: _Lock, slot: int, pin: str | None, op: _Op) -> bool:
        """Before resending a command whose outcome was lost: does the slot show it already?"""
        read = await self._fresh_read(lock, slot, op)
        if read.state is not SlotState.UNREADABLE and shows(read, pin):
            lock.uncertain.pop(slot, None)
            _LOG.info("zigbee2mqtt %s: %s user %d already done; not sent again", self.name,
                      lock.name, slot)
            return True
        return False

    async def _fresh_read(self, lock: _Lock, slot: int, op: _Op, *,
                          strict: bool = True) -> SlotRead:
        """`get` one user and wait for an entry that can be the lock's answer: when `strict`
        and a command of ours is pending on the user, only an entry that shows it done."""
        answer: asyncio.Future[SlotRead] = asyncio.get_running_loop().create_future()
        waiter = (slot, answer, strict)
        lock.waiters.append(waiter)
        try:
            await self._link.publish(self._topic(lock.name, "get"), mapping.get_pin_code(slot))
            either: set[asyncio.Future[Any]] = {answer, op.failed}
            async with asyncio.timeout(self.options.answer_timeout_s):
                done, _ = await asyncio.wait(either, return_when=asyncio.FIRST_COMPLETED)
        except TimeoutError:
            raise RetryLater(f"no answer from {lock.name} for user {slot} within "
                             f"{self.options.answer_timeout_s:.0f} s") from None
        finally:
            with contextlib.suppress(ValueError):
                lock.waiters.remove(waiter)
            if not answer.done():
                answer.cancel()
        if op.failed in done:
            raise op.failed.result()
        return answer.result()

    @contextlib.asynccontextmanager
    async def _op(self, lock: _Lock) -> AsyncIterator[_Op]:
        op = _Op(asyncio.get_running_loop().create_future())
        lock.ops.append(op)
        try:
            yield op
        finally:
            lock.ops.remove(op)
            if not op.failed.done():
                op.failed.cancel()

    # -- messages -------------------------------------------------------------------------

    def _on_bridge(self, topic: str, payload: bytes, retained: bool) -> None:
        what = topic.rsplit("/", 1)[-1]
        try:
            if what == "state":
                online = mapping.availability_of(mapping.decode_plain_or_json(payload))
                if online is None:
                    raise MalformedPayload("unknown bridge state")
                self._bridge_online = online
                self._availability_changed()
            elif what == "devices":
                self._on_devices(decode_json(payload))
            elif what == "info":
                self._expose, self._expose_default = mapping.expose_pin_options(
                    decode_json(payload))
                self._info_seen.set()
                self._remember()
                if self._started:
                    self._refresh_infos()
            elif what == "logging":
                self._on_log(decode_json(payload))
        except MalformedPayload as exc:
            self._once.warn(("bridge", what), "zigbee2mqtt %s: ignored a malformed message on "
                            "%s (%s)", self.name, topic, exc)

    def _on_devices(self, payload: object) -> None:
        found = {d.friendly_name: d for d in mapping.locks_in(payload)}
        self._discovered = found
        new = []
        for name, device in found.items():
            lock = self._locks.get(name)
            if lock is None:
                if not self.options.discover:
                    continue
                if "/" in name:
                    self._once.warn(("slash", name), "zigbee2mqtt %s: lock %r has a '/' in its "
                                    "name; list it under locks: to manage it", self.name, name)
                    continue
                lock = self._locks[name] = _Lock(name, self._info(name))
                new.append(name)
            lock.ieee = device.ieee_address
            lock.present = True
        for name, lock in self._locks.items():
            if name not in found:
                if lock.present:
                    self._once.warn(("missing", name), "zigbee2mqtt %s: lock %r is not in "
                                    "Zigbee2MQTT's device list", self.name, name)
                lock.present = False
        self._devices_seen.set()
        self._remember()
        if self._started:
            self._refresh_infos()
            for name in new:
                _LOG.info("zigbee2mqtt %s: new lock %r discovered", self.name, name)
                self._pump.emit(DriverEvent(DriverEventKind.DEVICES_CHANGED, name))
            self._availability_changed()

    def _on_log(self, payload: object) -> None:
        failure = mapping.command_failure(payload)
        if failure is None or failure.key != "pin_code":
            return
        lock = self._locks.get(failure.device)
        if lock is None:
            return
        _LOG.info("zigbee2mqtt %s: %s: %s %s failed: %s", self.name, lock.name, failure.verb,
                  failure.key, failure.error)
        for op in lock.ops:
            if not op.failed.done():
                op.failed.set_result(failure.error)

    def _on_device(self, topic: str, payload: bytes, retained: bool) -> None:
        rest = topic[len(self._base) + 1:]
        if rest.endswith("/availability"):
            name, kind = rest[: -len("/availability")], "availability"
        else:
            name, kind = rest, "state"
        lock = self._locks.get(name)
        if lock is None or name == "bridge":
            return
        try:
            if kind == "availability":
                flag = mapping.availability_of(mapping.decode_plain_or_json(payload))
                if flag is None:
                    raise MalformedPayload("unknown availability")
                lock.online_flag = flag
                self._availability_changed()
            else:
                self._on_state(lock, decode_json(payload))
        except MalformedPayload as exc:
            self._once.warn((name, kind), "zigbee2mqtt %s: ignored a malformed %s message on "
                            "%s (%s)", self.name, kind, topic, exc)

    def _on_state(self, lock: _Lock, state: object) -> None:
        if not isinstance(state, dict):
            raise MalformedPayload("a device state is not an object")
        for heard in lock.heard:
            if not heard.done():
                heard.set_result(None)
        users = mapping.users_in(state)
        for slot, answer, strict in list(lock.waiters):
            read = users.get(slot)
            if read is None or answer.done():
                continue
            expected = self._pending.active((lock.name, slot)) if strict else None
            if expected is not None and not shows(read, expected.pin):
                # Possibly the cache from before our command: not the lock's answer.
                _LOG.debug("zigbee2mqtt %s: %s user %d: ignored an entry that may be stale",
                           self.name, lock.name, slot)
                continue
            answer.set_result(read)
        action = mapping.action_in(state)
        if action is None:
            return
        if action.kind == "keypad_used":
            self._pump.emit(DriverEvent(DriverEventKind.KEYPAD_USED, lock.name,
                                        slot=action.slot, detail=action.detail))
        else:
            # A change made at the lock is news, not a stale cache: stop waiting for ours.
            self._pending.end((lock.name, action.slot))
            self._pump.emit(DriverEvent(DriverEventKind.SLOT_CHANGED, lock.name,
                                        slot=action.slot, detail=action.detail))

    def _on_link(self, up: bool) -> None:
        if not up:
            for lock in self._locks.values():
                self._fail_all(lock, LinkDown("the MQTT broker connection was lost",
                                              maybe_sent=True))
        self._availability_changed()

    # -- helpers --------------------------------------------------------------------------

    def _availability_changed(self) -> None:
        if not self._started:
            return
        for name in self._locks:
            now = self.availability(name)
            if self._last_availability.get(name) is not now:
                self._last_availability[name] = now
                self._pump.availability(name, now)

    def _fail_all(self, lock: _Lock, error: DriverError) -> None:
        for op in lock.ops:
            if not op.failed.done():
                op.failed.set_result(error)
        for heard in lock.heard:
            if not heard.done():
                heard.cancel()

    def _recall(self) -> None:
        """Locks (and their expose_pin) found in an earlier run, for a start without broker."""
        doc = load_memory(self.options.memory_file)
        locks = doc.get("locks")
        if not isinstance(locks, dict):
            return
        for name, facts in locks.items():
            if not isinstance(facts, dict) or not isinstance(facts.get("ieee"), str):
                continue
            count = facts.get("slot_count")
            self._discovered[name] = mapping.DiscoveredLock(
                friendly_name=name, ieee_address=facts["ieee"],
                vendor=str(facts.get("vendor") or ""), model=str(facts.get("model") or ""),
                description=str(facts.get("description") or ""),
                slot_count=count if isinstance(count, int) and count > 0 else None)
            if isinstance(facts.get("expose_pin"), bool):
                self._expose[name] = facts["expose_pin"]
        self._remembered = doc

    def _remember(self) -> None:
        """Save what discovery found, when it changed."""
        locks: dict[str, object] = {}
        for name, found in self._discovered.items():
            expose = self._expose.get(found.ieee_address,
                                      self._expose.get(name, self._expose_default))
            locks[name] = {"ieee": found.ieee_address, "vendor": found.vendor,
                           "model": found.model, "description": found.description,
                           "slot_count": found.slot_count, "expose_pin": expose}
        doc: dict[str, object] = {"locks": locks}
        if doc != self._remembered:
            self._remembered = doc
            save_memory(self.options.memory_file, doc)

    def _refresh_infos(self) -> None:
        for lock in self._locks.values():
            lock.info = self._info(lock.name)

    def _info(self, name: str) -> DeviceInfo:
        override = self._overrides.get(name) or LockOptions(name)
        found = self._discovered.get(name)
        lock = self._locks.get(name)
        ieee = lock.ieee if lock is not None else None
        expose = override.expose_pin
        if expose is None:
            expose = self._expose.get(ieee or "", self._expose.get(name, self._expose_default))
        slot_count = override.slot_count or (found.slot_count if found else None) \
            or _DEFAULT_SLOTS
        caps = LockCapabilities(
            addressing=Addressing.SLOT, first_slot=0, slot_count=slot_count,
            reserved_slots=frozenset(override.reserved_slots), can_read=True,
            masks_pins_on_read=not expose,
            # Writes are confirmed by a fresh read before write_code returns.
            confirmation_window_s=0.0, name_max_length=16,
            min_command_spacing_s=self.options.command_spacing_s)
        min_length = override.min_length or 4
        constraints = PinConstraints(min_length=min_length,
                                     max_length=override.max_length or max(8, min_length))
        return DeviceInfo(
            external_id=name, display_name=override.display_name or name,
            manufacturer=(found.vendor if found and found.vendor else "Zigbee"),
            model=(found.model if found and found.model else "Zigbee door lock"),
            device_type="zigbee_lock", capabilities=caps, constraints=constraints,
            hub_id=f"zigbee2mqtt:{self._base}", time_zone=override.time_zone)

    def _lock(self, external_id: str) -> _Lock:
        lock = self._locks.get(external_id)
        if lock is None:
            raise FixConfig(f"no Zigbee2MQTT lock {external_id!r}")
        return lock

    def _check_slot(self, lock: _Lock, slot: int) -> int:
        if slot not in lock.info.capabilities.slots():
            caps = lock.info.capabilities
            raise CommandRejected(RejectReason.SLOT_OUT_OF_RANGE,
                                  f"user {slot} does not exist on {lock.name} (users "
                                  f"{caps.first_slot}..{caps.first_slot + caps.slot_count - 1})")
        return slot

    def _topic(self, name: str, suffix: str) -> str:
        return f"{self._base}/{name}/{suffix}"

