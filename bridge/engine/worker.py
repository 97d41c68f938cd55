"""One `LockWorker` per lock: what that lock's work has in hand (reads due, commands in flight,
backoffs), and the loop that steps it: probe an unreachable lock, else read or send one command,
paced, then wait for the next thing due or a wake-up."""

from __future__ import annotations

import asyncio
import logging
import random
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from bridge.backoff import Backoff, Throttle
from bridge.clock import Clock
from bridge.driver import Addressing, Availability, DriverError, LockDriver
from bridge.engine.faults import FAULT_WARNING_HOLD_S
from bridge.engine.gateway import ChangeCheck, DriverGateway
from bridge.planner import Command, CommandKind, Policy, next_command, next_wakeup
from bridge.records import CodeRecord, DeviceRecord
from bridge.store import Intent, StoreUnavailable

if TYPE_CHECKING:
    from bridge.engine.availability import AvailabilityTracker
    from bridge.engine.commands import CommandSender
    from bridge.engine.faults import Faults
    from bridge.engine.housekeeping import Housekeeping
    from bridge.engine.reads import ReadApplier
    from bridge.engine.state import EngineState

_LOG = logging.getLogger("bridge.engine")

# How long a lock's worker waits before retrying a step the store could not record.
STORE_RETRY_S = 5.0
# Time allowed per slot when a lock's every slot is read (one radio round trip each on Z-Wave
# and Zigbee locks reached over MQTT, measured at 1.2 to 1.9 s per slot).
FULL_READ_S_PER_SLOT = 2.0
READ_FAILURES_WORTH_A_WARNING = 3
# How often the managed slots of a lock that cannot tell whether its codes changed are read again,
# where its driver saves radio frames (`ChangeCheck`): once a day, keypad changes in between
# arriving as the lock's own reports (a battery lock's radio wakes for every frame).
SWEEP_INTERVAL_S = 86_400.0
# A worker that hit an unexpected exception starts again after 1 s, doubling up to 5 minutes.
FAULT_RESTART = Backoff(1.0, 300.0)
# How soon a change a cloud still has on its way to the lock is looked for again, once its
# confirmation window is over: from half a second, doubling, up to 30 s.
PENDING_REREAD = Backoff(0.5, 30.0)


class Wake:
    """A lock worker's wake-up flag: `set` by whoever changed something for the lock, taken by
    its worker's `LockWorker.wait` (its only waiter). Smaller than an asyncio.Event (no deque of
    waiters), one per lock."""

    __slots__ = ("_set", "waiter")

    def __init__(self) -> None:
        self._set = False
        # The future of the worker's wait in progress, if any.
        self.waiter: asyncio.Future[bool] | None = None

    def set(self) -> None:
        """Wake the worker (now if it waits, else at its next wait)."""
        self._set = True
        if self.waiter is not None:
            _resolve(self.waiter, True)

    def is_set(self) -> bool:
        """True when a wake-up is waiting to be taken."""
        return self._set

    def clear(self) -> None:
        """Take the wake-up."""
        self._set = False


def _resolve(future: asyncio.Future[bool], value: bool) -> None:
    if not future.done():
        future.set_result(value)


@dataclass(slots=True)
class LockWorker:
    """What one lock's work has in hand."""

    device_id: str
    # Probes of the lock while it is not online.
    probes: Throttle
    # Reads that fail while the lock still reports itself online (a marginal mesh, a lock that
    # cannot answer reads) back off instead of being retried at every step.
    read_failures: Throttle
    wake: Wake = field(default_factory=Wake)
    pending_reads: set[int] = field(default_factory=set)
    full_read: bool = True
    next_probe_at: float = 0.0
    last_command_at: float | None = None
    intents: dict[int, Intent] = field(default_factory=dict)
    # When reads may go on (failing reads and changes still on their way push it out).
    reads_resume_at: float = 0.0
    # Reads in a row that found a change still on its way to the lock (see ReadApplier).
    pending_polls: Throttle = field(default_factory=lambda: Throttle(PENDING_REREAD))
    busy: bool = False
    waiting: bool = False
    # Unexpected exceptions in a row on this lock (see WorkerLoop.run), and when the last was.
    faults: Throttle = field(default_factory=lambda: Throttle(FAULT_RESTART))
    last_fault_at: float = 0.0
    # Slot reads that showed something (a PIN, or empty) and that showed nothing at all: a lock
    # whose every read is unreadable cannot be read back (see ReadApplier.note_readability).
    readable_reads: int = 0
    unreadable_reads: int = 0
    # When the lock's slots were last read whole or swept (clock.monotonic()), if ever.
    last_sweep_at: float | None = None
    # Slots read ahead of the walk of every slot now due (`full_read`): the managed codes' own.
    scan_read: set[int] = field(default_factory=set)
    # The lock was listed whole since the engine started. Managed slots go first only in that
    # first scan: after an outage a radio driver lists from what its session read (no frame
    # for a short one), where reading the managed slots first would cost one frame each.
    walked: bool = False

    @classmethod
    def for_lock(cls, device_id: str, policy: Policy) -> LockWorker:
        """A new lock's worker, backing off as `policy` says."""
        return cls(device_id, probes=Throttle(policy.probe_backoff),
                   read_failures=Throttle(policy.retry_backoff))

    async def wait(self, clock: Clock, seconds: float) -> bool:
        """Sleep on the clock until `seconds` pass or the worker is woken; True if woken."""
        if self.wake.is_set():
            self.wake.clear()
            return True
        self.waiting = True
        # One future, resolved by whichever comes first: the wake-up (True) or the clock's
        # timer (False). Two tasks and an asyncio.wait per sleeping lock cost about 2 KB each.
        woken: asyncio.Future[bool] = asyncio.get_running_loop().create_future()
        self.wake.waiter = woken
        timer = clock.call_later(seconds, _resolve, woken, False)
        try:
            await woken
        finally:
            # Also when cancelled: the timer must not outlive the wait, nor the wake-up
            # resolve a future nobody awaits.
            timer.cancel()
            self.wake.waiter = None
            self.waiting = False
        self.wake.clear()
        return woken.result()

    async def pace(self, clock: Clock, spacing: float) -> None:
        """One command at a time per lock, at least `spacing` seconds apart."""
        if self.last_command_at is not None:
            remaining = self.last_command_at + spacing - clock.monotonic()
            if remaining > 0:
                await clock.sleep(remaining)
        self.last_command_at = clock.monotonic()


class WorkerLoop:
    """Runs a lock's worker under one fault boundary."""

    def __init__(self, state: EngineState, gateway: DriverGateway, faults: Faults,
                 availability: AvailabilityTracker, housekeeping: Housekeeping,
                 commands: CommandSender, reads: ReadApplier, rng: random.Random, *,
                 default_spacing_s: float, reconcile_interval_s: float) -> None:
        self._state = state
        self._gateway = gateway
        self._faults = faults
        self._availability = availability
        self._housekeeping = housekeeping
        self._commands = commands
        self._reads = reads
        self._rng = rng
        self._default_spacing = default_spacing_s
        self._reconcile_interval = reconcile_interval_s

    async def run(self, device_id: str) -> None:
        """One lock's worker under one fault boundary: whatever our code or the driver raises
        stays with this lock. It is logged, counted and shown on the lock, and the worker starts
        again after a capped, jittered pause; other locks, the API and the upstream carry on."""
        clock = self._state.clock
        worker = self._state.workers[device_id]
        while True:
            try:
                await self._work_once(worker)
            except asyncio.CancelledError:
                raise
            except StoreUnavailable:
                # The store logs the outage once; nothing was committed, so the step is simply
                # planned again once the store can write.
                await worker.wait(clock, STORE_RETRY_S)
            except Exception as exc:  # the boundary itself
                await self._faults.note(device_id, exc, "the lock's worker")
                await clock.sleep(worker.faults.backoff.delay(worker.faults.failures,
                                                              self._rng))
                self._faults.resume_after(worker)
            else:
                if worker.faults.failures and clock.monotonic() - worker.last_fault_at \
                        >= FAULT_WARNING_HOLD_S:
                    await self._faults.cleared(device_id)

    async def _work_once(self, worker: LockWorker) -> None:
        """One pass: probe an unreachable lock, or take one step and wait for the next."""
        state = self._state
        device_id = worker.device_id
        device = state.devices[device_id]
        driver = self._gateway.driver_of(device)
        if not device.online:
            await self._housekeeping.run(device_id)
            await self._probe_step(worker, device, driver)
            return
        if await self._step(worker, device, driver):
            return
        now = state.clock.now()
        wake_at = next_wakeup(device, state.planning_codes(device), now, state.policy)
        timeout = self._reconcile_interval
        if wake_at is not None:
            timeout = min(timeout, max(0.0, (wake_at - now).total_seconds()))
        if worker.full_read or worker.pending_reads:
            timeout = min(timeout, max(0.0, worker.reads_resume_at - state.clock.monotonic()))
        if not await worker.wait(state.clock, timeout) and timeout >= self._reconcile_interval:
            await self._reconcile(worker, device, driver)

    async def _reconcile(self, worker: LockWorker, device: DeviceRecord,
                         driver: LockDriver) -> None:
        """The slow period: re-read the slots we manage, never the whole lock. A driver that
        saves radio frames is asked first whether anything changed (one frame where the lock
        keeps a checksum); a lock that cannot tell is swept once a `SWEEP_INTERVAL_S`."""
        state = self._state
        device = state.devices[device.device_id]  # as it is after the wait
        slots = {c.slot for c in state.codes_of(device.device_id)
                 if c.is_managed and c.slot is not None and c.on_lock}
        if not slots:
            return
        if device.online and isinstance(driver, ChangeCheck) and device.info.capabilities.can_read:
            await self._pace(worker, device)
            worker.busy = True
            try:
                unchanged = await self._gateway.call(
                    device, driver.codes_unchanged(device.external_id))
            except DriverError:
                unchanged = False  # read as before; a failing read backs off as usual
            finally:
                worker.busy = False
            if unchanged:
                return
            if unchanged is None and worker.last_sweep_at is not None and \
                    state.clock.monotonic() - worker.last_sweep_at < SWEEP_INTERVAL_S:
                return
        worker.last_sweep_at = state.clock.monotonic()
        worker.pending_reads.update(slots)

    async def _step(self, worker: LockWorker, device: DeviceRecord, driver: LockDriver) -> bool:
        """Read the whole lock when due, else send the planner's next command; True if
        something was done."""
        state = self._state
        device_id = device.device_id
        await self._housekeeping.run(device_id)
        can_read = device.info.capabilities.can_read
        reads_allowed = can_read and state.clock.monotonic() >= worker.reads_resume_at
        if worker.full_read and reads_allowed:
            if not await self._before_the_walk(worker, device, driver):
                await self._read_all(worker, device, driver)
            return True
        if not can_read:
            if worker.full_read:
                # Nothing to look for restored codes with: they are written.
                await state.commit(codes=self._reads.end_adoption(device_id, ()))
            worker.full_read = False
        # While reads back off, writes and clears go on: a pending read never blocks them.
        command = next_command(device, state.planning_codes(device), state.clock.now(),
                               state.policy, state.clock_synchronized(),
                               worker.pending_reads if reads_allowed else ())
        if command is None:
            if worker.pending_reads and not device.info.capabilities.can_read:
                # On a lock that cannot be read, an interrupted write is replayed (it is
                # idempotent).
                worker.pending_reads.clear()
                worker.intents.clear()
            return False
        await self._send(worker, device, driver, command)
        return True

    async def _send(self, worker: LockWorker, device: DeviceRecord, driver: LockDriver,
                    command: Command) -> None:
        await self._pace(worker, device)
        worker.busy = True
        try:
            if command.kind is CommandKind.READ:
                await self._read_some(worker, device, driver, command.slots)
            elif command.kind is CommandKind.WRITE:
                await self._commands.write(worker, device, driver, command)
            else:
                await self._commands.clear(worker, device, driver, command)
        finally:
            worker.busy = False

    async def _before_the_walk(self, worker: LockWorker, device: DeviceRecord,
                               driver: LockDriver) -> bool:
        """The lock's full read is due: first read the slots its managed codes are known to
        hold (one driver call, several slots a frame where the lock can), then put back in its
        own slot each code found wrong or take off each one that should go; True if it did
        one of these, False when the walk of every slot comes next.

        On a lock read slot by slot (a battery Z-Wave lock: about a second a slot) the walk of
        250 slots takes minutes; the codes lockbridge manages are verified and repaired before
        it. A code that needs a free slot still waits for the walk: only it shows which are
        free. A driver that remembers what it read in its session (Z-Wave) does not read those
        slots again in the walk; one that does costs the managed slots twice, and stays
        correct."""
        caps = device.info.capabilities
        if worker.walked or caps.addressing is not Addressing.SLOT or not caps.lists_slot_by_slot:
            # Codes kept under the lock's own ids, or a listing that is one call: the listing
            # says what is there, and a read first would only cost one more call.
            return False
        state = self._state
        codes = state.codes_of(device.device_id)
        unread = scan_first_slots(device, codes, worker.intents).difference(worker.scan_read)
        if unread:
            # Tried once a scan: a read that fails backs off, and the walk after the pause
            # reads these slots too, so a driver that can list but not read slots is walked.
            worker.scan_read.update(unread)
            if await self._codes_unchanged(worker, device, driver):
                return False  # the lock holds what its driver last saw: a walk costs nothing
            slots = tuple(sorted(unread))
            await self._pace(worker, device)
            worker.busy = True
            try:
                await self._read_some(worker, device, driver, slots,
                                      timeout=self._gateway.command_timeout(device)
                                      + FULL_READ_S_PER_SLOT * len(slots))
            finally:
                worker.busy = False
            return True
        # Only commands to a code's own known slot: pending reads wait for the walk, which
        # reads every slot anyway.
        command = next_command(device, [c for c in codes if c.slot is not None],
                               state.clock.now(), state.policy, state.clock_synchronized())
        if command is None:
            return False
        await self._send(worker, device, driver, command)
        return True

    async def _codes_unchanged(self, worker: LockWorker, device: DeviceRecord,
                               driver: LockDriver) -> bool:
        """True when the driver can tell cheaply (a checksum: one frame) that the lock holds
        what it last saw; False when it holds something else, cannot tell, or the ask fails."""
        if not isinstance(driver, ChangeCheck):
            return False
        await self._pace(worker, device)
        worker.busy = True
        try:
            unchanged = await self._gateway.call(device,
                                                 driver.codes_unchanged(device.external_id))
        except DriverError:
            return False  # read as if it changed; a failing read then backs off as usual
        finally:
            worker.busy = False
        return unchanged is True

    async def _read_all(self, worker: LockWorker, device: DeviceRecord,
                        driver: LockDriver) -> None:
        await self._pace(worker, device)
        worker.busy = True
        try:
            # A walk of every slot takes one radio round trip per slot on some locks.
            reads = await self._gateway.call(
                device, driver.list_codes(device.external_id),
                timeout=self._gateway.command_timeout(device)
                + FULL_READ_S_PER_SLOT * device.info.capabilities.slot_count)
        except DriverError as exc:
            await self._read_failed(worker, device.device_id, exc)
            return
        finally:
            worker.busy = False
        worker.full_read = False
        worker.walked = True
        worker.scan_read.clear()
        worker.last_sweep_at = self._state.clock.monotonic()
        worker.read_failures.reset()
        await self._reads.apply(device.device_id, reads, full=True)

    async def _read_some(self, worker: LockWorker, device: DeviceRecord, driver: LockDriver,
                         slots: tuple[int, ...], timeout: float | None = None) -> None:
        worker.pending_reads.difference_update(slots)
        try:
            reads = await self._gateway.call(device, driver.read_slots(device.external_id,
                                                                       list(slots)),
                                             timeout=timeout)
        except DriverError as exc:
            worker.pending_reads.update(slots)
            await self._read_failed(worker, device.device_id, exc)
            return
        worker.read_failures.reset()
        await self._reads.apply(device.device_id, reads, full=False)
        for slot in slots:
            worker.intents.pop(slot, None)

    async def _read_failed(self, worker: LockWorker, device_id: str, exc: DriverError) -> None:
        """A read failed: mark the lock if it is unreachable, and back off further reads."""
        await self._availability.command_failed(device_id, exc)
        delay = worker.read_failures.failed(self._rng)
        worker.reads_resume_at = self._state.clock.monotonic() + delay
        if worker.read_failures.failures == READ_FAILURES_WORTH_A_WARNING:
            _LOG.warning("lock %s: %d reads in a row failed (%s); reading it less often, "
                         "codes are still written", device_id, worker.read_failures.failures,
                         exc)

    async def _pace(self, worker: LockWorker, device: DeviceRecord) -> None:
        spacing = device.command_spacing_s
        if spacing is None:
            spacing = max(self._default_spacing, device.info.capabilities.min_command_spacing_s)
        await worker.pace(self._state.clock, spacing)

    async def _probe_step(self, worker: LockWorker, device: DeviceRecord,
                          driver: LockDriver) -> None:
        """One probe per backoff step for a lock that is not online; never a flood."""
        state = self._state
        clock, policy = state.clock, state.policy
        probes = worker.probes
        if worker.next_probe_at <= clock.monotonic():
            delay = probes.backoff.delay(probes.failures + 1, self._rng)
            worker.next_probe_at = clock.monotonic() + delay
        # Requests wake the worker but do not bring the probe forward: an offline lock waits.
        remaining = worker.next_probe_at - clock.monotonic()
        now = clock.now()
        wake_at = next_wakeup(device, state.planning_codes(device), now, policy)
        if wake_at is not None:
            remaining = min(remaining, (wake_at - now).total_seconds())
        if remaining > 0:
            await worker.wait(clock, remaining)
        if state.devices[device.device_id].online or worker.next_probe_at > clock.monotonic():
            return
        probes.failures += 1
        try:
            async with asyncio.timeout(self._gateway.timeout):
                ok = await driver.probe(device.external_id)
        except (DriverError, TimeoutError):
            ok = False
        except Exception as exc:  # a driver's bug is a failed probe
            await self._faults.note(device.device_id, exc, "the driver's probe")
            ok = False
        if ok:
            await self._availability.set(device.device_id, Availability.ONLINE)


def scan_first_slots(device: DeviceRecord, codes: Sequence[CodeRecord],
                     intents: Iterable[int]) -> set[int]:
    """The slots read before a walk of every slot of the lock: those its managed codes are
    known to hold or to be headed for, and those a command was in flight for."""
    caps = device.info.capabilities
    if caps.addressing is not Addressing.SLOT:
        return set()
    lock_slots = caps.slots()
    known = {c.slot for c in codes if c.is_managed and c.slot is not None}
    return {slot for slot in (*known, *intents) if slot is not None and slot in lock_slots}
