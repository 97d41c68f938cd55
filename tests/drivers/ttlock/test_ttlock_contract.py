"""The driver contract's id-addressed variant (tests/contract.py) run on the TTLock driver
against the independent fake of TTLock's published Open API (tests/fakes/ttlock.py)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from bridge.clock import SystemClock
from bridge.driver import DriverEvent
from drivers.ttlock.driver import TTLockDriver
from tests.contract import ContractSubject, IdDriverContract
from tests.drivers.ttlock.test_ttlock_driver import (
    CLIENT_ID,
    FRONT,
    GATEWAY,
    PASSWORD,
    SECRET,
    USER,
    settings,
)
from tests.fakes.ttlock import CloudPasscode, FakeTTLock, LockCode


class TestTTLock(IdDriverContract):
    @pytest.fixture
    async def subject(self, tmp_path: Path) -> AsyncIterator[ContractSubject]:
        fake = FakeTTLock(CLIENT_ID, SECRET, USER, PASSWORD, gateway_latency_s=0.02)
        fake.add_gateway(GATEWAY)
        lock = fake.add_lock(FRONT, "Apartment 1", gateways=[GATEWAY])
        driver = TTLockDriver(settings(await fake.start(), tmp_path, poll_interval_s=60,
                                       request_timeout_s=2, gateway_timeout_s=2.5),
                              SystemClock())
        events: list[DriverEvent] = []

        async def sink(event: DriverEvent) -> None:
            events.append(event)

        def truth() -> dict[int, str]:
            # What the lock's keypad accepts, under the ids the cloud gave the passcodes.
            return {pid: p.pin for pid, p in fake.passcodes.items()
                    if p.lock_id == FRONT and p.pin in lock.codes}

        async def silence() -> None:
            # TTLock's cloud stops answering: every request outlasts the driver's timeout.
            fake.latency_s = 7.0

        async def foreign_code(pin: str) -> None:
            # A passcode the owner made in the TTLock app: on the lock and in the cloud.
            lock.codes[pin] = LockCode(0, 0)
            pid = 90_000 + len(fake.passcodes)
            fake.passcodes[pid] = CloudPasscode(pid, FRONT, pin, "Made in the app", 2, 0, 0,
                                                fake.server_ms(), "owner@example.com")

        await driver.start(sink)
        assert str(FRONT) in [d.external_id for d in driver.devices()]
        try:
            yield ContractSubject(
                driver, str(FRONT), truth, silence, answer_bound_s=10.0, events=events,
                foreign_code=foreign_code,
                mute_slot_absent="TTLock answers for all of a lock's passcodes in one listing "
                "of the cloud's records: no read can go unanswered for one passcode alone")
        finally:
            await driver.stop()
            await fake.stop()
