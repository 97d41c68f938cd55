"""Z-Wave locks through Z-Wave JS UI's MQTT gateway, as a `LockDriver`.

Every command is an API call (`writeValue`, `sendCommand`, `pingNode`, `getNodes`) answered on
the API's topic; lockbridge tags each call so that answers to other clients, or late answers to a
call that already timed out, are never taken for ours. A write is confirmed with a fresh User
Code `get` from the lock before `write_code` returns. Value topics are only a hint that a slot
changed at the lock; within a write's confirmation window they may still carry zwave-js's
cached old value (an unsupervised write is published at once, whatever the lock did) and are
not taken as news.

`writeValue` answers Fail both when the lock refused under Supervision and when it did not
acknowledge; the node going Dead tells the second (it is retried once the lock answers), a
verification read the first. A node's slot count, name and location come from `getNodes` (its
defined User Code values) or, before its interview ended, from `getUsersCount`.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import uuid
from collections.abc import Iterable
from dataclasses import replace

from bridge.clock import Clock
from bridge.driver import (
    Availability,
    CommandRejected,
    DeviceInfo,
    DriverError,
    DriverEvent,
    DriverEventKind,
    RejectReason,
    RetryLater,
    SlotRead,
    SlotState,
)
from drivers.mqtt.common import MalformedPayload, decode_json
from drivers.mqtt.link import LinkDown, MqttLink
from drivers.mqtt.lockdriver import MqttLockDriver
from drivers.zwave_usercode import holds, wait_for_duplicate
from drivers.zwavejs_mqtt import locks, mapping
from drivers.zwavejs_mqtt.locks import DEFAULT_GATEWAY_NAME, Call, Lock, LockOptions, Options

__all__ = ["DEFAULT_GATEWAY_NAME", "LockOptions", "Options", "ZwaveJsMqttDriver"]

_LOG = logging.getLogger(__name__)
# Seconds between getNodes attempts while a node is not yet listed (a message may be missed),
# doubling up to the cap: a node id that is not on the network must not cost a getNodes (all
# nodes, all values) every minute for ever.
_RELEARN_S = 60.0
_RELEARN_MAX_S = 3600.0


class ZwaveJsMqttDriver(MqttLockDriver[Lock, Options]):
    """Lock nodes behind one Z-Wave JS UI gateway (one prefix and gateway name)."""

    kind = "zwavejs_mqtt"
    network = "Z-Wave"
    lock_noun = "Z-Wave lock"
    slot_noun = "slot"

    def __init__(self, name: str, options: Options, clock: Clock, link: MqttLink) -> None:
        super().__init__(name, options, clock, link, _LOG)
        self._prefix = options.prefix.rstrip("/")
        self._calls: dict[str, list[Call]] = {}
        self._driver_ready = asyncio.Event()
        self._learn_wakeup = asyncio.Event()
        remembered = locks.recall(self._recall_memory())
        for lock_options in options.locks:
            facts = remembered.get(lock_options.node_id, mapping.NodeFacts())
            lock = Lock(external_id=lock_options.external_id, options=lock_options,
                        info=self._info(lock_options, facts), facts=facts)
            lock.topic = self._node_topic(lock_options, facts)
            self._locks[lock_options.external_id] = lock
        api_base = mapping.api_topic(self._prefix, options.gateway_name, "+")
        link.subscribe(api_base, self._on_api)
        link.subscribe(mapping.gateway_status_topic(self._prefix, options.gateway_name),
                       self._on_gateway_status)
        link.subscribe(f"{self._prefix}/driver/status", self._on_driver_status)
        for topic_filter in locks.node_topic_filters(self._prefix, options.layout,
                                                     options.locks):
            link.subscribe(topic_filter, self._on_node)

    # -- the base's hooks -----------------------------------------------------------------

    async def _meet_gateway(self) -> None:
        """Learn each configured node's facts (`getNodes`; while the gateway still boots,
        until `startup_wait_s` ends, and later in the background)."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.options.startup_wait_s
        if await self._link.wait_up(self.options.startup_wait_s):
            while True:
                try:
                    await self._learn_nodes()
                    break
                except (DriverError, MalformedPayload) as exc:
                    left = deadline - loop.time()
                    if isinstance(exc, RetryLater) and left > 0:
                        # The gateway answers "Z-Wave client not connected" while it boots.
                        self._driver_ready.clear()
                        with contextlib.suppress(TimeoutError):
                            async with asyncio.timeout(min(left, 1.0)):
                                await self._driver_ready.wait()
                        continue
                    _LOG.warning("zwavejs_mqtt %s: could not list the nodes (%s); using the "
                                 "configured settings until the gateway answers", self.name,
                                 exc)
                    break
        else:
            _LOG.warning("zwavejs_mqtt %s: broker %s not reachable within %.0f s; using the "
                         "configured settings", self.name, self._link.config.describe(),
                         self.options.startup_wait_s)

    def _after_start(self) -> None:
        """Until getNodes answered for every node: ask again when the gateway's Z-Wave driver
        is ready or the broker comes back."""
        if not all(lock.learned for lock in self._locks.values()):
            self._spawn(self._learn_loop(), "nodes")

    def _offline(self, lock: Lock) -> bool:
        return lock.status is Availability.OFFLINE

    async def _read_now(self, lock: Lock, slot: int) -> SlotRead | None:
        """User Code `get` for the slot, answered by the lock itself; None when it went
        unanswered (the base reads that slot as unreadable, the others as they answered)."""
        self._check_slot(lock, slot)
        async with lock.op_lock:
            lock.busy.add(slot)
            try:
                return await self._read_slot(lock, slot)
            except mapping.SlotMissing:
                # Not available (254): no code can be there; the slot is reserved from now.
                return SlotRead(slot=slot, state=SlotState.EMPTY)
            except mapping.NoAnswer:
                return None
            finally:
                lock.busy.discard(slot)

    async def _list_one(self, lock: Lock, slot: int) -> SlotRead | None:
        """A slot that goes unanswered cuts the whole-lock walk short (it resumes there); the
        slots end where getUsersCount says, never at a silent one."""
        read = await self._read_now(lock, slot)
        if read is None:
            raise RetryLater(f"{lock.external_id} did not answer for slot {slot}; the read "
                             "resumes there")
        return read

    def _slots_to_list(self, lock: Lock) -> Iterable[int]:
        return [s for s in lock.info.capabilities.slots() if s not in lock.facts.missing_slots]

    def _writable(self, lock: Lock, slot: int) -> int:
        slot = self._check_slot(lock, slot)
        if slot in lock.facts.missing_slots:
            raise CommandRejected(RejectReason.SLOT_OUT_OF_RANGE,
                                  f"slot {slot} does not exist on {lock.external_id} (the lock "
                                  "reports it as not available)")
        return slot

    async def _reread(self, lock: Lock, slot: int, pin: str | None) -> SlotRead:
        try:
            return await self._read_slot(lock, slot)
        except mapping.SlotMissing:
            return SlotRead(slot=slot, state=SlotState.EMPTY)

    async def _ping(self, lock: Lock) -> bool:
        """`pingNode`: True if the node answers."""
        try:
            result = await self._api("pingNode", [lock.options.node_id])
        except DriverError:
            return False
        if result is True:
            if lock.status is Availability.OFFLINE:
                lock.status = Availability.ONLINE
                self._availability_changed()
            return True
        return False

    def _abandon(self, why: str, *, maybe_sent: bool) -> None:
        self._fail_calls(LinkDown(why, maybe_sent=maybe_sent))

    def _link_lost(self) -> None:
        self._gateway_online = None

    def _link_up(self) -> None:
        self._learn_wakeup.set()

    # -- commands -------------------------------------------------------------------------

    async def _send(self, lock: Lock, slot: int, pin: str | None) -> None:
        """`writeValue` (userCode, or userIdStatus 0 to clear), then read the slot back."""
        node = lock.options.node_id
        args = mapping.clear_code_args(node, slot) if pin is None \
            else mapping.write_code_args(node, slot, pin)
        key = (lock.external_id, slot)
        sent_at = lock.seq
        lock.duplicate_seen.clear()
        with self._in_doubt(lock, slot, pin):
            try:
                result = await self._api("writeValue", args)
                answer = mapping.check_write(result)
            except CommandRejected as exc:
                if exc.reason is RejectReason.SLOT_OUT_OF_RANGE:
                    self._learn_users_count(lock, mapping.supported_users(result))
                raise
            except MalformedPayload as exc:
                raise RetryLater(f"unexpected answer to writeValue ({exc})") from exc
        failed = answer is mapping.WriteAnswer.FAILED
        if failed and lock.went_dead(sent_at):
            # zwave-js marks a node that did not acknowledge as Dead: the lock may never have
            # heard the command. It stays uncertain, to be read before it is sent again.
            self._pending.end(key)
            raise RetryLater(f"{lock.external_id} did not acknowledge the command for "
                             f"slot {slot} (node dead); retried once it answers")
        try:
            read = await self._read_slot(lock, slot)
        except mapping.SlotMissing:
            self._settled(lock, slot)
            if pin is None:
                return
            raise CommandRejected(RejectReason.SLOT_OUT_OF_RANGE,
                                  f"slot {slot} does not exist on {lock.external_id} "
                                  "(the lock reports it as not available)") from None
        lock.uncertain.pop(slot, None)
        if holds(read, pin, refused=failed):
            return
        self._pending.end(key)
        if pin is not None and await self._refused_as_duplicate(lock, slot, pin, sent_at):
            # Under Supervision the lock answers Fail; without it (Kwikset, Yale) it takes the
            # command and says so only in a notification, which may not name the slot.
            raise CommandRejected(RejectReason.DUPLICATE_PIN,
                                  f"the lock refused the PIN for slot {slot}: it is already "
                                  "in another slot")
        if failed:
            if lock.went_dead(sent_at):
                raise RetryLater(f"{lock.external_id} stopped answering while slot "
                                 f"{slot} was written")
            raise CommandRejected(RejectReason.OTHER,
                                  f"the lock refused the command for slot {slot} (Fail)")
        what = "is not empty" if pin is None else "holds another code"
        raise RetryLater(f"slot {slot} {what} after the gateway accepted the command")

    async def _refused_as_duplicate(self, lock: Lock, slot: int, pin: str,
                                    since: int) -> bool:
        """Whether the lock refused `pin` in `slot` as a duplicate: its notice came (waiting a
        moment for it), or a slot read earlier holds the PIN and still does."""
        if lock.noticed_duplicate(slot, since):
            return True
        for other, (status, code) in sorted(lock.known.items()):
            if other == slot or code != pin or status in (mapping.STATUS_AVAILABLE,
                                                          mapping.STATUS_NOT_AVAILABLE):
                continue
            try:
                read = await self._read_slot(lock, other)
            except (DriverError, mapping.SlotMissing):
                continue
            if read.state is SlotState.KNOWN and read.pin == pin:
                return True
        return await wait_for_duplicate(lambda: lock.noticed_duplicate(slot, since),
                                        lock.duplicate_seen)

    async def _read_slot(self, lock: Lock, slot: int) -> SlotRead:
        result = await self._api("sendCommand",
                                 mapping.get_code_args(lock.options.node_id, slot))
        try:
            read = mapping.read_from_get(slot, result)
        except mapping.SlotMissing:
            lock.known.pop(slot, None)
            self._slot_missing(lock, slot)
            raise
        except MalformedPayload as exc:
            self._once.warn(("get", lock.external_id), "zwavejs_mqtt %s: %s: an "
                            "unexpected User Code report (%s)", self.name,
                            lock.external_id, exc)
            raise RetryLater(f"unexpected User Code report ({exc})") from exc
        if isinstance(result, dict):
            lock.known[slot] = (result.get("userIdStatus"),
                                mapping.user_code_text(result.get("userCode")))
        return read

    async def _api(self, api: str, args: list[object]) -> object:
        """Call one gateway API and return its `result`, or raise what its failure means."""
        request_id = uuid.uuid4().hex
        call = Call(request_id, asyncio.get_running_loop().create_future())
        calls = self._calls.setdefault(api, [])
        calls.append(call)
        topic = mapping.api_topic(self._prefix, self.options.gateway_name, api) + "/set"
        try:
            answer = await self._request(topic, mapping.api_request(args, request_id),
                                         lambda: call.answer)
        except TimeoutError:
            raise mapping.NoAnswer(f"Z-Wave JS UI did not answer {api} within "
                             f"{self.options.answer_timeout_s:.0f} s") from None
        finally:
            with contextlib.suppress(ValueError):
                calls.remove(call)
            if not call.answer.done():
                call.answer.cancel()
        if not answer.success:
            raise mapping.classify_failure(answer.message)
        return answer.result

    # -- messages -------------------------------------------------------------------------

    def _on_api(self, topic: str, payload: bytes, retained: bool) -> None:
        api = topic.rsplit("/", 1)[-1]
        try:
            answer = mapping.parse_answer(decode_json(payload))
        except MalformedPayload as exc:
            self._once.warn(("api", api), "zwavejs_mqtt %s: ignored a malformed answer on %s "
                            "(%s)", self.name, topic, exc)
            return
        if retained:
            return
        calls = self._calls.get(api, [])
        if answer.request_id is not None:
            match = next((c for c in calls if c.request_id == answer.request_id), None)
        else:
            # A gateway that does not echo `origin`: answers come in call order.
            match = next((c for c in calls if not c.answer.done()), None)
        if match is not None and not match.answer.done():
            match.answer.set_result(answer)

    def _on_gateway_status(self, topic: str, payload: bytes, retained: bool) -> None:
        try:
            up = mapping.gateway_status(decode_json(payload))
        except MalformedPayload:
            up = None
        if up is None:
            self._once.warn(("gateway-status",), "zwavejs_mqtt %s: ignored a malformed gateway "
                            "status on %s (not a status)", self.name, topic)
            return
        if not up:
            self._fail_calls(RetryLater("the Z-Wave JS UI gateway went offline"))
        self._gateway_is(up)

    def _on_driver_status(self, topic: str, payload: bytes, retained: bool) -> None:
        try:
            ready = mapping.gateway_status(decode_json(payload))
        except MalformedPayload:
            ready = None
        if ready:
            self._driver_ready.set()
            self._learn_wakeup.set()

    def _on_node(self, topic: str, payload: bytes, retained: bool) -> None:
        rest = topic[len(self._prefix) + 1:]
        # The longest match: `Garage` and `Garage/Back` may both be nodes.
        matches = [lock for lock in self._locks.values() if rest.startswith(lock.topic + "/")]
        if not matches:
            return
        lock = max(matches, key=lambda candidate: len(candidate.topic))
        parts = mapping.value_parts(self.options.layout, rest[len(lock.topic) + 1:].split("/"))
        try:
            # An empty payload: a RAW notification without event parameters.
            value = decode_json(payload) if payload else None
            if parts == ["status"]:
                status = mapping.node_status(value)
                if status is None:
                    raise MalformedPayload("unknown node status")
                if status is Availability.OFFLINE and not retained:
                    lock.seq += 1
                    lock.dead_at = lock.seq
                lock.status = status
                self._availability_changed()
                return
            code_value = mapping.user_code_value(parts, value)
            if code_value is not None:
                self._on_user_code(lock, code_value)
                return
            note = mapping.notification(parts, value)
            if note is not None and not retained:
                self._on_notification(lock, note)
        except MalformedPayload as exc:
            self._once.warn((lock.external_id, parts[0]), "zwavejs_mqtt %s: ignored a "
                            "malformed message for %s on %s (%s)", self.name,
                            lock.external_id, topic, exc)

    def _on_user_code(self, lock: Lock, value: mapping.UserCodeValue) -> None:
        slot = value.slot
        if value.value is None:
            return  # defined, but the gateway does not know it yet
        before = lock.known.get(slot)
        status, code = before if before is not None else (None, None)
        if value.prop == "userIdStatus":
            status = value.value
        else:
            code = mapping.user_code_text(value.value)
        lock.known[slot] = (status, code)
        key = (lock.external_id, slot)
        if before is None or slot in lock.busy or self._pending.active(key) is not None:
            return
        if (status, code) != before and slot in lock.info.capabilities.slots():
            self._changed_at_lock(lock, slot, {"source": "value"})

    def _on_notification(self, lock: Lock, note: mapping.NodeNotification) -> None:
        external_id = lock.external_id
        if note.kind == "keypad_used":
            self._pump.emit(DriverEvent(DriverEventKind.KEYPAD_USED, external_id,
                                        slot=note.slot, detail=note.detail))
            return
        if note.kind == "duplicate":
            lock.seq += 1
            lock.duplicate_at[note.slot or 0] = lock.seq
            lock.duplicate_seen.set()
            if note.slot is None:
                return
        slots = lock.info.capabilities.slots() if note.slot is None else [note.slot]
        for slot in slots:
            self._changed_at_lock(lock, slot, note.detail)

    # -- learning the nodes ---------------------------------------------------------------

    async def _learn_nodes(self) -> list[str]:
        """One `getNodes`: each configured node's facts (a node whose interview has not yet
        defined its User Code values is asked for its users count); the locks whose
        description changed."""
        nodes = await self._api("getNodes", [])
        changed: list[str] = []
        for lock in self._locks.values():
            facts = mapping.node_facts(nodes, lock.options.node_id)
            if facts is None:
                self._once.warn(("absent", lock.options.node_id), "zwavejs_mqtt %s: node %d is "
                                "not on the Z-Wave network", self.name, lock.options.node_id)
                continue
            if facts.slot_count is None and facts.status is not Availability.OFFLINE:
                # Not interviewed yet (a Dead node is not asked: it would only time out).
                count = await self._users_count(lock)
                # The lock's answer says nothing of slots it lacks: keep those known before.
                facts = replace(facts, slot_count=count, missing_slots=tuple(
                    s for s in lock.facts.missing_slots if count is not None and s <= count))
            # Without a users count the node is asked again later (after its interview).
            lock.learned = facts.slot_count is not None
            if facts.slot_count is None:
                facts = replace(facts, slot_count=lock.facts.slot_count,
                                missing_slots=lock.facts.missing_slots)
            lock.facts = facts
            if lock.status is None:
                lock.status = facts.status
            lock.topic = self._node_topic(lock.options, facts)
            if self._describe(lock):
                changed.append(lock.external_id)
        self._remember()
        return changed

    async def _users_count(self, lock: Lock) -> int | None:
        try:
            return mapping.users_count(await self._api(
                "sendCommand", mapping.users_count_args(lock.options.node_id)))
        except DriverError as exc:
            _LOG.info("zwavejs_mqtt %s: %s did not tell its users count (%s)", self.name,
                      lock.external_id, exc)
            return None

    async def _learn_loop(self) -> None:
        pause = _RELEARN_S
        while not all(lock.learned for lock in self._locks.values()):
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(pause):
                    await self._learn_wakeup.wait()
            self._learn_wakeup.clear()
            pause = min(pause * 2, _RELEARN_MAX_S)
            if not self._link.connected:
                continue
            try:
                changed = await self._learn_nodes()
            except (DriverError, MalformedPayload) as exc:
                _LOG.debug("zwavejs_mqtt %s: getNodes failed (%s)", self.name, exc)
                continue
            _LOG.info("zwavejs_mqtt %s: nodes listed by the gateway", self.name)
            self._availability_changed()
            for external_id in changed:
                self._pump.emit(DriverEvent(DriverEventKind.DEVICES_CHANGED, external_id))

    def _learn_users_count(self, lock: Lock, count: int | None) -> None:
        """The gateway named the lock's users count in a refusal."""
        if count is not None and count != lock.facts.slot_count:
            lock.learn_users_count(count)
            self._changed(lock)

    def _slot_missing(self, lock: Lock, slot: int) -> None:
        """The lock reported `slot` as not available: reserve it."""
        if slot in lock.facts.missing_slots:
            return
        _LOG.info("zwavejs_mqtt %s: %s has no slot %d (status not available); not used",
                  self.name, lock.external_id, slot)
        lock.facts = replace(lock.facts, missing_slots=tuple(sorted(
            {*lock.facts.missing_slots, slot})))
        self._changed(lock)

    def _changed(self, lock: Lock) -> None:
        self._remember()
        if self._describe(lock):
            self._pump.emit(DriverEvent(DriverEventKind.DEVICES_CHANGED,
                                        lock.external_id))

    def _describe(self, lock: Lock) -> bool:
        """Rebuild the lock's DeviceInfo from its facts; True if it changed."""
        info = self._info(lock.options, lock.facts)
        if info == lock.info:
            return False
        lock.info = info
        return True

    def _node_topic(self, options: LockOptions, facts: mapping.NodeFacts) -> str:
        return options.topic or mapping.node_topic(self.options.layout, options.node_id,
                                                   facts.name, facts.location)

    # -- helpers --------------------------------------------------------------------------

    def _fail_calls(self, error: DriverError) -> None:
        for calls in self._calls.values():
            for call in calls:
                if not call.answer.done():
                    call.answer.set_exception(error)

    def _remember(self) -> None:
        self._save_memory(locks.memory(list(self._locks.values())))

    def _info(self, options: LockOptions, facts: mapping.NodeFacts) -> DeviceInfo:
        hub = f"zwavejs:{self._prefix}/{self.options.gateway_name}"
        return locks.node_info(options, facts, hub, self.options.command_spacing_s)
