"""The engine over the TTLock driver, against the fake of TTLock's Open API: a create whose
answer was lost is on the lock once and `set`, a changed stay reaches the lock through the
gateway, two locks on one gateway both get their codes, and a code asked for while the lock has
no gateway goes on once one is paired."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from bridge.clock import FakeClock
from bridge.engine import CodeRequest
from bridge.model import AccessCodeStatus, AccessCodeType
from drivers.ttlock.driver import TTLockDriver
from tests.drivers.ttlock.test_ttlock_driver import CLIENT_ID, PASSWORD, SECRET, USER, settings
from tests.fakes.ttlock import FakeTTLock
from tests.harness import Harness, start_engine

FRONT, BACK, SHED, GATEWAY = 7252408, 7252409, 7252410, 347


@dataclass
class Rig:
    fake: FakeTTLock
    harness: Harness

    def device(self, lock_id: int) -> str:
        return self.harness.device_id(str(lock_id), driver="ttlock")

    def status(self, access_code_id: str) -> AccessCodeStatus:
        return self.harness.code(access_code_id).status


@pytest.fixture
async def rig(tmp_path: Path) -> AsyncIterator[Rig]:
    clock = FakeClock(datetime.now(UTC).replace(microsecond=0))
    fake = FakeTTLock(CLIENT_ID, SECRET, USER, PASSWORD, clock=clock, gateway_latency_s=0.0)
    fake.add_gateway(GATEWAY)
    fake.add_lock(FRONT, "Apartment 1", gateways=[GATEWAY])
    fake.add_lock(BACK, "Apartment 2", gateways=[GATEWAY])
    fake.add_lock(SHED, "Shed")
    url = await fake.start()
    driver = TTLockDriver(settings(url, tmp_path, poll_interval_s=30,
                                   time_zone="Europe/Berlin"), clock)
    harness = await start_engine(tmp_path, {"ttlock": driver}, clock=clock)
    try:
        yield Rig(fake, harness)
    finally:
        await harness.stop()
        await fake.stop()


async def test_a_create_whose_answer_was_lost_is_on_the_lock_once(rig: Rig) -> None:
    h = rig.harness
    rig.fake.fail_next(90000, path="keyboardPwd/add", after_write=True)
    made = await h.engine.create_code(rig.device(FRONT), CodeRequest(name="Guest",
                                                                     code="24680"))
    await h.until(lambda: rig.status(made.access_code_id) is AccessCodeStatus.SET,
                  what="set after the lost answer", advance=1.0)
    assert list(rig.fake.locks[FRONT].codes) == ["24680"]
    assert [p.pin for p in rig.fake.passcodes.values()] == ["24680"]
    assert h.code(made.access_code_id).errors == ()


async def test_a_changed_stay_reaches_the_lock(rig: Rig) -> None:
    h = rig.harness
    now = h.clock.now()
    starts, ends = now + timedelta(days=1), now + timedelta(days=3)
    made = await h.engine.create_code(rig.device(FRONT), CodeRequest(
        name="Guest", type=AccessCodeType.TIME_BOUND, starts_at=starts, ends_at=ends))
    cid = made.access_code_id
    await h.until(lambda: h.code(cid).is_scheduled_on_device, what="scheduled on the lock",
                  advance=1.0)
    lock = rig.fake.locks[FRONT]
    (held,) = lock.codes.values()
    minute = 60_000
    assert (held.start_ms, held.end_ms) == (int(starts.timestamp() * 1000) // minute * minute,
                                            int(ends.timestamp() * 1000) // minute * minute)
    later = now + timedelta(days=4)
    await h.engine.update_code(cid, CodeRequest(ends_at=later))
    await h.until(lambda: lock.codes[made.code or ""].end_ms
                  == int(later.timestamp() * 1000) // minute * minute,
                  what="end moved on the lock", advance=1.0)
    await h.until(h.engine.settled, what="settled", advance=1.0)
    # Before its start the code is `unset` and scheduled on the lock, as Seam shows it.
    assert rig.status(cid) is AccessCodeStatus.UNSET and h.code(cid).is_scheduled_on_device
    changes = [p for path, p in rig.fake.calls if path == "/v3/keyboardPwd/change"]
    assert [c.get("changeType") for c in changes] == ["2"]
    # A rename is TTLock's record only: a cloud call, no gateway command.
    commands = rig.fake.gateways[GATEWAY].commands
    await h.engine.update_code(cid, CodeRequest(name="Guest Smith"))
    await h.until(lambda: rig.fake.passcodes[h.code(cid).slot or 0].name == "Guest Smith",
                  what="renamed", advance=1.0)
    await h.until(h.engine.settled, what="settled", advance=1.0)
    assert rig.fake.gateways[GATEWAY].commands == commands


async def test_two_locks_on_one_gateway_and_a_lock_without_one(rig: Rig) -> None:
    h = rig.harness
    codes = [await h.engine.create_code(rig.device(lock_id), CodeRequest(name="Staff"))
             for lock_id in (FRONT, BACK, SHED)]
    front, back, shed = (c.access_code_id for c in codes)
    await h.until(lambda: all(rig.status(c) is AccessCodeStatus.SET for c in (front, back)),
                  what="both set", advance=1.0)
    device = h.engine.devices[rig.device(SHED)]
    assert "ttlock_lock_not_paired_to_gateway" in [e.code for e in device.errors]
    assert rig.fake.locks[SHED].codes == {}
    rig.fake.locks[SHED].gateway_rssi[GATEWAY] = -70
    await h.until(lambda: rig.status(shed) is AccessCodeStatus.SET, what="set once paired",
                  advance=5.0, timeout=20)
    assert [e.code for e in h.engine.devices[rig.device(SHED)].errors] == []


