"""The composition root: builds the store, drivers, engine and API, and runs them until stopped."""

from __future__ import annotations

import asyncio
import contextlib
import gc
import importlib
import logging
import os
import random
import signal
import ssl
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from bridge.application import Application, DeclaredReceipt
from bridge.backup import PoolSettings
from bridge.clock import Clock, SystemClock
from bridge.config import DeviceOverride, LoadedConfig, parse_time_or_offset
from bridge.driver import DriverEvent, LockDriver
from bridge.drivercontext import DriverContext
from bridge.engine import CodeRequest, Engine, EngineError
from bridge.listener import server_tls
from bridge.model import AccessCodeType
from bridge.planner import Policy
from bridge.secrets import PinCipher, key_path, load_or_create_key
from bridge.startup import StartupError
from bridge.statecheck import StateWitness, check_after_open, check_before_open, witness
from bridge.store import Store, StoreUnavailable, Tx
from bridge.timesync import ClockGuard, ScheduleClock, newest_event_time
from bridge.upstreamrestore import restore_if_pending
from drivers import registry

_LOG = logging.getLogger(__name__)
DB_NAME = "lockbridge.db"
# How often the store is probed while it cannot write.
STORE_PROBE_S = 2.0


@dataclass(slots=True)
class Bridge:
    """Everything the daemon runs, built from one configuration."""

    loaded: LoadedConfig
    clock: Clock
    store: Store
    engine: Engine
    drivers: dict[str, LockDriver]
    clock_guard: ClockGuard
    # The PIN key and database as found before the store opened (witnesses of lost state), and
    # whether the operator chose to start fresh over lost state (`run --accept-fresh-state`).
    seen: StateWitness | None = None
    accept_fresh_state: bool = False
    extras: dict[str, Any] = field(default_factory=dict)
    # The API listener's TLS context, loaded before anything starts (None: plain HTTP).
    api_tls: ssl.SSLContext | None = None


def policy_from(loaded: LoadedConfig) -> Policy:
    """The planner's timing rules from the configuration."""
    s, e = loaded.config.schedule, loaded.config.engine
    return Policy(
        native_lead=timedelta(days=s.native_lead_time_days),
        bridge_lead=timedelta(minutes=s.bridge_lead_time_minutes),
        errors_ahead=timedelta(days=s.errors_ahead_days),
        max_attempts=e.max_attempts,
        retry_base_s=e.retry_base_s,
        retry_cap_s=e.retry_cap_s,
        probe_base_s=e.probe_base_s,
        delay_warning_after=timedelta(seconds=e.delay_warning_after_s),
        forget_ended_after=timedelta(days=s.forget_ended_codes_after_days),
    )


def _no_zone(driver_name: str, external_id: str) -> str | None:
    return None


def _synchronized() -> bool:
    return True


@dataclass(frozen=True, slots=True)
class EngineSettings:
    """How the engine runs, besides its store, clock and drivers: read from the configuration
    by the daemon (`engine_settings`), chosen by a test for its harness. The defaults are the
    engine's own."""

    policy: Policy = field(default_factory=Policy)
    device_overrides: dict[str, DeviceOverride] = field(default_factory=dict)
    default_time_zone: Callable[[str, str], str | None] = _no_zone
    clock_synchronized: Callable[[], bool] = _synchronized
    command_timeout_s: float = 30.0
    default_spacing_s: float = 2.0
    reconcile_interval_s: float = 3600.0
    concurrency_per_driver: int = 4
    watch_clock: bool = False
    pool: PoolSettings = field(default_factory=PoolSettings)
    pool_overrides: dict[str, PoolSettings] = field(default_factory=dict)


def engine_settings(loaded: LoadedConfig, guard: ClockGuard) -> EngineSettings:
    """The engine's settings from the configuration (`guard` tells whether the system clock
    is synchronised, where schedules wait for it)."""
    config = loaded.config
    zones = {p.id: p.time_zone for p in config.properties}
    driver_property = {
        str(getattr(d, "name", "")): getattr(d, "property", None) for d in loaded.drivers
    }
    default_zone = next(iter(zones.values()), None) if len(zones) == 1 else None

    def zone_for(driver_name: str, external_id: str) -> str | None:
        override = config.devices.get(external_id)
        prop = (override.property if override else None) or driver_property.get(driver_name)
        if prop is not None:
            return zones.get(prop)
        return default_zone

    bp = config.backup_pool
    pool = PoolSettings(size=bp.size, reserve_slots=bp.reserve_slots,
                        many_active_threshold=bp.many_active_threshold, auto_pull=bp.auto_pull,
                        auto_pull_before=timedelta(hours=bp.auto_pull_before_hours))
    pool_overrides = {
        external_id: replace(pool, size=o.backup_pool_size or pool.size,
                             auto_pull=pool.auto_pull if o.auto_pull_backup is None
                             else o.auto_pull_backup)
        for external_id, o in config.devices.items()
        if o.backup_pool_size is not None or o.auto_pull_backup is not None
    }
    sync_required = config.schedule.require_synchronized_clock
    return EngineSettings(
        policy=policy_from(loaded),
        device_overrides=dict(config.devices),
        default_time_zone=zone_for,
        clock_synchronized=guard.synchronized if sync_required else _synchronized,
        command_timeout_s=config.engine.command_timeout_s,
        default_spacing_s=config.engine.default_command_spacing_s,
        reconcile_interval_s=config.engine.reconcile_interval_s,
        concurrency_per_driver=config.engine.concurrency_per_driver,
        watch_clock=sync_required,
        pool=pool,
        pool_overrides=pool_overrides,
    )


def make_engine(store: Store, clock: Clock, drivers: dict[str, LockDriver],
                settings: EngineSettings, rng: random.Random | None = None) -> Engine:
    """The engine over a store and drivers, as the daemon builds it (tests build theirs here
    too, with a fake clock and their own drivers)."""
    return Engine(
        store, clock, settings.policy, drivers, rng=rng,
        device_overrides=settings.device_overrides,
        default_time_zone=settings.default_time_zone,
        clock_synchronized=settings.clock_synchronized,
        command_timeout_s=settings.command_timeout_s,
        default_spacing_s=settings.default_spacing_s,
        reconcile_interval_s=settings.reconcile_interval_s,
        concurrency_per_driver=settings.concurrency_per_driver,
        watch_clock=settings.watch_clock,
        pool=settings.pool,
        pool_overrides=settings.pool_overrides,
    )


async def start_drivers_then_load(engine: Engine, drivers: dict[str, LockDriver],
                                  started: list[LockDriver]) -> None:
    """Start each driver with its events routed to the engine, then load the engine (every
    driver's locks registered); `started` gathers the drivers to stop, even when one of them
    fails to start."""
    for name, driver in drivers.items():
        await driver.start(_sink(engine, name))
        started.append(driver)
    await engine.load()


def open_store(loaded: LoadedConfig) -> Store:
    """The store under the configured state directory, with its PIN key."""
    config = loaded.config
    _prepare_state_dir(config.state_dir)
    key = load_or_create_key(key_path(config.store.key_file, config.state_dir))
    return Store(config.state_dir / DB_NAME, PinCipher(key))


def _prepare_state_dir(state_dir: Path) -> None:
    """Make the state directory when absent; StartupError when it cannot hold the state."""
    try:
        state_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
    except FileExistsError:
        raise StartupError(f"state_dir {state_dir} is not a directory",
                           "point state_dir at a directory (the service's is "
                           "/var/lib/lockbridge)") from None
    except OSError as exc:
        raise StartupError(f"cannot create state_dir {state_dir} ({exc.strerror})",
                           "create it for the service user: install -d -m 700 -o lockbridge "
                           f"-g lockbridge {state_dir}") from None
    if not os.access(state_dir, os.R_OK | os.W_OK | os.X_OK):
        raise StartupError(f"state_dir {state_dir} is not writable by this user "
                           f"(uid {os.geteuid()})",
                           f"chown -R lockbridge:lockbridge {state_dir} && chmod 700 "
                           f"{state_dir}")


def state_witness(loaded: LoadedConfig) -> StateWitness:
    """The PIN key and the database as they are now, before anything creates them."""
    config = loaded.config
    return witness(key_path(config.store.key_file, config.state_dir), config.state_dir,
                   state_db(config.state_dir))


async def build(loaded: LoadedConfig, clock: Clock | None = None,
                drivers: dict[str, LockDriver] | None = None,
                accept_fresh_state: bool = False) -> Bridge:
    """Build every component; nothing is started yet. Raises StateLost over lost state."""
    clock = clock or SystemClock()
    config = loaded.config
    seen = state_witness(loaded)
    if seen.key_existed:
        # A key that is there but unusable (a directory, unreadable, open to others) is its
        # own problem with its own fix; it must not read as lost state.
        _prepare_state_dir(config.state_dir)
        load_or_create_key(seen.key)
    check_before_open(seen, loaded.path, accept_fresh_state)
    store = open_store(loaded)
    # Unusable certificate files stop the start here, before any lock is touched.
    api_tls = server_tls(config.api.tls_cert_file, config.api.tls_key_file) \
        if config.api.enabled else None
    if drivers is None:
        context = DriverContext(clock=clock, state_dir=config.state_dir)
        drivers = {}
        for dcfg in loaded.drivers:
            kind = str(getattr(dcfg, "kind"))  # noqa: B009 - every driver model has `kind`
            try:
                module = registry.module(kind)
            except ImportError as exc:
                _LOG.error("driver %s disabled: its optional dependency is missing (%s); "
                           "install lockbridge[%s]", kind, exc, kind)
                continue
            driver: LockDriver = module.build(dcfg, context)
            drivers[driver.name] = driver
    guard = ClockGuard(clock, None)
    # With the clock distrusted, schedules go by a time that never steps back.
    schedule_clock = ScheduleClock(clock, guard) \
        if config.schedule.require_synchronized_clock else clock
    engine = make_engine(store, schedule_clock, drivers, engine_settings(loaded, guard))
    return Bridge(loaded, clock, store, engine, drivers, guard, seen=seen,
                  accept_fresh_state=accept_fresh_state, api_tls=api_tls)


async def declare_codes(bridge: Bridge) -> None:
    """Create each code listed under `codes:` once; later edits go through the API."""
    app = Application(bridge.engine)
    declared = await bridge.store.read(lambda r: r.declared())
    now = bridge.clock.now()
    by_external = {d.external_id: d.device_id for d in app.state.devices.values()}
    for entry in bridge.loaded.config.codes:
        if entry.key in declared:
            continue
        device_id = by_external.get(entry.device)
        if device_id is None:
            _LOG.error("declared code %s: no lock %r; skipped", entry.key, entry.device)
            continue
        request = CodeRequest(
            name=entry.name, preferred_code=entry.code, type=AccessCodeType(entry.type),
            starts_at=_when(entry.starts_at, now), ends_at=_when(entry.ends_at, now),
            use_backup_access_code_pool=entry.use_backup_access_code_pool,
        )
        code_id = str(uuid.uuid4())
        try:
            # The code and the note that it was declared commit together: a crash in between
            # must not create it twice.
            await app.create_code(device_id, request, access_code_id=code_id,
                                  receipt=DeclaredReceipt(entry.key, code_id))
        except EngineError as exc:
            _LOG.error("declared code %s refused: %s", entry.key, exc)
            continue
        _LOG.info("declared code %s created as %s", entry.key, code_id)


def _when(value: str | None, now: datetime) -> datetime | None:
    return parse_time_or_offset(value, now) if value is not None else None


async def serve(loaded: LoadedConfig, clock: Clock | None = None,
                on_ready: Callable[[Bridge], Awaitable[None]] | None = None,
                stop: asyncio.Event | None = None, accept_fresh_state: bool = False) -> None:
    """Run the daemon until SIGTERM/SIGINT (or `stop`), then shut down cleanly; StateLost
    (alone or in an ExceptionGroup) when the state it had is gone."""
    stop = stop or asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        with contextlib.suppress(NotImplementedError, RuntimeError):
            loop.add_signal_handler(sig, stop.set)
    bridge = await build(loaded, clock, accept_fresh_state=accept_fresh_state)
    async with bridge.store:
        assert bridge.seen is not None
        await check_after_open(bridge.store, bridge.seen, loaded.path, accept_fresh_state)
        # A box that boots well before the last time it recorded has a stale clock.
        bridge.clock_guard.remember(await bridge.store.read(newest_event_time))
        if loaded.config.upstream is not None:
            from bridge.upstream.link import check_before_start

            await check_before_start(bridge)
        started: list[LockDriver] = []
        try:
            await start_drivers_then_load(bridge.engine, bridge.drivers, started)
            await restore_if_pending(bridge)
            await declare_codes(bridge)
            async with asyncio.TaskGroup() as group:
                # The API, the upstream link and systemd's READY come first: a big property's
                # first reconcile must not hold up the API or make systemd's start-up time out.
                extra_tasks = await _start_extras(bridge, group)
                _settle_startup_heap()
                engine_task = group.create_task(bridge.engine.run(), name="engine")
                store_task = group.create_task(_watch_store(bridge), name="store-watch")
                _LOG.info("lockbridge %s running: %d locks, state in %s",
                          loaded.config.bridge.id, len(bridge.engine.devices),
                          loaded.config.state_dir)
                if on_ready is not None:
                    await on_ready(bridge)
                await stop.wait()
                _LOG.info("stopping")
                engine_task.cancel()
                store_task.cancel()
                for task in extra_tasks:
                    task.cancel()
        finally:
            for driver in started:
                with contextlib.suppress(Exception):
                    async with asyncio.timeout(3):
                        await driver.stop()
    _LOG.info("stopped cleanly")


def _settle_startup_heap() -> None:
    """Where start-up ran without the cyclic collector (`lockbridge run`), move what it made
    into the collector's permanent generation and turn it back on: later collections then
    skip the objects that live as long as the daemon (its codes among them), which shortens
    the pauses of a full collection on the API's path too."""
    if gc.isenabled():
        return  # a caller that kept the collector on (tests, embedding) keeps its heap as is
    # No collection first: it cost 67 ms on the event loop for about 1,400 unreachable objects
    # (measured over 30,000 codes), which then stay for good; start-up garbage is made once.
    gc.freeze()
    gc.enable()


async def _watch_store(bridge: Bridge) -> None:
    """While the store cannot write, try an empty write now and then: it probes the disk, so
    /health recovers when space returns even if nothing else writes."""
    while True:  # until cancelled at shutdown
        await bridge.clock.sleep(STORE_PROBE_S)
        if not bridge.store.health.writable:
            with contextlib.suppress(StoreUnavailable):
                await bridge.store.write(_nothing)


def _nothing(tx: Tx) -> None:
    """An empty transaction."""


async def _start_extras(bridge: Bridge, group: asyncio.TaskGroup) -> list[asyncio.Task[None]]:
    """The long-lived components around the engine, in order; the last one tells systemd."""
    tasks: list[asyncio.Task[None]] = []
    config = bridge.loaded.config
    specs = [spec for spec in STARTERS if _STARTER_NEEDED.get(spec, _always)(config)]
    for starter in [*(_load_starter(spec) for spec in specs), *EXTRA_STARTERS]:
        if starter is not None:
            tasks.extend(await starter(bridge, group))
    return tasks


StarterFn = Callable[[Bridge, asyncio.TaskGroup], Awaitable[list[asyncio.Task[None]]]]
# "module:function" of each component's starter; a module not present in this build is skipped.
STARTERS: tuple[str, ...] = (
    # Before the API, whose automation routes use it.
    "bridge.reservations.starter:start_reservations",
    "bridge.api.server:start_api",
    "bridge.upstream.link:start_upstream",
    "bridge.upstream.nats_start:start_nats_upstream",
    "bridge.statebackup:start_state_backup",
    "bridge.sdnotify:start_systemd",
)
# Starters that do nothing unless configured: their modules are not even imported otherwise
# (a smaller, faster start for a bridge without an upstream or a state backup).
_STARTER_NEEDED: dict[str, Callable[[Any], bool]] = {
    "bridge.upstream.link:start_upstream": lambda config: config.upstream is not None,
    "bridge.statebackup:start_state_backup":
        lambda config: config.store.backup_path is not None,
}
# Starters added at run time (tests, embedding applications).
EXTRA_STARTERS: list[StarterFn] = []


def _always(config: Any) -> bool:
    return True


def _load_starter(spec: str) -> StarterFn | None:
    module_name, _, function = spec.partition(":")
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as exc:
        if exc.name and module_name.startswith(exc.name):
            return None
        raise
    starter: StarterFn = getattr(module, function)
    return starter


def _sink(engine: Engine, name: str) -> Callable[[DriverEvent], Awaitable[None]]:
    async def deliver(event: DriverEvent) -> None:
        try:
            await engine.on_driver_event(name, event)
        except StoreUnavailable:
            # The store logged its outage once. Availability and slots are read again when
            # it can write; a keypad unlock reported meanwhile is not recorded.
            _LOG.debug("driver %s: %s for %s not recorded (store cannot write)", name,
                       event.kind.value, event.external_id)

    return deliver


def state_db(state_dir: Path) -> Path:
    """Where the database of a state directory lives."""
    return state_dir / DB_NAME

