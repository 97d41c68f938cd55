"""`Engine`: keeps every lock equal to what should be on it. A small facade that wires the
engine's parts (docs/architecture.md) and is what the daemon, the API and the upstream call."""

from __future__ import annotations

import asyncio
import random
from collections.abc import Callable, Iterable, Sequence

from bridge.backup import PoolSettings
from bridge.clock import Clock
from bridge.config import DeviceOverride
from bridge.driver import DriverEvent, LockDriver
from bridge.engine.availability import AvailabilityTracker
from bridge.engine.commands import CommandSender
from bridge.engine.faults import Faults
from bridge.engine.gateway import DriverGateway
from bridge.engine.housekeeping import Housekeeping
from bridge.engine.pool import BackupPool
from bridge.engine.reads import ReadApplier
from bridge.engine.registry import LockRegistry
from bridge.engine.requests import CodeRequest, Receipt, Requests
from bridge.engine.state import EngineState, EventListener
from bridge.engine.worker import LockWorker, WorkerLoop
from bridge.model import AccessCodeStatus, Event
from bridge.planner import Policy, next_command, outcome_unknown
from bridge.records import CodeRecord, DeviceRecord
from bridge.store import IntentOp, Store

# The statuses of a code on its way to (or off) its lock.
_PENDING = frozenset({AccessCodeStatus.SETTING, AccessCodeStatus.REMOVING})


class Engine:
    """Keeps every lock equal to what should be on it."""

    def __init__(
        self,
        store: Store,
        clock: Clock,
        policy: Policy,
        drivers: dict[str, LockDriver],
        *,
        rng: random.Random | None = None,
        device_overrides: dict[str, DeviceOverride] | None = None,
        default_time_zone: Callable[[str, str], str | None] | None = None,
        clock_synchronized: Callable[[], bool] = lambda: True,
        command_timeout_s: float = 30.0,
        default_spacing_s: float = 2.0,
        reconcile_interval_s: float = 3600.0,
        concurrency_per_driver: int = 4,
        watch_clock: bool = False,
        pool: PoolSettings | None = None,
        pool_overrides: dict[str, PoolSettings] | None = None,
    ) -> None:
        rng = rng or random.Random()
        self.store = store
        self.clock = clock
        self.policy = policy
        self.drivers = drivers
        self._state = state = EngineState(store, clock, policy, clock_synchronized)
        self._faults = Faults(state)
        self._gateway = gateway = DriverGateway(
            state, drivers, self._faults, command_timeout_s=command_timeout_s,
            concurrency_per_driver=concurrency_per_driver)
        self._availability = AvailabilityTracker(state, gateway)
        self._pool = BackupPool(state, rng, pool or PoolSettings(), pool_overrides or {})
        self._housekeeping = Housekeeping(state, self._pool)
        self._requests = Requests(state, gateway, rng)
        self._registry = LockRegistry(
            state, gateway, self._availability, self._start_worker,
            overrides=device_overrides or {},
            default_time_zone=default_time_zone or (lambda driver, external_id: None))
        self._loop = WorkerLoop(
            state, gateway, self._faults, self._availability, self._housekeeping,
            CommandSender(state, gateway, self._availability, rng), ReadApplier(state, rng),
            rng, default_spacing_s=default_spacing_s, reconcile_interval_s=reconcile_interval_s)
        self._watch_clock = watch_clock
        self._group: asyncio.TaskGroup | None = None
        # Set once `load` has read the store and registered every lock. Drivers start first
        # (their locks must be known to register them), so a driver's report can arrive while
        # the store is being read: handled then, its commit could be overwritten by the read.
        self._loaded = asyncio.Event()
        self._running: set[str] = set()

    # -- what callers read ------------------------------------------------------------------

    @property
    def devices(self) -> dict[str, DeviceRecord]:
        """Every device, by id, as committed."""
        return self._state.devices

    @property
    def codes(self) -> dict[str, CodeRecord]:
        """Every code, managed and unmanaged, by id, as committed."""
        return self._state.codes

    @property
    def fault_counts(self) -> dict[str, int]:
        """device_id -> unexpected exceptions seen on that lock since start (for /metrics)."""
        return self._faults.counts

    @property
    def command_observer(self) -> Callable[[str, float, bool], None] | None:
        """Told (driver name, seconds, succeeded) after each driver call; metrics use it."""
        return self._gateway.command_observer

    @command_observer.setter
    def command_observer(self, observer: Callable[[str, float, bool], None] | None) -> None:
        self._gateway.command_observer = observer

    @property
    def _workers(self) -> dict[str, LockWorker]:
        return self._state.workers

    def _wake(self, device_id: str) -> None:
        self._state.wake(device_id)

    def device(self, device_id: str, managed: bool = True) -> DeviceRecord:
        """A managed (or, if asked, unmanaged) device, or EngineError device_not_found."""
        return self._state.device(device_id, managed)

    def code(self, access_code_id: str, managed: bool = True) -> CodeRecord:
        """A code, or EngineError access_code_not_found."""
        return self._state.code(access_code_id, managed)

    def codes_of(self, device_id: str) -> list[CodeRecord]:
        """Every code of one device, managed and unmanaged, oldest first."""
        return self._state.codes_of(device_id)

    def clock_synchronized(self) -> bool:
        """False while schedules are held because the system clock is not synchronised."""
        return self._state.clock_synchronized()

    def backup_available(self, code: CodeRecord) -> bool | None:
        """`is_backup_access_code_available` for a code; None where it does not apply."""
        return self._pool.backup_available(code)

    def command_timeout(self, device: DeviceRecord) -> float:
        """How long one command to this lock may take."""
        return self._gateway.command_timeout(device)

    def outstanding(self) -> int:
        """How many managed codes are not yet where they should be."""
        # Status first, against a set: a tuple built per code and compared member by member
        # made this 8 ms over 30,000 codes (systemd's status line before READY, /health).
        return sum(1 for c in self.codes.values() if c.status in _PENDING and c.is_managed)

    def settled(self) -> bool:
        """True when no lock has work pending (for tests, benchmarks and shutdown)."""
        state = self._state
        now = self.clock.now()
        for device_id, device in self.devices.items():
            worker = state.workers.get(device_id)
            if worker is None:
                continue
            if worker.busy:
                # A command in flight, even to a lock that just went offline: its answer (or
                # its absence) is still to be recorded.
                return False
            if not device.online:
                if not worker.waiting:
                    # Its upkeep (a warning that it is unreachable) may still be committing.
                    return False
                continue
            reading = (worker.pending_reads or worker.full_read) and \
                self.clock.monotonic() >= worker.reads_resume_at
            if worker.busy or reading or not worker.waiting:
                return False
            if next_command(device, state.planning_codes(device), now, self.policy,
                            state.clock_synchronized()):
                return False
        return True

    def subscribe(self, listener: EventListener) -> None:
        """Call `listener` with every batch of committed events."""
        self._state.subscribe(listener)

    # -- lifecycle ----------------------------------------------------------------------

    async def load(self) -> None:
        """Load the store into memory and register every driver's locks."""
        state = self._state
        devices, codes, intents = await self.store.read(
            lambda r: (r.devices(), r.codes(), r.intents())
        )
        state.load(devices, codes)
        await self._registry.register_all()
        unsure: list[CodeRecord] = []
        for intent in intents:
            worker = state.workers.get(intent.device_id)
            if worker is not None:
                # Sent or about to be sent when the process stopped: read the slot back before
                # deciding anything, so the command is neither lost nor applied twice.
                worker.intents[intent.slot] = intent
                worker.pending_reads.add(intent.slot)
                unsure_code = self.codes.get(intent.access_code_id or "")
                if intent.op is IntentOp.WRITE and unsure_code is not None:
                    # Until the slot is read, nobody knows whether that write landed.
                    unsure.append(state.refresh(outcome_unknown(unsure_code),
                                                self.devices[intent.device_id],
                                                self.clock.now()))
        if unsure:
            await state.commit(codes=unsure)
        self._loaded.set()

    async def run(self) -> None:
        """Run one worker per lock until cancelled."""
        async with asyncio.TaskGroup() as group:
            self._group = group
            for device_id in list(self._state.workers):
                self._start_worker(device_id)
            if self._watch_clock:
                group.create_task(self._housekeeping.watch_clock(), name="clock-watch")
            # Stay open until cancelled, even with no lock yet: a driver may find its first
            # lock later (a Zigbee lock paired, a lock added to a cloud account).
            await asyncio.Event().wait()

    def _start_worker(self, device_id: str) -> None:
        if self._group is None or device_id in self._running:
            return
        self._running.add(device_id)
        self._group.create_task(self._loop.run(device_id), name=f"lock:{device_id}")

    async def on_driver_event(self, driver_name: str, event: DriverEvent) -> None:
        """A driver's report: availability, a slot changed at the lock, or a keypad unlock.
        One that comes before the engine is loaded waits for the load (a sink may block)."""
        await self._loaded.wait()
        await self._registry.on_driver_event(driver_name, event)

    # -- requests (bridge/engine/requests.py) ------------------------------------------------

    async def create_code(self, device_id: str, request: CodeRequest,
                          access_code_id: str | None = None,
                          receipt: Receipt | None = None) -> CodeRecord:
        """Create a managed code; it goes onto the lock in the background."""
        return await self._requests.create_code(device_id, request, access_code_id, receipt)

    async def update_code(self, access_code_id: str, request: CodeRequest,
                          receipt: Receipt | None = None) -> CodeRecord:
        """Change name, PIN, times or type; the lock is reprogrammed in the background."""
        return await self._requests.update_code(access_code_id, request, receipt)

    async def delete_code(self, access_code_id: str,
                          receipt: Receipt | None = None) -> None:
        """Take a code off its lock and forget it."""
        await self._requests.delete_code(access_code_id, receipt)

    async def convert_unmanaged(self, access_code_id: str, request: CodeRequest,
                                receipt: Receipt | None = None) -> CodeRecord:
        """Make an unmanaged code managed: the bridge keeps it on the lock from now on."""
        return await self._requests.convert_unmanaged(access_code_id, request, receipt)

    async def delete_unmanaged(self, access_code_id: str,
                               receipt: Receipt | None = None) -> None:
        """Remove an unmanaged code from its lock."""
        await self._requests.delete_unmanaged(access_code_id, receipt)

    async def unmanage_device(self, device_id: str,
                              receipt: Receipt | None = None) -> DeviceRecord:
        """Take a lock out of lockbridge: its backup codes come off and its pool is off."""
        return await self._requests.unmanage_device(device_id, receipt)

    async def manage_device(self, device_id: str,
                            receipt: Receipt | None = None) -> DeviceRecord:
        """Bring an unmanaged lock back; its backup pool starts off, as on a new lock."""
        return await self._requests.manage_device(device_id, receipt)

    async def enable_backup_pool(self, device_id: str,
                                 receipt: Receipt | None = None) -> DeviceRecord:
        """Switch a lock's backup pool on (for good, as a code asking for it would)."""
        return await self._requests.enable_backup_pool(device_id, receipt)

    async def pull_backup(self, access_code_id: str, automatic: bool = False,
                          receipt: Receipt | None = None,
                          ) -> tuple[CodeRecord, CodeRecord]:
        """Hand out a backup for a time-bound code: (backup, original). Repeats return the same."""
        return await self._pool.pull(access_code_id, automatic, receipt)

    async def record_events(self, events: Sequence[Event],
                            receipt: Receipt | None = None) -> None:
        """Commit events no code change carries (an automation's access_method.issued), with
        the receipt's rows in the same transaction; every listener hears of them."""
        await self._state.commit(events=events, receipt=receipt)

    async def restore_codes(self, codes: Sequence[CodeRecord],
                            receipt: Receipt) -> None:
        """Commit codes restored from the upstream (awaiting adoption) with their receipt."""
        await self._requests.restore_codes(codes, receipt)

    def reconcile(self, device_id: str, slots: Iterable[int] = (), full: bool = False) -> None:
        """Ask a lock's worker to re-read some slots, or the whole lock, and fix what differs."""
        self._requests.reconcile(device_id, slots, full)

    def generate_code(self, device_id: str, length: int | None = None) -> str:
        """A PIN that fits the lock's rules and clashes with nothing on it."""
        return self._requests.generate_code(device_id, length)
