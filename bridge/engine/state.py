"""The engine's in-memory view of devices and codes, its indexes, and the one committer.

Every change goes through `EngineState.commit`: the records and the events they cause are
written in one store transaction, then memory follows, then listeners hear of the events.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Iterable
from datetime import datetime
from typing import TYPE_CHECKING, Any

from bridge.clock import Clock
from bridge.engine.errors import EngineError, ErrorKind
from bridge.engine.ids import new_id
from bridge.logs import REDACTOR
from bridge.model import AccessCodeStatus, Event, EventType
from bridge.planner import Policy, needs_no_plan, with_status
from bridge.records import CodeRecord, DeviceRecord, replace_code
from bridge.store import Intent, Store, Tx

if TYPE_CHECKING:
    from bridge.engine.requests import Receipt
    from bridge.engine.worker import LockWorker

EventListener = Callable[[list[Event]], Awaitable[None] | None]


class _PlanSplit:
    """One lock's codes the planner must walk (`needs_no_plan` is False for them under
    `device`), in the order of the lock's codes once `ordered` is True again."""

    __slots__ = ("device", "ordered", "unsettled")

    def __init__(self, device: DeviceRecord, unsettled: dict[str, CodeRecord]) -> None:
        self.device = device
        self.unsettled = unsettled
        self.ordered = True


class EngineState:
    """Devices and codes as committed, indexed by device and by driver id, with one
    `asyncio.Lock` per device that every read-modify-commit of that device's records holds."""

    def __init__(self, store: Store, clock: Clock, policy: Policy,
                 clock_synchronized: Callable[[], bool]) -> None:
        self.store = store
        self.clock = clock
        self.policy = policy
        self.clock_synchronized = clock_synchronized
        self.devices: dict[str, DeviceRecord] = {}
        self.codes: dict[str, CodeRecord] = {}
        # device_id -> its codes, kept in step with `codes` so per-lock work is not O(all codes).
        self._by_device: dict[str, dict[str, CodeRecord]] = {}
        # (driver name, the driver's id of the lock) -> device_id
        self.by_external: dict[tuple[str, str], str] = {}
        # One worker per registered lock; every part wakes a lock through it.
        self.workers: dict[str, LockWorker] = {}
        self._locks: dict[str, asyncio.Lock] = {}
        self._listeners: list[EventListener] = []
        # device_id -> ids of its codes committed since housekeeping last took them (see
        # `take_changed`): upkeep looks again only at what changed, not at every code.
        self._changed: dict[str, set[str]] = {}
        # Commits whose callers were cancelled, followed to memory and listeners (see commit).
        self._following: set[asyncio.Task[None]] = set()
        # device_id -> its codes the planner must look at (see `planning_codes`), made on first
        # use and kept in step by every commit.
        self._plan: dict[str, _PlanSplit] = {}

    def load(self, devices: Iterable[DeviceRecord], codes: Iterable[CodeRecord]) -> None:
        """Replace memory with what the store holds."""
        devices = list(devices)
        self.devices = {d.device_id: d for d in devices}
        by_id: dict[str, CodeRecord] = {}
        by_device: dict[str, dict[str, CodeRecord]] = {}
        pins: set[str | None] = set()
        # One pass over the codes (30,000 at a big bridge's start) fills every index.
        for code in codes:
            code_id = code.access_code_id
            by_id[code_id] = code
            of_device = by_device.get(code.device_id)
            if of_device is None:
                of_device = by_device[code.device_id] = {}
            of_device[code_id] = code
            pins.add(code.code)
            pins.add(code.on_lock_pin)
        self.codes = by_id
        self._by_device = by_device
        self._changed = {}
        self._plan = {}
        # Each PIN once: a converged code's PIN and on-lock PIN are one object, and codes
        # share PINs (30,000 codes made 60,000 calls, 13 ms, at startup).
        for pin in pins:
            REDACTOR.remember(pin)
        for device in devices:
            self.by_external[(device.driver, device.external_id)] = device.device_id

    # -- lookups --------------------------------------------------------------------------

    def device(self, device_id: str, managed: bool = True) -> DeviceRecord:
        """A managed (or, if asked, unmanaged) device, or EngineError device_not_found."""
        device = self.devices.get(device_id)
        if device is None or device.is_managed != managed:
            raise EngineError(ErrorKind.DEVICE_NOT_FOUND, f"Device {device_id} not found",
                              "device_id")
        return device

    def code(self, access_code_id: str, managed: bool = True) -> CodeRecord:
        """A code, or EngineError access_code_not_found."""
        code = self.codes.get(access_code_id)
        if code is None or code.is_managed != managed or (code.deleted and not code.on_lock
                                                          and managed):
            raise EngineError(ErrorKind.ACCESS_CODE_NOT_FOUND,
                              f"Access code {access_code_id} not found", "access_code_id")
        return code

    def codes_of(self, device_id: str) -> list[CodeRecord]:
        """Every code of one device, managed and unmanaged, oldest first."""
        return list(self._by_device.get(device_id, {}).values())

    def planning_codes(self, device: DeviceRecord) -> list[CodeRecord]:
        """The lock's codes that `next_command` and `next_wakeup` must see, oldest first: all
        of them but those that `needs_no_plan` under `device`, which add nothing at any time.
        Each of a lock's worker steps asked the planner over every code of the lock (37
        `holds_wanted` a code in the cold converge); a commit now sorts only the codes it
        changes. For a record of the lock that is not the current one, every code."""
        device_id = device.device_id
        split = self._plan.get(device_id)
        if split is None or split.device is not device:
            if self.devices.get(device_id) is not device:
                return self.codes_of(device_id)
            of_device = self._by_device.get(device_id, {})
            split = self._plan[device_id] = _PlanSplit(device, {
                code_id: code for code_id, code in of_device.items()
                if not needs_no_plan(code, device)})
        elif not split.ordered:
            # A code that needs the planner again was kept further back: the lock's order.
            unsettled = split.unsettled
            split.unsettled = {code_id: code
                               for code_id, code in self._by_device.get(device_id, {}).items()
                               if code_id in unsettled}
            split.ordered = True
        return list(split.unsettled.values())

    def lock_code(self, device_id: str, access_code_id: str) -> CodeRecord | None:
        """One code among a device's codes (those `codes_of` lists), or None."""
        of_device = self._by_device.get(device_id)
        return of_device.get(access_code_id) if of_device is not None else None

    def take_changed(self, device_id: str) -> set[str]:
        """Ids of the device's codes committed since the last call (the caller's to look at)."""
        return self._changed.pop(device_id, set())

    def code_in_slot(self, device_id: str, slot: int | None) -> CodeRecord | None:
        """The code the bridge has in one slot of a lock, if any."""
        for code in self.codes_of(device_id):
            if slot is not None and code.slot == slot:
                return code
        return None

    # -- per-device serialisation and wake-ups ---------------------------------------------

    def lock_for(self, device_id: str) -> asyncio.Lock:
        """The lock every change to one device's records is made under."""
        lock = self._locks.get(device_id)
        if lock is None:
            lock = self._locks[device_id] = asyncio.Lock()
        return lock

    def wake(self, device_id: str) -> None:
        """Tell a lock's worker that something changed."""
        worker = self.workers.get(device_id)
        if worker is not None:
            worker.wake.set()

    # -- building changes -------------------------------------------------------------------

    def event(self, kind: EventType, device_id: str | None, access_code_id: str | None,
              data: dict[str, Any]) -> Event:
        """A new event, stamped now."""
        return Event(event_id=new_id(), event_type=kind, occurred_at=self.clock.now(),
                     device_id=device_id, access_code_id=access_code_id, data=data)

    def refresh(self, code: CodeRecord, device: DeviceRecord, now: datetime) -> CodeRecord:
        """The code with its status derived again, `pending_since` following it."""
        updated = with_status(code, device, now, self.policy)
        if updated.status in (AccessCodeStatus.SETTING, AccessCodeStatus.REMOVING):
            if updated.pending_since is None:
                updated = replace_code(updated, pending_since=now)
        elif updated.pending_since is not None:
            updated = replace_code(updated, pending_since=None)
        return updated

    # -- the committer ----------------------------------------------------------------------

    def subscribe(self, listener: EventListener) -> None:
        """Call `listener` with every batch of committed events."""
        self._listeners.append(listener)

    async def commit(
        self, *, codes: Iterable[CodeRecord] = (), devices: Iterable[DeviceRecord] = (),
        events: Iterable[Event] = (), drop: Iterable[str] = (),
        intents: Iterable[Intent] = (), drop_intents: Iterable[tuple[str, int]] = (),
        receipt: Receipt | None = None,
    ) -> list[Event]:
        """Persist changes and their events (and a caller's `receipt`) in one transaction,
        then update memory."""
        codes, devices, events = list(codes), list(devices), list(events)
        drop, intents, drop_intents = list(drop), list(intents), list(drop_intents)
        if not (codes or devices or events or drop or intents or drop_intents
                or receipt is not None):
            return []

        def apply(tx: Tx) -> None:
            for device in devices:
                tx.put_device(device)
            for code in codes:
                tx.put_code(code)
            for code_id in drop:
                tx.drop_code(code_id)
            for event in events:
                tx.add_event(event)
            for intent in intents:
                tx.put_intent(intent)
            for device_id, slot in drop_intents:
                tx.drop_intent(device_id, slot)
            if receipt is not None:
                receipt.record(tx)

        # A caller cancelled while SQLite commits would leave the change on disk but not in
        # memory, and the listeners (the upstream links) would not hear of its events until
        # some later commit. Once asked for, a change lands in all three: the store tells
        # `_follow_later` of a write that ran after its caller was cancelled. (No
        # `asyncio.shield` per commit: its outer future and two callbacks were a twentieth of
        # the event loop's CPU in the cold converge, three commits a code.)
        written = self.store.submit(
            apply, lambda outcome: self._follow_later(outcome, codes, devices, drop))
        try:
            _, appended = await written
        except asyncio.CancelledError:
            if written.done() and not written.cancelled() and written.exception() is None:
                # The write had landed; the cancellation came before this caller resumed.
                self._follow_later(written.result(), codes, devices, drop)
            raise
        self._remember(codes, devices, drop)
        if appended:
            telling = self._tell(appended)
            if telling is not None:
                await asyncio.shield(telling)
        return appended

    def _follow_later(self, outcome: tuple[None, list[Event]] | BaseException,
                      codes: list[CodeRecord], devices: list[DeviceRecord],
                      drop: list[str]) -> None:
        """The caller of a commit was cancelled and its write ran: memory and the listeners
        follow it, in a task of their own (a failed write changes nothing)."""
        if isinstance(outcome, BaseException):
            return
        _, appended = outcome

        async def follow() -> None:
            self._remember(codes, devices, drop)
            if appended:
                telling = self._tell(appended)
                if telling is not None:
                    await telling

        task = asyncio.get_running_loop().create_task(follow())
        self._following.add(task)
        task.add_done_callback(self._followed)

    def _followed(self, task: asyncio.Task[None]) -> None:
        # Nobody awaits it: a failed write or listener was the cancelled caller's to hear of,
        # as when the whole commit ran in a shielded task.
        self._following.discard(task)
        if not task.cancelled():
            task.exception()

    def _tell(self, appended: list[Event]) -> Awaitable[None] | None:
        """Hand committed events to every listener in turn; from the first listener that
        answers with an awaitable on, what is left to await (None when every one was
        synchronous)."""
        for index, listener in enumerate(self._listeners):
            result = listener(appended)
            if result is not None:
                return self._tell_rest(result, appended, index + 1)
        return None

    async def _tell_rest(self, pending: Awaitable[None], appended: list[Event],
                         start: int) -> None:
        await pending
        for listener in self._listeners[start:]:
            result = listener(appended)
            if result is not None:
                await result

    def _remember(self, codes: list[CodeRecord], devices: list[DeviceRecord],
                  drop: list[str]) -> None:
        for device in devices:
            self.devices[device.device_id] = device
        for code in codes:
            code_id = code.access_code_id
            self.codes[code_id] = code
            of_device = self._by_device.setdefault(code.device_id, {})
            new_to_lock = code_id not in of_device
            of_device[code_id] = code
            self._changed.setdefault(code.device_id, set()).add(code_id)
            split = self._plan.get(code.device_id)
            if split is not None:
                self._replan(split, code, new_to_lock)
        for code_id in drop:
            gone = self.codes.pop(code_id, None)
            if gone is not None:
                self._by_device.get(gone.device_id, {}).pop(code_id, None)
                split = self._plan.get(gone.device_id)
                if split is not None:
                    split.unsettled.pop(code_id, None)

    @staticmethod
    def _replan(split: _PlanSplit, code: CodeRecord, new_to_lock: bool) -> None:
        """Keep a lock's planning codes in step with one committed code (under the split's
        record of the lock; `planning_codes` starts again for a newer one)."""
        code_id = code.access_code_id
        unsettled = split.unsettled
        if needs_no_plan(code, split.device):
            unsettled.pop(code_id, None)
            return
        if not (new_to_lock or code_id in unsettled):
            # Back among them after a while settled: its place is no longer the last.
            split.ordered = False
        unsettled[code_id] = code
