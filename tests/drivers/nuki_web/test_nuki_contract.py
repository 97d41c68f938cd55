"""The driver contract's id-addressed variant (tests/contract.py) run on the Nuki Web driver
against the independent fake of Nuki's published Web API (tests/fakes/nuki_web.py)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from bridge.clock import SystemClock
from bridge.driver import Availability, DriverEvent, DriverEventKind
from drivers.nuki_web.config import Config
from drivers.nuki_web.driver import KEYPAD_CODE, NukiWebDriver, auth_slot
from tests.contract import ContractSubject, IdDriverContract
from tests.fakes.nuki_web import FakeNukiWeb
from tests.harness import until

TOKEN = "nuki-api-token-for-the-contract"
LOCK = 101


def _driver(url: str, tmp_path: Path) -> NukiWebDriver:
    token_file = tmp_path / "nuki.token"
    token_file.write_text(TOKEN + "\n")
    config = Config.model_validate({
        "kind": "nuki_web", "name": "nuki", "url": url, "token_file": str(token_file),
        "time_zone": "Europe/Berlin", "poll_interval_s": 60, "request_timeout_s": 1.5,
        "create_poll_s": 0.02, "create_wait_s": 2.0, "confirmation_window_s": 0,
        "command_spacing_s": 0})
    return NukiWebDriver(config, SystemClock())


class TestNukiWeb(IdDriverContract):
    @pytest.fixture
    async def subject(self, tmp_path: Path) -> AsyncIterator[ContractSubject]:
        fake = FakeNukiWeb(TOKEN, apply_delay_s=0.05, list_delay_s=0.01)
        lock = fake.add_lock(LOCK, "Front door")
        driver = _driver(await fake.start(), tmp_path)
        events: list[DriverEvent] = []

        async def sink(event: DriverEvent) -> None:
            events.append(event)

        def truth() -> dict[int, str]:
            # What the lock itself holds (not Nuki's copy), under the driver's numbers.
            return {auth_slot(auth_id): str(auth["code"])
                    for auth_id, auth in lock.device_auths().items()
                    if auth.get("type") == KEYPAD_CODE and auth.get("enabled", True)}

        async def silence() -> None:
            # Nuki Web stops answering: every request outlasts the driver's timeout.
            fake.latency_s = 5.0

        async def foreign_code(pin: str) -> None:
            lock.add_app_code(int(pin), "Made in the Nuki app")

        await driver.start(sink)
        # The account's first listing is taken at start (a slow machine must not lose it).
        assert [d.external_id for d in driver.devices()] == [str(LOCK)]
        try:
            yield ContractSubject(
                driver, str(LOCK), truth, silence, answer_bound_s=3.0, events=events,
                foreign_code=foreign_code,
                mute_slot_absent="Nuki Web answers for all of a lock's codes in one listing "
                "of its own copy: no read can go unanswered for one code alone (a change "
                "still on its way shows as pending instead: "
                "tests/drivers/nuki_web/test_nuki_engine.py)")
        finally:
            await driver.stop()
            await fake.stop()


async def test_a_command_never_waits_on_the_engine(tmp_path: Path) -> None:
    """The engine's sink may block on the engine, which may be waiting on this very command: a
    probe that learns the lock went offline returns all the same, and the news follows."""
    fake = FakeNukiWeb(TOKEN)
    lock = fake.add_lock(LOCK, "Front door")
    driver = _driver(await fake.start(), tmp_path)
    engine_free = asyncio.Event()
    delivered: list[DriverEvent] = []

    async def busy_engine(event: DriverEvent) -> None:
        await engine_free.wait()
        delivered.append(event)

    await driver.start(busy_engine)
    try:
        lock.set_online(False)
        assert not await asyncio.wait_for(driver.probe(str(LOCK)), 3.0)
        assert delivered == []
        engine_free.set()
        await until(lambda: any(e.kind is DriverEventKind.AVAILABILITY for e in delivered),
                    timeout=3.0, what="the offline report")
        assert delivered[-1].availability is Availability.OFFLINE
    finally:
        await driver.stop()
        await fake.stop()
