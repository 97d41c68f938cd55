"""The Z-Wave driver: locks behind a zwave-js-server websocket, via zwave-js-server-python.

One `ZWaveDriver` is one server (one Z-Wave network). A `ReconnectSupervisor` keeps the
websocket up; each session attaches to the server's node models, and the library's callbacks
only record what changed and queue events; one dispatcher task hands them to the engine.

Library errors are converted at one boundary (`_call`) into the bridge's driver errors.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import re
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, TypeVar, cast

import aiohttp
from zwave_js_server.client import Client
from zwave_js_server.const import CommandClass
from zwave_js_server.exceptions import (
    BaseZwaveJSServerError,
    CannotConnect,
    FailedCommand,
    FailedZWaveCommand,
    InvalidServerVersion,
    NotFoundError,
)
from zwave_js_server.model.node import Node

from bridge.clock import Clock
from bridge.driver import (
    Availability,
    CodeWrite,
    CommandRejected,
    DeviceInfo,
    DriverError,
    DriverEvent,
    DriverEventKind,
    DriverEventSink,
    FixConfig,
    Reauthenticate,
    RejectReason,
    RetryLater,
    SlotRead,
    SlotState,
    WriteResult,
)
from bridge.reconnect import Backoff, FailureKind, LinkState, ReconnectSupervisor
from drivers import zwave_usercode as usercode
from drivers.events import EventPump
from drivers.memory import save_memory
from drivers.tasks import cancel_and_wait
from drivers.zwave import mapping
from drivers.zwave.config import Config
from drivers.zwave.mapping import (
    CC_CLOCK,
    CC_SCHEDULE_ENTRY_LOCK,
    CC_TIME_PARAMETERS,
    CC_USER_CODE,
    LockSignal,
    LockSnapshot,
    NodeSettings,
    NodeState,
    SignalKind,
    SlotValue,
)

_LOG = logging.getLogger(__name__)
_T = TypeVar("_T")

_NODE_EVENTS = ("dead", "alive", "sleep", "wake up", "interview started", "interview completed",
                "interview failed", "ready", "value added", "value updated", "notification")
_EVENT_QUEUE = 1000
# One announcement can arrive twice (as a Notification event and as legacy Alarm values).
_SAME_SIGNAL_S = 2.0
# How long after a write the lock confirmed by Supervision alone a duplicate notice is still
# taken as being about it: the confirmation window a write on a lock needs, about 60 s.
_LATE_DUPLICATE_S = 60.0
_CACHE_VERSION = 1


class _NoReport(RetryLater):
    """The lock sent no User Code Report for one slot (zwave-js gave up waiting for it)."""


@dataclass(slots=True)
class _Lock:
    """What the driver keeps about one lock node."""

    node_id: int
    snapshot: LockSnapshot | None = None
    info: DeviceInfo | None = None
    year_day_slots: int | None = None
    node: Node | None = None
    removed: bool = False
    availability: Availability = Availability.HUB_DISCONNECTED
    # What the lock last told us per slot, and which of those came from it in this session.
    known: dict[int, SlotValue] = field(default_factory=dict)
    fresh: set[int] = field(default_factory=set)
    busy: dict[int, int] = field(default_factory=dict)
    # The lock's duplicate notices by the slot they name (0: none), numbered by `seq`, so a
    # write tells those that came after it was sent.
    seq: int = 0
    duplicates: dict[int, int] = field(default_factory=dict)
    # Slots whose last command the lock confirmed by Supervision alone (no read back), with when
    # (monotonic): zwave-js's value cache does not have them (it learns a slot only from a
    # report), and a duplicate notice after such a write means the lock refused it after all.
    supervised_unread: dict[int, float] = field(default_factory=dict)
    # The lock answered Success to a write it then refused: its Success confirms nothing more.
    success_doubted: bool = False
    # Slots the lock reported "status not available" (254) in this run: they do not exist.
    missing: set[int] = field(default_factory=set)
    checksum_supported: bool | None = None
    # Whether the lock answers User Code v2's multi-code read (Extended User Code Get with
    # Report More); None until asked of zwave-js (its interview learned it; no frame is sent).
    multi_report: bool | None = None
    # Multi-code reads under way: the slots they report are not known in advance, so their
    # value events are nobody's news while one runs.
    bulk_reads: int = 0
    last_signal: tuple[LockSignal, float] | None = None
    clock_synced: tuple[float, int] | None = None
    ready: asyncio.Event = field(default_factory=asyncio.Event)
    duplicate_seen: asyncio.Event = field(default_factory=asyncio.Event)
    guard: asyncio.Lock = field(default_factory=asyncio.Lock)
    unsubscribe: list[Callable[[], None]] = field(default_factory=list)


class ZWaveDriver:
    """Z-Wave locks (nodes with the User Code CC) behind one zwave-js-server."""

    def __init__(self, config: Config, clock: Clock, state_dir: Path) -> None:
        self.name = config.name
        self._config = config
        self._clock = clock
        self._cache_file = state_dir / f"zwave-{_safe(config.name)}.json" \
            if config.remember_locks else None
        self._locks: dict[int, _Lock] = {}
        self._home_id: int | None = None
        self._client: Client | None = None
        self._http: aiohttp.ClientSession | None = None
        self._events = EventPump(f"zwave {config.name}", maxsize=_EVENT_QUEUE)
        self._tasks: list[asyncio.Task[None]] = []
        self._synced = asyncio.Event()
        self._attempt_failed = asyncio.Event()
        self._dirty: set[int] = set()
        self._wake = asyncio.Event()
        self._session_unsubscribe: list[Callable[[], None]] = []
        # Nodes still being interviewed whose command classes are not known yet: maybe locks.
        self._unknown: dict[int, asyncio.Event] = {}
        self._supervisor = ReconnectSupervisor(
            f"zwave {config.name} ({config.url})", clock, self._session,
            classify=_classify, backoff=Backoff(config.reconnect_min_s, config.reconnect_max_s),
            on_state=self._on_link_state,
        )
        _guard_library_logs()

    # -- LockDriver -------------------------------------------------------------------------

    async def start(self, sink: DriverEventSink) -> None:
        """Connect, discover locks (waiting for their own ready events), and report events."""
        self._events.start(sink)
        self._load_cache()
        self._http = aiohttp.ClientSession()
        self._tasks.append(asyncio.create_task(self._supervisor.run(),
                                               name=f"zwave:{self.name}:link"))
        synced = asyncio.ensure_future(self._synced.wait())
        failed = asyncio.ensure_future(self._attempt_failed.wait())
        try:
            await asyncio.wait({synced, failed}, timeout=self._config.start_timeout_s,
                               return_when=asyncio.FIRST_COMPLETED)
        finally:
            for waiter in (synced, failed):
                await cancel_and_wait(waiter)
        if not self._synced.is_set():
            _LOG.warning("zwave %s: zwave-js-server at %s is not ready yet; %d locks known from "
                         "the last run, reported as hub_disconnected until it is", self.name,
                         self._config.url, len(self.devices()))

    async def stop(self) -> None:
        """Disconnect and cancel everything; safe to call twice."""
        tasks, self._tasks = self._tasks, []
        for task in reversed(tasks):
            with contextlib.suppress(Exception):
                await cancel_and_wait(task)
        if self._http is not None:
            await self._http.close()
            self._http = None
        await self._events.stop()

    def devices(self) -> Sequence[DeviceInfo]:
        """Locks known now (including, while the server is away, those of the last run)."""
        return [lock.info for _, lock in sorted(self._locks.items()) if lock.info is not None]

    def availability(self, external_id: str) -> Availability:
        """Last known availability of one lock."""
        lock = self._find(external_id)
        return lock.availability if lock is not None else Availability.REMOVED

    async def read_slots(self, external_id: str, slots: Sequence[int]) -> list[SlotRead]:
        """Read each slot fresh from the lock (User Code Get, or several a frame where the lock
        has User Code v2's multi-code read), never from zwave-js's cache; a slot the lock does
        not report is unreadable while the others are read (RetryLater when none answers)."""
        lock, info = self._lock(external_id)
        node = self._node(lock)
        reads: list[SlotRead] = []
        silent: list[int] = []
        async with lock.guard:
            valid = sorted({slot for slot in slots
                            if isinstance(slot, int) and slot in info.capabilities.slots()})
            in_bulk: set[int] = set()
            if len(valid) > 1 and await self._multi_report(lock, node):
                # Several codes a frame; what the lock does not answer in bulk is read alone.
                _, left = await self._read_in_bulk(lock, node, valid)
                in_bulk = set(valid).difference(left)
            for slot in slots:
                if not isinstance(slot, int) or slot not in info.capabilities.slots():
                    reads.append(mapping.slot_read(slot, SlotValue()))
                    continue
                try:
                    value = lock.known[slot] if slot in in_bulk \
                        else await self._get_slot(lock, node, slot)
                except _NoReport:
                    # Unknown, never empty; the other slots are still read.
                    silent.append(slot)
                    reads.append(SlotRead(slot=slot, state=SlotState.UNREADABLE,
                                          reason="no answer"))
                    continue
                try:
                    reads.append(mapping.slot_read(slot, value))
                except usercode.SlotMissing:
                    # No code can be there (`_get_slot` reserved it).
                    reads.append(SlotRead(slot=slot, state=SlotState.EMPTY))
        if silent and len(silent) == len(reads):
            raise RetryLater(f"no answer to reading slot {', '.join(map(str, silent))}")
        return reads

    async def codes_unchanged(self, external_id: str) -> bool | None:
        """Whether the lock still holds exactly what this session last saw, from its User Code
        checksum: one frame instead of one User Code Get per slot. None when the lock keeps
        no checksum (or it is switched off): the engine then reads it seldom and relies on the
        lock's own reports of keypad changes."""
        lock, info = self._lock(external_id)
        node = self._node(lock)
        snap = lock.snapshot
        if not self._config.use_checksum or lock.checksum_supported is False or snap is None \
                or snap.cc_versions.get(CC_USER_CODE, 1) < 2:
            return None
        async with lock.guard:
            agrees = await self._checksum_agrees(lock, node)
            if agrees:
                # What is known of every slot is what the lock holds: `list_codes` answers
                # from it without asking the checksum again.
                lock.fresh.update(info.capabilities.slots())
        return agrees if lock.checksum_supported else None

    async def list_codes(self, external_id: str) -> list[SlotRead]:
        """Every occupied slot: from the cache when the lock's checksum agrees, else read.

        Only the lock's own slots are read (its count of users, from zwave-js's interview);
        a lock with User Code v2's multi-code read is read several codes a frame, skipping
        the empty slots it points past. Slots read earlier in this session are not read
        again, so a walk cut short by the engine's timeout resumes where it stopped, and one
        after the engine read the managed slots first costs no extra frame. When every slot
        is known in this session (a checksum that just agreed) nothing is sent.
        """
        lock, info = self._lock(external_id)
        node = self._node(lock)
        slots = info.capabilities.slots()
        async with lock.guard:
            unread = [slot for slot in slots if slot not in lock.fresh]
            if not unread:
                pass  # all known in this session: nothing to ask the lock
            elif await self._checksum_agrees(lock, node):
                lock.fresh.update(slots)
            else:
                frames = await self._read_fresh(lock, node, unread)
                _LOG.info("zwave %s: read %d slots of node %d in %d frames", self.name,
                          len(unread), lock.node_id, frames)
            return [mapping.slot_read(slot, value) for slot, value in sorted(lock.known.items())
                    if value.occupied and slot in slots]

    async def write_code(self, external_id: str, code: CodeWrite) -> WriteResult:
        """Set one code (and its schedule); set once the lock's Supervision Report says Success,
        else once a read of the slot shows it.

        A Supervision Fail is not by itself a refusal: the read back and the lock's duplicate
        notice judge it (a lock that does not answer at all is RetryLater, from zwave-js)."""
        lock, info = self._lock(external_id)
        slot = mapping.check_slot(code.slot, info.capabilities)
        pin = mapping.check_pin(code.pin, info.constraints)
        if slot in lock.missing:
            raise _no_such_slot(slot)
        if code.window is not None and not info.capabilities.native_schedules:
            raise CommandRejected(RejectReason.UNSUPPORTED,
                                  "this lock keeps no schedules (Schedule Entry Lock CC)")
        for other, value in lock.known.items():
            if other != slot and other in lock.fresh and value.occupied and value.code == pin:
                raise CommandRejected(RejectReason.DUPLICATE_PIN,
                                      f"slot {other} of the lock already holds this PIN")
        node = self._node(lock)
        async with lock.guard, self._operating(lock, slot):
            sent_at = lock.seq
            lock.duplicate_seen.clear()
            if info.capabilities.native_schedules:
                await self._put_schedule(lock, node, slot, code)
            result = await self._call(node.async_invoke_cc_api(
                CommandClass.USER_CODE, "set", usercode.user_id(slot),
                usercode.UserIdStatus.ENABLED, pin, wait_for_result=True))
            if self._lock_confirmed(lock, result, slot, sent_at):
                # One frame: the lock's own Supervision Report says the code is in the slot.
                self._learn_written(lock, slot, SlotValue(usercode.UserIdStatus.ENABLED, pin))
                return WriteResult(slot=slot, pin=pin, confirmed=True)
            await self._until_done(result)
            failed = mapping.supervision_failed(result)
            value = await self._get_slot(lock, node, slot)
            try:
                read = mapping.slot_read(slot, value)
            except usercode.SlotMissing:
                raise _no_such_slot(slot) from None
            if usercode.holds(read, pin, refused=failed):
                return WriteResult(slot=slot, pin=pin, confirmed=True)
            if await usercode.wait_for_duplicate(
                    lambda: usercode.noticed_duplicate(lock.duplicates, slot, sent_at),
                    lock.duplicate_seen, self._config.duplicate_wait_s):
                raise CommandRejected(RejectReason.DUPLICATE_PIN,
                                      "the lock refused the code: it is already in another slot")
            if failed:
                raise CommandRejected(RejectReason.OTHER,
                                      f"the lock refused the code for slot {slot} (Fail)")
            raise RetryLater(f"the lock did not keep the code in slot {slot}")

    async def clear_code(self, external_id: str, slot: int) -> None:
        """Clear exactly one slot (never user id 0, which would clear them all); done once the
        lock's Supervision Report says Success, else once a read shows the slot empty."""
        lock, info = self._lock(external_id)
        slot = mapping.check_slot(slot, info.capabilities)
        node = self._node(lock)
        async with lock.guard, self._operating(lock, slot):
            result = await self._call(node.async_invoke_cc_api(
                CommandClass.USER_CODE, "clear", usercode.user_id(slot), wait_for_result=True))
            if self._lock_confirmed(lock, result, slot, None):
                self._learn_written(lock, slot, SlotValue(usercode.UserIdStatus.AVAILABLE))
                return
            await self._until_done(result)
            # A Fail is judged by the read back, as for a write.
            failed = mapping.supervision_failed(result)
            value = await self._get_slot(lock, node, slot)
            if value.occupied:
                said = " (the lock answered Fail)" if failed else ""
                raise RetryLater(f"slot {slot} still holds a code after clearing it{said}")

    async def probe(self, external_id: str) -> bool:
        """One ping (a NOP frame); a sleeping lock is not woken, it reports when it wakes."""
        lock = self._find(external_id)
        if lock is None or lock.node is None or self._client is None:
            return False
        node = lock.node
        if node.status == mapping.NODE_ASLEEP:
            return False
        try:
            async with asyncio.timeout(self._config.probe_timeout_s):
                answered = await node.async_ping()
        except asyncio.CancelledError:
            _reraise_if_cancelled()
            return False
        except (TimeoutError, BaseZwaveJSServerError) as exc:
            _LOG.debug("zwave %s: node %d did not answer a ping: %s", self.name, node.node_id,
                       exc)
            return False
        self._refresh_availability(lock)
        return bool(answered) and bool(node.ready)

    # -- one websocket session ------------------------------------------------------------

    async def _session(self, established: Callable[[], None]) -> None:
        assert self._http is not None
        client = Client(self._config.url, self._http,
                        additional_user_agent_components={"lockbridge": "0.1"})
        try:
            async with asyncio.timeout(self._config.connect_timeout_s):
                await client.connect()
        except TimeoutError as exc:
            raise RetryLater("no answer from zwave-js-server") from exc
        except CannotConnect as exc:
            raise RetryLater(f"cannot connect: {exc.__cause__ or exc}") from exc
        except InvalidServerVersion as exc:
            raise FixConfig(str(exc)) from exc
        driver_ready = asyncio.Event()
        listen = asyncio.create_task(client.listen(driver_ready), name=f"zwave:{self.name}:ws")
        try:
            await self._first_of(driver_ready.wait(), listen, self._config.connect_timeout_s)
            if not driver_ready.is_set():
                if listen.done():
                    listen.result()
                raise RetryLater("zwave-js-server did not send its state")
            self._client = client
            self._attach(client)
            established()
            await self._initial_sync(listen)
            _LOG.info("zwave %s: connected to network %08x: %d locks", self.name,
                      self._home_id or 0, sum(1 for lk in self._locks.values()
                                              if lk.node is not None and lk.info is not None))
            while not listen.done():
                await self._first_of(self._wake.wait(), listen, None)
                self._wake.clear()
                await self._refresh_dirty()
            listen.result()
        finally:
            self._client = None
            self._detach()
            await self._close(client, listen)
            for lock in self._locks.values():
                self._refresh_availability(lock)

    async def _initial_sync(self, listen: asyncio.Task[None]) -> None:
        """Wait (bounded) for lock nodes still being interviewed, then describe every lock."""
        waiting = [lk.ready for lk in self._locks.values()
                   if lk.node is not None and not lk.node.ready]
        waiting += list(self._unknown.values())
        if waiting and not self._synced.is_set():
            _LOG.info("zwave %s: waiting for %d nodes to finish their interview", self.name,
                      len(waiting))
            everyone = asyncio.gather(*(ready.wait() for ready in waiting))
            try:
                await self._first_of(everyone, listen, self._config.start_timeout_s)
            finally:
                await cancel_and_wait(everyone)
        await self._refresh_dirty()
        self._save_cache()
        self._synced.set()

    def _attach(self, client: Client) -> None:
        driver = client.driver
        assert driver is not None
        controller = driver.controller
        home_id = controller.home_id or 0
        if self._home_id is not None and home_id != self._home_id:
            _LOG.warning("zwave %s: the server now runs network %08x (was %08x); the old "
                         "network's locks are reported removed", self.name, home_id,
                         self._home_id)
            for lock in self._locks.values():
                lock.removed = True
        self._home_id = home_id
        present = set()
        for node in controller.nodes.values():
            if self._adopt(node):
                present.add(node.node_id)
            elif not node.ready and not node.is_controller_node:
                self._watch_unknown(node)
        for node_id, lock in self._locks.items():
            if node_id not in present:
                lock.removed = True
        self._session_unsubscribe = [
            controller.on("node added", self._on_node_added),
            controller.on("node removed", self._on_node_removed),
        ]

    def _watch_unknown(self, node: Node) -> None:
        """Follow a node in its interview until it is known whether it is a lock."""
        ready = self._unknown[node.node_id] = asyncio.Event()

        def on_ready(data: dict[str, Any]) -> None:
            unsubscribe()
            self._unknown.pop(node.node_id, None)
            ready.set()
            try:
                if self._adopt(node):
                    _LOG.info("zwave %s: node %d is a lock", self.name, node.node_id)
                    self._wake.set()
            except Exception:  # a callback must never break the library's receive loop
                _LOG.exception("zwave %s: node %d: could not adopt it", self.name, node.node_id)

        unsubscribe = node.on("ready", on_ready)
        self._session_unsubscribe.append(unsubscribe)

    def _adopt(self, node: Node) -> bool:
        """Start following a node if it is a lock; True when it is."""
        state = _wire_state(node)
        settings = self._config.node(node.node_id)
        if not mapping.is_lock(state) or settings.ignore:
            return False
        lock = self._locks.get(node.node_id)
        if lock is None:
            lock = self._locks[node.node_id] = _Lock(node_id=node.node_id)
        for unsubscribe in lock.unsubscribe:
            unsubscribe()
        lock.node = node
        lock.removed = False
        lock.fresh.clear()
        lock.clock_synced = None
        lock.multi_report = None
        snap = mapping.snapshot(state)
        lock.known = dict(snap.slots) if snap is not None else {}
        if node.ready:
            lock.ready.set()
        else:
            lock.ready.clear()
        lock.unsubscribe = [node.on(name, self._node_handler(lock, name)) for name in _NODE_EVENTS]
        self._dirty.add(node.node_id)
        self._refresh_availability(lock)
        return True

    def _detach(self) -> None:
        for unsubscribe in self._session_unsubscribe:
            unsubscribe()
        self._session_unsubscribe = []
        for ready in self._unknown.values():
            ready.set()
        self._unknown.clear()
        for lock in self._locks.values():
            for unsubscribe in lock.unsubscribe:
                unsubscribe()
            lock.unsubscribe = []
            lock.node = None

    async def _refresh_dirty(self) -> None:
        """Describe locks whose node became ready (slots, PIN rules, schedules)."""
        changed: list[str] = []
        dirty, self._dirty = self._dirty, set()
        for node_id in sorted(dirty):
            lock = self._locks.get(node_id)
            if lock is None or lock.node is None:
                continue
            if not lock.node.ready and lock.info is not None:
                self._refresh_availability(lock)
                continue
            snap = mapping.snapshot(_wire_state(lock.node))
            if snap is None:
                continue
            lock.snapshot = snap
            if lock.year_day_slots is None and snap.supports(CC_SCHEDULE_ENTRY_LOCK) \
                    and lock.node.ready:
                lock.year_day_slots = await self._year_day_slots(lock.node)
            info = self._describe(lock)
            if info != lock.info:
                _LOG.debug("zwave %s: node %d described: %s (was %s)", self.name, node_id, info,
                           lock.info)
                lock.info = info
                changed.append(info.external_id)
            self._refresh_availability(lock)
        if changed:
            self._save_cache()
            for external_id in changed:
                self._emit(DriverEvent(DriverEventKind.DEVICES_CHANGED, external_id))

    def _describe(self, lock: _Lock) -> DeviceInfo:
        assert lock.snapshot is not None
        snap = lock.snapshot
        if lock.missing:
            snap = replace(snap, missing_slots=tuple(sorted({*snap.missing_slots,
                                                              *lock.missing})))
        return mapping.device_info(snap, self._home_id or 0, self._settings(lock.node_id),
                                   lock.year_day_slots,
                                   exchange_timeout_s=self._config.command_timeout_s)

    def _slot_missing(self, lock: _Lock, slot: int) -> None:
        """The lock reported `slot` as not available: reserve it, and tell the engine."""
        if slot in lock.missing:
            return
        lock.missing.add(slot)
        _LOG.info("zwave %s: node %d has no slot %d (status not available); not used",
                  self.name, lock.node_id, slot)
        if lock.snapshot is None:
            return
        lock.snapshot = replace(lock.snapshot, missing_slots=tuple(sorted(
            {*lock.snapshot.missing_slots, slot})))
        lock.info = self._describe(lock)
        self._save_cache()
        self._emit(DriverEvent(DriverEventKind.DEVICES_CHANGED, lock.info.external_id))

    def _settings(self, node_id: int) -> NodeSettings:
        node = self._config.node(node_id)
        return NodeSettings(
            name=node.name, time_zone=node.time_zone or self._config.time_zone,
            reserved_slots=tuple(node.reserved_slots), fixed_length=node.fixed_length,
            no_leading_zero=node.no_leading_zero, native_schedules=node.native_schedules,
            command_spacing_s=self._config.command_spacing_s,
        )

    async def _year_day_slots(self, node: Node) -> int | None:
        try:
            slots = await self._call(node.async_invoke_cc_api(
                CommandClass.SCHEDULE_ENTRY_LOCK, "getNumSlots", wait_for_result=True))
        except DriverError as exc:
            _LOG.warning("zwave %s: node %d did not say how many schedules it keeps (%s); "
                         "lockbridge enforces its code times itself", self.name, node.node_id,
                         exc)
            return None
        count = slots.get("numYearDaySlots") if isinstance(slots, dict) else None
        return int(count) if isinstance(count, int) else 0

    # -- library callbacks: record, then queue events ----------------------------------------

    def _node_handler(self, lock: _Lock, name: str) -> Callable[[dict[str, Any]], None]:
        def handle(data: dict[str, Any]) -> None:
            try:
                self._on_node_event(lock, name, data)
            except Exception:  # a callback must never break the library's receive loop
                _LOG.exception("zwave %s: node %d: could not handle %r", self.name, lock.node_id,
                               name)

        return handle

    def _on_node_event(self, lock: _Lock, name: str, data: dict[str, Any]) -> None:
        if name in ("value added", "value updated"):
            args = cast(mapping.ValueArgs, data.get("args", {}))
            if args.get("commandClass") == mapping.CC_NOTIFICATION \
                    and args.get("property") == "alarmLevel":
                self._on_signal(lock, mapping.alarm_signal(self._alarm_type(lock),
                                                           args.get("newValue")))
            else:
                self._on_value(lock, args)
        elif name == "notification":
            if data.get("ccId") == mapping.CC_NOTIFICATION:
                self._on_signal(lock, mapping.access_control_signal(
                    cast(mapping.NotificationArgs, data.get("args", {}))))
        else:
            if name == "ready":
                lock.ready.set()
                self._dirty.add(lock.node_id)
                self._wake.set()
            elif name == "interview started":
                lock.ready.clear()
            self._refresh_availability(lock)

    def _on_value(self, lock: _Lock, args: mapping.ValueArgs) -> None:
        change = mapping.user_code_change(args)
        if change is None:
            return
        slot, prop, new = change
        before = lock.known.get(slot, SlotValue())
        after = mapping.with_change(before, prop, new)
        lock.known[slot] = after
        lock.fresh.add(slot)
        lock.supervised_unread.pop(slot, None)
        if after != before and not lock.busy.get(slot) and not lock.bulk_reads:
            # The lock reported a change nobody here asked for: a keypad edit, another client.
            self._emit(DriverEvent(DriverEventKind.SLOT_CHANGED, _external(lock, self._home_id),
                                   slot=slot))

    def _on_signal(self, lock: _Lock, signal: LockSignal | None) -> None:
        if signal is None:
            return
        slot = signal.slot
        now = self._clock.monotonic()
        if signal.kind is SignalKind.CODE_DUPLICATE:
            # The lock refused a code; `write_code` waits for exactly this. One without a slot
            # is about the write under way.
            lock.seq += 1
            lock.duplicates[slot or 0] = lock.seq
            lock.duplicate_seen.set()
            self._late_duplicate(lock, slot)
            return
        last, lock.last_signal = lock.last_signal, (signal, now)
        if last is not None and last[0] == signal and now - last[1] < _SAME_SIGNAL_S:
            return
        external = _external(lock, self._home_id)
        if signal.kind is SignalKind.KEYPAD_UNLOCK and slot is not None:
            self._emit(DriverEvent(DriverEventKind.KEYPAD_USED, external, slot=slot,
                                   detail={"source": "keypad"}))
        elif signal.kind is SignalKind.ALL_CODES_DELETED:
            occupied = [s for s, v in lock.known.items() if v.occupied]
            lock.fresh.clear()
            for each in occupied:
                self._emit(DriverEvent(DriverEventKind.SLOT_CHANGED, external, slot=each))
        elif slot is not None and not lock.busy.get(slot):
            # During our own command on the slot this is its echo. An echo that trails the
            # command costs one read, which is cheaper than missing a keypad edit.
            lock.fresh.discard(slot)
            self._emit(DriverEvent(DriverEventKind.SLOT_CHANGED, external, slot=slot))

    def _on_node_added(self, data: dict[str, Any]) -> None:
        node = data.get("node")
        if not isinstance(node, Node):
            return
        if self._adopt(node):
            _LOG.info("zwave %s: lock node %d added to the network", self.name, node.node_id)
        elif not node.ready:
            self._watch_unknown(node)

    def _on_node_removed(self, data: dict[str, Any]) -> None:
        node = data.get("node")
        lock = self._locks.get(node.node_id) if isinstance(node, Node) else None
        if lock is not None:
            _LOG.warning("zwave %s: lock node %d was removed from the network", self.name,
                         lock.node_id)
            for unsubscribe in lock.unsubscribe:
                unsubscribe()
            lock.unsubscribe = []
            lock.node = None
            lock.removed = True
            self._refresh_availability(lock)

    def _on_link_state(self, state: LinkState) -> None:
        if state in (LinkState.BACKING_OFF, LinkState.REFUSED):
            self._attempt_failed.set()

    # -- commands -----------------------------------------------------------------------------

    async def _get_slot(self, lock: _Lock, node: Node, slot: int) -> SlotValue:
        """One User Code Get; the answer is what the lock holds now. A slot reporting status 254
        does not exist: it is reserved from now on."""
        async with self._operating(lock, slot):
            report = await self._call(node.async_invoke_cc_api(
                CommandClass.USER_CODE, "get", usercode.user_id(slot), wait_for_result=True))
        if report is None:
            raise _NoReport(f"no answer to reading slot {slot}")
        value = mapping.report_value(report)
        self._learn(lock, slot, value)
        return value

    async def _read_fresh(self, lock: _Lock, node: Node, slots: Sequence[int]) -> int:
        """Read `slots` from the lock (several a frame where it can); the frames sent."""
        frames = 0
        left = sorted(slots)
        while left:
            if len(left) > 1 and await self._multi_report(lock, node):
                sent, left = await self._read_in_bulk(lock, node, left)
                frames += sent
                if not left:
                    break
            # One report lost is not a lock without multi-code reads: the slot it was for is
            # read alone (RetryLater when that too goes unanswered), then the rest in bulk.
            await self._get_slot(lock, node, left[0])
            frames += 1
            left = left[1:]
        return frames

    async def _read_in_bulk(self, lock: _Lock, node: Node,
                            slots: list[int]) -> tuple[int, list[int]]:
        """Multi-code reads (Extended User Code Get, Report More) from the lowest slot not yet
        read: each report carries the codes that fit in one frame and points to the next
        occupied slot, the empty ones between being known without a frame. Returns the frames
        sent and the slots left unread (when the lock stops answering in bulk)."""
        assert lock.snapshot is not None
        last_slot = lock.snapshot.slot_count
        wanted = set(slots)
        frames = 0
        while wanted:
            first = min(wanted)
            lock.bulk_reads += 1
            try:
                report = await self._call(node.async_invoke_cc_api(
                    CommandClass.USER_CODE, "get", usercode.user_id(first), True,
                    wait_for_result=True))
            finally:
                lock.bulk_reads -= 1
            frames += 1
            read = mapping.bulk_read(report, first, last_slot)
            if read is None:
                _LOG.info("zwave %s: node %d gave no multi-code report from slot %d",
                          self.name, lock.node_id, first)
                break
            for slot, value in read.values.items():
                self._learn(lock, slot, value)
            wanted.difference_update(read.values)
        return frames, sorted(wanted)

    async def _multi_report(self, lock: _Lock, node: Node) -> bool:
        """Whether the lock answers multi-code reads: what zwave-js's interview learned
        (the User Code Capabilities Report), asked of zwave-js once per session."""
        snap = lock.snapshot
        if snap is None or snap.cc_versions.get(CC_USER_CODE, 1) < 2:
            return False
        if lock.multi_report is None:
            try:
                answer = await self._call(node.async_send_command(
                    "get_value", valueId=mapping.MULTI_REPORT_VALUE, wait_for_result=True))
            except DriverError as exc:
                _LOG.debug("zwave %s: node %d: could not ask zwave-js whether it reads "
                           "several codes a frame: %s", self.name, lock.node_id, exc)
                return False
            lock.multi_report = isinstance(answer, dict) and answer.get("value") is True
        return lock.multi_report

    def _learn(self, lock: _Lock, slot: int, value: SlotValue) -> None:
        """What the lock just said of one slot (254: the slot does not exist)."""
        lock.known[slot] = value
        lock.fresh.add(slot)
        # Its report reached zwave-js's cache too.
        lock.supervised_unread.pop(slot, None)
        if value.status == usercode.UserIdStatus.NOT_AVAILABLE:
            self._slot_missing(lock, slot)

    def _lock_confirmed(self, lock: _Lock, result: Any, slot: int, sent_at: int | None) -> bool:
        """Whether the lock's answer to a User Code Set (`sent_at`: the duplicate notice count
        when a write was sent; None for a clear) confirms it without reading the slot back.

        Only a Supervision Report Success does, and not from a lock that once answered Success
        and sent a duplicate notice all the same: that lock refused the code it called done.
        zwave-js answers a Set with the lock's Supervision result, or nothing when the lock was
        not asked under Supervision; Working (the lock is not done, and its final report never
        reaches us) and Fail leave it to the read. NoSupport never arrives: zwave-js sends the
        Set again unsupervised (mapping.supervision_succeeded has the sources)."""
        if not mapping.supervision_succeeded(result) or lock.success_doubted \
                or not self._config.node(lock.node_id).trust_supervision:
            return False
        if sent_at is not None and usercode.noticed_duplicate(lock.duplicates, slot, sent_at):
            self._doubt_success(lock)
            return False
        return True

    async def _until_done(self, result: Any) -> None:
        """Before reading back a Set the lock answered Working: wait as long as it said it
        needs (bounded), since its final report never reaches us and a read now would show
        the slot as it was."""
        working_s = mapping.supervision_working_s(result)
        if working_s:
            await self._clock.sleep(min(working_s, self._config.command_timeout_s))

    def _learn_written(self, lock: _Lock, slot: int, value: SlotValue) -> None:
        """Know a slot as a read would once the lock confirmed it by Supervision; remembered
        as unread, for zwave-js's cache lacks it (`_checksum_agrees` reads it if it matters)."""
        lock.known[slot] = value
        lock.fresh.add(slot)
        fresh_entry = slot not in lock.supervised_unread
        # A clear cannot be refused as a duplicate: no notice is ever about it.
        lock.supervised_unread[slot] = self._clock.monotonic() if value.occupied \
            else float("-inf")
        if fresh_entry:
            self._save_cache()

    def _doubt_success(self, lock: _Lock) -> None:
        """The lock answered Success to a write it refused: read its writes back from now on."""
        if lock.success_doubted:
            return
        lock.success_doubted = True
        _LOG.warning("zwave %s: node %d answered Supervision Success to a User Code Set and then "
                     "reported the code a duplicate; its writes are read back from now on "
                     "(nodes.%d.trust_supervision: false keeps it so after a restart)",
                     self.name, lock.node_id, lock.node_id)

    def _late_duplicate(self, lock: _Lock, slot: int | None) -> None:
        """A duplicate notice after a write the lock confirmed by Supervision alone: the lock
        refused it after all, so the slot is unknown again and the engine reads it.

        A notice that names no slot may be about any such write of the last minute: it can
        arrive after the next command was sent, or after it was done. Each is read again (the
        good ones come back confirmed); the command under way judges the notice itself."""
        now = self._clock.monotonic()
        recent = {s for s, at in lock.supervised_unread.items()
                  if now - at <= _LATE_DUPLICATE_S and not lock.busy.get(s)}
        doubted = sorted(recent) if slot is None else [slot] if slot in recent else []
        if not doubted:
            return
        self._doubt_success(lock)
        for each in doubted:
            del lock.supervised_unread[each]
            lock.known.pop(each, None)
            lock.fresh.discard(each)
            self._emit(DriverEvent(DriverEventKind.SLOT_CHANGED,
                                   _external(lock, self._home_id), slot=each))

    async def _checksum_agrees(self, lock: _Lock, node: Node) -> bool:
        """True when the lock's user code checksum matches what is known of its slots."""
        snap = lock.snapshot
        if not self._config.use_checksum or lock.checksum_supported is False or snap is None \
                or snap.cc_versions.get(CC_USER_CODE, 1) < 2:
            return False
        try:
            remote = await self._call(node.async_invoke_cc_api(
                CommandClass.USER_CODE, "getUserCodeChecksum", wait_for_result=True))
        except CommandRejected as exc:
            if exc.reason is RejectReason.UNSUPPORTED:
                lock.checksum_supported = False
            return False
        if not isinstance(remote, int):
            return False
        lock.checksum_supported = True
        local = mapping.user_code_checksum(lock.known)
        unread = [slot for slot in sorted(lock.supervised_unread) if slot not in lock.fresh]
        if local != remote and unread:
            # This session began from zwave-js's cache, which lacks the slots the lock confirmed
            # by Supervision (it learns a slot only from a report): read those alone, not all.
            try:
                for slot in unread:
                    await self._get_slot(lock, node, slot)
            except _NoReport:
                return False
            local = mapping.user_code_checksum(lock.known)
        if local != remote:
            _LOG.info("zwave %s: node %d: user code checksum differs from what is known; "
                      "reading its slots", self.name, lock.node_id)
        return local == remote

    async def _put_schedule(self, lock: _Lock, node: Node, slot: int, code: CodeWrite) -> None:
        """A year-day schedule for a time-bound code; none for an ongoing one."""
        if code.window is None:
            # An ongoing code: whatever schedule the slot had must not restrict it.
            await self._call(node.async_invoke_cc_api(
                CommandClass.SCHEDULE_ENTRY_LOCK, "setEnabled", False, slot,
                wait_for_result=True))
            return
        schedule = mapping.year_day_schedule(code.window)
        await self._sync_clock(lock, node, code.window.zone)
        result = await self._call(node.async_invoke_cc_api(
            CommandClass.SCHEDULE_ENTRY_LOCK, "setYearDaySchedule",
            {"userId": slot, "slotId": 1}, dict(schedule), wait_for_result=True))
        if mapping.supervision_failed(result):
            raise CommandRejected(RejectReason.OTHER, "the lock refused the schedule")

    async def _sync_clock(self, lock: _Lock, node: Node, zone: str | None) -> None:
        """Set the lock's clock and zone before a schedule, once a day or when the offset moves;
        the zone is the one the schedule's times are in (the engine's rule), else the lock's."""
        if zone is None:
            zone = lock.info.time_zone if lock.info is not None else None
        snap = lock.snapshot
        if zone is None or snap is None:
            raise CommandRejected(RejectReason.UNSUPPORTED, "the lock's time zone is not set")
        now = self._clock.now()
        offset = mapping.zone_offset_minutes(zone, now)
        synced = lock.clock_synced
        if synced is not None and synced[1] == offset and \
                self._clock.monotonic() - synced[0] < self._config.clock_sync_interval_h * 3600:
            return
        if snap.supports(CC_TIME_PARAMETERS) or not snap.supports(CC_CLOCK):
            # Time Parameters carry UTC; the zone follows through Schedule Entry Lock.
            ok = await self._call(node.async_set_date_and_time(now, wait_for_result=True))
            if ok is False:
                raise RetryLater("the lock did not take the current time")
            if snap.cc_versions.get(CC_SCHEDULE_ENTRY_LOCK, 1) >= 2:
                # The lock's idea of local time is exactly our zone's offset now; it is set
                # again when that offset changes (DST), since the CC carries no DST dates.
                await self._call(node.async_invoke_cc_api(
                    CommandClass.SCHEDULE_ENTRY_LOCK, "setTimezone",
                    {"standardOffset": offset, "dstOffset": offset}, wait_for_result=True))
        else:
            hour, minute, weekday = mapping.local_clock(zone, now)
            await self._call(node.async_invoke_cc_api(
                CommandClass.CLOCK, "set", hour, minute, weekday, wait_for_result=True))
        lock.clock_synced = (self._clock.monotonic(), offset)
        _LOG.info("zwave %s: set the clock of node %d (%s, UTC%+d min)", self.name, lock.node_id,
                  zone, offset)

    async def _call(self, op: Awaitable[_T]) -> _T:
        """Run one library call with a timeout; its errors become driver errors here."""
        try:
            async with asyncio.timeout(self._config.command_timeout_s):
                return await op
        except asyncio.CancelledError:
            _reraise_if_cancelled()
            # The library cancels its pending commands when the websocket closes.
            raise RetryLater("the connection to zwave-js-server closed during the command") \
                from None
        except TimeoutError as exc:
            raise RetryLater(f"no answer within {self._config.command_timeout_s:.0f} s") \
                from exc
        except FailedZWaveCommand as exc:
            raise mapping.zwave_error(exc.zwave_error_code, exc.zwave_error_message) from exc
        except FailedCommand as exc:
            raise mapping.server_error(exc.error_code, str(exc)) from exc
        except InvalidServerVersion as exc:
            raise FixConfig(str(exc)) from exc
        except NotFoundError as exc:
            raise CommandRejected(RejectReason.UNSUPPORTED, str(exc)) from exc
        except BaseZwaveJSServerError as exc:
            # Not connected, connection closed or failed, invalid state or message.
            raise RetryLater(f"zwave-js-server link: {type(exc).__name__}: {exc}") from exc

    @contextlib.asynccontextmanager
    async def _operating(self, lock: _Lock, slot: int) -> AsyncIterator[None]:
        """Mark a slot as ours while a command on it runs, so its echoes are not news."""
        lock.busy[slot] = lock.busy.get(slot, 0) + 1
        try:
            yield
        finally:
            lock.busy[slot] -= 1
            if not lock.busy[slot]:
                del lock.busy[slot]

    def _lock(self, external_id: str) -> tuple[_Lock, DeviceInfo]:
        """A lock this driver knows, with its description."""
        lock = self._find(external_id)
        if lock is None or lock.info is None:
            raise FixConfig(f"no Z-Wave lock {external_id!r} on {self.name}")
        return lock, lock.info

    def _node(self, lock: _Lock) -> Node:
        """The lock's node, if commands can go to it now; else RetryLater, and no traffic."""
        node = lock.node
        if self._client is None:
            raise RetryLater("zwave-js-server is not connected")
        if node is None or lock.removed:
            raise RetryLater(f"node {lock.node_id} is not in the network")
        if node.status == mapping.NODE_DEAD:
            raise RetryLater(f"node {lock.node_id} is dead")
        if node.status == mapping.NODE_ASLEEP:
            raise RetryLater(f"node {lock.node_id} is asleep")
        if not node.ready:
            raise RetryLater(f"node {lock.node_id} is still being interviewed")
        return node

    # -- availability and events ---------------------------------------------------------------

    def _refresh_availability(self, lock: _Lock) -> None:
        node = lock.node
        now = mapping.availability(
            connected=self._client is not None,
            present=node is not None and not lock.removed,
            status=int(node.status) if node is not None else None,
            ready=bool(node.ready) and lock.info is not None if node is not None else None,
        )
        if now is lock.availability:
            return
        lock.availability = now
        if lock.info is not None:
            if now is Availability.ONLINE:
                _LOG.info("zwave %s: node %d is online", self.name, lock.node_id)
            else:
                _LOG.info("zwave %s: node %d is %s", self.name, lock.node_id, now.value)
            self._emit(DriverEvent(DriverEventKind.AVAILABILITY, lock.info.external_id,
                                   availability=now))

    def _emit(self, event: DriverEvent) -> None:
        self._events.emit(event)

    # -- the lock list kept across restarts ------------------------------------------------------

    def _load_cache(self) -> None:
        if self._cache_file is None or not self._cache_file.exists():
            return
        try:
            doc = json.loads(self._cache_file.read_text())
            if doc.get("version") != _CACHE_VERSION:
                return
            self._home_id = int(doc["home_id"])
            for item in doc["locks"]:
                lock = _Lock(node_id=int(item["node_id"]),
                             snapshot=_snapshot_from_json(item["snapshot"]),
                             year_day_slots=item.get("year_day_slots"),
                             # Slot numbers only: too old to be doubted, still to be read.
                             supervised_unread={int(slot): float("-inf") for slot
                                                in item.get("supervised_unread", [])})
                if self._config.node(lock.node_id).ignore:
                    continue
                lock.info = self._describe(lock)
                self._locks[lock.node_id] = lock
        except (OSError, ValueError, KeyError, TypeError) as exc:
            _LOG.warning("zwave %s: ignoring the remembered lock list %s: %s", self.name,
                         self._cache_file, exc)
            self._locks.clear()

    def _save_cache(self) -> None:
        if self._cache_file is None or self._home_id is None:
            return
        doc = {
            "version": _CACHE_VERSION,
            "home_id": self._home_id,
            "locks": [
                {"node_id": lock.node_id, "year_day_slots": lock.year_day_slots,
                 "snapshot": _snapshot_to_json(lock.snapshot),
                 "supervised_unread": sorted(lock.supervised_unread)}
                for _, lock in sorted(self._locks.items())
                if lock.snapshot is not None and not lock.removed
            ],
        }
        save_memory(self._cache_file, doc)

    # -- helpers ----------------------------------------------------------------------------------

    def _find(self, external_id: str) -> _Lock | None:
        for lock in self._locks.values():
            if lock.info is not None and lock.info.external_id == external_id:
                return lock
        return None

    def _alarm_type(self, lock: _Lock) -> Any:
        node = lock.node
        if node is None:
            return None
        value = node.values.get(f"{node.node_id}-{mapping.CC_NOTIFICATION}-0-alarmType")
        return value.value if value is not None else None

    async def _first_of(self, waiter: Awaitable[Any], task: asyncio.Task[None],
                        timeout: float | None) -> None:
        """Wait until `waiter` completes, `task` ends, or `timeout` passes."""
        future = asyncio.ensure_future(waiter)
        try:
            await asyncio.wait({future, task}, timeout=timeout,
                               return_when=asyncio.FIRST_COMPLETED)
        finally:
            if not future.done():
                await cancel_and_wait(future)

    async def _close(self, client: Client, listen: asyncio.Task[None]) -> None:
        """Close the websocket (which ends `listen`), bounded; then make sure `listen` is over."""
        if not listen.done():
            with contextlib.suppress(Exception):
                async with asyncio.timeout(2.0):
                    await client.disconnect()
        if not listen.done():
            listen.cancel()
        with contextlib.suppress(Exception, asyncio.CancelledError):
            await listen


def _no_such_slot(slot: int) -> CommandRejected:
    return CommandRejected(RejectReason.SLOT_OUT_OF_RANGE,
                           f"slot {slot} does not exist on the lock (it reports it as not "
                           "available)")


def _reraise_if_cancelled() -> None:
    """Re-raise a CancelledError that is meant for this task (not one the library passed on)."""
    task = asyncio.current_task()
    if task is not None and task.cancelling():
        raise asyncio.CancelledError


def _classify(error: BaseException) -> FailureKind:
    """An unusable configuration or server is not retried quickly; everything else is."""
    return FailureKind.REFUSED if isinstance(error, FixConfig | Reauthenticate) \
        else FailureKind.TRANSIENT


def _external(lock: _Lock, home_id: int | None) -> str:
    return lock.info.external_id if lock.info is not None \
        else mapping.external_id(home_id or 0, lock.node_id)


def _wire_state(node: Node) -> NodeState:
    """A node in the shape zwave-js-server sends it (the library keeps values apart)."""
    state = dict(node.data)
    state["values"] = [dict(value.data) for value in node.values.values()]
    state["endpoints"] = [dict(endpoint.data) for endpoint in node.endpoints.values()]
    return cast(NodeState, state)


def _snapshot_to_json(snap: LockSnapshot | None) -> dict[str, Any]:
    assert snap is not None
    return {"node_id": snap.node_id, "name": snap.name, "manufacturer": snap.manufacturer,
            "model": snap.model, "cc_versions": {str(k): v for k, v in snap.cc_versions.items()},
            "slot_count": snap.slot_count, "min_length": snap.min_length,
            "max_length": snap.max_length, "missing_slots": list(snap.missing_slots)}


def _snapshot_from_json(doc: dict[str, Any]) -> LockSnapshot:
    return LockSnapshot(
        node_id=int(doc["node_id"]), status=mapping.NODE_UNKNOWN, ready=False,
        name=doc.get("name"), manufacturer=str(doc["manufacturer"]), model=str(doc["model"]),
        cc_versions={int(k): int(v) for k, v in doc["cc_versions"].items()},
        slot_count=int(doc["slot_count"]), min_length=int(doc["min_length"]),
        max_length=int(doc["max_length"]),
        missing_slots=tuple(int(s) for s in doc.get("missing_slots", [])),
    )


def _safe(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]", "_", name)


class _WirePayloadGuard(logging.Filter):
    """Withholds the library's debug dumps of websocket messages: they carry user codes."""

    _PREFIXES = ("Received message", "Publishing message", "Received message with unknown type",
                 "Received unknown event")

    def filter(self, record: logging.LogRecord) -> bool:
        """Replace a payload dump by its first words."""
        message = record.msg if isinstance(record.msg, str) else ""
        if message.startswith(self._PREFIXES):
            record.msg = "%s (payload withheld: it may contain user codes)"
            record.args = (message.split(":", 1)[0].split("\n", 1)[0],)
        return True


_GUARD = _WirePayloadGuard()


def _guard_library_logs() -> None:
    """Install the payload guard on the library's logger (once)."""
    library = logging.getLogger("zwave_js_server")
    if _GUARD not in library.filters:
        library.addFilter(_GUARD)

