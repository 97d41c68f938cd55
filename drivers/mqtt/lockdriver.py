"""The base of the MQTT lock drivers (Zigbee2MQTT, Z-Wave JS UI): what they do alike because they
reach their locks the same way, through a gateway on a broker, one command at a time per lock.

What `MqttLockDriver` shares:

* the broker link's supervision as the locks see it: every lock's availability (removed,
  disconnected without the broker, hub disconnected without the gateway, offline, online),
  reported once per change through the event pump; outstanding waits fail with `LinkDown` when
  the link drops, and what was read of the locks is read afresh after the outage;
* remembering the locks in the state file (`state_dir/<kind>-<name>.json`), written only when
  what is remembered changed;
* the slot walk of `read_slots` and `list_codes`: one slot at a time under the lock's command
  lock; a slot that gives no answer among slots that do is unreadable (never empty); a walk cut
  short resumes where it stopped, until the link drops or the lock reports a change there;
* the write path: a command whose outcome is unknown (the broker went away after it was sent)
  stays uncertain, and before it is sent again the slot is read, so nothing is applied twice;
  until its read-back it is pending (a read that does not show it may be the gateway's cache);
* orderly shutdown (background tasks, link, pump, waiters) and the answer timeout.

What it deliberately does not share: topics and subscriptions (a per-device topic against a
node value tree and a request/answer API), payloads, how a command is sent and confirmed, how a
refusal is recognised, and how the locks are found (a device list against `getNodes`). Those are
the hooks a driver fills in, next to its `mapping` module.

Why a base class rather than helpers composed into each driver: the shared parts are one
sequence (check the slot, take the lock's command lock, replay or send, read back, settle the
doubt) with a gateway-specific step in the middle, and the availability rules read the gateway's
state; a template method states that sequence once, where helpers would leave each driver to
repeat the wiring between them. The pieces that have one job on their own (`EventPump`,
`PendingWrites`, `LogOnce`, `MqttLink`) stay separate objects the base composes.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable, Coroutine, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar, Generic, TypeVar

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
from drivers.events import EventPump
from drivers.memory import load_memory, save_memory
from drivers.mqtt.common import LogOnce, PendingWrites, checked_pin, shows
from drivers.mqtt.link import LinkDown, MqttLink
from drivers.tasks import cancel_and_wait

T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class LockSettings:
    """Per-lock settings every MQTT lock driver has; None means "as the gateway says"."""

    display_name: str | None = None
    slot_count: int | None = None
    reserved_slots: tuple[int, ...] = ()
    min_length: int | None = None
    max_length: int | None = None
    time_zone: str | None = None


SettingsT = TypeVar("SettingsT", bound=LockSettings)


@dataclass(frozen=True, slots=True)
class MqttOptions(Generic[SettingsT]):
    """Settings every MQTT lock driver has."""

    locks: tuple[SettingsT, ...] = ()
    answer_timeout_s: float = 10.0
    startup_wait_s: float = 10.0
    confirmation_window_s: float = 10.0
    command_spacing_s: float = 2.0
    # Where the driver remembers its locks between runs.
    memory_file: Path | None = None


@dataclass(slots=True, kw_only=True)
class LockState:
    """What the base keeps of one lock; a driver extends it with its gateway's state."""

    external_id: str
    info: DeviceInfo
    # Still listed by the gateway (False: removed).
    present: bool = True
    op_lock: asyncio.Lock = field(default_factory=asyncio.Lock)
    # Slots a command of ours is working on: what the lock reports there is its echo.
    busy: set[int] = field(default_factory=set)
    # Commands sent whose outcome we never learned: slot -> PIN (None for a clear).
    uncertain: dict[int, str | None] = field(default_factory=dict)
    # Slots a whole-lock read cut short already has: the next one resumes after them.
    walked: dict[int, SlotRead] = field(default_factory=dict)


LockT = TypeVar("LockT", bound=LockState)
OptionsT = TypeVar("OptionsT", bound=MqttOptions[Any])


def slot_lock_info(external_id: str, settings: LockSettings, *, display_name: str,
                   maker: tuple[str, str], device_type: str, hub_id: str, first_slot: int,
                   slot_count: int, reserved: Iterable[int], masks_pins: bool,
                   lengths: tuple[int, int], spacing_s: float) -> DeviceInfo:
    """A slot-addressed lock whose writes are confirmed by a read-back before they return."""
    caps = LockCapabilities(
        addressing=Addressing.SLOT, first_slot=first_slot, slot_count=slot_count,
        reserved_slots=frozenset(reserved), can_read=True, masks_pins_on_read=masks_pins,
        confirmation_window_s=0.0, name_max_length=16, min_command_spacing_s=spacing_s)
    return DeviceInfo(
        external_id=external_id, display_name=settings.display_name or display_name,
        manufacturer=maker[0], model=maker[1], device_type=device_type, capabilities=caps,
        constraints=PinConstraints(min_length=lengths[0], max_length=lengths[1]),
        hub_id=hub_id, time_zone=settings.time_zone)


class MqttLockDriver(Generic[LockT, OptionsT]):
    """A `LockDriver` for the locks behind one gateway on one broker; see the module docstring
    for what it shares and what each driver adds."""

    # Names in log lines and messages: `zigbee2mqtt`, "Zigbee", "Zigbee2MQTT lock", "user".
    kind: ClassVar[str]
    network: ClassVar[str]
    lock_noun: ClassVar[str]
    slot_noun: ClassVar[str]

    def __init__(self, name: str, options: OptionsT, clock: Clock, link: MqttLink,
                 logger: logging.Logger) -> None:
        self.name = name
        self.options = options
        self._clock = clock
        self._link = link
        self._log = logger
        self._pump = EventPump(f"{self.kind} {name}")
        self._once = LogOnce(logger)
        self._pending = PendingWrites(clock, options.confirmation_window_s)
        self._locks: dict[str, LockT] = {}
        # The gateway's own state (None: not said yet).
        self._gateway_online: bool | None = None
        self._started = False
        self._last_availability: dict[str, Availability] = {}
        self._tasks: list[asyncio.Task[None]] = []
        self._remembered: dict[str, object] = {}
        link.add_listener(self._on_link)

    # -- LockDriver -----------------------------------------------------------------------

    async def start(self, sink: DriverEventSink) -> None:
        """Connect, learn the locks from the gateway (`_meet_gateway`), begin reporting."""
        self._pump.start(sink)
        await self._link.start()
        await self._meet_gateway()
        self._started = True
        for external_id in self._locks:
            self._last_availability[external_id] = self.availability(external_id)
        self._log.info("%s %s: %d locks (%s)", self.kind, self.name, len(self._locks),
                       ", ".join(sorted(self._locks)) or "none")
        self._after_start()

    async def stop(self) -> None:
        """Disconnect and release everything; safe to call twice."""
        tasks, self._tasks = self._tasks, []
        for task in tasks:
            await cancel_and_wait(task)
        await self._link.stop()
        await self._pump.stop()
        self._abandon("driver stopped", maybe_sent=False)

    def devices(self) -> Sequence[DeviceInfo]:
        """The locks known now."""
        return [lock.info for lock in self._locks.values()]

    def availability(self, external_id: str) -> Availability:
        """Gone from the gateway: removed; broker unreachable: disconnected; the gateway
        offline: hub disconnected; the lock offline at the gateway: offline."""
        lock = self._locks.get(external_id)
        if lock is None or not lock.present:
            return Availability.REMOVED
        if not self._link.connected:
            return Availability.DISCONNECTED
        if self._gateway_online is False:
            return Availability.HUB_DISCONNECTED
        if self._offline(lock):
            return Availability.OFFLINE
        return Availability.ONLINE

    async def read_slots(self, external_id: str, slots: Sequence[int]) -> list[SlotRead]:
        """Each slot afresh from the lock; one that gives no answer reads as unreadable while
        others answer (RetryLater when none does)."""
        lock = self._lock(external_id)
        reads = []
        silent: list[int] = []
        for slot in slots:
            read = await self._read_now(lock, slot)
            if read is None:
                silent.append(slot)
                read = SlotRead(slot=slot, state=SlotState.UNREADABLE)
            reads.append(read)
        if silent and len(silent) == len(reads):
            raise self._no_answer(
                f"no answer from {lock.external_id} for {self.slot_noun} "
                f"{', '.join(map(str, silent))} within {self.options.answer_timeout_s:.0f} s")
        return reads

    async def list_codes(self, external_id: str) -> list[SlotRead]:
        """Every occupied slot, one read each: costly, the engine calls it rarely. A walk cut
        short (RetryLater) resumes where it stopped."""
        lock = self._lock(external_id)
        reads: dict[int, SlotRead] = {}
        for slot in self._slots_to_list(lock):
            if slot in lock.walked:
                reads[slot] = lock.walked[slot]
                continue
            read = await self._list_one(lock, slot)
            if read is None:
                break  # the lock's slots end here
            if self._resumable(lock, read):
                lock.walked[slot] = read
            reads[slot] = read
        lock.walked.clear()
        self._log.info("%s %s: read %d %ss of %s%s", self.kind, self.name, len(reads),
                       self.slot_noun, lock.external_id, self._listed_note(lock, reads))
        return [r for r in reads.values() if r.state is not SlotState.EMPTY]

    async def write_code(self, external_id: str, code: CodeWrite) -> WriteResult:
        """Put one PIN in one slot and return once a fresh read from the lock shows it."""
        lock = self._lock(external_id)
        if code.slot is None:
            raise CommandRejected(RejectReason.UNSUPPORTED,
                                  f"{self.network} locks need a {self.slot_noun} number")
        slot = self._writable(lock, code.slot)
        pin = checked_pin(code.pin)
        await self._apply(lock, slot, pin)
        return WriteResult(slot=slot, pin=pin)

    async def clear_code(self, external_id: str, slot: int) -> None:
        """Clear exactly one slot and return once a fresh read shows it empty."""
        lock = self._lock(external_id)
        checked = self._clearable(lock, slot)
        if checked is not None:
            await self._apply(lock, checked, None)

    async def probe(self, external_id: str) -> bool:
        """One cheap round trip (`_ping`); False at once without the broker or the gateway."""
        lock = self._locks.get(external_id)
        if lock is None or not self._link.connected or self._gateway_online is False:
            return False
        return await self._ping(lock)

    # -- hooks a driver fills in ----------------------------------------------------------

    async def _meet_gateway(self) -> None:
        """At start: wait (up to `startup_wait_s`) for what the gateway says of its locks."""

    def _after_start(self) -> None:
        """At the end of start (background work goes through `_spawn`)."""

    def _offline(self, lock: LockT) -> bool:
        """Whether the gateway reports the lock offline."""
        raise NotImplementedError

    async def _read_now(self, lock: LockT, slot: int) -> SlotRead | None:
        """One slot afresh for `read_slots`, under the lock's command lock; None: no answer."""
        raise NotImplementedError

    def _slots_to_list(self, lock: LockT) -> Iterable[int]:
        """The slots a whole-lock read visits, in order."""
        return lock.info.capabilities.slots()

    async def _list_one(self, lock: LockT, slot: int) -> SlotRead | None:
        """One slot of a whole-lock read; None: the lock has no slots from here on."""
        return await self._read_now(lock, slot)

    def _resumable(self, lock: LockT, read: SlotRead) -> bool:
        """Whether a walk cut short may reuse this read."""
        return True

    def _listed_note(self, lock: LockT, reads: dict[int, SlotRead]) -> str:
        """What the log line of a whole-lock read adds."""
        return ""

    def _no_answer(self, message: str) -> DriverError:
        """The error for a read of which no slot answered."""
        return RetryLater(message)

    def _writable(self, lock: LockT, slot: int) -> int:
        """`slot` if a code may be written there, else CommandRejected."""
        return self._check_slot(lock, slot)

    def _clearable(self, lock: LockT, slot: int) -> int | None:
        """`slot` if it is to be cleared; None when the lock cannot hold anything there."""
        return self._check_slot(lock, slot)

    async def _reread(self, lock: LockT, slot: int, pin: str | None) -> SlotRead:
        """A fresh read of `slot` before resending an uncertain command for `pin`."""
        raise NotImplementedError

    async def _before_write(self, lock: LockT, slot: int, pin: str) -> None:
        """Checks before a PIN goes into `slot` (under the lock's command lock)."""

    async def _send(self, lock: LockT, slot: int, pin: str | None) -> None:
        """Send the command (PIN, or clear for None), inside `_in_doubt`, and confirm it."""
        raise NotImplementedError

    async def _ping(self, lock: LockT) -> bool:
        """One round trip to the lock; True if it answered."""
        raise NotImplementedError

    def _abandon(self, why: str, *, maybe_sent: bool) -> None:
        """End every wait for an answer with `LinkDown(why, maybe_sent=...)`."""

    def _link_lost(self) -> None:
        """The broker link dropped: forget what must be read afresh."""

    def _link_up(self) -> None:
        """A broker session is up and subscribed."""

    # -- shared steps ---------------------------------------------------------------------

    async def _apply(self, lock: LockT, slot: int, pin: str | None) -> None:
        """One write (a PIN) or clear (None) under the lock's command lock: replayed only if
        a fresh read does not show it done already."""
        async with lock.op_lock:
            lock.busy.add(slot)
            lock.walked.pop(slot, None)
            try:
                if slot in lock.uncertain and lock.uncertain[slot] == pin \
                        and await self._already(lock, slot, pin):
                    return
                if pin is not None:
                    await self._before_write(lock, slot, pin)
                await self._send(lock, slot, pin)
            finally:
                lock.busy.discard(slot)

    async def _already(self, lock: LockT, slot: int, pin: str | None) -> bool:
        """Before resending a command whose outcome was lost: does the slot show it already?"""
        read = await self._reread(lock, slot, pin)
        if read.state is not SlotState.UNREADABLE and shows(read, pin):
            lock.uncertain.pop(slot, None)
            self._log.info("%s %s: %s %s %d already done; not sent again", self.kind,
                           self.name, lock.external_id, self.slot_noun, slot)
            return True
        return False

    @contextlib.contextmanager
    def _in_doubt(self, lock: LockT, slot: int, pin: str | None) -> Iterator[None]:
        """Our command for `slot` is on its way: uncertain (read before it is sent again) and
        pending until its outcome is known; settled at once if it was surely not sent, or
        refused."""
        self._pending.begin((lock.external_id, slot), pin)
        lock.uncertain[slot] = pin
        try:
            yield
        except LinkDown as exc:
            if not exc.maybe_sent:
                self._settled(lock, slot)
            raise
        except CommandRejected:
            self._settled(lock, slot)
            raise

    def _settled(self, lock: LockT, slot: int) -> None:
        """The outcome of our command for `slot` is known."""
        lock.uncertain.pop(slot, None)
        self._pending.end((lock.external_id, slot))

    def _changed_at_lock(self, lock: LockT, slot: int, detail: dict[str, str]) -> None:
        """A change made at the lock is news, not a stale cache: stop waiting for ours, forget
        the slot's read, tell the engine."""
        self._pending.end((lock.external_id, slot))
        lock.walked.pop(slot, None)
        self._pump.emit(DriverEvent(DriverEventKind.SLOT_CHANGED, lock.external_id, slot=slot,
                                    detail=detail))

    async def _request(self, topic: str, payload: bytes,
                       answer: Callable[[], Awaitable[T]]) -> T:
        """Publish one request and wait up to `answer_timeout_s` for what `answer()` awaits
        (TimeoutError)."""
        await self._link.publish(topic, payload)
        async with asyncio.timeout(self.options.answer_timeout_s):
            return await answer()

    def _gateway_is(self, online: bool | None) -> None:
        """The gateway said whether it is up."""
        self._gateway_online = online
        self._availability_changed()

    def _availability_changed(self) -> None:
        if not self._started:
            return
        for external_id in self._locks:
            now = self.availability(external_id)
            if self._last_availability.get(external_id) is not now:
                self._last_availability[external_id] = now
                self._pump.availability(external_id, now)

    def _on_link(self, up: bool) -> None:
        if up:
            self._link_up()
        else:
            self._abandon("the MQTT broker connection was lost", maybe_sent=True)
            for lock in self._locks.values():
                lock.walked.clear()
            self._link_lost()
        self._availability_changed()

    def _spawn(self, coro: Coroutine[Any, Any, None], what: str) -> None:
        """Run `coro` until the driver stops."""
        task = asyncio.create_task(coro, name=f"{self.kind}:{self.name}:{what}")
        self._tasks.append(task)
        task.add_done_callback(self._forget_task)

    def _forget_task(self, task: asyncio.Task[None]) -> None:
        with contextlib.suppress(ValueError):
            self._tasks.remove(task)
        if not task.cancelled() and (error := task.exception()) is not None:
            self._log.error("%s %s: %s failed", self.kind, self.name, task.get_name(),
                            exc_info=error)

    def _recall_memory(self) -> dict[str, object]:
        """What an earlier run remembered ({} when nothing usable)."""
        self._remembered = load_memory(self.options.memory_file)
        return self._remembered

    def _save_memory(self, doc: dict[str, object]) -> None:
        """Remember `doc` for the next start, when it changed."""
        if doc != self._remembered:
            self._remembered = doc
            save_memory(self.options.memory_file, doc)

    def _lock(self, external_id: str) -> LockT:
        lock = self._locks.get(external_id)
        if lock is None:
            raise FixConfig(f"no {self.lock_noun} {external_id!r}")
        return lock

    def _check_slot(self, lock: LockT, slot: int) -> int:
        caps = lock.info.capabilities
        if slot not in caps.slots():
            noun = self.slot_noun
            raise CommandRejected(RejectReason.SLOT_OUT_OF_RANGE,
                                  f"{noun} {slot} does not exist on {lock.external_id} ({noun}s "
                                  f"{caps.first_slot}..{caps.first_slot + caps.slot_count - 1})")
        return slot

