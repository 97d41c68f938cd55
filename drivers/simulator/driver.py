"""The simulator as a `LockDriver`, optionally keeping its locks' slots in a JSON file."""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import tempfile
from collections.abc import Awaitable, Coroutine, Sequence
from datetime import datetime
from pathlib import Path
from typing import Any, TypeVar

from bridge.clock import Clock
from bridge.driver import (
    Availability,
    CodeWrite,
    DeviceInfo,
    DriverEvent,
    DriverEventKind,
    DriverEventSink,
    FixConfig,
    LocalWindow,
    RetryLater,
    SlotRead,
    WriteResult,
)
from drivers.simulator.control import POLL_S, ControlCommand, ControlFile
from drivers.simulator.lock import SimLock, SimLockSpec, SimSlot
from drivers.tasks import cancel_and_wait

_LOG = logging.getLogger(__name__)
_T = TypeVar("_T")


class SimulatorDriver:
    """Simulated locks behind one driver; a test reaches each through `lock(id)`."""

    def __init__(
        self, name: str, specs: Sequence[SimLockSpec], clock: Clock, state_file: Path | None = None,
        control_file: Path | None = None,
    ) -> None:
        self.name = name
        self._clock = clock
        self._state_file = state_file
        self._control = ControlFile(control_file) if control_file is not None else None
        self._control_task: asyncio.Task[None] | None = None
        # The state file is behind the locks (a save failed, e.g. on a full disk).
        self._unsaved = False
        self._locks = {s.lock_id: SimLock(spec=s, clock=clock) for s in specs}
        self._sink: DriverEventSink | None = None
        self._last_availability: dict[str, Availability] = {}

    async def start(self, sink: DriverEventSink) -> None:
        """Load persisted slots and start reporting."""
        self._sink = sink
        if self._state_file is not None and self._state_file.exists():
            self._load()
        for lock_id, lock in self._locks.items():
            self._last_availability[lock_id] = lock.current_availability()
        if self._control is not None and self._control_task is None:
            self._control.skip_existing()
            self._control_task = asyncio.create_task(self._follow_control(),
                                                     name=f"sim-control:{self.name}")

    async def stop(self) -> None:
        """Stop following the control file."""
        task, self._control_task = self._control_task, None
        await cancel_and_wait(task)
        self._sink = None

    def devices(self) -> Sequence[DeviceInfo]:
        """Every configured simulated lock."""
        return [lock.info() for lock in self._locks.values()]

    def availability(self, external_id: str) -> Availability:
        """Availability now."""
        _chaos(self.lock(external_id), "availability")
        return self.lock(external_id).current_availability()

    def lock(self, external_id: str) -> SimLock:
        """The simulated lock, for fault injection."""
        try:
            return self._locks[external_id]
        except KeyError:
            raise FixConfig(f"no simulated lock {external_id!r}") from None

    async def read_slots(self, external_id: str, slots: Sequence[int]) -> list[SlotRead]:
        """Read slots."""
        return await self._guard(external_id, self.lock(external_id).read(list(slots)))

    async def list_codes(self, external_id: str) -> list[SlotRead]:
        """Every occupied slot."""
        return await self._guard(external_id, self.lock(external_id).read_all())

    async def write_code(self, external_id: str, code: CodeWrite) -> WriteResult:
        """Program one code and persist the lock's slots."""
        result = await self._guard(external_id, self.lock(external_id).write(code))
        self._save()
        return result

    async def clear_code(self, external_id: str, slot: int) -> None:
        """Clear one slot and persist the lock's slots."""
        await self._guard(external_id, self.lock(external_id).clear(slot))
        self._save()

    async def probe(self, external_id: str) -> bool:
        """One round trip."""
        _chaos(self.lock(external_id), "probe")
        ok = await self.lock(external_id).probe()
        await self._note_availability(external_id)
        return ok

    # -- fault injection that the bridge hears about, as it would from a real lock -----------

    async def keypad_set(self, external_id: str, slot: int, pin: str) -> None:
        """A code typed in at the keypad; the lock reports the slot changed."""
        self.lock(external_id).keypad_set(slot, pin)
        self._save()
        await self._emit(DriverEvent(DriverEventKind.SLOT_CHANGED, external_id, slot=slot))

    async def keypad_clear(self, external_id: str, slot: int) -> None:
        """A code deleted at the keypad; the lock reports the slot changed."""
        self.lock(external_id).keypad_clear(slot)
        self._save()
        await self._emit(DriverEvent(DriverEventKind.SLOT_CHANGED, external_id, slot=slot))

    async def keypad_use(self, external_id: str, slot: int) -> None:
        """Someone unlocked with the code in `slot`."""
        await self._emit(DriverEvent(DriverEventKind.KEYPAD_USED, external_id, slot=slot))

    async def set_availability(self, external_id: str, availability: Availability) -> None:
        """Take a lock offline, disconnect its account, or bring it back, and report it."""
        lock = self.lock(external_id)
        if availability is Availability.ONLINE:
            lock.come_online()
        elif availability is Availability.ACCOUNT_DISCONNECTED:
            lock.disconnect_account()
        else:
            lock.go_offline()
            lock.availability = availability
        await self._note_availability(external_id)

    async def apply_control(self, command: ControlCommand) -> None:
        """One command of the control file (docs/configuration.md, simulator `control_file`)."""
        if command.lock not in self._locks:
            _LOG.warning("simulator %s control: no lock %r", self.name, command.lock)
            return
        lock = self._locks[command.lock]
        if command.op == "offline":
            await self.set_availability(command.lock, Availability.OFFLINE)
        elif command.op == "online":
            await self.set_availability(command.lock, Availability.ONLINE)
        elif command.op == "refuse":
            lock.fail_sets = lock.fail_clears = max(0, command.count)
        elif command.op == "latency":
            lock.spec.latency_s = max(0.0, command.seconds)
        elif command.op == "wipe":
            lock.wipe()
            self._save()
        elif command.op == "keypad_set" and command.pin:
            await self.keypad_set(command.lock, command.slot, command.pin)
        elif command.op == "keypad_clear":
            await self.keypad_clear(command.lock, command.slot)
        _LOG.info("simulator %s control: %s on %s", self.name, command.op, command.lock)

    # -- internals ------------------------------------------------------------------------

    async def _follow_control(self) -> None:
        assert self._control is not None
        while True:
            for command in self._control.read_new():
                try:
                    await self.apply_control(command)
                except Exception:  # e.g. the state file could not be saved: keep following
                    _LOG.exception("simulator %s control: %s failed", self.name, command.op)
            if self._unsaved:
                # A lock is hardware: what it holds must reach the file once the disk has room.
                with contextlib.suppress(OSError):
                    self._save()
            await self._clock.sleep(POLL_S)

    async def _guard(self, external_id: str, op: Awaitable[_T]) -> _T:
        lock = self.lock(external_id)
        try:
            _chaos(lock, "before the command")
            result = await op
            _chaos(lock, "after the command")
            return result
        finally:
            if isinstance(op, Coroutine):
                op.close()  # not awaited when chaos struck first
            await self._note_availability(external_id)

    async def _note_availability(self, external_id: str) -> None:
        now = self.lock(external_id).current_availability()
        if self._last_availability.get(external_id) is not now:
            self._last_availability[external_id] = now
            await self._emit(
                DriverEvent(DriverEventKind.AVAILABILITY, external_id, availability=now)
            )

    async def _emit(self, event: DriverEvent) -> None:
        # The one driver that awaits the engine directly: a test double whose fault hooks
        # (keypad_set, set_availability) are steps of a test that must have taken effect when
        # they return. Real drivers queue through drivers.events.EventPump.
        if self._sink is not None:
            await self._sink(event)

    def _save(self) -> None:
        if self._state_file is None:
            return
        self._unsaved = True
        doc = {
            lock_id: {
                "slots": {
                    str(n): {
                        "pin": s.pin,
                        "name": s.name,
                        "key": s.key,
                        "window": [s.window.starts_at.isoformat(), s.window.ends_at.isoformat()]
                        if s.window
                        else None,
                    }
                    for n, s in lock.slots.items()
                },
                # How often each slot was written, ever: lets tests prove nothing was set twice.
                "writes": {str(n): count for n, count in lock.writes.items()},
            }
            for lock_id, lock in self._locks.items()
        }
        # A simulated lock is "hardware": its memory must survive the daemon being killed.
        fd, tmp = tempfile.mkstemp(dir=self._state_file.parent, prefix=".sim-")
        try:
            with os.fdopen(fd, "w") as fh:
                json.dump(doc, fh)
                fh.flush()
                os.fsync(fh.fileno())
            os.replace(tmp, self._state_file)
        except BaseException:
            with contextlib.suppress(OSError):
                os.unlink(tmp)
            raise
        self._unsaved = False

    def _load(self) -> None:
        assert self._state_file is not None
        try:
            doc = json.loads(self._state_file.read_text())
        except (OSError, ValueError) as exc:
            raise RetryLater(f"cannot read simulator state {self._state_file}: {exc}") from exc
        for lock_id, saved in doc.items():
            lock = self._locks.get(lock_id)
            if lock is None:
                continue
            lock.writes = {int(n): count for n, count in saved.get("writes", {}).items()}
            lock.slots = _slots_from_json(saved["slots"])
        _LOG.info("simulator %s: loaded slots of %d locks", self.name, len(doc))


def _slots_from_json(saved: dict[str, dict[str, Any]]) -> dict[int, SimSlot]:
    """A lock's slots as `_save` wrote them. A plain loop with positional arguments: 30,000
    slots (1,000 locks) took 14 ms through keyword arguments in a comprehension, 9 ms so."""
    slots: dict[int, SimSlot] = {}
    for number, held in saved.items():
        window = held.get("window")
        slots[int(number)] = SimSlot(
            held["pin"], held["name"],
            LocalWindow(datetime.fromisoformat(window[0]), datetime.fromisoformat(window[1]))
            if window else None,
            held.get("key"))
    return slots


# What a buggy driver or library raises, by type: none of them is a DriverError.
_CHAOS_TYPES: tuple[type[Exception], ...] = (
    RuntimeError, KeyError, ValueError, TypeError, AttributeError, IndexError,
    ZeroDivisionError, AssertionError, OSError, UnicodeDecodeError,
)


def _chaos(lock: SimLock, where: str) -> None:
    """Raise one of the unexpected exception types with the lock's chaos chance."""
    if lock.chaos <= 0 or lock.chaos_random().random() >= lock.chaos:
        return
    kind = lock.chaos_random().choice(_CHAOS_TYPES)
    if kind is UnicodeDecodeError:
        raise UnicodeDecodeError("utf-8", b"\xff", 0, 1, f"simulated driver bug {where}")
    raise kind(f"simulated driver bug {where}")


def load_state_file(path: Path) -> dict[str, dict[int, str]]:
    """Read a simulator state file as {lock_id: {slot: pin}}; for tests and the demo."""
    doc = json.loads(path.read_text())
    return {lid: {int(n): s["pin"] for n, s in saved["slots"].items()}
            for lid, saved in doc.items()}


def load_write_counts(path: Path) -> dict[str, dict[int, int]]:
    """How many times each slot of each simulated lock was ever written."""
    doc = json.loads(path.read_text())
    return {lid: {int(n): c for n, c in saved.get("writes", {}).items()}
            for lid, saved in doc.items()}
