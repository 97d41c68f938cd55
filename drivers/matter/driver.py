"""The Matter driver: Door Lock nodes behind one Matter server's WebSocket.

One `MatterDriver` is one Matter server (one fabric). A `ReconnectSupervisor` keeps the
WebSocket up; each session asks for the server's nodes and its events (`start_listening`),
adopts the nodes with a Door Lock cluster, and then only records what the events say and queues
the bridge's events; the engine hears them from the `EventPump`'s task.

The cluster's commands and their errors live in `commands.py`, the code model (users with PIN
credentials, fabric ownership) in `codes.py`, what the cluster's values mean in `mapping.py`.
"""

from __future__ import annotations

import asyncio
import functools
import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import aiohttp

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
    WriteResult,
)
from bridge.reconnect import Backoff, FailureKind, LinkState, ReconnectSupervisor
from drivers.events import EventPump
from drivers.matter import mapping
from drivers.matter.client import MatterLink
from drivers.matter.codes import LockCodes
from drivers.matter.commands import CallPolicy, DoorLockCommands
from drivers.matter.config import Config
from drivers.tasks import cancel_and_wait

_LOG = logging.getLogger(__name__)
_EVENT_QUEUE = 1000


@dataclass(slots=True)
class _Lock:
    """What the driver keeps about one Door Lock endpoint."""

    node_id: int
    endpoint: int
    info: DeviceInfo
    codes: LockCodes
    # The node's attributes as the server last sent them (for the lock's state).
    attributes: dict[str, Any] = field(default_factory=dict)
    available: bool = False
    removed: bool = False
    guard: asyncio.Lock = field(default_factory=asyncio.Lock)


class MatterDriver:
    """Matter door locks through one Matter server (python-matter-server or matter-server)."""

    def __init__(self, config: Config, clock: Clock, state_dir: Path) -> None:
        self.name = config.name
        self._config = config
        self._clock = clock
        self._state_dir = state_dir
        self._locks: dict[str, _Lock] = {}
        self._link: MatterLink | None = None
        self._http: aiohttp.ClientSession | None = None
        self._events = EventPump(f"matter {config.name}", maxsize=_EVENT_QUEUE)
        self._tasks: list[asyncio.Task[None]] = []
        self._synced = asyncio.Event()
        self._attempt_failed = asyncio.Event()
        self._policy = CallPolicy(config.command_timeout_s, config.timed_request_timeout_ms,
                                  config.busy_retries, config.busy_retry_s)
        self._supervisor = ReconnectSupervisor(
            f"matter {config.name} ({config.url})", clock, self._session, classify=_classify,
            backoff=Backoff(config.reconnect_min_s, config.reconnect_max_s),
            on_state=self._on_link_state)

    # -- LockDriver -------------------------------------------------------------------------

    async def start(self, sink: DriverEventSink) -> None:
        """Connect, discover the locks, and report events (bounded by start_timeout_s)."""
        self._events.start(sink)
        self._http = aiohttp.ClientSession()
        self._tasks.append(asyncio.create_task(self._supervisor.run(),
                                               name=f"matter:{self.name}:link"))
        synced = asyncio.ensure_future(self._synced.wait())
        failed = asyncio.ensure_future(self._attempt_failed.wait())
        try:
            await asyncio.wait({synced, failed}, timeout=self._config.start_timeout_s,
                               return_when=asyncio.FIRST_COMPLETED)
        finally:
            for waiter in (synced, failed):
                await cancel_and_wait(waiter)
        if not self._synced.is_set():
            _LOG.warning("matter %s: the Matter server at %s is not answering yet; its locks "
                         "appear once it does", self.name, self._config.url)

    async def stop(self) -> None:
        """Disconnect and cancel everything; safe to call twice."""
        tasks, self._tasks = self._tasks, []
        for task in reversed(tasks):
            await cancel_and_wait(task)
        if self._http is not None:
            await self._http.close()
            self._http = None
        await self._events.stop()

    def devices(self) -> Sequence[DeviceInfo]:
        """Locks known now."""
        return [lock.info for _, lock in sorted(self._locks.items())]

    def availability(self, external_id: str) -> Availability:
        """Last known availability of one lock."""
        lock = self._locks.get(external_id)
        if lock is None or lock.removed:
            return Availability.REMOVED
        if self._link is None:
            return Availability.HUB_DISCONNECTED
        return Availability.ONLINE if lock.available else Availability.OFFLINE

    async def read_slots(self, external_id: str, slots: Sequence[int]) -> list[SlotRead]:
        """Each slot's credential status, fresh from the lock."""
        lock = self._usable(external_id)
        async with lock.guard:
            return [await lock.codes.read(mapping.check_slot(slot, lock.info.capabilities))
                    for slot in slots]

    async def list_codes(self, external_id: str) -> list[SlotRead]:
        """Every occupied PIN slot (ours, the keypad's and other fabrics')."""
        lock = self._usable(external_id)
        async with lock.guard:
            return await lock.codes.list(lock.info.capabilities.slot_count)

    async def write_code(self, external_id: str, code: CodeWrite) -> WriteResult:
        """Set one code as a user with a PIN credential, then confirm the slot is ours."""
        lock = self._usable(external_id)
        info = lock.info
        if not info.capabilities.programs_codes:
            raise CommandRejected(RejectReason.UNSUPPORTED,
                                  "this lock has no users with PIN credentials")
        slot = mapping.check_slot(code.slot, info.capabilities)
        pin = mapping.check_pin(code.pin, info.constraints)
        if code.window is not None and not info.capabilities.native_schedules:
            raise CommandRejected(RejectReason.UNSUPPORTED, "this lock keeps no schedules")
        async with lock.guard:
            await lock.codes.write(slot, pin, code, info)
            if not await lock.codes.confirm(slot):
                raise RetryLater(f"slot {slot} does not hold lockbridge's PIN after setting it")
        return WriteResult(slot=slot, pin=pin, confirmed=True)

    async def clear_code(self, external_id: str, slot: int) -> None:
        """Clear lockbridge's code in one slot (never another fabric's)."""
        lock = self._usable(external_id)
        slot = mapping.check_slot(slot, lock.info.capabilities)
        async with lock.guard:
            await lock.codes.clear(slot)

    async def probe(self, external_id: str) -> bool:
        """One attribute read (LockState) from the lock itself."""
        lock = self._locks.get(external_id)
        if lock is None or lock.removed or self._link is None:
            return False
        try:
            await lock.codes.commands.read(mapping.ATTR_LOCK_STATE,
                                           timeout_s=self._config.probe_timeout_s)
        except DriverError as exc:
            _LOG.debug("matter %s: node %d did not answer a probe: %s", self.name, lock.node_id,
                       exc)
            return False
        if not lock.available:
            lock.available = True
            self._events.availability(external_id, self.availability(external_id))
        return True

    # -- one WebSocket session --------------------------------------------------------------

    async def _session(self, established: Callable[[], None]) -> None:
        assert self._http is not None
        try:
            link = await MatterLink.connect(self._http, self._config.url,
                                            self._config.connect_timeout_s)
        except (TimeoutError, aiohttp.ClientError, ValueError) as exc:
            raise RetryLater(f"cannot connect to the Matter server: {exc or type(exc)}") \
                from exc
        pump = asyncio.create_task(link.pump(self._on_server_event),
                                   name=f"matter:{self.name}:ws")
        try:
            async with asyncio.timeout(self._config.connect_timeout_s):
                nodes = await link.call("start_listening")
            self._link = link
            self._adopt_all(nodes if isinstance(nodes, list) else [])
            established()
            self._synced.set()
            _LOG.info("matter %s: connected to fabric %s: %d locks", self.name,
                      link.server_info.get("fabric_id"), len(self._locks))
            await pump
        finally:
            self._link = None
            await link.close()
            await cancel_and_wait(pump)
            for external_id in self._locks:
                self._events.availability(external_id, self.availability(external_id))

    def _adopt_all(self, nodes: list[Any]) -> None:
        present = set()
        for node in nodes:
            present.update(self._adopt(node))
        for external_id, lock in self._locks.items():
            if external_id not in present and not lock.removed:
                lock.removed = True
                _LOG.warning("matter %s: node %d is no longer on the server", self.name,
                             lock.node_id)
        for external_id in self._locks:
            self._events.availability(external_id, self.availability(external_id))

    def _adopt(self, node: Any) -> list[str]:
        """Record a node's Door Lock endpoints; their external ids."""
        if not isinstance(node, dict) or not isinstance(node.get("node_id"), int):
            return []
        node_id: int = node["node_id"]
        attributes = node.get("attributes") or {}
        settings = self._config.node(node_id)
        if settings.ignore:
            return []
        adopted = []
        for endpoint in mapping.door_lock_endpoints(attributes):
            info = mapping.describe(
                node_id, endpoint, attributes, name=settings.name,
                time_zone=settings.time_zone or self._config.time_zone,
                native_schedules=settings.native_schedules,
                command_spacing_s=self._config.command_spacing_s)
            lock = self._locks.get(info.external_id)
            if lock is None or lock.info != info:
                self._events.emit(DriverEvent(DriverEventKind.DEVICES_CHANGED,
                                              info.external_id))
            if lock is None:
                commands = DoorLockCommands(
                    lambda: self._link, self._clock, node_id, endpoint, self._policy,
                    on_offline=functools.partial(self._went_offline, info.external_id))
                fabric = attributes.get(mapping.path(0, mapping.OPERATIONAL_CREDENTIALS,
                                                     mapping.ATTR_CURRENT_FABRIC))
                lock = _Lock(node_id, endpoint, info, LockCodes(
                    commands, fabric if isinstance(fabric, int) else 1,
                    mapping.profile(attributes, endpoint).total_users))
                self._locks[info.external_id] = lock
            lock.info = info
            lock.attributes = dict(attributes)
            lock.removed = False
            lock.available = bool(node.get("available"))
            adopted.append(info.external_id)
        return adopted

    # -- the server's events ----------------------------------------------------------------

    def _on_server_event(self, name: str, data: Any) -> None:
        if name in ("node_added", "node_updated"):
            for external_id in self._adopt(data):
                self._events.availability(external_id, self.availability(external_id))
        elif name == "node_removed":
            for external_id, lock in self._locks.items():
                if lock.node_id == data and not lock.removed:
                    _LOG.warning("matter %s: node %d left the fabric", self.name, lock.node_id)
                    lock.removed = True
                    self._events.availability(external_id, Availability.REMOVED)
        elif name == "node_event" and isinstance(data, dict):
            self._on_node_event(data)
        elif name == "attribute_updated" and isinstance(data, list) and len(data) == 3:
            self._on_attribute(*data)

    def _on_attribute(self, node_id: object, attribute_path: object, value: object) -> None:
        """Locked or unlocked, door open or closed: the lock's state in its description."""
        for lock in self._locks.values():
            if lock.node_id != node_id or not isinstance(attribute_path, str):
                continue
            lock.attributes[attribute_path] = value
            state = mapping.lock_state(lock.attributes, lock.endpoint)
            if state != lock.info.state:
                lock.info = replace(lock.info, state=state)
                self._events.emit(DriverEvent(DriverEventKind.DEVICES_CHANGED,
                                              lock.info.external_id))

    def _on_node_event(self, data: dict[str, Any]) -> None:
        if data.get("cluster_id") != mapping.DOOR_LOCK:
            return
        lock = self._locks.get(mapping.external_id(data.get("node_id", -1),
                                                   data.get("endpoint_id", -1)))
        event_id = data.get("event_id")
        news = mapping.door_event(event_id if isinstance(event_id, int) else -1,
                                  data.get("data"))
        if lock is None or news is None:
            return
        external_id = lock.info.external_id
        if news.slot_changed is not None:
            fabric = (data.get("data") or {}).get("fabricIndex")
            if news.external or fabric not in (None, lock.codes.fabric):
                lock.codes.changed.add(news.slot_changed)
            self._events.emit(DriverEvent(DriverEventKind.SLOT_CHANGED, external_id,
                                          slot=news.slot_changed))
        elif news.keypad_slot is not None:
            self._events.emit(DriverEvent(DriverEventKind.KEYPAD_USED, external_id,
                                          slot=news.keypad_slot))
        elif news.unlock_method is not None:
            self._events.emit(DriverEvent(DriverEventKind.UNLOCKED, external_id,
                                          detail={"method": news.unlock_method}))

    def _went_offline(self, external_id: str) -> None:
        lock = self._locks.get(external_id)
        if lock is not None and lock.available:
            _LOG.warning("matter %s: node %d is not ready on the server", self.name,
                         lock.node_id)
            lock.available = False
            self._events.availability(external_id, self.availability(external_id))

    def _on_link_state(self, state: LinkState) -> None:
        if state in (LinkState.BACKING_OFF, LinkState.REFUSED):
            self._attempt_failed.set()

    def _usable(self, external_id: str) -> _Lock:
        lock = self._locks.get(external_id)
        if lock is None or lock.removed:
            raise RetryLater(f"no Matter lock {external_id} on the server")
        if self._link is None:
            raise RetryLater("the Matter server is not connected")
        return lock


def _classify(error: BaseException) -> FailureKind:
    """An unusable configuration is not retried quickly; everything else is."""
    return FailureKind.REFUSED if isinstance(error, FixConfig | Reauthenticate) \
        else FailureKind.TRANSIENT

