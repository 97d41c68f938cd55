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
from collections.abc import AsyncIterator, Iterable
from typing import Any, Literal

from bridge.clock import Clock
from bridge.driver import (
    DeviceInfo,
    DriverError,
    DriverEvent,
    DriverEventKind,
    RetryLater,
    SlotRead,
    SlotState,
)
from drivers.mqtt.common import MalformedPayload, decode_json, shows
from drivers.mqtt.link import LinkDown, MqttLink
from drivers.mqtt.lockdriver import MqttLockDriver
from drivers.zigbee2mqtt import mapping
from drivers.zigbee2mqtt.locks import (
    Discovery,
    Expect,
    Lock,
    LockOptions,
    Op,
    Options,
    Waiter,
    refusal,
)

__all__ = ["LockOptions", "Options", "Zigbee2MqttDriver"]

_LOG = logging.getLogger(__name__)


class Zigbee2MqttDriver(MqttLockDriver[Lock, Options]):
    """Locks behind one Zigbee2MQTT instance (one base topic on one broker)."""

    kind = "zigbee2mqtt"
    network = "Zigbee"
    lock_noun = "Zigbee2MQTT lock"
    slot_noun = "user"

    def __init__(self, name: str, options: Options, clock: Clock, link: MqttLink) -> None:
        super().__init__(name, options, clock, link, _LOG)
        self._base = options.base_topic.rstrip("/")
        self._overrides = {lock.friendly_name: lock for lock in options.locks}
        self._found = Discovery()
        self._devices_seen = asyncio.Event()
        self._info_seen = asyncio.Event()
        self._found.recall(self._recall_memory())
        for override in options.locks:
            self._add(override.friendly_name)
        if options.discover:
            for name, found in self._found.locks.items():
                if name not in self._locks:
                    self._add(name, found.ieee_address)
        link.subscribe(f"{self._base}/bridge/+", self._on_bridge)
        link.subscribe(f"{self._base}/+", self._on_device)
        link.subscribe(f"{self._base}/+/availability", self._on_device)
        for override in options.locks:
            if "/" in override.friendly_name:
                link.subscribe(f"{self._base}/{override.friendly_name}", self._on_device)
                link.subscribe(f"{self._base}/{override.friendly_name}/availability",
                               self._on_device)

    # -- the base's hooks -----------------------------------------------------------------

    async def _meet_gateway(self) -> None:
        """Learn the locks from `bridge/devices` (and their expose_pin from `bridge/info`)."""
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

    def _offline(self, lock: Lock) -> bool:
        return lock.online_flag is False

    async def _read_now(self, lock: Lock, slot: int) -> SlotRead | None:
        """Ask the lock for the user afresh (`get`), never trusting the cached `users`; a user
        beyond the lock's own range holds nothing."""
        if self._found.beyond(lock, slot):
            return SlotRead(slot=slot, state=SlotState.EMPTY)
        self._check_slot(lock, slot)
        try:
            async with lock.op_lock:
                return await self._read_user(lock, slot)
        except mapping.UserDidNotAnswer:
            return None

    def _no_answer(self, message: str) -> mapping.UserDidNotAnswer:
        return mapping.UserDidNotAnswer(message)

    def _slots_to_list(self, lock: Lock) -> Iterable[int]:
        return (s for s in lock.info.capabilities.slots() if not self._found.beyond(lock, s))

    async def _list_one(self, lock: Lock, slot: int) -> SlotRead | None:
        """A user that does not answer is unreadable (its content unknown, never empty) and the
        walk goes on; it ends where the lock's own range does, and raises RetryLater when the
        lock stopped answering altogether."""
        async with lock.op_lock:
            try:
                return await self._read_user(lock, slot)
            except mapping.UserDidNotAnswer as exc:
                verdict = await self._after_no_answer(lock, slot)
                if verdict == "range_end":
                    return None
                if verdict == "silent":
                    raise RetryLater(f"{lock.external_id} stopped answering at user {slot}; "
                                     f"{len(lock.walked)} users read so far") from exc
                # The lock answers for others: ask once more, as a `get` can be lost too
                # (sent while Zigbee2MQTT was not yet subscribed after a broker restart).
                return await self._read_again(lock, slot)

    def _resumable(self, lock: Lock, read: SlotRead) -> bool:
        return read.state is not SlotState.UNREADABLE or read.slot not in lock.unanswered

    def _listed_note(self, lock: Lock, reads: dict[int, SlotRead]) -> str:
        missing = sorted(s for s in reads if s in lock.unanswered)
        return (f"; no answer from user {', '.join(map(str, missing))} (reported unreadable)"
                if missing else "")

    def _writable(self, lock: Lock, slot: int) -> int:
        if self._found.beyond(lock, slot):
            raise self._found.full(lock, slot)
        return self._check_slot(lock, slot)

    def _clearable(self, lock: Lock, slot: int) -> int | None:
        if self._found.beyond(lock, slot):
            return None  # the lock has no such user: nothing can be there
        return self._check_slot(lock, slot)

    async def _reread(self, lock: Lock, slot: int, pin: str | None) -> SlotRead:
        async with self._op(lock, slot) as op:
            return await self._fresh_read(lock, slot, op, Expect(pin))

    async def _ping(self, lock: Lock) -> bool:
        """One `get` of the lock's state; True if the lock's state comes back in time."""
        heard: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        lock.heard.append(heard)
        try:
            await self._request(self._topic(lock, "get"), mapping.get_lock_state(),
                                lambda: heard)
        except (DriverError, TimeoutError):
            return False
        finally:
            with contextlib.suppress(ValueError):
                lock.heard.remove(heard)
        return True

    def _abandon(self, why: str, *, maybe_sent: bool) -> None:
        for lock in self._locks.values():
            for op in lock.ops:
                if not op.failed.done():
                    op.failed.set_result(LinkDown(why, maybe_sent=maybe_sent))
            for heard in lock.heard:
                if not heard.done():
                    heard.cancel()

    def _link_lost(self) -> None:
        for lock in self._locks.values():
            # What the users held is read afresh after the outage.
            lock.known.clear()
            lock.unanswered.clear()
            lock.last_report = None

    # -- commands -------------------------------------------------------------------------

    async def _send(self, lock: Lock, slot: int, pin: str | None) -> None:
        """`set` the user, then read it back: two answers agree, or one shows our command."""
        payload = mapping.clear_pin_code(slot) if pin is None else mapping.set_pin_code(slot, pin)
        try:
            with self._in_doubt(lock, slot, pin):
                async with self._op(lock, slot) as op:
                    await self._link.publish(self._topic(lock, "set"), payload)
                    read = await self._fresh_read(lock, slot, op, Expect(pin))
        except mapping.UserDidNotAnswer:
            # A set into a user the lock does not have is refused without a word, and reading
            # that user gets no answer: find out whether the lock's users end here.
            if pin is not None and await self._after_no_answer(lock, slot) == "range_end":
                self._settled(lock, slot)
                raise self._found.full(lock, slot) from None
            raise
        self._settled(lock, slot)
        if shows(read, pin):
            lock.foreign.discard(slot)
            return
        if pin is None:
            raise RetryLater(f"user {slot} still holds a code after clearing it")
        raise refusal(lock, slot, pin, read)

    async def _before_write(self, lock: Lock, slot: int, pin: str) -> None:
        """Never write blind: a user with no answer since the link came up is read first, and
        one holding a code nobody told us about is not overwritten."""
        override = self._overrides.get(lock.external_id)
        if override is not None and override.write_unread_users:
            return
        if slot not in lock.known or slot in lock.unanswered:
            try:
                async with self._op(lock, slot) as op:
                    read = await self._fresh_read(lock, slot, op)
            except mapping.UserDidNotAnswer:
                if await self._after_no_answer(lock, slot) == "range_end":
                    raise self._found.full(lock, slot) from None
                raise
            if read.state is not SlotState.EMPTY and not (read.state is SlotState.KNOWN
                                                           and read.pin == pin):
                lock.foreign.add(slot)
                # The engine learns of that code as it learns of a keypad edit.
                self._pump.emit(DriverEvent(DriverEventKind.SLOT_CHANGED, lock.external_id,
                                            slot=slot, detail={"action": "found_before_write"}))
        if slot in lock.foreign:
            raise RetryLater(f"user {slot} of {lock.external_id} holds a code lockbridge did "
                             "not put there; it is not overwritten")

    async def _read_user(self, lock: Lock, slot: int) -> SlotRead:
        """One user afresh, under the caller's `op_lock`; a command of ours still unconfirmed
        on it makes any other answer unreadable (it may be the cache)."""
        async with self._op(lock, slot) as op:
            read = await self._fresh_read(lock, slot, op)
        key = (lock.external_id, slot)
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

    async def _read_again(self, lock: Lock, slot: int) -> SlotRead:
        """A second read of a user that gave no answer; unreadable if it gives none again."""
        try:
            return await self._read_user(lock, slot)
        except mapping.UserDidNotAnswer:
            return SlotRead(slot=slot, state=SlotState.UNREADABLE)

    async def _answers(self, lock: Lock, slot: int) -> bool:
        """Whether one user answers a read now (under the caller's `op_lock`)."""
        try:
            await self._read_user(lock, slot)
        except mapping.UserDidNotAnswer:
            return False
        return True

    async def _after_no_answer(self, lock: Lock, slot: int
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

    def _learn_range(self, lock: Lock, count: int) -> None:
        """The lock said by its answers that it has `count` users."""
        table = lock.info.capabilities.slot_count
        self._found.ranges[lock.external_id] = count
        _LOG.warning("zigbee2mqtt %s: %s answers for %d users only (the user after them and "
                     "the last of the %d Zigbee2MQTT allows do not answer); lockbridge uses %d",
                     self.name, lock.external_id, count, table, count)
        lock.info = self._info(lock.external_id, lock.ieee)
        self._remember()

    async def _fresh_read(self, lock: Lock, slot: int, op: Op,
                          expect: Expect | None = None) -> SlotRead:
        """`get` one user and return the lock's answer. With `expect` (our own command), an
        answer that does not show it is believed only when the answer to a second `get`
        agrees: the first may be the cache from before the command, republished."""
        waiter = Waiter(slot)
        lock.waiters.append(waiter)
        try:
            for attempt in range(2):
                try:
                    read = await self._request(self._topic(lock, "get"),
                                               mapping.get_pin_code(slot),
                                               lambda: self._answer(waiter, op))
                except TimeoutError:
                    raise mapping.UserDidNotAnswer(
                        f"no answer from {lock.external_id} for user {slot} within "
                        f"{self.options.answer_timeout_s:.0f} s") from None
                if expect is None or shows(read, expect.pin) or attempt == 1:
                    break
                _LOG.debug("zigbee2mqtt %s: %s user %d: an answer that may be the cache; "
                           "asking again", self.name, lock.external_id, slot)
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

    @staticmethod
    async def _answer(waiter: Waiter, op: Op) -> SlotRead:
        """The next answer for `waiter`, or Zigbee2MQTT's failure report for the op."""
        getting = asyncio.ensure_future(waiter.answers.get())
        either: set[asyncio.Future[Any]] = {getting, op.failed}
        try:
            await asyncio.wait(either, return_when=asyncio.FIRST_COMPLETED)
        finally:
            if not getting.done():
                getting.cancel()
        if getting.done() and not getting.cancelled():
            return getting.result()
        raise op.failed.result()

    @contextlib.asynccontextmanager
    async def _op(self, lock: Lock, slot: int | None) -> AsyncIterator[Op]:
        op = Op(slot, asyncio.get_running_loop().create_future())
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
                self._gateway_is(online)
            elif what == "devices":
                self._on_devices(decode_json(payload))
            elif what == "info":
                self._found.expose, self._found.expose_default = mapping.expose_pin_options(
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
        self._found.locks = found
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
                lock = self._add(name)
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
        _LOG.info("zigbee2mqtt %s: %s: %s %s failed: %s", self.name, lock.external_id, failure.verb,
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

    def _on_state(self, lock: Lock, state: object) -> None:
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
            self._pump.emit(DriverEvent(DriverEventKind.KEYPAD_USED, lock.external_id,
                                        slot=action.slot, detail=action.detail))
            return
        if action.detail.get("source") == "rf" and action.slot in lock.busy:
            return  # the lock's echo of our own command
        lock.known.pop(action.slot, None)
        self._changed_at_lock(lock, action.slot, action.detail)

    # -- helpers --------------------------------------------------------------------------

    def _add(self, name: str, ieee: str | None = None) -> Lock:
        lock = self._locks[name] = Lock(external_id=name, info=self._info(name, ieee), ieee=ieee)
        return lock

    def _remember(self) -> None:
        """Save what discovery found, when it changed."""
        self._save_memory(self._found.memory())

    def _refresh_infos(self) -> None:
        for lock in self._locks.values():
            lock.info = self._info(lock.external_id, lock.ieee)

    def _info(self, name: str, ieee: str | None) -> DeviceInfo:
        override = self._overrides.get(name) or LockOptions(friendly_name=name)
        return self._found.info(override, ieee, self._base, self.options.command_spacing_s)

    def _topic(self, lock: Lock, suffix: str) -> str:
        return f"{self._base}/{lock.external_id}/{suffix}"
