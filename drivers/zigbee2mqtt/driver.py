"""Zigbee2MQTT locks as a `LockDriver`: PIN users over the broker, every write read back.

How one write goes: `set` the user (QoS 1), then `get` it. Zigbee2MQTT never passes on the
lock's answer to a set (a refused PIN is silent) and republishes its cached `users` with every
state message, so the answer to a `get` is the first state message after it that is neither an
event (`action`) nor a report of the lock (its state or battery changed). An answer that does
not show our command is believed only when the answer to a second `get` agrees: the first may
still be the cache from before the command. A write the lock did not keep is a duplicate when
another user holds that PIN, or probably one when other users hold PINs that cannot be read
(said so in the message); else it is retried.

What each user answered since the link came up is kept, so a whole-lock read that meets a user
that does not answer goes on with the next one (that user is reported unreadable, never empty)
and a read cut short resumes where it stopped. A user with no answer yet is read before it is
written, and never overwritten when it holds a code nobody told lockbridge about (unless the
lock's `write_unread_users` allows it). A lock has as many users as it answers for: when a
user and the last user of Zigbee2MQTT's range (a table) do not answer while the user below
does, the lock's users end there; that range is remembered, and a write beyond it is
`no_space`.

A command whose outcome is unknown (the broker went away after it was sent, no answer in time)
is remembered: before it is sent again, the slot is read, and if it already holds what we asked
for nothing is sent twice.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

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
    write_unread_users: bool = False


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
    """A command in flight on one lock's user; Zigbee2MQTT's failure report for it lands here."""

    slot: int | None
    failed: asyncio.Future[DriverError]


@dataclass(frozen=True, slots=True)
class _Expect:
    """What our own command should leave in a user: a PIN, or nothing (`pin` None)."""

    pin: str | None


@dataclass(slots=True)
class _Waiter:
    """A read of one user waiting for answers (every candidate entry, in order)."""

    slot: int
    answers: asyncio.Queue[SlotRead] = field(default_factory=asyncio.Queue)


@dataclass(slots=True)
class _Lock:
    name: str
    info: DeviceInfo
    ieee: str | None = None
    present: bool = True
    online_flag: bool | None = None
    op_lock: asyncio.Lock = field(default_factory=asyncio.Lock)
    ops: list[_Op] = field(default_factory=list)
    waiters: list[_Waiter] = field(default_factory=list)
    heard: list[asyncio.Future[None]] = field(default_factory=list)
    # Commands sent whose outcome we never learned: slot -> PIN (None for a clear).
    uncertain: dict[int, str | None] = field(default_factory=dict)
    # What each user answered since the link came up, and the users whose last read got none.
    known: dict[int, SlotRead] = field(default_factory=dict)
    unanswered: set[int] = field(default_factory=set)
    # Users a whole-lock read cut short already has: the next one resumes after them.
    walked: dict[int, SlotRead] = field(default_factory=dict)
    # Users found holding a code nobody told us about, just before a write: never overwritten.
    foreign: set[int] = field(default_factory=set)
    # Users a command of ours is working on: their programming events are its echo.
    busy: set[int] = field(default_factory=set)
    # The lock's reported fields in its last state message (a `get` answer changes none).
    last_report: dict[str, object] | None = None


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
        # Users each lock has, as its own answers showed (below Zigbee2MQTT's table range).
        self._ranges: dict[str, int] = {}
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
        shows that command done: any other entry may be Zigbee2MQTT's stale cache. A user that
        gives no answer reads as unreadable while others answer (RetryLater when none does); a
        user beyond the lock's own range holds nothing.
        """
        lock = self._lock(external_id)
        reads = []
        missed: list[int] = []
        for slot in slots:
            if self._beyond(lock, slot):
                reads.append(SlotRead(slot=slot, state=SlotState.EMPTY))
                continue
            self._check_slot(lock, slot)
            try:
                async with lock.op_lock:
                    read = await self._read_user(lock, slot)
            except mapping.UserDidNotAnswer:
                missed.append(slot)
                read = SlotRead(slot=slot, state=SlotState.UNREADABLE)
            reads.append(read)
        if missed and len(missed) == len(reads):
            raise mapping.UserDidNotAnswer(
                f"no answer from {lock.name} for user {', '.join(map(str, missed))} within "
                f"{self.options.answer_timeout_s:.0f} s")
        return reads

    async def list_codes(self, external_id: str) -> list[SlotRead]:
        """Every occupied user, one `get` each: costly, the engine calls it rarely.

        A user that does not answer is reported unreadable (its content unknown, never empty)
        and the walk goes on; it stops where the lock's own range ends, and raises RetryLater
        only when the lock stopped answering altogether (the next walk resumes there).
        """
        lock = self._lock(external_id)
        reads: dict[int, SlotRead] = {}
        for slot in lock.info.capabilities.slots():
            if self._beyond(lock, slot):
                break
            if slot in lock.walked:
                reads[slot] = lock.walked[slot]
                continue
            async with lock.op_lock:
                try:
                    read = await self._read_user(lock, slot)
                except mapping.UserDidNotAnswer as exc:
                    verdict = await self._after_no_answer(lock, slot)
                    if verdict == "range_end":
                        break
                    if verdict == "silent":
                        raise RetryLater(f"{lock.name} stopped answering at user {slot}; "
                                         f"{len(lock.walked)} users read so far") from exc
                    # The lock answers for others: ask once more, as a `get` can be lost too
                    # (sent while Zigbee2MQTT was not yet subscribed after a broker restart).
                    read = await self._read_again(lock, slot)
                if read.state is not SlotState.UNREADABLE or slot not in lock.unanswered:
                    lock.walked[slot] = read
            reads[slot] = read
        lock.walked.clear()
        missing = sorted(s for s in reads if s in lock.unanswered)
        _LOG.info("zigbee2mqtt %s: read %d users of %s%s", self.name, len(reads), lock.name,
                  f"; no answer from user {', '.join(map(str, missing))} (reported unreadable)"
                  if missing else "")
        return [r for r in reads.values() if r.state is not SlotState.EMPTY]

    async def write_code(self, external_id: str, code: CodeWrite) -> WriteResult:
        """Set one user's PIN and return once a fresh read shows it."""
        lock = self._lock(external_id)
        if code.slot is None:
            raise CommandRejected(RejectReason.UNSUPPORTED, "Zigbee locks need a user number")
        if self._beyond(lock, code.slot):
            raise self._full(lock, code.slot)
        slot = self._check_slot(lock, code.slot)
        pin = checked_pin(code.pin)
        async with lock.op_lock, self._op(lock, slot) as op:
            lock.busy.add(slot)
            try:
                if lock.uncertain.get(slot, "") == pin \
                        and await self._already(lock, slot, pin, op):
                    return WriteResult(slot=slot, pin=pin)
                await self._check_unread(lock, slot, pin, op)
                await self._send(lock, slot, pin, mapping.set_pin_code(slot, pin), op)
            finally:
                lock.busy.discard(slot)
            return WriteResult(slot=slot, pin=pin)

    async def clear_code(self, external_id: str, slot: int) -> None:
        """Clear exactly one user and return once a fresh read shows it empty."""
        lock = self._lock(external_id)
        if self._beyond(lock, slot):
            return  # the lock has no such user: nothing can be there
        slot = self._check_slot(lock, slot)
        async with lock.op_lock, self._op(lock, slot) as op:
            lock.busy.add(slot)
            try:
                if slot in lock.uncertain and lock.uncertain[slot] is None \
                        and await self._already(lock, slot, None, op):
                    return
                await self._send(lock, slot, None, mapping.clear_pin_code(slot), op)
            finally:
                lock.busy.discard(slot)

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
            read = await self._fresh_read(lock, slot, op, _Expect(pin))
        except LinkDown as exc:
            if not exc.maybe_sent:
                lock.uncertain.pop(slot, None)
                self._pending.end(key)
            raise
        except CommandRejected:
            lock.uncertain.pop(slot, None)
            self._pending.end(key)
            raise
        except mapping.UserDidNotAnswer:
            # A set into a user the lock does not have is refused without a word, and reading
            # that user gets no answer: find out whether the lock's users end here.
            if pin is not None and await self._after_no_answer(lock, slot) == "range_end":
                lock.uncertain.pop(slot, None)
                self._pending.end(key)
                raise self._full(lock, slot) from None
            raise
        # Two answers agree (or one shows our command): this is the lock's word, not a cache.
        lock.uncertain.pop(slot, None)
        self._pending.end(key)
        if shows(read, pin):
            lock.foreign.discard(slot)
            return
        if pin is None:
            raise RetryLater(f"user {slot} still holds a code after clearing it")
        raise self._refusal(lock, slot, pin, read)

    async def _already(self, lock: _Lock, slot: int, pin: str | None, op: _Op) -> bool:
        """Before resending a command whose outcome was lost: does the slot show it already?"""
        read = await self._fresh_read(lock, slot, op, _Expect(pin))
        if read.state is not SlotState.UNREADABLE and shows(read, pin):
            lock.uncertain.pop(slot, None)
            _LOG.info("zigbee2mqtt %s: %s user %d already done; not sent again", self.name,
                      lock.name, slot)
            return True
        return False

    async def _check_unread(self, lock: _Lock, slot: int, pin: str, op: _Op) -> None:
        """Never write blind: a user with no answer since the link came up is read first, and
        one holding a code nobody told us about is not overwritten."""
        override = self._overrides.get(lock.name)
        if override is not None and override.write_unread_users:
            return
        if slot not in lock.known or slot in lock.unanswered:
            try:
                read = await self._fresh_read(lock, slot, op)
            except mapping.UserDidNotAnswer:
                if await self._after_no_answer(lock, slot) == "range_end":
                    raise self._full(lock, slot) from None
                raise
            if read.state is not SlotState.EMPTY and not (read.state is SlotState.KNOWN
                                                           and read.pin == pin):
                lock.foreign.add(slot)
                # The engine learns of that code as it learns of a keypad edit.
                self._pump.emit(DriverEvent(DriverEventKind.SLOT_CHANGED, lock.name, slot=slot,
                                            detail={"action": "found_before_write"}))
        if slot in lock.foreign:
            raise RetryLater(f"user {slot} of {lock.name} holds a code lockbridge did not put "
                             "there; it is not overwritten")

    def _refusal(self, lock: _Lock, slot: int, pin: str, read: SlotRead) -> DriverError:
        """Why a set the lock did not keep was refused, as far as can be told: Zigbee2MQTT
        never passes on the lock's answer (duplicate, memory full, general failure)."""
        shown = "empty" if read.state is SlotState.EMPTY else "another code"
        holders = sorted(s for s, r in lock.known.items() if s != slot
                         and r.state is SlotState.KNOWN and r.pin == pin)
        if holders:
            return CommandRejected(RejectReason.DUPLICATE_PIN,
                                   f"the lock did not keep the PIN in user {slot}: user "
                                   f"{holders[0]} already holds it")
        hidden = sorted(s for s, r in lock.known.items() if s != slot
                        and r.state is SlotState.UNREADABLE)
        silent = sorted(s for s in lock.unanswered if s != slot and s not in lock.known)
        if hidden or silent:
            where = " and ".join(part for part in (
                f"user {_listed(hidden)} hold PINs that cannot be read" if hidden else "",
                f"user {_listed(silent)} did not answer" if silent else "") if part)
            return CommandRejected(
                RejectReason.DUPLICATE_PIN,
                f"the lock did not keep the PIN in user {slot} (it reads back {shown}); "
                f"Zigbee2MQTT does not pass on the lock's answer, and on this lock {where}: "
                "most likely one of them already is this PIN (a duplicate)")
        return RetryLater(f"the lock did not keep the PIN in user {slot} (it reads back "
                          f"{shown}); Zigbee2MQTT does not pass on the lock's answer, so why "
                          "is not known")

    async def _read_user(self, lock: _Lock, slot: int) -> SlotRead:
        """One user afresh, under the caller's `op_lock`; a command of ours still unconfirmed
        on it makes any other answer unreadable (it may be the cache)."""
        async with self._op(lock, slot) as op:
            read = await self._fresh_read(lock, slot, op)
        key = (lock.name, slot)
        expected = self._pending.active(key)
        if expected is not None and read.state is not SlotState.UNREADABLE:
            if shows(read, expected.pin):
                # Our lost-answer command did land: it is no longer in doubt.
                self._pending.end(key)
                lock.uncertain.pop(slot, None)
            else:
                read = SlotRead(slot=slot, state=SlotState.UNREADABLE)
        if read.state is SlotState.EMPTY:
            lock.foreign.discard(slot)
        return read

    async def _read_again(self, lock: _Lock, slot: int) -> SlotRead:
        """A second read of a user that gave no answer; unreadable if it gives none again."""
        try:
            return await self._read_user(lock, slot)
        except mapping.UserDidNotAnswer:
            return SlotRead(slot=slot, state=SlotState.UNREADABLE)

    async def _answers(self, lock: _Lock, slot: int) -> bool:
        """Whether one user answers a read now (under the caller's `op_lock`)."""
        try:
            await self._read_user(lock, slot)
        except mapping.UserDidNotAnswer:
            return False
        return True

    async def _after_no_answer(self, lock: _Lock, slot: int
                               ) -> Literal["range_end", "silent", "user"]:
        """After `slot` gave no answer: the lock's users end there (the user below answers,
        neither the last user of the table range nor, asked again, `slot` do), the lock answers
        nothing now, or only this user is silent. Under the caller's `op_lock`."""
        caps = lock.info.capabilities
        alive = slot > caps.first_slot and await self._answers(lock, slot - 1)
        top = caps.first_slot + caps.slot_count - 1
        if slot > caps.first_slot and not alive:
            return "silent"
        if top == slot:
            return "user" if alive else "silent"
        if await self._answers(lock, top):
            return "user"
        if not alive:
            return "silent"
        # The range is remembered: one more chance for a `get` that was merely lost.
        if await self._answers(lock, slot):
            return "user"
        self._learn_range(lock, slot - caps.first_slot)
        return "range_end"

    def _learn_range(self, lock: _Lock, count: int) -> None:
        """The lock said by its answers that it has `count` users."""
        table = lock.info.capabilities.slot_count
        self._ranges[lock.name] = count
        _LOG.warning("zigbee2mqtt %s: %s answers for %d users only (the user after them and "
                     "the last of the %d Zigbee2MQTT allows do not answer); lockbridge uses %d",
                     self.name, lock.name, count, table, count)
        lock.info = self._info(lock.name)
        self._remember()

    def _beyond(self, lock: _Lock, slot: int) -> bool:
        """True for a user past the range the lock's own answers showed."""
        count = self._ranges.get(lock.name)
        return count is not None and slot >= lock.info.capabilities.first_slot + count

    def _full(self, lock: _Lock, slot: int) -> CommandRejected:
        count = self._ranges.get(lock.name, lock.info.capabilities.slot_count)
        return CommandRejected(RejectReason.NO_SPACE,
                               f"{lock.name} has {count} users (user {slot} and the last of "
                               "Zigbee2MQTT's range do not answer) and every one is taken")

    async def _fresh_read(self, lock: _Lock, slot: int, op: _Op,
                          expect: _Expect | None = None) -> SlotRead:
        """`get` one user and return the lock's answer. With `expect` (our own command), an
        answer that does not show it is believed only when the answer to a second `get`
        agrees: the first may be the cache from before the command, republished."""
        waiter = _Waiter(slot)
        lock.waiters.append(waiter)
        try:
            for attempt in range(2):
                await self._link.publish(self._topic(lock.name, "get"),
                                         mapping.get_pin_code(slot))
                read = await self._answer(lock, waiter, op)
                if expect is None or shows(read, expect.pin) or attempt == 1:
                    break
                _LOG.debug("zigbee2mqtt %s: %s user %d: an answer that may be the cache; "
                           "asking again", self.name, lock.name, slot)
        except mapping.UserDidNotAnswer:
            lock.known.pop(slot, None)
            lock.unanswered.add(slot)
            raise
        finally:
            with contextlib.suppress(ValueError):
                lock.waiters.remove(waiter)
        lock.known[slot] = read
        lock.unanswered.discard(slot)
        return read

    async def _answer(self, lock: _Lock, waiter: _Waiter, op: _Op) -> SlotRead:
        """The next answer for `waiter`, Zigbee2MQTT's failure report for the op, or a timeout."""
        getting = asyncio.ensure_future(waiter.answers.get())
        either: set[asyncio.Future[Any]] = {getting, op.failed}
        try:
            async with asyncio.timeout(self.options.answer_timeout_s):
                await asyncio.wait(either, return_when=asyncio.FIRST_COMPLETED)
        except TimeoutError:
            raise mapping.UserDidNotAnswer(
                f"no answer from {lock.name} for user {waiter.slot} within "
                f"{self.options.answer_timeout_s:.0f} s") from None
        finally:
            if not getting.done():
                getting.cancel()
        if getting.done() and not getting.cancelled():
            return getting.result()
        raise op.failed.result()

    @contextlib.asynccontextmanager
    async def _op(self, lock: _Lock, slot: int | None) -> AsyncIterator[_Op]:
        op = _Op(slot, asyncio.get_running_loop().create_future())
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
        # The error text is redacted in mapping (zigbee-herdsman prints the PIN of a setPinCode).
        _LOG.info("zigbee2mqtt %s: %s: %s %s failed: %s", self.name, lock.name, failure.verb,
                  failure.key, failure.error)
        for op in lock.ops:
            if failure.user is not None and op.slot is not None and op.slot != failure.user:
                continue  # a late report for another user's command
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
        report = mapping.reported_fields(state)
        # An event, or a report of the lock, repeats the cached users: not a `get` answer.
        answer = not mapping.is_event(state) and (lock.last_report is None
                                                  or report == lock.last_report)
        lock.last_report = report
        if answer:
            for waiter in lock.waiters:
                read = users.get(waiter.slot)
                if read is not None:
                    waiter.answers.put_nowait(read)
        action = mapping.action_in(state)
        if action is None:
            return
        if action.kind == "keypad_used":
            self._pump.emit(DriverEvent(DriverEventKind.KEYPAD_USED, lock.name,
                                        slot=action.slot, detail=action.detail))
            return
        if action.detail.get("source") == "rf" and action.slot in lock.busy:
            return  # the lock's echo of our own command
        # A change made at the lock is news, not a stale cache: stop waiting for ours.
        self._pending.end((lock.name, action.slot))
        lock.known.pop(action.slot, None)
        lock.walked.pop(action.slot, None)
        self._pump.emit(DriverEvent(DriverEventKind.SLOT_CHANGED, lock.name,
                                    slot=action.slot, detail=action.detail))

    def _on_link(self, up: bool) -> None:
        if not up:
            for lock in self._locks.values():
                self._fail_all(lock, LinkDown("the MQTT broker connection was lost",
                                              maybe_sent=True))
                # What the users held is read afresh after the outage.
                lock.known.clear()
                lock.unanswered.clear()
                lock.walked.clear()
                lock.last_report = None
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
        ranges = doc.get("device_users")
        if isinstance(ranges, dict):
            self._ranges = {name: count for name, count in ranges.items()
                            if isinstance(count, int) and not isinstance(count, bool)
                            and count > 0}
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
        if self._ranges:
            doc["device_users"] = dict(sorted(self._ranges.items()))
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
        if name in self._ranges:
            # The lock's own answers beat a table and the configuration alike.
            slot_count = min(slot_count, self._ranges[name])
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



def _listed(slots: Sequence[int]) -> str:
    """`3`, `3, 7` or `3, 7, 9 and 5 more`: a list of users short enough for a message."""
    shown = ", ".join(map(str, slots[:5]))
    return shown + (f" and {len(slots) - 5} more" if len(slots) > 5 else "")
