"""The daemon's reservation automations: built from the configuration, loaded, its declared
spaces and reservations applied, and the watch that tells when access methods are issued."""

from __future__ import annotations

import asyncio
import logging
from datetime import timedelta
from typing import TYPE_CHECKING

from bridge.application import Application
from bridge.config import AutomationsConfig, DeclaredSpace, parse_time_or_offset
from bridge.engine import EngineError
from bridge.reservations.apply import Rules
from bridge.reservations.decide import SlotRule
from bridge.reservations.feeds import run_feeds
from bridge.reservations.records import SOURCE_CONFIG
from bridge.reservations.service import NotFound, ReservationInput, ReservationService
from bridge.store import StoreUnavailable

if TYPE_CHECKING:
    from bridge.daemon import Bridge

_LOG = logging.getLogger(__name__)
# Where the running service is kept in `Bridge.extras` (the API's routes find it there).
EXTRA_KEY = "reservations"
# The customer key of what the configuration declares.
CONFIG_CUSTOMER = "config"
# How often grants past their retention are looked for (a day's retention is kept to the hour).
FORGET_ENDED_EVERY_S = 3600.0


def rules_from(config: AutomationsConfig) -> Rules:
    """The automation rules of a configuration."""
    return Rules(
        generated_pins_for=frozenset(k for k, v in config.pin_source_by_customer.items()
                                     if v == "generated"),
        generated_pins_by_default=config.pin_source == "generated",
        slot_rules={lock: SlotRule(rule.minutes, rule.widen)
                    for lock, rule in config.time_slots.items()})


async def start_reservations(bridge: Bridge, group: asyncio.TaskGroup
                             ) -> list[asyncio.Task[None]]:
    """Build, load and start the automations; the service goes to `bridge.extras`."""
    config = bridge.loaded.config
    retention = timedelta(days=config.automations.forget_ended_grants_after_days)
    service = ReservationService(Application(bridge.engine), rules_from(config.automations),
                                 retention=retention)
    await service.load(bridge.store)
    bridge.engine.subscribe(service.issuance.on_events)
    bridge.extras[EXTRA_KEY] = service
    try:
        for space in config.spaces:
            try:
                await declare_space(service, space)
            except (EngineError, NotFound) as exc:
                _LOG.error("space %s from the configuration refused: %s", space.key, exc)
        # Codes may have been set while the daemon was down: tell of methods issued meanwhile.
        await service.issuance.check_all()
    except StoreUnavailable:
        # The store logged its outage; declared spaces are applied at the next start, and
        # methods are checked again as their codes change.
        _LOG.warning("reservation automations: the store cannot write; declared spaces wait")
    tasks = [group.create_task(service.issuance.run(), name="reservations"),
             group.create_task(service.forget_ended_forever(FORGET_ENDED_EVERY_S),
                               name="reservations-retention")]
    feeds = [(space.key, feed) for space in config.spaces for feed in space.ical_feeds]
    if feeds:
        tasks.append(group.create_task(run_feeds(feeds, service, bridge.clock, bridge.extras),
                                       name="ical-feeds"))
    return tasks


async def declare_space(service: ReservationService, declared: DeclaredSpace) -> None:
    """Create or update a space of the configuration, then push its reservations once."""
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
