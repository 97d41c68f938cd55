"""The driver contract's id-addressed variant (tests/contract.py) run on the Igloohome driver
against the independent fake of the iglooaccess API (tests/fakes/igloohome.py), on a lock linked
to a bridge (custom PINs; an algoPIN lock picks its own PINs, which the contract's creates
cannot take: tests/drivers/igloohome/test_igloohome_driver.py covers those)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from bridge.clock import SystemClock
from bridge.driver import DriverEvent
from drivers.igloohome.driver import IgloohomeDriver
from tests.contract import ContractSubject, IdDriverContract
from tests.drivers.igloohome.test_igloohome_driver import BRIDGE, CLIENT_ID, DOOR, SECRET, settings
from tests.fakes.igloohome import FakeIgloohome


class TestIgloohome(IdDriverContract):
    @pytest.fixture
    async def subject(self, tmp_path: Path) -> AsyncIterator[ContractSubject]:
        fake = FakeIgloohome(CLIENT_ID, SECRET, job_delay_s=0.02)
        fake.add_bridge(BRIDGE)
        lock = fake.add_lock(DOOR, "Front door", bridge=BRIDGE)
        records = tmp_path / "igloohome-igloo.json"
        driver = IgloohomeDriver(settings(await fake.start(), tmp_path, poll_interval_s=60,
                                          request_timeout_s=1, job_timeout_s=2),
                                 SystemClock(), records)
        events: list[DriverEvent] = []

        async def sink(event: DriverEvent) -> None:
            events.append(event)

        def truth() -> dict[int, str]:
            # Every PIN the lock holds: under the id the driver gave it where it made it, under
            # a negative number where it did not (nothing else can name it).
            book = driver._book  # the driver's ids; the PINs are the lock's
            ids = {book.pin(r, DOOR): s for s, r in book.of(DOOR).items()}
            return {ids.get(pin, -n): pin for n, pin in enumerate(sorted(lock.custom), 1)}

        async def silence() -> None:
            fake.latency_s = 2.0

        await driver.start(sink)
        assert DOOR in [d.external_id for d in driver.devices()]
        try:
            yield ContractSubject(
                driver, DOOR, truth, silence, answer_bound_s=5.0, events=events,
                mute_slot_absent="Igloohome lists no PINs: nothing is read from the lock",
                # A failed bridge job names no cause (unpublished): a PIN already on the lock
                # cannot be told from a lock out of range, so no duplicate can be named.
                foreign_code=None)
        finally:
            await driver.stop()
            await fake.stop()
