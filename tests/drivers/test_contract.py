"""The driver contract (tests/contract.py) run on every driver: add yours here."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

from bridge.clock import FakeClock
from bridge.driver import DriverEvent
from drivers.simulator import SimLockSpec, SimulatorDriver
from tests.contract import ContractSubject, DriverContract
from tests.fakes.zigbee2mqtt import FakeZigbeeLock
from tests.fakes.zwavejs_ui import FakeNode
from tests.mqtt_env import make_z2m, make_zui, running_z2m, running_zui, unique

if TYPE_CHECKING:
    from tests.mosquitto import Mosquitto

pytest_plugins = ["tests.mosquitto"]


# How long the MQTT drivers wait for their peer here. A round trip through the real broker takes
# milliseconds, but under a full parallel suite 0.25 s was once missed by a lock that did answer
# (a listing failed with RetryLater). A silent lock costs each exchange this long, and a write is
# up to two exchanges, well inside the bound the contract gives a call that must give up.
ANSWER_TIMEOUT_S = 0.75
ANSWER_BOUND_S = 4.0

class TestSimulator(DriverContract):
    @pytest.fixture
    async def subject(self) -> AsyncIterator[ContractSubject]:
        driver = SimulatorDriver("sim", [SimLockSpec("front", "Front", slot_count=10)],
                                 FakeClock())
        events: list[DriverEvent] = []

        async def sink(event: DriverEvent) -> None:
            events.append(event)

        async def silence() -> None:
            driver.lock("front").go_offline()

        async def mute(slot: int) -> None:
            driver.lock("front").unanswered_slots.add(slot)

        await driver.start(sink)
        yield ContractSubject(driver, "front",
                              lambda: {n: s.pin for n, s in driver.lock("front").slots.items()},
                              silence, events=events, mute_slot=mute)
        await driver.stop()


class TestZigbee2Mqtt(DriverContract):
    @pytest.fixture(params=[True, False], ids=["expose_pin", "masked"])
    async def subject(self, request: pytest.FixtureRequest, mosquitto: Mosquitto,
                      tmp_path: Path) -> AsyncIterator[ContractSubject]:
        base = unique("z2m-contract")
        lock = FakeZigbeeLock("front", "0x0001", pin_code_count=10, expose_pin=request.param)
        async with running_z2m(mosquitto, base, [lock]):
            driver = make_z2m(mosquitto, FakeClock(), tmp_path, base,
                              answer_timeout_s=ANSWER_TIMEOUT_S,
                              locks=[{"friendly_name": "front", "slot_count": 10}])
            events: list[DriverEvent] = []

            async def sink(event: DriverEvent) -> None:
                events.append(event)

            async def silence() -> None:
                lock.stall = True

            async def mute(slot: int) -> None:
                lock.no_answer.add(slot)

            await driver.start(sink)
            try:
                yield ContractSubject(driver, "front", lambda: dict(lock.table), silence,
                                      answer_bound_s=ANSWER_BOUND_S, events=events, mute_slot=mute)
            finally:
                await driver.stop()


class TestZwaveJsMqtt(DriverContract):
    @pytest.fixture(params=[False, True], ids=["plain", "masked"])
    async def subject(self, request: pytest.FixtureRequest, mosquitto: Mosquitto,
                      tmp_path: Path) -> AsyncIterator[ContractSubject]:
        prefix = unique("zw-contract")
        node = FakeNode(5, masks=request.param)
        async with running_zui(mosquitto, prefix, "home", [node]) as fake:
            driver = make_zui(mosquitto, FakeClock(), tmp_path, prefix, "home",
                              [{"node_id": 5, "id": "front", "masks_pins": request.param}],
                              answer_timeout_s=ANSWER_TIMEOUT_S)
            events: list[DriverEvent] = []

            async def sink(event: DriverEvent) -> None:
                events.append(event)

            async def silence() -> None:
                node.stall = True

            async def mute(slot: int) -> None:
                node.unanswered_slots.add(slot)
                # zwave-js gives up on the report sooner than the driver on the gateway,
                # as with their defaults (1 s and 30 s).
                node.report_timeout_s = 0.1

            await driver.start(sink)
            try:
                yield ContractSubject(driver, "front", lambda: dict(node.codes), silence,
                                      answer_bound_s=ANSWER_BOUND_S, events=events, mute_slot=mute)
                # Whatever a test did, the CC's clear-everything was never asked for.
                assert fake.clears_without_slot() == 0 and node.wiped == 0
            finally:
                await driver.stop()
