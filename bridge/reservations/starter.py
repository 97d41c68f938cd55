"""The daemon's reservation automations: built from the configuration, loaded, its declared
spaces and reservations applied, and the watch that tells when access methods are issued.

Most bridges never use them, so this module imports nothing of them: they are built at start
only when the configuration declares spaces or the store holds their records, and otherwise by
the first request to one of their routes (`Automations.service`)."""

from __future__ import annotations

import asyncio
import logging
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from bridge.config import AutomationsConfig, DeclaredSpace
    from bridge.daemon import Bridge
    from bridge.reservations.apply import Rules
    from bridge.reservations.service import ReservationService
    from bridge.store import Reader

_LOG = logging.getLogger(__name__)
# Where the running service is kept in `Bridge.extras` (the portal finds it there), once built.
EXTRA_KEY = "reservations"
# Where the `Automations` handle is kept in `Bridge.extras` (the API's routes find it there).
HANDLE_KEY = "automations"
# The customer key of what the configuration declares.
CONFIG_CUSTOMER = "config"
# How often grants past their retention are looked for (a day's retention is kept to the hour).
FORGET_ENDED_EVERY_S = 3600.0
# The automations' own tables: a store with a row in any of them has automations in use.
_TABLES = ("spaces", "user_identities", "reservations", "access_grants", "access_methods",
           "automation_runs")


def rules_from(config: AutomationsConfig) -> Rules:
    """The automation rules of a configuration."""
    from bridge.reservations.apply import Rules
    from bridge.reservations.decide import SlotRule

    return Rules(
        generated_pins_for=frozenset(k for k, v in config.pin_source_by_customer.items()
                                     if v == "generated"),
        generated_pins_by_default=config.pin_source == "generated",
        slot_rules={lock: SlotRule(rule.minutes, rule.widen)
                    for lock, rule in config.time_slots.items()})


class Automations:
    """The daemon's reservation service, built once: at start where it is in use, else by the
    first request that needs it; `run` keeps its watches going from then on."""

    def __init__(self, bridge: Bridge) -> None:
        self._bridge = bridge
        self._service: ReservationService | None = None
        # Two first requests at once build it once.
        self._building = asyncio.Lock()
        self._built = asyncio.Event()

    async def service(self) -> ReservationService:
        """The running service, built, loaded and started on first call."""
        if self._service is None:
            async with self._building:
                if self._service is None:
                    service = await self._build()
                    # Kept from the moment it listens to the engine: a later step that fails
                    # (or a cancelled first request) must not leave a second build to follow,
                    # with a second listener.
                    self._service = service
                    self._built.set()
                    await self._start(service)
        return self._service

    async def run(self) -> None:
        """Until cancelled: once the service is built, its issuance watch, its retention and
        the spaces' booking feeds."""
        await self._built.wait()
        service = self._service
        assert service is not None
        from bridge.reservations.feeds import run_feeds

        bridge = self._bridge
        config = bridge.loaded.config
        feeds = [(space.key, feed) for space in config.spaces for feed in space.ical_feeds]
        async with asyncio.TaskGroup() as group:
            group.create_task(service.issuance.run(), name="reservations")
            group.create_task(service.forget_ended_forever(FORGET_ENDED_EVERY_S),
                              name="reservations-retention")
            if feeds:
                group.create_task(run_feeds(feeds, service, bridge.clock, bridge.extras),
                                  name="ical-feeds")

    async def _build(self) -> ReservationService:
        from datetime import timedelta

        from bridge.application import Application
        from bridge.reservations.service import ReservationService

        bridge = self._bridge
        config = bridge.loaded.config
        retention = timedelta(days=config.automations.forget_ended_grants_after_days)
        service = ReservationService(Application(bridge.engine),
                                     rules_from(config.automations), retention=retention)
        await service.load(bridge.store)
        bridge.engine.subscribe(service.issuance.on_events)
        bridge.extras[EXTRA_KEY] = service
        return service

    async def _start(self, service: ReservationService) -> None:
        """Apply the declared spaces and tell of methods issued while the daemon was down."""
        from bridge.engine import EngineError
        from bridge.reservations.service import NotFound
        from bridge.store import StoreUnavailable

        config = self._bridge.loaded.config
        try:
            for space in config.spaces:
                try:
                    await declare_space(service, space)
                except (EngineError, NotFound) as exc:
                    _LOG.error("space %s from the configuration refused: %s", space.key, exc)
            # Codes may have been set while the daemon was down: tell of methods issued
            # meanwhile.
            await service.issuance.check_all()
        except StoreUnavailable:
            # The store logged its outage; declared spaces are applied at the next start, and
            # methods are checked again as their codes change.
            _LOG.warning("reservation automations: the store cannot write; declared spaces "
                         "wait")


async def start_reservations(bridge: Bridge, group: asyncio.TaskGroup
                             ) -> list[asyncio.Task[None]]:
    """The automations' handle goes to `bridge.extras`; the service is built now when the
    configuration declares spaces or the store holds automation records (a restart must go on
    issuing, watching and forgetting them), else on the first request to its routes."""
    automations = Automations(bridge)
    bridge.extras[HANDLE_KEY] = automations
    in_use = bool(bridge.loaded.config.spaces) or await bridge.store.read(_in_use)
    if in_use:
        await automations.service()
    return [group.create_task(automations.run(), name="reservations")]


def _in_use(reader: Reader) -> bool:
    """True when any of the automations' tables holds a row."""
    return any(reader.rows(f"SELECT 1 FROM {table} LIMIT 1") for table in _TABLES)


async def declare_space(service: ReservationService, declared: DeclaredSpace) -> None:
    """Create or update a space of the configuration, then push its reservations once."""
    from bridge.config import parse_time_or_offset
    from bridge.reservations.records import SOURCE_CONFIG
    from bridge.reservations.service import ReservationInput

    by_external = {d.external_id: d.device_id for d in service.app.state.devices.values()}
    devices = []
    for lock in declared.devices:
        if lock in by_external:
            devices.append(by_external[lock])
        else:
            _LOG.error("space %s: no lock %r; left out", declared.key, lock)
    known = service.state.space_by_key(declared.key)
    if known is None:
        await service.create_space(declared.name, declared.key, devices, CONFIG_CUSTOMER,
                                   SOURCE_CONFIG)
    elif (known.name, known.device_ids) != (declared.name, tuple(devices)):
        await service.update_space(known, name=declared.name, device_ids=devices)
    now = service.app.clock.now()
    for stay in declared.reservations:
        item = ReservationInput(stay.key, parse_time_or_offset(stay.starts_at, now),
                                parse_time_or_offset(stay.ends_at, now), (declared.key,),
                                name=stay.guest, preferred_code=stay.code)
        run = await service.declare_reservation(CONFIG_CUSTOMER, item, SOURCE_CONFIG)
        if run is not None:
            _LOG.info("reservation %s from the configuration pushed (run %s)", stay.key,
                      run.automation_run_id)
