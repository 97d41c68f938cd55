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
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

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
from drivers.zwave_usercode import holds, noticed_duplicate, wait_for_duplicate
from drivers.zwavejs_mqtt import mapping

_LOG = logging.getLogger(__name__)
# Z-Wave JS UI's own name in its MQTT settings ("Name"); its client is ZWAVE_GATEWAY-<name>.
DEFAULT_GATEWAY_NAME = "zwave-js-ui"
_DEFAULT_SLOTS = 30
# Levels a node's topic may have when it is not configured: `<name>` or `<loc>/<name>`, and one
# more for a `/` inside a name or location (the gateway keeps it).
_NODE_LEVELS = (1, 2, 3)
# Seconds between getNodes attempts while a node is not yet listed (a message may be missed),
# doubling up to the cap: a node id that is not on the network must not cost a getNodes (all
# nodes, all values) every minute for ever.
_RELEARN_S = 60.0
_RELEARN_MAX_S = 3600.0


@dataclass(frozen=True, slots=True)
class LockOptions:
    """One lock node from the configuration; None means "as discovered"."""

    node_id: int
    external_id: str
    # The node's topic under the prefix; None: as the gateway's layout makes it from getNodes.
    topic: str | None = None
    display_name: str | None = None
    slot_count: int | None = None
    reserved_slots: tuple[int, ...] = ()
    masks_pins: bool = False
    min_length: int | None = None
    max_length: int | None = None
    time_zone: str | None = None


@dataclass(frozen=True, slots=True)
class Options:
    """The driver's settings."""

    prefix: str = "zwave"
    gateway_name: str = DEFAULT_GATEWAY_NAME
    layout: mapping.TopicLayout = field(default_factory=mapping.TopicLayout)
    locks: tuple[LockOptions, ...] = ()
    answer_timeout_s: float = 30.0
    startup_wait_s: float = 10.0
    confirmation_window_s: float = 10.0
    command_spacing_s: float = 2.0
    # Where what getNodes said of each lock is remembered between runs.
    memory_file: Path | None = None


@dataclass(slots=True)
class _Call:
    request_id: str
    answer: asyncio.Future[mapping.ApiAnswer]


@dataclass(slots=True)
class _Lock:
    options: LockOptions
    info: DeviceInfo
    facts: mapping.NodeFacts = field(default_factory=mapping.NodeFacts)
    status: Availability | None = None
    op_lock: asyncio.Lock = field(default_factory=asyncio.Lock)
    busy: set[int] = field(default_factory=set)
    # Commands sent whose outcome we never learned: slot -> PIN (None for a clear).
    uncertain: dict[int, str | None] = field(default_factory=dict)
    # The last (userIdStatus, userCode) seen per slot, from reads and value topics.
    known: dict[int, tuple[object, object]] = field(default_factory=dict)
    # Counts what the lock said, so a command can tell what came after it was sent: the lock's
    # "new user code not added: duplicate" notices (per slot; 0 for a notice naming no slot)
    # and the node's reports of being Dead (a Fail after one was a NoAck, not a refusal).
    seq: int = 0
    duplicate_at: dict[int, int] = field(default_factory=dict)
    duplicate_seen: asyncio.Event = field(default_factory=asyncio.Event)
    dead_at: int = -1
    # getNodes answered for this node (its slots, name and location are known).
    learned: bool = False
    # The node's topic under the prefix: as configured, or as the layout makes it from getNodes.
    topic: str = ""


class ZwaveJsMqttDriver:
    """Lock nodes behind one Z-Wave JS UI gateway (one prefix and gateway name)."""

    def __init__(self, name: str, options: Options, clock: Clock, link: MqttLink) -> None:
        self.name = name
        self.options = options
        self._clock = clock
        self._link = link
        self._prefix = options.prefix.rstrip("/")
        self._pump = EventPump(f"zwavejs_mqtt {name}")
        self._once = LogOnce(_LOG)
        self._pending = PendingWrites(clock, options.confirmation_window_s)
        self._calls: dict[str, list[_Call]] = {}
        self._gateway_up: bool | None = None
        self._started = False
        self._last_availability: dict[str, Availability] = {}
        self._locks: dict[str, _Lock] = {}
        self._driver_ready = asyncio.Event()
        self._learn_wakeup = asyncio.Event()
        self._learning: asyncio.Task[None] | None = None
        remembered = _recall(options.memory_file)
        for lock_options in options.locks:
            facts = remembered.get(lock_options.node_id, mapping.NodeFacts())
            lock = _Lock(lock_options, self._info(lock_options, facts), facts=facts)
            lock.topic = self._node_topic(lock_options, facts)
            self._locks[lock_options.external_id] = lock
        api_base = mapping.api_topic(self._prefix, options.gateway_name, "+")
        link.subscribe(api_base, self._on_api)
        link.subscribe(mapping.gateway_status_topic(self._prefix, options.gateway_name),
                       self._on_gateway_status)
        link.subscribe(f"{self._prefix}/driver/status", self._on_driver_status)
        # Node names and locations are known only once getNodes answers, so every node topic
        # the layout can make is subscribed (only status, User Code and notification topics).
        wildcards = _NODE_LEVELS if any(lock.options.topic is None
                                        for lock in self._locks.values()) else ()
        for levels in wildcards:
            node = "/".join([self._prefix] + ["+"] * levels)
            for topic_filter in mapping.node_filters(node, options.layout):
                link.subscribe(topic_filter, self._on_node)
        for lock in self._locks.values():
            # A configured topic the wildcards already match is not subscribed twice (each
            # matching subscription would hand the message over again).
            if lock.options.topic is not None \
                    and lock.options.topic.count("/") + 1 not in wildcards:
                node = f"{self._prefix}/{lock.options.topic}"
                for topic_filter in mapping.node_filters(node, options.layout):
                    link.subscribe(topic_filter, self._on_node)
        link.add_listener(self._on_link)

    # -- LockDriver -----------------------------------------------------------------------

    async def start(self, sink: DriverEventSink) -> None:
        """Connect, learn each configured node's facts (`getNodes`; while the gateway still
        boots, until `startup_wait_s` ends and later in the background), begin reporting."""
        self._pump.start(sink)
        await self._link.start()
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
        self._started = True
        for external_id in self._locks:
            self._last_availability[external_id] = self.availability(external_id)
        _LOG.info("zwavejs_mqtt %s: %d locks (%s)", self.name, len(self._locks),
                  ", ".join(sorted(self._locks)) or "none")
        self._learn_later()

    async def stop(self) -> None:
        """Disconnect and release everything; safe to call twice."""
        learning, self._learning = self._learning, None
        if learning is not None:
            learning.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await learning
        await self._link.stop()
        await self._pump.stop()
        self._fail_calls(LinkDown("driver stopped"))

    def devices(self) -> Sequence[DeviceInfo]:
        """The configured lock nodes."""
        return [lock.info for lock in self._locks.values()]

    def availability(self, external_id: str) -> Availability:
        """Broker unreachable: disconnected; the gateway offline: hub disconnected; a dead
        node: offline."""
        lock = self._locks.get(external_id)
        if lock is None:
            return Availability.REMOVED
        if not self._link.connected:
            return Availability.DISCONNECTED
        if self._gateway_up is False:
            return Availability.HUB_DISCONNECTED
        if lock.status is Availability.OFFLINE:
            return Availability.OFFLINE
        return Availability.ONLINE

    async def read_slots(self, external_id: str, slots: Sequence[int]) -> list[SlotRead]:
        """User Code `get` for each slot, answered by the lock itself."""
        lock = self._lock(external_id)
        reads = []
        for slot in slots:
            self._check_slot(lock, slot)
            async with lock.op_lock:
                lock.busy.add(slot)
                try:
                    reads.append(await self._read_slot(lock, slot))
                except mapping.SlotMissing:
                    # Not available (254): no code can be there; the slot is reserved from now.
                    reads.append(SlotRead(slot=slot, state=SlotState.EMPTY))
                finally:
                    lock.busy.discard(slot)
        return reads

    async def list_codes(self, external_id: str) -> list[SlotRead]:
        """Every occupied slot, one `get` each: costly on a battery lock, called rarely."""
        lock = self._lock(external_id)
        slots = [s for s in lock.info.capabilities.slots() if s not in lock.facts.missing_slots]
        reads = await self.read_slots(external_id, slots)
        return [r for r in reads if r.state is not SlotState.EMPTY]

    async def write_code(self, external_id: str, code: CodeWrite) -> WriteResult:
        """`writeValue` userCode for one slot, then read the slot back from the lock."""
        lock = self._lock(external_id)
        if code.slot is None:
            raise CommandRejected(RejectReason.UNSUPPORTED, "Z-Wave locks need a slot number")
        slot = self._check_slot(lock, code.slot)
        if slot in lock.facts.missing_slots:
            raise CommandRejected(RejectReason.SLOT_OUT_OF_RANGE,
                                  f"slot {slot} does not exist on {external_id} (the lock "
                                  "reports it as not available)")
        pin = checked_pin(code.pin)
        async with lock.op_lock:
            lock.busy.add(slot)
            try:
                if lock.uncertain.get(slot, "") == pin and await self._already(lock, slot, pin):
                    return WriteResult(slot=slot, pin=pin)
                await self._send(lock, slot, pin,
                                 mapping.write_code_args(lock.options.node_id, slot, pin))
            finally:
                lock.busy.discard(slot)
        return WriteResult(slot=slot, pin=pin)

    async def clear_code(self, external_id: str, slot: int) -> None:
        """Free exactly one slot (userIdStatus 0), then read it back; never the CC's `clear`."""
        lock = self._lock(external_id)
        slot = self._check_slot(lock, slot)
        async with lock.op_lock:
            lock.busy.add(slot)
            try:
                if slot in lock.uncertain and lock.uncertain[slot] is None \
                        and await self._already(lock, slot, None):
                    return
                await self._send(lock, slot, None,
                                 mapping.clear_code_args(lock.options.node_id, slot))
            finally:
                lock.busy.discard(slot)

    async def probe(self, external_id: str) -> bool:
        """`pingNode`: True if the node answers."""
        lock = self._locks.get(external_id)
        if lock is None or not self._link.connected or self._gateway_up is False:
            return False
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

    # -- commands -------------------------------------------------------------------------

    async def _send(self, lock: _Lock, slot: int, pin: str | None, args: list[object]) -> None:
        key = (lock.options.external_id, slot)
        sent_at = lock.seq
        lock.duplicate_seen.clear()
        self._pending.begin(key, pin)
        lock.uncertain[slot] = pin
        try:
            result = await self._api("writeValue", args)
            answer = mapping.check_write(result)
        except LinkDown as exc:
            if not exc.maybe_sent:
                lock.uncertain.pop(slot, None)
                self._pending.end(key)
            raise
        except CommandRejected as exc:
            lock.uncertain.pop(slot, None)
            self._pending.end(key)
            if exc.reason is RejectReason.SLOT_OUT_OF_RANGE:
                self._learn_users_count(lock, mapping.supported_users(result))
            raise
        except MalformedPayload as exc:
            raise RetryLater(f"unexpected answer to writeValue ({exc})") from exc
        failed = answer is mapping.WriteAnswer.FAILED
        if failed and self._went_dead(lock, sent_at):
            # zwave-js marks a node that did not acknowledge as Dead: the lock may never have
            # heard the command. It stays uncertain, to be read before it is sent again.
            self._pending.end(key)
            raise RetryLater(f"{lock.options.external_id} did not acknowledge the command for "
                             f"slot {slot} (node dead); retried once it answers")
        try:
            read = await self._read_slot(lock, slot)
        except mapping.SlotMissing:
            lock.uncertain.pop(slot, None)
            self._pending.end(key)
            if pin is None:
                return
            raise CommandRejected(RejectReason.SLOT_OUT_OF_RANGE,
                                  f"slot {slot} does not exist on {lock.options.external_id} "
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
            if self._went_dead(lock, sent_at):
                raise RetryLater(f"{lock.options.external_id} stopped answering while slot "
                                 f"{slot} was written")
            raise CommandRejected(RejectReason.OTHER,
                                  f"the lock refused the command for slot {slot} (Fail)")
        what = "is not empty" if pin is None else "holds another code"
        raise RetryLater(f"slot {slot} {what} after the gateway accepted the command")

    def _went_dead(self, lock: _Lock, since: int) -> bool:
        """Whether the node was reported Dead after `since` (a lock.seq), or is Dead now."""
        return lock.dead_at > since or lock.status is Availability.OFFLINE

    async def _refused_as_duplicate(self, lock: _Lock, slot: int, pin: str,
                                    since: int) -> bool:
        """Whether the lock refused `pin` in `slot` as a duplicate: its notice came (waiting a
        moment for it), or a slot read earlier holds the PIN and still does."""
        if self._noticed_duplicate(lock, slot, since):
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
        return await wait_for_duplicate(lambda: self._noticed_duplicate(lock, slot, since),
                                        lock.duplicate_seen)

    @staticmethod
    def _noticed_duplicate(lock: _Lock, slot: int, since: int) -> bool:
        return noticed_duplicate(lock.duplicate_at, slot, since)

    async def _already(self, lock: _Lock, slot: int, pin: str | None) -> bool:
        """Before resending a command whose outcome was lost: does the slot show it already?"""
        try:
            read = await self._read_slot(lock, slot)
        except mapping.SlotMissing:
            return pin is None
        if read.state is not SlotState.UNREADABLE and shows(read, pin):
            lock.uncertain.pop(slot, None)
            _LOG.info("zwavejs_mqtt %s: %s slot %d already done; not sent again", self.name,
                      lock.options.external_id, slot)
            return True
        return False

    async def _read_slot(self, lock: _Lock, slot: int) -> SlotRead:
        result = await self._api("sendCommand",
                                 mapping.get_code_args(lock.options.node_id, slot))
        try:
            read = mapping.read_from_get(slot, result)
        except mapping.SlotMissing:
            lock.known.pop(slot, None)
            self._slot_missing(lock, slot)
            raise
        except MalformedPayload as exc:
            self._once.warn(("get", lock.options.external_id), "zwavejs_mqtt %s: %s: an "
                            "unexpected User Code report (%s)", self.name,
                            lock.options.external_id, exc)
            raise RetryLater(f"unexpected User Code report ({exc})") from exc
        if isinstance(result, dict):
            lock.known[slot] = (result.get("userIdStatus"),
                                mapping.user_code_text(result.get("userCode")))
        return read

    async def _api(self, api: str, args: list[object]) -> object:
        """Call one gateway API and return its `result`, or raise what its failure means."""
        request_id = uuid.uuid4().hex
        call = _Call(request_id, asyncio.get_running_loop().create_future())
        calls = self._calls.setdefault(api, [])
        calls.append(call)
        topic = mapping.api_topic(self._prefix, self.options.gateway_name, api) + "/set"
        try:
            await self._link.publish(topic, mapping.api_request(args, request_id))
            async with asyncio.timeout(self.options.answer_timeout_s):
                answer = await call.answer
        except TimeoutError:
            raise RetryLater(f"Z-Wave JS UI did not answer {api} within "
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
        self._gateway_up = up
        if not up:
            self._fail_calls(RetryLater("the Z-Wave JS UI gateway went offline"))
        self._availability_changed()

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
            self._once.warn((lock.options.external_id, parts[0]), "zwavejs_mqtt %s: ignored a "
                            "malformed message for %s on %s (%s)", self.name,
                            lock.options.external_id, topic, exc)

    def _on_user_code(self, lock: _Lock, value: mapping.UserCodeValue) -> None:
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
        key = (lock.options.external_id, slot)
        if before is None or slot in lock.busy or self._pending.active(key) is not None:
            return
        if (status, code) != before and slot in lock.info.capabilities.slots():
            self._pump.emit(DriverEvent(DriverEventKind.SLOT_CHANGED, lock.options.external_id,
                                        slot=slot, detail={"source": "value"}))

    def _on_notification(self, lock: _Lock, note: mapping.NodeNotification) -> None:
        external_id = lock.options.external_id
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
            self._pending.end((external_id, slot))
            self._pump.emit(DriverEvent(DriverEventKind.SLOT_CHANGED, external_id, slot=slot,
                                        detail=note.detail))

    def _on_link(self, up: bool) -> None:
        if not up:
            self._gateway_up = None
            self._fail_calls(LinkDown("the MQTT broker connection was lost", maybe_sent=True))
        else:
            self._learn_wakeup.set()
        self._availability_changed()

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
                changed.append(lock.options.external_id)
        self._remember()
        return changed

    async def _users_count(self, lock: _Lock) -> int | None:
        try:
            return mapping.users_count(await self._api(
                "sendCommand", mapping.users_count_args(lock.options.node_id)))
        except DriverError as exc:
            _LOG.info("zwavejs_mqtt %s: %s did not tell its users count (%s)", self.name,
                      lock.options.external_id, exc)
            return None

    def _learn_later(self) -> None:
        """Until getNodes answered for every node: ask again when the gateway's Z-Wave driver
        is ready or the broker comes back."""
        if self._learning is None and not all(lock.learned for lock in self._locks.values()):
            self._learning = asyncio.create_task(self._learn_loop(),
                                                 name=f"zwavejs_mqtt:{self.name}:nodes")

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

    def _learn_users_count(self, lock: _Lock, count: int | None) -> None:
        """The gateway named the lock's users count in a refusal."""
        if count is None or count == lock.facts.slot_count:
            return
        lock.facts = replace(lock.facts, slot_count=count, missing_slots=tuple(
            s for s in lock.facts.missing_slots if s <= count))
        self._changed(lock)

    def _slot_missing(self, lock: _Lock, slot: int) -> None:
        """The lock reported `slot` as not available: reserve it."""
        if slot in lock.facts.missing_slots:
            return
        _LOG.info("zwavejs_mqtt %s: %s has no slot %d (status not available); not used",
                  self.name, lock.options.external_id, slot)
        lock.facts = replace(lock.facts, missing_slots=tuple(sorted(
            {*lock.facts.missing_slots, slot})))
        self._changed(lock)

    def _changed(self, lock: _Lock) -> None:
        self._remember()
        if self._describe(lock):
            self._pump.emit(DriverEvent(DriverEventKind.DEVICES_CHANGED,
                                        lock.options.external_id))

    def _describe(self, lock: _Lock) -> bool:
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

    def _availability_changed(self) -> None:
        if not self._started:
            return
        for external_id in self._locks:
            now = self.availability(external_id)
            if self._last_availability.get(external_id) is not now:
                self._last_availability[external_id] = now
                self._pump.availability(external_id, now)

    def _fail_calls(self, error: DriverError) -> None:
        for calls in self._calls.values():
            for call in calls:
                if not call.answer.done():
                    call.answer.set_exception(error)

    def _remember(self) -> None:
        nodes: dict[str, object] = {}
        for lock in self._locks.values():
            facts = {k: list(v) if isinstance(v, tuple) else v
                     for k, v in asdict(lock.facts).items() if k != "status"}
            nodes[str(lock.options.node_id)] = facts
        save_memory(self.options.memory_file, {"nodes": nodes})

    def _info(self, options: LockOptions, facts: mapping.NodeFacts) -> DeviceInfo:
        slot_count = options.slot_count or facts.slot_count or _DEFAULT_SLOTS
        # Slots the lock reports as not available are reserved: no code can go there.
        reserved = {*options.reserved_slots, *(s for s in facts.missing_slots
                                               if s <= slot_count)}
        caps = LockCapabilities(
            addressing=Addressing.SLOT, first_slot=1, slot_count=slot_count,
            reserved_slots=frozenset(reserved), can_read=True,
            masks_pins_on_read=options.masks_pins,
            # Writes are confirmed by a fresh read from the lock before write_code returns.
            confirmation_window_s=0.0, name_max_length=16,
            min_command_spacing_s=self.options.command_spacing_s)
        min_length = options.min_length or facts.min_length or 4
        max_length = options.max_length or facts.max_length or max(10, min_length)
        return DeviceInfo(
            external_id=options.external_id,
            display_name=options.display_name or facts.name or f"Z-Wave node {options.node_id}",
            manufacturer=facts.manufacturer or "Z-Wave", model=facts.product or "Z-Wave lock",
            device_type="zwave_lock", capabilities=caps,
            constraints=PinConstraints(min_length=min_length, max_length=max_length),
            hub_id=f"zwavejs:{self._prefix}/{self.options.gateway_name}",
            time_zone=options.time_zone)

    def _lock(self, external_id: str) -> _Lock:
        lock = self._locks.get(external_id)
        if lock is None:
            raise FixConfig(f"no Z-Wave lock {external_id!r}")
        return lock

    def _check_slot(self, lock: _Lock, slot: int) -> int:
        caps = lock.info.capabilities
        if slot < 1 or slot not in caps.slots():
            raise CommandRejected(RejectReason.SLOT_OUT_OF_RANGE,
                                  f"slot {slot} does not exist on {lock.options.external_id} "
                                  f"(slots {caps.first_slot}.."
                                  f"{caps.first_slot + caps.slot_count - 1})")
        return slot



def _recall(path: Path | None) -> dict[int, mapping.NodeFacts]:
    """Node facts saved by an earlier run."""
    nodes = load_memory(path).get("nodes")
    if not isinstance(nodes, dict):
        return {}
    recalled: dict[int, mapping.NodeFacts] = {}
    for key, facts in nodes.items():
        if not str(key).isdigit() or not isinstance(facts, dict):
            continue
        fields = {name: facts.get(name) for name in ("manufacturer", "product", "slot_count",
                                                    "min_length", "max_length", "name",
                                                    "location")}
        text_ok = all(v is None or isinstance(v, str)
                      for v in (fields["manufacturer"], fields["product"], fields["name"],
                                fields["location"]))
        numbers_ok = all(_positive(v) for v in (fields["slot_count"], fields["min_length"],
                                                 fields["max_length"]) if v is not None)
        missing = facts.get("missing_slots", [])
        if not isinstance(missing, list) or not all(_positive(v) for v in missing):
            missing = []
        if text_ok and numbers_ok:
            recalled[int(key)] = mapping.NodeFacts(**fields, missing_slots=tuple(missing))
    return recalled


def _positive(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value > 0
